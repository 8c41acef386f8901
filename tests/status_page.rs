//! The status page and its JSON twin, from a running agent: the API answers with the areas,
//! incidents and targets, and headless Chromium renders the page (a screenshot is kept in
//! target/test-artifacts/ for a person to look at).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{closed_port, TestAgent};

const WAIT: Duration = Duration::from_secs(20);

fn config(closed: u16) -> String {
    format!(
        r#"defaults: {{interval: 1s, timeout: 800ms}}
areas:
  - code: "15"
    name: Tỉnh Lào Cai
    children:
      - {{code: "02839", name: Xã Bắc Hà, kind: xa}}
      - {{code: "02947", name: Xã Bảo Yên, kind: xa}}
systems:
  - {{id: email, name: Thư điện tử công vụ}}
targets:
  - id: tslcd-gw
    name: Cổng TSLCD
    area: "15"
    address: 127.0.0.1
    checks: [tcp: {{port: {closed}}}]
  - id: ubnd-02839
    name: UBND Xã Bắc Hà
    area: "02839"
    address: 127.0.0.1
    depends_on: [tslcd-gw]
    checks: [tcp: {{port: {closed}}}]
  - id: ubnd-02947
    area: "02947"
    address: 127.0.0.2
    system: email
    checks: [icmp: {{count: 1}}]
"#
    )
}

async fn started() -> (TestAgent, serde_json::Value) {
    let agent = TestAgent::start(&[("iocwatch.yaml", &config(closed_port()))]).await;
    agent
        .wait_for(WAIT, "all targets to report", |m| {
            m.value(
                "iocwatch_area_targets",
                &[("area", "15"), ("state", "unknown")],
            ) == Some(0.0)
        })
        .await;
    // The snapshot is published every few seconds: wait until it shows both incidents.
    let deadline = tokio::time::Instant::now() + WAIT;
    let status = loop {
        let (code, body) = agent.get("/api/v1/status").await;
        assert_eq!(code, 200);
        let status: serde_json::Value = serde_json::from_str(&body).expect("json");
        if status["incidents"].as_array().is_some_and(|i| i.len() == 2) {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    (agent, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_status_names_root_causes_and_affected_targets() {
    let (agent, status) = started().await;
    // The gateway is down; the commune behind it is unreachable, not a second fault.
    assert_eq!(status["summary"]["down"], 1);
    assert_eq!(status["summary"]["unreachable"], 1);
    assert_eq!(status["summary"]["up"], 1);
    let root = &status["incidents"][0];
    assert_eq!(root["target"], "tslcd-gw");
    assert_eq!(root["affected"], 1);
    assert_eq!(root["reasons"][0], "refused");
    let behind = &status["incidents"][1];
    assert_eq!(behind["target"], "ubnd-02839");
    assert_eq!(behind["state"], "unreachable");
    assert_eq!(behind["root_causes"], serde_json::json!(["tslcd-gw"]));
    let area = status["areas"]
        .as_array()
        .expect("areas")
        .iter()
        .find(|a| a["code"] == "02839")
        .expect("area");
    assert_eq!(area["name"], "Xã Bắc Hà");
    assert_eq!(area["state"], "unreachable");
    assert_eq!(area["parent"], "15");
    let email = &status["systems"][0];
    assert_eq!(
        (email["id"].as_str(), email["state"].as_str()),
        (Some("email"), Some("up"))
    );
    agent.stop().await;
}

fn chromium(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().expect("profile dir");
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("chromium must be installed (Debian package chromium); .ci/test.sh installs it")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_status_page_in_both_languages() {
    let (agent, _) = started().await;
    let url = agent.url("/");
    let dom = chromium(&["--dump-dom", &url]);
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(html.contains("Tình trạng kết nối"), "{html}");
    assert!(html.contains("Xã Bắc Hà"), "area tree with diacritics");
    assert!(
        html.contains("Cổng TSLCD"),
        "incident with the target's name"
    );
    assert!(
        html.contains("ảnh hưởng 1 đối tượng"),
        "root cause with its affected count"
    );
    // Reasons in words, and how long the incident has lasted; no metric labels.
    assert!(html.contains("máy chủ từ chối kết nối"), "{html}");
    assert!(html.contains("đã kéo dài"), "{html}");
    assert!(!html.contains("(refused)"), "{html}");
    // The loopback ICMP check shows its RTT (hundredths of a millisecond), not the length
    // of its round.
    let icmp_row = html
        .split("<tr>")
        .find(|row| row.contains("ubnd-02947"))
        .expect("the ICMP target's row");
    let shown = icmp_row
        .split_once("icmp <span class=\"muted\">")
        .and_then(|(_, rest)| rest.split_once(" ms"))
        .map(|(figure, _)| figure.to_owned())
        .unwrap_or_default();
    assert!(
        shown.starts_with("0.") && shown.len() == 4 && shown.parse::<f64>().is_ok(),
        "RTT below a millisecond as 0.xx ms, got {shown:?} in {icmp_row}"
    );

    let english = chromium(&["--dump-dom", &format!("{url}?lang=en")]);
    let html = String::from_utf8_lossy(&english.stdout);
    assert!(
        html.contains("Current incidents") && html.contains("affects 1 targets"),
        "{html}"
    );
    assert!(
        html.contains("the server refused the connection") && html.contains("for "),
        "{html}"
    );

    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    for (name, width) in [
        ("status-wall.png", "1600,1000"),
        ("status-phone.png", "390,844"),
    ] {
        let path = artifacts.join(name);
        let _ = std::fs::remove_file(&path);
        let shot = chromium(&[
            &format!("--window-size={width}"),
            &format!("--screenshot={}", path.display()),
            &url,
        ]);
        let png = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "no screenshot ({e}): {}",
                String::from_utf8_lossy(&shot.stderr)
            )
        });
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            png.len() > 10_000,
            "a rendered page, not a blank one: {} bytes",
            png.len()
        );
    }
    agent.stop().await;
}
