//! Targets from config files and file_sd entries: ids, areas, systems, labels, timing,
//! dependencies (no cycles) and their checks, templates expanded.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::names::{check_address, check_label_name, host_of, unlocated, LocationExt};
use super::Loader;
use crate::config::raw::{FileSdGroup, RawFileSd, RawTarget};
use crate::config::{parse_yaml, ConfigError, Location, PromDuration, Spanned};

use crate::catalog::{AreaTree, Check, CheckKey, LabelSchema, System, Target};
use crate::probe::{tcp, CheckConfig, Kind, Probe};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A target before validation, from a config file or a file_sd entry.
/// A check and the file it was written in (a template's checks keep their own file).
pub(super) type SourcedCheck = (Arc<Path>, Spanned<CheckConfig>);
pub(super) type Templates = HashMap<String, Vec<SourcedCheck>>;

/// What every target is validated against.
pub(super) struct Scope<'a> {
    pub areas: &'a AreaTree,
    pub systems: &'a [System],
    pub templates: &'a Templates,
    pub default_labels: &'a BTreeMap<String, String>,
    pub default_interval: Duration,
    pub default_timeout: Option<Duration>,
}

pub(super) struct Draft {
    file: Arc<Path>,
    at: Location,
    id: String,
    name: Option<String>,
    area: Spanned<String>,
    address: Option<Spanned<String>>,
    system: Option<Spanned<String>>,
    checks: Vec<SourcedCheck>,
    labels: BTreeMap<String, String>,
    depends_on: Vec<Spanned<String>>,
    interval: Option<Spanned<PromDuration>>,
    timeout: Option<Spanned<PromDuration>>,
}

impl Loader {
    pub(super) fn file_sd(
        &mut self,
        base: &Path,
        file: &Arc<Path>,
        block: Spanned<RawFileSd>,
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
                            address: Some(unlocated(host_of(&entry).to_owned())),
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

    pub(super) fn targets(&mut self, drafts: Vec<Draft>, scope: &Scope) -> Vec<Target> {
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
            if let Some(t) = self.target(d, scope, &ids) {
                targets.push(t);
            }
        }
        self.dependency_cycles(&targets, &ids);
        targets
    }

    fn target(
        &mut self,
        d: Draft,
        scope: &Scope,
        ids: &HashMap<String, (Arc<Path>, Location)>,
    ) -> Option<Target> {
        let Scope {
            areas,
            systems,
            templates,
            default_labels,
            default_interval,
            default_timeout,
        } = *scope;
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
                format!("target {:?}: {}", d.id, areas.unknown(&d.area.value)),
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
        if let Some(address) = &d.address {
            if let Err(e) = check_address(&address.value) {
                let at = address.referenced.max_or(d.at);
                self.error(&file, at, format!("target {:?}: {e}", d.id));
            }
        }
        let address = d.address.map(|a| a.value);
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
                    crate::config::format_duration(timeout),
                    crate::config::format_duration(interval)
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
        let mut expanded = Vec::new();
        if d.checks.is_empty() {
            self.error(&file, d.at, format!("target {:?} has no checks", d.id));
        }
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
        // Sized once: a hundred thousand targets would otherwise each keep room for four.
        let mut checks: Vec<Check> = Vec::with_capacity(expanded.len());
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
            let probe = match Probe::build(&check.value, address.as_deref()) {
                Ok(probe) => probe,
                Err(errors) => {
                    self.field_errors(&check_file, check.referenced, errors);
                    continue;
                }
            };
            if probe.min_round_time() >= timeout {
                self.error(
                    &check_file,
                    check.referenced,
                    format!(
                        "target {:?}: check {name:?} takes at least {} per round (its spacing), not less than the timeout {}",
                        d.id,
                        crate::config::format_duration(probe.min_round_time()),
                        crate::config::format_duration(timeout)
                    ),
                );
            }
            if let Some(own) = check.value.alerts() {
                let mut errors = crate::model::condition::check_keys(probe.kind(), own);
                errors.extend(crate::model::condition::validate(own));
                if !errors.is_empty() {
                    self.field_errors(&check_file, check.referenced, errors);
                    continue;
                }
                self.own_alerts.insert(
                    CheckKey {
                        target: id.clone(),
                        check: Arc::from(name.as_str()),
                    },
                    (check_file.clone(), own.clone()),
                );
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
                alerts: Arc::default(),
            });
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Target {
            id,
            name: d.name,
            area: area?,
            address,
            system,
            labels,
            depends_on,
            owned: true,
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
}

pub(super) fn draft_from_raw(file: &Arc<Path>, target: Spanned<RawTarget>) -> Draft {
    let at = target.referenced;
    let t = target.value;
    Draft {
        file: file.clone(),
        at: t.id.referenced.max_or(at),
        id: t.id.value.trim().to_owned(),
        name: t.name,
        area: t.area,
        address: t.address.map(|a| Spanned {
            value: a.value.trim().to_owned(),
            ..a
        }),
        system: t.system,
        checks: t.checks.into_iter().map(|c| (file.clone(), c)).collect(),
        labels: t.labels,
        depends_on: t.depends_on,
        interval: t.interval,
        timeout: t.timeout,
    }
}

/// The default name of a check: its kind, or `tcp_<port>` since a target often has several.
fn check_name(config: &CheckConfig) -> String {
    match config {
        CheckConfig::Icmp(c) => c.name.clone().unwrap_or_else(|| Kind::Icmp.to_string()),
        CheckConfig::Tcp(c) => c.name.clone().unwrap_or_else(|| tcp::default_name(c)),
        CheckConfig::Http(c) => c.name.clone().unwrap_or_else(|| Kind::Http.to_string()),
        CheckConfig::Dns(c) => c.name.clone().unwrap_or_else(|| Kind::Dns.to_string()),
        CheckConfig::Ports(c) => c.name.clone().unwrap_or_else(|| Kind::Ports.to_string()),
        CheckConfig::Tls(c) => c.name.clone().unwrap_or_else(|| Kind::Tls.to_string()),
        CheckConfig::Template(name) => name.clone(),
    }
}

fn strip_json_position(message: &str) -> String {
    message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned()
}

pub(super) fn label_values(
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
    values
}
