//! The config file as written: serde types only, every struct `deny_unknown_fields`.
//! Nothing outside `config/` sees these; [`super::load`] turns them into a [`crate::catalog::Catalog`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::PromDuration;
use crate::model::{AlertsConfig, Language};
use crate::notify::NotifierConfig;
use crate::probe::{CheckConfig, Kind};

/// One file: the main file or an included one (which may not hold `global` or `include`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    /// Who keeps this file (an included file of one department or locality): its targets
    /// carry it as their `owner` label unless they name one.
    #[serde(default)]
    pub owner: Option<Spanned<String>>,
    /// How to reach that owner (shown by `check-config`).
    #[serde(default)]
    pub contact: Option<Spanned<String>>,
    #[serde(default)]
    pub global: Option<Spanned<RawGlobal>>,
    /// Globs, relative to the main file, of further files to read (`conf.d/*.yaml`).
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    #[serde(default)]
    pub defaults: Option<Spanned<RawDefaults>>,
    /// Named lists of checks, used from a target as `- template: NAME`.
    #[serde(default)]
    pub templates: BTreeMap<String, Spanned<Vec<Spanned<CheckConfig>>>>,
    #[serde(default)]
    pub areas: Vec<Spanned<RawArea>>,
    #[serde(default)]
    pub systems: Vec<Spanned<RawSystem>>,
    #[serde(default)]
    pub targets: Vec<Spanned<RawTarget>>,
    /// Prometheus `file_sd` target files, each entry turned into targets with the given checks.
    #[serde(default)]
    pub file_sd: Vec<Spanned<RawFileSd>>,
    /// Notifiers and settings (main file only), alert rules and maintenance windows.
    #[serde(default)]
    pub alerting: Option<Spanned<RawAlerting>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerting {
    /// `vi` (default) or `en`.
    #[serde(default)]
    pub language: Option<Spanned<Language>>,
    #[serde(default)]
    pub strip_diacritics: Option<Spanned<bool>>,
    /// Base URL of the status page as on-call engineers reach it, for links in messages.
    #[serde(default)]
    pub external_url: Option<Spanned<String>>,
    /// How long incident history is kept (default 90d).
    #[serde(default)]
    pub history: Option<Spanned<PromDuration>>,
    /// How long hourly aggregates for availability reports are kept (default 395d, 13
    /// months: a year compared with the same quarter last year).
    #[serde(default)]
    pub report_history: Option<Spanned<PromDuration>>,
    /// IANA zone of maintenance windows (default Asia/Ho_Chi_Minh).
    #[serde(default)]
    pub time_zone: Option<Spanned<String>>,
    #[serde(default)]
    pub notifiers: Vec<Spanned<NotifierConfig>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RawAlertRule>>,
    #[serde(default)]
    pub maintenance: Vec<Spanned<MaintenanceConfig>>,
}

/// Alert conditions for the checks it matches: all given selectors must match (an empty
/// one matches everything). Later rules override earlier ones; a check's own `alerts:`
/// overrides them all.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertRule {
    #[serde(default)]
    pub targets: Vec<Spanned<String>>,
    /// Areas, with everything below them.
    #[serde(default)]
    pub areas: Vec<Spanned<String>>,
    #[serde(default)]
    pub systems: Vec<Spanned<String>>,
    #[serde(default)]
    pub kinds: Vec<Kind>,
    pub alerts: Spanned<AlertsConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    /// Addresses the HTTP server listens on; `--web.listen-address` overrides them.
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
    /// The most probes of one kind running at once.
    #[serde(default)]
    pub max_concurrency: BTreeMap<Kind, Spanned<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    #[serde(default)]
    pub interval: Option<Spanned<PromDuration>>,
    #[serde(default)]
    pub timeout: Option<Spanned<PromDuration>>,
    /// Labels every target gets unless it sets them itself.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArea {
    /// The official code (GSO code for communes, `15` for Lào Cai); the key everywhere.
    pub code: Spanned<String>,
    /// Display name, with diacritics.
    pub name: Spanned<String>,
    /// `tinh`, `xa`, `phuong`, `dac_khu`, `group`, …: data, not a level.
    #[serde(default)]
    pub kind: Option<String>,
    /// If set, targets below get a label of this name with this area's code (`district`).
    #[serde(default)]
    pub level: Option<Spanned<String>>,
    /// Attaches a top-level area of this file below an area defined elsewhere.
    #[serde(default)]
    pub parent: Option<Spanned<String>>,
    #[serde(default)]
    pub geo: Option<Spanned<RawGeo>>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Units merged into this one (history, for readable old reports).
    #[serde(default)]
    pub former_units: Vec<String>,
    #[serde(default)]
    pub children: Vec<Spanned<RawArea>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeo {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSystem {
    pub id: Spanned<String>,
    pub name: String,
    #[serde(default)]
    pub owner: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub id: Spanned<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub area: Spanned<String>,
    /// Host name or IP address for ICMP and TCP checks.
    #[serde(default)]
    pub address: Option<Spanned<String>>,
    /// The shared system this endpoint belongs to.
    #[serde(default)]
    pub system: Option<Spanned<String>>,
    #[serde(default)]
    pub checks: Vec<Spanned<CheckConfig>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    pub interval: Option<Spanned<PromDuration>>,
    #[serde(default)]
    pub timeout: Option<Spanned<PromDuration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileSd {
    /// Globs of JSON or YAML files in Prometheus `file_sd` format.
    pub files: Vec<Spanned<String>>,
    /// Area of the targets, unless an entry's labels carry `area`.
    pub area: Spanned<String>,
    pub checks: Vec<Spanned<CheckConfig>>,
    #[serde(default)]
    pub system: Option<Spanned<String>>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    pub interval: Option<Spanned<PromDuration>>,
    #[serde(default)]
    pub timeout: Option<Spanned<PromDuration>>,
}

/// One entry of a Prometheus `file_sd` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdGroup {
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One entry of `alerting.maintenance`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    pub name: Spanned<String>,
    #[serde(default)]
    pub targets: Vec<Spanned<String>>,
    #[serde(default)]
    pub areas: Vec<Spanned<String>>,
    #[serde(default)]
    pub systems: Vec<Spanned<String>>,
    /// RFC 3339 (`2026-12-01T08:00:00+07:00`) or local time (`2026-12-01 08:00`).
    #[serde(default)]
    pub start: Option<Spanned<String>>,
    #[serde(default)]
    pub end: Option<Spanned<String>>,
    /// Five-field cron (`0 22 * * 6`: Saturdays at 22:00) in the configured time zone.
    #[serde(default)]
    pub cron: Option<Spanned<String>>,
    #[serde(default)]
    pub duration: Option<PromDuration>,
    /// For the people who read the file; iocwatch ignores it.
    #[serde(default)]
    #[allow(dead_code)]
    pub comment: Option<String>,
}
