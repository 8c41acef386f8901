//! The one owner of per-check results and of everything judged from them: baselines, the
//! per-check series, the reachability snapshot, rollups, the alert engine and the status
//! snapshot. Probes send results here; nothing else writes these metrics.
//!
//! Each result is recorded as it comes (baseline compared, series set). Once a second the
//! tick computes the reachability snapshot (when a state changed), the rollups, and runs the
//! alert engine over the second's rounds; the engine's writes go to the journal, its view to
//! the API and the alert metrics. The status snapshot is refreshed every few ticks.

mod alert_metrics;
mod baseline;
mod hourly;
mod rollup;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::alert::{AlertsSnapshot, Engine, Round, Step};
use crate::catalog::{Catalog, KeyMap, Target};
use crate::metrics::{Cells, CheckTable, Exposition};
use crate::model::record::OpenAlert;
use crate::model::{unix_ms, Recorder, Write};
use crate::reach::{Reach, TargetState};
use crate::scheduler::ProbeResult;
use crate::status::{self, LastResult, Status};
use alert_metrics::AlertMetrics;

pub use baseline::Baselines;

/// Messages to the state besides results.
pub enum StateMsg {
    /// A reload: the new catalog.
    Catalog(Arc<Catalog>),
    /// Accept the current content of a target as its baseline; the answer is the names of
    /// the checks that have one, or `None` for an unknown target.
    AcceptBaselines(String, oneshot::Sender<Option<Vec<String>>>),
}

pub struct State {
    catalog: Arc<Catalog>,
    last: KeyMap<LastResult>,
    baselines: Baselines,
    /// The per-check series, and each check's cell in it (by target and check index).
    table: Arc<CheckTable>,
    cells: Cells,
    rollups: rollup::Rollups,
    reach: Arc<Reach>,
    /// Each target's state and since when, as of the last snapshot.
    since: HashMap<Arc<str>, (TargetState, SystemTime)>,
    counted: status::Counted,
    /// A result changed a target's own state since the last snapshot.
    dirty: bool,
    engine: Engine,
    /// Rounds since the last tick, for the engine.
    rounds: Vec<Round>,
    /// Writes since the last tick (baselines), sent with the engine's.
    writes: Vec<Write>,
    journal: Recorder,
    /// Rounds added up by the hour, for reports.
    hourly: hourly::Hourly,
    alert_metrics: AlertMetrics,
    alerts: watch::Sender<Arc<AlertsSnapshot>>,
    status: watch::Sender<Arc<Status>>,
}

impl State {
    /// A state for `catalog`, with the baselines and open alerts the store held at start.
    pub fn new(
        exposition: &Exposition,
        catalog: Arc<Catalog>,
        engine: Engine,
        baselines: Baselines,
        journal: Recorder,
    ) -> prometheus::Result<State> {
        let registry = exposition.registry();
        let table = Arc::clone(exposition.checks());
        let cells = table.apply(&catalog);
        let mut rollups = rollup::Rollups::register(registry)?;
        rollups.info(&catalog);
        let alert_metrics = AlertMetrics::register(registry)?;
        let mut state = State {
            catalog,
            last: KeyMap::default(),
            baselines,
            table,
            cells,
            rollups,
            reach: Arc::default(),
            since: HashMap::new(),
            counted: status::Counted::default(),
            dirty: true,
            engine,
            rounds: Vec::new(),
            writes: Vec::new(),
            journal,
            hourly: hourly::Hourly::default(),
            alert_metrics,
            alerts: watch::Sender::new(Arc::default()),
            status: watch::Sender::new(Arc::new(Status::default())),
        };
        state.update_reach();
        state.publish_status();
        Ok(state)
    }

    /// Picks up the alerts the store held as open when the agent stopped.
    pub fn restore(&mut self, open: &[OpenAlert]) {
        let effects = self
            .engine
            .restore(&self.catalog, open, Instant::now(), SystemTime::now());
        if !open.is_empty() {
            tracing::info!(
                alerts = open.len(),
                "open alerts restored from the database"
            );
        }
        self.writes.extend(effects.writes);
        self.flush();
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn reach(&self) -> &Arc<Reach> {
        &self.reach
    }

    /// A receiver of the status snapshots, for the status page and the API.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Status>> {
        self.status.subscribe()
    }

    /// A receiver of the alert snapshots, for `GET /api/v1/alerts` and the status page.
    pub fn subscribe_alerts(&self) -> watch::Receiver<Arc<AlertsSnapshot>> {
        self.alerts.subscribe()
    }

    /// Swaps in a new catalog: series of removed or relabelled checks disappear, results of
    /// unchanged checks are kept, alerts of checks that are gone resolve.
    pub fn apply_catalog(&mut self, new: Arc<Catalog>) {
        // The rounds of the old catalog are judged under it first.
        self.tick();
        self.hourly.apply_catalog(&self.catalog, &mut self.writes);
        self.cells = self.table.apply(&new);
        self.last.retain(|key, _| new.check(key).is_some());
        let ids: std::collections::HashSet<&str> = new.targets.iter().map(|t| &*t.id).collect();
        self.since.retain(|id, _| ids.contains(&**id));
        self.catalog = new;
        self.baselines.retain(&self.catalog);
        let effects = self.engine.apply_catalog(&self.catalog, SystemTime::now());
        self.writes.extend(effects.writes);
        self.rollups.info(&self.catalog);
        self.dirty = true;
        self.tick();
    }

    pub fn record(&mut self, mut result: ProbeResult) {
        // A result of a check removed by a reload while it ran is dropped.
        let Some((t, c)) = self.catalog.position(&result.key) else {
            return;
        };
        self.baselines.judge(
            &result.key,
            &mut result.outcome,
            unix_ms(result.finished),
            &mut self.writes,
        );
        if let Some(cell) = self.cells.get(self.catalog.check_number(t, c)) {
            cell.record(&result.outcome, unix_seconds(result.finished));
        }
        let last = LastResult::from_outcome(&result.outcome, result.finished);
        let ok = last.failure.is_none();
        self.hourly.record(
            &self.catalog,
            (t, c),
            !ok,
            // A failed round's length is its timeout, not a latency.
            last.latency_seconds.filter(|_| ok),
            result.finished,
        );
        let before = self.last.insert(result.key.clone(), last);
        if before.map(|b| b.failure.is_none()) != Some(ok) {
            self.dirty = true;
        }
        self.rounds.push(Round {
            key: result.key,
            outcome: result.outcome,
            at: result.at,
            finished: result.finished,
        });
    }

    /// Accepts the current content of `target` as its baselines.
    pub fn accept_baselines(&mut self, target: &str) -> Option<Vec<String>> {
        let accepted = self
            .baselines
            .accept(&self.catalog, target, &mut self.writes);
        tracing::info!(target, checks = ?accepted, "baselines accepted");
        self.flush();
        accepted
    }

    /// A target's state from its own checks only.
    fn own_state(&self, target: &Target) -> TargetState {
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

    /// The reachability snapshot and the rollups, when a target's own state changed.
    fn update_reach(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let own: Vec<TargetState> = self
            .catalog
            .targets
            .iter()
            .map(|t| self.own_state(t))
            .collect();
        let reach = Reach::compute(&self.catalog, &own);
        let now = SystemTime::now();
        for (target, &state) in self.catalog.targets.iter().zip(&reach.states) {
            let entry = self
                .since
                .entry(Arc::clone(&target.id))
                .or_insert((state, now));
            if entry.0 != state {
                *entry = (state, now);
            }
        }
        self.counted = self.rollups.count(&self.catalog, &reach.states);
        self.reach = Arc::new(reach);
    }

    /// Once a second: reachability, then the alert engine over the second's rounds; its
    /// writes (and the baselines') go to the journal, its view to the API and metrics.
    pub fn tick(&mut self) {
        self.update_reach();
        let rounds = std::mem::take(&mut self.rounds);
        let effects = self.engine.step(Step {
            catalog: &self.catalog,
            reach: &self.reach,
            rounds: &rounds,
            now: Instant::now(),
            wall: SystemTime::now(),
        });
        self.writes.extend(effects.writes);
        self.hourly.tick(
            &self.catalog,
            Instant::now(),
            SystemTime::now(),
            &mut self.writes,
        );
        self.flush();
        let view = self.engine.view(&self.catalog);
        self.alert_metrics.show(&view);
        self.alerts.send_if_modified(|old| {
            if **old == view {
                false
            } else {
                *old = Arc::new(view);
                true
            }
        });
    }

    /// The last tick before shutdown; what was counted for reports goes too.
    pub fn finish(&mut self) {
        self.tick();
        self.hourly.flush(&self.catalog, &mut self.writes);
        self.flush();
    }

    fn flush(&mut self) {
        let writes = std::mem::take(&mut self.writes);
        if !self.journal.record(writes) {
            tracing::error!("the journal has stopped; writes are lost");
        }
    }

    /// Builds a fresh status snapshot (the costlier part: tens of milliseconds for a
    /// province of 20,000 targets, so it runs every few seconds).
    pub fn publish_status(&mut self) {
        self.update_reach();
        let snapshot = status::build(
            &self.catalog,
            &self.last,
            &self.reach,
            &self.since,
            &self.counted,
        );
        self.status.send_replace(Arc::new(snapshot));
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// Results come thousands a second: each wake-up of the state owner takes up to this many.
const RESULTS_PER_WAKE: usize = 512;
/// After a wake-up that did not fill a batch, results are left to gather this long, so the
/// state owner wakes at most ~100 times a second instead of once per result. Metrics and
/// alerts see a result at most this much later; the results channel holds far more.
const GATHER: Duration = Duration::from_millis(10);

/// Runs the state owner until cancelled: results, catalogs and baseline acceptance in;
/// metrics, snapshots and writes out. Before it stops, the last tick's writes go to the
/// journal, so shutdown drains to disk.
pub async fn run(
    mut state: State,
    mut results: mpsc::Receiver<ProbeResult>,
    mut control: mpsc::Receiver<StateMsg>,
    shutdown: CancellationToken,
) {
    const SNAPSHOT_EVERY_TICKS: u64 = 5;
    let mut ticks: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(RESULTS_PER_WAKE);
    loop {
        tokio::select! {
            n = results.recv_many(&mut batch, RESULTS_PER_WAKE) => {
                if n == 0 {
                    break;
                }
                for result in batch.drain(..) {
                    state.record(result);
                }
                if n < RESULTS_PER_WAKE {
                    tokio::time::sleep(GATHER).await;
                }
            }
            msg = control.recv() => match msg {
                Some(StateMsg::Catalog(catalog)) => state.apply_catalog(catalog),
                Some(StateMsg::AcceptBaselines(target, reply)) => {
                    let _ = reply.send(state.accept_baselines(&target));
                }
                None => break,
            },
            _ = tick.tick() => {
                ticks += 1;
                state.tick();
                if ticks % SNAPSHOT_EVERY_TICKS == 0 {
                    state.publish_status();
                }
            }
            () = shutdown.cancelled() => break,
        }
    }
    state.finish();
}

#[cfg(test)]
mod tests;
