//! How iocwatch's own hot paths scale to a whole province: loading a config of tens of
//! thousands of checks, recording results, recomputing rollups and rendering /metrics.
//! Prints figures; asserts nothing about time. Run: `cargo bench --bench scale`.
//! Sizes: IOCWATCH_BENCH_TARGETS (default 20000).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use iocwatch::probe::{Detail, IcmpStats, Outcome};
use iocwatch::state::{ProbeResult, State};

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
    let checks: Vec<_> = catalog.checks().map(|c| c.key.clone()).collect();
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
    let registry = prometheus::Registry::new();
    let mut state = State::new(
        registry.clone(),
        Arc::clone(&catalog),
        Arc::new(iocwatch::store::Store::in_memory().expect("db")),
        Arc::default(),
    )
    .expect("state");
    let rounds = 5;
    let outcome = Outcome {
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
    };
    let started = Instant::now();
    for _ in 0..rounds {
        for key in &checks {
            state.record(ProbeResult {
                key: key.clone(),
                outcome: outcome.clone(),
                finished: SystemTime::now(),
            });
        }
    }
    let record = started.elapsed();
    println!(
        "state.record: {} results in {:.0} ms ({} per result)",
        rounds * checks.len(),
        record.as_secs_f64() * 1e3,
        per(record, rounds * checks.len())
    );

    let started = Instant::now();
    state.update_rollups(false);
    println!(
        "rollups over the area tree: {:.1} ms (each second with changes)",
        started.elapsed().as_secs_f64() * 1e3
    );
    let started = Instant::now();
    state.update_rollups(true);
    println!(
        "rollups + status snapshot: {:.1} ms (every 5 s)",
        started.elapsed().as_secs_f64() * 1e3
    );

    let started = Instant::now();
    let body = iocwatch::metrics::render(&registry);
    let render = started.elapsed();
    println!(
        "/metrics render: {} series, {:.1} MiB in {:.0} ms",
        body.lines().filter(|l| !l.starts_with('#')).count(),
        body.len() as f64 / 1048576.0,
        render.as_secs_f64() * 1e3
    );

    let started = Instant::now();
    let reloaded = Arc::new(iocwatch::config::load(&path).expect("valid config").catalog);
    state.apply_catalog(reloaded).expect("apply");
    println!(
        "reload (load + apply, unchanged config): {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    // The alert engine's second-by-second tick, nothing firing (the first one after the
    // reload also recomputes the rollups, so the second is timed).
    state.alert_tick();
    let started = Instant::now();
    state.alert_tick();
    println!(
        "alert tick, nothing firing: {:.1} ms (each second)",
        started.elapsed().as_secs_f64() * 1e3
    );
    outage(&catalog, &checks, dir.path());

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

/// A tenth of the province drops at once: three failed rounds fire its alerts; the next tick
/// decides what to send and commits it all to a database on disk with `synchronous=FULL`.
fn outage(
    catalog: &Arc<iocwatch::catalog::Catalog>,
    checks: &[iocwatch::catalog::CheckKey],
    dir: &std::path::Path,
) {
    let store = Arc::new(iocwatch::store::Store::open(&dir.join("db")).expect("database"));
    let mut state = State::new(
        prometheus::Registry::new(),
        Arc::clone(catalog),
        store,
        Arc::default(),
    )
    .expect("state");
    let failed = Outcome {
        duration: Duration::from_millis(500),
        failure: Some(iocwatch::probe::FailureReason::Timeout),
        detail: Detail::None,
    };
    let dropped: Vec<_> = checks
        .iter()
        .filter(|k| {
            k.target
                .trim_start_matches('t')
                .parse::<usize>()
                .is_ok_and(|t| t % 10 == 0)
        })
        .collect();
    let mut last = Duration::ZERO;
    for _ in 0..3 {
        let started = Instant::now();
        for key in &dropped {
            state.record(ProbeResult {
                key: (*key).clone(),
                outcome: failed.clone(),
                finished: SystemTime::now(),
            });
        }
        last = started.elapsed();
    }
    println!(
        "outage of {} checks: the round that fires them all took {:.0} ms ({} per alert)",
        dropped.len(),
        last.as_secs_f64() * 1e3,
        per(last, dropped.len())
    );
    let started = Instant::now();
    state.alert_tick();
    let tick = started.elapsed();
    println!(
        "alert tick deciding {} new alerts and committing them (one transaction, synchronous=FULL): {:.0} ms ({} per alert)",
        dropped.len(),
        tick.as_secs_f64() * 1e3,
        per(tick, dropped.len())
    );
}
