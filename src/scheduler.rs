//! Runs every check on its own interval, in the background (never on scrape).
//!
//! Each check has one task. Its first round is offset within the interval by a hash of its
//! key, so start-up and reload spread the load instead of firing everything at once, and a
//! check keeps its phase across reloads. Concurrency is bounded per kind; how late each round
//! starts (including the wait for a slot) is measured.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::{Catalog, Check, CheckKey};
use crate::metrics::AgentMetrics;
use crate::probe::Outcome;
use crate::probe::{Kind, ProbeContext};

/// A finished probe round, as sent to the state.
#[derive(Debug)]
pub struct ProbeResult {
    pub key: CheckKey,
    pub outcome: Outcome,
    /// When the round finished, on the monotonic and the wall clock.
    pub at: Instant,
    pub finished: SystemTime,
}

struct Running {
    fingerprint: u64,
    stop: CancellationToken,
}

struct Limit {
    semaphore: Arc<Semaphore>,
    permits: usize,
}

pub struct Scheduler {
    ctx: Arc<ProbeContext>,
    results: mpsc::Sender<ProbeResult>,
    metrics: Arc<AgentMetrics>,
    limits: BTreeMap<Kind, Limit>,
    running: HashMap<CheckKey, Running>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Scheduler {
    pub fn new(
        ctx: Arc<ProbeContext>,
        results: mpsc::Sender<ProbeResult>,
        metrics: Arc<AgentMetrics>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Scheduler {
        Scheduler {
            ctx,
            results,
            metrics,
            limits: BTreeMap::new(),
            running: HashMap::new(),
            tracker,
            shutdown,
        }
    }

    /// Makes the running checks match `catalog`. Unchanged checks keep their task, and with it
    /// their schedule; changed checks finish their current round and restart; removed ones stop.
    pub fn apply(&mut self, catalog: &Catalog) {
        for (&kind, &limit) in &catalog.settings.max_concurrency {
            self.set_limit(kind, limit);
        }
        let mut wanted: HashMap<&CheckKey, &Check> = HashMap::new();
        for check in catalog.checks() {
            wanted.insert(&check.key, check);
        }
        self.running.retain(|key, running| {
            let keep = wanted
                .get(key)
                .is_some_and(|c| c.fingerprint == running.fingerprint);
            if !keep {
                running.stop.cancel();
            }
            keep
        });
        let mut per_kind: BTreeMap<Kind, i64> = Kind::ALL.iter().map(|k| (*k, 0)).collect();
        for check in catalog.checks() {
            *per_kind.entry(check.kind).or_default() += 1;
            if self.running.contains_key(&check.key) {
                continue;
            }
            let stop = self.shutdown.child_token();
            self.running.insert(
                check.key.clone(),
                Running {
                    fingerprint: check.fingerprint,
                    stop: stop.clone(),
                },
            );
            let task = CheckTask {
                key: check.key.clone(),
                check_kind: check.kind,
                probe: Arc::clone(&check.probe),
                interval: check.interval,
                timeout: check.timeout,
                ctx: Arc::clone(&self.ctx),
                limit: Arc::clone(&self.limit(check.kind).semaphore),
                results: self.results.clone(),
                metrics: Arc::clone(&self.metrics),
            };
            self.tracker.spawn(task.run(stop));
        }
        for (kind, n) in per_kind {
            self.metrics
                .checks
                .with_label_values(&[kind.as_str()])
                .set(n);
        }
    }

    fn limit(&mut self, kind: Kind) -> &Limit {
        self.limits.entry(kind).or_insert_with(|| {
            let permits = crate::catalog::Settings::default()
                .max_concurrency
                .get(&kind)
                .copied()
                .unwrap_or(100);
            Limit {
                semaphore: Arc::new(Semaphore::new(permits)),
                permits,
            }
        })
    }

    /// Changes a limit in place, so running tasks see it without a restart.
    fn set_limit(&mut self, kind: Kind, permits: usize) {
        let limit = self.limits.entry(kind).or_insert_with(|| Limit {
            semaphore: Arc::new(Semaphore::new(permits)),
            permits,
        });
        if permits > limit.permits {
            limit.semaphore.add_permits(permits - limit.permits);
        } else if permits < limit.permits {
            // Permits in use now are taken away as they come back.
            let mut to_forget = limit.permits - permits;
            to_forget -= limit.semaphore.forget_permits(to_forget);
            if to_forget > 0 {
                let semaphore = Arc::clone(&limit.semaphore);
                tokio::spawn(async move {
                    if let Ok(permits) = semaphore
                        .acquire_many(u32::try_from(to_forget).unwrap_or(u32::MAX))
                        .await
                    {
                        permits.forget();
                    }
                });
            }
        }
        limit.permits = permits;
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }
}

/// Offset of a check's first round within its interval: stable for a key, spread over keys.
pub fn splay(key: &CheckKey, interval: Duration) -> Duration {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    let interval_ns = u64::try_from(interval.as_nanos())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_nanos(hasher.finish() % interval_ns)
}

struct CheckTask {
    key: CheckKey,
    check_kind: Kind,
    probe: Arc<crate::probe::Probe>,
    interval: Duration,
    timeout: Duration,
    ctx: Arc<ProbeContext>,
    limit: Arc<Semaphore>,
    results: mpsc::Sender<ProbeResult>,
    metrics: Arc<AgentMetrics>,
}

impl CheckTask {
    async fn run(self, stop: CancellationToken) {
        let kind = self.check_kind.as_str();
        let lateness = self.metrics.lateness.with_label_values(&[kind]);
        let in_flight = self.metrics.in_flight.with_label_values(&[kind]);
        let mut ticker = tokio::time::interval_at(
            Instant::now() + splay(&self.key, self.interval),
            self.interval,
        );
        // A round that could not start on time is skipped, not made up in a burst.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            let scheduled = tokio::select! {
                t = ticker.tick() => t,
                () = stop.cancelled() => return,
            };
            let permit = tokio::select! {
                p = self.limit.acquire() => p,
                () = stop.cancelled() => return,
            };
            let Ok(_permit) = permit else { return };
            lateness.observe(scheduled.elapsed().as_secs_f64());
            in_flight.inc();
            // A round in flight is not cancelled by reload or stop: it ends by its own timeout.
            // Boxed: the largest probe's future (HTTP) would otherwise sit inline in every
            // idle task, kilobytes times a hundred thousand checks.
            let outcome = Box::pin(self.probe.run(&self.ctx, Instant::now() + self.timeout)).await;
            in_flight.dec();
            let result = ProbeResult {
                key: self.key.clone(),
                outcome,
                at: Instant::now(),
                finished: SystemTime::now(),
            };
            if self.results.send(result).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(target: &str) -> CheckKey {
        CheckKey {
            target: Arc::from(target),
            check: Arc::from("icmp"),
        }
    }

    fn catalog(targets: &str) -> Catalog {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("iocwatch.yaml");
        let text = format!("areas: [{{code: \"15\", name: Lào Cai}}]\ntargets:\n{targets}");
        std::fs::write(&path, text).expect("write");
        crate::config::load(&path).expect("valid config").catalog
    }

    fn target(id: &str, port: u16, interval: &str) -> String {
        format!("  - {{id: {id}, area: \"15\", address: 127.0.0.1, interval: {interval}, checks: [tcp: {{port: {port}, name: svc}}]}}\n")
    }

    /// Reload keeps the task (and so the schedule) of an unchanged check, restarts a changed
    /// one and stops a removed one. Nothing is awaited, so no probe runs.
    #[tokio::test]
    async fn apply_keeps_unchanged_checks_and_replaces_the_rest() {
        let (results, _inbox) = mpsc::channel(16);
        let registry = prometheus::Registry::new();
        let metrics = Arc::new(AgentMetrics::register(&registry).expect("metrics"));
        let shutdown = CancellationToken::new();
        let mut scheduler = Scheduler::new(
            Arc::new(ProbeContext::new()),
            results,
            metrics,
            TaskTracker::new(),
            shutdown.clone(),
        );
        let first = catalog(
            &(target("same", 1, "1h") + &target("changed", 2, "1h") + &target("removed", 3, "1h")),
        );
        scheduler.apply(&first);
        let token = |s: &Scheduler, id: &str| {
            let key = CheckKey {
                target: Arc::from(id),
                check: Arc::from("svc"),
            };
            s.running.get(&key).map(|r| r.stop.clone())
        };
        let same = token(&scheduler, "same").expect("running");
        let changed = token(&scheduler, "changed").expect("running");
        let removed = token(&scheduler, "removed").expect("running");

        // `changed` gets a new interval; `removed` goes; a target is added.
        let second = catalog(
            &(target("same", 1, "1h") + &target("changed", 2, "2h") + &target("added", 4, "1h")),
        );
        scheduler.apply(&second);
        assert!(!same.is_cancelled(), "unchanged check keeps its task");
        assert!(changed.is_cancelled() && removed.is_cancelled());
        let new_changed = token(&scheduler, "changed").expect("restarted");
        assert!(!new_changed.is_cancelled());
        assert!(token(&scheduler, "added").is_some());
        assert!(token(&scheduler, "removed").is_none());
        assert_eq!(scheduler.running(), 3);
        shutdown.cancel();
    }

    #[test]
    fn splay_is_stable_and_within_the_interval() {
        let interval = Duration::from_secs(30);
        for i in 0..1000 {
            let k = key(&format!("t{i}"));
            let s = splay(&k, interval);
            assert!(s < interval);
            assert_eq!(s, splay(&k, interval));
        }
    }

    #[test]
    fn splay_spreads_checks_over_the_interval() {
        let interval = Duration::from_secs(10);
        let mut buckets = [0u32; 10];
        for i in 0..10_000 {
            let s = splay(&key(&format!("commune-{i}")), interval);
            buckets[usize::try_from(s.as_secs()).expect("small")] += 1;
        }
        // Each second of the interval gets roughly a tenth of the checks.
        for (second, n) in buckets.iter().enumerate() {
            assert!((800..1200).contains(n), "second {second} got {n} of 10000");
        }
    }
}
