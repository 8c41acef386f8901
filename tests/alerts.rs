//! Alerts end to end, for real: a gateway namespace with commune namespaces routed behind
//! it; cutting the gateway's link must bring exactly one root-cause alert to a real
//! Alertmanager (and one message to a webhook), the communes unreachable and suppressed;
//! restoring it must resolve everything.

mod common;

use std::time::Duration;

use common::netns::TestHost;
use common::receivers::{receiver, wait_until, Alertmanager};
use common::TestAgent;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_gateway_brings_one_root_cause_alert_to_alertmanager() {
    let gateway = TestHost::new();
    let communes: Vec<TestHost> = (0..3).map(|_| TestHost::behind(&gateway)).collect();
    let (am_hook, am_received) = receiver().await;
    let am = Alertmanager::start(am_hook).await;
    // A second Alertmanager (an HA pair is configured as two): each gets every alert.
    let (second_hook, _) = receiver().await;
    let second = Alertmanager::start(second_hook).await;
    let (hook, hooked) = receiver().await;

    let mut config = format!(
        r#"defaults: {{interval: 1s, timeout: 700ms}}
alerting:
  external_url: http://127.0.0.1:10090/
  notifiers:
    - name: am
      alertmanager: {{urls: ["{am}", "{second}"], resend_interval: 2s}}
    - name: ops
      webhook: {{url: "http://{hook}/hook"}}
  # Resolve as soon as two good rounds say so: this test waits for the resolution.
  rules: [{{alerts: {{down: {{keep_firing_for: 0s}}}}}}]
areas:
  - code: "15"
    name: Tỉnh Lào Cai
    level: province
    children:
      - code: g1
        name: Huyện Bảo Yên (cũ)
        kind: group
        children:
          - {{code: "02947", name: Xã Bảo Yên}}
          - {{code: "02950", name: Xã Nghĩa Đô}}
          - {{code: "02953", name: Xã Xuân Hòa}}
targets:
  - id: gw-bao-yen
    name: Cổng Bảo Yên
    area: g1
    address: {gw}
    labels: {{role: gateway}}
    checks: [icmp: {{count: 2, spacing: 50ms}}]
"#,
        am = am.url,
        second = second.url,
        gw = gateway.peer_ip,
    );
    for (commune, code) in communes.iter().zip(["02947", "02950", "02953"]) {
        config.push_str(&format!(
            "  - {{id: ubnd-{code}, area: \"{code}\", address: {}, depends_on: [gw-bao-yen], checks: [icmp: {{count: 2, spacing: 50ms}}]}}\n",
            commune.peer_ip
        ));
    }
    let agent = TestAgent::start(&[("iocwatch.yaml", &config)]).await;
    agent
        .wait_for(WAIT, "every target up", |m| {
            m.values("iocwatch_probe_success", &[]).len() == 4
                && m.values("iocwatch_probe_success", &[])
                    .iter()
                    .all(|v| *v == 1.0)
        })
        .await;

    gateway.cut();
    // One alert at Alertmanager, for the gateway, carrying what sits behind it.
    let deadline = tokio::time::Instant::now() + WAIT;
    let alert = loop {
        let alerts = am.alerts().await;
        if let Some(a) = alerts.iter().find(|a| {
            a["labels"]["target"] == "gw-bao-yen" && a["annotations"]["affected_targets"] == "3"
        }) {
            assert_eq!(
                alerts.len(),
                1,
                "only the root cause reaches Alertmanager: {alerts:#?}"
            );
            break a.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no root-cause alert at Alertmanager: {alerts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !second
        .alerts()
        .await
        .iter()
        .any(|a| a["labels"]["target"] == "gw-bao-yen")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second Alertmanager did not get the alert"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(alert["labels"]["alertname"], "IocwatchTargetDown");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["role"], "gateway");
    assert_eq!(alert["labels"]["area_path"], "15/g1");
    assert_eq!(alert["labels"]["province"], "15");
    assert_eq!(
        alert["annotations"]["affected_areas"],
        "Xã Bảo Yên, Xã Nghĩa Đô, Xã Xuân Hòa"
    );
    assert!(alert["annotations"]["summary"]
        .as_str()
        .expect("summary")
        .contains("Mất kết nối: Cổng Bảo Yên (gw-bao-yen)"));

    // The communes: unreachable, their alerts suppressed and naming the root cause.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = agent.get("/api/v1/alerts").await;
        let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let alerts = view["alerts"].as_array().cloned().unwrap_or_default();
        let suppressed: Vec<_> = alerts
            .iter()
            .filter(|a| {
                a["alertname"] == "IocwatchTargetDown"
                    && a["state"] == "suppressed"
                    && a["root_cause"][0] == "gw-bao-yen"
            })
            .collect();
        if suppressed.len() == 3 {
            let gw = alerts
                .iter()
                .find(|a| a["target"] == "gw-bao-yen" && a["alertname"] == "IocwatchTargetDown")
                .expect("gateway alert");
            assert_eq!(gw["state"], "firing");
            assert_eq!(gw["affected_targets"], 3);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "communes not suppressed: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = agent.metrics().await;
    assert_eq!(
        m.value(
            "iocwatch_alerts",
            &[("state", "suppressed"), ("severity", "critical")]
        ),
        Some(3.0)
    );
    assert_eq!(
        m.value(
            "iocwatch_area_targets",
            &[("area", "g1"), ("state", "unreachable")]
        ),
        Some(3.0)
    );

    gateway.restore();
    // Resolved in the agent, at Alertmanager, and by Alertmanager's own notification.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = agent.get("/api/v1/alerts").await;
        let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        if view["alerts"].as_array().is_some_and(|a| a.is_empty()) && am.alerts().await.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alerts did not resolve: {view:#}\nAlertmanager: {:#?}",
            am.alerts().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until(WAIT, "Alertmanager to send the resolution", || {
        am_received
            .all()
            .iter()
            .any(|r| r.json()["status"] == "resolved")
            .then_some(())
    })
    .await;
    // Over the whole run: Alertmanager only ever notified about the gateway, and the webhook
    // got one firing and one resolved message, each with its own stable id.
    for r in am_received.all() {
        for a in r.json()["alerts"].as_array().expect("alerts") {
            assert_eq!(a["labels"]["target"], "gw-bao-yen", "{a:#}");
        }
    }
    let messages: Vec<(String, String, String)> = hooked
        .all()
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["target"].as_str().unwrap_or_default().to_owned(),
                body["status"].as_str().unwrap_or_default().to_owned(),
                r.header("idempotency-key").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(
        (messages[0].0.as_str(), messages[0].1.as_str()),
        ("gw-bao-yen", "firing")
    );
    assert_eq!(
        (messages[1].0.as_str(), messages[1].1.as_str()),
        ("gw-bao-yen", "resolved")
    );
    assert!(messages[0].2.ends_with("-firing") && messages[1].2.ends_with("-resolved"));
    agent.stop().await;
    drop(communes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_link_gives_one_alert_not_a_storm() {
    let host = TestHost::new();
    let (hook, hooked) = receiver().await;
    let config = format!(
        r#"defaults: {{interval: 1s, timeout: 500ms}}
alerting:
  notifiers:
    - {{name: ops, webhook: {{url: "http://{hook}/hook"}}}}
areas: [{{code: "15", name: Tỉnh Lào Cai}}]
targets:
  - id: radio-link
    area: "15"
    address: {ip}
    checks: [icmp: {{count: 1}}]
"#,
        ip = host.peer_ip
    );
    let agent = TestAgent::start(&[("iocwatch.yaml", &config)]).await;
    agent
        .wait_for(WAIT, "the link up", |m| {
            m.value("iocwatch_probe_success", &[("target", "radio-link")]) == Some(1.0)
        })
        .await;
    // Three drops, each seen by at least one round and each followed by a good round: six
    // changes of state, the flapping threshold.
    drop_and_restore(&host, &agent, 3).await;
    // One incident: its firing message is marked flapping, or (if one drop lasted the
    // three rounds that fire `down`) a firing message and then one flapping notice.
    let flapping = wait_until(WAIT, "the flapping alert", || {
        hooked
            .all()
            .into_iter()
            .find(|r| r.json()["flapping"] == true)
    })
    .await;
    let body = flapping.json();
    assert_eq!(body["status"], "firing");
    assert!(body["title"]
        .as_str()
        .is_some_and(|t| t.contains("(chập chờn)")));
    let incident = |r: &common::receivers::Received| {
        r.header("idempotency-key")
            .and_then(|k| k.split('-').next())
            .map(str::to_owned)
    };
    let sent = hooked.all();
    assert!(sent.len() <= 2, "{} messages", sent.len());
    assert!(sent.iter().all(|r| incident(r) == incident(&flapping)));
    // Two more drops: still that one alert.
    drop_and_restore(&host, &agent, 2).await;
    let (_, view) = agent.get("/api/v1/alerts").await;
    let view: serde_json::Value = serde_json::from_str(&view).expect("JSON");
    let alert = &view["alerts"][0];
    assert_eq!(alert["state"], "firing");
    assert_eq!(alert["flapping"], true, "{view:#}");
    assert_eq!(
        hooked.all().len(),
        sent.len(),
        "nothing more: one alert, not a storm"
    );
    agent.stop().await;
}

/// Cuts and restores the host's link `times` times, each state seen by at least one round.
async fn drop_and_restore(host: &TestHost, agent: &TestAgent, times: usize) {
    let success = [("target", "radio-link"), ("kind", "icmp")];
    for _ in 0..times {
        host.cut();
        agent
            .wait_for(WAIT, "a failed round", |m| {
                m.value("iocwatch_probe_success", &success) == Some(0.0)
            })
            .await;
        host.restore();
        agent
            .wait_for(WAIT, "a good round", |m| {
                m.value("iocwatch_probe_success", &success) == Some(1.0)
            })
            .await;
    }
}
