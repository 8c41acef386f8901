//! Security signals end to end: a page the test defaces is reported as changed, a forbidden
//! phrase fails its check at once, and `iocwatch baseline accept` (through the running agent's
//! API) makes a legitimate change the new baseline.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestAgent;
use iocwatch::probe::test_servers::{response, serve};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defacement_is_reported_and_a_legitimate_change_accepted() {
    let page = Arc::new(Mutex::new(
        "<h1>Cổng thông tin điện tử tỉnh Lào Cai</h1><p>Hôm nay: 23/11/2026</p>".to_owned(),
    ));
    let served = Arc::clone(&page);
    let port = serve(
        move |_| {
            let body = served.lock().expect("page").clone();
            response("200 OK", "", &body)
        },
        None,
    )
    .await;
    let config = format!(
        r#"defaults: {{interval: 1s, timeout: 800ms}}
areas: [{{code: "15", name: Tỉnh Lào Cai}}]
targets:
  - id: cong-tinh
    area: "15"
    checks:
      - http:
          url: "http://127.0.0.1:{port}/"
          content:
            ignore: ['Hôm nay: [0-9/]+']
            forbidden: ["hacked by"]
"#
    );
    let agent = TestAgent::start(&[("iocwatch.yaml", &config)]).await;
    let portal = [("target", "cong-tinh")];
    agent
        .wait_for(WAIT, "the baseline round", |m| {
            m.value("iocwatch_content_changed", &portal) == Some(0.0)
        })
        .await;

    // The date moves on: an ignored region, no change.
    *page.lock().expect("page") =
        "<h1>Cổng thông tin điện tử tỉnh Lào Cai</h1><p>Hôm nay: 24/11/2026</p>".to_owned();
    let seen = agent
        .metrics()
        .await
        .value("iocwatch_probe_last_run_timestamp_seconds", &portal)
        .unwrap_or(0.0);
    let m = agent
        .wait_for(WAIT, "a round on the new date", |m| {
            m.value("iocwatch_probe_last_run_timestamp_seconds", &portal)
                .unwrap_or(0.0)
                > seen + 1.0
        })
        .await;
    assert_eq!(m.value("iocwatch_content_changed", &portal), Some(0.0));

    // A new notice is published: a change, the check itself still succeeds.
    *page.lock().expect("page") =
        "<h1>Cổng thông tin điện tử tỉnh Lào Cai</h1><p>Thông báo lịch tiếp dân</p>".to_owned();
    agent
        .wait_for(WAIT, "the change", |m| {
            m.value("iocwatch_content_changed", &portal) == Some(1.0)
        })
        .await;
    assert_eq!(
        agent
            .metrics()
            .await
            .value("iocwatch_probe_success", &portal),
        Some(1.0)
    );

    // The owner confirms it: the CLI asks the running agent to accept the page.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_iocwatch"))
        .args(["baseline", "accept", "cong-tinh", "--agent", &agent.url("")])
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"accepted\":[\"http\"]"), "{stdout}");
    agent
        .wait_for(WAIT, "the accepted page", |m| {
            m.value("iocwatch_content_changed", &portal) == Some(0.0)
        })
        .await;

    // Defaced with a forbidden phrase: changed, and the check fails at once.
    *page.lock().expect("page") = "<h1>Hacked by someone</h1>".to_owned();
    let m = agent
        .wait_for(WAIT, "the defacement", |m| {
            m.value("iocwatch_content_forbidden_phrase_found", &portal) == Some(1.0)
                && m.value("iocwatch_probe_success", &portal) == Some(0.0)
        })
        .await;
    assert_eq!(m.value("iocwatch_content_changed", &portal), Some(1.0));
    assert!(m
        .value(
            "iocwatch_probe_failures_total",
            &[("target", "cong-tinh"), ("reason", "content")]
        )
        .is_some());

    // An unknown target is refused.
    let (status, _) = agent.post("/api/v1/baselines/accept?target=nope").await;
    assert_eq!(status, 404);
    agent.stop().await;
}

/// Baselines live in the embedded database: an answer that changed while the agent was down
/// is reported on the first round after the restart, not taken as the new normal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baselines_survive_a_restart() {
    let dns = iocwatch::probe::test_servers::DnsServer::start().await;
    dns.set("dichvucong.laocai.gov.vn", &["127.0.10.1"]);
    let storage = tempfile::tempdir().expect("storage");
    let config = format!(
        "defaults: {{interval: 1s, timeout: 800ms}}\nareas: [{{code: \"15\", name: Lào Cai}}]\ntargets:\n  - id: dns-tinh\n    area: \"15\"\n    checks: [dns: {{query: dichvucong.laocai.gov.vn, server: \"{}\"}}]\n",
        dns.addr
    );
    let files = [("iocwatch.yaml", config.as_str())];
    let with_storage = |o: &mut iocwatch::Options| o.storage = Some(storage.path().to_owned());
    let dns_check = [("target", "dns-tinh")];

    let agent = TestAgent::start_with(&files, with_storage).await;
    agent
        .wait_for(WAIT, "the first answer", |m| {
            m.value("iocwatch_dns_answer_changed", &dns_check) == Some(0.0)
        })
        .await;
    agent.stop().await;

    // Hijacked while the agent was down.
    dns.set("dichvucong.laocai.gov.vn", &["127.66.6.6"]);
    let agent = TestAgent::start_with(&files, with_storage).await;
    agent
        .wait_for(WAIT, "the change after the restart", |m| {
            m.value("iocwatch_dns_answer_changed", &dns_check) == Some(1.0)
        })
        .await;
    assert!(storage.path().join("iocwatch.db").exists());
    agent.stop().await;
}
