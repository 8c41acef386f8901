//! The ground floor: plain data every other module shares. Nothing here imports anything
//! else of the crate, so any module may use it without making a cycle.
//!
//! - config values: Prometheus-style durations, positions in files ([`Spanned`], [`FieldError`]);
//! - checks: [`Kind`], [`FailureReason`], [`Grade`];
//! - alerts: [`Severity`], [`AlertName`], conditions as written and validated ([`condition`]);
//! - messages: the [`Event`] a notification is made of, its [`Language`].

mod alert;
mod check;
pub mod condition;
mod duration;
mod event;
mod field;
mod locale;

pub use alert::{AlertName, Severity};
pub use check::{FailureReason, Grade, Kind};
pub use condition::{AlertsConfig, Condition, ConditionConfig, RuleParams, Test};
pub use duration::{format as format_duration, parse as parse_duration, PromDuration};
pub use event::{Event, EventStatus};
pub use field::{FieldError, Location, Spanned};
pub use locale::{Language, DEFAULT_TIME_ZONE};

/// Parses a YAML snippet in unit tests of config types.
#[cfg(test)]
pub(crate) fn parse_test_yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    match serde_saphyr::from_str(text) {
        Ok(value) => value,
        Err(e) => panic!("test yaml does not parse: {e}"),
    }
}
