//! The engine end to end inside the state owner, on tokio's paused clock: sequences of
//! probe outcomes per target → the messages queued in the outbox.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::Registry;

use crate::catalog::{Catalog, CheckKey};
use crate::notify::Event;
use crate::probe::{Detail, FailureReason, Outcome};
use crate::state::{ProbeResult, State};
use crate::store::Store;

const ROUND: Duration = Duration::from_secs(30);

fn catalog(alerting_extra: &str) -> Arc<Catalog> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("iocwatch.yaml");
    let text = format!(
        r#"areas:
  - code: "15"
    name: Tỉnh Lào Cai
    children:
      - {{code: "02947", name: Xã Bảo Yên}}
      - {{code: "02950", name: Xã Nghĩa Đô}}
systems:
  - {{id: dvc, name: Cổng dịch vụ công}}
alerting:
  external_url: http://127.0.0.1:10090/
  notifiers:
    - {{name: ops, webhook: {{url: "http://127.0.0.1:9/hook"}}}}
{alerting_extra}
targets:
  - {{id: gw, name: Cổng Bảo Yên, area: "15", address: 127.0.0.1, checks: [tcp: {{port: 1, name: link}}]}}
  - {{id: c1, area: "02947", address: 127.0.0.1, depends_on: [gw], checks: [tcp: {{port: 1, name: link}}]}}
  - {{id: c2, area: "02950", address: 127.0.0.1, system: dvc, depends_on: [gw], checks: [tcp: {{port: 1, name: link}}]}}
"#
    );
    std::fs::write(&path, text).expect("write");
    Arc::new(crate::config::load(&path).expect("valid config").catalog)
}

fn outcome(ok: bool) -> Outcome {
    Outcome {
        duration: Duration::from_millis(5),
        failure: (!ok).then_some(FailureReason::Timeout),
        detail: Detail::None,
    }
}

struct Harness {
    state: State,
    store: Arc<Store>,
}

impl Harness {
    fn new(catalog: &Arc<Catalog>, store: Arc<Store>) -> Harness {
        let state = State::new(
            Registry::new(),
            Arc::clone(catalog),
            Arc::clone(&store),
            Arc::default(),
        )
        .expect("state");
        Harness { state, store }
    }

    /// One round: each target's result ('B' bad, 'G' good, '.' no result), then the tick.
    async fn round(&mut self, targets: &[&str], row: &str) {
        tokio::time::advance(ROUND).await;
        for (target, c) in targets.iter().zip(row.chars()) {
            if c == '.' {
                continue;
            }
            self.state.record(ProbeResult {
                key: CheckKey {
                    target: Arc::from(*target),
                    check: Arc::from("link"),
                },
                outcome: outcome(c == 'G'),
                finished: SystemTime::now(),
            });
        }
        self.state.alert_tick();
    }

    /// Messages queued so far, as "target:status", oldest first; each marked taken.
    fn sent(&self) -> Vec<String> {
        let rows = self.store.due("ops", i64::MAX, 1000).expect("due");
        rows.iter()
            .map(|r| {
                let e: Event = serde_json::from_str(&r.payload).expect("event");
                self.store.finish(r.id, "sent", None, 0).expect("finish");
                format!("{}:{:?}", e.target, e.status).to_lowercase()
            })
            .collect()
    }

    fn events(&self) -> Vec<Event> {
        self.store
            .due("ops", i64::MAX, 1000)
            .expect("due")
            .iter()
            .map(|r| serde_json::from_str(&r.payload).expect("event"))
            .collect()
    }
}

/// Rounds are columns: one string per target (gw, c1, c2), one character per round.
async fn run(alerting_extra: &str, rows: [&str; 3]) -> Vec<String> {
    let catalog = catalog(alerting_extra);
    let mut h = Harness::new(&catalog, Arc::new(Store::in_memory().expect("db")));
    let targets = ["gw", "c1", "c2"];
    let rounds = rows[0].len();
    let mut sent = Vec::new();
    for i in 0..rounds {
        let column: String = rows.iter().map(|r| &r[i..=i]).collect();
        h.round(&targets, &column).await;
        sent.extend(h.sent());
    }
    sent
}

#[tokio::test(start_paused = true)]
async fn sequences_of_outcomes_give_these_messages() {
    let table: [(&str, [&str; 3], &[&str]); 6] = [
        // A commune down on its own: one alert after three rounds, resolved after two good.
        (
            "commune alone",
            ["GGGGGGG", "GBBBGGG", "GGGGGGG"],
            &["c1:firing", "c1:resolved"],
        ),
        // The gateway drops: one root-cause alert, the communes behind it suppressed.
        (
            "gateway cut",
            ["GBBBBGGG", "GBBBBGGG", "GBBBBGGG"],
            &["gw:firing", "gw:resolved"],
        ),
        // The gateway returns but a commune stays down: now that is its own fault, sent
        // after it stays bad for three more rounds.
        (
            "commune still down after the gateway",
            ["GBBBBGGGGGG", "GBBBBBBBBGG", "GBBBBGGGGGG"],
            &["gw:firing", "gw:resolved", "c1:firing", "c1:resolved"],
        ),
        // The commune comes back one round after the gateway: nothing for it.
        (
            "commune recovers just after the gateway",
            ["GBBBBGGGG", "GBBBBBGGG", "GBBBBGGGG"],
            &["gw:firing", "gw:resolved"],
        ),
        // Two bad rounds: pending, never sent.
        ("blip", ["GBBGG", "GGGGG", "GGGGG"], &[]),
        // A flapping link: one alert (marked flapping), not a storm.
        (
            "flapping",
            ["GGGGGGGGGGGGG", "BGBGBGBGBGBGB", "GGGGGGGGGGGGG"],
            &["c1:firing"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, rows, expected) in table {
        let got = run("", rows).await;
        if got != expected {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(start_paused = true)]
async fn the_root_cause_alert_names_what_sits_behind_it() {
    let catalog = catalog("");
    let store = Arc::new(Store::in_memory().expect("db"));
    let mut h = Harness::new(&catalog, Arc::clone(&store));
    let targets = ["gw", "c1", "c2"];
    for row in ["GGG", "BBB", "BBB", "BBB"] {
        h.round(&targets, row).await;
    }
    let events = h.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.target, "gw");
    assert_eq!(e.affected_targets, 2);
    assert_eq!(e.affected_areas, ["Xã Bảo Yên", "Xã Nghĩa Đô"]);
    assert_eq!(e.affected_systems, ["Cổng dịch vụ công"]);
    assert_eq!(e.status_url.as_deref(), Some("http://127.0.0.1:10090/"));
    let text = crate::notify::text::render(e, crate::model::Language::Vi, false);
    assert!(
        text.title.contains("Mất kết nối: Cổng Bảo Yên (gw)"),
        "{}",
        text.title
    );
    // The API view: the communes' alerts are there, suppressed, naming the root cause.
    let view = h.state.subscribe_alerts().borrow().clone();
    let c1 = view
        .alerts
        .iter()
        .find(|a| a.target == "c1")
        .expect("c1 alert");
    assert_eq!(c1.state, "suppressed");
    assert_eq!(c1.root_cause, ["gw"]);
    assert!(!c1.notified);
    let gw = view.alerts.iter().find(|a| a.target == "gw").expect("gw");
    assert_eq!((gw.state, gw.affected_targets), ("firing", 2));
    // Incident history records the root cause of the suppressed ones.
    let incidents = store.incidents(0, 10).expect("incidents");
    let c1_incident = incidents.iter().find(|i| i.target == "c1").expect("c1");
    assert_eq!(c1_incident.root_cause.as_deref(), Some("gw"));
    assert!(!c1_incident.notified);
}

#[tokio::test(start_paused = true)]
async fn a_restart_sends_nothing_twice_and_loses_no_resolution() {
    let catalog = catalog("");
    let store = Arc::new(Store::in_memory().expect("db"));
    let targets = ["gw", "c1", "c2"];
    let mut first = Harness::new(&catalog, Arc::clone(&store));
    for row in ["GGG", "GBG", "GBG", "GBG"] {
        first.round(&targets, row).await;
    }
    assert_eq!(first.sent(), ["c1:firing"]);
    drop(first);
    // The agent restarts with the same database: c1 is still down.
    let mut second = Harness::new(&catalog, Arc::clone(&store));
    for row in ["GBG", "GBG", "GBG"] {
        second.round(&targets, row).await;
    }
    assert!(second.sent().is_empty(), "no second firing message");
    for row in ["GGG", "GGG"] {
        second.round(&targets, row).await;
    }
    assert_eq!(second.sent(), ["c1:resolved"]);
}

#[tokio::test(start_paused = true)]
async fn maintenance_windows_hold_messages_but_record_the_incident() {
    let extra = r#"  maintenance:
    - {name: fibre-work, areas: ["02947"], start: "2000-01-01 00:00", end: "2999-01-01 00:00"}"#;
    let got = run(extra, ["GGGGGGG", "GBBBBGG", "GBBBBGG"]).await;
    assert_eq!(got, ["c2:firing", "c2:resolved"], "c1 is in maintenance");
    let catalog = catalog(extra);
    let store = Arc::new(Store::in_memory().expect("db"));
    let mut h = Harness::new(&catalog, Arc::clone(&store));
    for row in ["GGG", "GBG", "GBG", "GBG"] {
        h.round(&["gw", "c1", "c2"], row).await;
    }
    let view = h.state.subscribe_alerts().borrow().clone();
    assert_eq!(view.alerts[0].state, "maintenance");
    assert_eq!(view.alerts[0].maintenance.as_deref(), Some("fibre-work"));
    let periods = store.maintenance_periods().expect("periods");
    assert_eq!(periods.len(), 1);
    assert_eq!(periods[0].0, "fibre-work");
    let incidents = store.incidents(0, 10).expect("incidents");
    assert_eq!(incidents[0].maintenance.as_deref(), Some("fibre-work"));
}
