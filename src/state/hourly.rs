//! Each check's rounds added up by the hour, for availability reports. The state records
//! every result here; once a minute (and at shutdown) each check's sums since its last flush
//! go to the journal as [`Write::Hourly`] deltas, which the store adds to the hour's row. So
//! a crash loses at most a minute of counting, and a report sees the current hour. The checks
//! take turns, a sixtieth of them each second: 100,000 upserts in one commit hold the
//! database for seconds, and an alert's write would wait behind them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::catalog::{Catalog, Check, Target};
use crate::model::hourly::{CheckPlace, HourDelta, HourStats};
use crate::model::Write;

/// Each check is flushed on its turn, one of this many, one turn a tick (a second).
const TURNS: u8 = 60;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// One check's counting since the last flush. Its place is built from the catalog only when
/// a delta is handed on, so a check costs its sums here and nothing more.
#[derive(Default)]
struct Counting {
    hour: i64,
    stats: HourStats,
}

#[derive(Default)]
pub struct Hourly {
    /// By check number in the catalog counted under: check `n` is handed on at tick
    /// `n % TURNS` of each minute.
    counting: Vec<Counting>,
    /// Hours that ended since the last flush.
    done: Vec<HourDelta>,
    /// Maintenance windows active now (indices into the catalog's), refreshed each tick.
    windows_on: Vec<usize>,
    turn: u8,
    last_prune: Option<Instant>,
}

impl Hourly {
    /// Before a new catalog replaces `old`: what was counted is handed on under the places
    /// of `old` (a moved or renamed target reports under its new place from now on).
    pub fn apply_catalog(&mut self, old: &Catalog, out: &mut Vec<Write>) {
        self.flush(old, out);
        self.counting.clear();
        self.windows_on.clear();
    }

    /// Which maintenance windows are on, once a tick rather than per round.
    pub fn refresh_windows(&mut self, catalog: &Catalog, wall: SystemTime) {
        let now = wall.into();
        self.windows_on = (catalog.alerting.maintenance.iter().enumerate())
            .filter(|(_, w)| w.is_active(now))
            .map(|(i, _)| i)
            .collect();
    }

    /// One round of check `c` of target `t`.
    pub fn record(
        &mut self,
        catalog: &Catalog,
        (t, c): (usize, usize),
        failed: bool,
        latency: Option<f64>,
        finished: SystemTime,
    ) {
        let target = &catalog.targets[t];
        let check = &target.checks[c];
        if !target.owned {
            return;
        }
        let hour = crate::model::unix_ms(finished).div_euclid(3_600_000) * 3600;
        let maintenance = self
            .windows_on
            .iter()
            .any(|&w| catalog.alerting.maintenance[w].covers(target, &catalog.areas));
        if self.counting.len() != catalog.check_count() {
            self.counting
                .resize_with(catalog.check_count(), Counting::default);
        }
        let Some(counting) = self.counting.get_mut(catalog.check_number(t, c)) else {
            return;
        };
        if counting.hour != hour {
            if counting.stats.rounds > 0 {
                self.done.push(HourDelta {
                    place: Arc::new(place(catalog, target, check)),
                    hour: counting.hour,
                    stats: std::mem::take(&mut counting.stats),
                });
            }
            counting.hour = hour;
        }
        let interval = i64::try_from(check.interval.as_millis()).unwrap_or(i64::MAX);
        counting.stats.round(interval, failed, maintenance, latency);
    }

    /// Once a tick (a second): the hours that ended, the sums of the checks whose turn it
    /// is, and the prune once an hour.
    pub fn tick(
        &mut self,
        catalog: &Catalog,
        now: Instant,
        wall: SystemTime,
        out: &mut Vec<Write>,
    ) {
        self.refresh_windows(catalog, wall);
        self.turn = (self.turn + 1) % TURNS;
        let turn = usize::from(self.turn);
        self.hand_on(
            catalog,
            (turn..self.counting.len()).step_by(TURNS.into()),
            out,
        );
        if self
            .last_prune
            .is_none_or(|t| now.saturating_duration_since(t) >= PRUNE_EVERY)
        {
            self.last_prune = Some(now);
            let before = wall
                .checked_sub(catalog.alerting.report_history)
                .map_or(0, crate::model::unix_ms);
            out.push(Write::PruneHourly {
                before: before.div_euclid(3_600_000) * 3600,
            });
        }
    }

    /// Everything counted so far, as deltas, placed by `catalog` (the one it was counted
    /// under).
    pub fn flush(&mut self, catalog: &Catalog, out: &mut Vec<Write>) {
        self.hand_on(catalog, 0..self.counting.len(), out);
    }

    /// The hours that ended and the sums of the checks numbered `due`, as deltas.
    fn hand_on(
        &mut self,
        catalog: &Catalog,
        due: impl Iterator<Item = usize>,
        out: &mut Vec<Write>,
    ) {
        let mut deltas = std::mem::take(&mut self.done);
        for n in due {
            let Some(counting) = self.counting.get_mut(n) else {
                continue;
            };
            if counting.stats.rounds == 0 {
                continue;
            }
            let Some((t, c)) = catalog.check_at(n) else {
                continue;
            };
            let target = &catalog.targets[t];
            let check = &target.checks[c];
            deltas.push(HourDelta {
                place: Arc::new(place(catalog, target, check)),
                hour: counting.hour,
                stats: std::mem::take(&mut counting.stats),
            });
        }
        if !deltas.is_empty() {
            out.push(Write::Hourly(deltas));
        }
    }
}

/// Where a report puts the check: its area path, system and owner (the target's `owner`
/// label, else its system's owner).
fn place(catalog: &Catalog, target: &Target, check: &Check) -> CheckPlace {
    let mut areas: Vec<(String, String)> = catalog
        .areas
        .ancestors(target.area)
        .map(|a| {
            let area = catalog.areas.get(a);
            (area.code.clone(), area.name.clone())
        })
        .collect();
    areas.reverse();
    let system = target.system.and_then(|s| catalog.systems.get(s));
    CheckPlace {
        check_key: format!("{}/{}", check.key.target, check.key.check),
        target: target.id.to_string(),
        target_name: target.name.clone(),
        kind: check.kind.to_string(),
        areas,
        system: system.map(|s| s.name.clone()),
        owner: target
            .labels
            .get("owner")
            .cloned()
            .or_else(|| system.and_then(|s| s.owner.clone())),
    }
}
