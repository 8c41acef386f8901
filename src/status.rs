//! A read-only snapshot of what the agent knows, for the status page and `/api/v1/status`.
//! Built by the state (the owner of the results) from the reachability snapshot and
//! published through a `watch` channel; readers never touch the state itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::catalog::{Catalog, KeyMap};
use crate::probe::{FailureReason, Kind};
use crate::reach::{Reach, TargetState};

/// The last round of one check.
#[derive(Debug, Clone)]
pub struct LastResult {
    pub failure: Option<FailureReason>,
    pub duration_seconds: f64,
    /// What people read as the check's latency: for ICMP the round's mean RTT (absent when
    /// nothing answered; a round's length is count × spacing, which says nothing about the
    /// link), for the other kinds the round's length.
    pub latency_seconds: Option<f64>,
    /// ICMP only: the round's loss.
    pub loss_ratio: Option<f64>,
    pub finished: SystemTime,
    /// What a security check found, in a line: what changed on a page, a TLS grade and its
    /// reasons, a changed DNS answer, unexpected open ports.
    pub note: Option<String>,
}

impl LastResult {
    pub fn from_outcome(outcome: &crate::probe::Outcome, finished: SystemTime) -> LastResult {
        LastResult {
            failure: outcome.failure,
            duration_seconds: outcome.duration.as_secs_f64(),
            latency_seconds: match &outcome.detail {
                crate::probe::Detail::Icmp(stats) => stats.avg().map(|d| d.as_secs_f64()),
                _ => Some(outcome.duration.as_secs_f64()),
            },
            loss_ratio: match &outcome.detail {
                crate::probe::Detail::Icmp(stats) if stats.sent > 0 => Some(stats.loss_ratio()),
                _ => None,
            },
            finished,
            note: note(&outcome.detail),
        }
    }
}

fn note(detail: &crate::probe::Detail) -> Option<String> {
    use crate::probe::Detail;
    match detail {
        Detail::Http(http) => {
            let content = http.content.as_ref()?;
            if !content.forbidden_found.is_empty() {
                Some(format!(
                    "forbidden phrase: {}",
                    content.forbidden_found.join(", ")
                ))
            } else {
                content
                    .summary
                    .as_ref()
                    .map(|s| format!("page changed: {s}"))
            }
        }
        Detail::Tls(tls) => Some(
            format!("grade {} {}", tls.grade.letter(), tls.reasons.join("; "))
                .trim()
                .to_owned(),
        ),
        Detail::Dns(dns) if dns.changed => {
            Some(format!("answer changed: {}", dns.answers.join(", ")))
        }
        Detail::Ports(ports) if !ports.unexpected_open.is_empty() => Some(format!(
            "unexpected open ports: {}",
            ports
                .unexpected_open
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => None,
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub generated_at: f64,
    pub summary: Counts,
    pub areas: Vec<AreaStatus>,
    pub systems: Vec<SystemStatus>,
    /// Targets that are down or degraded, root causes first.
    pub incidents: Vec<Incident>,
    pub targets: Vec<TargetStatus>,
}

/// Targets per state, by area (its whole subtree) and by system (catalog indices).
#[derive(Debug, Default)]
pub struct Counted {
    pub areas: HashMap<usize, Counts>,
    pub systems: HashMap<usize, Counts>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub up: u32,
    pub degraded: u32,
    pub down: u32,
    pub unreachable: u32,
    pub unknown: u32,
}

impl Counts {
    pub fn add(&mut self, state: TargetState) {
        match state {
            TargetState::Up => self.up += 1,
            TargetState::Degraded => self.degraded += 1,
            TargetState::Down => self.down += 1,
            TargetState::Unreachable => self.unreachable += 1,
            TargetState::Unknown => self.unknown += 1,
        }
    }

    pub fn of(&self, state: TargetState) -> u32 {
        match state {
            TargetState::Up => self.up,
            TargetState::Degraded => self.degraded,
            TargetState::Down => self.down,
            TargetState::Unreachable => self.unreachable,
            TargetState::Unknown => self.unknown,
        }
    }

    pub fn total(&self) -> u32 {
        self.up + self.degraded + self.down + self.unreachable + self.unknown
    }

    /// The colour of an area: its worst target.
    pub fn worst(&self) -> TargetState {
        if self.down > 0 {
            TargetState::Down
        } else if self.unreachable > 0 {
            TargetState::Unreachable
        } else if self.degraded > 0 {
            TargetState::Degraded
        } else if self.up > 0 {
            TargetState::Up
        } else {
            TargetState::Unknown
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AreaStatus {
    pub code: String,
    pub name: String,
    pub kind: Option<String>,
    pub parent: Option<String>,
    pub path: String,
    pub depth: usize,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub state: TargetState,
    pub targets: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemStatus {
    pub id: String,
    pub name: String,
    pub owner: Option<String>,
    pub state: TargetState,
    pub targets: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// Shared with the catalog: a snapshot of 100,000 targets copies no ids.
    pub id: Arc<str>,
    pub name: Option<String>,
    pub area: Arc<str>,
    pub system: Option<String>,
    pub state: TargetState,
    /// When the target entered its current state (unix seconds), as seen by this agent.
    pub since: f64,
    pub checks: Vec<CheckStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckStatus {
    pub name: Arc<str>,
    pub kind: Kind,
    pub success: Option<bool>,
    pub reason: Option<&'static str>,
    pub duration_seconds: Option<f64>,
    pub latency_seconds: Option<f64>,
    pub loss_ratio: Option<f64>,
    pub last_run: Option<f64>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub target: String,
    pub name: Option<String>,
    pub area: String,
    pub area_name: String,
    pub state: TargetState,
    pub since: f64,
    pub reasons: Vec<&'static str>,
    /// For an unreachable target: the root causes it sits behind (nearest upstreams, through
    /// unreachable ones, that are down).
    pub root_causes: Vec<String>,
    /// For a degraded site with redundant uplinks: those that are cut.
    pub uplinks_down: Vec<String>,
    /// For a root cause: how many targets are unreachable because of it.
    pub affected: u32,
}

pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Builds the snapshot from the catalog, the last results, the reachability snapshot, each
/// target's state since, and the rollup counts.
pub fn build(
    catalog: &Catalog,
    last: &KeyMap<LastResult>,
    reach: &Reach,
    since: &HashMap<Arc<str>, (TargetState, SystemTime)>,
    counted: &Counted,
) -> Status {
    let areas = &catalog.areas;
    let mut summary = Counts::default();
    let mut targets = Vec::with_capacity(catalog.targets.len());
    // One copy of each area's code, shared by its targets' rows.
    let area_codes: Vec<Arc<str>> = (0..areas.len())
        .map(|a| Arc::from(areas.get(a).code.as_str()))
        .collect();
    // Catalog index of each listed target. A shard lists the targets it owns, not the
    // upstreams it probes for other shards' sake: their owner reports them.
    let mut indices = Vec::with_capacity(catalog.targets.len());
    for (i, target) in catalog.owned() {
        indices.push(i);
        let state = reach.state(i);
        let since = since.get(&target.id).map_or(UNIX_EPOCH, |(_, t)| *t);
        summary.add(state);
        targets.push(TargetStatus {
            id: Arc::clone(&target.id),
            name: target.name.clone(),
            area: Arc::clone(&area_codes[target.area]),
            system: target.system.map(|s| catalog.systems[s].id.clone()),
            state,
            since: unix(since),
            checks: target
                .checks
                .iter()
                .map(|c| {
                    let r = last.get(&c.key);
                    CheckStatus {
                        name: Arc::clone(&c.key.check),
                        kind: c.kind,
                        success: r.map(|r| r.failure.is_none()),
                        reason: r.and_then(|r| r.failure).map(FailureReason::label),
                        duration_seconds: r.map(|r| r.duration_seconds),
                        latency_seconds: r.and_then(|r| r.latency_seconds),
                        loss_ratio: r.and_then(|r| r.loss_ratio),
                        last_run: r.map(|r| unix(r.finished)),
                        note: r.and_then(|r| r.note.clone()),
                    }
                })
                .collect(),
        });
    }

    let ids = |list: Option<&Vec<usize>>| -> Vec<String> {
        list.map(|l| {
            l.iter()
                .map(|&i| catalog.targets[i].id.to_string())
                .collect()
        })
        .unwrap_or_default()
    };
    let mut incidents: Vec<Incident> = targets
        .iter()
        .zip(indices)
        .filter(|(t, _)| {
            matches!(
                t.state,
                TargetState::Down | TargetState::Unreachable | TargetState::Degraded
            )
        })
        .map(|(t, i)| {
            let area = areas.get(catalog.targets[i].area);
            Incident {
                target: t.id.to_string(),
                name: t.name.clone(),
                area: area.code.clone(),
                area_name: area.name.clone(),
                state: t.state,
                since: t.since,
                reasons: t.checks.iter().filter_map(|c| c.reason).collect(),
                root_causes: ids(reach.causes.get(&i)),
                uplinks_down: ids(reach.uplinks_down.get(&i)),
                affected: reach
                    .behind
                    .get(&i)
                    .map_or(0, |b| u32::try_from(b.targets.len()).unwrap_or(u32::MAX)),
            }
        })
        .collect();
    // Root causes first (most affected first), then consequences; oldest first within each.
    incidents.sort_by(|a, b| {
        (!a.root_causes.is_empty(), std::cmp::Reverse(a.affected))
            .cmp(&(!b.root_causes.is_empty(), std::cmp::Reverse(b.affected)))
            .then(a.since.total_cmp(&b.since))
    });

    let area_list = areas
        .iter()
        .map(|(id, a)| {
            let counts = counted.areas.get(&id).copied().unwrap_or_default();
            AreaStatus {
                code: a.code.clone(),
                name: a.name.clone(),
                kind: a.kind.clone(),
                parent: a.parent.map(|p| areas.get(p).code.clone()),
                path: areas.path(id),
                depth: areas.ancestors(id).count() - 1,
                lat: a.geo.map(|g| g.0),
                lon: a.geo.map(|g| g.1),
                state: counts.worst(),
                targets: counts,
            }
        })
        .collect();
    let systems = catalog
        .systems
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let counts = counted.systems.get(&i).copied().unwrap_or_default();
            SystemStatus {
                id: s.id.clone(),
                name: s.name.clone(),
                owner: s.owner.clone(),
                state: counts.worst(),
                targets: counts,
            }
        })
        .collect();
    Status {
        generated_at: unix(SystemTime::now()),
        summary,
        areas: area_list,
        systems,
        incidents,
        targets,
    }
}
