//! The alert engine: owned by the state task, fed every probe round and a tick each second.
//!
//! - A round is judged against each condition of its check; the rule (hysteresis,
//!   flapping) decides when an alert fires or resolves. Firing opens an incident in the
//!   database at once.
//! - The tick decides what is sent: a firing alert of a target that is `unreachable`
//!   (every upstream down) is suppressed, and the root cause's alert carries how many
//!   targets, areas and systems sit behind it; an alert in a maintenance window is not
//!   sent. An alert that was held back and is still bad `fire_after` rounds after the
//!   reason ended is sent then (a commune that stays down after its gateway came back is
//!   its own fault).
//! - Each transition that sends anything is one transaction with its outbox rows; the
//!   notifiers are woken after the commit.
//! - After a restart, open alerts are read back: they go on firing without a second
//!   "fired", and resolve (with a message) as usual.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use prometheus::{IntGaugeVec, Opts, Registry};
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::judge::{Verdict, Window};
use super::rule::{AlertRule, Phase, Transition};
use crate::catalog::{Catalog, Check, CheckKey, Target};
use crate::model::{AlertName, Condition, Severity};
use crate::notify::{Event, EventStatus};
use crate::probe::Outcome;
use crate::state::TargetState;
use crate::store::{from_unix_ms, unix_ms, Firing, IncidentUpdate, Op, Queued, Store};

/// One alert: a condition of a check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertKey {
    pub check: CheckKey,
    pub name: AlertName,
}

impl AlertKey {
    /// The database key. Ids and check names hold no control characters, so a tab
    /// separates them unambiguously.
    pub fn id(&self) -> String {
        format!(
            "{}\t{}\t{}",
            self.check.target,
            self.check.check,
            self.name.as_str()
        )
    }

    pub fn parse(id: &str) -> Option<AlertKey> {
        let mut parts = id.split('\t');
        let (target, check, name) = (parts.next()?, parts.next()?, parts.next()?);
        Some(AlertKey {
            check: CheckKey {
                target: Arc::from(target),
                check: Arc::from(check),
            },
            name: AlertName::parse(name)?,
        })
    }
}

/// Wake-up handles of the notifier tasks, by notifier name; shared with the tasks so that a
/// reload that restarts them keeps the engine's handles valid.
#[derive(Default)]
pub struct Wakes {
    map: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wakes {
    /// The handle of one queue: a notifier, or one Alertmanager of it (`sub`).
    pub fn handle(&self, notifier: &str, sub: Option<&str>) -> Arc<Notify> {
        let key = match sub {
            Some(sub) => format!("{notifier}\t{sub}"),
            None => notifier.to_owned(),
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(key).or_default())
    }

    pub fn wake(&self, notifier: &str) {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let prefix = format!("{notifier}\t");
        for (key, notify) in map.iter() {
            if key == notifier || key.starts_with(&prefix) {
                notify.notify_one();
            }
        }
    }
}

/// What the API and the status page show of one alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    pub target: String,
    pub check: String,
    pub alertname: &'static str,
    pub severity: Severity,
    /// pending, firing, suppressed or maintenance.
    pub state: &'static str,
    pub flapping: bool,
    pub since: Option<String>,
    pub value: Option<f64>,
    pub note: Option<String>,
    /// The upstream targets whose failure explains this one, when suppressed.
    pub root_cause: Vec<String>,
    pub affected_targets: u32,
    pub affected_areas: Vec<String>,
    pub affected_systems: Vec<String>,
    pub maintenance: Option<String>,
    pub notified: bool,
    pub incident: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertsSnapshot {
    pub alerts: Vec<AlertView>,
}

/// Targets behind a root cause.
#[derive(Debug, Clone, Default, PartialEq)]
struct Affected {
    targets: u32,
    areas: Vec<String>,
    systems: Vec<String>,
}

struct Open {
    incident: i64,
    started: SystemTime,
    notified: bool,
    flapping: bool,
    /// Bad rounds still to see before a held-back alert is sent.
    hold: u32,
    /// Why it is held back now.
    suppressed_by: Vec<Arc<str>>,
    maintenance: Option<Arc<str>>,
    affected: Affected,
    /// The firing event as last built, the base of the resolved one.
    event: Option<Event>,
}

struct Live {
    condition: Condition,
    rule: AlertRule,
    window: Window,
    last: Option<Verdict>,
    open: Option<Open>,
}

pub struct Engine {
    store: Arc<Store>,
    wakes: Arc<Wakes>,
    live: BTreeMap<AlertKey, Live>,
    /// Alerts that are pending or open: the tick looks at these only, so a quiet province
    /// of 40,000 checks costs next to nothing each second.
    active: BTreeSet<AlertKey>,
    metrics: AlertMetrics,
    view: watch::Sender<Arc<AlertsSnapshot>>,
    active_windows: HashSet<Arc<str>>,
    last_prune: Option<Instant>,
    /// Writes since the last tick, committed together at the next one; nothing is sent
    /// before they are (notifiers are woken after the commit).
    ops: Vec<Op>,
    wake_pending: bool,
    next_incident: i64,
}

#[derive(Clone)]
struct AlertMetrics {
    alerts: IntGaugeVec,
    active: IntGaugeVec,
    active_series: HashSet<[String; 5]>,
    maintenance: IntGaugeVec,
}

impl AlertMetrics {
    fn register(registry: &Registry) -> prometheus::Result<AlertMetrics> {
        let alerts = IntGaugeVec::new(
            Opts::new(
                "iocwatch_alerts",
                "Alerts by state (pending, firing, suppressed, maintenance) and severity.",
            ),
            &["state", "severity"],
        )?;
        let active = IntGaugeVec::new(
            Opts::new(
                "iocwatch_alert_active",
                "1 for each alert that is not inactive, with its state.",
            ),
            &["target", "check", "alertname", "severity", "state"],
        )?;
        let maintenance = IntGaugeVec::new(
            Opts::new(
                "iocwatch_maintenance_window_active",
                "1 while a maintenance window is on.",
            ),
            &["window"],
        )?;
        for m in [&alerts, &active, &maintenance] {
            registry.register(Box::new(m.clone()))?;
        }
        Ok(AlertMetrics {
            alerts,
            active,
            active_series: HashSet::new(),
            maintenance,
        })
    }
}

const STATES: [&str; 4] = ["pending", "firing", "suppressed", "maintenance"];

impl Engine {
    pub fn new(
        store: Arc<Store>,
        wakes: Arc<Wakes>,
        registry: &Registry,
        catalog: &Catalog,
    ) -> prometheus::Result<Engine> {
        let metrics = AlertMetrics::register(registry)?;
        let mut engine = Engine {
            store,
            wakes,
            live: BTreeMap::new(),
            active: BTreeSet::new(),
            metrics,
            view: watch::Sender::new(Arc::new(AlertsSnapshot::default())),
            active_windows: HashSet::new(),
            last_prune: None,
            ops: Vec::new(),
            wake_pending: false,
            next_incident: 1,
        };
        engine.restore(catalog);
        Ok(engine)
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<AlertsSnapshot>> {
        self.view.subscribe()
    }

    /// Picks up the alerts that were open when the agent stopped.
    fn restore(&mut self, catalog: &Catalog) {
        match self.store.next_incident() {
            Ok(id) => self.next_incident = id,
            Err(error) => tracing::error!(%error, "cannot read the incident sequence"),
        }
        let rows = match self.store.open_alerts() {
            Ok(rows) => rows,
            Err(error) => {
                tracing::error!(%error, "cannot read open alerts; starting without them");
                return;
            }
        };
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut orphans = Vec::new();
        for row in rows {
            let Some(key) = AlertKey::parse(&row.key) else {
                continue;
            };
            let condition = catalog
                .check(&key.check)
                .and_then(|(_, c)| c.alerts.conditions.iter().find(|c| c.name == key.name));
            let started = from_unix_ms(row.started_at);
            let age = wall.duration_since(started).unwrap_or(Duration::ZERO);
            let Some(condition) = condition else {
                orphans.push((key, row));
                continue;
            };
            let since = now.checked_sub(age).unwrap_or(now);
            let event = catalog.check(&key.check).map(|(t, c)| {
                build_event(catalog, t, c, &key, condition, row.incident, started, None)
            });
            self.active.insert(key.clone());
            self.live.insert(
                key,
                Live {
                    condition: condition.clone(),
                    rule: AlertRule::restored_firing(condition.params, since, row.flapping),
                    window: Window::default(),
                    last: None,
                    open: Some(Open {
                        incident: row.incident,
                        started,
                        notified: row.notified,
                        flapping: row.flapping,
                        hold: 0,
                        suppressed_by: Vec::new(),
                        maintenance: None,
                        affected: Affected::default(),
                        event,
                    }),
                },
            );
        }
        if !self.live.is_empty() {
            tracing::info!(
                alerts = self.live.len(),
                "open alerts restored from the database"
            );
        }
        // Alerts whose check or condition left the config while the agent was down.
        for (key, row) in orphans {
            let queued = if row.notified {
                let event = orphan_event(&key, row.incident, from_unix_ms(row.started_at));
                self.queue_for(catalog, None, &event, EventStatus::Resolved, wall)
            } else {
                Vec::new()
            };
            self.wake_pending |= !queued.is_empty();
            self.ops.push(Op::Resolve {
                key: row.key,
                resolved_at: unix_ms(wall),
                annotations: "{}".into(),
                queued,
            });
        }
        self.flush(catalog);
        // Messages queued before the restart go out now.
        self.wake_all(catalog);
    }

    /// Commits the writes collected since the last flush, then wakes the notifiers that
    /// have something new.
    fn flush(&mut self, catalog: &Catalog) {
        if !self.ops.is_empty() {
            if let Err(error) = self.store.apply(&self.ops) {
                // The agent's own fault: shown in the log, never turned into target alerts.
                // The open alerts stay in memory and are written with the next transition.
                tracing::error!(%error, writes = self.ops.len(), "cannot write alert state");
                self.ops.clear();
                self.wake_pending = false;
                return;
            }
            self.ops.clear();
        }
        if std::mem::take(&mut self.wake_pending) {
            self.wake_all(catalog);
        }
    }

    /// Judges one round of a check.
    /// Judges one round of `check` (of `target`, both in `catalog`: the caller has looked
    /// them up already).
    pub fn observe(
        &mut self,
        catalog: &Catalog,
        target: &Target,
        check: &Check,
        outcome: &Outcome,
        now: Instant,
        wall: SystemTime,
    ) {
        let key = &check.key;
        for condition in &check.alerts.conditions {
            let alert_key = AlertKey {
                check: key.clone(),
                name: condition.name,
            };
            let live = self.live.entry(alert_key.clone()).or_insert_with(|| Live {
                condition: condition.clone(),
                rule: AlertRule::new(condition.params),
                window: Window::default(),
                last: None,
                open: None,
            });
            if live.condition != *condition {
                live.rule.set_params(condition.params);
                live.condition = condition.clone();
            }
            let Some(verdict) = condition.judge(outcome, &mut live.window, now, wall) else {
                continue;
            };
            let bad = verdict.bad;
            live.last = Some(verdict);
            if bad {
                if let Some(open) = &mut live.open {
                    open.hold = open.hold.saturating_sub(1);
                }
            }
            match live.rule.observe(bad, now) {
                None => {}
                Some(Transition::Fired { since, flapping }) => {
                    let started = wall
                        .checked_sub(now.saturating_duration_since(since))
                        .unwrap_or(wall);
                    self.fire(catalog, target, check, &alert_key, started, flapping);
                }
                Some(Transition::FlappingStarted) => {
                    self.flapping_started(catalog, &alert_key, wall);
                }
                Some(Transition::Resolved { .. }) => self.resolve(catalog, &alert_key, wall),
            }
            let busy = self
                .live
                .get(&alert_key)
                .is_some_and(|l| l.open.is_some() || l.rule.phase() != Phase::Inactive);
            if busy {
                self.active.insert(alert_key);
            } else {
                self.active.remove(&alert_key);
            }
        }
    }

    fn fire(
        &mut self,
        catalog: &Catalog,
        target: &Target,
        check: &Check,
        key: &AlertKey,
        started: SystemTime,
        flapping: bool,
    ) {
        let Some(live) = self.live.get_mut(key) else {
            return;
        };
        let incident = self.next_incident;
        self.next_incident += 1;
        self.ops.push(Op::Fire(Firing {
            key: key.id(),
            incident,
            target: target.id.to_string(),
            alertname: key.name.as_str(),
            severity: live.condition.severity.as_str(),
            area: catalog.areas.get(target.area).code.clone(),
            started_at: unix_ms(started),
            flapping,
            labels: labels(catalog, check, &live.condition),
        }));
        tracing::info!(alert = key.name.as_str(), target = %target.id, check = %check.key.check, flapping, "alert firing");
        let mut event = build_event(
            catalog,
            target,
            check,
            key,
            &live.condition,
            incident,
            started,
            live.last.as_ref(),
        );
        event.flapping = flapping;
        live.open = Some(Open {
            incident,
            started,
            notified: false,
            flapping,
            hold: 0,
            suppressed_by: Vec::new(),
            maintenance: None,
            affected: Affected::default(),
            event: Some(event),
        });
    }

    fn flapping_started(&mut self, catalog: &Catalog, key: &AlertKey, wall: SystemTime) {
        let Some(live) = self.live.get_mut(key) else {
            return;
        };
        let Some(open) = &mut live.open else {
            return;
        };
        open.flapping = true;
        let Some(event) = &mut open.event else {
            return;
        };
        event.flapping = true;
        if !open.notified {
            return;
        }
        let mut flapping_event = event.clone();
        flapping_event.id = format!("{}-flapping", open.incident);
        let notify = catalog
            .check(&key.check)
            .and_then(|(_, c)| c.alerts.notify.clone());
        let queued = queue(catalog, notify.as_deref(), &flapping_event);
        let annotations = annotations(catalog, &flapping_event);
        self.ops.push(Op::Flapping {
            key: key.id(),
            annotations,
            queued,
            now: unix_ms(wall),
        });
        self.wake_pending = true;
    }

    fn resolve(&mut self, catalog: &Catalog, key: &AlertKey, wall: SystemTime) {
        let Some(live) = self.live.get_mut(key) else {
            return;
        };
        let Some(open) = live.open.take() else {
            return;
        };
        let mut queued = Vec::new();
        let mut annotations_json = "{}".to_owned();
        if let Some(mut event) = open.event {
            event.status = EventStatus::Resolved;
            event.id = format!("{}-resolved", open.incident);
            event.ended_at = Some(rfc3339(wall));
            if let Some(last) = &live.last {
                event.value = last.value;
            }
            annotations_json = annotations(catalog, &event);
            // Resolution is sent wherever the firing went, suppressed or not since.
            if open.notified {
                let notify = catalog
                    .check(&key.check)
                    .and_then(|(_, c)| c.alerts.notify.clone());
                queued = queue(catalog, notify.as_deref(), &event);
            }
        }
        self.ops.push(Op::Resolve {
            key: key.id(),
            resolved_at: unix_ms(wall),
            annotations: annotations_json,
            queued,
        });
        tracing::info!(alert = key.name.as_str(), target = %key.check.target, notified = open.notified, "alert resolved");
        self.wake_pending |= open.notified;
    }

    fn queue_for(
        &self,
        catalog: &Catalog,
        notify: Option<&[Arc<str>]>,
        event: &Event,
        status: EventStatus,
        wall: SystemTime,
    ) -> Vec<Queued> {
        let mut event = event.clone();
        event.status = status;
        if status == EventStatus::Resolved {
            event.id = format!("{}-resolved", event.incident);
            event.ended_at = Some(rfc3339(wall));
        }
        queue(catalog, notify, &event)
    }

    fn wake_all(&self, catalog: &Catalog) {
        for n in &catalog.alerting.notifiers {
            self.wakes.wake(&n.name);
        }
    }

    /// A reload: alerts of checks or conditions that are gone resolve (a notified one with
    /// a message, as it would on recovery); the others keep their state.
    pub fn apply_catalog(&mut self, catalog: &Catalog) {
        let wall = SystemTime::now();
        let gone: Vec<AlertKey> = self
            .live
            .keys()
            .filter(|k| {
                catalog
                    .check(&k.check)
                    .is_none_or(|(_, c)| !c.alerts.conditions.iter().any(|c| c.name == k.name))
            })
            .cloned()
            .collect();
        for key in gone {
            if self.live.get(&key).is_some_and(|l| l.open.is_some()) {
                self.resolve(catalog, &key, wall);
            }
            self.live.remove(&key);
            self.active.remove(&key);
        }
    }

    /// Once a second: suppression, maintenance, what to send, metrics and the API view.
    pub fn tick(&mut self, catalog: &Catalog, states: &[TargetState], wall: SystemTime) {
        self.maintenance(catalog, wall);
        let roots = root_causes(catalog, states);
        let affected = affected_by_root(catalog, &roots);
        let active: Vec<&crate::catalog::maintenance::Window> = catalog
            .alerting
            .maintenance
            .iter()
            .filter(|w| self.active_windows.contains(&w.name))
            .collect();
        // Loss and latency of a check that is down (or about to be) say nothing more: the
        // down alert is the one root cause.
        let down_checks: HashSet<CheckKey> = self
            .active
            .iter()
            .filter(|k| k.name == AlertName::TargetDown)
            .map(|k| k.check.clone())
            .collect();
        let mut woken = false;
        let keys: Vec<AlertKey> = self
            .active
            .iter()
            .filter(|k| self.live.get(*k).is_some_and(|l| l.open.is_some()))
            .cloned()
            .collect();
        for key in keys {
            let Some((t, _)) = catalog.position(&key.check) else {
                continue;
            };
            let target = &catalog.targets[t];
            let suppressed_by: Vec<Arc<str>> =
                if key.name.is_connectivity() && states.get(t) == Some(&TargetState::Unreachable) {
                    roots
                        .get(&t)
                        .map(|r| {
                            r.iter()
                                .map(|&i| Arc::clone(&catalog.targets[i].id))
                                .collect()
                        })
                        .unwrap_or_default()
                } else if key.name.is_connectivity()
                    && key.name != AlertName::TargetDown
                    && down_checks.contains(&key.check)
                {
                    vec![Arc::clone(&target.id)]
                } else {
                    Vec::new()
                };
            let maintenance = active
                .iter()
                .find(|w| w.covers(target, &catalog.areas))
                .map(|w| Arc::clone(&w.name));
            let reach = if key.name == AlertName::TargetDown {
                affected.get(&t).cloned().unwrap_or_default()
            } else {
                Affected::default()
            };
            woken |= self.decide(catalog, &key, suppressed_by, maintenance, reach, wall);
        }
        self.wake_pending |= woken;
        self.flush(catalog);
        self.publish();
        self.prune(catalog);
    }

    /// Returns whether anything was queued.
    fn decide(
        &mut self,
        catalog: &Catalog,
        key: &AlertKey,
        suppressed_by: Vec<Arc<str>>,
        maintenance: Option<Arc<str>>,
        reach: Affected,
        wall: SystemTime,
    ) -> bool {
        let notify = catalog
            .check(&key.check)
            .and_then(|(_, c)| c.alerts.notify.clone());
        let Some(live) = self.live.get_mut(key) else {
            return false;
        };
        let fire_after = live.condition.params.fire_after;
        let Some(open) = &mut live.open else {
            return false;
        };
        let held = !suppressed_by.is_empty() || maintenance.is_some();
        let was_held = !open.suppressed_by.is_empty() || open.maintenance.is_some();
        if was_held && !held && !open.notified {
            // The reason to hold it back ended; it must prove itself its own fault.
            open.hold = fire_after;
        }
        let changed = open.suppressed_by != suppressed_by
            || open.maintenance != maintenance
            || open.affected != reach;
        open.suppressed_by = suppressed_by;
        open.maintenance = maintenance;
        open.affected = reach;
        let Some(event) = &mut open.event else {
            return false;
        };
        event.affected_targets = open.affected.targets;
        event.affected_areas = open.affected.areas.clone();
        event.affected_systems = open.affected.systems.clone();
        event.flapping = open.flapping;
        let update = IncidentUpdate {
            root_cause: open.suppressed_by.first().map(|s| s.to_string()),
            maintenance: open.maintenance.as_ref().map(|m| m.to_string()),
            affected: open.affected.targets,
            affected_areas: serde_json::to_string(&open.affected.areas).unwrap_or_default(),
            flapping: open.flapping,
        };
        if !open.notified && !held && open.hold == 0 {
            open.notified = true;
            self.ops.push(Op::Notify {
                key: key.id(),
                annotations: annotations(catalog, event),
                update,
                queued: queue(catalog, notify.as_deref(), event),
                now: unix_ms(wall),
            });
            return true;
        }
        if changed {
            // Alertmanager gets the new counts with the next re-send.
            self.ops.push(Op::Update {
                key: key.id(),
                annotations: annotations(catalog, event),
                update,
            });
        }
        false
    }

    fn maintenance(&mut self, catalog: &Catalog, wall: SystemTime) {
        let now: DateTime<Utc> = wall.into();
        let at = unix_ms(wall);
        let mut active = HashSet::new();
        for w in &catalog.alerting.maintenance {
            if w.is_active(now) {
                active.insert(Arc::clone(&w.name));
            }
        }
        for started in active.difference(&self.active_windows) {
            tracing::info!(window = %started, "maintenance window begins");
            if let Err(error) = self.store.maintenance_started(started, at) {
                tracing::error!(%error, "cannot record maintenance");
            }
        }
        for ended in self.active_windows.difference(&active) {
            tracing::info!(window = %ended, "maintenance window ends");
            if let Err(error) = self.store.maintenance_ended(ended, at) {
                tracing::error!(%error, "cannot record maintenance");
            }
        }
        let names: HashSet<&str> = catalog
            .alerting
            .maintenance
            .iter()
            .map(|w| &*w.name)
            .collect();
        for w in &catalog.alerting.maintenance {
            self.metrics
                .maintenance
                .with_label_values(&[&w.name])
                .set(i64::from(active.contains(&w.name)));
        }
        for old in &self.active_windows {
            if !names.contains(&**old) {
                let _ = self.metrics.maintenance.remove_label_values(&[old]);
            }
        }
        self.active_windows = active;
    }

    fn publish(&mut self) {
        let mut counts: HashMap<(&'static str, Severity), i64> = HashMap::new();
        let mut views = Vec::new();
        let mut series = HashSet::new();
        for key in &self.active {
            let Some(live) = self.live.get(key) else {
                continue;
            };
            let state = match (&live.open, live.rule.phase()) {
                (Some(open), _) if !open.suppressed_by.is_empty() => "suppressed",
                (Some(open), _) if open.maintenance.is_some() => "maintenance",
                (Some(_), _) => "firing",
                (None, Phase::Pending) => "pending",
                (None, _) => continue,
            };
            let severity = live.condition.severity;
            *counts.entry((state, severity)).or_default() += 1;
            let labels = [
                key.check.target.to_string(),
                key.check.check.to_string(),
                key.name.as_str().to_owned(),
                severity.as_str().to_owned(),
                state.to_owned(),
            ];
            series.insert(labels);
            let open = live.open.as_ref();
            views.push(AlertView {
                target: key.check.target.to_string(),
                check: key.check.check.to_string(),
                alertname: key.name.as_str(),
                severity,
                state,
                flapping: open.is_some_and(|o| o.flapping) || live.rule.flapping(),
                since: open.map(|o| rfc3339(o.started)),
                value: live.last.as_ref().and_then(|v| v.value),
                note: live.last.as_ref().and_then(|v| v.note.clone()),
                root_cause: open
                    .map(|o| o.suppressed_by.iter().map(|s| s.to_string()).collect())
                    .unwrap_or_default(),
                affected_targets: open.map_or(0, |o| o.affected.targets),
                affected_areas: open.map(|o| o.affected.areas.clone()).unwrap_or_default(),
                affected_systems: open.map(|o| o.affected.systems.clone()).unwrap_or_default(),
                maintenance: open.and_then(|o| o.maintenance.as_ref().map(|m| m.to_string())),
                notified: open.is_some_and(|o| o.notified),
                incident: open.map(|o| o.incident),
            });
        }
        for state in STATES {
            for severity in Severity::ALL {
                self.metrics
                    .alerts
                    .with_label_values(&[state, severity.as_str()])
                    .set(counts.get(&(state, severity)).copied().unwrap_or(0));
            }
        }
        for gone in self.metrics.active_series.difference(&series) {
            let labels: Vec<&str> = gone.iter().map(String::as_str).collect();
            let _ = self.metrics.active.remove_label_values(&labels);
        }
        for labels in &series {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            self.metrics.active.with_label_values(&labels).set(1);
        }
        self.metrics.active_series = series;
        let snapshot = AlertsSnapshot { alerts: views };
        self.view.send_if_modified(|old| {
            if **old == snapshot {
                false
            } else {
                *old = Arc::new(snapshot);
                true
            }
        });
    }

    fn prune(&mut self, catalog: &Catalog) {
        const EVERY: Duration = Duration::from_secs(3600);
        if self.last_prune.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last_prune = Some(Instant::now());
        let before = SystemTime::now()
            .checked_sub(catalog.alerting.history)
            .map_or(0, unix_ms);
        match self.store.prune(before) {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "old incident history removed"),
            Err(error) => tracing::error!(%error, "cannot prune history"),
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// For each unreachable target, the targets whose failure explains it: the nearest
/// upstreams, through unreachable ones, that are down themselves.
fn root_causes(catalog: &Catalog, states: &[TargetState]) -> HashMap<usize, BTreeSet<usize>> {
    let mut memo: HashMap<usize, BTreeSet<usize>> = HashMap::new();
    fn roots(
        i: usize,
        catalog: &Catalog,
        states: &[TargetState],
        memo: &mut HashMap<usize, BTreeSet<usize>>,
    ) -> BTreeSet<usize> {
        if let Some(r) = memo.get(&i) {
            return r.clone();
        }
        let mut found = BTreeSet::new();
        for &u in catalog.upstreams(i) {
            match states.get(u) {
                Some(TargetState::Down) => {
                    found.insert(u);
                }
                Some(TargetState::Unreachable) => found.extend(roots(u, catalog, states, memo)),
                _ => {}
            }
        }
        memo.insert(i, found.clone());
        found
    }
    (0..catalog.targets.len())
        .filter(|&i| states.get(i) == Some(&TargetState::Unreachable))
        .map(|i| (i, roots(i, catalog, states, &mut memo)))
        .collect()
}

fn affected_by_root(
    catalog: &Catalog,
    roots: &HashMap<usize, BTreeSet<usize>>,
) -> HashMap<usize, Affected> {
    let mut by_root: HashMap<usize, (u32, BTreeSet<String>, BTreeSet<String>)> = HashMap::new();
    for (&behind, causes) in roots {
        let target = &catalog.targets[behind];
        for &root in causes {
            let entry = by_root.entry(root).or_default();
            entry.0 += 1;
            entry.1.insert(catalog.areas.get(target.area).name.clone());
            if let Some(s) = target.system {
                entry.2.insert(catalog.systems[s].name.clone());
            }
        }
    }
    by_root
        .into_iter()
        .map(|(root, (targets, areas, systems))| {
            (
                root,
                Affected {
                    targets,
                    areas: areas.into_iter().collect(),
                    systems: systems.into_iter().collect(),
                },
            )
        })
        .collect()
}

/// The alert's labels for Alertmanager: the check's series labels (empty ones left out, as
/// Prometheus does), the alert name and the severity.
fn labels(catalog: &Catalog, check: &Check, condition: &Condition) -> String {
    let mut labels: BTreeMap<&str, &str> = catalog
        .schema
        .names()
        .into_iter()
        .zip(check.label_values.iter().map(String::as_str))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    labels.insert("alertname", condition.name.as_str());
    labels.insert("severity", condition.severity.as_str());
    serde_json::to_string(&labels).unwrap_or_else(|_| "{}".into())
}

fn annotations(catalog: &Catalog, event: &Event) -> String {
    let settings = &catalog.alerting;
    let message = crate::notify::text::render(event, settings.language, false);
    let mut a: BTreeMap<&str, String> = BTreeMap::new();
    a.insert("summary", message.title);
    a.insert("description", message.body);
    if event.affected_targets > 0 {
        a.insert("affected_targets", event.affected_targets.to_string());
        a.insert("affected_areas", event.affected_areas.join(", "));
    }
    if event.flapping {
        a.insert("flapping", "true".into());
    }
    if let Some(url) = &event.status_url {
        a.insert("status_url", url.clone());
    }
    serde_json::to_string(&a).unwrap_or_else(|_| "{}".into())
}

/// Outbox rows for the notifiers an alert goes to (Alertmanager reads the alerts table).
fn queue(catalog: &Catalog, notify: Option<&[Arc<str>]>, event: &Event) -> Vec<Queued> {
    let Ok(payload) = serde_json::to_string(event) else {
        return Vec::new();
    };
    catalog
        .alerting
        .notifiers
        .iter()
        .filter(|n| n.outbox)
        .filter(|n| notify.is_none_or(|names| names.contains(&n.name)))
        .map(|n| Queued {
            notifier: n.name.to_string(),
            event_id: event.id.clone(),
            payload: payload.clone(),
            max_queue: n.max_queue,
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn build_event(
    catalog: &Catalog,
    target: &Target,
    check: &Check,
    key: &AlertKey,
    condition: &Condition,
    incident: i64,
    started: SystemTime,
    verdict: Option<&Verdict>,
) -> Event {
    let areas = &catalog.areas;
    let mut path: Vec<String> = areas
        .ancestors(target.area)
        .map(|a| areas.get(a).name.clone())
        .collect();
    path.reverse();
    let labels = catalog
        .schema
        .names()
        .into_iter()
        .zip(check.label_values.iter())
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect();
    Event {
        id: format!("{incident}-firing"),
        status: EventStatus::Firing,
        alertname: key.name.as_str().to_owned(),
        severity: condition.severity,
        target: target.id.to_string(),
        target_name: target.name.clone(),
        check: check.key.check.to_string(),
        kind: check.kind.as_str().to_owned(),
        area: areas.get(target.area).code.clone(),
        area_path: path,
        system: target.system.map(|s| catalog.systems[s].name.clone()),
        labels,
        started_at: rfc3339(started),
        ended_at: None,
        flapping: false,
        value: verdict.and_then(|v| v.value),
        note: verdict.and_then(|v| v.note.clone()),
        affected_targets: 0,
        affected_areas: Vec::new(),
        affected_systems: Vec::new(),
        status_url: catalog.alerting.external_url.clone(),
        incident,
    }
}

/// The event of an alert whose target left the config: only what the key tells.
fn orphan_event(key: &AlertKey, incident: i64, started: SystemTime) -> Event {
    Event {
        id: format!("{incident}-firing"),
        status: EventStatus::Firing,
        alertname: key.name.as_str().to_owned(),
        severity: Severity::Info,
        target: key.check.target.to_string(),
        target_name: None,
        check: key.check.check.to_string(),
        kind: String::new(),
        area: String::new(),
        area_path: Vec::new(),
        system: None,
        labels: BTreeMap::new(),
        started_at: rfc3339(started),
        ended_at: None,
        flapping: false,
        value: None,
        note: Some("removed from the configuration".into()),
        affected_targets: 0,
        affected_areas: Vec::new(),
        affected_systems: Vec::new(),
        status_url: None,
        incident,
    }
}
