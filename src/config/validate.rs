//! From parsed files to a [`Catalog`]: includes, templates, file_sd, and every check a config
//! must pass. Errors are collected, never returned early, so one run lists them all.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use unicode_normalization::UnicodeNormalization;

use super::raw::{FileSdGroup, RawArea, RawFile, RawTarget};
use super::{parse_yaml, ConfigError, ConfigErrors, FieldError, Location, PromDuration, Spanned};
use crate::catalog::{
    Area, AreaId, AreaTree, Catalog, Check, CheckKey, LabelSchema, Settings, System, Target,
    RESERVED_LABELS,
};
use crate::probe::{tcp, CheckConfig, Kind, Probe};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Loader {
    errors: Vec<ConfigError>,
    sources: Vec<PathBuf>,
    watch_dirs: BTreeSet<PathBuf>,
}

/// A parsed file and where it came from.
struct Parsed {
    file: Arc<Path>,
    raw: RawFile,
}

/// A target before validation, from a config file or a file_sd entry.
struct Draft {
    file: Arc<Path>,
    at: Location,
    id: String,
    name: Option<String>,
    area: Spanned<String>,
    address: Option<String>,
    system: Option<Spanned<String>>,
    checks: Vec<(Arc<Path>, Spanned<CheckConfig>)>,
    labels: BTreeMap<String, String>,
    depends_on: Vec<Spanned<String>>,
    interval: Option<Spanned<PromDuration>>,
    timeout: Option<Spanned<PromDuration>>,
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
        self.sources.push(path.to_owned());
        if let Some(dir) = path.parent() {
            self.watch_dirs.insert(dir.to_owned());
        }
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
        match glob::glob(&full.to_string_lossy()) {
            Ok(paths) => {
                let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                found.sort();
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

    pub(super) fn load(mut self, path: &Path) -> Result<Catalog, ConfigErrors> {
        let main_file: Arc<Path> = Arc::from(path);
        let Some(text) = self.read_file(path) else {
            return Err(ConfigErrors(self.errors));
        };
        let main = match parse_yaml::<RawFile>(&text, path) {
            Ok(raw) => raw,
            Err(e) => return Err(ConfigErrors(vec![e])),
        };
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let mut files = vec![Parsed {
            file: main_file.clone(),
            raw: main,
        }];
        let includes = std::mem::take(&mut files[0].raw.include);
        let mut seen: HashSet<PathBuf> = HashSet::from([path.to_owned()]);
        for pattern in &includes {
            for included in self.glob(&base, path, pattern) {
                if !seen.insert(included.clone()) {
                    continue;
                }
                let Some(text) = self.read_file(&included) else {
                    continue;
                };
                match parse_yaml::<RawFile>(&text, &included) {
                    Ok(raw) => {
                        let file: Arc<Path> = Arc::from(included.as_path());
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
                    Err(e) => self.errors.push(e),
                }
            }
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
        let targets = self.targets(
            drafts,
            &areas,
            &systems,
            &templates,
            &defaults.labels,
            default_interval,
            default_timeout,
        );
        let schema = self.schema(&areas, &targets, &files);

        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        let mut targets = targets;
        for target in &mut targets {
            let values = label_values(&schema, &areas, &systems, target);
            for check in &mut target.checks {
                let mut v = values.clone();
                v[1] = check.key.check.to_string();
                v[2] = check.kind.as_str().to_owned();
                check.label_values = Arc::from(v);
            }
        }
        Ok(Catalog::new(
            settings,
            areas,
            systems,
            targets,
            schema,
            self.sources,
            self.watch_dirs.into_iter().collect(),
        ))
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

    fn templates(
        &mut self,
        files: &mut [Parsed],
    ) -> HashMap<String, Vec<(Arc<Path>, Spanned<CheckConfig>)>> {
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

    fn areas(&mut self, files: &mut [Parsed]) -> AreaTree {
        let mut nodes: Vec<AreaNode> = Vec::new();
        let mut by_code: HashMap<String, AreaId> = HashMap::new();
        // Top-level areas that name a parent defined elsewhere, resolved once all are known.
        let mut attach: Vec<(AreaId, Arc<Path>, Spanned<String>)> = Vec::new();
        for parsed in files.iter_mut() {
            let file = parsed.file.clone();
            for area in std::mem::take(&mut parsed.raw.areas) {
                let at = area.referenced;
                if let Some(id) =
                    self.add_area(&file, area.value, at, None, &mut nodes, &mut by_code)
                {
                    if let Some(parent) = nodes[id].parent_code.take() {
                        attach.push((id, file.clone(), parent));
                    }
                }
            }
        }
        for (id, file, parent) in attach {
            match by_code.get(&parent.value) {
                Some(&p) => {
                    nodes[id].area.parent = Some(p);
                    nodes[p].area.children.push(id);
                }
                None => self.error(
                    &file,
                    parent.referenced,
                    format!("unknown parent area {:?}", parent.value),
                ),
            }
        }
        // `parent:` can only form a cycle through top-level areas; walk each chain once.
        for start in 0..nodes.len() {
            let mut steps = 0;
            let mut current = nodes[start].area.parent;
            while let Some(p) = current {
                steps += 1;
                if p == start || steps > nodes.len() {
                    let (file, at) = (nodes[start].file.clone(), nodes[start].at);
                    self.error(
                        &file,
                        at,
                        format!("area {:?} is its own ancestor", nodes[start].area.code),
                    );
                    nodes[start].area.parent = None;
                    break;
                }
                current = nodes[p].area.parent;
            }
        }
        AreaTree::from_nodes(nodes.into_iter().map(|n| n.area).collect())
    }

    fn add_area(
        &mut self,
        file: &Arc<Path>,
        raw: RawArea,
        at: Location,
        parent: Option<AreaId>,
        nodes: &mut Vec<AreaNode>,
        by_code: &mut HashMap<String, AreaId>,
    ) -> Option<AreaId> {
        let code = raw.code.value.trim().to_owned();
        if code.is_empty() {
            self.error(file, raw.code.referenced, "area code must not be empty");
            return None;
        }
        if by_code.contains_key(&code) {
            self.error(
                file,
                raw.code.referenced,
                format!("area code {code:?} is defined twice"),
            );
            return None;
        }
        if parent.is_some() {
            if let Some(p) = &raw.parent {
                self.error(
                    file,
                    p.referenced,
                    "`parent` is only for top-level areas; this one is nested already",
                );
            }
        }
        let level = raw.level.and_then(|level| {
            if let Err(e) = check_label_name(&level.value) {
                self.error(file, level.referenced, format!("area level {e}"));
                return None;
            }
            Some(level.value)
        });
        let geo = raw.geo.and_then(|g| {
            let (lat, lon) = (g.value.lat, g.value.lon);
            if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) {
                Some((lat, lon))
            } else {
                self.error(
                    file,
                    g.referenced,
                    format!("geo {lat},{lon}: expected lat in -90..90 and lon in -180..180"),
                );
                None
            }
        });
        let id = nodes.len();
        by_code.insert(code.clone(), id);
        nodes.push(AreaNode {
            file: file.clone(),
            at,
            parent_code: if parent.is_none() { raw.parent } else { None },
            area: Area {
                code,
                // Names compare equal only in one normal form; keep NFC (as GSO publishes them).
                name: raw.name.value.nfc().collect(),
                kind: raw.kind,
                level,
                parent,
                children: Vec::new(),
                geo,
                aliases: raw.aliases.iter().map(|a| a.nfc().collect()).collect(),
                former_units: raw.former_units.iter().map(|a| a.nfc().collect()).collect(),
            },
        });
        for child in raw.children {
            let child_at = child.referenced;
            if let Some(c) = self.add_area(file, child.value, child_at, Some(id), nodes, by_code) {
                nodes[id].area.children.push(c);
            }
        }
        Some(id)
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

    fn file_sd(
        &mut self,
        base: &Path,
        file: &Arc<Path>,
        block: Spanned<super::raw::RawFileSd>,
    ) -> Vec<Draft> {
        let block = block.value;
        let mut drafts = Vec::new();
        for pattern in &block.files {
            for sd_path in self.glob(base, file, pattern) {
                let Some(text) = self.read_file(&sd_path) else {
                    continue;
                };
                let is_json = sd_path.extension().is_some_and(|e| e == "json");
                let groups: Vec<FileSdGroup> = if is_json {
                    match serde_json::from_str(&text) {
                        Ok(groups) => groups,
                        Err(e) => {
                            self.errors.push(ConfigError {
                                file: sd_path.clone(),
                                line: e.line() as u64,
                                column: e.column() as u64,
                                message: strip_json_position(&e.to_string()),
                            });
                            continue;
                        }
                    }
                } else {
                    match parse_yaml(&text, &sd_path) {
                        Ok(groups) => groups,
                        Err(e) => {
                            self.errors.push(e);
                            continue;
                        }
                    }
                };
                let sd_file: Arc<Path> = Arc::from(sd_path.as_path());
                for group in groups {
                    let mut labels: BTreeMap<String, String> = group
                        .labels
                        .into_iter()
                        .filter(|(k, _)| !k.starts_with("__"))
                        .collect();
                    let area = match labels.remove("area") {
                        Some(code) => Spanned {
                            value: code,
                            referenced: Location::UNKNOWN,
                            defined: Location::UNKNOWN,
                        },
                        None => block.area.clone(),
                    };
                    for entry in group.targets {
                        drafts.push(Draft {
                            file: sd_file.clone(),
                            at: Location::UNKNOWN,
                            address: Some(host_of(&entry).to_owned()),
                            id: entry,
                            name: None,
                            area: area.clone(),
                            system: block.system.clone(),
                            checks: block
                                .checks
                                .iter()
                                .map(|c| (file.clone(), c.clone()))
                                .collect(),
                            labels: labels.clone(),
                            depends_on: block.depends_on.clone(),
                            interval: block.interval.clone(),
                            timeout: block.timeout.clone(),
                        });
                    }
                }
            }
        }
        drafts
    }

    #[allow(clippy::too_many_arguments)]
    fn targets(
        &mut self,
        drafts: Vec<Draft>,
        areas: &AreaTree,
        systems: &[System],
        templates: &HashMap<String, Vec<(Arc<Path>, Spanned<CheckConfig>)>>,
        default_labels: &BTreeMap<String, String>,
        default_interval: Duration,
        default_timeout: Option<Duration>,
    ) -> Vec<Target> {
        let mut ids: HashMap<String, (Arc<Path>, Location)> = HashMap::new();
        for d in &drafts {
            if let Some((file, at)) = ids.get(&d.id) {
                let first = format!("{}:{}", file.display(), at.line());
                self.error(
                    &d.file,
                    d.at,
                    format!("target id {:?} is already used at {first}", d.id),
                );
            } else {
                ids.insert(d.id.clone(), (d.file.clone(), d.at));
            }
        }
        let mut targets = Vec::new();
        for d in drafts {
            if let Some(t) = self.target(
                d,
                areas,
                systems,
                templates,
                default_labels,
                default_interval,
                default_timeout,
                &ids,
            ) {
                targets.push(t);
            }
        }
        self.dependency_cycles(&targets, &ids);
        targets
    }

    #[allow(clippy::too_many_arguments)]
    fn target(
        &mut self,
        d: Draft,
        areas: &AreaTree,
        systems: &[System],
        templates: &HashMap<String, Vec<(Arc<Path>, Spanned<CheckConfig>)>>,
        default_labels: &BTreeMap<String, String>,
        default_interval: Duration,
        default_timeout: Option<Duration>,
        ids: &HashMap<String, (Arc<Path>, Location)>,
    ) -> Option<Target> {
        let errors_before = self.errors.len();
        let file = d.file.clone();
        if d.id.is_empty() || d.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.error(
                &file,
                d.at,
                format!(
                    "target id {:?}: expected a non-empty name without spaces",
                    d.id
                ),
            );
        }
        let area = areas.find(d.area.value.trim());
        if area.is_none() {
            let at = if d.area.referenced == Location::UNKNOWN {
                d.at
            } else {
                d.area.referenced
            };
            self.error(
                &file,
                at,
                format!("target {:?}: unknown area {:?}", d.id, d.area.value),
            );
        }
        let system = d.system.as_ref().and_then(|s| {
            let found = systems.iter().position(|sys| sys.id == s.value);
            if found.is_none() {
                self.error(
                    &file,
                    s.referenced,
                    format!("target {:?}: unknown system {:?}", d.id, s.value),
                );
            }
            found
        });
        let mut labels = default_labels.clone();
        for (name, value) in d.labels {
            if let Err(e) = check_label_name(&name) {
                self.error(&file, d.at, format!("target {:?}: label {e}", d.id));
            }
            labels.insert(name, value);
        }
        let mut depends_on = Vec::new();
        for dep in &d.depends_on {
            if dep.value == d.id {
                self.error(
                    &file,
                    dep.referenced,
                    format!("target {:?} depends on itself", d.id),
                );
            } else if !ids.contains_key(&dep.value) {
                self.error(
                    &file,
                    dep.referenced,
                    format!(
                        "target {:?}: depends_on names unknown target {:?}",
                        d.id, dep.value
                    ),
                );
            } else {
                depends_on.push(Arc::<str>::from(dep.value.as_str()));
            }
        }
        let interval = d
            .interval
            .as_ref()
            .map(|i| i.value.0)
            .unwrap_or(default_interval);
        let timeout = d
            .timeout
            .as_ref()
            .map(|t| t.value.0)
            .or(default_timeout)
            .unwrap_or_else(|| DEFAULT_TIMEOUT.min(interval.mul_f64(0.8)));
        let timing_at = d
            .timeout
            .as_ref()
            .or(d.interval.as_ref())
            .map(|s| s.referenced)
            .unwrap_or(d.at);
        if interval.is_zero() {
            self.error(
                &file,
                timing_at,
                format!("target {:?}: interval must be longer than 0s", d.id),
            );
        } else if timeout >= interval {
            self.error(
                &file,
                timing_at,
                format!(
                    "target {:?}: timeout {} must be shorter than interval {}",
                    d.id,
                    super::format_duration(timeout),
                    super::format_duration(interval)
                ),
            );
        } else if timeout.is_zero() {
            self.error(
                &file,
                timing_at,
                format!("target {:?}: timeout must be longer than 0s", d.id),
            );
        }

        let id: Arc<str> = Arc::from(d.id.as_str());
        let mut checks: Vec<Check> = Vec::new();
        let mut expanded = Vec::new();
        for (check_file, check) in d.checks {
            match &check.value {
                CheckConfig::Template(name) => match templates.get(name) {
                    Some(list) => expanded.extend(list.iter().cloned()),
                    None => self.error(
                        &check_file,
                        check.referenced,
                        format!("target {:?}: unknown template {name:?}", d.id),
                    ),
                },
                _ => expanded.push((check_file, check)),
            }
        }
        if expanded.is_empty() {
            self.error(&file, d.at, format!("target {:?} has no checks", d.id));
        }
        for (check_file, check) in expanded {
            let name = check_name(&check.value);
            if checks.iter().any(|c| *c.key.check == *name) {
                self.error(
                    &check_file,
                    check.referenced,
                    format!(
                        "target {:?} has two checks named {name:?}: give one a `name:`",
                        d.id
                    ),
                );
                continue;
            }
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                self.error(
                    &check_file,
                    check.referenced,
                    format!("check name {name:?}: expected a non-empty name without spaces"),
                );
            }
            let probe = match Probe::build(&check.value, d.address.as_deref()) {
                Ok(probe) => probe,
                Err(errors) => {
                    self.field_errors(&check_file, check.referenced, errors);
                    continue;
                }
            };
            if let Probe::Icmp(icmp) = &probe {
                if icmp.min_round_time() >= timeout {
                    self.error(
                        &check_file,
                        check.referenced,
                        format!(
                            "target {:?}: {} icmp echoes take at least {}, more than the timeout {}",
                            d.id,
                            name,
                            super::format_duration(icmp.min_round_time()),
                            super::format_duration(timeout)
                        ),
                    );
                }
            }
            let mut hasher = DefaultHasher::new();
            format!("{probe:?}").hash(&mut hasher);
            interval.hash(&mut hasher);
            timeout.hash(&mut hasher);
            checks.push(Check {
                key: CheckKey {
                    target: id.clone(),
                    check: Arc::from(name.as_str()),
                },
                kind: probe.kind(),
                probe: Arc::new(probe),
                interval,
                timeout,
                fingerprint: hasher.finish(),
                label_values: Arc::from(Vec::new()),
            });
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Target {
            id,
            name: d.name,
            area: area?,
            address: d.address,
            system,
            labels,
            depends_on,
            checks,
        })
    }

    /// Reports each dependency cycle once, at the target that closes it.
    fn dependency_cycles(
        &mut self,
        targets: &[Target],
        ids: &HashMap<String, (Arc<Path>, Location)>,
    ) {
        let index: HashMap<&str, usize> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (&*t.id, i))
            .collect();
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let mut marks = vec![Mark::New; targets.len()];
        for start in 0..targets.len() {
            if marks[start] != Mark::New {
                continue;
            }
            // Iterative DFS: (node, next dependency to visit).
            let mut stack = vec![(start, 0usize)];
            marks[start] = Mark::Active;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                let deps = &targets[node].depends_on;
                if *next < deps.len() {
                    let dep = &deps[*next];
                    *next += 1;
                    let Some(&d) = index.get(&**dep) else {
                        continue;
                    };
                    match marks[d] {
                        Mark::New => {
                            marks[d] = Mark::Active;
                            stack.push((d, 0));
                        }
                        Mark::Active => {
                            let cycle_from = stack.iter().position(|&(n, _)| n == d).unwrap_or(0);
                            let mut names: Vec<&str> = stack[cycle_from..]
                                .iter()
                                .map(|&(n, _)| &*targets[n].id)
                                .collect();
                            names.push(&targets[d].id);
                            let (file, at) = ids
                                .get(&*targets[node].id)
                                .cloned()
                                .unwrap_or((Arc::from(Path::new("")), Location::UNKNOWN));
                            let message = format!("dependency cycle: {}", names.join(" → "));
                            self.error(&file, at, message);
                        }
                        Mark::Done => {}
                    }
                } else {
                    marks[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
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
        LabelSchema {
            levels,
            target_labels: target_labels.into_iter().collect(),
        }
    }
}

/// An area while the tree is being built: where it was written and its pending `parent:`.
struct AreaNode {
    file: Arc<Path>,
    at: Location,
    parent_code: Option<Spanned<String>>,
    area: Area,
}

fn draft_from_raw(file: &Arc<Path>, target: Spanned<RawTarget>) -> Draft {
    let at = target.referenced;
    let t = target.value;
    Draft {
        file: file.clone(),
        at: t.id.referenced.max_or(at),
        id: t.id.value.trim().to_owned(),
        name: t.name,
        area: t.area,
        address: t.address.map(|a| a.value.trim().to_owned()),
        system: t.system,
        checks: t.checks.into_iter().map(|c| (file.clone(), c)).collect(),
        labels: t.labels,
        depends_on: t.depends_on,
        interval: t.interval,
        timeout: t.timeout,
    }
}

trait LocationExt {
    fn max_or(self, other: Location) -> Location;
}

impl LocationExt for Location {
    /// This location if known, else `other`.
    fn max_or(self, other: Location) -> Location {
        if self == Location::UNKNOWN {
            other
        } else {
            self
        }
    }
}

/// The default name of a check: its kind, or `tcp_<port>` since a target often has several.
fn check_name(config: &CheckConfig) -> String {
    match config {
        CheckConfig::Icmp(c) => c.name.clone().unwrap_or_else(|| Kind::Icmp.to_string()),
        CheckConfig::Tcp(c) => c.name.clone().unwrap_or_else(|| tcp::default_name(c)),
        CheckConfig::Http(c) => c.name.clone().unwrap_or_else(|| Kind::Http.to_string()),
        CheckConfig::Template(name) => name.clone(),
    }
}

/// Prometheus label names: `[a-zA-Z_][a-zA-Z0-9_]*`, not `__`-prefixed, not one of ours.
fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid || name.starts_with("__") {
        return Err(format!(
            "{name:?}: expected a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, no leading __)"
        ));
    }
    if RESERVED_LABELS.contains(&name) {
        return Err(format!(
            "{name:?} is set by iocwatch itself; choose another name"
        ));
    }
    Ok(())
}

/// `host:port` → `host`, `[::1]:80` → `::1`, a bare host unchanged.
fn host_of(entry: &str) -> &str {
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => entry,
    }
}

fn strip_json_position(message: &str) -> String {
    message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned()
}

fn label_values(
    schema: &LabelSchema,
    areas: &AreaTree,
    systems: &[System],
    target: &Target,
) -> Vec<String> {
    let mut values = vec![
        target.id.to_string(),
        String::new(), // check, filled per check
        String::new(), // kind, filled per check
        areas.get(target.area).code.clone(),
        areas.path(target.area),
        target
            .system
            .map(|s| systems[s].id.clone())
            .unwrap_or_default(),
    ];
    for level in &schema.levels {
        let code = areas
            .ancestors(target.area)
            .map(|a| areas.get(a))
            .find(|a| a.level.as_deref() == Some(level))
            .map(|a| a.code.clone())
            .unwrap_or_default();
        values.push(code);
    }
    for name in &schema.target_labels {
        values.push(target.labels.get(name).cloned().unwrap_or_default());
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_file_sd_entries() {
        assert_eq!(host_of("127.0.0.1:9100"), "127.0.0.1");
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("gw.lc.local"), "gw.lc.local");
    }

    #[test]
    fn label_names() {
        assert!(check_label_name("owner").is_ok());
        assert!(check_label_name("link_type").is_ok());
        assert!(check_label_name("1abc").is_err());
        assert!(check_label_name("__x").is_err());
        assert!(check_label_name("target").is_err());
        assert!(check_label_name("a-b").is_err());
    }
}
