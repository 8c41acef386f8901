//! Two agents as a high-availability pair: the same config, both probing, both sending to a
//! pair of Alertmanagers clustered on loopback. Alertmanager merges equal label sets and
//! its cluster deduplicates notifications, so exactly one notification per root cause
//! reaches the receiver, and one resolution. (Direct channels such as a webhook would get
//! each agent's message: the README says to send them through Alertmanager in this set-up.)

mod common;

use std::time::Duration;

use common::process::{AgentProcess, Toggle};
use common::receivers::{receiver, wait_until, Alertmanager};
use common::write;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_pair_brings_one_notification_per_root_cause() {
    let (hook, received) = receiver().await;
    let pair = Alertmanager::cluster(hook, 2).await;
    let mut mail = Toggle::new();
    mail.up().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("iocwatch.yaml");
    write(
        &config,
        &format!(
            r#"defaults: {{interval: 1s, timeout: 500ms}}
alerting:
  notifiers:
    - name: am
      alertmanager: {{urls: ["{a}", "{b}"], resend_interval: 1s}}
  rules: [{{alerts: {{down: {{keep_firing_for: 0s}}}}}}]
areas: [{{code: "15", name: Tỉnh Lào Cai}}]
targets:
  - {{id: mail, area: "15", address: 127.0.0.1, checks: [tcp: {{port: {port}, name: smtp}}]}}
"#,
            a = pair[0].url,
            b = pair[1].url,
            port = mail.port
        ),
    );
    let agents = [
        AgentProcess::start(&config, &dir.path().join("data-a")),
        AgentProcess::start(&config, &dir.path().join("data-b")),
    ];
    for agent in &agents {
        agent
            .wait_for(WAIT, "mail up", |m| {
                m.value("iocwatch_probe_success", &[("target", "mail")]) == Some(1.0)
            })
            .await;
    }
    mail.down().await;
    let notifications = || -> Vec<(String, String)> {
        received
            .all()
            .iter()
            .flat_map(|r| {
                let body = r.json();
                body["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|a| a["labels"]["target"] == "mail")
                    .map(|a| {
                        (
                            a["status"].as_str().unwrap_or_default().to_owned(),
                            a["labels"]["alertname"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    wait_until(WAIT, "the notification", || {
        (!notifications().is_empty()).then_some(())
    })
    .await;
    // Both agents keep sending to both Alertmanagers: several re-sends of each (resend
    // every second) pass before the link comes back, time enough for a second copy.
    for agent in &agents {
        let sent = |m: &common::Metrics| {
            m.value(
                "iocwatch_notifications_total",
                &[("notifier", "am"), ("result", "success")],
            )
            .unwrap_or(0.0)
        };
        let now = agent.metrics().await.map_or(0.0, |m| sent(&m));
        agent
            .wait_for(WAIT, "more re-sends", |m| sent(m) >= now + 6.0)
            .await;
    }
    mail.up().await;
    wait_until(WAIT, "the resolution", || {
        notifications()
            .iter()
            .any(|(status, _)| status == "resolved")
            .then_some(())
    })
    .await;
    let got = notifications();
    println!("HA pair: notifications at the receiver: {got:?}");
    assert_eq!(
        got,
        [
            ("firing".to_owned(), "IocwatchTargetDown".to_owned()),
            ("resolved".to_owned(), "IocwatchTargetDown".to_owned())
        ],
        "one notification and one resolution from two agents and two Alertmanagers"
    );
}
