//! End to end with a real Prometheus (Debian package prometheus): it scrapes an agent running
//! a test config on loopback and loads the rule files from deploy/; then every PromQL
//! expression of every dashboard and every rule is evaluated through Prometheus's HTTP API.
//! A typo or a missing metric fails the test. Also lints the dashboards the way Grafana
//! file provisioning needs them.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{closed_port, http_server, https_server, TestAgent};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// Metrics that later issues add: their panels must have valid queries, but may return
/// nothing yet. None today.
const NOT_YET_EXPORTED: [&str; 0] = [];

fn root(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn dashboards() -> Vec<(String, Value)> {
    let mut boards = Vec::new();
    for entry in std::fs::read_dir(root("dashboards")).expect("dashboards/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("read");
            let board: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            boards.push((
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                board,
            ));
        }
    }
    boards.sort_by(|a, b| a.0.cmp(&b.0));
    boards
}

/// Every (dashboard, panel title, expr).
fn dashboard_queries() -> Vec<(String, String, String)> {
    let mut queries = Vec::new();
    for (name, board) in dashboards() {
        for panel in board["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr").to_owned();
                queries.push((
                    name.clone(),
                    panel["title"].as_str().unwrap_or("").to_owned(),
                    expr,
                ));
            }
        }
    }
    queries
}

#[test]
fn dashboards_are_provisionable_and_generated() {
    let boards = dashboards();
    assert_eq!(
        boards.len(),
        6,
        "province, area, target, systems, security, agent"
    );
    let mut uids = HashSet::new();
    for (name, board) in &boards {
        let uid = board["uid"].as_str().expect("uid");
        assert!(uids.insert(uid.to_owned()), "{name}: duplicate uid {uid}");
        assert_eq!(
            format!("{uid}.json"),
            *name,
            "file named after its stable uid"
        );
        assert_eq!(board["schemaVersion"], 41, "{name}");
        let text = board.to_string();
        assert!(
            !text.contains("DS_PROMETHEUS") && board.get("__inputs").is_none(),
            "{name}: import-only data source"
        );
        let vars = board["templating"]["list"].as_array().expect("templating");
        assert!(
            vars.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{name}: needs the datasource variable"
        );
        for panel in board["panels"].as_array().expect("panels") {
            let title = panel["title"].as_str().expect("title");
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}/{title}"
            );
            let targets = panel["targets"].as_array().expect("targets");
            assert!(
                !targets.is_empty(),
                "{name}/{title}: a panel without a query"
            );
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}/{title}");
                assert!(
                    !t["expr"].as_str().unwrap_or("").is_empty(),
                    "{name}/{title}"
                );
            }
            assert!(
                panel["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{name}/{title}: English description"
            );
        }
    }
    let out = Command::new("python3")
        .arg(root("dashboards/generate.py"))
        .arg("--check")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills Prometheus when the test ends, passed or not.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(agent: std::net::SocketAddr) -> Prometheus {
    let dir = tempfile::tempdir().expect("tempdir");
    // The rules as shipped, with the recording group evaluated every second instead of 30s.
    let mut rule_files = Vec::new();
    for name in ["iocwatch-recording.yml", "iocwatch-alerts.yml"] {
        let text =
            std::fs::read_to_string(root("deploy/prometheus/rules").join(name)).expect("rules");
        let path = dir.path().join(name);
        std::fs::write(&path, text.replace("interval: 30s", "interval: 1s")).expect("write");
        rule_files.push(path.display().to_string());
    }
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: {rule_files:?}\n\
         scrape_configs:\n  - job_name: iocwatch\n    static_configs:\n      - targets: [\"{agent}\"]\n"
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).expect("write config");
    let port = closed_port();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "prometheus must be installed (Debian package prometheus); .ci/test.sh installs it",
        );
    Prometheus {
        child,
        port,
        _dir: dir,
    }
}

async fn query(client: &reqwest::Client, port: u16, expr: &str) -> Value {
    let url = reqwest::Url::parse_with_params(
        &format!("http://127.0.0.1:{port}/api/v1/query"),
        [("query", expr)],
    )
    .expect("url");
    let response = client.get(url).send().await.expect("query");
    serde_json::from_str(&response.text().await.expect("body")).expect("json")
}

fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "10s")
        .replace("$__range", "30s")
        .replace("$province", "15")
        .replace("$area", "02947")
        .replace("$target", "portal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_rule_query_returns_data_from_a_real_prometheus() {
    let web = http_server("<h1>Cổng dịch vụ công</h1>").await;
    let (tls, ca_pem) = https_server("secure", 2031).await;
    let dns = iocwatch::probe::test_servers::DnsServer::start().await;
    dns.set("dichvucong.laocai.gov.vn", &["127.0.10.1"]);
    let closed = closed_port();
    let ca = tempfile::NamedTempFile::new().expect("ca file");
    std::fs::write(ca.path(), ca_pem).expect("write ca");
    let (hook, _hooked) = common::receivers::receiver().await;
    let config = format!(
        r#"defaults: {{interval: 1s, timeout: 800ms}}
alerting:
  notifiers:
    - {{name: ops, webhook: {{url: "http://{hook}/hook"}}}}
areas:
  - code: "15"
    name: Tỉnh Lào Cai
    level: province
    geo: {{lat: 22.1, lon: 104.3}}
    children:
      - {{code: "02947", name: Xã Bảo Yên, kind: xa, level: commune, geo: {{lat: 22.2155, lon: 104.4914}}}}
      - {{code: "02839", name: Xã Bắc Hà, kind: xa, level: commune, geo: {{lat: 22.5338, lon: 104.2946}}}}
systems:
  - {{id: dichvucong, name: Cổng dịch vụ công, owner: hcc}}
targets:
  - id: tslcd-gw
    area: "15"
    address: 127.0.0.1
    labels: {{role: gateway, owner: vnpt}}
    checks: [icmp: {{count: 2, spacing: 10ms}}]
  - id: portal
    area: "02947"
    address: 127.0.0.1
    system: dichvucong
    labels: {{owner: hcc}}
    checks:
      - icmp: {{count: 2, spacing: 10ms}}
      - http: {{url: "http://{web}/", body_match: "Cổng", security_headers: true, content: {{forbidden: ["hacked by"]}}}}
      - http: {{name: https, url: "https://localhost:{port}/", ca_file: {ca:?}, ip_family: ip4}}
      - tls: {{port: {port}, server_name: localhost, ca_file: {ca:?}}}
      - tcp: {{port: {closed}, name: admin}}
      # The web server's port, audited as if it were a database left open: a finding.
      - ports: {{audit: [{web_port}, {closed}], spacing: 10ms, connect_timeout: 200ms}}
  - id: dns-tinh
    area: "15"
    labels: {{owner: hcc}}
    checks:
      - dns: {{query: dichvucong.laocai.gov.vn, server: "{dns}", expect_answers: ["127.0.10.1"]}}
  - id: ubnd-02839
    area: "02839"
    address: 127.0.0.1
    labels: {{uplink: tslcd-gw, owner: vnpt}}
    checks:
      - icmp: {{count: 2, spacing: 10ms}}
      - tcp: {{port: {closed}, name: smtp}}
"#,
        port = tls.port(),
        dns = dns.addr,
        web_port = web.port(),
        ca = ca.path().display().to_string(),
    );
    let agent = TestAgent::start(&[("iocwatch.yaml", &config)]).await;
    let prometheus = start_prometheus(agent.addr);
    let client = agent.client.clone();

    // Wait until Prometheus has scraped enough for rate() over 10s and has evaluated the rules.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ready = match client
            .get(format!("http://127.0.0.1:{}/-/ready", prometheus.port))
            .send()
            .await
        {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        };
        if ready {
            let samples = query(
                &client,
                prometheus.port,
                "count_over_time(up{job=\"iocwatch\"}[1m])",
            )
            .await;
            let n = samples["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok());
            let recorded =
                query(&client, prometheus.port, "iocwatch:area_availability:ratio").await;
            if n.is_some_and(|n| n >= 8.0)
                && recorded["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus did not scrape the agent in time"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let mut failures = Vec::new();
    for (board, panel, expr) in dashboard_queries() {
        let concrete = substitute(&expr);
        let answer = query(&client, prometheus.port, &concrete).await;
        let may_be_empty = NOT_YET_EXPORTED.iter().any(|m| expr.contains(m));
        if answer["status"] != "success" {
            failures.push(format!(
                "{board} / {panel}: {} — {concrete}",
                answer["error"]
            ));
        } else if !may_be_empty
            && answer["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty())
        {
            failures.push(format!("{board} / {panel}: no data — {concrete}"));
        }
    }

    // Every rule loaded and evaluated without error; every recording rule produced data.
    let rules: Value = serde_json::from_str(
        &client
            .get(format!("http://127.0.0.1:{}/api/v1/rules", prometheus.port))
            .send()
            .await
            .expect("rules")
            .text()
            .await
            .expect("body"),
    )
    .expect("json");
    let groups = rules["data"]["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{rules}");
    let mut seen_rules = 0;
    for group in groups {
        for rule in group["rules"].as_array().expect("rules") {
            seen_rules += 1;
            if rule["health"] != "ok" {
                failures.push(format!(
                    "rule {}: health {} {}",
                    rule["name"], rule["health"], rule["lastError"]
                ));
            }
            if rule["type"] == "recording" {
                let name = rule["name"].as_str().expect("name");
                let answer = query(&client, prometheus.port, name).await;
                if answer["data"]["result"]
                    .as_array()
                    .is_none_or(|r| r.is_empty())
                {
                    failures.push(format!("recording rule {name}: no data"));
                }
            }
        }
    }
    assert_eq!(seen_rules, 29);
    assert!(
        failures.is_empty(),
        "{} queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The map query carries coordinates Grafana converts to numbers.
    let map = query(
        &client,
        prometheus.port,
        &substitute(
            &dashboard_queries()
                .into_iter()
                .find(|q| q.1.starts_with("Bản đồ"))
                .expect("geomap")
                .2,
        ),
    )
    .await;
    let rows = map["data"]["result"].as_array().expect("rows");
    assert!(
        rows.iter()
            .any(|r| r["metric"]["lat"] == "22.2155" && r["metric"]["name"] == "Xã Bảo Yên"),
        "{map}"
    );
    agent.stop().await;
}
