//! The agent end to end: real probes against loopback servers, scraped over HTTP, then
//! reloaded through the API, by file change, and with a bad config that must be refused.

mod common;

use std::time::Duration;

use common::{closed_port, http_server, write, TestAgent};

const WAIT: Duration = Duration::from_secs(20);

fn config(web: std::net::SocketAddr, closed: u16, extra_target: &str) -> String {
    format!(
        r#"defaults:
  interval: 1s
  timeout: 800ms
include: ["conf.d/*.yaml"]
areas:
  - code: "15"
    name: Tỉnh Lào Cai
    level: province
    children:
      - code: g1
        name: Huyện Bảo Yên (cũ)
        kind: group
        level: district
        children:
          - {{code: "02947", name: Xã Bảo Yên, kind: xa, level: commune, geo: {{lat: 22.2155, lon: 104.4914}}}}
systems:
  - {{id: dichvucong, name: Cổng dịch vụ công}}
targets:
  - id: gw
    area: "15"
    address: 127.0.0.1
    labels: {{owner: vnpt}}
    checks:
      - icmp: {{count: 3, spacing: 10ms}}
  - id: portal
    area: "15"
    address: 127.0.0.1
    system: dichvucong
    checks:
      - http: {{url: "http://{web}/", body_match: "Cổng"}}
  - id: smtp
    area: "02947"
    address: 127.0.0.1
    depends_on: [gw]
    checks:
      - tcp: {{port: {closed}}}
{extra_target}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_run_in_the_background_and_export_metrics() {
    let web = http_server("<h1>Cổng dịch vụ công</h1>").await;
    let closed = closed_port();
    let agent = TestAgent::start(&[("iocwatch.yaml", &config(web, closed, ""))]).await;

    assert_eq!(agent.get("/-/healthy").await.0, 200);
    assert_eq!(agent.get("/-/ready").await.0, 200);
    assert_eq!(agent.get("/-/reload").await.0, 405, "reload only by POST");
    assert!(agent.get("/").await.1.contains("/metrics"));
    let gzipped = agent
        .client
        .get(agent.url("/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("scrape");
    assert_eq!(
        gzipped
            .headers()
            .get("content-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"gzip"[..]),
        "Prometheus scrapes gzip"
    );

    agent
        .wait_for(WAIT, "every check to report", |m| {
            // A scrape gathers the metric families one by one while rounds are recorded, so
            // wait for the details asserted below, not only for probe_success.
            ["gw", "portal", "smtp"]
                .iter()
                .all(|t| m.has("iocwatch_probe_success", &[("target", t)]))
                && m.has("iocwatch_probe_failures_total", &[("target", "smtp")])
                && m.has("iocwatch_http_status_code", &[("target", "portal")])
                && m.value("iocwatch_icmp_rtt_seconds_count", &[("target", "gw")])
                    .is_some_and(|n| n >= 3.0)
        })
        .await;
    // Every family now holds at least one whole round; scrape again to read them together.
    let m = agent.metrics().await;

    // ICMP to loopback: every echo answered, counters and RTT histogram filled.
    let gw = [
        ("target", "gw"),
        ("kind", "icmp"),
        ("province", "15"),
        ("area_path", "15"),
    ];
    assert_eq!(m.value("iocwatch_probe_success", &gw), Some(1.0));
    // A target's own labels are on its info series, once, not on each of its series.
    assert_eq!(
        m.value(
            "iocwatch_target_info",
            &[("target", "gw"), ("owner", "vnpt")]
        ),
        Some(1.0)
    );
    let per_check: Vec<&str> =
        m.0.lines()
            .filter(|l| l.starts_with("iocwatch_probe_success{"))
            .collect();
    assert!(
        per_check
            .iter()
            .all(|l| !l.contains("owner=") && !l.contains("=\"\"")),
        "{per_check:#?}"
    );
    let sent = m
        .value("iocwatch_icmp_packets_sent_total", &gw)
        .expect("sent");
    let received = m
        .value("iocwatch_icmp_packets_received_total", &gw)
        .expect("received");
    // A scrape may fall between the two counter updates of a round, so compare the last
    // round's loss (written before success) rather than the two counters.
    assert!(
        sent >= 3.0 && received >= 3.0,
        "sent {sent} received {received}"
    );
    assert_eq!(m.value("iocwatch_icmp_loss_ratio", &gw), Some(0.0));
    assert!(
        m.value("iocwatch_icmp_rtt_seconds_count", &gw)
            .expect("histogram")
            >= 3.0
    );
    assert!(m.has(
        "iocwatch_icmp_round_rtt_seconds",
        &[("target", "gw"), ("stat", "stddev")]
    ));
    // The socket's receive buffer is large, and the kernel dropped no reply for want of room.
    assert!(
        m.value("iocwatch_icmp_receive_buffer_bytes", &[("family", "ip4")])
            .is_some_and(|bytes| bytes >= 1_048_576.0),
        "receive buffer"
    );
    assert_eq!(
        m.value("iocwatch_icmp_receive_dropped_total", &[("family", "ip4")]),
        Some(0.0)
    );

    // HTTP to a real server: status, phases, body size.
    let portal = [
        ("target", "portal"),
        ("kind", "http"),
        ("system", "dichvucong"),
    ];
    assert_eq!(m.value("iocwatch_probe_success", &portal), Some(1.0));
    assert_eq!(m.value("iocwatch_http_status_code", &portal), Some(200.0));
    assert!(
        m.value(
            "iocwatch_http_phase_seconds",
            &[("target", "portal"), ("phase", "connect")]
        )
        .expect("phase")
            > 0.0
    );
    assert_eq!(m.value("iocwatch_http_version", &portal), Some(1.1));
    assert!(
        m.value("iocwatch_probe_duration_seconds_count", &portal)
            .expect("duration histogram")
            >= 1.0
    );
    assert!(
        !m.has("iocwatch_probe_duration_seconds_count", &[("target", "gw")]),
        "ICMP latency lives in the RTT histogram, not a duration histogram"
    );

    // The closed port: failed, reason refused, with every area level as a label.
    let smtp = [
        ("target", "smtp"),
        ("check", &*format!("tcp_{closed}")),
        ("province", "15"),
        ("district", "g1"),
        ("commune", "02947"),
        ("area_path", "15/g1/02947"),
    ];
    assert_eq!(m.value("iocwatch_probe_success", &smtp), Some(0.0));
    assert!(
        m.value(
            "iocwatch_probe_failures_total",
            &[("target", "smtp"), ("reason", "refused")]
        )
        .expect("reason")
            >= 1.0
    );

    // Rollups walk the tree: the province counts targets at every depth below it.
    let m = agent
        .wait_for(WAIT, "rollups", |m| {
            m.value("iocwatch_area_targets", &[("area", "15"), ("state", "up")]) == Some(2.0)
        })
        .await;
    assert_eq!(
        m.value(
            "iocwatch_area_targets",
            &[("area", "15"), ("state", "down")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "iocwatch_area_targets",
            &[("area", "g1"), ("state", "down")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value("iocwatch_area_targets", &[("area", "g1"), ("state", "up")]),
        Some(0.0)
    );
    assert_eq!(
        m.value(
            "iocwatch_system_targets",
            &[("system", "dichvucong"), ("state", "up")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "iocwatch_area_info",
            &[
                ("area", "02947"),
                ("parent", "g1"),
                ("name", "Xã Bảo Yên"),
                ("lat", "22.2155")
            ]
        ),
        Some(1.0)
    );

    // Self-metrics.
    assert!(m.has(
        "iocwatch_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))]
    ));
    assert_eq!(
        m.value("iocwatch_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert!(
        m.value("iocwatch_config_last_reload_success_timestamp_seconds", &[])
            .expect("ts")
            > 1.7e9
    );
    assert!(
        m.value(
            "iocwatch_scheduler_lateness_seconds_count",
            &[("kind", "icmp")]
        )
        .expect("lateness")
            >= 1.0
    );
    assert_eq!(
        m.value("iocwatch_checks_configured", &[("kind", "tcp")]),
        Some(1.0)
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_good_configs_and_refuses_bad_ones() {
    let web = http_server("<h1>Cổng dịch vụ công</h1>").await;
    let closed = closed_port();
    let main = config(web, closed, "");
    let agent = TestAgent::start(&[("iocwatch.yaml", &main)]).await;
    agent
        .wait_for(WAIT, "first rounds", |m| {
            m.has("iocwatch_probe_success", &[("target", "smtp")])
        })
        .await;
    let rounds_before = |m: &common::Metrics| {
        m.value("iocwatch_icmp_packets_sent_total", &[("target", "gw")])
            .unwrap_or(0.0)
    };

    // 1. A bad config over the API: 500 with file:line:col, the running config kept.
    let bad = main.replace(
        "    address: 127.0.0.1\n    labels: {owner: vnpt}",
        "    address: 127.0.0.1\n    labels: {owner: vnpt}\n    colour: red",
    );
    write(&agent.path("iocwatch.yaml"), &bad);
    let (status, body) = agent.post("/-/reload").await;
    assert_eq!(status, 500, "{body}");
    // An anonymous caller learns only that it failed; check-config says where and why.
    assert!(body.contains("config refused"), "{body}");
    assert!(!body.contains("colour"), "{body}");
    let checked = common::check_config(&agent.path("iocwatch.yaml"));
    let errors = String::from_utf8_lossy(&checked.stderr);
    assert!(
        errors.contains("iocwatch.yaml:23:5: unknown field `colour`"),
        "{errors}"
    );
    let m = agent.metrics().await;
    assert_eq!(
        m.value("iocwatch_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert!(
        m.value("iocwatch_config_reloads_total", &[("result", "failure")])
            .expect("counter")
            >= 1.0
    );
    // ... and probing goes on under the old config.
    let seen = rounds_before(&m);
    agent
        .wait_for(WAIT, "probing to continue after a refused reload", |m| {
            rounds_before(m) > seen
        })
        .await;

    // 2. A good config over the API: smtp removed, a new target added, gw unchanged.
    let extra = "  - id: dns\n    area: \"15\"\n    address: 127.0.0.1\n    checks:\n      - tcp: {port: 53, name: dns}\n";
    let good = config(web, closed, extra).replace(
        &format!("  - id: smtp\n    area: \"02947\"\n    address: 127.0.0.1\n    depends_on: [gw]\n    checks:\n      - tcp: {{port: {closed}}}\n"),
        "",
    );
    assert!(!good.contains("id: smtp"));
    write(&agent.path("iocwatch.yaml"), &good);
    let before = rounds_before(&agent.metrics().await);
    let (status, body) = agent.post("/-/reload").await;
    assert_eq!(status, 200, "{body}");
    let m = agent
        .wait_for(WAIT, "the new target", |m| {
            m.has("iocwatch_probe_success", &[("target", "dns")])
        })
        .await;
    assert!(
        !m.has("iocwatch_probe_success", &[("target", "smtp")]),
        "series of a removed target disappear"
    );
    assert!(!m.has("iocwatch_probe_failures_total", &[("target", "smtp")]));
    assert_eq!(
        m.value("iocwatch_config_last_reload_successful", &[]),
        Some(1.0)
    );
    // The unchanged target kept its counters (same task, same schedule), not restarted from 0.
    assert!(
        rounds_before(&m) >= before,
        "gw rounds went from {before} to {}",
        rounds_before(&m)
    );

    // 3. A new file in conf.d is picked up by the file watcher, without any request.
    write(
        &agent.path("conf.d/vnpt.yaml"),
        "targets:\n  - id: commune-uplink\n    area: \"02947\"\n    address: 127.0.0.2\n    checks: [icmp: {count: 1}]\n",
    );
    agent
        .wait_for(WAIT, "the watcher to load conf.d/vnpt.yaml", |m| {
            m.value(
                "iocwatch_probe_success",
                &[("target", "commune-uplink"), ("commune", "02947")],
            ) == Some(1.0)
        })
        .await;

    // 4. A broken owner file is refused by the watcher too, and nothing is lost.
    write(
        &agent.path("conf.d/vnpt.yaml"),
        "targets:\n  - id: commune-uplink\n    area: \"nowhere\"\n",
    );
    agent
        .wait_for(WAIT, "the refused reload", |m| {
            m.value("iocwatch_config_last_reload_successful", &[]) == Some(0.0)
        })
        .await;
    let m = agent.metrics().await;
    assert!(m.has("iocwatch_probe_success", &[("target", "commune-uplink")]));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_split_the_targets_between_agents() {
    let mut targets = String::from("areas: [{code: \"15\", name: Lào Cai}]\ntargets:\n");
    for i in 0..20 {
        targets.push_str(&format!("  - {{id: t{i}, area: \"15\", address: 127.0.0.1, interval: 1s, checks: [tcp: {{port: 1}}]}}\n"));
    }
    let files = [("iocwatch.yaml", targets.as_str())];
    let mut owned = Vec::new();
    for index in 0..2 {
        let agent = TestAgent::start_with(&files, |o| {
            o.shard = Some(iocwatch::catalog::Shard { index, count: 2 })
        })
        .await;
        let m = agent.metrics().await;
        let configured = m
            .value("iocwatch_checks_configured", &[("kind", "tcp")])
            .expect("gauge");
        let m = agent
            .wait_for(WAIT, "every owned check to report", |m| {
                m.values("iocwatch_probe_success", &[]).len() as f64 == configured
            })
            .await;
        let ids: Vec<String> = (0..20)
            .map(|i| format!("t{i}"))
            .filter(|id| m.has("iocwatch_probe_success", &[("target", id)]))
            .collect();
        owned.push(ids);
        agent.stop().await;
    }
    assert!(!owned[0].is_empty() && !owned[1].is_empty(), "{owned:?}");
    let mut all: Vec<&String> = owned.iter().flatten().collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        20,
        "every target probed exactly once across shards: {owned:?}"
    );
    assert_eq!(owned[0].len() + owned[1].len(), 20);
}
