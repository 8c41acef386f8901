//! How iocwatch's own hot paths scale to a whole province: loading a config of tens of
//! thousands of checks, recording results, the state's tick (reachability, the alert
//! engine's step), the status snapshot, rendering /metrics, and the journal's commit of an
//! outage. Prints figures; asserts nothing about time. Run: `cargo bench --bench scale`.
//! Sizes: IOCWATCH_BENCH_TARGETS (default 20000).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use iocwatch::alert::{Engine, IncidentIds, Round, Step};
use iocwatch::catalog::{Catalog, CheckKey};
use iocwatch::metrics::Exposition;
use iocwatch::model::{Recorder, Write};
use iocwatch::probe::{Detail, FailureReason, IcmpStats, Outcome};
use iocwatch::reach::{Reach, TargetState};
use iocwatch::scheduler::ProbeResult;
use iocwatch::state::{Baselines, State};

fn province_config(targets: usize) -> String {
    let communes = (targets / 8).max(1);
    let groups = (communes / 30).max(1);
    let mut y = String::from(
        "defaults: {interval: 30s, timeout: 10s}\ntemplates:\n  uplink:\n    - icmp: {count: 3, spacing: 200ms}\n    - tcp: {port: 443}\nareas:\n  - code: \"15\"\n    name: Tỉnh Lào Cai\n    level: province\n    children:\n",
    );
    for g in 0..groups {
        let _ = write!(y, "      - code: g{g}\n        name: Cụm {g}\n        kind: group\n        level: district\n        children:\n");
        for c in (g..communes).step_by(groups) {
            let _ = writeln!(y, "          - {{code: \"c{c:05}\", name: Xã số {c}, kind: xa, level: commune, geo: {{lat: 22.{c}, lon: 104.{c}}}}}");
        }
    }
    y.push_str("targets:\n");
    for t in 0..targets {
        let c = t % communes;
        let _ = writeln!(
            y,
            "  - {{id: t{t}, area: \"c{c:05}\", address: 127.{}.{}.{}, labels: {{owner: vnpt, link: tslcd}}, checks: [template: uplink]}}",
            (t >> 16) & 0xff,
            (t >> 8) & 0xff,
            t & 0xff
        );
    }
    y
}

fn per(d: Duration, n: usize) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6 / n as f64)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn good() -> Outcome {
    Outcome {
        duration: Duration::from_millis(412),
        failure: None,
        detail: Detail::Icmp(IcmpStats {
            sent: 3,
            rtts: vec![
                Duration::from_micros(812),
                Duration::from_micros(1030),
                Duration::from_micros(955),
            ],
        }),
    }
}

fn failed() -> Outcome {
    Outcome {
        duration: Duration::from_millis(500),
        failure: Some(FailureReason::Timeout),
        detail: Detail::None,
    }
}

fn result(key: &CheckKey, outcome: Outcome) -> ProbeResult {
    ProbeResult {
        key: key.clone(),
        outcome,
        at: tokio::time::Instant::now(),
        finished: SystemTime::now(),
    }
}

/// A state that hands its writes to a journal nobody commits (the bench counts them).
fn state(catalog: &Arc<Catalog>, exposition: &Exposition) -> (State, Recorder) {
    let (recorder, inbox) = Recorder::channel();
    // The receiver must live, or every tick logs a stopped journal.
    std::mem::forget(inbox);
    let state = State::new(
        exposition,
        Arc::clone(catalog),
        Engine::new(IncidentIds::new("bench")),
        Baselines::default(),
        recorder.clone(),
    )
    .expect("state");
    (state, recorder)
}

fn main() {
    let targets: usize = std::env::var("IOCWATCH_BENCH_TARGETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("iocwatch.yaml");
    let text = province_config(targets);
    std::fs::write(&path, &text).expect("write");

    let started = Instant::now();
    let catalog = Arc::new(iocwatch::config::load(&path).expect("valid config").catalog);
    let load = started.elapsed();
    let checks: Vec<CheckKey> = catalog.checks().map(|c| c.key.clone()).collect();
    println!(
        "config load: {} targets, {} checks, {} areas, {:.1} MiB YAML in {:.0} ms ({} per target)",
        catalog.targets.len(),
        checks.len(),
        catalog.areas.len(),
        text.len() as f64 / 1048576.0,
        load.as_secs_f64() * 1e3,
        per(load, targets)
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let exposition = Exposition::new(None).expect("exposition");
    let (mut state, _recorder) = state(&catalog, &exposition);
    let rounds = 5;
    let mut record = Duration::ZERO;
    let mut tick = Duration::ZERO;
    for _ in 0..rounds {
        let started = Instant::now();
        for key in &checks {
            state.record(result(key, good()));
        }
        record += started.elapsed();
        let started = Instant::now();
        state.tick();
        tick += started.elapsed();
    }
    println!(
        "state.record: {} results in {:.0} ms ({} per result)",
        rounds * checks.len(),
        record.as_secs_f64() * 1e3,
        per(record, rounds * checks.len())
    );
    println!(
        "state tick after a round of every check (engine judges {} rounds, nothing firing): {} ({} per round)",
        checks.len(),
        ms(tick / rounds as u32),
        per(tick, rounds * checks.len())
    );
    let started = Instant::now();
    state.tick();
    println!(
        "state tick, no new rounds, nothing firing: {} (each second)",
        ms(started.elapsed())
    );
    let started = Instant::now();
    state.publish_status();
    println!("status snapshot: {} (every 5 s)", ms(started.elapsed()));

    let started = Instant::now();
    let body = exposition.render();
    let render = started.elapsed();
    println!(
        "/metrics render: {} series, {:.1} MiB in {:.0} ms",
        body.lines().filter(|l| !l.starts_with('#')).count(),
        body.len() as f64 / 1048576.0,
        render.as_secs_f64() * 1e3
    );

    let started = Instant::now();
    let reloaded = Arc::new(iocwatch::config::load(&path).expect("valid config").catalog);
    state.apply_catalog(reloaded);
    println!(
        "reload (load + apply, unchanged config): {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    engine_outage(&catalog, &checks);
    runtime.block_on(commit_outage(&catalog, &checks, dir.path()));

    if let Some(rss) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
    {
        println!(
            "peak RSS of the bench process: {}",
            rss.trim_start_matches("VmHWM:").trim()
        );
    }
}

/// The checks of every tenth target: a tenth of the province drops at once.
fn dropped(checks: &[CheckKey]) -> Vec<CheckKey> {
    checks
        .iter()
        .filter(|k| {
            k.target
                .trim_start_matches('t')
                .parse::<usize>()
                .is_ok_and(|t| t % 10 == 0)
        })
        .cloned()
        .collect()
}

/// The engine alone: one step per round, 40,000 checks each round, a tenth of them failing
/// from the second round on. The step that fires them all is what is timed.
fn engine_outage(catalog: &Arc<Catalog>, checks: &[CheckKey]) {
    let mut engine = Engine::new(IncidentIds::new("bench"));
    let down = dropped(checks);
    let down_set: std::collections::HashSet<&CheckKey> = down.iter().collect();
    let own_up = vec![TargetState::Up; catalog.targets.len()];
    let reach_up = Reach::compute(catalog, &own_up);
    let own_down: Vec<TargetState> = catalog
        .targets
        .iter()
        .map(|t| {
            if t.checks.iter().any(|c| down_set.contains(&c.key)) {
                TargetState::Down
            } else {
                TargetState::Up
            }
        })
        .collect();
    let started = Instant::now();
    let reach_down = Reach::compute(catalog, &own_down);
    let reach_time = started.elapsed();
    let mut steps = Vec::new();
    for round in 0..5 {
        let rounds: Vec<Round> = checks
            .iter()
            .map(|key| Round {
                key: key.clone(),
                outcome: if round > 0 && down_set.contains(key) {
                    failed()
                } else {
                    good()
                },
                at: tokio::time::Instant::now(),
                finished: SystemTime::now(),
            })
            .collect();
        let reach = if round > 0 { &reach_down } else { &reach_up };
        let started = Instant::now();
        let effects = engine.step(Step {
            catalog,
            reach,
            rounds: &rounds,
            now: tokio::time::Instant::now(),
            wall: SystemTime::now(),
        });
        steps.push((started.elapsed(), effects.writes.len()));
    }
    println!(
        "reachability snapshot with {} targets down: {}",
        own_down.iter().filter(|s| **s == TargetState::Down).count(),
        ms(reach_time)
    );
    for (round, (took, writes)) in steps.iter().enumerate() {
        println!(
            "engine step {round}: {} rounds judged ({} failing), {writes} writes: {}",
            checks.len(),
            if round > 0 { down.len() } else { 0 },
            ms(*took)
        );
    }
    let quiet = Instant::now();
    engine.step(Step {
        catalog,
        reach: &reach_down,
        rounds: &[],
        now: tokio::time::Instant::now(),
        wall: SystemTime::now(),
    });
    println!(
        "engine step with {} alerts open, no new rounds: {} (each second)",
        down.len(),
        ms(quiet.elapsed())
    );
}

/// The journal's commit of the outage's writes to a database on disk (synchronous=FULL),
/// off the state's task.
async fn commit_outage(catalog: &Arc<Catalog>, checks: &[CheckKey], dir: &std::path::Path) {
    let mut engine = Engine::new(IncidentIds::new("bench"));
    let down = dropped(checks);
    let own: Vec<TargetState> = catalog.targets.iter().map(|_| TargetState::Up).collect();
    let reach = Reach::compute(catalog, &own);
    let mut writes: Vec<Write> = Vec::new();
    for _ in 0..3 {
        let rounds: Vec<Round> = down
            .iter()
            .map(|key| Round {
                key: key.clone(),
                outcome: failed(),
                at: tokio::time::Instant::now(),
                finished: SystemTime::now(),
            })
            .collect();
        writes.extend(
            engine
                .step(Step {
                    catalog,
                    reach: &reach,
                    rounds: &rounds,
                    now: tokio::time::Instant::now(),
                    wall: SystemTime::now(),
                })
                .writes,
        );
    }
    let store = iocwatch::store::Store::open(&dir.join("db"))
        .await
        .expect("database");
    let n = writes.len();
    let started = Instant::now();
    store.commit(vec![Arc::new(writes)]).await.expect("commit");
    let took = started.elapsed();
    println!(
        "journal commit of the outage: {n} writes ({} alerts fired and sent) in one transaction, synchronous=FULL: {} ({} per write), on the store's thread",
        down.len(),
        ms(took),
        per(took, n)
    );
}
