//! The journal: the one task that writes the store. Everything that changes the durable
//! record (the alert engine's transitions, the state's baselines, the notifiers' deliveries)
//! arrives here as [`Write`]s through a [`Recorder`](crate::model::Recorder), in order, and is committed in one
//! transaction per turn on the store's own thread. Only after a commit are the notifiers
//! woken, so nothing is ever sent that is not on disk.
//!
//! When a commit fails (a full disk, a read-only file system, a lock held by another
//! process) nothing is dropped: the writes stay queued (bounded and counted) and are
//! committed, in order, once the store works again. Meanwhile the agent reports its own
//! fault: `iocwatch_store_errors_total`, `iocwatch_store_healthy 0`, `/-/ready` answers 503
//! with the reason, and after a few seconds one agent-health alert goes to every notifier
//! that can still deliver (Alertmanager and the direct channels, past the outbox). It never
//! turns into target alerts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::model::record::Batch;
use crate::model::{Event, EventStatus, Severity, Write};
use crate::notify::Wakes;
use crate::store::{Store, StoreError};

/// The most writes kept while the store fails; beyond it the oldest batches are dropped
/// and counted. At a few hundred bytes a write this is tens of megabytes: hours of a
/// province's transitions.
const MAX_PENDING_WRITES: usize = 200_000;
/// How long the store must fail before the agent-health alert goes out: a lock held for a
/// moment is not worth a page.
const ALERT_AFTER: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How the store is doing, for `/-/ready` and the status page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreHealth {
    /// Since when commits fail, and the last error.
    pub failing: Option<(SystemTime, String)>,
    /// Writes waiting for a commit.
    pub pending_writes: usize,
}

struct JournalMetrics {
    errors: IntCounter,
    healthy: IntGauge,
    pending: IntGauge,
    dropped: IntCounter,
    refused: IntCounter,
    commit: Histogram,
}

impl JournalMetrics {
    fn register(registry: &Registry) -> prometheus::Result<JournalMetrics> {
        let m = JournalMetrics {
            errors: IntCounter::new(
                "iocwatch_store_errors_total",
                "Commits to the embedded database that failed (the writes are kept and tried again).",
            )?,
            healthy: IntGauge::new(
                "iocwatch_store_healthy",
                "1 while the embedded database takes writes, 0 while commits fail.",
            )?,
            pending: IntGauge::new(
                "iocwatch_store_pending_writes",
                "Writes waiting to be committed to the embedded database.",
            )?,
            dropped: IntCounter::new(
                "iocwatch_store_writes_dropped_total",
                "Writes given up because too many waited while the database failed.",
            )?,
            refused: IntCounter::new(
                "iocwatch_store_writes_refused_total",
                "Writes the database refused for good (a broken constraint); logged.",
            )?,
            commit: Histogram::with_opts(
                HistogramOpts::new(
                    "iocwatch_store_commit_duration_seconds",
                    "Time of one commit of the journal (one transaction, synchronous=FULL).",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            )?,
        };
        m.healthy.set(1);
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.healthy.clone()))?;
        registry.register(Box::new(m.pending.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.commit.clone()))?;
        Ok(m)
    }
}

/// What readers of the journal's state get.
pub struct JournalWatch {
    pub health: watch::Receiver<StoreHealth>,
    /// The agent-health alert, while the store fails (and its resolution after).
    pub agent_alert: watch::Receiver<Option<Event>>,
}

/// A batch waiting for its commit, and whom to tell when it is done.
type Queued = (Arc<Vec<Write>>, Option<oneshot::Sender<()>>);

pub struct Journal {
    store: Store,
    inbox: mpsc::UnboundedReceiver<Batch>,
    wakes: Arc<Wakes>,
    metrics: JournalMetrics,
    health: watch::Sender<StoreHealth>,
    agent_alert: watch::Sender<Option<Event>>,
    /// Names the agent-health incidents, unique like the engine's.
    instance: String,
    queue: VecDeque<Queued>,
    queued_writes: usize,
    alerts_raised: u64,
}

impl Journal {
    pub fn new(
        store: Store,
        inbox: mpsc::UnboundedReceiver<Batch>,
        wakes: Arc<Wakes>,
        registry: &Registry,
        instance: &str,
    ) -> prometheus::Result<(Journal, JournalWatch)> {
        let (health, health_rx) = watch::channel(StoreHealth::default());
        let (agent_alert, alert_rx) = watch::channel(None);
        let journal = Journal {
            store,
            inbox,
            wakes,
            metrics: JournalMetrics::register(registry)?,
            health,
            agent_alert,
            instance: instance.to_owned(),
            queue: VecDeque::new(),
            queued_writes: 0,
            alerts_raised: 0,
        };
        Ok((
            journal,
            JournalWatch {
                health: health_rx,
                agent_alert: alert_rx,
            },
        ))
    }

    fn push(&mut self, batch: Batch) {
        self.queued_writes += batch.writes.len();
        self.queue
            .push_back((Arc::new(batch.writes), batch.committed));
        while self.queued_writes > MAX_PENDING_WRITES && self.queue.len() > 1 {
            if let Some((oldest, _)) = self.queue.pop_front() {
                self.queued_writes -= oldest.len();
                self.metrics.dropped.inc_by(oldest.len() as u64);
                tracing::error!(
                    writes = oldest.len(),
                    "the database has failed for too long: oldest writes given up"
                );
            }
        }
        self.metrics.pending.set(self.queued_writes as i64);
    }

    fn take_inbox(&mut self) -> bool {
        loop {
            match self.inbox.try_recv() {
                Ok(batch) => self.push(batch),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Runs until `shutdown`; then commits what is queued (a few tries within seconds) so
    /// that shutdown drains to disk, and stops.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut failing_since: Option<(Instant, SystemTime)> = None;
        let mut failures: u32 = 0;
        let mut last_logged: Option<Instant> = None;
        loop {
            let open = self.take_inbox();
            if self.queue.is_empty() {
                if !open || shutdown.is_cancelled() {
                    return;
                }
                tokio::select! {
                    batch = self.inbox.recv() => match batch {
                        Some(batch) => self.push(batch),
                        None => return,
                    },
                    () = shutdown.cancelled() => {}
                }
                continue;
            }
            let batches: Vec<Arc<Vec<Write>>> =
                self.queue.iter().map(|(b, _)| Arc::clone(b)).collect();
            let taken = batches.len();
            let started = Instant::now();
            match self.store.commit(batches).await {
                Ok(committed) => {
                    self.metrics.commit.observe(started.elapsed().as_secs_f64());
                    for refused in &committed.refused {
                        tracing::error!(write = %refused, "the database refused a write; left out");
                    }
                    self.metrics.refused.inc_by(committed.refused.len() as u64);
                    let mut wake = false;
                    for (batch, committed) in self.queue.drain(..taken) {
                        self.queued_writes -= batch.len();
                        wake |= batch.iter().any(Write::wakes_notifiers);
                        if let Some(tx) = committed {
                            let _ = tx.send(());
                        }
                    }
                    self.metrics.pending.set(self.queued_writes as i64);
                    if failing_since.take().is_some() {
                        tracing::info!(
                            "the database takes writes again; everything kept has been committed"
                        );
                        self.metrics.healthy.set(1);
                        self.resolve_agent_alert();
                        failures = 0;
                        // Deliveries that waited for the store may go on now.
                        wake = true;
                    }
                    self.health.send_replace(StoreHealth {
                        failing: None,
                        pending_writes: self.queued_writes,
                    });
                    if wake {
                        self.wakes.wake_all();
                    }
                }
                Err(error) => {
                    self.metrics.errors.inc();
                    self.metrics.healthy.set(0);
                    let (since, since_wall) =
                        *failing_since.get_or_insert((Instant::now(), SystemTime::now()));
                    if last_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                        || failures == 0
                    {
                        tracing::error!(
                            %error,
                            pending_writes = self.queued_writes,
                            "cannot commit to the database; keeping the writes and trying again"
                        );
                        last_logged = Some(Instant::now());
                    }
                    self.health.send_replace(StoreHealth {
                        failing: Some((since_wall, error.to_string())),
                        pending_writes: self.queued_writes,
                    });
                    if since.elapsed() >= ALERT_AFTER {
                        self.raise_agent_alert(since_wall, &error);
                    }
                    if shutdown.is_cancelled() && failures >= 2 {
                        tracing::error!(
                            writes = self.queued_writes,
                            "stopping with writes the database would not take"
                        );
                        return;
                    }
                    failures += 1;
                    let wait = Duration::from_millis(250 << failures.min(6)).min(MAX_BACKOFF);
                    let wait = if shutdown.is_cancelled() {
                        wait.min(Duration::from_secs(1))
                    } else {
                        wait
                    };
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.cancelled(), if !shutdown.is_cancelled() => {}
                    }
                }
            }
        }
    }

    fn raise_agent_alert(&mut self, since: SystemTime, error: &StoreError) {
        let already = self
            .agent_alert
            .borrow()
            .as_ref()
            .is_some_and(|e| e.status == EventStatus::Firing);
        if already {
            return;
        }
        self.alerts_raised += 1;
        let incident = format!("{}-store-{}", self.instance, self.alerts_raised);
        tracing::error!(incident, "agent-health alert: the database fails");
        self.agent_alert
            .send_replace(Some(store_event(&incident, since, &error.to_string())));
    }

    fn resolve_agent_alert(&mut self) {
        self.agent_alert.send_modify(|alert| {
            if let Some(event) = alert {
                if event.status == EventStatus::Firing {
                    event.status = EventStatus::Resolved;
                    event.id = format!("{}-resolved", event.incident);
                    event.ended_at = Some(crate::model::rfc3339(SystemTime::now()));
                }
            }
        });
    }
}

/// The agent-health event: the agent cannot write its database.
fn store_event(incident: &str, since: SystemTime, error: &str) -> Event {
    Event {
        id: format!("{incident}-firing"),
        status: EventStatus::Firing,
        alertname: "IocwatchStoreFailing".to_owned(),
        severity: Severity::Critical,
        target: "iocwatch".to_owned(),
        target_name: Some("iocwatch".to_owned()),
        check: "store".to_owned(),
        kind: "agent".to_owned(),
        area: String::new(),
        area_path: Vec::new(),
        system: None,
        labels: Default::default(),
        started_at: crate::model::rfc3339(since),
        ended_at: None,
        flapping: false,
        value: None,
        note: Some(error.to_owned()),
        affected_targets: 0,
        affected_areas: Vec::new(),
        affected_systems: Vec::new(),
        status_url: None,
        incident: incident.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Recorder;

    #[tokio::test]
    async fn writes_are_committed_in_order_and_the_sender_is_told() {
        let store = Store::in_memory().await.expect("db");
        let (recorder, inbox) = Recorder::channel();
        let registry = Registry::new();
        let (journal, watch) =
            Journal::new(store.clone(), inbox, Arc::default(), &registry, "t").expect("journal");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(journal.run(shutdown.clone()));
        let set = |v: &str| Write::BaselineSet {
            key: "a/dns".into(),
            value: v.into(),
            at: 1,
        };
        assert!(recorder.record(vec![set("1")]));
        assert!(
            recorder
                .record_and_wait(vec![set("2")], Duration::from_secs(5))
                .await
        );
        assert_eq!(store.baselines().await.expect("read")["a/dns"], "2");
        assert_eq!(watch.health.borrow().failing, None);
        shutdown.cancel();
        task.await.expect("journal stops");
    }
}
