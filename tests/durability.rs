//! `kill -9` and restart, for real: the agent binary with its SQLite database, a webhook
//! receiver that is sometimes down, a target that goes down and comes back. No message may
//! be lost (firing or resolved) and none whose delivery was committed may be sent again. (A
//! kill between the receiver's answer and that commit repeats the message once, under the
//! same Idempotency-Key: the fault suite kills at random and counts those.)

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::receivers::{free_port, receiver, wait_until, Recorder};
use common::{closed_port, http_client, write};

const WAIT: Duration = Duration::from_secs(30);

struct Agent {
    child: Child,
    port: u16,
}

impl Agent {
    fn start(config: &Path, data: &Path) -> Agent {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_iocwatch"))
            .args(["run", "-c"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--storage.path"])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn iocwatch");
        Agent { child, port }
    }

    fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    async fn json(&self, path: &str) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        http_client().get(url).send().await.ok()?.json().await.ok()
    }

    async fn metrics(&self) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        http_client().get(url).send().await.ok()?.text().await.ok()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (status, idempotency key) of every message the receiver accepted.
fn messages(hook: &Recorder) -> Vec<(String, String)> {
    hook.all()
        .iter()
        .map(|r| {
            (
                r.json()["status"].as_str().unwrap_or_default().to_owned(),
                r.header("idempotency-key").unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until the agent's database records `n` messages as delivered: killed from then on,
/// the agent has nothing to send again.
async fn deliveries_committed(data: &Path, n: i64) {
    wait_until(WAIT, "the delivery committed to the database", || {
        let conn = iocwatch::store::open_read_only(data).ok()?;
        let done: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE done_at IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .ok()?;
        (done >= n).then_some(())
    })
    .await;
}

/// Waits until the receiver has refused at least `n` more attempts.
async fn refused_attempts(hook: &Recorder, n: usize) {
    let start = hook.fail_first.load(Ordering::SeqCst);
    wait_until(WAIT, "delivery attempts to the failing receiver", || {
        (start - hook.fail_first.load(Ordering::SeqCst) >= n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_and_sends_nothing_twice() {
    let (hook_addr, hook) = receiver().await;
    let port = closed_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("iocwatch.yaml");
    let data = dir.path().join("data");
    write(
        &config,
        &format!(
            r#"alerting:
  notifiers:
    - {{name: ops, webhook: {{url: "http://{hook_addr}/hook"}}}}
  rules: [{{alerts: {{down: {{keep_firing_for: 0s}}}}}}]
areas: [{{code: "15", name: Tỉnh Lào Cai}}]
targets:
  - id: mail
    area: "15"
    address: 127.0.0.1
    interval: 1s
    timeout: 500ms
    checks: [tcp: {{port: {port}, name: smtp}}]
"#
        ),
    );

    // 1. The target is down; the firing message is delivered and its delivery committed; the
    //    agent is killed.
    let first = Agent::start(&config, &data);
    wait_until(WAIT, "the firing message", || {
        (!hook.all().is_empty()).then_some(())
    })
    .await;
    deliveries_committed(&data, 1).await;
    first.kill_9();
    assert_eq!(messages(&hook).len(), 1);

    // 2. Restarted with the target still down: the alert is picked up, nothing is re-sent.
    let second = Agent::start(&config, &data);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let notified = second.json("/api/v1/alerts").await.is_some_and(|v| {
            v["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["notified"] == true))
        });
        // Several rounds after the restart, each of them bad.
        let rounds = second.metrics().await.and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("iocwatch_probe_failures_total") && l.contains("refused"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        });
        if notified && rounds.is_some_and(|n| n >= 5.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "restarted agent did not pick up the alert"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(messages(&hook).len(), 1, "a restart sends nothing twice");

    // 3. The receiver goes down, the target comes back: the resolved message waits in the
    //    outbox while attempts fail; the agent is killed again.
    hook.fail_first.store(1_000_000, Ordering::SeqCst);
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("open the target's port");
    std::thread::spawn(move || for _ in listener.incoming() {});
    refused_attempts(&hook, 2).await;
    second.kill_9();

    // 4. Receiver back, agent restarted: the resolution arrives, once.
    hook.fail_first.store(0, Ordering::SeqCst);
    let third = Agent::start(&config, &data);
    wait_until(WAIT, "the resolved message", || {
        (messages(&hook).len() >= 2).then_some(())
    })
    .await;
    let got = messages(&hook);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, "firing");
    assert_eq!(got[1].0, "resolved");
    let incident = got[0].1.strip_suffix("-firing").expect("firing id");
    assert_eq!(
        got[1].1,
        format!("{incident}-resolved"),
        "one incident, stable ids"
    );
    // The history as the API gives it, across the three lives of the agent.
    let history = third
        .json("/api/v1/incidents?days=1")
        .await
        .expect("incident history");
    let incidents = history["incidents"].as_array().expect("incidents");
    assert_eq!(incidents.len(), 1, "{history:#}");
    assert_eq!(incidents[0]["id"], incident);
    assert_eq!(incidents[0]["alertname"], "IocwatchTargetDown");
    assert!(incidents[0]["ended_at"].is_string(), "{history:#}");
    drop(third);

    // The incident history is intact.
    let store = iocwatch::store::Store::open(&data).await.expect("database");
    let incidents = store.incidents(0, 10).await.expect("incidents");
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert!(incidents[0].notified);
    assert!(incidents[0].ended_at.is_some());
    assert_eq!(incidents[0].target, "mail");
}
