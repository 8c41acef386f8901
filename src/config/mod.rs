//! Loading the YAML config: main file → included files → file_sd files → validated
//! [`Catalog`]. Every error names file, line, column and what was expected, and all errors of
//! a load are reported together.

mod raw;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use crate::model::{
    format_duration, parse_duration, FieldError, Location, PromDuration, Spanned,
};

use crate::catalog::Catalog;
use crate::notify::NotifierSpec;

/// The config file read when none is given.
pub const DEFAULT_PATH: &str = "config/iocwatch.yaml";

/// One error in one file, with its position (1-based; 0 when the file as a whole is meant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Every error found in one load, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// A loaded config: the catalog (what to probe and how to judge it) and the notifiers' own
/// settings (URLs, secrets), which the catalog only names.
#[derive(Debug)]
pub struct Config {
    pub catalog: Catalog,
    pub notifiers: Vec<NotifierSpec>,
}

/// Reads the main file and everything it includes, and validates the whole.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    validate::Loader::default().load(path)
}

/// Parses YAML text into a serde type, with the error positioned in `file`.
fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    // A whole province in one file is tens of thousands of targets, past the default node
    // budget; the limits that stop alias bombs and deep nesting stay as they are.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 10_000_000;
    budget.max_events = 20_000_000;
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let location = e.location().unwrap_or(Location::UNKNOWN);
        ConfigError {
            file: file.to_owned(),
            line: location.line(),
            column: location.column(),
            message: strip_position(&e.to_string()),
        }
    })
}

/// serde-saphyr's message starts with `error: line L column C: `; we print the position
/// ourselves in the `file:line:col` form compilers use.
fn strip_position(message: &str) -> String {
    let first_line = message.lines().next().unwrap_or(message);
    let rest = first_line.strip_prefix("error: ").unwrap_or(first_line);
    let message = match rest.strip_prefix("line ") {
        Some(after) => after.split_once(": ").map_or(rest, |(_, msg)| msg),
        None => rest,
    };
    // Some messages repeat the position at the end ("… at line 3, column 5").
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(", column ") => message[..i].to_owned(),
        _ => message.to_owned(),
    }
}
