//! The ground floor: plain data every other module shares. Nothing here imports anything
//! else of the crate, so any module may use it without making a cycle.
//!
//! - config values: Prometheus-style durations, positions in files ([`Spanned`], [`FieldError`]);
//! - checks: [`Kind`], [`FailureReason`], [`Grade`];
//! - alerts: [`Severity`], [`AlertName`], conditions as written and validated ([`condition`]);
//! - messages: the [`Event`] a notification is made of, its [`Language`], its words
//!   ([`text`]);
//! - the durable record: [`record::Write`] and the [`record::Recorder`] that carries it.

mod alert;
mod check;
pub mod condition;
mod duration;
mod event;
mod field;
pub mod hourly;
mod locale;
pub mod record;
mod secret;
pub mod text;

pub use alert::{AlertName, Severity};
pub use check::{FailureReason, Grade, Kind};
pub use condition::{AlertsConfig, Condition, ConditionConfig, RuleParams, Test};
pub use duration::{format as format_duration, parse as parse_duration, PromDuration};
pub use event::{Event, EventStatus};
pub use field::{FieldError, Location, Spanned};
pub use locale::{fold_name, Language, DEFAULT_TIME_ZONE};
pub use record::{Recorder, Write};
pub use secret::{redacted, Secret};

/// Milliseconds since the epoch, the unit of every time in the durable record; a clock
/// before 1970 reads as 0.
pub fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A time as RFC 3339 in UTC, to the second: how events and the API write times.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn from_unix_ms(ms: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Parses a YAML snippet in unit tests of config types.
#[cfg(test)]
pub(crate) fn parse_test_yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    match serde_saphyr::from_str(text) {
        Ok(value) => value,
        Err(e) => panic!("test yaml does not parse: {e}"),
    }
}
