//! Alert conditions: what the config says (`alerts:` on a check, a template or a rule), the
//! validated [`Condition`], and how one round of a check is judged against it.
//!
//! Every probe kind has built-in conditions (a failing check is down; ICMP loss over 20 %
//! for 5 minutes; a certificate within 21 days, or 7; a TLS grade below B; a changed page,
//! DNS answer or open port), so a target alerts sensibly with no `alerts:` at all. A layer
//! (rule, then the check itself) that names a condition replaces it whole.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::rule::RuleParams;
use crate::config::{parse_duration, FieldError, PromDuration, Spanned};
use crate::probe::tls::Grade;
use crate::probe::{Detail, Kind, Outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The alerts a check can raise. The names match the Prometheus rules in `deploy/`, so one
/// Alertmanager routing tree serves both ways of alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum AlertName {
    #[serde(rename = "IocwatchTargetDown")]
    TargetDown,
    #[serde(rename = "IocwatchPacketLoss")]
    PacketLoss,
    #[serde(rename = "IocwatchSlow")]
    Slow,
    #[serde(rename = "IocwatchCertificateExpiresSoon")]
    CertificateExpiresSoon,
    #[serde(rename = "IocwatchCertificateExpiresVerySoon")]
    CertificateExpiresVerySoon,
    #[serde(rename = "IocwatchTlsGradeLow")]
    TlsGradeLow,
    #[serde(rename = "IocwatchContentChanged")]
    ContentChanged,
    #[serde(rename = "IocwatchForbiddenPhrase")]
    ForbiddenPhrase,
    #[serde(rename = "IocwatchDnsAnswerChanged")]
    DnsAnswerChanged,
    #[serde(rename = "IocwatchUnexpectedOpenPort")]
    UnexpectedOpenPort,
}

impl AlertName {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertName::TargetDown => "IocwatchTargetDown",
            AlertName::PacketLoss => "IocwatchPacketLoss",
            AlertName::Slow => "IocwatchSlow",
            AlertName::CertificateExpiresSoon => "IocwatchCertificateExpiresSoon",
            AlertName::CertificateExpiresVerySoon => "IocwatchCertificateExpiresVerySoon",
            AlertName::TlsGradeLow => "IocwatchTlsGradeLow",
            AlertName::ContentChanged => "IocwatchContentChanged",
            AlertName::ForbiddenPhrase => "IocwatchForbiddenPhrase",
            AlertName::DnsAnswerChanged => "IocwatchDnsAnswerChanged",
            AlertName::UnexpectedOpenPort => "IocwatchUnexpectedOpenPort",
        }
    }

    pub fn parse(name: &str) -> Option<AlertName> {
        ALL_NAMES.into_iter().find(|n| n.as_str() == name)
    }

    /// Conditions about reaching the target: behind a cut upstream they say nothing new, so
    /// they are suppressed there. Security findings are never suppressed.
    pub fn is_connectivity(self) -> bool {
        matches!(
            self,
            AlertName::TargetDown | AlertName::PacketLoss | AlertName::Slow
        )
    }
}

const ALL_NAMES: [AlertName; 10] = [
    AlertName::TargetDown,
    AlertName::PacketLoss,
    AlertName::Slow,
    AlertName::CertificateExpiresSoon,
    AlertName::CertificateExpiresVerySoon,
    AlertName::TlsGradeLow,
    AlertName::ContentChanged,
    AlertName::ForbiddenPhrase,
    AlertName::DnsAnswerChanged,
    AlertName::UnexpectedOpenPort,
];

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
    let params = RuleParams {
        fire_after: c.after.unwrap_or(fire_after_default).max(1),
        resolve_after: c.resolve_after.unwrap_or(2).max(1),
        ..RuleParams::default()
    };
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

/// Samples a windowed condition keeps: (when, value, weight).
#[derive(Debug, Default, Clone)]
pub struct Window {
    samples: VecDeque<(Instant, f64, f64)>,
}

/// Bound on samples per window, whatever the interval: a 1 s ICMP check with 20 echoes over
/// 5 minutes would otherwise keep 6,000.
const MAX_SAMPLES: usize = 2048;

impl Window {
    fn push(&mut self, now: Instant, over: Duration, value: f64, weight: f64) {
        self.samples.push_back((now, value, weight));
        while self
            .samples
            .front()
            .is_some_and(|(t, ..)| now.saturating_duration_since(*t) > over)
            || self.samples.len() > MAX_SAMPLES
        {
            self.samples.pop_front();
        }
    }

    /// Adds to a mean over the window: rounds within the same 1/30 of the window share one
    /// sample, so a 5-minute loss window holds at most ~30 samples whatever the interval.
    /// (A merged sample leaves the window with its first round: up to 1/30 early.)
    fn push_to_mean(&mut self, now: Instant, over: Duration, value: f64, weight: f64) {
        if let Some((first, mean, total)) = self.samples.back_mut() {
            if now.saturating_duration_since(*first) < over / 30 && *total + weight > 0.0 {
                *mean = (*mean * *total + value * weight) / (*total + weight);
                *total += weight;
                return;
            }
        }
        self.push(now, over, value, weight);
    }

    fn weighted_mean(&self) -> Option<f64> {
        let (sum, weight) = self
            .samples
            .iter()
            .fold((0.0, 0.0), |(s, w), (_, v, wt)| (s + v * wt, w + wt));
        (weight > 0.0).then(|| sum / weight)
    }

    fn percentile(&self, p: f64) -> Option<f64> {
        let mut values: Vec<f64> = self.samples.iter().map(|(_, v, _)| *v).collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
        Some(values[rank - 1])
    }
}

/// The verdict on one round: whether the condition held, and the value behind it for the
/// message (loss ratio, latency in seconds, days left). `None`: the round says nothing
/// about this condition (no certificate seen, no page compared).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub bad: bool,
    pub value: Option<f64>,
    pub note: Option<String>,
}

impl Condition {
    pub fn judge(
        &self,
        outcome: &Outcome,
        window: &mut Window,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Verdict> {
        let verdict = |bad, value, note| Some(Verdict { bad, value, note });
        match (&self.test, &outcome.detail) {
            (Test::Down, detail) => {
                // A forbidden phrase is a defacement, raised by its own condition.
                let defaced = matches!(detail, Detail::Http(h)
                    if h.content.as_ref().is_some_and(|c| !c.forbidden_found.is_empty()));
                verdict(
                    outcome.failure.is_some() && !defaced,
                    None,
                    outcome.failure.map(|r| r.label().to_owned()),
                )
            }
            // A round without a single reply is the down condition's business: counted here
            // too, an outage would leave a "packet loss" alert behind for the whole window
            // after the link came back.
            (Test::Loss { above, over }, Detail::Icmp(stats))
                if stats.sent > 0 && stats.received() > 0 =>
            {
                window.push_to_mean(now, *over, stats.loss_ratio(), f64::from(stats.sent));
                let loss = window.weighted_mean()?;
                verdict(loss > *above, Some(loss), None)
            }
            (
                Test::Slow {
                    percentile,
                    above,
                    over,
                },
                detail,
            ) => {
                match detail {
                    Detail::Icmp(stats) => {
                        for rtt in &stats.rtts {
                            window.push(now, *over, rtt.as_secs_f64(), 1.0);
                        }
                    }
                    Detail::Tcp { connect } => window.push(now, *over, connect.as_secs_f64(), 1.0),
                    _ if outcome.success() => {
                        window.push(now, *over, outcome.duration.as_secs_f64(), 1.0)
                    }
                    _ => {}
                }
                let p = window.percentile(*percentile)?;
                verdict(p > above.as_secs_f64(), Some(p), None)
            }
            (Test::CertExpiry { within }, detail) => {
                let not_after = match detail {
                    Detail::Http(h) => h.cert_not_after,
                    Detail::Tls(t) => match (t.leaf_not_after, t.chain_not_after) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                    _ => None,
                }?;
                let left = not_after
                    .duration_since(wall)
                    .map_or(0.0, |d| d.as_secs_f64());
                verdict(left < within.as_secs_f64(), Some(left / 86400.0), None)
            }
            (Test::TlsGrade { below }, Detail::Tls(t)) => verdict(
                t.grade < *below,
                Some(t.grade.value()),
                Some(format!("{}: {}", t.grade.letter(), t.reasons.join(", "))),
            ),
            (Test::ContentChanged, Detail::Http(h)) => {
                let c = h.content.as_ref()?;
                verdict(c.changed, None, c.summary.clone())
            }
            (Test::ForbiddenPhrase, Detail::Http(h)) => {
                let c = h.content.as_ref()?;
                verdict(
                    !c.forbidden_found.is_empty(),
                    None,
                    (!c.forbidden_found.is_empty()).then(|| c.forbidden_found.join(", ")),
                )
            }
            (Test::DnsChanged, Detail::Dns(d)) => {
                verdict(d.changed, None, d.changed.then(|| d.answers.join(", ")))
            }
            (Test::UnexpectedPort, Detail::Ports(p)) => {
                let open: Vec<String> = p.unexpected_open.iter().map(u16::to_string).collect();
                verdict(
                    !open.is_empty(),
                    Some(open.len() as f64),
                    (!open.is_empty()).then(|| open.join(", ")),
                )
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_test_yaml;

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

    #[tokio::test(start_paused = true)]
    async fn loss_and_latency_are_judged_over_their_window() {
        use crate::probe::icmp::IcmpStats;
        let loss = &conditions(Kind::Icmp, "loss: {above: 20%, over: 1m}\n").expect("valid")[1];
        let mut window = Window::default();
        let round = |received: usize| Outcome {
            duration: Duration::from_millis(10),
            failure: None,
            detail: Detail::Icmp(IcmpStats {
                sent: 10,
                rtts: vec![Duration::from_millis(20); received],
            }),
        };
        let mut verdicts = Vec::new();
        // 0 %, 50 %, 0 %: the mean over the window is what counts.
        for received in [10, 5, 10, 10] {
            tokio::time::advance(Duration::from_secs(20)).await;
            let v = loss
                .judge(
                    &round(received),
                    &mut window,
                    Instant::now(),
                    SystemTime::now(),
                )
                .expect("judged");
            verdicts.push(v.bad);
        }
        assert_eq!(verdicts, [false, true, false, false]);
        // A round without any reply is an outage, judged by `down`, not loss.
        assert_eq!(
            loss.judge(&round(0), &mut window, Instant::now(), SystemTime::now()),
            None
        );
        // Rounds close together share a sample: a 1 s check keeps ~30, not 300, per window.
        let mut dense = Window::default();
        for i in 0..300 {
            tokio::time::advance(Duration::from_millis(200)).await;
            let received = if i % 2 == 0 { 10 } else { 8 };
            loss.judge(
                &round(received),
                &mut dense,
                Instant::now(),
                SystemTime::now(),
            );
        }
        assert!(dense.samples.len() <= 31, "{} samples", dense.samples.len());
        let mean = dense.weighted_mean().expect("mean");
        assert!((mean - 0.1).abs() < 0.01, "mean loss {mean}");
        // After the window passes, the lossy round is forgotten.
        tokio::time::advance(Duration::from_secs(61)).await;
        let v = loss
            .judge(&round(10), &mut window, Instant::now(), SystemTime::now())
            .expect("judged");
        assert_eq!(v.value, Some(0.0));

        let all = conditions(Kind::Icmp, "slow: {above: 30ms, percentile: 0.5}\n").expect("valid");
        let slow = all
            .iter()
            .find(|c| c.name == AlertName::Slow)
            .expect("slow");
        let mut window = Window::default();
        let v = slow
            .judge(&round(10), &mut window, Instant::now(), SystemTime::now())
            .expect("judged");
        assert!(!v.bad, "20 ms median is under 30 ms");
        assert_eq!(v.value, Some(0.02));
    }
}
