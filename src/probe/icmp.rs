//! ICMP echo: N echo requests per round over one shared socket per address family
//! (`icmp_socket.rs`).
//!
//! Raw sockets need CAP_NET_RAW; without it the kernel's unprivileged datagram ping sockets
//! are used (allowed when `net.ipv4.ping_group_range` covers our group). If neither works the
//! ICMP checks report `icmp_unavailable` and every other probe keeps running.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::icmp_socket::{Answer, EchoSocket};
use super::{resolve_one, Detail, FailureReason, IpFamily};
use crate::model::{FieldError, PromDuration};

const MAX_COUNT: u16 = 100;
const MAX_PAYLOAD: u16 = 1400;
static ZEROS: [u8; MAX_PAYLOAD as usize] = [0; MAX_PAYLOAD as usize];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpConfig {
    /// Alert conditions of this check, over the built-in ones and the matching rules.
    #[serde(default)]
    pub alerts: Option<Box<crate::model::AlertsConfig>>,
    /// Name of the check within its target; defaults to `icmp`.
    #[serde(default)]
    pub name: Option<String>,
    /// Echo requests per round.
    #[serde(default = "default_count")]
    pub count: u16,
    /// Time between the echo requests of one round.
    #[serde(default = "default_spacing")]
    pub spacing: PromDuration,
    /// Bytes of payload in each echo request.
    #[serde(default = "default_payload")]
    pub payload_bytes: u16,
    /// Restrict name resolution to one family.
    #[serde(default)]
    pub ip_family: Option<IpFamily>,
}

fn default_count() -> u16 {
    3
}
fn default_spacing() -> PromDuration {
    PromDuration(Duration::from_millis(200))
}
fn default_payload() -> u16 {
    56
}

/// A validated ICMP check.
#[derive(Debug)]
pub struct IcmpProbe {
    host: String,
    /// `host` when it is an address: parsed once, not every round.
    ip: Option<IpAddr>,
    count: u16,
    spacing: Duration,
    payload_bytes: u16,
    ip_family: Option<IpFamily>,
}

impl IcmpProbe {
    pub fn new(config: &IcmpConfig, address: Option<&str>) -> Result<IcmpProbe, Vec<FieldError>> {
        let mut errors = Vec::new();
        if config.count == 0 || config.count > MAX_COUNT {
            errors.push(FieldError::unlocated(format!(
                "icmp count must be between 1 and {MAX_COUNT}, got {}",
                config.count
            )));
        }
        if config.payload_bytes > MAX_PAYLOAD {
            errors.push(FieldError::unlocated(format!(
                "icmp payload_bytes must be at most {MAX_PAYLOAD}, got {}",
                config.payload_bytes
            )));
        }
        let Some(host) = super::require_address(super::Kind::Icmp, address, &mut errors) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(IcmpProbe {
            ip: host.parse().ok(),
            host: host.to_owned(),
            count: config.count,
            spacing: config.spacing.0,
            payload_bytes: config.payload_bytes,
            ip_family: config.ip_family,
        })
    }

    /// The time a round needs at the least: the spacing between its echoes.
    pub fn min_round_time(&self) -> Duration {
        self.spacing * u32::from(self.count.saturating_sub(1))
    }

    pub async fn run(
        &self,
        clients: &IcmpClients,
        deadline: Instant,
    ) -> (Option<FailureReason>, Detail) {
        let ip = match self.ip {
            Some(ip) => ip,
            None => match resolve_one(&self.host, 0, self.ip_family).await {
                Ok(addr) => addr.ip(),
                Err(reason) => return (Some(reason), Detail::None),
            },
        };
        let Some(socket) = clients.for_ip(ip) else {
            return (Some(FailureReason::IcmpUnavailable), Detail::None);
        };
        let payload = &ZEROS[..usize::from(self.payload_bytes)];
        let ident = next_id(&IDENTS);
        let first_send = Instant::now();

        // Echoes of one round go out `spacing` apart and are awaited together, so a lost
        // reply does not delay the next request.
        let echoes = (0..self.count).map(|i| {
            async move {
                if i > 0 {
                    tokio::time::sleep_until(first_send + self.spacing * u32::from(i)).await;
                }
                if Instant::now() >= deadline {
                    return Echo::NotSent;
                }
                match socket
                    .echo(ip, ident, next_id(&SEQUENCES), payload, deadline)
                    .await
                {
                    Ok(Some(Answer::Reply(rtt))) => Echo::Reply(rtt),
                    // The kernel's "host unreachable" after a failed ARP, a router's "network
                    // unreachable": answers, but not from the target.
                    Ok(Some(Answer::Unreachable)) => Echo::Unreachable,
                    Ok(None) => Echo::Lost,
                    Err(e) if e.raw_os_error() == Some(libc::EHOSTUNREACH) => Echo::Unreachable,
                    Err(e) => Echo::Failed(FailureReason::from_io(&e)),
                }
            }
        });
        let results = futures_util::future::join_all(echoes).await;

        let mut stats = IcmpStats::default();
        let mut failure = None;
        for echo in results {
            match echo {
                Echo::NotSent => {}
                Echo::Reply(rtt) => {
                    stats.sent += 1;
                    stats.rtts.push(rtt);
                }
                Echo::Lost => stats.sent += 1,
                Echo::Unreachable => {
                    stats.sent += 1;
                    failure = Some(FailureReason::Unreachable);
                }
                Echo::Failed(reason) => failure = failure.or(Some(reason)),
            }
        }
        let failure = if stats.received() > 0 {
            None
        } else {
            Some(failure.unwrap_or(FailureReason::Timeout))
        };
        (failure, Detail::Icmp(stats))
    }
}

enum Echo {
    NotSent,
    Reply(Duration),
    Lost,
    Unreachable,
    Failed(FailureReason),
}

static IDENTS: AtomicU16 = AtomicU16::new(1);
static SEQUENCES: AtomicU16 = AtomicU16::new(1);

/// Identifiers and sequence numbers are unique across the whole agent (mod 2^16), so that
/// concurrent rounds to the same host never wait on each other's replies. On datagram sockets
/// the kernel rewrites the identifier, which makes the sequence the only key.
fn next_id(counter: &AtomicU16) -> u16 {
    counter.fetch_add(1, Ordering::Relaxed)
}

/// What one round measured.
#[derive(Debug, Clone, Default)]
pub struct IcmpStats {
    pub sent: u32,
    pub rtts: Vec<Duration>,
}

impl IcmpStats {
    pub fn received(&self) -> u32 {
        u32::try_from(self.rtts.len()).unwrap_or(u32::MAX)
    }

    pub fn loss_ratio(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        1.0 - f64::from(self.received()) / f64::from(self.sent)
    }

    pub fn min(&self) -> Option<Duration> {
        self.rtts.iter().min().copied()
    }

    pub fn max(&self) -> Option<Duration> {
        self.rtts.iter().max().copied()
    }

    pub fn avg(&self) -> Option<Duration> {
        let n = u32::try_from(self.rtts.len()).ok().filter(|n| *n > 0)?;
        Some(self.rtts.iter().sum::<Duration>() / n)
    }

    /// Population standard deviation of the round-trip times, in seconds.
    pub fn stddev_seconds(&self) -> Option<f64> {
        let avg = self.avg()?.as_secs_f64();
        let n = self.rtts.len() as f64;
        let var = self
            .rtts
            .iter()
            .map(|r| (r.as_secs_f64() - avg).powi(2))
            .sum::<f64>()
            / n;
        Some(var.sqrt())
    }
}

/// One echo socket per address family, shared by every ICMP check, each with the task that
/// reads it (stopped when the clients are dropped).
pub struct IcmpClients {
    v4: Option<Arc<EchoSocket>>,
    v6: Option<Arc<EchoSocket>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// How the sockets were opened, for the start-up message and the `iocwatch_icmp_socket` metric.
    pub mode_v4: SocketMode,
    pub mode_v6: SocketMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketMode {
    Raw,
    Datagram,
    Unavailable,
}

impl SocketMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SocketMode::Raw => "raw",
            SocketMode::Datagram => "datagram",
            SocketMode::Unavailable => "unavailable",
        }
    }
}

impl IcmpClients {
    /// Opens the sockets; must run inside the tokio runtime. Never fails: a family that
    /// cannot be opened is logged once, with what to do about it, and reported per probe.
    pub fn open() -> IcmpClients {
        let (v4, mode_v4) = open_family(false);
        let (v6, mode_v6) = open_family(true);
        let readers = [&v4, &v6]
            .into_iter()
            .flatten()
            .map(|socket| tokio::spawn(Arc::clone(socket).receive()))
            .collect();
        IcmpClients {
            v4,
            v6,
            readers,
            mode_v4,
            mode_v6,
        }
    }

    fn for_ip(&self, ip: IpAddr) -> Option<&EchoSocket> {
        match ip {
            IpAddr::V4(_) => self.v4.as_deref(),
            IpAddr::V6(_) => self.v6.as_deref(),
        }
    }

    /// The sockets' receive buffers and the replies the kernel dropped for want of room,
    /// read at scrape time: a false loss shows here before anyone blames the link.
    pub fn collector(&self) -> prometheus::Result<Box<dyn prometheus::core::Collector>> {
        let buffer = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "iocwatch_icmp_receive_buffer_bytes",
                "Receive buffer the kernel granted the ICMP socket.",
            ),
            &["family"],
        )?;
        let dropped = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "iocwatch_icmp_receive_dropped_total",
                "Echo replies the kernel dropped because the ICMP socket's receive buffer was full.",
            ),
            &["family"],
        )?;
        let sockets = [("ip4", &self.v4), ("ip6", &self.v6)]
            .into_iter()
            .filter_map(|(family, socket)| socket.clone().map(|s| (family, s)))
            .collect();
        Ok(Box::new(SocketCollector {
            sockets,
            buffer,
            dropped,
        }))
    }
}

struct SocketCollector {
    sockets: Vec<(&'static str, Arc<EchoSocket>)>,
    buffer: prometheus::IntGaugeVec,
    dropped: prometheus::IntCounterVec,
}

impl prometheus::core::Collector for SocketCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut descs = self.buffer.desc();
        descs.extend(self.dropped.desc());
        descs
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        for (family, socket) in &self.sockets {
            let size = i64::try_from(socket.receive_buffer).unwrap_or(i64::MAX);
            self.buffer.with_label_values(&[family]).set(size);
            let counter = self.dropped.with_label_values(&[family]);
            // The kernel's count only grows; the counter follows it.
            counter.inc_by(socket.drops().saturating_sub(counter.get()));
        }
        let mut families = self.buffer.collect();
        families.extend(self.dropped.collect());
        families
    }
}

impl Drop for IcmpClients {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

fn open_family(v6: bool) -> (Option<Arc<EchoSocket>>, SocketMode) {
    let family = if v6 { "IPv6" } else { "IPv4" };
    match EchoSocket::open(v6) {
        Ok(socket) => {
            let mode = if socket.datagram {
                tracing::warn!(
                    family,
                    "no CAP_NET_RAW: ICMP uses unprivileged datagram ping sockets; grant it with \
                     `setcap cap_net_raw+ep $(which iocwatch)` or systemd AmbientCapabilities=CAP_NET_RAW"
                );
                SocketMode::Datagram
            } else {
                SocketMode::Raw
            };
            if socket.receive_buffer < 4 << 20 {
                tracing::warn!(
                    family,
                    bytes = socket.receive_buffer,
                    "small ICMP receive buffer: with thousands of targets a second, replies may be \
                     dropped before they are read (iocwatch_icmp_receive_dropped_total); raise \
                     net.core.rmem_max to 16777216"
                );
            }
            (Some(Arc::new(socket)), mode)
        }
        Err(error) => {
            tracing::error!(
                family,
                %error,
                "cannot open an ICMP socket: ICMP checks will fail with reason icmp_unavailable, \
                 other checks keep running. Run with CAP_NET_RAW (`setcap cap_net_raw+ep \
                 $(which iocwatch)` or systemd AmbientCapabilities=CAP_NET_RAW), or allow \
                 unprivileged ping with sysctl net.ipv4.ping_group_range=\"0 2147483647\""
            );
            (None, SocketMode::Unavailable)
        }
    }
}

impl std::fmt::Display for IcmpStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  sent {}, received {}, loss {:.0}%",
            self.sent,
            self.received(),
            self.loss_ratio() * 100.0
        )?;
        if let (Some(min), Some(avg), Some(max), Some(sd)) =
            (self.min(), self.avg(), self.max(), self.stddev_seconds())
        {
            writeln!(
                f,
                "  rtt min/avg/max/stddev = {}/{}/{}/{:.3} ms",
                super::millis(min),
                super::millis(avg),
                super::millis(max),
                sd * 1000.0
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(host: &str, count: u16) -> IcmpProbe {
        let config = IcmpConfig {
            alerts: None,
            name: None,
            count,
            spacing: PromDuration(Duration::from_millis(10)),
            payload_bytes: 56,
            ip_family: None,
        };
        IcmpProbe::new(&config, Some(host)).expect("valid config")
    }

    #[tokio::test]
    async fn loopback_answers_every_echo() {
        let clients = IcmpClients::open();
        // Every address in 127.0.0.0/8 answers on Linux.
        let p = probe("127.0.0.9", 4);
        let deadline = Instant::now() + Duration::from_secs(2);
        let (failure, detail) = p.run(&clients, deadline).await;
        assert_eq!(failure, None);
        let Detail::Icmp(stats) = detail else {
            panic!("expected icmp detail, got {detail:?}")
        };
        assert_eq!(stats.sent, 4);
        assert_eq!(stats.received(), 4);
        assert_eq!(stats.loss_ratio(), 0.0);
        let (min, max) = (stats.min().expect("min"), stats.max().expect("max"));
        assert!(min <= stats.avg().expect("avg") && stats.avg().expect("avg") <= max);
        assert!(stats.stddev_seconds().expect("stddev") >= 0.0);
    }

    #[tokio::test]
    async fn ipv6_loopback_answers() {
        let clients = IcmpClients::open();
        let (failure, detail) = probe("::1", 2)
            .run(&clients, Instant::now() + Duration::from_secs(2))
            .await;
        assert_eq!(failure, None, "{detail:?}");
    }

    #[tokio::test]
    async fn names_are_resolved_before_pinging() {
        let clients = IcmpClients::open();
        // "localhost" comes from /etc/hosts: no query leaves the machine.
        let mut named = probe("localhost", 1);
        named.ip_family = Some(IpFamily::V4);
        let (failure, detail) = named
            .run(&clients, Instant::now() + Duration::from_secs(2))
            .await;
        assert_eq!(failure, None, "{detail:?}");
    }

    #[test]
    fn config_limits_are_enforced() {
        let mut config = IcmpConfig {
            alerts: None,
            name: None,
            count: 0,
            spacing: default_spacing(),
            payload_bytes: 5000,
            ip_family: None,
        };
        let errors = IcmpProbe::new(&config, Some("127.0.0.1")).expect_err("invalid");
        assert_eq!(errors.len(), 2);
        config.count = 3;
        config.payload_bytes = 56;
        let errors = IcmpProbe::new(&config, None).expect_err("no address");
        assert!(errors[0].message.contains("address"));
    }

    #[test]
    fn stats_of_a_round() {
        let stats = IcmpStats {
            sent: 4,
            rtts: vec![Duration::from_millis(10), Duration::from_millis(30)],
        };
        assert_eq!(stats.loss_ratio(), 0.5);
        assert_eq!(stats.avg(), Some(Duration::from_millis(20)));
        let sd = stats.stddev_seconds().expect("two samples");
        assert!((sd - 0.010).abs() < 1e-9);
    }
}
