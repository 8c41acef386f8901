//! The alert engine, a pure state machine: [`Engine::step`] takes the rounds of one tick,
//! the reachability snapshot and the time, and returns what changed as data ([`Effects`]:
//! writes to the durable record, among them the messages to queue). It holds no store,
//! registry, clock or channel, so every sequence replays the same way in a test.
//!
//! - Each round is judged against each condition of its check; the rule (hysteresis,
//!   keep-firing, flapping) decides when an alert fires or resolves. Firing opens an
//!   incident.
//! - Then, for every open alert: a connectivity alert of an unreachable target is
//!   suppressed (its root causes named), the root cause's alert carries what sits behind
//!   it, an alert in a maintenance window is held. An alert that was held and is still
//!   bad `fire_after` rounds after the reason ended is sent then (a commune that stays
//!   down after its gateway came back is its own fault). A sent alert always gets its
//!   resolution.
//! - After a restart, the open alerts of the record are picked up again: they go on
//!   firing without a second "fired", and resolve (with a message) as usual.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::judge::{judge, Verdict, Window};
use super::message;
use super::rule::{AlertRule, Phase, Transition};
use super::view::{AlertView, AlertsSnapshot, WindowState};
use crate::catalog::{Catalog, CheckKey};
use crate::model::record::{Firing, IncidentUpdate, OpenAlert};
use crate::model::{from_unix_ms, rfc3339, unix_ms, AlertName, Event, Severity, Write};
use crate::probe::Outcome;
use crate::reach::{Reach, TargetState};

/// One alert: a condition of a check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertKey {
    pub check: CheckKey,
    pub name: AlertName,
}

impl AlertKey {
    /// The record's key. Ids and check names hold no control characters, so a tab
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

/// One finished round of a check, as the engine judges it.
#[derive(Debug, Clone)]
pub struct Round {
    pub key: CheckKey,
    pub outcome: Outcome,
    /// When it finished, on the monotonic clock (windows, hysteresis) and the wall clock
    /// (incident times).
    pub at: Instant,
    pub finished: SystemTime,
}

/// The input of one tick.
pub struct Step<'a> {
    pub catalog: &'a Catalog,
    pub reach: &'a Reach,
    pub rounds: &'a [Round],
    pub now: Instant,
    pub wall: SystemTime,
}

/// What a tick changed: writes to the durable record, in order.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    pub writes: Vec<Write>,
}

/// Incident ids that never repeat: the agent's instance id (random, new at every start)
/// and a counter. Unlike a database sequence they cannot be handed out twice, not by two
/// agents or shards, and not by one agent after a restart on a database that lost writes.
#[derive(Debug, Clone)]
pub struct IncidentIds {
    instance: String,
    next: u64,
}

impl IncidentIds {
    pub fn new(instance: &str) -> IncidentIds {
        IncidentIds {
            instance: instance.to_owned(),
            next: 1,
        }
    }

    fn take(&mut self) -> String {
        let id = format!("{}-{}", self.instance, self.next);
        self.next += 1;
        id
    }
}

/// Targets behind a root cause, as messages name them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Affected {
    pub targets: u32,
    pub areas: Vec<String>,
    pub systems: Vec<String>,
}

pub(super) struct Open {
    pub incident: String,
    pub started: SystemTime,
    pub notified: bool,
    pub flapping: bool,
    /// Bad rounds still to see before a held-back alert is sent.
    hold: u32,
    /// Why it is held back now.
    pub suppressed_by: Vec<Arc<str>>,
    pub maintenance: Option<Arc<str>>,
    pub affected: Affected,
    /// The firing event as last built, the base of the resolved one.
    event: Event,
}

/// Kept for every condition of every owned check, so kept small: the open incident (rare)
/// is boxed, and the condition itself stays in the catalog (the rule holds its parameters).
pub(super) struct Live {
    pub severity: Severity,
    pub rule: AlertRule,
    window: Window,
    pub last: Option<Verdict>,
    pub open: Option<Box<Open>>,
}

pub struct Engine {
    /// Every alert seen, by key: looked up for every condition of every round, so hashed
    /// (foldhash) rather than ordered.
    live: HashMap<AlertKey, Live, foldhash::fast::RandomState>,
    /// Alerts that are pending or open: the tick looks at these only, so a quiet province
    /// of 40,000 checks costs next to nothing each second.
    active: BTreeSet<AlertKey>,
    windows_on: BTreeSet<Arc<str>>,
    ids: IncidentIds,
    last_prune: Option<Instant>,
}

impl Engine {
    pub fn new(ids: IncidentIds) -> Engine {
        Engine {
            live: HashMap::default(),
            active: BTreeSet::new(),
            windows_on: BTreeSet::new(),
            ids,
            last_prune: None,
        }
    }

    /// Picks up the alerts the record holds as open. Those whose check or condition left
    /// the config while the agent was down are resolved (with a message if one was sent).
    pub fn restore(
        &mut self,
        catalog: &Catalog,
        rows: &[OpenAlert],
        now: Instant,
        wall: SystemTime,
    ) -> Effects {
        let mut out = Effects::default();
        for row in rows {
            let Some(key) = AlertKey::parse(&row.key) else {
                continue;
            };
            let started = from_unix_ms(row.started_at);
            let found = catalog.check(&key.check).and_then(|(t, c)| {
                if !t.owned {
                    return None;
                }
                let condition = c.alerts.conditions.iter().find(|c| c.name == key.name)?;
                Some((t, c, condition))
            });
            let Some((target, check, condition)) = found else {
                let event = message::orphan_event(&key, &row.incident, started);
                let queued = if row.notified {
                    message::queue(catalog, None, &message::resolved(&event, wall, None))
                } else {
                    Vec::new()
                };
                out.writes.push(Write::Resolve {
                    key: row.key.clone(),
                    resolved_at: unix_ms(wall),
                    annotations: "{}".into(),
                    queued,
                });
                continue;
            };
            let age = wall.duration_since(started).unwrap_or(Duration::ZERO);
            let since = now.checked_sub(age).unwrap_or(now);
            let mut event = message::event(
                catalog,
                target,
                check,
                condition,
                &row.incident,
                started,
                None,
            );
            event.flapping = row.flapping;
            self.active.insert(key.clone());
            self.live.insert(
                key,
                Live {
                    severity: condition.severity,
                    rule: AlertRule::restored_firing(condition.params, since, row.flapping),
                    window: Window::default(),
                    last: None,
                    open: Some(Box::new(Open {
                        incident: row.incident.clone(),
                        started,
                        notified: row.notified,
                        flapping: row.flapping,
                        hold: 0,
                        suppressed_by: Vec::new(),
                        maintenance: None,
                        affected: Affected::default(),
                        event,
                    })),
                },
            );
        }
        out
    }

    /// One tick: maintenance windows, the rounds, then what is sent, held or suppressed.
    pub fn step(&mut self, step: Step<'_>) -> Effects {
        let mut out = Effects::default();
        self.maintenance(step.catalog, step.wall, &mut out);
        for round in step.rounds {
            self.observe(step.catalog, round, &mut out);
        }
        self.decide_all(step.catalog, step.reach, step.wall, &mut out);
        self.prune(step.catalog, step.now, step.wall, &mut out);
        out
    }

    /// A reload: alerts of checks or conditions that are gone (or whose target another shard
    /// owns now) resolve (a notified one with
    /// a message, as it would on recovery); the others keep their state.
    pub fn apply_catalog(&mut self, catalog: &Catalog, wall: SystemTime) -> Effects {
        let mut out = Effects::default();
        let mut gone: Vec<AlertKey> = self
            .live
            .keys()
            .filter(|k| {
                catalog.check(&k.check).is_none_or(|(t, c)| {
                    !t.owned || !c.alerts.conditions.iter().any(|c| c.name == k.name)
                })
            })
            .cloned()
            .collect();
        // The resolutions go out in a stable order.
        gone.sort();
        for key in gone {
            self.resolve(catalog, &key, wall, &mut out);
            self.live.remove(&key);
            self.active.remove(&key);
        }
        out
    }

    fn observe(&mut self, catalog: &Catalog, round: &Round, out: &mut Effects) {
        // A shard probes other shards' upstreams to judge its own targets' root causes;
        // their owner alerts on them.
        let Some((target, check)) = catalog.check(&round.key).filter(|(t, _)| t.owned) else {
            return;
        };
        for condition in &check.alerts.conditions {
            let key = AlertKey {
                check: round.key.clone(),
                name: condition.name,
            };
            if !self.live.contains_key(&key) {
                self.live.insert(
                    key.clone(),
                    Live {
                        severity: condition.severity,
                        rule: AlertRule::quiet(condition.params),
                        window: Window::default(),
                        last: None,
                        open: None,
                    },
                );
            }
            let Some(live) = self.live.get_mut(&key) else {
                continue;
            };
            if live.rule.params() != condition.params {
                live.rule.set_params(condition.params);
            }
            live.severity = condition.severity;
            let Some(verdict) = judge(
                condition,
                &round.outcome,
                &mut live.window,
                round.at,
                round.finished,
            ) else {
                continue;
            };
            let bad = verdict.bad;
            live.last = Some(verdict);
            if bad {
                if let Some(open) = &mut live.open {
                    open.hold = open.hold.saturating_sub(1);
                }
            }
            match live.rule.observe(bad, round.at) {
                None => {}
                Some(Transition::Fired { since, flapping }) => {
                    let started = round
                        .finished
                        .checked_sub(round.at.saturating_duration_since(since))
                        .unwrap_or(round.finished);
                    let incident = self.ids.take();
                    let event = message::event(
                        catalog,
                        target,
                        check,
                        condition,
                        &incident,
                        started,
                        live.last.as_ref(),
                    );
                    tracing::info!(alert = key.name.as_str(), target = %target.id, check = %check.key.check, flapping, incident, "alert firing");
                    out.writes.push(Write::Fire(Firing {
                        key: key.id(),
                        incident: incident.clone(),
                        target: target.id.to_string(),
                        alertname: key.name,
                        severity: condition.severity,
                        area: catalog.areas.get(target.area).code.clone(),
                        started_at: unix_ms(started),
                        flapping,
                        labels: message::labels(catalog, target, check, condition),
                    }));
                    live.open = Some(Box::new(Open {
                        incident,
                        started,
                        notified: false,
                        flapping,
                        hold: 0,
                        suppressed_by: Vec::new(),
                        maintenance: None,
                        affected: Affected::default(),
                        event: Event { flapping, ..event },
                    }));
                }
                Some(Transition::FlappingStarted) => {
                    self.flapping_started(catalog, &key, round.finished, out)
                }
                Some(Transition::Resolved { .. }) => {
                    self.resolve(catalog, &key, round.finished, out)
                }
            }
            let Some(live) = self.live.get(&key) else {
                continue;
            };
            if live.open.is_some() || live.rule.phase() != Phase::Inactive {
                self.active.insert(key);
            } else {
                self.active.remove(&key);
                // Most conditions of most checks hold nothing worth keeping most of the time:
                // forgotten, they cost no memory, and come back quiet when next judged.
                if live.rule.is_quiet() && live.window.is_empty() {
                    self.live.remove(&key);
                }
            }
        }
    }

    fn flapping_started(
        &mut self,
        catalog: &Catalog,
        key: &AlertKey,
        wall: SystemTime,
        out: &mut Effects,
    ) {
        let Some(open) = self.live.get_mut(key).and_then(|l| l.open.as_mut()) else {
            return;
        };
        open.flapping = true;
        open.event.flapping = true;
        if !open.notified {
            return;
        }
        let mut notice = open.event.clone();
        notice.id = format!("{}-flapping", open.incident);
        out.writes.push(Write::Flapping {
            key: key.id(),
            annotations: message::annotations(catalog, &notice),
            queued: message::queue(catalog, notify_of(catalog, key).as_deref(), &notice),
            at: unix_ms(wall),
        });
    }

    fn resolve(&mut self, catalog: &Catalog, key: &AlertKey, wall: SystemTime, out: &mut Effects) {
        let Some(live) = self.live.get_mut(key) else {
            return;
        };
        let Some(open) = live.open.take() else {
            return;
        };
        let event = message::resolved(&open.event, wall, live.last.as_ref());
        // The resolution goes wherever the firing went, suppressed or not since.
        let queued = if open.notified {
            message::queue(catalog, notify_of(catalog, key).as_deref(), &event)
        } else {
            Vec::new()
        };
        tracing::info!(alert = key.name.as_str(), target = %key.check.target, notified = open.notified, incident = open.incident, "alert resolved");
        out.writes.push(Write::Resolve {
            key: key.id(),
            resolved_at: unix_ms(wall),
            annotations: message::annotations(catalog, &event),
            queued,
        });
    }

    fn decide_all(
        &mut self,
        catalog: &Catalog,
        reach: &Reach,
        wall: SystemTime,
        out: &mut Effects,
    ) {
        let windows: Vec<&crate::catalog::maintenance::Window> = catalog
            .alerting
            .maintenance
            .iter()
            .filter(|w| self.windows_on.contains(&w.name))
            .collect();
        // Loss and latency of a check that is down (or about to be) say nothing more: the
        // down alert is the one root cause.
        let down_checks: HashSet<&CheckKey> = self
            .active
            .iter()
            .filter(|k| k.name == AlertName::TargetDown)
            .map(|k| &k.check)
            .collect();
        let mut decisions = Vec::new();
        for key in &self.active {
            if self.live.get(key).is_none_or(|l| l.open.is_none()) {
                continue;
            }
            let Some((t, _)) = catalog.position(&key.check) else {
                continue;
            };
            let target = &catalog.targets[t];
            let suppressed_by: Vec<Arc<str>> =
                if key.name.is_connectivity() && reach.state(t) == TargetState::Unreachable {
                    reach
                        .causes
                        .get(&t)
                        .map(|c| {
                            c.iter()
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
            let maintenance = windows
                .iter()
                .find(|w| w.covers(target, &catalog.areas))
                .map(|w| Arc::clone(&w.name));
            let affected = match reach.behind.get(&t) {
                Some(behind) if key.name == AlertName::TargetDown => Affected {
                    targets: u32::try_from(behind.targets.len()).unwrap_or(u32::MAX),
                    areas: sorted(behind.areas.iter().map(|&a| &catalog.areas.get(a).name)),
                    systems: sorted(behind.systems.iter().map(|&s| &catalog.systems[s].name)),
                },
                _ => Affected::default(),
            };
            decisions.push((key.clone(), suppressed_by, maintenance, affected));
        }
        for (key, suppressed_by, maintenance, affected) in decisions {
            self.decide(
                catalog,
                &key,
                suppressed_by,
                maintenance,
                affected,
                wall,
                out,
            );
        }
    }

    #[allow(clippy::too_many_arguments)] // one per thing decided, all needed
    fn decide(
        &mut self,
        catalog: &Catalog,
        key: &AlertKey,
        suppressed_by: Vec<Arc<str>>,
        maintenance: Option<Arc<str>>,
        affected: Affected,
        wall: SystemTime,
        out: &mut Effects,
    ) {
        let notify = notify_of(catalog, key);
        let Some(live) = self.live.get_mut(key) else {
            return;
        };
        let fire_after = live.rule.params().fire_after;
        let Some(open) = &mut live.open else {
            return;
        };
        let held = !suppressed_by.is_empty() || maintenance.is_some();
        let was_held = !open.suppressed_by.is_empty() || open.maintenance.is_some();
        if was_held && !held && !open.notified {
            // The reason to hold it back ended; it must prove itself its own fault.
            open.hold = fire_after;
        }
        let changed = open.suppressed_by != suppressed_by
            || open.maintenance != maintenance
            || open.affected != affected;
        open.suppressed_by = suppressed_by;
        open.maintenance = maintenance;
        open.affected = affected;
        let event = &mut open.event;
        event.affected_targets = open.affected.targets;
        event.affected_areas.clone_from(&open.affected.areas);
        event.affected_systems.clone_from(&open.affected.systems);
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
            out.writes.push(Write::Notify {
                key: key.id(),
                annotations: message::annotations(catalog, event),
                update,
                queued: message::queue(catalog, notify.as_deref(), event),
                at: unix_ms(wall),
            });
        } else if changed {
            // Alertmanager gets the new counts with the next re-send.
            out.writes.push(Write::Update {
                key: key.id(),
                annotations: message::annotations(catalog, event),
                update,
            });
        }
    }

    fn maintenance(&mut self, catalog: &Catalog, wall: SystemTime, out: &mut Effects) {
        let now: DateTime<Utc> = wall.into();
        let at = unix_ms(wall);
        let on: BTreeSet<Arc<str>> = catalog
            .alerting
            .maintenance
            .iter()
            .filter(|w| w.is_active(now))
            .map(|w| Arc::clone(&w.name))
            .collect();
        for started in on.difference(&self.windows_on) {
            tracing::info!(window = %started, "maintenance window begins");
            out.writes.push(Write::MaintenanceStarted {
                window: started.to_string(),
                at,
            });
        }
        for ended in self.windows_on.difference(&on) {
            tracing::info!(window = %ended, "maintenance window ends");
            out.writes.push(Write::MaintenanceEnded {
                window: ended.to_string(),
                at,
            });
        }
        self.windows_on = on;
    }

    /// Hourly: history older than `alerting.history` is deleted.
    fn prune(&mut self, catalog: &Catalog, now: Instant, wall: SystemTime, out: &mut Effects) {
        const EVERY: Duration = Duration::from_secs(3600);
        if self
            .last_prune
            .is_some_and(|t| now.saturating_duration_since(t) < EVERY)
        {
            return;
        }
        self.last_prune = Some(now);
        let before = wall
            .checked_sub(catalog.alerting.history)
            .map_or(0, unix_ms);
        out.writes.push(Write::Prune { before });
    }

    /// What the API, the status page and the alert metrics show.
    pub fn view(&self, catalog: &Catalog) -> AlertsSnapshot {
        let mut alerts = Vec::new();
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
            let open = live.open.as_ref();
            alerts.push(AlertView {
                target: key.check.target.to_string(),
                check: key.check.check.to_string(),
                alertname: key.name.as_str(),
                severity: live.severity,
                state,
                flapping: open.is_some_and(|o| o.flapping) || live.rule.flapping(),
                recovering: open.is_some() && live.rule.recovering(),
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
                incident: open.map(|o| o.incident.clone()),
            });
        }
        let windows = catalog
            .alerting
            .maintenance
            .iter()
            .map(|w| WindowState {
                name: w.name.to_string(),
                active: self.windows_on.contains(&w.name),
            })
            .collect();
        AlertsSnapshot { alerts, windows }
    }
}

/// The notifiers a check's alerts go to (`None`: all of them).
fn notify_of(catalog: &Catalog, key: &AlertKey) -> Option<Vec<Arc<str>>> {
    catalog
        .check(&key.check)
        .and_then(|(_, c)| c.alerts.notify.clone())
}

/// Names, sorted and without repeats.
fn sorted<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    names
        .collect::<BTreeSet<_>>()
        .into_iter()
        .cloned()
        .collect()
}
