//! The one owner of per-check results and of everything derived from them: the per-check
//! series, target states and the area and system rollups. Probes send results here; nothing
//! else writes these metrics.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::Registry;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::alert::engine::{AlertsSnapshot, Engine, Wakes};
use crate::catalog::{Catalog, CheckKey, Target};
use crate::metrics::{CheckMetrics, CheckSeries, RollupMetrics};
use crate::probe::Outcome;
use crate::status::{self, Counts, LastResult, Status};
use crate::store::Store;

/// A finished probe round, as sent by the scheduler.
#[derive(Debug)]
pub struct ProbeResult {
    pub key: CheckKey,
    pub outcome: Outcome,
    pub finished: SystemTime,
}

pub enum StateMsg {
    Result(ProbeResult),
    Catalog(Arc<Catalog>),
}

/// How a target is doing, from the last result of each of its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    Up,
    Degraded,
    Down,
    /// Down, and so is every upstream it `depends_on` (directly or through its upstreams):
    /// the fault is probably not here.
    Unreachable,
    Unknown,
}

impl TargetState {
    pub const ALL: [TargetState; 5] = [
        TargetState::Up,
        TargetState::Degraded,
        TargetState::Down,
        TargetState::Unreachable,
        TargetState::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Up => "up",
            TargetState::Degraded => "degraded",
            TargetState::Down => "down",
            TargetState::Unreachable => "unreachable",
            TargetState::Unknown => "unknown",
        }
    }
}

pub struct State {
    catalog: Arc<Catalog>,
    last: HashMap<CheckKey, LastResult>,
    /// Each target's state and since when, as of the last rollup.
    states: HashMap<Arc<str>, (TargetState, SystemTime)>,
    status: watch::Sender<Arc<Status>>,
    /// Metric handles per check, so recording a result does no label hashing.
    series: HashMap<CheckKey, CheckSeries>,
    registry: Registry,
    checks: CheckMetrics,
    rollups: RollupMetrics,
    area_info: HashSet<Vec<String>>,
    system_info: HashSet<Vec<String>>,
    rollup_series: HashSet<(bool, String, &'static str)>,
    dirty: bool,
    /// Each target's state with dependencies, as of the last rollup; index = catalog order.
    effective: Vec<TargetState>,
    alerts: Engine,
}

impl State {
    pub fn new(
        registry: Registry,
        catalog: Arc<Catalog>,
        store: Arc<Store>,
        wakes: Arc<Wakes>,
    ) -> prometheus::Result<State> {
        let checks = CheckMetrics::new(&catalog.schema)?;
        checks.register(&registry)?;
        let rollups = RollupMetrics::register(&registry)?;
        let alerts = Engine::new(store, wakes, &registry, &catalog)?;
        let mut state = State {
            catalog: Arc::clone(&catalog),
            last: HashMap::new(),
            states: HashMap::new(),
            status: watch::Sender::new(Arc::new(Status::default())),
            series: HashMap::new(),
            registry,
            checks,
            rollups,
            area_info: HashSet::new(),
            system_info: HashSet::new(),
            rollup_series: HashSet::new(),
            dirty: true,
            effective: Vec::new(),
            alerts,
        };
        state.update_info();
        state.update_rollups(true);
        Ok(state)
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// A receiver of the alert snapshots, for `GET /api/v1/alerts`.
    pub fn subscribe_alerts(&self) -> watch::Receiver<Arc<AlertsSnapshot>> {
        self.alerts.subscribe()
    }

    /// Once a second, after the rollups: what alerts are sent, suppressed or held.
    pub fn alert_tick(&mut self) {
        self.update_rollups(false);
        self.alerts
            .tick(&self.catalog, &self.effective, SystemTime::now());
    }

    /// Swaps in a new catalog: series of removed or relabelled checks disappear, results of
    /// unchanged checks are kept.
    pub fn apply_catalog(&mut self, new: Arc<Catalog>) -> prometheus::Result<()> {
        if new.schema != self.checks.schema {
            let fresh = CheckMetrics::new(&new.schema)?;
            self.checks.unregister(&self.registry);
            fresh.register(&self.registry)?;
            self.checks = fresh;
            self.series.clear();
        } else {
            for check in self.catalog.checks() {
                let keep = new
                    .check(&check.key)
                    .is_some_and(|(_, c)| c.label_values == check.label_values);
                if !keep {
                    self.checks
                        .remove(&check.label_values, check.probe.audited_ports());
                    self.series.remove(&check.key);
                }
            }
        }
        self.last.retain(|key, _| new.check(key).is_some());
        let ids: HashSet<&str> = new.targets.iter().map(|t| &*t.id).collect();
        self.states.retain(|id, _| ids.contains(&**id));
        self.catalog = new;
        self.alerts.apply_catalog(&self.catalog);
        self.update_info();
        self.dirty = true;
        Ok(())
    }

    pub fn record(&mut self, result: ProbeResult) {
        // A result of a check removed by a reload while it ran is dropped.
        let Some((target, check)) = self.catalog.check(&result.key) else {
            return;
        };
        let checks = &self.checks;
        let series = self.series.entry(result.key.clone()).or_insert_with(|| {
            CheckSeries::new(checks, check.kind, Arc::clone(&check.label_values))
        });
        series.record(checks, &result.outcome, unix_seconds(result.finished));
        self.alerts.observe(
            &self.catalog,
            target,
            check,
            &result.outcome,
            tokio::time::Instant::now(),
            result.finished,
        );
        let last = LastResult::from_outcome(&result.outcome, result.finished);
        let ok = last.failure.is_none();
        let before = self.last.insert(result.key, last);
        if before.map(|b| b.failure.is_none()) != Some(ok) {
            self.dirty = true;
        }
    }

    /// A target's state from its own checks only.
    pub fn target_state(&self, target: &Target) -> TargetState {
        let (mut known, mut up) = (0usize, 0usize);
        for check in &target.checks {
            if let Some(last) = self.last.get(&check.key) {
                known += 1;
                up += usize::from(last.failure.is_none());
            }
        }
        match (known, up) {
            (0, _) => TargetState::Unknown,
            (k, u) if u == k && k == target.checks.len() => TargetState::Up,
            (_, 0) => TargetState::Down,
            _ => TargetState::Degraded,
        }
    }

    /// Each target's state with its upstreams taken into account: a down target all of whose
    /// direct upstreams are down or unreachable is unreachable. With redundant uplinks
    /// (`depends_on: [tslcd-gw, internet-gw]`) one working uplink keeps the target `down`,
    /// its own fault. depends_on is acyclic (the loader refuses cycles), so memoised
    /// recursion terminates.
    fn effective_states(&self) -> Vec<TargetState> {
        let catalog = &self.catalog;
        let own: Vec<TargetState> = catalog
            .targets
            .iter()
            .map(|t| self.target_state(t))
            .collect();
        let mut memo: Vec<Option<TargetState>> = vec![None; own.len()];
        fn resolve(
            i: usize,
            catalog: &Catalog,
            own: &[TargetState],
            memo: &mut Vec<Option<TargetState>>,
        ) -> TargetState {
            if let Some(state) = memo[i] {
                return state;
            }
            let upstreams = catalog.upstreams(i);
            let state = if own[i] == TargetState::Down && !upstreams.is_empty() {
                let all_cut = upstreams.iter().all(|&u| {
                    matches!(
                        resolve(u, catalog, own, memo),
                        TargetState::Down | TargetState::Unreachable
                    )
                });
                if all_cut {
                    TargetState::Unreachable
                } else {
                    TargetState::Down
                }
            } else if own[i] == TargetState::Up && upstreams.len() > 1 {
                // A redundant site that lost one of its uplinks runs on the other.
                let some_cut = upstreams.iter().any(|&u| {
                    matches!(
                        resolve(u, catalog, own, memo),
                        TargetState::Down | TargetState::Unreachable
                    )
                });
                if some_cut {
                    TargetState::Degraded
                } else {
                    TargetState::Up
                }
            } else {
                own[i]
            };
            memo[i] = Some(state);
            state
        }
        (0..own.len())
            .map(|i| resolve(i, catalog, &own, &mut memo))
            .collect()
    }

    /// A receiver of the status snapshots, for the status page and the API.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Status>> {
        self.status.subscribe()
    }

    /// Recounts targets per state for every area (the whole subtree) and every system when a
    /// state changed, and, with `publish`, builds a fresh status snapshot (the costlier part:
    /// tens of milliseconds for a province of 20,000 targets, so it runs every few seconds).
    pub fn update_rollups(&mut self, publish: bool) {
        if !self.dirty && !publish {
            return;
        }
        self.dirty = false;
        let now = SystemTime::now();
        let areas = &self.catalog.areas;
        let mut area_counts: HashMap<usize, Counts> = HashMap::new();
        let mut system_counts: HashMap<usize, Counts> = HashMap::new();
        self.effective = self.effective_states();
        let effective = &self.effective;
        for (target, &state) in self.catalog.targets.iter().zip(effective) {
            let entry = self
                .states
                .entry(Arc::clone(&target.id))
                .or_insert((state, now));
            if entry.0 != state {
                *entry = (state, now);
            }
            for area in areas.ancestors(target.area) {
                area_counts.entry(area).or_default().add(state);
            }
            if let Some(system) = target.system {
                system_counts.entry(system).or_default().add(state);
            }
        }
        let mut series = HashSet::new();
        for (id, area) in areas.iter() {
            let counts = area_counts.get(&id).copied().unwrap_or_default();
            for state in TargetState::ALL {
                self.rollups
                    .area_targets
                    .with_label_values(&[area.code.as_str(), state.as_str()])
                    .set(i64::from(counts_of(&counts, state)));
                series.insert((true, area.code.clone(), state.as_str()));
            }
        }
        for (id, system) in self.catalog.systems.iter().enumerate() {
            let counts = system_counts.get(&id).copied().unwrap_or_default();
            for state in TargetState::ALL {
                self.rollups
                    .system_targets
                    .with_label_values(&[system.id.as_str(), state.as_str()])
                    .set(i64::from(counts_of(&counts, state)));
                series.insert((false, system.id.clone(), state.as_str()));
            }
        }
        for (is_area, name, state) in self.rollup_series.difference(&series) {
            let family = if *is_area {
                &self.rollups.area_targets
            } else {
                &self.rollups.system_targets
            };
            let _ = family.remove_label_values(&[name.as_str(), state]);
        }
        self.rollup_series = series;
        if !publish {
            return;
        }
        let snapshot = status::build(
            &self.catalog,
            &self.last,
            &self.states,
            &area_counts,
            &system_counts,
        );
        self.status.send_replace(Arc::new(snapshot));
    }

    fn update_info(&mut self) {
        let areas = &self.catalog.areas;
        let mut info = HashSet::new();
        for (id, area) in areas.iter() {
            let (lat, lon) = area
                .geo
                .map(|(lat, lon)| (lat.to_string(), lon.to_string()))
                .unwrap_or_default();
            info.insert(vec![
                area.code.clone(),
                area.parent
                    .map(|p| areas.get(p).code.clone())
                    .unwrap_or_default(),
                area.name.clone(),
                area.kind.clone().unwrap_or_default(),
                area.level.clone().unwrap_or_default(),
                areas.path(id),
                lat,
                lon,
            ]);
        }
        replace_series(&self.rollups.area_info, &mut self.area_info, info);
        let systems = self
            .catalog
            .systems
            .iter()
            .map(|s| {
                vec![
                    s.id.clone(),
                    s.name.clone(),
                    s.owner.clone().unwrap_or_default(),
                ]
            })
            .collect();
        replace_series(&self.rollups.system_info, &mut self.system_info, systems);
    }
}

fn counts_of(counts: &Counts, state: TargetState) -> u32 {
    match state {
        TargetState::Up => counts.up,
        TargetState::Degraded => counts.degraded,
        TargetState::Down => counts.down,
        TargetState::Unreachable => counts.unreachable,
        TargetState::Unknown => counts.unknown,
    }
}

/// Sets `new` series to 1 and removes those of `old` that are gone.
fn replace_series(
    family: &prometheus::IntGaugeVec,
    old: &mut HashSet<Vec<String>>,
    new: HashSet<Vec<String>>,
) {
    for gone in old.difference(&new) {
        let labels: Vec<&str> = gone.iter().map(String::as_str).collect();
        let _ = family.remove_label_values(&labels);
    }
    for series in &new {
        let labels: Vec<&str> = series.iter().map(String::as_str).collect();
        family.with_label_values(&labels).set(1);
    }
    *old = new;
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// Runs the state owner until cancelled: results and catalogs in, metrics out. Rollups are
/// recomputed at most once a second, so a burst of results costs one walk of the tree; the
/// status snapshot is refreshed at least every few seconds so last results stay current.
pub async fn run(
    mut state: State,
    mut inbox: mpsc::Receiver<StateMsg>,
    shutdown: CancellationToken,
) {
    const SNAPSHOT_EVERY_TICKS: u64 = 5;
    let mut ticks: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = inbox.recv() => match msg {
                Some(StateMsg::Result(result)) => state.record(result),
                Some(StateMsg::Catalog(catalog)) => {
                    if let Err(error) = state.apply_catalog(catalog) {
                        tracing::error!(%error, "cannot register metrics for the new config");
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                ticks += 1;
                state.update_rollups(ticks % SNAPSHOT_EVERY_TICKS == 0);
                state.alert_tick();
            }
            () = shutdown.cancelled() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Detail, FailureReason};

    fn catalog(targets: &str) -> Arc<Catalog> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("iocwatch.yaml");
        let text = format!("areas: [{{code: \"15\", name: Lào Cai}}]\ntargets:\n{targets}");
        std::fs::write(&path, text).expect("write");
        Arc::new(crate::config::load(&path).expect("valid config").catalog)
    }

    fn result(target: &str, ok: bool) -> ProbeResult {
        ProbeResult {
            key: CheckKey {
                target: Arc::from(target),
                check: Arc::from("icmp"),
            },
            outcome: Outcome {
                duration: Duration::from_millis(5),
                failure: (!ok).then_some(FailureReason::Timeout),
                detail: Detail::None,
            },
            finished: SystemTime::now(),
        }
    }

    #[test]
    fn removing_a_ports_check_removes_its_port_series() {
        let with_audit = catalog("  - {id: web, area: \"15\", address: 127.0.0.1, checks: [ports: {audit: [3389, 22]}]}\n");
        let registry = Registry::new();
        let mut state = State::new(
            registry.clone(),
            Arc::clone(&with_audit),
            Arc::new(crate::store::Store::in_memory().expect("db")),
            Arc::default(),
        )
        .expect("state");
        state.record(ProbeResult {
            key: CheckKey {
                target: Arc::from("web"),
                check: Arc::from("ports"),
            },
            outcome: Outcome {
                duration: Duration::from_millis(5),
                failure: None,
                detail: Detail::Ports(Box::new(crate::probe::PortsDetail {
                    unexpected_open: vec![3389],
                    expected_closed: vec![],
                    audited: vec![22, 3389],
                })),
            },
            finished: SystemTime::now(),
        });
        let text = crate::metrics::render(&registry);
        assert!(
            text.contains("port=\"3389\",system=\"\",target=\"web\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("port=\"22\",system=\"\",target=\"web\"} 0"),
            "{text}"
        );
        let without =
            catalog("  - {id: web, area: \"15\", address: 127.0.0.1, checks: [tcp: {port: 80}]}\n");
        state.apply_catalog(without).expect("apply");
        let text = crate::metrics::render(&registry);
        assert!(!text.contains("iocwatch_port_unexpected_open{"), "{text}");
    }

    /// Table: which targets are down → the effective state of each, with a commune on two
    /// redundant uplinks and a server behind the commune.
    #[test]
    fn unreachable_only_when_every_upstream_is_cut() {
        let t = |id: &str, deps: &str| {
            format!("  - {{id: {id}, area: \"15\", address: 127.0.0.1, depends_on: [{deps}], checks: [icmp: {{}}]}}\n")
        };
        let catalog = catalog(
            &(t("tslcd", "")
                + &t("internet", "")
                + &t("commune", "tslcd, internet")
                + &t("server", "commune")),
        );
        use TargetState::{Degraded, Down, Unreachable, Up};
        let cases: [(&[&str], [TargetState; 4]); 6] = [
            (&[], [Up, Up, Up, Up]),
            (&["server"], [Up, Up, Up, Down]),
            // One uplink of a redundant site lost: the site runs on the other.
            (&["tslcd"], [Down, Up, Degraded, Up]),
            (
                &["tslcd", "commune", "server"],
                [Down, Up, Down, Unreachable],
            ),
            (
                &["tslcd", "internet", "commune", "server"],
                [Down, Down, Unreachable, Unreachable],
            ),
            // Both uplinks reported down but the site answers: a path nobody configured.
            (&["tslcd", "internet"], [Down, Down, Degraded, Up]),
        ];
        for (down, expected) in cases {
            let mut state = State::new(
                Registry::new(),
                Arc::clone(&catalog),
                Arc::new(crate::store::Store::in_memory().expect("db")),
                Arc::default(),
            )
            .expect("state");
            for id in ["tslcd", "internet", "commune", "server"] {
                state.record(result(id, !down.contains(&id)));
            }
            assert_eq!(state.effective_states(), expected, "down: {down:?}");
            state.update_rollups(true);
            let status = state.subscribe().borrow().clone();
            let want_unreachable = expected.iter().filter(|s| **s == Unreachable).count() as u32;
            assert_eq!(
                status.summary.unreachable, want_unreachable,
                "down: {down:?}"
            );
        }
    }
}
