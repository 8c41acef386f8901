//! From parsed files to a [`Catalog`]: includes, templates, file_sd, and every check a config
//! must pass. Errors are collected, never returned early, so one run lists them all.

mod alerting;
mod areas;
mod names;
mod targets;

use targets::{draft_from_raw, label_values, Scope, Templates};

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use unicode_normalization::UnicodeNormalization;

use super::raw::RawFile;
use super::{parse_yaml, Config, ConfigError, ConfigErrors, FieldError, Location, Spanned};
use crate::catalog::{AreaTree, Catalog, LabelSchema, Settings, System, Target};
use crate::notify::NotifierSpec;
use crate::probe::CheckConfig;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(super) struct Loader {
    errors: Vec<ConfigError>,
    /// Checks' own `alerts:`, until the rules that combine with them are read.
    own_alerts: alerting::OwnAlerts,
    sources: Vec<PathBuf>,
    watch_dirs: BTreeSet<PathBuf>,
    watch_patterns: Vec<glob::Pattern>,
    /// Notifiers as configured; the catalog keeps only their routes.
    notifiers: Vec<NotifierSpec>,
    warnings: Vec<ConfigError>,
    /// Files that could not be parsed: what they define is missing, so references to it
    /// elsewhere say where to look first.
    unparsed: Vec<PathBuf>,
    /// Included files read from here instead of the disk: their last accepted text, or
    /// `None` for a new file left out.
    pub(super) overrides: HashMap<PathBuf, Option<Arc<str>>>,
    /// The text of each included file as read, for the next reload to fall back on.
    accepted: HashMap<PathBuf, Arc<str>>,
    owners: Vec<super::OwnerFile>,
    /// Files read as if included (an import being checked; its text in `overrides`).
    pub(super) extra: Vec<PathBuf>,
}

/// A parsed file and where it came from.
struct Parsed {
    file: Arc<Path>,
    raw: RawFile,
}

impl Loader {
    fn error(&mut self, file: &Path, at: Location, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: file.to_owned(),
            line: at.line(),
            column: at.column(),
            message: message.into(),
        });
    }

    fn field_errors(&mut self, file: &Path, fallback: Location, errors: Vec<FieldError>) {
        for e in errors {
            self.error(file, e.at.unwrap_or(fallback), e.message);
        }
    }

    fn read_file(&mut self, path: &Path) -> Option<String> {
        if let Some(dir) = path.parent() {
            self.watch_dirs.insert(dir.to_owned());
        }
        if let Some(kept) = self.overrides.get(&super::file_key(path)) {
            // A refused file: its last accepted text stays in force (a new one stays out).
            let kept = kept.as_ref()?;
            self.sources.push(path.to_owned());
            return Some(kept.to_string());
        }
        self.sources.push(path.to_owned());
        match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => {
                self.error(path, Location::UNKNOWN, format!("cannot read file: {e}"));
                None
            }
        }
    }

    /// Expands a glob relative to `base`; its fixed directory is watched for new files.
    fn glob(&mut self, base: &Path, file: &Path, pattern: &Spanned<String>) -> Vec<PathBuf> {
        let full = base.join(&pattern.value);
        let fixed: PathBuf = full
            .components()
            .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
            .collect();
        let dir = if fixed == full {
            fixed.parent().map(Path::to_owned).unwrap_or(fixed)
        } else {
            fixed
        };
        self.watch_dirs.insert(dir);
        if let Ok(matching) = glob::Pattern::new(&full.to_string_lossy()) {
            self.watch_patterns.push(matching);
        }
        match glob::glob(&full.to_string_lossy()) {
            Ok(paths) => {
                let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                found.sort();
                if found.is_empty() {
                    self.warnings.push(ConfigError {
                        file: file.to_owned(),
                        line: pattern.referenced.line(),
                        column: pattern.referenced.column(),
                        message: format!("{:?} matches no file", pattern.value),
                    });
                }
                found
            }
            Err(e) => {
                self.error(
                    file,
                    pattern.referenced,
                    format!("invalid glob {:?}: {}", pattern.value, e.msg),
                );
                Vec::new()
            }
        }
    }

    /// Reads and parses one included file; what belongs in the main file only is an error.
    fn include(&mut self, included: PathBuf, files: &mut Vec<Parsed>) {
        let Some(text) = self.read_file(&included) else {
            return;
        };
        match parse_yaml::<RawFile>(&text, &included) {
            Ok(mut raw) => {
                self.accepted
                    .insert(included.clone(), Arc::from(text.as_str()));
                let file: Arc<Path> = Arc::from(included.as_path());
                self.owner(&file, &mut raw);
                if let Some(global) = &raw.global {
                    self.error(
                        &file,
                        global.referenced,
                        "`global` belongs in the main file only",
                    );
                }
                if let Some(pattern) = raw.include.first() {
                    self.error(
                        &file,
                        pattern.referenced,
                        "`include` belongs in the main file only",
                    );
                }
                if let Some(defaults) = &raw.defaults {
                    self.error(
                        &file,
                        defaults.referenced,
                        "`defaults` belong in the main file only",
                    );
                }
                files.push(Parsed { file, raw });
            }
            Err(e) => {
                self.unparsed.push(included.clone());
                self.errors.push(e);
            }
        }
    }

    pub(super) fn load(mut self, path: &Path) -> Result<Config, ConfigErrors> {
        let main_file: Arc<Path> = Arc::from(path);
        let Some(text) = self.read_file(path) else {
            return Err(ConfigErrors(self.errors));
        };
        let mut main = match parse_yaml::<RawFile>(&text, path) {
            Ok(raw) => raw,
            Err(e) => return Err(ConfigErrors(vec![e])),
        };
        self.owner(&main_file, &mut main);
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let mut files = vec![Parsed {
            file: main_file.clone(),
            raw: main,
        }];
        let includes = std::mem::take(&mut files[0].raw.include);
        let mut seen: HashSet<PathBuf> = HashSet::from([super::file_key(path)]);
        let mut included_files = Vec::new();
        for pattern in &includes {
            included_files.extend(self.glob(&base, path, pattern));
        }
        // A file being imported, read as if the config included it.
        included_files.extend(self.extra.clone());
        for included in included_files {
            if !seen.insert(super::file_key(&included)) {
                continue;
            }
            self.include(included, &mut files);
        }

        let settings = self.settings(&files[0]);
        let defaults = files[0]
            .raw
            .defaults
            .take()
            .map(|d| d.value)
            .unwrap_or_default();
        let templates = self.templates(&mut files);
        let areas = self.areas(&mut files);
        let systems = self.systems(&mut files);
        let mut drafts = Vec::new();
        for parsed in &mut files {
            let file = parsed.file.clone();
            for target in std::mem::take(&mut parsed.raw.targets) {
                drafts.push(draft_from_raw(&file, target));
            }
        }
        for parsed in &mut files {
            let file = parsed.file.clone();
            for block in std::mem::take(&mut parsed.raw.file_sd) {
                let drafts_found = self.file_sd(&base, &file, block);
                drafts.extend(drafts_found);
            }
        }

        let default_interval = defaults
            .interval
            .map(|d| d.value.0)
            .unwrap_or(DEFAULT_INTERVAL);
        let default_timeout = defaults.timeout.as_ref().map(|d| d.value.0);
        let scope = Scope {
            areas: &areas,
            systems: &systems,
            templates: &templates,
            default_labels: &defaults.labels,
            default_interval,
            default_timeout,
        };
        let mut targets = self.targets(drafts, &scope);
        let schema = self.schema(&areas, &targets, &files);
        let own_alerts = std::mem::take(&mut self.own_alerts);
        let alerting = self.alerting(&mut files, &areas, &systems, &mut targets, own_alerts);

        if !self.errors.is_empty() {
            self.point_at_unparsed();
            return Err(ConfigErrors(self.errors));
        }
        let mut targets = targets;
        // Label values repeat across checks (an area's code on every target in it): each
        // distinct one is kept once, which at 100,000 checks saves tens of megabytes.
        let mut interned: HashSet<Arc<str>> = HashSet::new();
        let mut intern = |value: &str| -> Arc<str> {
            if let Some(found) = interned.get(value) {
                return Arc::clone(found);
            }
            let value: Arc<str> = Arc::from(value);
            interned.insert(Arc::clone(&value));
            value
        };
        for target in &mut targets {
            let values: Vec<Arc<str>> = label_values(&schema, &areas, &systems, target)
                .iter()
                .map(|value| intern(value))
                .collect();
            for check in &mut target.checks {
                let mut v = values.clone();
                v[0] = Arc::clone(&target.id);
                v[1] = Arc::clone(&check.key.check);
                v[2] = intern(check.kind.as_str());
                check.label_values = Arc::from(v);
            }
        }
        let catalog = Catalog::new(
            settings,
            areas,
            systems,
            targets,
            schema,
            self.sources.clone(),
            crate::catalog::Watched {
                dirs: self.watch_dirs.into_iter().collect(),
                files: self.sources,
                patterns: self.watch_patterns,
            },
            alerting,
        );
        Ok(Config {
            catalog,
            notifiers: self.notifiers,
            warnings: self.warnings,
            accepted: self.accepted,
            refused: Vec::new(),
            owners: self.owners,
        })
    }

    /// An owner file: its targets carry the owner, unless they name another.
    fn owner(&mut self, file: &Arc<Path>, raw: &mut RawFile) {
        let Some(owner) = &raw.owner else {
            return;
        };
        let owner = owner.value.trim().to_owned();
        for target in &mut raw.targets {
            target
                .value
                .labels
                .entry("owner".to_owned())
                .or_insert_with(|| owner.clone());
        }
        self.owners.push(super::OwnerFile {
            file: file.to_path_buf(),
            owner,
            contact: raw.contact.as_ref().map(|c| c.value.clone()),
        });
    }

    /// A file that could not be parsed defines nothing, so other files' references to what
    /// it defines fail too: say so on those errors, so the owner fixes the cause first.
    fn point_at_unparsed(&mut self) {
        if self.unparsed.is_empty() {
            return;
        }
        let names: Vec<String> = self
            .unparsed
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        for error in &mut self.errors {
            let follows = [
                "unknown target",
                "unknown area",
                "unknown system",
                "unknown template",
                "unknown notifier",
            ]
            .iter()
            .any(|m| error.message.contains(m));
            let explained = error.message.contains("areas are named by their code");
            if follows && !explained && !self.unparsed.contains(&error.file) {
                error.message.push_str(&format!(
                    " (perhaps defined in {}, which could not be read: fix that first)",
                    names.join(", ")
                ));
            }
        }
    }

    fn settings(&mut self, main: &Parsed) -> Settings {
        let mut settings = Settings::default();
        let Some(global) = &main.raw.global else {
            return settings;
        };
        if !global.value.listen.is_empty() {
            settings.listen.clear();
        }
        for listen in &global.value.listen {
            match listen.value.parse::<SocketAddr>() {
                Ok(addr) => settings.listen.push(addr),
                Err(_) => self.error(
                    &main.file,
                    listen.referenced,
                    format!(
                        "invalid listen address {:?}: expected IP:PORT such as 0.0.0.0:10090",
                        listen.value
                    ),
                ),
            }
        }
        for (kind, limit) in &global.value.max_concurrency {
            if limit.value == 0 {
                self.error(
                    &main.file,
                    limit.referenced,
                    format!("max_concurrency for {kind} must be at least 1"),
                );
            } else {
                settings.max_concurrency.insert(*kind, limit.value);
            }
        }
        settings
    }

    fn templates(&mut self, files: &mut [Parsed]) -> Templates {
        let mut templates = HashMap::new();
        for parsed in files.iter_mut() {
            for (name, checks) in std::mem::take(&mut parsed.raw.templates) {
                if templates.contains_key(&name) {
                    self.error(
                        &parsed.file,
                        checks.referenced,
                        format!("template {name:?} is defined twice"),
                    );
                    continue;
                }
                let mut list = Vec::new();
                for check in checks.value {
                    if let CheckConfig::Template(inner) = &check.value {
                        self.error(
                            &parsed.file,
                            check.referenced,
                            format!(
                                "template {name:?} uses template {inner:?}: templates cannot nest"
                            ),
                        );
                        continue;
                    }
                    list.push((parsed.file.clone(), check));
                }
                templates.insert(name, list);
            }
        }
        templates
    }

    fn systems(&mut self, files: &mut [Parsed]) -> Vec<System> {
        let mut systems: Vec<System> = Vec::new();
        for parsed in files.iter_mut() {
            for system in std::mem::take(&mut parsed.raw.systems) {
                let id = system.value.id.value.trim().to_owned();
                if systems.iter().any(|s| s.id == id) {
                    self.error(
                        &parsed.file,
                        system.value.id.referenced,
                        format!("system {id:?} is defined twice"),
                    );
                    continue;
                }
                systems.push(System {
                    id,
                    name: system.value.name.nfc().collect(),
                    owner: system.value.owner,
                });
            }
        }
        systems
    }

    fn schema(&mut self, areas: &AreaTree, targets: &[Target], files: &[Parsed]) -> LabelSchema {
        let mut levels: Vec<String> = Vec::new();
        for (_, area) in areas.iter() {
            if let Some(level) = &area.level {
                if !levels.contains(level) {
                    levels.push(level.clone());
                }
            }
        }
        let target_labels: BTreeSet<String> = targets
            .iter()
            .flat_map(|t| t.labels.keys().cloned())
            .collect();
        for level in &levels {
            if target_labels.contains(level) {
                self.error(
                    &files[0].file,
                    Location::UNKNOWN,
                    format!("label {level:?} is both an area level and a target label; rename one"),
                );
            }
        }
        LabelSchema { levels }
    }
}
