//! The binary as an operator uses it: check-config exit codes and messages, one-off probes,
//! and the daemon reloading on SIGHUP and stopping cleanly on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{closed_port, http_server, write};

fn iocwatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_iocwatch"))
}

#[test]
fn check_config_accepts_the_bundled_config() {
    let out = iocwatch()
        .args([
            "check-config",
            "-c",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/iocwatch.yaml"),
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(": ok (29 areas"), "{stdout}");
}

#[test]
fn check_config_lists_every_error_and_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    write(
        &path,
        "areas:\n  - {code: \"15\", name: Lào Cai}\ntargets:\n  - id: a\n    area: \"16\"\n    address: 127.0.0.1\n    checks: [icmp: {}]\n  - id: a\n    area: \"15\"\n    address: 127.0.0.1\n    checks: [icmp: {}]\n",
    );
    for args in [
        vec!["check-config", "-c"],
        vec!["--config.check", "--config.file"],
    ] {
        let out = iocwatch().args(&args).arg(&path).output().expect("run");
        assert_eq!(out.status.code(), Some(64));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let p = path.display();
        assert!(
            stderr.contains(&format!("{p}:5:11: target \"a\": unknown area \"16\"")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "{p}:8:9: target id \"a\" is already used at {p}:4"
            )),
            "{stderr}"
        );
        assert!(stderr.contains("2 error(s)"), "{stderr}");
    }
}

#[test]
fn version_is_printed() {
    let out = iocwatch().arg("--version").output().expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn one_off_probes_print_what_they_measured() {
    let out = iocwatch()
        .args(["probe", "icmp", "127.0.0.1"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("sent 3, received 3, loss 0%"), "{stdout}");
    assert!(stdout.contains("rtt min/avg/max/stddev"), "{stdout}");

    let out = iocwatch()
        .args(["probe", "tcp", &format!("127.0.0.1:{}", closed_port())])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED (refused)"));

    let out = iocwatch()
        .args(["probe", "tcp", "no-port"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_off_http_probe() {
    let web = http_server("xin chào").await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_iocwatch"))
        .args(["probe", "http", &format!("http://{web}/")])
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("status 200"), "{stdout}");
    assert!(stdout.contains("connect"), "{stdout}");
}

/// Kills the daemon if the test fails before it stopped it.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("iocwatch.yaml");
    let config = |id: &str| {
        format!(
            "areas: [{{code: \"15\", name: Lào Cai}}]\ntargets:\n  - id: {id}\n    area: \"15\"\n    address: 127.0.0.1\n    interval: 1s\n    checks: [icmp: {{count: 1}}]\n"
        )
    };
    write(&path, &config("first"));
    let child = iocwatch()
        .args(["run", "-c"])
        .arg(&path)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log.format",
            "json",
            "--storage.path",
        ])
        .arg(dir.path().join("data"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut daemon = Daemon(child);
    let pid = daemon.0.id();
    let stderr = daemon.0.stderr.take().expect("stderr");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let next_line_with = |needle: &str| -> String {
        loop {
            let line = lines_rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    };
    let serving = next_line_with("serving metrics");
    let value: serde_json::Value = serde_json::from_str(&serving).expect("json log line");
    let addr = value["fields"]["addr"]
        .as_str()
        .expect("addr field")
        .to_owned();

    write(&path, &config("second"));
    signal(pid, "HUP");
    next_line_with("config reloaded");
    let client = reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(rustls::ClientConfig::clone(
            &iocwatch::tls::system_tls_config(),
        ))
        .build()
        .expect("client");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        if body.contains("target=\"second\"") && !body.contains("target=\"first\"") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reload did not happen:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    signal(pid, "TERM");
    next_line_with("stopped");
    let status = tokio::task::spawn_blocking(move || daemon.0.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "{status:?}");
}

/// Without CAP_NET_RAW: a clear message and the datagram fallback where the kernel allows it,
/// `icmp_unavailable` (and nothing worse) where it does not. Each case runs in a namespace of
/// its own, because `ping_group_range` is a per-namespace sysctl.
#[test]
fn icmp_without_cap_net_raw_falls_back_or_says_what_to_do() {
    let unprivileged = |ns: &common::netns::Namespace| {
        let mut command = ns.command("setpriv");
        command
            .args(["--bounding-set", "-net_raw", "--inh-caps", "-net_raw"])
            .arg(env!("CARGO_BIN_EXE_iocwatch"))
            .args(["probe", "icmp", "127.0.0.1"]);
        let out = command.output().expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let closed = common::netns::Namespace::new();
    closed.sysctl("net.ipv4.ping_group_range=1 0");
    let (code, stdout, stderr) = unprivileged(&closed);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("FAILED (icmp_unavailable)"), "{stdout}");
    assert!(
        stderr.contains("cap_net_raw+ep"),
        "says what to do: {stderr}"
    );
    assert!(stderr.contains("ping_group_range"), "{stderr}");

    let open = common::netns::Namespace::new();
    open.sysctl("net.ipv4.ping_group_range=0 2147483647");
    let (code, stdout, stderr) = unprivileged(&open);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("sent 3, received 3"), "{stdout}");
    assert!(
        stderr.contains("unprivileged datagram ping sockets"),
        "{stderr}"
    );
}
