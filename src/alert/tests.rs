//! The engine on tokio's paused clock, its writes committed to a real (in-memory) store:
//! sequences of probe outcomes per target → the messages queued in the outbox.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{Engine, IncidentIds, Round, Step};
use crate::catalog::{Catalog, CheckKey};
use crate::model::{Event, Write};
use crate::probe::{Detail, FailureReason, Outcome};
use crate::reach::{Reach, TargetState};
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

/// The engine, fed round by round, its writes committed to `store`.
struct Harness {
    catalog: Arc<Catalog>,
    engine: Engine,
    store: Store,
    own: HashMap<String, TargetState>,
    /// Events queued so far and not yet taken by `sent`.
    queued: Vec<Event>,
}

impl Harness {
    async fn new(catalog: &Arc<Catalog>, store: Store, instance: &str) -> Harness {
        let mut engine = Engine::new(IncidentIds::new(instance));
        let open = store.open_alerts().await.expect("open alerts");
        let effects = engine.restore(catalog, &open, Instant::now(), SystemTime::now());
        let mut h = Harness {
            catalog: Arc::clone(catalog),
            engine,
            store,
            own: HashMap::new(),
            queued: Vec::new(),
        };
        h.commit(effects.writes).await;
        h
    }

    async fn commit(&mut self, writes: Vec<Write>) {
        for w in &writes {
            let queued = match w {
                Write::Notify { queued, .. }
                | Write::Flapping { queued, .. }
                | Write::Resolve { queued, .. } => queued,
                _ => continue,
            };
            for q in queued {
                self.queued
                    .push(serde_json::from_str(&q.payload).expect("event"));
            }
        }
        self.store
            .commit(vec![Arc::new(writes)])
            .await
            .expect("commit");
    }

    /// One round: each target's result ('B' bad, 'G' good, '.' no result), then the tick.
    async fn round(&mut self, targets: &[&str], row: &str) {
        tokio::time::advance(ROUND).await;
        let mut rounds = Vec::new();
        for (target, c) in targets.iter().zip(row.chars()) {
            if c == '.' {
                continue;
            }
            let ok = c == 'G';
            self.own.insert(
                (*target).to_owned(),
                if ok {
                    TargetState::Up
                } else {
                    TargetState::Down
                },
            );
            rounds.push(Round {
                key: CheckKey {
                    target: Arc::from(*target),
                    check: Arc::from("link"),
                },
                outcome: outcome(ok),
                at: Instant::now(),
                finished: SystemTime::now(),
            });
        }
        let own: Vec<TargetState> = self
            .catalog
            .targets
            .iter()
            .map(|t| {
                self.own
                    .get(&*t.id)
                    .copied()
                    .unwrap_or(TargetState::Unknown)
            })
            .collect();
        let reach = Reach::compute(&self.catalog, &own);
        let effects = self.engine.step(Step {
            catalog: &self.catalog,
            reach: &reach,
            rounds: &rounds,
            now: Instant::now(),
            wall: SystemTime::now(),
        });
        self.commit(effects.writes).await;
    }

    /// Messages queued since the last call, as "target:status", oldest first.
    fn sent(&mut self) -> Vec<String> {
        std::mem::take(&mut self.queued)
            .iter()
            .map(|e| format!("{}:{:?}", e.target, e.status).to_lowercase())
            .collect()
    }
}

/// Rounds are columns: one string per target (gw, c1, c2), one character per round.
async fn run(alerting_extra: &str, rows: [&str; 3]) -> Vec<String> {
    let catalog = catalog(alerting_extra);
    let store = Store::in_memory().await.expect("db");
    let mut h = Harness::new(&catalog, store, "t").await;
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
    let table: [(&str, [&str; 3], &[&str]); 7] = [
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
        // A commune down while its gateway is fine, then the gateway drops too: the
        // commune's alert (already sent) is folded into the root cause, and resolves with it.
        (
            "commune first, then its gateway",
            ["GGGGBBBBGGG", "GBBBBBBBGGG", "GGGGBBBBGGG"],
            &["c1:firing", "gw:firing", "gw:resolved", "c1:resolved"],
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
    let store = Store::in_memory().await.expect("db");
    let mut h = Harness::new(&catalog, store.clone(), "t").await;
    let targets = ["gw", "c1", "c2"];
    for row in ["GGG", "BBB", "BBB", "BBB"] {
        h.round(&targets, row).await;
    }
    let events = std::mem::take(&mut h.queued);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.target, "gw");
    assert_eq!(e.affected_targets, 2);
    assert_eq!(e.affected_areas, ["Xã Bảo Yên", "Xã Nghĩa Đô"]);
    assert_eq!(e.affected_systems, ["Cổng dịch vụ công"]);
    assert_eq!(e.status_url.as_deref(), Some("http://127.0.0.1:10090/"));
    assert!(
        e.id.starts_with("t-") && e.id.ends_with("-firing"),
        "{}",
        e.id
    );
    let text = crate::model::text::render(e, crate::model::Language::Vi, false);
    assert!(
        text.title.contains("Mất kết nối: Cổng Bảo Yên (gw)"),
        "{}",
        text.title
    );
    // The view: the communes' alerts are there, suppressed, naming the root cause.
    let view = h.engine.view(&catalog);
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
    let incidents = store.incidents(0, 10).await.expect("incidents");
    let c1_incident = incidents.iter().find(|i| i.target == "c1").expect("c1");
    assert_eq!(c1_incident.root_cause.as_deref(), Some("gw"));
    assert!(!c1_incident.notified);
}

#[tokio::test(start_paused = true)]
async fn a_restart_sends_nothing_twice_loses_no_resolution_and_never_reuses_an_id() {
    let catalog = catalog("");
    let store = Store::in_memory().await.expect("db");
    let targets = ["gw", "c1", "c2"];
    let mut first = Harness::new(&catalog, store.clone(), "first").await;
    for row in ["GGG", "GBG", "GBG", "GBG"] {
        first.round(&targets, row).await;
    }
    assert_eq!(first.sent(), ["c1:firing"]);
    drop(first);
    // The agent restarts with the same database: c1 is still down.
    let mut second = Harness::new(&catalog, store.clone(), "second").await;
    for row in ["GBG", "GBG", "GBG"] {
        second.round(&targets, row).await;
    }
    assert!(second.sent().is_empty(), "no second firing message");
    for row in ["GGG", "GGG"] {
        second.round(&targets, row).await;
    }
    let resolved = std::mem::take(&mut second.queued);
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        resolved[0].id, "first-1-resolved",
        "the incident of the first run"
    );
    // A new incident after the restart gets the new instance's id.
    for row in ["GGB", "GGB", "GGB"] {
        second.round(&targets, row).await;
    }
    let fired = std::mem::take(&mut second.queued);
    assert_eq!(fired[0].id, "second-1-firing");
}

#[tokio::test(start_paused = true)]
async fn maintenance_windows_hold_messages_but_record_the_incident() {
    let extra = r#"  maintenance:
    - {name: fibre-work, areas: ["02947"], start: "2000-01-01 00:00", end: "2999-01-01 00:00"}"#;
    let got = run(extra, ["GGGGGGG", "GBBBBGG", "GBBBBGG"]).await;
    assert_eq!(got, ["c2:firing", "c2:resolved"], "c1 is in maintenance");
    let catalog = catalog(extra);
    let store = Store::in_memory().await.expect("db");
    let mut h = Harness::new(&catalog, store.clone(), "t").await;
    for row in ["GGG", "GBG", "GBG", "GBG"] {
        h.round(&["gw", "c1", "c2"], row).await;
    }
    let view = h.engine.view(&catalog);
    assert_eq!(view.alerts[0].state, "maintenance");
    assert_eq!(view.alerts[0].maintenance.as_deref(), Some("fibre-work"));
    assert_eq!(view.windows[0].name, "fibre-work");
    assert!(view.windows[0].active);
    let periods = store.maintenance_periods().await.expect("periods");
    assert_eq!(periods.len(), 1);
    assert_eq!(periods[0].window, "fibre-work");
    let incidents = store.incidents(0, 10).await.expect("incidents");
    assert_eq!(incidents[0].maintenance.as_deref(), Some("fibre-work"));
}

/// The same rounds give the same writes: no clock, store or channel inside the engine.
#[tokio::test(start_paused = true)]
async fn the_engine_is_a_pure_function_of_its_inputs() {
    let catalog = catalog("");
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let start = Instant::now();
    let play = || {
        let mut engine = Engine::new(IncidentIds::new("p"));
        let mut writes = Vec::new();
        for (i, row) in ["GGG", "BBB", "BBB", "BBB", "GGG", "GGG", "GGG", "GGG"]
            .iter()
            .enumerate()
        {
            let at = start + ROUND * i as u32;
            let wall = wall + ROUND * i as u32;
            let rounds: Vec<Round> = ["gw", "c1", "c2"]
                .iter()
                .zip(row.chars())
                .map(|(t, c)| Round {
                    key: CheckKey {
                        target: Arc::from(*t),
                        check: Arc::from("link"),
                    },
                    outcome: outcome(c == 'G'),
                    at,
                    finished: wall,
                })
                .collect();
            let own: Vec<TargetState> = row
                .chars()
                .map(|c| {
                    if c == 'G' {
                        TargetState::Up
                    } else {
                        TargetState::Down
                    }
                })
                .collect();
            let reach = Reach::compute(&catalog, &own);
            writes.extend(
                engine
                    .step(Step {
                        catalog: &catalog,
                        reach: &reach,
                        rounds: &rounds,
                        now: at,
                        wall,
                    })
                    .writes,
            );
        }
        writes
    };
    let first = play();
    assert_eq!(first, play());
    assert!(first.iter().any(|w| matches!(w, Write::Resolve { .. })));
}
