//! `alerting:`: settings and notifiers (main file), rules and maintenance windows (any
//! file), and the conditions of every check resolved from built-ins, rules and its own
//! `alerts:`. Every name a rule or window refers to must exist.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use super::{Loader, Parsed};
use crate::catalog::maintenance::{parse_cron, parse_time, When, Window};
use crate::catalog::{Alerting, AreaTree, CheckAlerts, CheckKey, NotifierRoute, System, Target};
use crate::config::raw::{MaintenanceConfig, RawAlertRule, RawAlerting};
use crate::config::Spanned;
use crate::model::condition::{self, resolve};
use crate::model::AlertsConfig;

/// A check's own `alerts:`, kept from target validation until the rules are known.
pub(super) type OwnAlerts = HashMap<CheckKey, (Arc<Path>, AlertsConfig)>;

struct Rule {
    targets: HashSet<String>,
    areas: Vec<usize>,
    systems: Vec<usize>,
    kinds: Vec<crate::probe::Kind>,
    alerts: AlertsConfig,
}

impl Rule {
    fn matches(&self, target: &Target, kind: crate::probe::Kind, areas: &AreaTree) -> bool {
        (self.targets.is_empty() || self.targets.contains(&*target.id))
            && (self.areas.is_empty()
                || areas
                    .ancestors(target.area)
                    .any(|a| self.areas.contains(&a)))
            && (self.systems.is_empty() || target.system.is_some_and(|s| self.systems.contains(&s)))
            && (self.kinds.is_empty() || self.kinds.contains(&kind))
    }
}

impl Loader {
    pub(super) fn alerting(
        &mut self,
        files: &mut [Parsed],
        areas: &AreaTree,
        systems: &[System],
        targets: &mut [Target],
        own: OwnAlerts,
    ) -> Arc<Alerting> {
        let mut alerting = Alerting::default();
        let ids: HashSet<&str> = targets.iter().map(|t| &*t.id).collect();
        let mut rules = Vec::new();
        let mut windows = Vec::new();
        let mut notifier_names = HashSet::new();
        for (i, parsed) in files.iter_mut().enumerate() {
            let Some(raw) = parsed.raw.alerting.take() else {
                continue;
            };
            let file = parsed.file.clone();
            let RawAlerting {
                language,
                strip_diacritics,
                external_url,
                history,
                report_history,
                time_zone,
                notifiers,
                rules: raw_rules,
                maintenance,
            } = raw.value;
            if i > 0 {
                let main_only = [
                    language.as_ref().map(|s| s.referenced),
                    strip_diacritics.as_ref().map(|s| s.referenced),
                    external_url.as_ref().map(|s| s.referenced),
                    history.as_ref().map(|s| s.referenced),
                    report_history.as_ref().map(|s| s.referenced),
                    time_zone.as_ref().map(|s| s.referenced),
                    notifiers.first().map(|s| s.referenced),
                ];
                if let Some(at) = main_only.into_iter().flatten().next() {
                    self.error(
                        &file,
                        at,
                        "only `rules` and `maintenance` of `alerting` may be in an included file",
                    );
                }
            } else {
                if let Some(l) = language {
                    alerting.language = l.value;
                }
                if let Some(s) = strip_diacritics {
                    alerting.strip_diacritics = s.value;
                }
                if let Some(url) = external_url {
                    match reqwest::Url::parse(&url.value) {
                        Ok(_) => alerting.external_url = Some(url.value),
                        Err(e) => self.error(
                            &file,
                            url.referenced,
                            format!("external_url {:?}: {e}", url.value),
                        ),
                    }
                }
                if let Some(h) = history {
                    alerting.history = h.value.0;
                }
                if let Some(h) = report_history {
                    alerting.report_history = h.value.0;
                }
                if let Some(zone) = time_zone {
                    match chrono_tz::Tz::from_str(&zone.value) {
                        Ok(tz) => alerting.time_zone = tz,
                        Err(_) => self.error(
                            &file,
                            zone.referenced,
                            format!(
                                "unknown time zone {:?}: expected an IANA name such as Asia/Ho_Chi_Minh",
                                zone.value
                            ),
                        ),
                    }
                }
                for notifier in notifiers {
                    let at = notifier.referenced;
                    let name = notifier.value.name.value.clone();
                    if !notifier_names.insert(name.clone()) {
                        self.error(&file, at, format!("notifier {name:?} is defined twice"));
                        continue;
                    }
                    match notifier
                        .value
                        .build(alerting.language, alerting.strip_diacritics)
                    {
                        Ok(spec) => {
                            alerting.notifiers.push(NotifierRoute {
                                name: Arc::clone(&spec.name),
                                outbox: spec.kind.uses_outbox(),
                                max_queue: spec.max_queue,
                            });
                            self.notifiers.push(spec);
                        }
                        Err(message) => {
                            self.error(&file, at, format!("notifier {name:?}: {message}"))
                        }
                    }
                }
            }
            for rule in raw_rules {
                if let Some(names) = &rule.value.alerts.value.notify {
                    self.known_notifiers(&file, names, &notifier_names);
                }
                if let Some(rule) = self.rule(&file, rule, areas, systems, &ids) {
                    rules.push(rule);
                }
            }
            windows.extend(maintenance.into_iter().map(|m| (file.clone(), m)));
        }
        for (file, window) in windows {
            if let Some(w) = self.window(&file, window, areas, systems, &ids, alerting.time_zone) {
                alerting.maintenance.push(w);
            }
        }
        for (file, own_alerts) in own.values() {
            if let Some(names) = &own_alerts.notify {
                self.known_notifiers(file, names, &notifier_names);
            }
        }
        // Most checks share their conditions (same kind, same matching rules, nothing of
        // their own): resolved once and shared, which keeps a 40,000-check load fast and small.
        let mut shared: HashMap<(crate::probe::Kind, Vec<usize>), Arc<CheckAlerts>> =
            HashMap::new();
        for target in targets.iter_mut() {
            let resolved: Vec<Arc<CheckAlerts>> = target
                .checks
                .iter()
                .map(|check| {
                    let matching: Vec<usize> = rules
                        .iter()
                        .enumerate()
                        .filter(|(_, (_, r))| r.matches(target, check.kind, areas))
                        .map(|(i, _)| i)
                        .collect();
                    let own_alerts = own.get(&check.key).map(|(_, a)| a);
                    let combine = |matching: &[usize]| {
                        let mut layers: Vec<&AlertsConfig> =
                            matching.iter().map(|&i| &rules[i].1.alerts).collect();
                        layers.extend(own_alerts);
                        check_alerts(check.kind, &layers)
                    };
                    if own_alerts.is_some() {
                        return combine(&matching);
                    }
                    Arc::clone(
                        shared
                            .entry((check.kind, matching))
                            .or_insert_with_key(|(_, matching)| combine(matching)),
                    )
                })
                .collect();
            for (check, alerts) in target.checks.iter_mut().zip(resolved) {
                check.alerts = alerts;
            }
        }
        Arc::new(alerting)
    }

    fn known_notifiers(&mut self, file: &Path, names: &[Spanned<String>], known: &HashSet<String>) {
        for n in names {
            if !known.contains(&n.value) {
                self.error(
                    file,
                    n.referenced,
                    format!("unknown notifier {:?}", n.value),
                );
            }
        }
    }

    fn rule(
        &mut self,
        file: &Arc<Path>,
        rule: Spanned<RawAlertRule>,
        areas: &AreaTree,
        systems: &[System],
        ids: &HashSet<&str>,
    ) -> Option<(Arc<Path>, Rule)> {
        let before = self.errors.len();
        let RawAlertRule {
            targets,
            areas: area_codes,
            systems: system_ids,
            kinds,
            alerts,
        } = rule.value;
        let (targets, area_ids, system_idx) = self.scope(
            file,
            &targets,
            &area_codes,
            &system_ids,
            areas,
            systems,
            ids,
        );
        let errors = condition::validate(&alerts.value);
        self.field_errors(file, alerts.referenced, errors);
        (self.errors.len() == before).then(|| {
            (
                file.clone(),
                Rule {
                    targets,
                    areas: area_ids,
                    systems: system_idx,
                    kinds,
                    alerts: alerts.value,
                },
            )
        })
    }

    /// Resolves target ids, area codes and system ids of a rule or window; unknown ones are
    /// errors at their position.
    #[allow(clippy::too_many_arguments)]
    fn scope(
        &mut self,
        file: &Path,
        targets: &[Spanned<String>],
        area_codes: &[Spanned<String>],
        system_ids: &[Spanned<String>],
        areas: &AreaTree,
        systems: &[System],
        ids: &HashSet<&str>,
    ) -> (HashSet<String>, Vec<usize>, Vec<usize>) {
        let mut target_set = HashSet::new();
        for t in targets {
            if ids.contains(t.value.as_str()) {
                target_set.insert(t.value.clone());
            } else {
                self.error(file, t.referenced, format!("unknown target {:?}", t.value));
            }
        }
        let mut area_ids = Vec::new();
        for a in area_codes {
            match areas.find(a.value.trim()) {
                Some(id) => area_ids.push(id),
                None => self.error(file, a.referenced, areas.unknown(&a.value)),
            }
        }
        let mut system_idx = Vec::new();
        for s in system_ids {
            match systems.iter().position(|sys| sys.id == s.value) {
                Some(i) => system_idx.push(i),
                None => self.error(file, s.referenced, format!("unknown system {:?}", s.value)),
            }
        }
        (target_set, area_ids, system_idx)
    }

    fn window(
        &mut self,
        file: &Arc<Path>,
        window: Spanned<MaintenanceConfig>,
        areas: &AreaTree,
        systems: &[System],
        ids: &HashSet<&str>,
        zone: chrono_tz::Tz,
    ) -> Option<Window> {
        let at = window.referenced;
        let w = window.value;
        let before = self.errors.len();
        let (targets, area_ids, system_idx) =
            self.scope(file, &w.targets, &w.areas, &w.systems, areas, systems, ids);
        let name = w.name.value.clone();
        if w.targets.is_empty() && w.areas.is_empty() && w.systems.is_empty() {
            self.error(
                file,
                at,
                format!("maintenance {name:?} needs `targets`, `areas` or `systems`"),
            );
        }
        let time = |loader: &mut Loader, t: &Spanned<String>| match parse_time(&t.value, zone) {
            Ok(time) => Some(time),
            Err(message) => {
                loader.error(file, t.referenced, message);
                None
            }
        };
        let when = match (&w.start, &w.end, &w.cron, w.duration) {
            (Some(start), Some(end), None, None) => match (time(self, start), time(self, end)) {
                (Some(s), Some(e)) if s < e => Some(When::Once { start: s, end: e }),
                (Some(_), Some(_)) => {
                    self.error(
                        file,
                        end.referenced,
                        format!("maintenance {name:?} ends before it starts"),
                    );
                    None
                }
                _ => None,
            },
            (None, None, Some(cron), Some(duration)) => match parse_cron(&cron.value) {
                Ok(c) if !duration.0.is_zero() => Some(When::Every {
                    cron: Box::new(c),
                    duration: duration.0,
                }),
                Ok(_) => {
                    self.error(
                        file,
                        at,
                        format!("maintenance {name:?}: duration must be longer than 0s"),
                    );
                    None
                }
                Err(message) => {
                    self.error(file, cron.referenced, message);
                    None
                }
            },
            _ => {
                self.error(
                    file,
                    at,
                    format!("maintenance {name:?} needs either `start` and `end`, or `cron` and `duration`"),
                );
                None
            }
        };
        if self.errors.len() > before {
            return None;
        }
        Some(Window {
            name: Arc::from(name.as_str()),
            targets: targets.into_iter().map(|t| Arc::from(t.as_str())).collect(),
            areas: area_ids,
            systems: system_idx,
            when: when?,
            time_zone: zone,
        })
    }
}

/// Combines layers, lowest first. Each layer was validated on its own, with its position;
/// here only the combination is made.
fn check_alerts(kind: crate::probe::Kind, layers: &[&AlertsConfig]) -> Arc<CheckAlerts> {
    let conditions = resolve(kind, layers).unwrap_or_default();
    let notify = layers
        .iter()
        .rev()
        .find_map(|l| l.notify.as_ref())
        .map(|names| {
            names
                .iter()
                .map(|n| Arc::<str>::from(n.value.as_str()))
                .collect()
        });
    Arc::new(CheckAlerts { conditions, notify })
}
