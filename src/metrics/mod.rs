//! Metric families, on the agent's own registry (no global registry, so tests can run many
//! agents in one process). Per-check families are labelled by the catalog's [`LabelSchema`] and
//! rebuilt when it changes; the agent's own metrics live for the whole process.

mod series;

pub use series::CheckSeries;
use series::{PHASES, ROUND_STATS};

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::catalog::LabelSchema;
use crate::probe::http_security::SecurityHeader;
use crate::probe::{FailureReason, Kind};

/// Buckets for round-trip and probe times on WAN links: 0.5 ms on a LAN to 10 s on a
/// congested or satellite link.
pub const WAN_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0,
];

/// The agent's own health: lives as long as the process.
pub struct AgentMetrics {
    pub lateness: HistogramVec,
    pub in_flight: IntGaugeVec,
    pub checks: IntGaugeVec,
    pub reload_successful: IntGauge,
    pub reload_success_timestamp: Gauge,
    pub reloads: IntCounterVec,
    pub icmp_socket: IntGaugeVec,
}

impl AgentMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<AgentMetrics> {
        let build_info = IntGaugeVec::new(
            Opts::new(
                "iocwatch_build_info",
                "Build of the running agent; always 1.",
            ),
            &["version", "revision", "rustversion"],
        )?;
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("IOCWATCH_REVISION").unwrap_or("unknown"),
                option_env!("IOCWATCH_RUSTC_VERSION").unwrap_or("unknown"),
            ])
            .set(1);
        registry.register(Box::new(build_info))?;
        let metrics = AgentMetrics {
            lateness: HistogramVec::new(
                HistogramOpts::new(
                    "iocwatch_scheduler_lateness_seconds",
                    "How late probes started against their schedule (waiting for a concurrency slot included).",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0]),
                &["kind"],
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new("iocwatch_probes_in_flight", "Probes running now."),
                &["kind"],
            )?,
            checks: IntGaugeVec::new(
                Opts::new("iocwatch_checks_configured", "Checks in the running config."),
                &["kind"],
            )?,
            reload_successful: IntGauge::new(
                "iocwatch_config_last_reload_successful",
                "Whether the last config load succeeded (1) or was refused (0).",
            )?,
            reload_success_timestamp: Gauge::new(
                "iocwatch_config_last_reload_success_timestamp_seconds",
                "Time of the last successful config load.",
            )?,
            reloads: IntCounterVec::new(
                Opts::new("iocwatch_config_reloads_total", "Config reloads by result."),
                &["result"],
            )?,
            icmp_socket: IntGaugeVec::new(
                Opts::new(
                    "iocwatch_icmp_socket_info",
                    "How ICMP sockets were opened: raw, datagram (unprivileged) or unavailable.",
                ),
                &["family", "mode"],
            )?,
        };
        for kind in Kind::ALL {
            metrics.in_flight.with_label_values(&[kind.as_str()]).set(0);
        }
        for result in ["success", "failure"] {
            metrics.reloads.with_label_values(&[result]).inc_by(0);
        }
        let collectors: [Box<dyn Collector>; 7] = [
            Box::new(metrics.lateness.clone()),
            Box::new(metrics.in_flight.clone()),
            Box::new(metrics.checks.clone()),
            Box::new(metrics.reload_successful.clone()),
            Box::new(metrics.reload_success_timestamp.clone()),
            Box::new(metrics.reloads.clone()),
            Box::new(metrics.icmp_socket.clone()),
        ];
        for c in collectors {
            registry.register(c)?;
        }
        Ok(metrics)
    }
}

/// Per-check families, labelled by one [`LabelSchema`].
pub struct CheckMetrics {
    pub schema: LabelSchema,
    pub success: GaugeVec,
    pub duration: HistogramVec,
    pub last_run: GaugeVec,
    pub failures: IntCounterVec,
    pub icmp_sent: IntCounterVec,
    pub icmp_received: IntCounterVec,
    pub icmp_rtt: HistogramVec,
    pub icmp_round_rtt: GaugeVec,
    pub icmp_loss_ratio: GaugeVec,
    pub tcp_connect: GaugeVec,
    pub http_status: GaugeVec,
    pub http_phase: GaugeVec,
    pub http_body_bytes: GaugeVec,
    pub http_version: GaugeVec,
    pub http_redirects: GaugeVec,
    pub tls_expiry: GaugeVec,
    pub http_header_missing: GaugeVec,
    pub http_version_disclosed: GaugeVec,
    pub http_redirected_to_https: GaugeVec,
    pub content_changed: GaugeVec,
    pub content_forbidden: GaugeVec,
    pub port_unexpected_open: GaugeVec,
    pub tls_grade: GaugeVec,
    pub tls_chain_expiry: GaugeVec,
    pub tls_legacy_accepted: GaugeVec,
    pub tls_fingerprint_changed: GaugeVec,
    pub tls_chain_valid: GaugeVec,
    pub tls_hostname_match: GaugeVec,
    pub tls_version: GaugeVec,
    pub tls_key_bits: GaugeVec,
    pub dns_rcode: GaugeVec,
    pub dns_answers: GaugeVec,
    pub dns_answer_changed: GaugeVec,
}

fn gauge(names: &[&str], name: &str, help: &str, extra: &[&str]) -> prometheus::Result<GaugeVec> {
    let labels: Vec<&str> = names.iter().chain(extra).copied().collect();
    GaugeVec::new(Opts::new(name, help), &labels)
}

fn counter(
    names: &[&str],
    name: &str,
    help: &str,
    extra: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let labels: Vec<&str> = names.iter().chain(extra).copied().collect();
    IntCounterVec::new(Opts::new(name, help), &labels)
}

fn histogram(names: &[&str], name: &str, help: &str) -> prometheus::Result<HistogramVec> {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(WAN_BUCKETS.to_vec()),
        names,
    )
}

impl CheckMetrics {
    pub fn new(schema: &LabelSchema) -> prometheus::Result<CheckMetrics> {
        let n = schema.names();
        Ok(CheckMetrics {
            schema: schema.clone(),
            success: gauge(&n, "iocwatch_probe_success", "Whether the last round of the check succeeded.", &[])?,
            duration: histogram(&n, "iocwatch_probe_duration_seconds", "Duration of probe rounds.")?,
            last_run: gauge(&n, "iocwatch_probe_last_run_timestamp_seconds", "When the last round finished.", &[])?,
            failures: counter(&n, "iocwatch_probe_failures_total", "Failed rounds by reason.", &["reason"])?,
            icmp_sent: counter(&n, "iocwatch_icmp_packets_sent_total", "ICMP echo requests sent.", &[])?,
            icmp_received: counter(&n, "iocwatch_icmp_packets_received_total", "ICMP echo replies received.", &[])?,
            icmp_rtt: histogram(&n, "iocwatch_icmp_rtt_seconds", "Round-trip time of every ICMP echo reply.")?,
            icmp_round_rtt: gauge(
                &n,
                "iocwatch_icmp_round_rtt_seconds",
                "Round-trip time of the last round: min, avg, max, stddev.",
                &["stat"],
            )?,
            icmp_loss_ratio: gauge(&n, "iocwatch_icmp_loss_ratio", "Share of echoes lost in the last round (0-1).", &[])?,
            tcp_connect: gauge(&n, "iocwatch_tcp_connect_seconds", "TCP handshake time of the last round.", &[])?,
            http_status: gauge(&n, "iocwatch_http_status_code", "HTTP status of the last response.", &[])?,
            http_phase: gauge(
                &n,
                "iocwatch_http_phase_seconds",
                "Time in each phase of the last request: resolve, connect (with TLS), processing, transfer.",
                &["phase"],
            )?,
            http_body_bytes: gauge(&n, "iocwatch_http_body_bytes", "Body size of the last response.", &[])?,
            http_version: gauge(&n, "iocwatch_http_version", "HTTP version of the last response (1.1, 2).", &[])?,
            http_redirects: gauge(&n, "iocwatch_http_redirects", "Redirects followed in the last request.", &[])?,
            tls_expiry: gauge(
                &n,
                "iocwatch_tls_cert_expiry_timestamp_seconds",
                "notAfter of the server's leaf certificate.",
                &[],
            )?,
            http_header_missing: gauge(
                &n,
                "iocwatch_http_security_header_missing",
                "1 when a security header is missing (checks with security_headers: true).",
                &["header"],
            )?,
            http_version_disclosed: gauge(
                &n,
                "iocwatch_http_server_version_disclosed",
                "1 when Server or X-Powered-By tells the software version.",
                &[],
            )?,
            http_redirected_to_https: gauge(
                &n,
                "iocwatch_http_redirected_to_https",
                "For http:// URLs: 1 when the site moves to HTTPS, 0 when it stays on plain HTTP.",
                &[],
            )?,
            content_changed: gauge(
                &n,
                "iocwatch_content_changed",
                "1 when the page differs from its baseline (defacement, or a change to accept).",
                &[],
            )?,
            content_forbidden: gauge(
                &n,
                "iocwatch_content_forbidden_phrase_found",
                "1 when the page holds a forbidden phrase (\"hacked by\").",
                &[],
            )?,
            port_unexpected_open: gauge(
                &n,
                "iocwatch_port_unexpected_open",
                "Ports audit: 1 when an audited port not expected open answers, 0 when it is closed.",
                &["port"],
            )?,
            tls_grade: gauge(&n, "iocwatch_tls_grade", "TLS grade: A = 4, B = 3, C = 2, F = 0.", &[])?,
            tls_chain_expiry: gauge(
                &n,
                "iocwatch_tls_chain_expiry_timestamp_seconds",
                "The earliest notAfter of the certificates the server sent.",
                &[],
            )?,
            tls_legacy_accepted: gauge(
                &n,
                "iocwatch_tls_legacy_protocol_accepted",
                "1 when the server still accepts a handshake at this legacy version.",
                &["version"],
            )?,
            tls_fingerprint_changed: gauge(
                &n,
                "iocwatch_tls_cert_fingerprint_changed",
                "1 when the leaf certificate differs from the baseline (the first seen).",
                &[],
            )?,
            tls_chain_valid: gauge(&n, "iocwatch_tls_chain_valid", "1 when the chain verifies against the trusted roots.", &[])?,
            tls_hostname_match: gauge(&n, "iocwatch_tls_hostname_match", "1 when the certificate matches the server name.", &[])?,
            tls_version: gauge(&n, "iocwatch_tls_version", "Negotiated TLS version (1.2, 1.3).", &[])?,
            tls_key_bits: gauge(&n, "iocwatch_tls_key_bits", "Size of the leaf certificate's public key.", &[])?,
            dns_rcode: gauge(&n, "iocwatch_dns_rcode", "DNS response code of the last answer (0 NOERROR, 3 NXDOMAIN).", &[])?,
            dns_answers: gauge(&n, "iocwatch_dns_answers", "Records of the asked type in the last answer.", &[])?,
            dns_answer_changed: gauge(
                &n,
                "iocwatch_dns_answer_changed",
                "1 when the answer set differs from the baseline (the first set seen): a hijack signal.",
                &[],
            )?,
        })
    }

    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.success.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.last_run.clone()),
            Box::new(self.failures.clone()),
            Box::new(self.icmp_sent.clone()),
            Box::new(self.icmp_received.clone()),
            Box::new(self.icmp_rtt.clone()),
            Box::new(self.icmp_round_rtt.clone()),
            Box::new(self.icmp_loss_ratio.clone()),
            Box::new(self.tcp_connect.clone()),
            Box::new(self.http_status.clone()),
            Box::new(self.http_phase.clone()),
            Box::new(self.http_body_bytes.clone()),
            Box::new(self.http_version.clone()),
            Box::new(self.http_redirects.clone()),
            Box::new(self.tls_expiry.clone()),
            Box::new(self.http_header_missing.clone()),
            Box::new(self.http_version_disclosed.clone()),
            Box::new(self.http_redirected_to_https.clone()),
            Box::new(self.content_changed.clone()),
            Box::new(self.content_forbidden.clone()),
            Box::new(self.port_unexpected_open.clone()),
            Box::new(self.tls_grade.clone()),
            Box::new(self.tls_chain_expiry.clone()),
            Box::new(self.tls_legacy_accepted.clone()),
            Box::new(self.tls_fingerprint_changed.clone()),
            Box::new(self.tls_chain_valid.clone()),
            Box::new(self.tls_hostname_match.clone()),
            Box::new(self.tls_version.clone()),
            Box::new(self.tls_key_bits.clone()),
            Box::new(self.dns_rcode.clone()),
            Box::new(self.dns_answers.clone()),
            Box::new(self.dns_answer_changed.clone()),
        ]
    }

    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        for c in self.collectors() {
            registry.register(c)?;
        }
        Ok(())
    }

    pub fn unregister(&self, registry: &Registry) {
        for c in self.collectors() {
            // Only fails if not registered, which is what we want anyway.
            let _ = registry.unregister(c);
        }
    }

    /// Removes every series of one check (used when a check is removed or relabelled);
    /// `ports` are the values its `port` label took, if it audits ports.
    pub fn remove(&self, values: &[String], ports: &[u16]) {
        let base: Vec<&str> = values.iter().map(String::as_str).collect();
        let plain = [
            &self.success,
            &self.last_run,
            &self.icmp_loss_ratio,
            &self.tcp_connect,
            &self.http_status,
            &self.http_body_bytes,
            &self.http_version,
            &self.http_redirects,
            &self.tls_expiry,
            &self.http_version_disclosed,
            &self.content_changed,
            &self.content_forbidden,
            &self.tls_grade,
            &self.tls_chain_expiry,
            &self.tls_fingerprint_changed,
            &self.tls_chain_valid,
            &self.tls_hostname_match,
            &self.tls_version,
            &self.tls_key_bits,
            &self.http_redirected_to_https,
            &self.dns_rcode,
            &self.dns_answers,
            &self.dns_answer_changed,
        ];
        for family in plain {
            let _ = family.remove_label_values(&base);
        }
        for family in [&self.duration, &self.icmp_rtt] {
            let _ = family.remove_label_values(&base);
        }
        for family in [&self.icmp_sent, &self.icmp_received] {
            let _ = family.remove_label_values(&base);
        }
        remove_with(
            &self.failures,
            &base,
            FailureReason::ALL.iter().map(|r| r.label()),
        );
        remove_with(&self.icmp_round_rtt, &base, ROUND_STATS);
        remove_with(&self.http_phase, &base, PHASES);
        remove_with(
            &self.http_header_missing,
            &base,
            SecurityHeader::ALL.iter().map(|h| h.label()),
        );
        remove_with(&self.tls_legacy_accepted, &base, ["TLS1.0", "TLS1.1"]);
        for port in ports {
            let port = port.to_string();
            let mut labels = base.clone();
            labels.push(&port);
            let _ = self.port_unexpected_open.remove_label_values(&labels);
        }
    }
}

pub(crate) fn remove_with<T: MetricVecBuilder>(
    family: &MetricVec<T>,
    base: &[&str],
    extra: impl IntoIterator<Item = &'static str>,
) {
    for value in extra {
        let mut labels = base.to_vec();
        labels.push(value);
        let _ = family.remove_label_values(&labels);
    }
}

/// Rollups per area and per system: how many targets are in each state.
pub struct RollupMetrics {
    pub area_targets: IntGaugeVec,
    pub area_info: IntGaugeVec,
    pub system_targets: IntGaugeVec,
    pub system_info: IntGaugeVec,
}

impl RollupMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<RollupMetrics> {
        let m = RollupMetrics {
            area_targets: IntGaugeVec::new(
                Opts::new(
                    "iocwatch_area_targets",
                    "Targets in the area and all areas below it, by state (up, degraded, down, unknown).",
                ),
                &["area", "state"],
            )?,
            area_info: IntGaugeVec::new(
                Opts::new("iocwatch_area_info", "One series per area: its name, parent, kind, level, path and position; always 1."),
                &["area", "parent", "name", "kind", "level", "area_path", "lat", "lon"],
            )?,
            system_targets: IntGaugeVec::new(
                Opts::new("iocwatch_system_targets", "Endpoints of a shared system by state."),
                &["system", "state"],
            )?,
            system_info: IntGaugeVec::new(
                Opts::new("iocwatch_system_info", "One series per shared system; always 1."),
                &["system", "name", "owner"],
            )?,
        };
        registry.register(Box::new(m.area_targets.clone()))?;
        registry.register(Box::new(m.area_info.clone()))?;
        registry.register(Box::new(m.system_targets.clone()))?;
        registry.register(Box::new(m.system_info.clone()))?;
        Ok(m)
    }
}

/// Renders the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let families = registry.gather();
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .unwrap_or_else(|e| format!("# error encoding metrics: {e}\n"))
}
