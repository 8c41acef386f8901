//! Alert conditions: what the config says (`alerts:` on a check, a template or a rule) and
//! the validated [`Condition`]. Judging a round against one is the alert engine's business
//! (`alert::judge`).
//!
//! Every probe kind has built-in conditions (a failing check is down; ICMP loss over 20 %
//! for 5 minutes; a certificate within 21 days, or 7; a TLS grade below B; a changed page,
//! DNS answer or open port), so a target alerts sensibly with no `alerts:` at all. A layer
//! (rule, then the check itself) that names a condition replaces it whole.

use std::time::Duration;

use serde::Deserialize;

use super::{parse_duration, AlertName, FieldError, Grade, Kind, PromDuration, Severity, Spanned};

/// How an alert of a condition fires, resolves and is judged flapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleParams {
    /// Bad rounds in a row before the alert fires.
    pub fire_after: u32,
    /// Good rounds in a row before it may resolve.
    pub resolve_after: u32,
    /// How long after its last bad round a firing alert is kept: a link that fails again
    /// within it goes on with the same incident instead of a resolution and a new alert.
    pub keep_firing_for: Duration,
    /// Changes between bad and good within `flap_window` that make the alert flapping.
    pub flap_window: Duration,
    pub flap_threshold: u32,
}

impl Default for RuleParams {
    fn default() -> Self {
        RuleParams {
            fire_after: 3,
            resolve_after: 2,
            keep_firing_for: Duration::from_secs(60),
            flap_window: Duration::from_secs(600),
            flap_threshold: 6,
        }
    }
}

/// A threshold as written: a number (`0.2`) or text (`20%`, `250ms`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Threshold {
    Number(f64),
    Text(String),
}

/// One condition as written. All conditions share this shape; fields that do not apply to
/// a condition are refused by validation with a message that says which do.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// `false` turns a built-in condition off.
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Bad rounds in a row before the alert fires.
    #[serde(default)]
    pub after: Option<u32>,
    /// Good rounds in a row before it resolves.
    #[serde(default)]
    pub resolve_after: Option<u32>,
    /// How long a firing alert is kept after its last bad round (default 1m).
    #[serde(default)]
    pub keep_firing_for: Option<PromDuration>,
    /// Flapping: this many changes between bad and good (default 6) within this window
    /// (default 10m).
    #[serde(default)]
    pub flap_threshold: Option<u32>,
    #[serde(default)]
    pub flap_window: Option<PromDuration>,
    /// `loss`: a ratio (`0.2`, `20%`); `slow`: a duration (`250ms`).
    #[serde(default)]
    pub above: Option<Spanned<Threshold>>,
    /// The window of `loss` and `slow`.
    #[serde(default)]
    pub over: Option<PromDuration>,
    /// `slow`: which latency percentile, 0 < p ≤ 1 (default 0.95).
    #[serde(default)]
    pub percentile: Option<f64>,
    /// `cert_expiry`: warn and page this long before the certificate ends (21d, 7d).
    #[serde(default)]
    pub warning: Option<PromDuration>,
    #[serde(default)]
    pub critical: Option<PromDuration>,
    /// `tls_grade`: fire below this grade (default B).
    #[serde(default)]
    pub below: Option<Spanned<String>>,
}

/// `alerts:` on a check, a template's check or a rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    #[serde(default)]
    pub down: Option<Spanned<ConditionConfig>>,
    #[serde(default)]
    pub loss: Option<Spanned<ConditionConfig>>,
    #[serde(default)]
    pub slow: Option<Spanned<ConditionConfig>>,
    #[serde(default)]
    pub cert_expiry: Option<Spanned<ConditionConfig>>,
    #[serde(default)]
    pub tls_grade: Option<Spanned<ConditionConfig>>,
    #[serde(default)]
    pub content_changed: Option<Spanned<ConditionConfig>>,
    #[serde(default)]
    pub forbidden_phrase: Option<Spanned<ConditionConfig>>,
    #[serde(default)]
    pub dns_changed: Option<Spanned<ConditionConfig>>,
    #[serde(default)]
    pub unexpected_port: Option<Spanned<ConditionConfig>>,
    /// Notifiers (by name) that get this check's alerts; all of them when not set.
    #[serde(default)]
    pub notify: Option<Vec<Spanned<String>>>,
}

impl AlertsConfig {
    /// The conditions this layer sets, by config key.
    pub fn entries(&self) -> [(&'static str, Option<&Spanned<ConditionConfig>>); 9] {
        [
            ("down", self.down.as_ref()),
            ("loss", self.loss.as_ref()),
            ("slow", self.slow.as_ref()),
            ("cert_expiry", self.cert_expiry.as_ref()),
            ("tls_grade", self.tls_grade.as_ref()),
            ("content_changed", self.content_changed.as_ref()),
            ("forbidden_phrase", self.forbidden_phrase.as_ref()),
            ("dns_changed", self.dns_changed.as_ref()),
            ("unexpected_port", self.unexpected_port.as_ref()),
        ]
    }
}

/// What a round is judged by.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Down,
    Loss {
        above: f64,
        over: Duration,
    },
    Slow {
        percentile: f64,
        above: Duration,
        over: Duration,
    },
    CertExpiry {
        within: Duration,
    },
    TlsGrade {
        below: Grade,
    },
    ContentChanged,
    ForbiddenPhrase,
    DnsChanged,
    UnexpectedPort,
}

/// A validated condition of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub name: AlertName,
    pub severity: Severity,
    pub params: RuleParams,
    pub test: Test,
}

/// The conditions a check of this kind has with no `alerts:` at all, by config key.
fn builtin(key: &str, kind: Kind) -> bool {
    match key {
        "down" => kind != Kind::Ports,
        "loss" => kind == Kind::Icmp,
        "cert_expiry" => matches!(kind, Kind::Http | Kind::Tls),
        "tls_grade" => kind == Kind::Tls,
        "content_changed" | "forbidden_phrase" => kind == Kind::Http,
        "dns_changed" => kind == Kind::Dns,
        "unexpected_port" => kind == Kind::Ports,
        // `slow` needs a threshold only the owner knows.
        _ => false,
    }
}

fn applies(key: &str, kind: Kind) -> bool {
    match key {
        "slow" => kind != Kind::Ports,
        _ => builtin(key, kind),
    }
}

/// Resolves the conditions of one check from the layers that apply to it, lowest first
/// (rules in order, then the check's own `alerts:`). Errors carry the position of the
/// offending condition.
pub fn resolve(kind: Kind, layers: &[&AlertsConfig]) -> Result<Vec<Condition>, Vec<FieldError>> {
    let mut conditions = Vec::new();
    let mut errors = Vec::new();
    for (i, (key, _)) in AlertsConfig::default().entries().into_iter().enumerate() {
        let written = layers.iter().rev().find_map(|l| l.entries()[i].1);
        if let Some(c) = written {
            if !applies(key, kind) {
                // A rule may name conditions for many kinds; only a check's own layer errs.
                continue;
            }
            if c.value.enabled == Some(false) {
                continue;
            }
            match build(key, &c.value) {
                Ok(mut built) => conditions.append(&mut built),
                Err(message) => errors.push(FieldError::at(c.referenced, message)),
            }
        } else if builtin(key, kind) {
            match build(key, &ConditionConfig::default()) {
                Ok(mut built) => conditions.append(&mut built),
                Err(message) => errors.push(FieldError::unlocated(message)),
            }
        }
    }
    if errors.is_empty() {
        Ok(conditions)
    } else {
        Err(errors)
    }
}

/// Whether a key names a condition that can apply to a check of this kind; for errors on a
/// check's own `alerts:`.
pub fn check_keys(kind: Kind, alerts: &AlertsConfig) -> Vec<FieldError> {
    alerts
        .entries()
        .into_iter()
        .filter_map(|(key, c)| {
            let c = c?;
            (!applies(key, kind)).then(|| {
                FieldError::at(
                    c.referenced,
                    format!("alert condition `{key}` does not apply to {kind} checks"),
                )
            })
        })
        .collect()
}

/// Checks every condition a layer writes, on its own: errors point into that layer's file.
pub fn validate(alerts: &AlertsConfig) -> Vec<FieldError> {
    alerts
        .entries()
        .into_iter()
        .filter_map(|(key, c)| {
            let c = c?;
            build(key, &c.value)
                .err()
                .map(|message| FieldError::at(c.referenced, message))
        })
        .collect()
}

fn build(key: &str, c: &ConditionConfig) -> Result<Vec<Condition>, String> {
    let allowed: &[&str] = match key {
        "loss" => &["above", "over"],
        "slow" => &["above", "over", "percentile"],
        "cert_expiry" => &["warning", "critical"],
        "tls_grade" => &["below"],
        _ => &[],
    };
    let given = [
        ("above", c.above.is_some()),
        ("over", c.over.is_some()),
        ("percentile", c.percentile.is_some()),
        ("warning", c.warning.is_some()),
        ("critical", c.critical.is_some()),
        ("below", c.below.is_some()),
    ];
    if let Some((field, _)) = given.iter().find(|(f, set)| *set && !allowed.contains(f)) {
        return Err(format!(
            "`{field}` does not apply to the `{key}` condition{}",
            if allowed.is_empty() {
                String::new()
            } else {
                format!(" (it takes {})", allowed.join(", "))
            }
        ));
    }
    let fire_after_default = if key == "down" { 3 } else { 1 };
    let defaults = RuleParams::default();
    let params = RuleParams {
        fire_after: c.after.unwrap_or(fire_after_default).max(1),
        resolve_after: c.resolve_after.unwrap_or(defaults.resolve_after).max(1),
        keep_firing_for: c.keep_firing_for.map_or(defaults.keep_firing_for, |d| d.0),
        flap_threshold: c.flap_threshold.unwrap_or(defaults.flap_threshold),
        flap_window: c.flap_window.map_or(defaults.flap_window, |d| d.0),
    };
    if params.flap_threshold < 2 {
        return Err("flap_threshold must be at least 2 changes".into());
    }
    let one = |name, severity: Severity, test| Condition {
        name,
        severity: c.severity.unwrap_or(severity),
        params,
        test,
    };
    let over = c.over.map_or(Duration::from_secs(300), |d| d.0);
    Ok(match key {
        "down" => vec![one(AlertName::TargetDown, Severity::Critical, Test::Down)],
        "loss" => {
            let above = match &c.above {
                None => 0.2,
                Some(t) => ratio(&t.value)?,
            };
            vec![one(
                AlertName::PacketLoss,
                Severity::Warning,
                Test::Loss { above, over },
            )]
        }
        "slow" => {
            let Some(above) = &c.above else {
                return Err("the `slow` condition needs `above` (a latency such as 250ms)".into());
            };
            let above = match &above.value {
                Threshold::Text(t) => parse_duration(t)?,
                Threshold::Number(_) => {
                    return Err("`above` of `slow` is a duration such as 250ms".into())
                }
            };
            let percentile = c.percentile.unwrap_or(0.95);
            if !(percentile > 0.0 && percentile <= 1.0) {
                return Err(format!(
                    "percentile must be above 0 and at most 1, not {percentile}"
                ));
            }
            vec![one(
                AlertName::Slow,
                Severity::Warning,
                Test::Slow {
                    percentile,
                    above,
                    over,
                },
            )]
        }
        "cert_expiry" => {
            let warning = c.warning.map_or(Duration::from_secs(21 * 86400), |d| d.0);
            let critical = c.critical.map_or(Duration::from_secs(7 * 86400), |d| d.0);
            if critical > warning {
                return Err("cert_expiry: `critical` must not be longer than `warning`".into());
            }
            // Two alerts, as in the Prometheus rules: the critical one pages, and the warning
            // is inhibited by it in Alertmanager.
            vec![
                Condition {
                    name: AlertName::CertificateExpiresSoon,
                    severity: Severity::Warning,
                    params,
                    test: Test::CertExpiry { within: warning },
                },
                Condition {
                    name: AlertName::CertificateExpiresVerySoon,
                    severity: Severity::Critical,
                    params,
                    test: Test::CertExpiry { within: critical },
                },
            ]
        }
        "tls_grade" => {
            let below = match &c.below {
                None => Grade::B,
                Some(g) => Grade::parse(&g.value)
                    .ok_or_else(|| format!("unknown grade {:?}: expected A, B, C or F", g.value))?,
            };
            vec![one(
                AlertName::TlsGradeLow,
                Severity::Warning,
                Test::TlsGrade { below },
            )]
        }
        "content_changed" => vec![one(
            AlertName::ContentChanged,
            Severity::Warning,
            Test::ContentChanged,
        )],
        "forbidden_phrase" => vec![one(
            AlertName::ForbiddenPhrase,
            Severity::Critical,
            Test::ForbiddenPhrase,
        )],
        "dns_changed" => vec![one(
            AlertName::DnsAnswerChanged,
            Severity::Warning,
            Test::DnsChanged,
        )],
        "unexpected_port" => vec![one(
            AlertName::UnexpectedOpenPort,
            Severity::Critical,
            Test::UnexpectedPort,
        )],
        other => return Err(format!("unknown alert condition {other:?}")),
    })
}

fn ratio(t: &Threshold) -> Result<f64, String> {
    let value = match t {
        Threshold::Number(n) => *n,
        Threshold::Text(text) => {
            let Some(percent) = text.trim().strip_suffix('%') else {
                return Err(format!(
                    "expected a ratio (0.2) or a percentage (20%), not {text:?}"
                ));
            };
            percent
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("expected a percentage such as 20%, not {text:?}"))?
                / 100.0
        }
    };
    if (0.0..1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "loss threshold must be at least 0 and below 1 (100%), not {value}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_test_yaml;

    fn conditions(kind: Kind, yaml: &str) -> Result<Vec<Condition>, Vec<FieldError>> {
        let layer: AlertsConfig = parse_test_yaml(yaml);
        resolve(kind, &[&layer])
    }

    fn names(c: &[Condition]) -> Vec<&'static str> {
        c.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn every_kind_has_sensible_builtin_conditions() {
        let none = AlertsConfig::default();
        let of = |kind| names(&resolve(kind, &[&none]).expect("builtin"));
        assert_eq!(of(Kind::Icmp), ["IocwatchTargetDown", "IocwatchPacketLoss"]);
        assert_eq!(
            of(Kind::Tls),
            [
                "IocwatchTargetDown",
                "IocwatchCertificateExpiresSoon",
                "IocwatchCertificateExpiresVerySoon",
                "IocwatchTlsGradeLow"
            ]
        );
        assert_eq!(of(Kind::Ports), ["IocwatchUnexpectedOpenPort"]);
        assert_eq!(
            of(Kind::Dns),
            ["IocwatchTargetDown", "IocwatchDnsAnswerChanged"]
        );
    }

    #[test]
    fn a_layer_replaces_or_disables_a_condition() {
        let c = conditions(
            Kind::Icmp,
            "down: {after: 5, severity: warning}\nloss: {enabled: false}\nslow: {above: 150ms, over: 10m, percentile: 0.9}\n",
        )
        .expect("valid");
        assert_eq!(names(&c), ["IocwatchTargetDown", "IocwatchSlow"]);
        assert_eq!(c[0].params.fire_after, 5);
        assert_eq!(c[0].severity, Severity::Warning);
        assert_eq!(
            c[1].test,
            Test::Slow {
                percentile: 0.9,
                above: Duration::from_millis(150),
                over: Duration::from_secs(600)
            }
        );
        let loss = conditions(Kind::Icmp, "loss: {above: 10%}\n").expect("valid");
        assert_eq!(
            loss[1].test,
            Test::Loss {
                above: 0.1,
                over: Duration::from_secs(300)
            }
        );
    }

    #[test]
    fn wrong_fields_and_values_are_explained() {
        let message = |kind, yaml| match conditions(kind, yaml) {
            Err(e) => e[0].message.clone(),
            Ok(c) => panic!("accepted {yaml}: {c:?}"),
        };
        assert_eq!(
            message(Kind::Icmp, "down: {above: 3}\n"),
            "`above` does not apply to the `down` condition"
        );
        assert_eq!(
            message(Kind::Icmp, "loss: {above: 120%}\n"),
            "loss threshold must be at least 0 and below 1 (100%), not 1.2"
        );
        assert!(message(Kind::Tcp, "slow: {over: 5m}\n").contains("needs `above`"));
        assert!(message(Kind::Tls, "tls_grade: {below: Z}\n").contains("expected A, B, C or F"));
        let errors = check_keys(Kind::Tcp, &parse_test_yaml("loss: {above: 5%}\n"));
        assert_eq!(
            errors[0].message,
            "alert condition `loss` does not apply to tcp checks"
        );
    }
}
