//! Maintenance windows, validated: one-off (`start`, `end`) or recurring (`cron` +
//! `duration`), for targets, areas (with everything below) or systems, in the configured time
//! zone. In a window alerts still fire and show, but nothing is sent; the periods are
//! recorded so that availability reports can leave them out.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

use super::{AreaId, AreaTree, Target};

#[derive(Debug, Clone)]
pub enum When {
    Once {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    Every {
        cron: Box<Cron>,
        duration: Duration,
    },
}

impl PartialEq for When {
    fn eq(&self, other: &When) -> bool {
        match (self, other) {
            (When::Once { start, end }, When::Once { start: s, end: e }) => start == s && end == e,
            (
                When::Every { cron, duration },
                When::Every {
                    cron: c,
                    duration: d,
                },
            ) => cron.as_str() == c.as_str() && duration == d,
            _ => false,
        }
    }
}

/// A validated window. Its scope is resolved to ids at load time.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub name: Arc<str>,
    pub targets: HashSet<Arc<str>>,
    pub areas: Vec<AreaId>,
    pub systems: Vec<usize>,
    pub when: When,
    pub time_zone: Tz,
}

impl Window {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        match &self.when {
            When::Once { start, end } => *start <= now && now < *end,
            When::Every { cron, duration } => {
                // Active when an occurrence fell within the last `duration`.
                let Ok(span) = chrono::Duration::from_std(*duration) else {
                    return false;
                };
                let local = now.with_timezone(&self.time_zone);
                cron.find_previous_occurrence(&local, true)
                    .is_ok_and(|last| local < last + span)
            }
        }
    }

    pub fn covers(&self, target: &Target, areas: &AreaTree) -> bool {
        self.targets.contains(&target.id)
            || target.system.is_some_and(|s| self.systems.contains(&s))
            || areas
                .ancestors(target.area)
                .any(|a| self.areas.contains(&a))
    }
}

/// Parses the time of a one-off window: RFC 3339, or a local time in `zone`.
pub fn parse_time(text: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text.trim(), format) {
            return zone
                .from_local_datetime(&naive)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| format!("{text:?} does not exist in {zone}"));
        }
    }
    Err(format!(
        "expected a time such as 2026-12-01 08:00 or 2026-12-01T08:00:00+07:00, not {text:?}"
    ))
}

pub fn parse_cron(text: &str) -> Result<Cron, String> {
    Cron::from_str(text).map_err(|e| format!("invalid cron expression {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DEFAULT_TIME_ZONE;

    fn window(when: When) -> Window {
        Window {
            name: Arc::from("w"),
            targets: HashSet::new(),
            areas: Vec::new(),
            systems: Vec::new(),
            when,
            time_zone: DEFAULT_TIME_ZONE,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        parse_time(text, DEFAULT_TIME_ZONE).expect("time")
    }

    #[test]
    fn one_off_windows_use_local_time_unless_an_offset_is_given() {
        assert_eq!(at("2026-12-01 08:00"), at("2026-12-01T01:00:00Z"));
        let w = window(When::Once {
            start: at("2026-12-01 08:00"),
            end: at("2026-12-01 12:00"),
        });
        assert!(!w.is_active(at("2026-12-01 07:59")));
        assert!(w.is_active(at("2026-12-01 08:00")));
        assert!(w.is_active(at("2026-12-01 11:59")));
        assert!(!w.is_active(at("2026-12-01 12:00")));
        assert!(parse_time("mai 8 giờ", DEFAULT_TIME_ZONE).is_err());
    }

    #[test]
    fn recurring_windows_follow_cron_in_the_configured_zone() {
        // Saturdays 22:00 to 00:00, Hanoi time; 2026-11-28 is a Saturday.
        let w = window(When::Every {
            cron: Box::new(parse_cron("0 22 * * 6").expect("cron")),
            duration: Duration::from_secs(2 * 3600),
        });
        assert!(!w.is_active(at("2026-11-28 21:59")));
        assert!(w.is_active(at("2026-11-28 22:00")));
        assert!(w.is_active(at("2026-11-28 23:59")));
        assert!(!w.is_active(at("2026-11-29 00:00")));
        assert!(!w.is_active(at("2026-11-27 22:30")), "a Friday");
        // 22:00 in Hanoi is 15:00 UTC.
        assert!(w.is_active(at("2026-11-28T15:30:00Z")));
        assert!(parse_cron("every night").is_err());
    }
}
