//! Probes: one file per kind, each with its config (serde), its validated probe and its tests.
//!
//! A probe never fails with `Err`: whatever happens to the target is data in [`Outcome`], with a
//! bounded [`FailureReason`] so that metric cardinality stays fixed.

pub mod dns;
pub mod http;
pub mod http_content;
pub mod http_security;
pub mod icmp;
mod icmp_socket;
pub mod ports;
pub mod tcp;
#[cfg(any(test, feature = "test-support"))]
pub mod test_servers;
pub mod tls;
mod tls_wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

pub use dns::{DnsConfig, DnsDetail, DnsProbe};
pub use http::{HttpConfig, HttpDetail, HttpProbe};
pub use icmp::{IcmpClients, IcmpConfig, IcmpProbe, IcmpStats};
pub use ports::{PortsConfig, PortsDetail, PortsProbe};
pub use tcp::{TcpConfig, TcpProbe};
pub use tls::{TlsConfig, TlsDetail, TlsProbe};

use crate::model::FieldError;
pub use crate::model::{FailureReason, Kind};

/// One check of a target, as written in the config: `- icmp: {...}`, `- tcp: {port: 22}`,
/// `- http: {url: ...}`, or `- template: NAME` to use a named list of checks.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum CheckConfig {
    Icmp(IcmpConfig),
    Tcp(TcpConfig),
    Http(Box<HttpConfig>),
    Dns(Box<DnsConfig>),
    Ports(PortsConfig),
    Tls(Box<TlsConfig>),
    Template(String),
}

/// A validated, ready-to-run probe. Closed set, so an enum rather than a trait object.
#[derive(Debug)]
// Always behind an Arc and built once per check, so the variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
/// The large kinds are boxed: every check holds one, and most checks are ICMP or TCP.
pub enum Probe {
    Icmp(IcmpProbe),
    Tcp(TcpProbe),
    Http(Box<HttpProbe>),
    Dns(Box<DnsProbe>),
    Ports(Box<PortsProbe>),
    Tls(TlsProbe),
}

impl CheckConfig {
    /// The check's own `alerts:`.
    pub fn alerts(&self) -> Option<&crate::model::AlertsConfig> {
        match self {
            CheckConfig::Icmp(c) => c.alerts.as_deref(),
            CheckConfig::Tcp(c) => c.alerts.as_deref(),
            CheckConfig::Http(c) => c.alerts.as_deref(),
            CheckConfig::Dns(c) => c.alerts.as_deref(),
            CheckConfig::Ports(c) => c.alerts.as_deref(),
            CheckConfig::Tls(c) => c.alerts.as_deref(),
            CheckConfig::Template(_) => None,
        }
    }
}

impl Probe {
    /// Builds a probe from a check config and the target's address (if it has one).
    pub fn build(config: &CheckConfig, address: Option<&str>) -> Result<Probe, Vec<FieldError>> {
        match config {
            CheckConfig::Icmp(c) => IcmpProbe::new(c, address).map(Probe::Icmp),
            CheckConfig::Tcp(c) => TcpProbe::new(c, address).map(Probe::Tcp),
            CheckConfig::Http(c) => HttpProbe::new(c).map(|p| Probe::Http(Box::new(p))),
            CheckConfig::Dns(c) => DnsProbe::new(c, address).map(|p| Probe::Dns(Box::new(p))),
            CheckConfig::Ports(c) => PortsProbe::new(c, address).map(|p| Probe::Ports(Box::new(p))),
            CheckConfig::Tls(c) => TlsProbe::new(c, address).map(Probe::Tls),
            // Templates are expanded by the config loader before probes are built.
            CheckConfig::Template(name) => Err(vec![FieldError::unlocated(format!(
                "template {name:?} cannot be used inside a template"
            ))]),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Probe::Icmp(_) => Kind::Icmp,
            Probe::Tcp(_) => Kind::Tcp,
            Probe::Http(_) => Kind::Http,
            Probe::Dns(_) => Kind::Dns,
            Probe::Ports(_) => Kind::Ports,
            Probe::Tls(_) => Kind::Tls,
        }
    }

    /// The least time a round takes by design (echo or connection spacing); the timeout
    /// must be longer.
    pub fn min_round_time(&self) -> Duration {
        match self {
            Probe::Icmp(p) => p.min_round_time(),
            Probe::Ports(p) => p.min_round_time(),
            _ => Duration::ZERO,
        }
    }

    /// The check `iocwatch probe KIND TARGET` runs: what a config with only this target (and
    /// every setting at its default) would give. TARGET is a host for icmp and ports,
    /// `HOST:PORT` for tcp, `HOST[:PORT]` for tls, a URL for http, `NAME@SERVER[:PORT]` for dns.
    pub fn for_target(kind: Kind, target: &str) -> Result<Probe, String> {
        let (fields, address) = match kind {
            Kind::Icmp => (serde_json::json!({}), Some(target)),
            Kind::Ports => (serde_json::json!({}), Some(target)),
            Kind::Tcp => {
                let (host, port) = host_port(target)?
                    .ok_or_else(|| format!("tcp target {target:?}: expected HOST:PORT"))?;
                (serde_json::json!({ "port": port }), Some(host))
            }
            Kind::Tls => {
                let (host, port) = host_port(target)?.unwrap_or((target, 443));
                (serde_json::json!({ "port": port }), Some(host))
            }
            Kind::Http => (serde_json::json!({ "url": target }), None),
            Kind::Dns => {
                let (name, server) = target.split_once('@').ok_or_else(|| {
                    format!("dns target {target:?}: expected NAME@SERVER, like dig")
                })?;
                (serde_json::json!({ "query": name, "server": server }), None)
            }
        };
        let config = serde_json::from_value::<CheckConfig>(serde_json::json!({
            kind.as_str(): fields
        }))
        .map_err(|e| e.to_string())?;
        Probe::build(&config, address).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Whether a round's result is compared with a baseline (DNS answers, certificate,
    /// watched page), which `iocwatch baseline accept` replaces.
    pub fn has_baseline(&self) -> bool {
        match self {
            Probe::Dns(_) | Probe::Tls(_) => true,
            Probe::Http(p) => p.watches_content(),
            Probe::Icmp(_) | Probe::Tcp(_) | Probe::Ports(_) => false,
        }
    }

    /// Values of the `port` label this check's series use (ports audits only).
    pub fn audited_ports(&self) -> &[u16] {
        match self {
            Probe::Ports(p) => p.audited(),
            _ => &[],
        }
    }

    /// Runs one round. Never returns early past `deadline`; never panics on target input.
    pub async fn run(&self, ctx: &ProbeContext, deadline: Instant) -> Outcome {
        let started = Instant::now();
        let (failure, detail) =
            match tokio::time::timeout_at(deadline, self.run_inner(ctx, deadline)).await {
                Ok(result) => result,
                Err(_) => (Some(FailureReason::Timeout), Detail::None),
            };
        Outcome {
            duration: started.elapsed(),
            failure,
            detail,
        }
    }

    async fn run_inner(
        &self,
        ctx: &ProbeContext,
        deadline: Instant,
    ) -> (Option<FailureReason>, Detail) {
        match self {
            Probe::Icmp(p) => p.run(&ctx.icmp, deadline).await,
            Probe::Tcp(p) => p.run(deadline).await,
            Probe::Http(p) => p.run(ctx, deadline).await,
            Probe::Dns(p) => p.run(deadline).await,
            Probe::Ports(p) => p.run(deadline).await,
            Probe::Tls(p) => p.run(ctx, deadline).await,
        }
    }
}

/// Shared, long-lived resources the probes use: built once, never per probe.
pub struct ProbeContext {
    pub icmp: IcmpClients,
    /// TLS settings with the system roots; HTTP probes with their own CA or `insecure` build theirs.
    pub tls: Arc<rustls::ClientConfig>,
    /// The system roots, for probes that verify chains themselves (the TLS probe).
    pub roots: Arc<rustls::RootCertStore>,
}

impl ProbeContext {
    pub fn new() -> ProbeContext {
        let roots = crate::tls::system_roots();
        ProbeContext {
            icmp: IcmpClients::open(),
            tls: crate::tls::root_config(roots.as_ref().clone()),
            roots,
        }
    }
}

impl Default for ProbeContext {
    fn default() -> Self {
        Self::new()
    }
}

/// `HOST:PORT` or `[V6]:PORT` split in two; `None` when there is no port.
fn host_port(target: &str) -> Result<Option<(&str, u16)>, String> {
    match target.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("invalid port in {target:?}"))?;
            Ok(Some((
                host.trim_start_matches('[').trim_end_matches(']'),
                port,
            )))
        }
        _ => Ok(None),
    }
}

/// The result of one probe round.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub duration: Duration,
    /// `None` when the probe succeeded.
    pub failure: Option<FailureReason>,
    /// What was measured, also on failure (a 500 still has a status code).
    pub detail: Detail,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }
}

/// One line of verdict, then what was measured, one item per line: what `iocwatch probe`
/// prints.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let took = millis(self.duration);
        match self.failure {
            None => writeln!(f, "ok in {took}")?,
            Some(reason) => writeln!(f, "FAILED ({reason}) after {took}")?,
        }
        match &self.detail {
            Detail::None => Ok(()),
            Detail::Icmp(d) => d.fmt(f),
            Detail::Tcp { connect } => writeln!(f, "  connect {}", millis(*connect)),
            Detail::Http(d) => d.fmt(f),
            Detail::Dns(d) => d.fmt(f),
            Detail::Ports(d) => d.fmt(f),
            Detail::Tls(d) => d.fmt(f),
        }
    }
}

/// A duration as people read a round trip: `0.042 ms`.
pub(crate) fn millis(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

#[derive(Debug, Clone)]
pub enum Detail {
    None,
    Icmp(IcmpStats),
    Tcp { connect: Duration },
    Http(Box<HttpDetail>),
    Dns(Box<DnsDetail>),
    Ports(Box<PortsDetail>),
    Tls(Box<TlsDetail>),
}

/// The target's address, which ICMP, TCP, ports and TLS checks cannot do without; records
/// the error when it is missing.
pub(crate) fn require_address<'a>(
    kind: Kind,
    address: Option<&'a str>,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    if address.is_none() {
        errors.push(FieldError::unlocated(format!(
            "{kind} check needs the target's `address`"
        )));
    }
    address
}

/// Resolves `host` to one address, preferring the requested family. Used by ICMP and TCP;
/// HTTP resolves through its client so it can time the lookup.
pub(crate) async fn resolve_one(
    host: &str,
    port: u16,
    family: Option<IpFamily>,
) -> Result<std::net::SocketAddr, FailureReason> {
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| FailureReason::Dns)?;
    // A name with no address in the asked family is a DNS failure, not a silent switch.
    addrs
        .find(|addr| match family {
            None => true,
            Some(IpFamily::V4) => addr.is_ipv4(),
            Some(IpFamily::V6) => addr.is_ipv6(),
        })
        .ok_or(FailureReason::Dns)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum IpFamily {
    #[serde(rename = "ip4")]
    V4,
    #[serde(rename = "ip6")]
    V6,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_on_the_command_line_becomes_the_check_a_config_would_give() {
        let tcp = Probe::for_target(Kind::Tcp, "127.0.0.1:22").expect("tcp");
        assert_eq!(tcp.kind(), Kind::Tcp);
        assert!(matches!(
            Probe::for_target(Kind::Tls, "[::1]:8443"),
            Ok(Probe::Tls(_))
        ));
        assert!(matches!(
            Probe::for_target(Kind::Tls, "portal.example"),
            Ok(Probe::Tls(_))
        ));
        let icmp = Probe::for_target(Kind::Icmp, "127.0.0.1").expect("icmp");
        assert_eq!(
            icmp.min_round_time(),
            Duration::from_millis(400),
            "3 echoes, 200 ms apart by default"
        );
        assert!(matches!(
            Probe::for_target(Kind::Dns, "portal.example@127.0.0.1:5353"),
            Ok(Probe::Dns(_))
        ));
        assert!(matches!(
            Probe::for_target(Kind::Http, "http://127.0.0.1:10090/"),
            Ok(Probe::Http(_))
        ));
        let wrong = [
            (Kind::Tcp, "127.0.0.1", "expected HOST:PORT"),
            (Kind::Tcp, "127.0.0.1:99999", "invalid port"),
            (Kind::Dns, "portal.example", "expected NAME@SERVER"),
            (Kind::Http, "not a url", "url"),
        ];
        for (kind, target, says) in wrong {
            match Probe::for_target(kind, target) {
                Err(e) => assert!(e.contains(says), "{kind} {target}: {e}"),
                Ok(_) => panic!("{kind} {target} accepted"),
            }
        }
    }
}
