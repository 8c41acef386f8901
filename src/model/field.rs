//! Positions in config files: a value with where it was written, and a problem with a
//! typed value that the loader turns into a `file:line:column` error.

pub use serde_saphyr::{Location, Spanned};

/// A problem found while building a probe or other typed value from its config;
/// the loader adds the file, and the enclosing item's location when `at` is unknown.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub at: Option<Location>,
    pub message: String,
}

impl FieldError {
    pub fn at(at: Location, message: String) -> FieldError {
        let at = (at != Location::UNKNOWN).then_some(at);
        FieldError { at, message }
    }

    pub fn unlocated(message: String) -> FieldError {
        FieldError { at: None, message }
    }
}
