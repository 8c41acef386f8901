use std::time::{Duration, SystemTime};

use super::*;
use crate::alert::IncidentIds;
use crate::catalog::CheckKey;
use crate::model::record::Batch;
use crate::probe::{Detail, FailureReason, Outcome};

fn catalog(targets: &str) -> Arc<Catalog> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("iocwatch.yaml");
    let text = format!("areas: [{{code: \"15\", name: Lào Cai}}]\ntargets:\n{targets}");
    std::fs::write(&path, text).expect("write");
    Arc::new(crate::config::load(&path).expect("valid config").catalog)
}

fn state(
    exposition: &Exposition,
    catalog: &Arc<Catalog>,
) -> (State, tokio::sync::mpsc::UnboundedReceiver<Batch>) {
    let (recorder, inbox) = Recorder::channel();
    let state = State::new(
        exposition,
        Arc::clone(catalog),
        Engine::new(IncidentIds::new("t")),
        Baselines::default(),
        recorder,
    )
    .expect("state");
    (state, inbox)
}

fn result(target: &str, check: &str, ok: bool, detail: Detail) -> ProbeResult {
    ProbeResult {
        key: CheckKey {
            target: Arc::from(target),
            check: Arc::from(check),
        },
        outcome: Outcome {
            duration: Duration::from_millis(5),
            failure: (!ok).then_some(FailureReason::Timeout),
            detail,
        },
        at: Instant::now(),
        finished: SystemTime::now(),
    }
}

#[tokio::test]
async fn removing_a_ports_check_removes_its_port_series() {
    let with_audit = catalog(
        "  - {id: web, area: \"15\", address: 127.0.0.1, checks: [ports: {audit: [3389, 22]}]}\n",
    );
    let exposition = Exposition::new(None).expect("exposition");
    let (mut state, _journal) = state(&exposition, &with_audit);
    state.record(result(
        "web",
        "ports",
        true,
        Detail::Ports(Box::new(crate::probe::PortsDetail {
            unexpected_open: vec![3389],
            expected_closed: vec![],
            audited: vec![22, 3389],
        })),
    ));
    let text = exposition.render();
    assert!(
        text.contains("{target=\"web\",check=\"ports\",kind=\"ports\",area=\"15\",area_path=\"15\",port=\"3389\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("{target=\"web\",check=\"ports\",kind=\"ports\",area=\"15\",area_path=\"15\",port=\"22\"} 0"),
        "{text}"
    );
    let without =
        catalog("  - {id: web, area: \"15\", address: 127.0.0.1, checks: [tcp: {port: 80}]}\n");
    state.apply_catalog(without);
    let text = exposition.render();
    assert!(!text.contains("iocwatch_port_unexpected_open{"), "{text}");
}

/// The rollups, the status page's incidents and the alert engine read one snapshot: a
/// dual-homed commune down while only one uplink is down is its own fault everywhere.
#[tokio::test]
async fn rollups_status_and_alerts_agree_on_the_root_cause() {
    let t = |id: &str, deps: &str| {
        format!("  - {{id: {id}, area: \"15\", address: 127.0.0.1, depends_on: [{deps}], checks: [icmp: {{}}]}}\n")
    };
    let catalog =
        catalog(&(t("tslcd", "") + &t("internet", "") + &t("commune", "tslcd, internet")));
    let exposition = Exposition::new(None).expect("exposition");
    let (mut state, _journal) = state(&exposition, &catalog);
    for (id, ok) in [("tslcd", false), ("internet", true), ("commune", false)] {
        state.record(result(id, "icmp", ok, Detail::None));
    }
    state.tick();
    state.publish_status();
    let status = state.subscribe().borrow().clone();
    assert_eq!(
        status.summary.down, 2,
        "tslcd and the commune: {:?}",
        status.summary
    );
    assert_eq!(status.summary.unreachable, 0);
    let commune = status
        .incidents
        .iter()
        .find(|i| i.target == "commune")
        .expect("commune incident");
    assert_eq!(commune.state, TargetState::Down);
    assert!(commune.root_causes.is_empty(), "its own fault: {commune:?}");
    assert_eq!(state.reach().state(2), TargetState::Down);
    // Both uplinks down: unreachable everywhere, with both root causes.
    state.record(result("internet", "icmp", false, Detail::None));
    state.tick();
    state.publish_status();
    let status = state.subscribe().borrow().clone();
    let commune = status
        .incidents
        .iter()
        .find(|i| i.target == "commune")
        .expect("commune incident");
    assert_eq!(commune.state, TargetState::Unreachable);
    assert_eq!(commune.root_causes, ["tslcd", "internet"]);
    let text = exposition.render();
    assert!(
        text.contains("iocwatch_area_targets{area=\"15\",state=\"unreachable\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn rounds_are_added_up_by_the_hour_with_maintenance_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("iocwatch.yaml");
    std::fs::write(
        &path,
        "areas: [{code: \"15\", name: Lào Cai, children: [{code: \"02947\", name: Bảo Yên}]}]\n\
         alerting:\n  maintenance:\n    - {name: fibre, targets: [cx], start: \"2000-01-01 00:00\", end: \"2999-01-01 00:00\"}\n\
         targets:\n\
         \x20 - {id: gw, area: \"15\", address: 127.0.0.1, labels: {owner: VNPT}, interval: 10s, checks: [icmp: {}]}\n\
         \x20 - {id: cx, area: \"02947\", address: 127.0.0.1, interval: 30s, checks: [tcp: {port: 80}]}\n",
    )
    .expect("write");
    let catalog = Arc::new(crate::config::load(&path).expect("valid").catalog);
    let exposition = Exposition::new(None).expect("exposition");
    let (mut state, mut journal) = state(&exposition, &catalog);
    state.tick();
    let hour = |h: u64, s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(h * 3600 + s);
    let at = |mut r: ProbeResult, t: SystemTime| {
        r.finished = t;
        r
    };
    // gw: two good rounds and a failed one in hour 100, one good in hour 101.
    let echo = || {
        Detail::Icmp(crate::probe::IcmpStats {
            sent: 1,
            rtts: vec![Duration::from_millis(4)],
        })
    };
    state.record(at(result("gw", "icmp", true, echo()), hour(100, 10)));
    state.record(at(result("gw", "icmp", false, Detail::None), hour(100, 20)));
    state.record(at(result("gw", "icmp", true, echo()), hour(100, 30)));
    state.record(at(result("gw", "icmp", true, echo()), hour(101, 5)));
    // cx, in maintenance: one failed round, one good.
    state.record(at(
        result("cx", "tcp_80", false, Detail::None),
        hour(100, 0),
    ));
    state.record(at(
        result("cx", "tcp_80", true, Detail::None),
        hour(100, 30),
    ));
    // A reload in between: what was counted is handed on, and counting goes on.
    let reloaded = Arc::new(crate::config::load(&path).expect("valid").catalog);
    state.apply_catalog(reloaded);
    state.record(at(result("gw", "icmp", true, echo()), hour(101, 15)));
    state.finish();
    let mut hours: std::collections::BTreeMap<(String, i64), crate::model::hourly::HourStats> =
        Default::default();
    let mut places = std::collections::BTreeMap::new();
    while let Ok(batch) = journal.try_recv() {
        for write in batch.writes {
            if let Write::Hourly(deltas) = write {
                for d in deltas {
                    places.insert(d.place.check_key.clone(), Arc::clone(&d.place));
                    hours
                        .entry((d.place.check_key.clone(), d.hour))
                        .or_default()
                        .add(&d.stats);
                }
            }
        }
    }
    let gw = &hours[&("gw/icmp".to_owned(), 360_000)];
    assert_eq!(
        (
            gw.rounds,
            gw.failures,
            gw.observed_ms,
            gw.down_ms,
            gw.maintenance_ms
        ),
        (3, 1, 30_000, 10_000, 0)
    );
    // ICMP latency is the RTT (4 ms), not the round's length (5 ms); none for the failure.
    assert_eq!(gw.latency_count, 2);
    assert!((gw.latency_sum - 0.008).abs() < 1e-9, "{}", gw.latency_sum);
    assert_eq!(
        hours[&("gw/icmp".to_owned(), 363_600)].rounds,
        2,
        "one round before the reload, one after"
    );
    let cx = &hours[&("cx/tcp_80".to_owned(), 360_000)];
    assert_eq!(
        (
            cx.rounds,
            cx.down_ms,
            cx.maintenance_ms,
            cx.maintenance_down_ms
        ),
        (2, 0, 60_000, 30_000)
    );
    let gw_place = &places["gw/icmp"];
    assert_eq!(gw_place.owner.as_deref(), Some("VNPT"));
    assert_eq!(
        places["cx/tcp_80"].areas,
        [
            ("15".to_owned(), "Lào Cai".to_owned()),
            ("02947".to_owned(), "Bảo Yên".to_owned())
        ]
    );
}

#[tokio::test]
async fn checks_hand_their_sums_on_in_turns_a_sixtieth_a_second() {
    let targets: String = (0..120)
        .map(|i| {
            format!("  - {{id: t{i}, area: \"15\", address: 127.0.0.1, checks: [icmp: {{}}]}}\n")
        })
        .collect();
    let catalog = catalog(&targets);
    let exposition = Exposition::new(None).expect("exposition");
    let (mut state, mut journal) = state(&exposition, &catalog);
    let echo = || {
        Detail::Icmp(crate::probe::IcmpStats {
            sent: 1,
            rtts: vec![Duration::from_millis(1)],
        })
    };
    for i in 0..120 {
        state.record(result(&format!("t{i}"), "icmp", true, echo()));
    }
    let mut per_tick = Vec::new();
    for _ in 0..60 {
        state.tick();
        let mut deltas = 0;
        while let Ok(batch) = journal.try_recv() {
            for write in batch.writes {
                if let Write::Hourly(d) = write {
                    deltas += d.len();
                }
            }
        }
        per_tick.push(deltas);
    }
    assert_eq!(
        per_tick.iter().sum::<usize>(),
        120,
        "every check once a minute"
    );
    assert!(per_tick.iter().all(|n| *n <= 2), "{per_tick:?}");
}
