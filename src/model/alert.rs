//! The words of alerting that every layer shares: how severe an alert is, and which alert
//! it is. The names match the Prometheus rules in `deploy/`, so one Alertmanager routing
//! tree serves both ways of alerting.

use serde::{Deserialize, Serialize};

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
