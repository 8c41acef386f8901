//! Metric families, on the agent's own registry (no global registry, so tests can run many
//! agents in one process). Per-check families are labelled by the catalog's [`LabelSchema`] and
//! rebuilt when it changes; the agent's own metrics live for the whole process.

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use std::sync::Arc;

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::catalog::LabelSchema;
use crate::probe::http_security::SecurityHeader;
use crate::probe::{Detail, FailureReason, Kind, Outcome};

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

fn remove_with<T: MetricVecBuilder>(
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

/// Handles to the series of one check, taken once: recording a result is then a few atomic
/// operations instead of hashing a dozen label values per family.
pub struct CheckSeries {
    values: Arc<[String]>,
    success: Gauge,
    last_run: Gauge,
    /// Not for ICMP: a round's length is set by count × spacing; the RTT histogram is the
    /// latency distribution there, and skipping it saves 18 series per ICMP check.
    duration: Option<Histogram>,
    kind: KindSeries,
}

enum KindSeries {
    Icmp {
        sent: IntCounter,
        received: IntCounter,
        rtt: Histogram,
        loss: Gauge,
        /// min, avg, max, stddev; `None` after a round without replies removed them.
        round: Option<[Gauge; 4]>,
    },
    Tcp {
        connect: Option<Gauge>,
    },
    Dns {
        rcode: Gauge,
        answers: Gauge,
        changed: Gauge,
    },
    Ports,
    Tls,
    Http {
        status: Gauge,
        body: Gauge,
        version: Gauge,
        redirects: Gauge,
        phases: [Gauge; 4],
    },
}

const ROUND_STATS: [&str; 4] = ["min", "avg", "max", "stddev"];
const PHASES: [&str; 4] = ["resolve", "connect", "processing", "transfer"];

impl CheckSeries {
    pub fn new(m: &CheckMetrics, kind: Kind, values: Arc<[String]>) -> CheckSeries {
        let base: Vec<&str> = values.iter().map(String::as_str).collect();
        let with = |extra: &'static str| {
            let mut v = base.clone();
            v.push(extra);
            v
        };
        // Label counts come from the same schema as the families, so lookups cannot fail;
        // `with_label_values` would panic if they did, which a test would catch at once.
        let kind_series = match kind {
            Kind::Icmp => KindSeries::Icmp {
                sent: m.icmp_sent.with_label_values(&base),
                received: m.icmp_received.with_label_values(&base),
                rtt: m.icmp_rtt.with_label_values(&base),
                loss: m.icmp_loss_ratio.with_label_values(&base),
                round: None,
            },
            Kind::Tcp => KindSeries::Tcp { connect: None },
            Kind::Ports => KindSeries::Ports,
            Kind::Tls => KindSeries::Tls,
            Kind::Dns => KindSeries::Dns {
                rcode: m.dns_rcode.with_label_values(&base),
                answers: m.dns_answers.with_label_values(&base),
                changed: m.dns_answer_changed.with_label_values(&base),
            },
            Kind::Http => KindSeries::Http {
                status: m.http_status.with_label_values(&base),
                body: m.http_body_bytes.with_label_values(&base),
                version: m.http_version.with_label_values(&base),
                redirects: m.http_redirects.with_label_values(&base),
                phases: PHASES.map(|p| m.http_phase.with_label_values(&with(p))),
            },
        };
        CheckSeries {
            success: m.success.with_label_values(&base),
            last_run: m.last_run.with_label_values(&base),
            duration: (kind != Kind::Icmp).then(|| m.duration.with_label_values(&base)),
            kind: kind_series,
            values,
        }
    }

    fn labels_with(&self, extra: &'static str) -> Vec<&str> {
        let mut v: Vec<&str> = self.values.iter().map(String::as_str).collect();
        v.push(extra);
        v
    }

    /// Records one round. `success` is written last: a scrape runs concurrently with this,
    /// and a reader that sees the new success value then also sees that round's details.
    pub fn record(&mut self, m: &CheckMetrics, outcome: &Outcome, finished_unix: f64) {
        if let Some(h) = &self.duration {
            h.observe(outcome.duration.as_secs_f64());
        }
        if let Some(reason) = outcome.failure {
            m.failures
                .with_label_values(&self.labels_with(reason.label()))
                .inc();
        }
        let values = Arc::clone(&self.values);
        let base = || values.iter().map(String::as_str).collect::<Vec<_>>();
        match (&mut self.kind, &outcome.detail) {
            (
                KindSeries::Icmp {
                    sent,
                    received,
                    rtt,
                    loss,
                    round,
                },
                Detail::Icmp(stats),
            ) => {
                sent.inc_by(u64::from(stats.sent));
                received.inc_by(u64::from(stats.received()));
                for r in &stats.rtts {
                    rtt.observe(r.as_secs_f64());
                }
                loss.set(stats.loss_ratio());
                let measured = [
                    stats.min().map(|d| d.as_secs_f64()),
                    stats.avg().map(|d| d.as_secs_f64()),
                    stats.max().map(|d| d.as_secs_f64()),
                    stats.stddev_seconds(),
                ];
                match measured {
                    [Some(min), Some(avg), Some(max), Some(sd)] => {
                        let gauges = round.get_or_insert_with(|| {
                            ROUND_STATS.map(|s| {
                                let mut v = base();
                                v.push(s);
                                m.icmp_round_rtt.with_label_values(&v)
                            })
                        });
                        for (g, v) in gauges.iter().zip([min, avg, max, sd]) {
                            g.set(v);
                        }
                    }
                    // No reply: no RTT rather than a misleading 0.
                    _ => {
                        if round.take().is_some() {
                            remove_with(&m.icmp_round_rtt, &base(), ROUND_STATS);
                        }
                    }
                }
            }
            (KindSeries::Tcp { connect }, Detail::Tcp { connect: took }) => {
                connect
                    .get_or_insert_with(|| m.tcp_connect.with_label_values(&base()))
                    .set(took.as_secs_f64());
            }
            (
                KindSeries::Http {
                    status,
                    body,
                    version,
                    redirects,
                    phases,
                },
                Detail::Http(http),
            ) => {
                status.set(f64::from(http.status));
                body.set(http.body_bytes as f64);
                version.set(http.version_number());
                redirects.set(f64::from(http.redirects));
                for (g, (_, d)) in phases.iter().zip(http.phases.named()) {
                    g.set(d.as_secs_f64());
                }
                if let Some(content) = &http.content {
                    let flag = |b: bool| if b { 1.0 } else { 0.0 };
                    m.content_changed
                        .with_label_values(&base())
                        .set(flag(content.changed));
                    m.content_forbidden
                        .with_label_values(&base())
                        .set(flag(!content.forbidden_found.is_empty()));
                }
                if let Some(posture) = &http.posture {
                    for (header, missing) in &posture.headers {
                        let mut labels = base();
                        labels.push(header.label());
                        m.http_header_missing
                            .with_label_values(&labels)
                            .set(if *missing { 1.0 } else { 0.0 });
                    }
                    m.http_version_disclosed.with_label_values(&base()).set(
                        if posture.version_disclosed.is_some() {
                            1.0
                        } else {
                            0.0
                        },
                    );
                    if let Some(moved) = posture.redirected_to_https {
                        m.http_redirected_to_https
                            .with_label_values(&base())
                            .set(if moved { 1.0 } else { 0.0 });
                    }
                }
                if let Some(not_after) = http.cert_not_after {
                    let secs = not_after
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    m.tls_expiry.with_label_values(&base()).set(secs);
                }
            }
            (
                KindSeries::Dns {
                    rcode,
                    answers,
                    changed,
                },
                Detail::Dns(dns),
            ) => {
                rcode.set(f64::from(dns.rcode));
                answers.set(dns.answers.len() as f64);
                changed.set(if dns.changed { 1.0 } else { 0.0 });
            }
            (KindSeries::Tls, Detail::Tls(tls)) => {
                let set = |family: &GaugeVec, v: f64| family.with_label_values(&base()).set(v);
                let flag = |b: bool| if b { 1.0 } else { 0.0 };
                set(&m.tls_grade, tls.grade.value());
                for (version, accepted) in &tls.legacy {
                    let mut labels = base();
                    labels.push(version);
                    m.tls_legacy_accepted
                        .with_label_values(&labels)
                        .set(flag(*accepted));
                }
                if !tls.version.is_empty() {
                    set(&m.tls_chain_valid, flag(tls.chain_valid));
                    set(&m.tls_hostname_match, flag(tls.hostname_match));
                    set(&m.tls_fingerprint_changed, flag(tls.fingerprint_changed));
                    let version = match tls.version {
                        "TLS1.3" => 1.3,
                        "TLS1.2" => 1.2,
                        _ => 0.0,
                    };
                    set(&m.tls_version, version);
                }
                if let Some(bits) = tls.key_bits {
                    set(&m.tls_key_bits, f64::from(bits));
                }
                let unix = |t: std::time::SystemTime| {
                    t.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64())
                };
                if let Some(t) = tls.leaf_not_after {
                    set(&m.tls_expiry, unix(t));
                }
                if let Some(t) = tls.chain_not_after {
                    set(&m.tls_chain_expiry, unix(t));
                }
            }
            (KindSeries::Ports, Detail::Ports(ports)) => {
                for port in &ports.audited {
                    let port_label = port.to_string();
                    let mut labels = base();
                    labels.push(&port_label);
                    let open = ports.unexpected_open.contains(port);
                    m.port_unexpected_open
                        .with_label_values(&labels)
                        .set(if open { 1.0 } else { 0.0 });
                }
            }
            // A failure before anything was measured (refused, timeout, dns).
            _ => {}
        }
        self.last_run.set(finished_unix);
        self.success.set(if outcome.success() { 1.0 } else { 0.0 });
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
