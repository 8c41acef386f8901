//! Three shards of one config keep the root cause: a gateway namespace with six communes
//! behind it, the communes spread over the shards. Each shard probes the gateway too (the
//! upstream of its communes) but only its owner exports and alerts on it; cutting the
//! gateway must bring exactly one notification (the gateway's) to a real Alertmanager and to
//! a webhook, every shard must hold its communes suppressed behind the gateway, and the
//! rollups summed over the shards must tell the truth.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::netns::TestHost;
use common::receivers::{receiver, wait_until, Alertmanager};
use common::{Metrics, TestAgent};
use iocwatch::catalog::Shard;

const WAIT: Duration = Duration::from_secs(60);
const SHARDS: u32 = 3;
const GATEWAY: &str = "gw-bao-yen";

/// Two commune ids per shard, so that every shard holds communes behind the gateway.
fn communes() -> Vec<String> {
    let mut picked: Vec<String> = Vec::new();
    for index in 0..SHARDS {
        let shard = Shard {
            index,
            count: SHARDS,
        };
        picked.extend(
            (0..)
                .map(|n| format!("ubnd-{n:05}"))
                .filter(|id| shard.owns(id))
                .take(2),
        );
    }
    picked
}

fn sum(shards: &[Metrics], state: &str) -> f64 {
    shards
        .iter()
        .filter_map(|m| m.value("iocwatch_area_targets", &[("area", "15"), ("state", state)]))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_bring_one_root_cause_and_rollups_that_add_up() {
    let gateway = TestHost::new();
    let ids = communes();
    let hosts: Vec<TestHost> = ids.iter().map(|_| TestHost::behind(&gateway)).collect();
    let (am_hook, am_received) = receiver().await;
    let am = Alertmanager::start(am_hook).await;
    let (hook, hooked) = receiver().await;

    let mut config = format!(
        r#"defaults: {{interval: 1s, timeout: 700ms}}
alerting:
  notifiers:
    - name: am
      alertmanager: {{urls: ["{am}"], resend_interval: 2s}}
    - name: ops
      webhook: {{url: "http://{hook}/hook"}}
  # Resolve as soon as good rounds say so: this test waits for the resolution.
  rules: [{{alerts: {{down: {{keep_firing_for: 0s}}}}}}]
areas:
  - code: "15"
    name: Tỉnh Lào Cai
    children:
      - {{code: g1, name: Huyện Bảo Yên (cũ), kind: group}}
targets:
  - {{id: {GATEWAY}, area: g1, address: {gw}, labels: {{role: gateway}}, checks: [icmp: {{count: 2, spacing: 50ms}}]}}
"#,
        am = am.url,
        gw = gateway.peer_ip,
    );
    for (id, host) in ids.iter().zip(&hosts) {
        config.push_str(&format!(
            "  - {{id: {id}, area: g1, address: {}, depends_on: [{GATEWAY}], checks: [icmp: {{count: 2, spacing: 50ms}}]}}\n",
            host.peer_ip
        ));
    }
    let files = [("iocwatch.yaml", config.as_str())];
    let mut agents = Vec::new();
    for index in 0..SHARDS {
        agents.push(
            TestAgent::start_with(&files, |o| {
                o.shard = Some(Shard {
                    index,
                    count: SHARDS,
                })
            })
            .await,
        );
    }
    let scrape = || async {
        let mut all = Vec::new();
        for agent in &agents {
            all.push(agent.metrics().await);
        }
        all
    };
    // Up: the gateway and every commune answer.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let shards = scrape().await;
        let icmp_ok = shards
            .iter()
            .flat_map(|m| m.values("iocwatch_probe_success", &[("check", "icmp")]))
            .filter(|v| *v == 1.0)
            .count();
        if icmp_ok == ids.len() + 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every target answers: {icmp_ok}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The union of the shards' series is every check exactly once.
    let shards = scrape().await;
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for m in &shards {
        for line in
            m.0.lines()
                .filter(|l| l.starts_with("iocwatch_probe_success{"))
        {
            let label = |name: &str| {
                line.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_default()
                    .to_owned()
            };
            *seen.entry((label("target"), label("check"))).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 1 + ids.len(), "{seen:?}");
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    // Every shard probes the gateway (the shards that do not own it count it configured).
    for m in &shards {
        assert!(
            m.value("iocwatch_checks_configured", &[("kind", "icmp")])
                .is_some_and(|n| n >= 3.0),
            "{}",
            m.0
        );
    }

    gateway.cut();
    // Every shard: its communes unreachable and their alerts suppressed by the gateway.
    for (index, agent) in agents.iter().enumerate() {
        let mine: Vec<&String> = ids
            .iter()
            .filter(|id| {
                Shard {
                    index: index as u32,
                    count: SHARDS,
                }
                .owns(id)
            })
            .collect();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_, body) = agent.get("/api/v1/alerts").await;
            let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            let alerts = view["alerts"].as_array().cloned().unwrap_or_default();
            let suppressed = alerts
                .iter()
                .filter(|a| {
                    a["alertname"] == "IocwatchTargetDown"
                        && a["state"] == "suppressed"
                        && a["root_cause"][0] == GATEWAY
                })
                .count();
            if suppressed == mine.len() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "shard {index}: communes {mine:?} not suppressed: {view:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // One root cause at Alertmanager, from the gateway's owner.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !am
        .alerts()
        .await
        .iter()
        .any(|a| a["labels"]["target"] == GATEWAY)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no gateway alert at Alertmanager: {:#?}",
            am.alerts().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shards = scrape().await;
    assert_eq!(sum(&shards, "down"), 1.0, "summed over shards");
    assert_eq!(sum(&shards, "unreachable"), ids.len() as f64);
    assert_eq!(
        shards
            .iter()
            .filter_map(|m| m.value(
                "iocwatch_alerts",
                &[("state", "firing"), ("severity", "critical")]
            ))
            .sum::<f64>(),
        1.0
    );
    // Alertmanager gets re-sends every 2 s: two more, and still one alert.
    let owner = agents
        .iter()
        .zip(0..SHARDS)
        .find(|(_, index)| {
            Shard {
                index: *index,
                count: SHARDS,
            }
            .owns(GATEWAY)
        })
        .map(|(agent, _)| agent)
        .expect("an owner");
    let before = owner
        .metrics()
        .await
        .value(
            "iocwatch_notifications_total",
            &[("notifier", "am"), ("result", "success")],
        )
        .unwrap_or(0.0);
    owner
        .wait_for(WAIT, "two more sends to Alertmanager", |m| {
            m.value(
                "iocwatch_notifications_total",
                &[("notifier", "am"), ("result", "success")],
            )
            .is_some_and(|n| n >= before + 2.0)
        })
        .await;
    let now = am.alerts().await;
    assert_eq!(now.len(), 1, "one alert at Alertmanager: {now:#?}");
    assert_eq!(now[0]["labels"]["alertname"], "IocwatchTargetDown");
    assert_eq!(now[0]["labels"]["target"], GATEWAY);
    for r in am_received.all() {
        for a in r.json()["alerts"].as_array().expect("alerts") {
            assert_eq!(a["labels"]["target"], GATEWAY, "{a:#}");
        }
    }

    gateway.restore();
    for agent in &agents {
        agent
            .wait_for(WAIT, "every alert resolved", |m| {
                m.values("iocwatch_alerts", &[]).iter().all(|v| *v == 0.0)
            })
            .await;
    }
    // The webhook: one firing and one resolved message, the gateway's, under keys of their
    // own; no commune paged by any shard.
    let messages = wait_until(WAIT, "the resolution at the webhook", || {
        let all = hooked.all();
        all.iter()
            .any(|r| r.json()["status"] == "resolved")
            .then_some(all)
    })
    .await;
    let seen: Vec<(String, String, String)> = messages
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
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str()),
        (GATEWAY, "firing")
    );
    assert_eq!(
        (seen[1].0.as_str(), seen[1].1.as_str()),
        (GATEWAY, "resolved")
    );
    assert!(seen[0].2.ends_with("-firing") && seen[0].2 != seen[1].2);
    for agent in agents {
        agent.stop().await;
    }
    drop(hosts);
}
