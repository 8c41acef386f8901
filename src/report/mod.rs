//! Availability reports for the steering committee: per unit (area, system, owner or
//! target) availability with maintenance left out and counted, incidents, downtime, time to
//! recover and latency, ranked best to worst and rolled up the area tree. Built from the
//! hourly aggregates and the incident history of the database ([`crate::store::History`]),
//! written as HTML (A4, inline SVG charts), XLSX (one sheet per grouping), CSV or Markdown,
//! in Vietnamese by default.
//!
//! Definitions, so a figure can be checked by hand:
//! - availability (maintenance left out) = 1 − down ÷ (observed − maintenance), where each
//!   round stands for one interval of its check, down counts failed rounds outside
//!   maintenance windows, and a unit's figure adds up the times of all its checks;
//! - availability (maintenance counted) = 1 − (down + failed in maintenance) ÷ observed;
//! - incidents: alerts opened on the unit's targets and open at some time in the period,
//!   outside maintenance; the longest is clipped to the period; the time to recover is the
//!   mean whole length of those that ended in the period;
//! - latency: ICMP round-trip time, else the probe's round; p95 within 10 %.

mod html;
mod table;
mod words;
mod xlsx;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::model::hourly::{CheckPlace, HourStats};
use crate::model::Language;
use crate::store::History;

pub use words::Words;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum By {
    Area,
    System,
    Owner,
    Target,
}

impl By {
    pub const ALL: [By; 4] = [By::Area, By::System, By::Owner, By::Target];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Html,
    Xlsx,
    Csv,
    Md,
}

impl Format {
    /// The groupings a report in this format holds: all of them in a workbook's sheets, the
    /// one asked for otherwise.
    pub fn groupings(self, asked: By) -> Vec<By> {
        match self {
            Format::Xlsx => By::ALL.to_vec(),
            _ => vec![asked],
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Md => "text/markdown; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Xlsx => "xlsx",
            Format::Csv => "csv",
            Format::Md => "md",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Period(String),
    #[error("unknown area {0:?}: no check of the period lies in it")]
    UnknownArea(String),
    #[error("cannot write the spreadsheet: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
}

/// What to report on. Times are Unix milliseconds; `to` is exclusive.
#[derive(Debug, Clone)]
pub struct Request {
    pub from: i64,
    pub to: i64,
    pub by: By,
    pub area: Option<String>,
    pub language: Language,
    pub time_zone: Tz,
    /// When the report is made: open incidents are counted up to here.
    pub now: i64,
}

/// Reads `--from` and `--to`: a day (`2026-10-01`, the whole day in `zone`, so `--to` is
/// inclusive) or an RFC 3339 time.
pub fn parse_period(from: &str, to: &str, zone: Tz) -> Result<(i64, i64), ReportError> {
    let start = instant(from, zone, false)?;
    let end = instant(to, zone, true)?;
    if end <= start {
        return Err(ReportError::Period(format!(
            "the period is empty: --to {to} is not after --from {from}"
        )));
    }
    Ok((start, end))
}

fn instant(text: &str, zone: Tz, end_of_day: bool) -> Result<i64, ReportError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        ReportError::Period(format!(
            "{text:?} is not a date: expected YYYY-MM-DD or an RFC 3339 time"
        ))
    })?;
    let day = if end_of_day {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    zone.from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| ReportError::Period(format!("{text}: no such local time in {zone}")))
}

/// One unit's figures over the period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub targets: usize,
    pub checks: usize,
    pub hours: HourStats,
    pub incidents: u32,
    pub longest_ms: i64,
    pub recovered: u32,
    pub recovery_ms: i64,
}

impl Figures {
    pub fn availability(&self) -> Option<f64> {
        let h = &self.hours;
        let counted = h.observed_ms - h.maintenance_ms;
        (counted > 0).then(|| 1.0 - h.down_ms as f64 / counted as f64)
    }

    pub fn availability_with_maintenance(&self) -> Option<f64> {
        let h = &self.hours;
        (h.observed_ms > 0)
            .then(|| 1.0 - (h.down_ms + h.maintenance_down_ms) as f64 / h.observed_ms as f64)
    }

    pub fn downtime_ms(&self) -> i64 {
        self.hours.down_ms
    }

    pub fn mttr_ms(&self) -> Option<i64> {
        (self.recovered > 0).then(|| self.recovery_ms / i64::from(self.recovered))
    }

    pub fn latency_mean(&self) -> Option<f64> {
        let h = &self.hours;
        (h.latency_count > 0).then(|| h.latency_sum / f64::from(h.latency_count))
    }

    pub fn latency_p95(&self) -> Option<f64> {
        self.hours.sketch.quantile(0.95)
    }
}

/// A row of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// The area code, system, owner or target id.
    pub code: String,
    pub name: String,
    /// Depth in the area tree (0 = the province); 0 for other groupings.
    pub depth: usize,
    /// 1 = best among the units of its depth.
    pub rank: usize,
    /// How many units share its depth.
    pub of: usize,
    pub figures: Figures,
}

/// The units of one grouping, best first (for areas: by depth, then best first).
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    pub by: By,
    pub units: Vec<Unit>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub request: Request,
    pub groupings: Vec<Grouping>,
    /// Incidents (outside maintenance) by the week they began, from the week of `from`.
    pub weekly_incidents: Vec<(NaiveDate, u32)>,
}

/// Builds the groupings asked for ([`Format::groupings`]: the XLSX has them all, the other
/// formats print `request.by`).
pub fn build(
    history: &History,
    request: &Request,
    groupings: &[By],
) -> Result<Report, ReportError> {
    let checks: Vec<&(CheckPlace, HourStats)> = history
        .checks
        .iter()
        .filter(|(place, _)| {
            request
                .area
                .as_ref()
                .is_none_or(|code| place.areas.iter().any(|(c, _)| c == code))
        })
        .collect();
    if let Some(code) = &request.area {
        if checks.is_empty() {
            return Err(ReportError::UnknownArea(code.clone()));
        }
    }
    let words = Words::new(request.language);
    // Where each target sits: its incidents count for the same units as its checks.
    let mut places: HashMap<&str, &CheckPlace> = HashMap::new();
    for (place, _) in &checks {
        places.entry(place.target.as_str()).or_insert(place);
    }
    let groupings = groupings
        .iter()
        .map(|&by| {
            let mut units: BTreeMap<(usize, String), Unit> = BTreeMap::new();
            let mut targets: BTreeMap<(usize, String), BTreeSet<&str>> = BTreeMap::new();
            for (place, hours) in &checks {
                for (depth, code, name) in units_of(by, place, request.area.as_deref(), words) {
                    let unit = units.entry((depth, code.clone())).or_insert_with(|| Unit {
                        code: code.clone(),
                        name,
                        depth,
                        rank: 0,
                        of: 0,
                        figures: Figures::default(),
                    });
                    unit.figures.checks += 1;
                    unit.figures.hours.add(hours);
                    targets
                        .entry((depth, code))
                        .or_default()
                        .insert(&place.target);
                }
            }
            for (key, set) in &targets {
                if let Some(unit) = units.get_mut(key) {
                    unit.figures.targets = set.len();
                }
            }
            for incident in history.incidents.iter().filter(|i| i.maintenance.is_none()) {
                let Some(place) = places.get(incident.target.as_str()) else {
                    continue;
                };
                let end = incident.ended_at.unwrap_or(request.now).min(request.to);
                let clipped = end - incident.started_at.max(request.from);
                let recovered = incident
                    .ended_at
                    .filter(|e| (request.from..request.to).contains(e))
                    .map(|e| e - incident.started_at);
                for (depth, code, _) in units_of(by, place, request.area.as_deref(), words) {
                    if let Some(unit) = units.get_mut(&(depth, code)) {
                        let f = &mut unit.figures;
                        f.incidents += 1;
                        f.longest_ms = f.longest_ms.max(clipped);
                        if let Some(ms) = recovered {
                            f.recovered += 1;
                            f.recovery_ms += ms;
                        }
                    }
                }
            }
            Grouping {
                by,
                units: ranked(units.into_values().collect()),
            }
        })
        .collect();
    Ok(Report {
        request: request.clone(),
        groupings,
        weekly_incidents: weekly(history, &places, request),
    })
}

/// The units a check counts for: every area on its path (at or below `--area`), or its
/// system, owner or target.
fn units_of(
    by: By,
    place: &CheckPlace,
    area: Option<&str>,
    words: &Words,
) -> Vec<(usize, String, String)> {
    match by {
        By::Area => {
            let skip = area
                .and_then(|code| place.areas.iter().position(|(c, _)| c == code))
                .unwrap_or(0);
            place.areas[skip..]
                .iter()
                .enumerate()
                .map(|(depth, (code, name))| (depth, code.clone(), name.clone()))
                .collect()
        }
        By::System => {
            let name = place
                .system
                .clone()
                .unwrap_or_else(|| words.no_system.into());
            vec![(0, name.clone(), name)]
        }
        By::Owner => {
            let name = place.owner.clone().unwrap_or_else(|| words.no_owner.into());
            vec![(0, name.clone(), name)]
        }
        By::Target => vec![(
            0,
            place.target.clone(),
            place
                .target_name
                .clone()
                .unwrap_or_else(|| place.target.clone()),
        )],
    }
}

/// Best first within each depth: availability, then fewer incidents, then less downtime.
fn ranked(mut units: Vec<Unit>) -> Vec<Unit> {
    units.sort_by(|a, b| {
        let (fa, fb) = (&a.figures, &b.figures);
        a.depth
            .cmp(&b.depth)
            .then(
                fb.availability()
                    .unwrap_or(-1.0)
                    .total_cmp(&fa.availability().unwrap_or(-1.0)),
            )
            .then(fa.incidents.cmp(&fb.incidents))
            .then(fa.downtime_ms().cmp(&fb.downtime_ms()))
            .then(a.name.cmp(&b.name))
    });
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for unit in &units {
        *counts.entry(unit.depth).or_default() += 1;
    }
    let mut next: HashMap<usize, usize> = HashMap::new();
    for unit in &mut units {
        let rank = next.entry(unit.depth).or_default();
        *rank += 1;
        unit.rank = *rank;
        unit.of = counts[&unit.depth];
    }
    units
}

/// Incidents of the targets in scope (`places`) by the week (Monday, local) they began; one
/// that began before the period counts in its first week.
fn weekly(
    history: &History,
    places: &HashMap<&str, &CheckPlace>,
    request: &Request,
) -> Vec<(NaiveDate, u32)> {
    let monday = |ms: i64| {
        let day = request
            .time_zone
            .from_utc_datetime(
                &DateTime::<Utc>::from_timestamp_millis(ms)
                    .unwrap_or_default()
                    .naive_utc(),
            )
            .date_naive();
        day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday()))
    };
    let mut weeks: BTreeMap<NaiveDate, u32> = BTreeMap::new();
    let mut week = monday(request.from);
    let last = monday(request.to - 1);
    while week <= last {
        weeks.insert(week, 0);
        week += chrono::Duration::days(7);
    }
    for incident in history.incidents.iter().filter(|i| i.maintenance.is_none()) {
        if !places.contains_key(incident.target.as_str()) {
            continue;
        }
        *weeks
            .entry(monday(incident.started_at.max(request.from)))
            .or_default() += 1;
    }
    weeks.into_iter().collect()
}

/// Writes the report in `format`: the grouping asked for, or every grouping for XLSX.
pub fn render(report: &Report, format: Format) -> Result<Vec<u8>, ReportError> {
    let words = Words::new(report.request.language);
    Ok(match format {
        Format::Html => html::render(report, words).into_bytes(),
        Format::Md => table::markdown(report, words).into_bytes(),
        Format::Csv => table::csv(report, words),
        Format::Xlsx => xlsx::render(report, words)?,
    })
}

impl Report {
    /// The grouping the request asked for.
    pub fn asked(&self) -> &Grouping {
        let by = self.request.by;
        self.groupings
            .iter()
            .find(|g| g.by == by)
            .unwrap_or(&self.groupings[0])
    }
}

#[cfg(test)]
mod tests;
