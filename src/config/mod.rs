//! Loading the YAML config: main file → included files → file_sd files → validated
//! [`Catalog`]. Every error names file, line, column and what was expected, and all errors of
//! a load are reported together.

pub mod import;
mod raw;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// Not errors, but worth saying: an include that matches no file, say.
    pub warnings: Vec<ConfigError>,
    /// The text of each included file as this config holds it: what a later reload keeps
    /// in force when an edit of that file is refused.
    pub accepted: HashMap<PathBuf, Arc<str>>,
    /// Included files whose new version was refused alone ([`load_isolating`]).
    pub refused: Vec<Refused>,
    /// Files that declare an `owner:`.
    pub owners: Vec<OwnerFile>,
}

/// A file that declares who keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerFile {
    pub file: PathBuf,
    pub owner: String,
    pub contact: Option<String>,
}

/// An included file whose new version was refused while the others applied.
#[derive(Debug, Clone)]
pub struct Refused {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
    /// Its previous version stays in force; `false` for a new file, left out.
    pub kept: bool,
}

/// Reads the main file and everything it includes, and validates the whole.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    validate::Loader::default().load(path)
}

/// Loads the config as if `file` held `text` and the config included it: how an import is
/// checked, with everything else, before anything is written.
pub fn load_with_file(path: &Path, file: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut loader = validate::Loader::default();
    loader
        .overrides
        .insert(file_key(file), Some(Arc::from(text)));
    loader.extra.push(file.to_owned());
    loader.load(path)
}

/// One spelling per file (`config/../config/a.yaml` and `config/a.yaml` are one), for a file
/// that may not exist yet: its directory resolved, its name kept.
fn file_key(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(d) if d.as_os_str().is_empty() => Path::new("."),
        Some(d) => d,
        None => return path.to_owned(),
    };
    match (dir.canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_owned(),
    }
}

/// Like [`load`], but an included file with errors is refused alone: its version in
/// `accepted` (the running config's) stays in force, or a new file stays out, and every
/// other file's changes apply. A file whose changes only make sense with a refused one (a
/// `depends_on` into it) fails with it and waits too. Errors in the main file, or in a file
/// whose kept version no longer fits, refuse the whole load as [`load`] does.
pub fn load_isolating(
    path: &Path,
    accepted: &HashMap<PathBuf, Arc<str>>,
) -> Result<Config, ConfigErrors> {
    let mut overrides: HashMap<PathBuf, Option<Arc<str>>> = HashMap::new();
    let mut refused: Vec<Refused> = Vec::new();
    loop {
        let mut loader = validate::Loader::default();
        loader.overrides.clone_from(&overrides);
        let errors = match loader.load(path) {
            Ok(mut config) => {
                config.refused = refused;
                return Ok(config);
            }
            Err(errors) => errors,
        };
        let mut by_file: Vec<(PathBuf, Vec<ConfigError>)> = Vec::new();
        for error in &errors.0 {
            match by_file.iter_mut().find(|(f, _)| *f == error.file) {
                Some((_, list)) => list.push(error.clone()),
                None => by_file.push((error.file.clone(), vec![error.clone()])),
            }
        }
        let refusable = by_file
            .iter()
            .all(|(file, _)| file != path && !overrides.contains_key(file));
        if !refusable {
            return Err(errors);
        }
        for (file, errors) in by_file {
            let kept = accepted.get(&file).cloned();
            refused.push(Refused {
                file: file.clone(),
                errors,
                kept: kept.is_some(),
            });
            overrides.insert(file_key(&file), kept);
        }
    }
}

/// Parses YAML text into a serde type, with the error positioned in `file`.
fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    options.budget = Some(budget_for(text.len()));
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let location = e.location().unwrap_or(Location::UNKNOWN);
        let message = strip_position(&e.to_string());
        ConfigError {
            file: file.to_owned(),
            line: location.line(),
            column: location.column(),
            message: plain_words(&message, text, location.line(), location.column()),
        }
    })
}

/// Limits in proportion to the file: a province of tens of thousands of targets is a few
/// events per byte, and what anchors and aliases may expand to stays within a small
/// multiple of what was written, so a few lines of nested aliases (a "billion laughs")
/// are refused after a few megabytes, not hundreds.
fn budget_for(bytes: usize) -> serde_saphyr::Budget {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 100_000 + bytes;
    budget.max_nodes = 100_000 + bytes;
    budget.max_aliases = 10_000;
    budget.max_recorded_anchor_events = 100_000 + bytes / 4;
    budget.max_recorded_anchor_bytes = (1 << 20) + bytes;
    budget.max_total_scalar_bytes = (4 << 20) + 2 * bytes;
    budget
}

/// The parser's words put the way a system owner reads them: what was expected, at what
/// key, and the value written there.
fn plain_words(message: &str, text: &str, line: u64, column: u64) -> String {
    let line_text = usize::try_from(line)
        .ok()
        .and_then(|l| text.lines().nth(l.checked_sub(1)?))
        .unwrap_or("");
    let at = usize::try_from(column.saturating_sub(1)).unwrap_or(0);
    let before = line_text.get(..at).unwrap_or("");
    let value: String = line_text
        .get(at..)
        .unwrap_or("")
        .chars()
        .take_while(|c| !matches!(c, ',' | '}' | ']' | '#') && *c != '\n')
        .collect::<String>()
        .trim()
        .to_owned();
    let key: String = before
        .trim_end()
        .strip_suffix(':')
        .map(|k| {
            k.chars()
                .rev()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                .collect::<String>()
                .chars()
                .rev()
                .collect()
        })
        .unwrap_or_default();
    let what = if key.is_empty() {
        "the value".to_owned()
    } else {
        format!("`{key}`")
    };
    let number = |range: &str| format!("{what} must be {range}, not {value}");
    if let Some(kind) = message.strip_prefix("invalid ") {
        match kind.trim() {
            "u8" => return number("a whole number from 0 to 255"),
            "u16" if key == "port" || key.ends_with("port") => {
                return number("a port number from 1 to 65535")
            }
            "u16" => return number("a whole number from 0 to 65535"),
            "u32" | "u64" | "usize" => return number("a whole number, 0 or more"),
            "i32" | "i64" => return number("a whole number"),
            "f32" | "f64" => return number("a number"),
            "bool" | "boolean" => return format!("{what} must be true or false, not {value}"),
            _ => {}
        }
    }
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let name = rest.split(',').next().unwrap_or(rest).trim();
        return format!("`{name}` is given twice in the same mapping; keep one");
    }
    if let Some(breach) = message.strip_prefix("budget breached: ") {
        let why = if breach.starts_with("Alias") || breach.starts_with("RecordedAnchor") {
            "its anchors and aliases (`&name`, `*name`) expand to too much"
        } else if breach.starts_with("Depth") {
            "it is nested too deeply"
        } else {
            "it is too large"
        };
        return format!("the file is refused: {why}; write the values out instead");
    }
    if message.starts_with("expected string scalar") {
        return format!("{what} takes a single value (text), not a list or a mapping");
    }
    message.to_owned()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(text: &str) -> String {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Probe {
            port: Option<u16>,
            count: Option<u8>,
            name: Option<String>,
            address: Option<String>,
            list: Option<Vec<String>>,
        }
        match parse_yaml::<Probe>(text, Path::new("x.yaml")) {
            Err(e) => e.message,
            Ok(p) => panic!("accepted {text}: {p:?}"),
        }
    }

    #[test]
    fn only_files_the_config_reads_or_its_globs_match_concern_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let main = dir.path().join("iocwatch.yaml");
        std::fs::create_dir(dir.path().join("conf.d")).expect("mkdir");
        std::fs::write(
            &main,
            "include: [\"conf.d/*.yaml\"]\nareas: [{code: \"15\", name: Lào Cai}]\ntargets: []\n",
        )
        .expect("write");
        let owner = dir.path().join("conf.d/vnpt.yaml");
        std::fs::write(&owner, "targets: []\n").expect("write");
        let watched = load(&main).expect("valid").catalog.watched;
        let path = |name: &str| dir.path().join(name);
        for concerned in ["iocwatch.yaml", "conf.d/vnpt.yaml", "conf.d/new-owner.yaml"] {
            assert!(watched.concerns(&path(concerned)), "{concerned}");
        }
        for ignored in [
            "notes.yaml",
            "conf.d/readme.json",
            "conf.d/.vnpt.yaml.swp",
            "conf.d/vnpt.yaml~",
            "backup/iocwatch.yaml",
        ] {
            assert!(!watched.concerns(&path(ignored)), "{ignored}");
        }
        assert!(watched.awaits(&path("conf.d")));
        assert!(!watched.awaits(&path("elsewhere")));
    }

    #[test]
    fn parser_messages_say_what_was_expected_in_plain_words() {
        assert_eq!(
            parse_error("port: 70000\n"),
            "`port` must be a port number from 1 to 65535, not 70000"
        );
        assert_eq!(
            parse_error("count: 300\n"),
            "`count` must be a whole number from 0 to 255, not 300"
        );
        assert_eq!(
            parse_error("address: a\naddress: b\n"),
            "`address` is given twice in the same mapping; keep one"
        );
        assert_eq!(
            parse_error("name: [1]\n"),
            "`name` takes a single value (text), not a list or a mapping"
        );
    }

    #[test]
    fn an_alias_bomb_is_refused_small() {
        let mut bomb = String::from("list: &s0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n");
        // Each level holds ten of the one before: 10^8 strings if expanded.
        let mut text = String::new();
        for level in 1..8 {
            let refs = vec![format!("*s{}", level - 1); 10].join(", ");
            text.push_str(&format!("x{level}: &s{level} [{refs}]\n"));
        }
        bomb.push_str(&text);
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Lists {
            list: Vec<String>,
            #[serde(flatten)]
            rest: std::collections::BTreeMap<String, Vec<serde_json::Value>>,
        }
        let error = parse_yaml::<Lists>(&bomb, Path::new("bomb.yaml")).expect_err("bomb");
        assert!(
            error.message.contains("anchors and aliases") || error.message.contains("too large"),
            "{}",
            error.message
        );
    }
}
