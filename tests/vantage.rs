//! A vantage point that pushes: iocwatch in a commune (a network namespace of its own) with a
//! Prometheus in agent mode beside it, remote-writing to the central Prometheus over a link
//! the test cuts for a minute. The agent buffers in its WAL; after the link returns, the
//! central Prometheus holds every scrape of the outage: no gap.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::netns::TestHost;
use common::receivers::free_port;
use serde_json::Value;
use tokio::time::Instant;

/// A child process killed with the test, whatever happens.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(command: &mut Command, what: &str, log: &Path) -> Guard {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    Guard(
        command
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("{what} must be installed (.ci/test.sh installs it): {e}")),
    )
}

async fn query(client: &reqwest::Client, base: &str, expr: &str) -> Option<Value> {
    let url = reqwest::Url::parse_with_params(&format!("{base}/api/v1/query"), [("query", expr)])
        .expect("url");
    let body = client.get(url).send().await.ok()?.text().await.ok()?;
    serde_json::from_str(&body).ok()
}

/// The raw sample times of the one series `selector` names, over the last `range`.
async fn sample_times(
    client: &reqwest::Client,
    base: &str,
    selector: &str,
    range: &str,
) -> Vec<f64> {
    let Some(answer) = query(client, base, &format!("{selector}[{range}]")).await else {
        return Vec::new();
    };
    answer["data"]["result"][0]["values"]
        .as_array()
        .map(|values| values.iter().filter_map(|v| v[0].as_f64()).collect())
        .unwrap_or_default()
}

/// Metrics of the agent in the commune, read from inside its namespace.
fn commune_counter(commune: &TestHost, port: u16, name: &str) -> Option<f64> {
    let out = Command::new("ip")
        .args(["netns", "exec", &commune.name, "curl", "-s"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commune_agent_buffers_through_a_cut_wan_and_leaves_no_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let commune = TestHost::new();
    let client = common::http_client();

    // The central Prometheus, on the provincial side of the WAN link.
    let central_port = free_port();
    let central_listen = format!("{}:{central_port}", commune.host_ip);
    std::fs::write(
        dir.path().join("central.yml"),
        "global: {scrape_interval: 15s}\n",
    )
    .expect("write");
    let _central = spawn(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("central.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("central").display()
            ))
            .arg(format!("--web.listen-address={central_listen}"))
            .arg("--web.enable-remote-write-receiver"),
        "prometheus",
        &dir.path().join("central.log"),
    );
    let central = format!("http://{central_listen}");

    // In the commune: iocwatch measuring the shared system (the provincial side, across the
    // WAN) and its own router (its loopback), and a Prometheus agent that scrapes it.
    let config = format!(
        "defaults: {{interval: 1s, timeout: 800ms}}\n\
         areas: [{{code: \"15\", name: Lào Cai, children: [{{code: \"02947\", name: Xã Bảo Yên}}]}}]\n\
         targets:\n\
         \x20 - {{id: router, area: \"02947\", address: 127.0.0.1, checks: [icmp: {{count: 1}}]}}\n\
         \x20 - {{id: portal, area: \"15\", address: {}, checks: [icmp: {{count: 1}}]}}\n",
        commune.host_ip
    );
    std::fs::write(dir.path().join("iocwatch.yaml"), config).expect("write");
    let iocwatch_port = 10090;
    let _iocwatch = spawn(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &commune.name,
                env!("CARGO_BIN_EXE_iocwatch"),
                "run",
                "-c",
            ])
            .arg(dir.path().join("iocwatch.yaml"))
            .args([
                "--listen",
                &format!("127.0.0.1:{iocwatch_port}"),
                "--vantage",
                "02947",
            ])
            .arg("--storage.path")
            .arg(dir.path().join("iocwatch-data")),
        "iocwatch",
        &dir.path().join("iocwatch.log"),
    );
    let agent_config = format!(
        "global: {{scrape_interval: 1s}}\n\
         scrape_configs:\n  - job_name: iocwatch\n    static_configs: [{{targets: [\"127.0.0.1:{iocwatch_port}\"]}}]\n\
         remote_write:\n  - url: {central}/api/v1/write\n    queue_config: {{min_backoff: 100ms, max_backoff: 1s}}\n"
    );
    std::fs::write(dir.path().join("agent.yml"), agent_config).expect("write");
    let _agent = spawn(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &commune.name,
                "prometheus",
                "--enable-feature=agent",
            ])
            .arg(format!(
                "--config.file={}",
                dir.path().join("agent.yml").display()
            ))
            .arg(format!(
                "--storage.agent.path={}",
                dir.path().join("agent").display()
            ))
            .arg("--web.listen-address=127.0.0.1:9090"),
        "prometheus",
        &dir.path().join("agent.log"),
    );

    let router = r#"iocwatch_probe_success{target="router",vantage="02947"}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if sample_times(&client, &central, router, "1m").await.len() >= 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no samples reached the central Prometheus; agent log:\n{}",
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The WAN goes down for a minute: sixty probe rounds happen in the commune meanwhile.
    let sent = |c: &TestHost| {
        commune_counter(c, iocwatch_port, "iocwatch_icmp_packets_sent_total{")
            .expect("the commune agent answers")
    };
    let before = sent(&commune);
    commune.cut();
    let cut_at = std::time::SystemTime::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while sent(&commune) < before + 2.0 * 60.0 {
        assert!(
            Instant::now() < deadline,
            "the commune agent stopped probing"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cut_secs = cut_at.elapsed().expect("clock").as_secs_f64();
    assert!(cut_secs >= 59.0, "the cut lasted {cut_secs} s");
    commune.restore();

    // Once the agent has replayed its WAL, the central Prometheus has every second.
    let deadline = Instant::now() + Duration::from_secs(90);
    let range = format!("{}s", cut_secs.ceil() as u64 + 30);
    let cut_from = cut_at
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    loop {
        let times = sample_times(&client, &central, router, &range).await;
        let during: Vec<f64> = times
            .iter()
            .copied()
            .filter(|t| *t >= cut_from && *t <= cut_from + cut_secs)
            .collect();
        let widest = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
        if during.len() as f64 >= cut_secs - 3.0 && widest < 3.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the outage left a gap: {} samples of {cut_secs:.0} s, widest step {widest:.1} s",
            during.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The same buffered samples tell the portal was unreachable from this commune only:
    // the recording rule's ratio over vantages says the rest (tests/prometheus.rs).
    let portal = query(
        &client,
        &central,
        &format!(
            r#"min_over_time(iocwatch_probe_success{{target="portal",vantage="02947"}}[{range}])"#
        ),
    )
    .await
    .expect("query");
    assert_eq!(
        portal["data"]["result"][0]["value"][1], "0",
        "the cut shows as the portal unreachable from the commune: {portal}"
    );
}
