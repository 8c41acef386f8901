//! Recording one round into the series of its check, through handles taken once per check.

use std::sync::Arc;

use prometheus::{Gauge, GaugeVec, Histogram, IntCounter};

use super::{remove_with, CheckMetrics};
use crate::probe::{Detail, Kind, Outcome};

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

pub(super) const ROUND_STATS: [&str; 4] = ["min", "avg", "max", "stddev"];
pub(super) const PHASES: [&str; 4] = ["resolve", "connect", "processing", "transfer"];

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

    /// Records one round. A scrape gathers families one at a time, in no fixed order, so it
    /// may see part of a round; every value is still that of one finished round or the next.
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
