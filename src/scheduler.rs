//! Runs every check on its own interval, in the background (never on scrape).
//!
//! One task owns the schedule: a queue of when each check is next due. It wakes when the
//! earliest is due, but at most once per [`BATCH`], and starts every round then due, together
//! in one task that lives only while their probes run. An idle check is a few dozen bytes in the
//! queue rather than a parked task, and at ten thousand rounds a second the schedule wakes
//! forty times, not ten thousand. Each check's first round is offset within its interval by
//! a hash of its key, so start-up and reload spread the load instead of firing everything at
//! once, and a check keeps its phase across reloads. Concurrency is bounded per kind; how late
//! each round starts (the batching and the wait for a slot) is measured.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::{FuturesUnordered, StreamExt};
use prometheus::{Histogram, IntGauge};
use tokio::sync::{mpsc, watch, Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::{Catalog, Check, CheckKey};
use crate::metrics::AgentMetrics;
use crate::probe::Outcome;
use crate::probe::{Kind, Probe, ProbeContext};

/// The longest a due round waits for the schedule to wake: rounds falling due within it start
/// together. Small beside the intervals checks run at (seconds), large beside a probe's own
/// cost. A check with a shorter interval than this runs once a batch.
pub const BATCH: Duration = Duration::from_millis(25);

/// A finished probe round, as sent to the state.
#[derive(Debug)]
pub struct ProbeResult {
    pub key: CheckKey,
    pub outcome: Outcome,
    /// When the round finished, on the monotonic and the wall clock.
    pub at: Instant,
    pub finished: SystemTime,
}

/// What one kind of probe shares: its concurrency limit and its metric handles.
struct KindLimit {
    semaphore: Semaphore,
    /// The limit last set: the permits the semaphore stands for.
    limit: AtomicUsize,
    /// Permits a smaller limit still has to take back: held by rounds when it was set, they
    /// are forgotten as those rounds end instead of returning to the semaphore.
    owed: AtomicUsize,
    lateness: Histogram,
    in_flight: IntGauge,
}

impl KindLimit {
    /// Sets the limit in place, so rounds waiting for a slot see it at once. Called by the
    /// reload path only.
    fn resize(&self, permits: usize) {
        let had = self.limit.swap(permits, AtomicOrdering::AcqRel);
        if permits >= had {
            // A raise first cancels what an earlier cut still owes.
            let more = permits - had;
            let owed = self
                .owed
                .fetch_update(AtomicOrdering::AcqRel, AtomicOrdering::Acquire, |owed| {
                    Some(owed.saturating_sub(more))
                })
                .unwrap_or(0);
            self.semaphore.add_permits(more - owed.min(more));
        } else {
            let fewer = had - permits;
            let taken = self.semaphore.forget_permits(fewer);
            self.owed.fetch_add(fewer - taken, AtomicOrdering::AcqRel);
        }
    }

    /// Gives a round's permit back, or forgets it while a cut is owed.
    fn release(&self, permit: SemaphorePermit<'_>) {
        let owed =
            self.owed
                .fetch_update(AtomicOrdering::AcqRel, AtomicOrdering::Acquire, |owed| {
                    owed.checked_sub(1)
                });
        if owed.is_ok() {
            permit.forget();
        }
    }
}

/// Every kind's limit, made once: reloads resize the semaphores in place, so rounds waiting
/// for a slot see a new limit at once, and every kind always has one.
struct KindLimits([KindLimit; Kind::ALL.len()]);

impl KindLimits {
    fn new(metrics: &AgentMetrics) -> KindLimits {
        KindLimits(Kind::ALL.map(|kind| KindLimit {
            semaphore: Semaphore::new(0),
            limit: AtomicUsize::new(0),
            owed: AtomicUsize::new(0),
            lateness: metrics.lateness.with_label_values(&[kind.as_str()]),
            in_flight: metrics.in_flight.with_label_values(&[kind.as_str()]),
        }))
    }

    fn of(&self, kind: Kind) -> &KindLimit {
        // `Kind::ALL` lists the kinds in declaration order (unit-tested).
        &self.0[kind as usize]
    }
}

/// The handle the reload path holds; the schedule itself belongs to its task.
pub struct Scheduler {
    /// The catalog the schedule task runs; `None` until the first `apply`.
    plan: watch::Sender<Option<Arc<Catalog>>>,
    metrics: Arc<AgentMetrics>,
    limits: Arc<KindLimits>,
    running: usize,
}

impl Scheduler {
    pub fn new(
        ctx: Arc<ProbeContext>,
        results: mpsc::Sender<ProbeResult>,
        metrics: Arc<AgentMetrics>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Scheduler {
        let (plan, plans) = watch::channel(None);
        let limits = Arc::new(KindLimits::new(&metrics));
        let rounds = Arc::new(Rounds {
            ctx,
            results,
            limits: Arc::clone(&limits),
            shutdown: shutdown.clone(),
        });
        tracker.spawn(run(plans, rounds, tracker.clone(), shutdown));
        Scheduler {
            plan,
            metrics,
            limits,
            running: 0,
        }
    }

    /// Makes the running checks match `catalog`. Unchanged checks keep their schedule; changed
    /// checks finish their current round and start again; removed ones stop.
    pub fn apply(&mut self, catalog: &Arc<Catalog>) {
        let defaults = crate::catalog::Settings::default().max_concurrency;
        for kind in Kind::ALL {
            let permits = catalog
                .settings
                .max_concurrency
                .get(&kind)
                .or_else(|| defaults.get(&kind))
                .copied()
                .unwrap_or(100);
            self.limits.of(kind).resize(permits);
        }
        let mut per_kind: BTreeMap<Kind, i64> = Kind::ALL.iter().map(|k| (*k, 0)).collect();
        for check in catalog.checks() {
            *per_kind.entry(check.kind).or_default() += 1;
        }
        self.running = catalog.check_count();
        for (kind, n) in per_kind {
            self.metrics
                .checks
                .with_label_values(&[kind.as_str()])
                .set(n);
        }
        self.plan.send_replace(Some(Arc::clone(catalog)));
    }

    /// Checks in the catalog last applied.
    pub fn running(&self) -> usize {
        self.running
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

/// One scheduled check: what its rounds run, and whether one is running.
struct Slot {
    key: CheckKey,
    kind: Kind,
    probe: Arc<Probe>,
    interval: Duration,
    timeout: Duration,
    fingerprint: u64,
    /// A round started and not yet handed to the state: the next one waits for it.
    in_flight: AtomicBool,
    /// Removed or replaced by a reload: its queued turn is dropped, a round waiting for a
    /// slot does not start.
    retired: AtomicBool,
}

impl Slot {
    fn new(check: &Check) -> Slot {
        Slot {
            key: check.key.clone(),
            kind: check.kind,
            probe: Arc::clone(&check.probe),
            interval: check.interval,
            timeout: check.timeout,
            fingerprint: check.fingerprint,
            in_flight: AtomicBool::new(false),
            retired: AtomicBool::new(false),
        }
    }
}

/// A check's next turn; ordered by time alone.
struct Turn {
    at: Instant,
    slot: Arc<Slot>,
}

impl PartialEq for Turn {
    fn eq(&self, other: &Turn) -> bool {
        self.at == other.at
    }
}
impl Eq for Turn {}
impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Turn) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Turn {
    fn cmp(&self, other: &Turn) -> Ordering {
        self.at.cmp(&other.at)
    }
}

/// When every check runs next. Pure: the caller says what time it is.
#[derive(Default)]
struct Schedule {
    /// In catalog order; looked up by key only during a reload, so no index is kept.
    slots: Vec<Arc<Slot>>,
    queue: BinaryHeap<Reverse<Turn>>,
}

impl Schedule {
    fn apply(&mut self, catalog: &Catalog, now: Instant) {
        let mut old: HashMap<&CheckKey, &Arc<Slot>> =
            self.slots.iter().map(|slot| (&slot.key, slot)).collect();
        let mut slots = Vec::with_capacity(catalog.targets.len());
        for check in catalog.checks() {
            match old.remove(&check.key) {
                Some(slot) if slot.fingerprint == check.fingerprint => {
                    slots.push(Arc::clone(slot));
                }
                replaced => {
                    if let Some(replaced) = replaced {
                        replaced.retired.store(true, AtomicOrdering::Relaxed);
                    }
                    let slot = Arc::new(Slot::new(check));
                    self.queue.push(Reverse(Turn {
                        at: now + splay(&check.key, check.interval),
                        slot: Arc::clone(&slot),
                    }));
                    slots.push(slot);
                }
            }
        }
        for removed in old.values() {
            removed.retired.store(true, AtomicOrdering::Relaxed);
        }
        drop(old);
        slots.shrink_to_fit();
        self.slots = slots;
        // Turns of retired slots leave as they come up; many reloads in a long interval would
        // pile them up meanwhile.
        if self.queue.len() > 2 * self.slots.len() {
            self.queue
                .retain(|turn| !turn.0.slot.retired.load(AtomicOrdering::Relaxed));
        }
    }

    fn next(&self) -> Option<Instant> {
        self.queue.peek().map(|turn| turn.0.at)
    }

    /// The rounds due at `now`, each with when it was due; queues their next turns. A check
    /// whose previous round is still going skips this one, as does a turn missed entirely
    /// (the agent stalled): rounds are not made up in a burst.
    fn take_due(&mut self, now: Instant) -> Vec<(Instant, Arc<Slot>)> {
        let mut due = Vec::new();
        while self.next().is_some_and(|next| next <= now) {
            let Some(Reverse(Turn { at, slot })) = self.queue.pop() else {
                break;
            };
            if slot.retired.load(AtomicOrdering::Relaxed) {
                continue;
            }
            let mut next = at + slot.interval;
            if next <= now {
                let missed = (now - at).as_nanos() / slot.interval.as_nanos().max(1);
                let missed = u32::try_from(missed).unwrap_or(u32::MAX);
                next = at + slot.interval.saturating_mul(missed.saturating_add(1));
            }
            self.queue.push(Reverse(Turn {
                at: next,
                slot: Arc::clone(&slot),
            }));
            if !slot.in_flight.swap(true, AtomicOrdering::AcqRel) {
                due.push((at, slot));
            }
        }
        due
    }
}

/// What every round needs besides its check: shared, one reference count per round.
struct Rounds {
    ctx: Arc<ProbeContext>,
    results: mpsc::Sender<ProbeResult>,
    limits: Arc<KindLimits>,
    shutdown: CancellationToken,
}

async fn run(
    mut plans: watch::Receiver<Option<Arc<Catalog>>>,
    rounds: Arc<Rounds>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut schedule = Schedule::default();
    let mut last_wake = Instant::now();
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    loop {
        let wake = schedule
            .next()
            .map(|next| next.max(last_wake + BATCH))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        timer.as_mut().reset(wake);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            changed = plans.changed() => {
                if changed.is_err() {
                    return;
                }
                let catalog = plans.borrow_and_update().clone();
                if let Some(catalog) = &catalog {
                    schedule.apply(catalog, Instant::now());
                }
            }
            () = &mut timer => {
                last_wake = Instant::now();
                // The batch's rounds share one task: one spawn and one wake-up per batch
                // rather than per round. Each still runs on its own; the task ends with the
                // slowest.
                let batch: FuturesUnordered<_> = schedule
                    .take_due(last_wake)
                    .into_iter()
                    .map(|(scheduled, slot)| round(slot, scheduled, Arc::clone(&rounds)))
                    .collect();
                if !batch.is_empty() {
                    tracker.spawn(batch.count());
                }
            }
        }
    }
}

async fn round(slot: Arc<Slot>, scheduled: Instant, rounds: Arc<Rounds>) {
    let limit = rounds.limits.of(slot.kind);
    let permit = tokio::select! {
        permit = limit.semaphore.acquire() => permit.ok(),
        () = rounds.shutdown.cancelled() => None,
    };
    if let Some(permit) = permit {
        let outcome = if slot.retired.load(AtomicOrdering::Relaxed) {
            None
        } else {
            limit.lateness.observe(scheduled.elapsed().as_secs_f64());
            limit.in_flight.inc();
            // A round in flight is not cancelled by reload or stop: it ends by its own timeout.
            let outcome = slot
                .probe
                .run(&rounds.ctx, Instant::now() + slot.timeout)
                .await;
            limit.in_flight.dec();
            Some(outcome)
        };
        limit.release(permit);
        if let Some(outcome) = outcome {
            let result = ProbeResult {
                key: slot.key.clone(),
                outcome,
                at: Instant::now(),
                finished: SystemTime::now(),
            };
            // Refused only when the state has stopped: shutting down.
            let _ = rounds.results.send(result).await;
        }
    }
    slot.in_flight.store(false, AtomicOrdering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_cut_while_rounds_hold_permits_takes_them_back_as_they_end() {
        let registry = prometheus::Registry::new();
        let metrics = AgentMetrics::register(&registry).expect("metrics");
        let limits = KindLimits::new(&metrics);
        let limit = limits.of(Kind::Tcp);
        limit.resize(5);
        let held: Vec<_> = (0..4)
            .map(|_| limit.semaphore.try_acquire().expect("a free permit"))
            .collect();
        // Cut to 2 while 4 rounds run: the free permit goes now, 2 more as rounds end.
        limit.resize(2);
        assert_eq!(limit.semaphore.available_permits(), 0);
        let mut held = held.into_iter();
        for _ in 0..2 {
            limit.release(held.next().expect("held"));
            assert_eq!(limit.semaphore.available_permits(), 0);
        }
        // Raised to 3 while 2 rounds still run: one more than now, nothing owed any more.
        limit.resize(3);
        assert_eq!(limit.semaphore.available_permits(), 1);
        held.for_each(|permit| limit.release(permit));
        assert_eq!(limit.semaphore.available_permits(), 3);
        // A raise cancels what a cut still owes rather than adding on top of it.
        let held: Vec<_> = (0..3)
            .map(|_| limit.semaphore.try_acquire().expect("a free permit"))
            .collect();
        limit.resize(1);
        limit.resize(4);
        assert_eq!(limit.semaphore.available_permits(), 1);
        held.into_iter().for_each(|permit| limit.release(permit));
        assert_eq!(limit.semaphore.available_permits(), 4);
    }

    #[test]
    fn every_kind_has_its_own_limit() {
        let registry = prometheus::Registry::new();
        let metrics = AgentMetrics::register(&registry).expect("metrics");
        let limits = KindLimits::new(&metrics);
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "Kind::ALL in declaration order");
            // The limit found for a kind is the one labelled with it.
            limits.of(kind).in_flight.set(i as i64 + 1);
            let gauge = metrics.in_flight.with_label_values(&[kind.as_str()]);
            assert_eq!(gauge.get(), i as i64 + 1, "{kind:?}");
        }
    }

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

    fn slot_of(schedule: &Schedule, id: &str) -> Option<Arc<Slot>> {
        let key = CheckKey {
            target: Arc::from(id),
            check: Arc::from("svc"),
        };
        schedule.slots.iter().find(|slot| slot.key == key).cloned()
    }

    fn due_ids(schedule: &mut Schedule, now: Instant) -> Vec<String> {
        let mut ids: Vec<String> = schedule
            .take_due(now)
            .into_iter()
            .map(|(_, slot)| {
                slot.in_flight.store(false, AtomicOrdering::Release);
                slot.key.target.to_string()
            })
            .collect();
        ids.sort();
        ids
    }

    /// Reload keeps the slot (and so the schedule) of an unchanged check, starts a changed one
    /// again and drops a removed one, whose queued turn never comes up.
    #[test]
    fn apply_keeps_unchanged_checks_and_replaces_the_rest() {
        let start = Instant::now();
        let mut schedule = Schedule::default();
        schedule.apply(
            &catalog(
                &(target("same", 1, "1h")
                    + &target("changed", 2, "1h")
                    + &target("removed", 3, "1h")),
            ),
            start,
        );
        let same = slot_of(&schedule, "same").expect("scheduled");
        let changed = slot_of(&schedule, "changed").expect("scheduled");
        let removed = slot_of(&schedule, "removed").expect("scheduled");

        // `changed` gets a new interval; `removed` goes; a target is added.
        let later = start + Duration::from_secs(60);
        schedule.apply(
            &catalog(
                &(target("same", 1, "1h")
                    + &target("changed", 2, "2h")
                    + &target("added", 4, "1h")),
            ),
            later,
        );
        let kept = slot_of(&schedule, "same").expect("kept");
        assert!(Arc::ptr_eq(&same, &kept), "unchanged check keeps its slot");
        assert!(!kept.retired.load(AtomicOrdering::Relaxed));
        assert!(changed.retired.load(AtomicOrdering::Relaxed));
        assert!(removed.retired.load(AtomicOrdering::Relaxed));
        let new_changed = slot_of(&schedule, "changed").expect("started again");
        assert_eq!(new_changed.interval, Duration::from_secs(7200));
        assert!(slot_of(&schedule, "added").is_some());
        assert!(slot_of(&schedule, "removed").is_none());

        // Over the next two hours each live check comes up on its own interval, from its phase:
        // `same` from the first apply, the others from the second; `removed` never.
        let mut seen: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
        let mut now = later;
        while now < later + Duration::from_secs(7200) {
            now += Duration::from_secs(1);
            for (at, slot) in schedule.take_due(now) {
                slot.in_flight.store(false, AtomicOrdering::Release);
                seen.entry(slot.key.target.to_string())
                    .or_default()
                    .push(at);
            }
        }
        assert_eq!(
            seen.keys().map(String::as_str).collect::<Vec<_>>(),
            ["added", "changed", "same"]
        );
        let key = |id: &str| CheckKey {
            target: Arc::from(id),
            check: Arc::from("svc"),
        };
        let hour = Duration::from_secs(3600);
        let same_first = start + splay(&key("same"), hour);
        let expected: Vec<Instant> = (0..3)
            .map(|n| same_first + hour * n)
            .filter(|at| *at <= now)
            .collect();
        assert_eq!(seen["same"], expected);
        assert_eq!(seen["changed"], [later + splay(&key("changed"), 2 * hour)]);
        assert_eq!(seen["added"].len(), 2);
        assert_eq!(seen["added"][1] - seen["added"][0], hour);
    }

    /// A check whose round is still going when its next turn comes skips that turn, and an
    /// agent that stalled for several intervals runs each check once, not once per turn missed.
    #[test]
    fn take_due_skips_rounds_in_flight_and_missed_turns() {
        let start = Instant::now();
        let mut schedule = Schedule::default();
        schedule.apply(
            &catalog(&(target("a", 1, "10s") + &target("b", 2, "10s"))),
            start,
        );
        let first = start + Duration::from_secs(10);
        let mut due = schedule.take_due(first);
        assert_eq!(due.len(), 2, "both due in their first interval");
        // `a` finishes, `b` is still running at its next turn.
        due.retain(|(_, slot)| slot.key.target.as_ref() == "b");
        let a = slot_of(&schedule, "a").expect("a");
        a.in_flight.store(false, AtomicOrdering::Release);
        assert_eq!(
            due_ids(&mut schedule, first + Duration::from_secs(10)),
            ["a"]
        );
        due[0].1.in_flight.store(false, AtomicOrdering::Release);
        assert_eq!(
            due_ids(&mut schedule, first + Duration::from_secs(20)),
            ["a", "b"]
        );

        // Stalled for a minute: one round each, then back on the old phase.
        let resumed = first + Duration::from_secs(85);
        assert_eq!(due_ids(&mut schedule, resumed), ["a", "b"]);
        assert_eq!(schedule.queue.len(), 2, "one turn queued per check");
        for turn in &schedule.queue {
            let at = turn.0.at;
            assert!(at > resumed && at <= resumed + Duration::from_secs(10));
        }
    }

    /// Reloads that keep replacing checks with a long interval do not pile up dead turns.
    #[test]
    fn retired_turns_do_not_pile_up() {
        let start = Instant::now();
        let mut schedule = Schedule::default();
        for n in 0..100u32 {
            let interval = format!("{}s", 3600 + n);
            schedule.apply(&catalog(&target("a", 1, &interval)), start);
        }
        assert!(
            schedule.queue.len() <= 3,
            "queue holds {}",
            schedule.queue.len()
        );
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
