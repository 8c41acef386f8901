//! Exposed-port audit: which TCP ports of a configured host answer. Ports expected open must
//! be open (else the check fails); any audited port found open that is not expected is a
//! finding (remote desktop, databases, SMB left reachable). Connections are spaced out, one
//! at a time, so an audit never looks like a scan burst; only the target's own address is
//! ever probed.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{resolve_one, Detail, FailureReason};
use crate::model::{FieldError, PromDuration};

/// Ports that should rarely face the network from a public system: SSH, Telnet, SMB, RDP,
/// MySQL, PostgreSQL, Redis, Elasticsearch.
pub const DEFAULT_AUDIT: [u16; 8] = [22, 23, 445, 3389, 3306, 5432, 6379, 9200];
const MAX_PORTS: usize = 256;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortsConfig {
    /// Alert conditions of this check, over the built-in ones and the matching rules.
    #[serde(default)]
    pub alerts: Option<Box<crate::model::AlertsConfig>>,
    /// Name of the check within its target; defaults to `ports`.
    #[serde(default)]
    pub name: Option<String>,
    /// Ports that must answer (the service itself, e.g. 80 and 443).
    #[serde(default)]
    pub expected_open: Vec<u16>,
    /// Ports that must not answer unless listed in `expected_open`.
    #[serde(default = "default_audit")]
    pub audit: Vec<u16>,
    /// Pause between two connection attempts.
    #[serde(default = "default_spacing")]
    pub spacing: PromDuration,
    /// The longest wait for one port to answer.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: PromDuration,
}

fn default_audit() -> Vec<u16> {
    DEFAULT_AUDIT.to_vec()
}
fn default_spacing() -> PromDuration {
    PromDuration(Duration::from_millis(50))
}
fn default_connect_timeout() -> PromDuration {
    PromDuration(Duration::from_secs(1))
}

#[derive(Debug)]
pub struct PortsProbe {
    host: String,
    expected_open: BTreeSet<u16>,
    /// Every port probed: expected ones first, then the audited rest, ascending.
    ports: Vec<u16>,
    audited: Vec<u16>,
    spacing: Duration,
    connect_timeout: Duration,
}

impl PortsProbe {
    pub fn new(config: &PortsConfig, address: Option<&str>) -> Result<PortsProbe, Vec<FieldError>> {
        let mut errors = Vec::new();
        let expected_open: BTreeSet<u16> = config.expected_open.iter().copied().collect();
        let audited: BTreeSet<u16> = config.audit.iter().copied().collect();
        if expected_open.contains(&0) || audited.contains(&0) {
            errors.push(FieldError::unlocated("ports must be 1 to 65535".to_owned()));
        }
        let ports: Vec<u16> = expected_open.union(&audited).copied().collect();
        if ports.is_empty() {
            errors.push(FieldError::unlocated(
                "ports check needs `expected_open` or `audit` ports".to_owned(),
            ));
        }
        if ports.len() > MAX_PORTS {
            errors.push(FieldError::unlocated(format!(
                "ports check lists {} ports; at most {MAX_PORTS} (this is an audit, not a scan)",
                ports.len()
            )));
        }
        let Some(host) = super::require_address(super::Kind::Ports, address, &mut errors) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(PortsProbe {
            host: host.to_owned(),
            audited: audited.difference(&expected_open).copied().collect(),
            expected_open,
            ports,
            spacing: config.spacing.0,
            connect_timeout: config.connect_timeout.0,
        })
    }

    /// The ports whose openness is reported as a finding (the `port` label values).
    pub fn audited(&self) -> &[u16] {
        &self.audited
    }

    /// The time a round needs at the least: the spacing between its connections.
    pub fn min_round_time(&self) -> Duration {
        self.spacing * u32::try_from(self.ports.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    pub async fn run(&self, deadline: Instant) -> (Option<FailureReason>, Detail) {
        let ip = match resolve_one(&self.host, 0, None).await {
            Ok(addr) => addr.ip(),
            Err(reason) => return (Some(reason), Detail::None),
        };
        let mut open = BTreeSet::new();
        let mut first_failure = None;
        for (i, &port) in self.ports.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(self.spacing).await;
            }
            let until = deadline.min(Instant::now() + self.connect_timeout);
            if until <= Instant::now() {
                first_failure.get_or_insert(FailureReason::Timeout);
                break;
            }
            match tokio::time::timeout_at(until, TcpStream::connect((ip, port))).await {
                Ok(Ok(_stream)) => {
                    open.insert(port);
                }
                Ok(Err(e)) if self.expected_open.contains(&port) => {
                    first_failure.get_or_insert(FailureReason::from_io(&e));
                }
                Err(_) if self.expected_open.contains(&port) => {
                    first_failure.get_or_insert(FailureReason::Timeout);
                }
                // Closed or filtered: what an audited port should be.
                _ => {}
            }
        }
        let detail = PortsDetail {
            unexpected_open: self
                .audited
                .iter()
                .copied()
                .filter(|p| open.contains(p))
                .collect(),
            expected_closed: self
                .expected_open
                .iter()
                .copied()
                .filter(|p| !open.contains(p))
                .collect(),
            audited: self.audited.clone(),
        };
        (first_failure, Detail::Ports(Box::new(detail)))
    }
}

/// What an audit round found.
#[derive(Debug, Clone, Default)]
pub struct PortsDetail {
    /// Audited ports (not expected open) that answered.
    pub unexpected_open: Vec<u16>,
    /// Expected ports that did not answer.
    pub expected_closed: Vec<u16>,
    pub audited: Vec<u16>,
}

impl std::fmt::Display for PortsDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  audited {:?}", self.audited)?;
        if !self.unexpected_open.is_empty() {
            writeln!(f, "  UNEXPECTED OPEN {:?}", self.unexpected_open)?;
        }
        if !self.expected_closed.is_empty() {
            writeln!(f, "  expected open but closed {:?}", self.expected_closed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn listener() -> (TcpListener, u16) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        (l, port)
    }

    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port()
    }

    fn probe(expected: &[u16], audit: &[u16]) -> PortsProbe {
        let config = PortsConfig {
            alerts: None,
            name: None,
            expected_open: expected.to_vec(),
            audit: audit.to_vec(),
            spacing: PromDuration(Duration::from_millis(5)),
            connect_timeout: PromDuration(Duration::from_millis(500)),
        };
        PortsProbe::new(&config, Some("127.0.0.1")).expect("valid")
    }

    #[tokio::test]
    async fn an_unexpected_open_port_is_a_finding_not_a_failure() {
        let (_web, web) = listener().await;
        let (_db, db) = listener().await;
        let closed = closed_port();
        let p = probe(&[web], &[db, closed]);
        let (failure, detail) = p.run(Instant::now() + Duration::from_secs(3)).await;
        assert_eq!(failure, None);
        let Detail::Ports(d) = detail else {
            panic!("ports detail")
        };
        assert_eq!(d.unexpected_open, [db]);
        assert!(d.expected_closed.is_empty());
        let mut audited = vec![db, closed];
        audited.sort_unstable();
        assert_eq!(d.audited, audited);
    }

    #[tokio::test]
    async fn an_expected_port_that_is_closed_fails_the_check() {
        let closed = closed_port();
        let p = probe(&[closed], &[]);
        let (failure, detail) = p.run(Instant::now() + Duration::from_secs(3)).await;
        assert_eq!(failure, Some(FailureReason::Refused));
        let Detail::Ports(d) = detail else {
            panic!("ports detail")
        };
        assert_eq!(d.expected_closed, [closed]);
    }

    #[test]
    fn limits() {
        let mut config = PortsConfig {
            alerts: None,
            name: None,
            expected_open: vec![],
            audit: vec![],
            spacing: default_spacing(),
            connect_timeout: default_connect_timeout(),
        };
        assert!(
            PortsProbe::new(&config, Some("127.0.0.1")).is_err(),
            "nothing to audit"
        );
        config.audit = (1..=300).collect();
        let errors = PortsProbe::new(&config, Some("127.0.0.1")).expect_err("too many");
        assert!(errors[0].message.contains("not a scan"));
        config.audit = DEFAULT_AUDIT.to_vec();
        let p = PortsProbe::new(&config, Some("127.0.0.1")).expect("valid");
        assert_eq!(p.min_round_time(), Duration::from_millis(350));
    }
}
