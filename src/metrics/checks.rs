//! Per-check series, kept as compact values and written out at scrape time. The prometheus
//! crate stores every series with its own copy of every label pair: at 24 series a check and
//! a dozen labels that was tens of kilobytes a check, and a scrape of 10,000 checks built a
//! 30 MB text in one piece. Here a check is one [`Cell`]: its label set written once, as text,
//! and its values as atomics (NaN for "not measured"), a few hundred bytes; the scrape writes
//! families one after the other in chunks, so its memory stays flat whatever the count.
//!
//! The state (the one owner of results) writes cells; the server reads them while it writes a
//! scrape, without a lock: each value is read atomically, so a scrape may show one round's
//! loss beside the next round's counters, as it could before.

use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use crate::catalog::{Catalog, Check};
use crate::probe::http_security::SecurityHeader;
use crate::probe::{Detail, FailureReason, Kind, Outcome};

use super::WAN_BUCKETS;

/// An `f64` in an atomic, NaN when there is no value.
#[derive(Debug)]
struct Value(AtomicU64);

impl Value {
    fn none() -> Value {
        Value(AtomicU64::new(f64::NAN.to_bits()))
    }

    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    fn clear(&self) {
        self.set(f64::NAN);
    }

    fn get(&self) -> Option<f64> {
        let v = f64::from_bits(self.0.load(Ordering::Relaxed));
        (!v.is_nan()).then_some(v)
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// A histogram with the WAN buckets: counts per bucket (not cumulative), sum and count.
#[derive(Debug)]
struct Histogram {
    buckets: [AtomicU64; WAN_BUCKETS.len()],
    /// Above the last bucket.
    over: AtomicU64,
    sum: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            over: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Only the state writes, so a load and a store cannot lose an update.
    fn observe(&self, v: f64) {
        match WAN_BUCKETS.iter().position(|le| v <= *le) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed)) + v;
        self.sum.store(sum.to_bits(), Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum::<u64>()
            + self.over.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct IcmpCell {
    sent: AtomicU64,
    received: AtomicU64,
    rtt: Histogram,
    loss: Value,
    /// min, avg, max, stddev of the last round; NaN after a round without replies.
    round: [Value; 4],
}

#[derive(Debug)]
struct HttpCell {
    status: Value,
    body: Value,
    version: Value,
    redirects: Value,
    phases: [Value; 4],
    cert_expiry: Value,
    header_missing: [Value; SecurityHeader::ALL.len()],
    version_disclosed: Value,
    redirected_to_https: Value,
    content_changed: Value,
    content_forbidden: Value,
}

#[derive(Debug)]
struct TlsCell {
    grade: Value,
    legacy: [Value; 2],
    chain_valid: Value,
    hostname_match: Value,
    fingerprint_changed: Value,
    version: Value,
    key_bits: Value,
    expiry: Value,
    chain_expiry: Value,
}

#[derive(Debug)]
struct DnsCell {
    rcode: Value,
    answers: Value,
    changed: Value,
}

#[derive(Debug)]
enum Values {
    Icmp(Box<IcmpCell>),
    Tcp { connect: Value },
    Http(Box<HttpCell>),
    Dns(Box<DnsCell>),
    Ports(Box<[(u16, Value)]>),
    Tls(Box<TlsCell>),
}

/// The series of one check.
#[derive(Debug)]
pub struct Cell {
    /// `target="…",check="…",…`: the label set every series of the check starts with.
    labels: Box<str>,
    success: Value,
    last_run: Value,
    /// Counts by reason, made at the first failure: most checks never fail.
    failures: OnceLock<Box<[AtomicU64; FailureReason::ALL.len()]>>,
    /// Round durations; not for ICMP, whose round is count × spacing and whose latency is the
    /// RTT histogram. Boxed: 136 bytes inline would sit empty in every ICMP check's cell.
    duration: Option<Box<Histogram>>,
    values: Values,
}

const PHASES: [&str; 4] = ["resolve", "connect", "processing", "transfer"];
const ROUND_STATS: [&str; 4] = ["min", "avg", "max", "stddev"];
const LEGACY: [&str; 2] = ["TLS1.0", "TLS1.1"];

impl Cell {
    fn new(check: &Check, labels: String) -> Cell {
        let values = match check.kind {
            Kind::Icmp => Values::Icmp(Box::new(IcmpCell {
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
                rtt: Histogram::new(),
                loss: Value::none(),
                round: std::array::from_fn(|_| Value::none()),
            })),
            Kind::Tcp => Values::Tcp {
                connect: Value::none(),
            },
            Kind::Http => Values::Http(Box::new(HttpCell {
                status: Value::none(),
                body: Value::none(),
                version: Value::none(),
                redirects: Value::none(),
                phases: std::array::from_fn(|_| Value::none()),
                cert_expiry: Value::none(),
                header_missing: std::array::from_fn(|_| Value::none()),
                version_disclosed: Value::none(),
                redirected_to_https: Value::none(),
                content_changed: Value::none(),
                content_forbidden: Value::none(),
            })),
            Kind::Dns => Values::Dns(Box::new(DnsCell {
                rcode: Value::none(),
                answers: Value::none(),
                changed: Value::none(),
            })),
            Kind::Ports => Values::Ports(
                check
                    .probe
                    .audited_ports()
                    .iter()
                    .map(|p| (*p, Value::none()))
                    .collect(),
            ),
            Kind::Tls => Values::Tls(Box::new(TlsCell {
                grade: Value::none(),
                legacy: std::array::from_fn(|_| Value::none()),
                chain_valid: Value::none(),
                hostname_match: Value::none(),
                fingerprint_changed: Value::none(),
                version: Value::none(),
                key_bits: Value::none(),
                expiry: Value::none(),
                chain_expiry: Value::none(),
            })),
        };
        Cell {
            labels: labels.into_boxed_str(),
            success: Value::none(),
            last_run: Value::none(),
            failures: OnceLock::new(),
            duration: (check.kind != Kind::Icmp).then(|| Box::new(Histogram::new())),
            values,
        }
    }

    /// Records one round.
    pub fn record(&self, outcome: &Outcome, finished_unix: f64) {
        if let Some(h) = &self.duration {
            h.observe(outcome.duration.as_secs_f64());
        }
        if let Some(reason) = outcome.failure {
            if let Some(i) = FailureReason::ALL.iter().position(|r| *r == reason) {
                let failures = self
                    .failures
                    .get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
                failures[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        match (&self.values, &outcome.detail) {
            (Values::Icmp(c), Detail::Icmp(stats)) => {
                c.sent.fetch_add(u64::from(stats.sent), Ordering::Relaxed);
                c.received
                    .fetch_add(u64::from(stats.received()), Ordering::Relaxed);
                for rtt in &stats.rtts {
                    c.rtt.observe(rtt.as_secs_f64());
                }
                c.loss.set(stats.loss_ratio());
                let measured = [
                    stats.min().map(|d| d.as_secs_f64()),
                    stats.avg().map(|d| d.as_secs_f64()),
                    stats.max().map(|d| d.as_secs_f64()),
                    stats.stddev_seconds(),
                ];
                // No reply: no RTT rather than a misleading 0.
                for (value, m) in c.round.iter().zip(measured) {
                    match m {
                        Some(v) if stats.received() > 0 => value.set(v),
                        _ => value.clear(),
                    }
                }
            }
            (Values::Tcp { connect }, Detail::Tcp { connect: took }) => {
                connect.set(took.as_secs_f64())
            }
            (Values::Http(c), Detail::Http(http)) => {
                c.status.set(f64::from(http.status));
                c.body.set(http.body_bytes as f64);
                c.version.set(http.version_number());
                c.redirects.set(f64::from(http.redirects));
                for (value, (_, d)) in c.phases.iter().zip(http.phases.named()) {
                    value.set(d.as_secs_f64());
                }
                if let Some(content) = &http.content {
                    c.content_changed.set(flag(content.changed));
                    c.content_forbidden
                        .set(flag(!content.forbidden_found.is_empty()));
                }
                if let Some(posture) = &http.posture {
                    for (header, missing) in &posture.headers {
                        if let Some(i) = SecurityHeader::ALL.iter().position(|h| h == header) {
                            c.header_missing[i].set(flag(*missing));
                        }
                    }
                    c.version_disclosed
                        .set(flag(posture.version_disclosed.is_some()));
                    if let Some(moved) = posture.redirected_to_https {
                        c.redirected_to_https.set(flag(moved));
                    }
                }
                if let Some(not_after) = http.cert_not_after {
                    c.cert_expiry.set(unix(not_after));
                }
            }
            (Values::Dns(c), Detail::Dns(dns)) => {
                c.rcode.set(f64::from(dns.rcode));
                c.answers.set(dns.answers.len() as f64);
                c.changed.set(flag(dns.changed));
            }
            (Values::Tls(c), Detail::Tls(tls)) => {
                c.grade.set(tls.grade.value());
                for (version, accepted) in &tls.legacy {
                    if let Some(i) = LEGACY.iter().position(|v| v == version) {
                        c.legacy[i].set(flag(*accepted));
                    }
                }
                if !tls.version.is_empty() {
                    c.chain_valid.set(flag(tls.chain_valid));
                    c.hostname_match.set(flag(tls.hostname_match));
                    c.fingerprint_changed.set(flag(tls.fingerprint_changed));
                    c.version.set(match tls.version {
                        "TLS1.3" => 1.3,
                        "TLS1.2" => 1.2,
                        _ => 0.0,
                    });
                }
                if let Some(bits) = tls.key_bits {
                    c.key_bits.set(f64::from(bits));
                }
                if let Some(t) = tls.leaf_not_after {
                    c.expiry.set(unix(t));
                }
                if let Some(t) = tls.chain_not_after {
                    c.chain_expiry.set(unix(t));
                }
            }
            (Values::Ports(ports), Detail::Ports(found)) => {
                for (port, value) in ports.iter() {
                    if found.audited.contains(port) {
                        value.set(flag(found.unexpected_open.contains(port)));
                    }
                }
            }
            // A failure before anything was measured (refused, timeout, dns).
            _ => {}
        }
        self.last_run.set(finished_unix);
        self.success.set(flag(outcome.success()));
    }
}

fn unix(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Where the text goes.
struct Out<'a> {
    text: &'a mut String,
}

impl Out<'_> {
    // Hundreds of thousands of lines a scrape: written piece by piece, without the
    // formatting machinery, and numbers with itoa and ryu.
    fn line(&mut self, name: &str, labels: &str, extra: Option<(&str, &str)>, value: f64) {
        let text = &mut *self.text;
        text.push_str(name);
        text.push('{');
        text.push_str(labels);
        if let Some((k, v)) = extra {
            text.push(',');
            text.push_str(k);
            text.push_str("=\"");
            text.push_str(v);
            text.push('"');
        }
        text.push_str("} ");
        number(text, value);
        text.push('\n');
    }

    fn histogram(&mut self, name: &str, labels: &str, h: &Histogram) {
        let text = &mut *self.text;
        let mut integer = itoa::Buffer::new();
        let mut cumulative = 0u64;
        for (le, bucket) in LE_LABELS.iter().zip(&h.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            text.push_str(name);
            text.push_str("_bucket{");
            text.push_str(labels);
            text.push_str(le);
            text.push_str(integer.format(cumulative));
            text.push('\n');
        }
        let count = cumulative + h.over.load(Ordering::Relaxed);
        for (suffix, closing) in [("_bucket{", ",le=\"+Inf\"} "), ("_count{", "} ")] {
            text.push_str(name);
            text.push_str(suffix);
            text.push_str(labels);
            text.push_str(closing);
            text.push_str(integer.format(count));
            text.push('\n');
        }
        text.push_str(name);
        text.push_str("_sum{");
        text.push_str(labels);
        text.push_str("} ");
        number(text, f64::from_bits(h.sum.load(Ordering::Relaxed)));
        text.push('\n');
    }
}

/// `,le="0.005"} ` for each bucket, written once.
static LE_LABELS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    WAN_BUCKETS
        .iter()
        .map(|le| {
            let mut text = String::from(",le=\"");
            number(&mut text, *le);
            text.push_str("\"} ");
            text
        })
        .collect()
});

/// A number as Prometheus reads it: whole numbers without a fraction, others shortest.
fn number(text: &mut String, value: f64) {
    if value.is_infinite() {
        text.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        text.push_str(itoa::Buffer::new().format(value as i64));
    } else {
        text.push_str(ryu::Buffer::new().format(value));
    }
}

/// One family: its name, help and type, and how a cell writes its series.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    write: fn(&Cell, &mut Out<'_>, &'static str),
}

/// A family with one series per check: `value` reads it from a cell (`None`: no series).
macro_rules! single {
    ($name:literal, $kind:literal, $help:literal, |$cell:ident| $value:expr) => {
        Family {
            name: $name,
            help: $help,
            kind: $kind,
            write: |$cell, out, name| {
                let value: Option<f64> = $value;
                if let Some(v) = value {
                    out.line(name, &$cell.labels, None, v);
                }
            },
        }
    };
}

/// A gauge read from a field of a boxed kind's values.
macro_rules! field {
    ($name:literal, $help:literal, $variant:ident, $field:ident) => {
        single!($name, "gauge", $help, |cell| match &cell.values {
            Values::$variant(c) => c.$field.get(),
            _ => None,
        })
    };
}

/// A gauge with one more label: `pairs` gives (label value, value) for a cell.
macro_rules! labelled {
    ($name:literal, $help:literal, $label:literal, |$cell:ident| $pairs:expr) => {
        Family {
            name: $name,
            help: $help,
            kind: "gauge",
            write: |$cell, out, name| {
                for (label, v) in $pairs {
                    if let Some(v) = v.get() {
                        out.line(name, &$cell.labels, Some(($label, label)), v);
                    }
                }
            },
        }
    };
}

/// Every per-check family, in the order a scrape writes them.
const FAMILIES: &[Family] = &[
    single!("iocwatch_probe_success", "gauge", "Whether the last round of the check succeeded.", |cell| cell.success.get()),
    Family {
        name: "iocwatch_probe_duration_seconds",
        help: "Duration of probe rounds.",
        kind: "histogram",
        write: |cell, out, name| {
            if let Some(h) = cell.duration.as_ref().filter(|h| h.count() > 0) {
                out.histogram(name, &cell.labels, h);
            }
        },
    },
    single!("iocwatch_probe_last_run_timestamp_seconds", "gauge", "When the last round finished.", |cell| cell.last_run.get()),
    Family {
        name: "iocwatch_probe_failures_total",
        help: "Failed rounds by reason.",
        kind: "counter",
        write: |cell, out, name| {
            let Some(failures) = cell.failures.get() else {
                return;
            };
            for (reason, n) in FailureReason::ALL.iter().zip(failures.iter()) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    out.line(name, &cell.labels, Some(("reason", reason.label())), n as f64);
                }
            }
        },
    },
    single!("iocwatch_icmp_packets_sent_total", "counter", "ICMP echo requests sent.", |cell| match &cell.values {
        Values::Icmp(c) => Some(c.sent.load(Ordering::Relaxed) as f64),
        _ => None,
    }),
    single!("iocwatch_icmp_packets_received_total", "counter", "ICMP echo replies received.", |cell| match &cell.values {
        Values::Icmp(c) => Some(c.received.load(Ordering::Relaxed) as f64),
        _ => None,
    }),
    Family {
        name: "iocwatch_icmp_rtt_seconds",
        help: "Round-trip time of every ICMP echo reply.",
        kind: "histogram",
        write: |cell, out, name| {
            if let Values::Icmp(c) = &cell.values {
                out.histogram(name, &cell.labels, &c.rtt);
            }
        },
    },
    labelled!("iocwatch_icmp_round_rtt_seconds", "Round-trip time of the last round: min, avg, max, stddev.", "stat", |cell| match &cell.values {
        Values::Icmp(c) => Some(ROUND_STATS.iter().copied().zip(&c.round)),
        _ => None,
    }.into_iter().flatten()),
    field!("iocwatch_icmp_loss_ratio", "Share of echoes lost in the last round (0-1).", Icmp, loss),
    single!("iocwatch_tcp_connect_seconds", "gauge", "TCP handshake time of the last round.", |cell| match &cell.values {
        Values::Tcp { connect } => connect.get(),
        _ => None,
    }),
    field!("iocwatch_http_status_code", "HTTP status of the last response.", Http, status),
    labelled!("iocwatch_http_phase_seconds", "Time in each phase of the last request: resolve, connect (with TLS), processing, transfer.", "phase", |cell| match &cell.values {
        Values::Http(c) => Some(PHASES.iter().copied().zip(&c.phases)),
        _ => None,
    }.into_iter().flatten()),
    field!("iocwatch_http_body_bytes", "Body size of the last response.", Http, body),
    field!("iocwatch_http_version", "HTTP version of the last response (1.1, 2).", Http, version),
    field!("iocwatch_http_redirects", "Redirects followed in the last request.", Http, redirects),
    single!("iocwatch_tls_cert_expiry_timestamp_seconds", "gauge", "notAfter of the server's leaf certificate.", |cell| match &cell.values {
        Values::Http(c) => c.cert_expiry.get(),
        Values::Tls(c) => c.expiry.get(),
        _ => None,
    }),
    labelled!("iocwatch_http_security_header_missing", "1 when a security header is missing (checks with security_headers: true).", "header", |cell| match &cell.values {
        Values::Http(c) => Some(SecurityHeader::ALL.iter().map(|h| h.label()).zip(&c.header_missing)),
        _ => None,
    }.into_iter().flatten()),
    field!("iocwatch_http_server_version_disclosed", "1 when Server or X-Powered-By tells the software version.", Http, version_disclosed),
    field!("iocwatch_http_redirected_to_https", "For http:// URLs: 1 when the site moves to HTTPS, 0 when it stays on plain HTTP.", Http, redirected_to_https),
    field!("iocwatch_content_changed", "1 when the page differs from its baseline (defacement, or a change to accept).", Http, content_changed),
    field!("iocwatch_content_forbidden_phrase_found", "1 when the page holds a forbidden phrase (\"hacked by\").", Http, content_forbidden),
    Family {
        name: "iocwatch_port_unexpected_open",
        help: "Ports audit: 1 when an audited port not expected open answers, 0 when it is closed.",
        kind: "gauge",
        write: |cell, out, name| {
            if let Values::Ports(ports) = &cell.values {
                for (port, v) in ports.iter() {
                    if let Some(v) = v.get() {
                        out.line(name, &cell.labels, Some(("port", &port.to_string())), v);
                    }
                }
            }
        },
    },
    field!("iocwatch_tls_grade", "TLS grade: A = 4, B = 3, C = 2, F = 0.", Tls, grade),
    field!("iocwatch_tls_chain_expiry_timestamp_seconds", "The earliest notAfter of the certificates the server sent.", Tls, chain_expiry),
    labelled!("iocwatch_tls_legacy_protocol_accepted", "1 when the server still accepts a handshake at this legacy version.", "version", |cell| match &cell.values {
        Values::Tls(c) => Some(LEGACY.iter().copied().zip(&c.legacy)),
        _ => None,
    }.into_iter().flatten()),
    field!("iocwatch_tls_cert_fingerprint_changed", "1 when the leaf certificate differs from the baseline (the first seen).", Tls, fingerprint_changed),
    field!("iocwatch_tls_chain_valid", "1 when the chain verifies against the trusted roots.", Tls, chain_valid),
    field!("iocwatch_tls_hostname_match", "1 when the certificate matches the server name.", Tls, hostname_match),
    field!("iocwatch_tls_version", "Negotiated TLS version (1.2, 1.3).", Tls, version),
    field!("iocwatch_tls_key_bits", "Size of the leaf certificate's public key.", Tls, key_bits),
    field!("iocwatch_dns_rcode", "DNS response code of the last answer (0 NOERROR, 3 NXDOMAIN).", Dns, rcode),
    field!("iocwatch_dns_answers", "Records of the asked type in the last answer.", Dns, answers),
    field!("iocwatch_dns_answer_changed", "1 when the answer set differs from the baseline (the first set seen): a hijack signal.", Dns, changed),
];

/// The cells of one catalog, in catalog order, and the info series of its targets.
#[derive(Debug, Default)]
pub struct Layout {
    cells: Vec<Arc<Cell>>,
    /// `iocwatch_target_info` lines' label sets: the target and its own labels.
    target_info: Vec<String>,
}

/// Writes `text` as a Prometheus label value (backslash, quote and newline escaped).
fn label_value(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn label_set<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if value.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        label_value(&mut out, value);
        out.push('"');
    }
    out
}

/// Cells for each check of a catalog, by check number ([`Catalog::check_number`]); `None`
/// where the agent does not export (targets it does not own).
#[derive(Debug, Default)]
pub struct Cells(Vec<Option<Arc<Cell>>>);

impl Cells {
    pub fn get(&self, check_number: usize) -> Option<&Arc<Cell>> {
        self.0.get(check_number)?.as_ref()
    }
}

/// The per-check series of the agent: cells the state writes, a layout the server reads.
#[derive(Debug, Default)]
pub struct CheckTable {
    layout: RwLock<Arc<Layout>>,
    /// `vantage="…"` (or nothing), first on every label set.
    constant: Vec<(String, String)>,
}

impl CheckTable {
    /// `constant` labels go first on every series (an agent's `vantage`).
    pub fn new(constant: Vec<(String, String)>) -> CheckTable {
        CheckTable {
            layout: RwLock::new(Arc::default()),
            constant,
        }
    }

    /// Lays the table out for `catalog`: cells of checks whose label set did not change are
    /// kept (with their counters); the others start afresh. Only owned targets' checks get
    /// cells (a shard also probes upstreams it does not own, for root causes). Labels with an
    /// empty value are left out: Prometheus reads a missing label as empty, and a district
    /// gateway's series need not say `commune=""`.
    pub fn apply(&self, catalog: &Catalog) -> Cells {
        let old = self.layout();
        let by_labels: std::collections::HashMap<&str, &Arc<Cell>> =
            old.cells.iter().map(|c| (&*c.labels, c)).collect();
        let names = catalog.schema.names();
        let constant = || self.constant.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let mut cells = Vec::new();
        let mut target_info = Vec::new();
        let mut handles = Cells(Vec::with_capacity(catalog.check_count()));
        for target in &catalog.targets {
            if !target.owned {
                handles.0.extend(target.checks.iter().map(|_| None));
                continue;
            }
            target_info.push(label_set(
                constant()
                    .chain([("target", &*target.id)])
                    .chain(target.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            ));
            for check in &target.checks {
                let own = names
                    .iter()
                    .copied()
                    .zip(check.label_values.iter().map(|v| &**v));
                let labels = label_set(constant().chain(own));
                let cell = match by_labels.get(labels.as_str()) {
                    Some(cell) if same_shape(cell, check) => Arc::clone(cell),
                    _ => Arc::new(Cell::new(check, labels)),
                };
                cells.push(Arc::clone(&cell));
                handles.0.push(Some(cell));
            }
        }
        cells.shrink_to_fit();
        *self.layout.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Layout { cells, target_info });
        handles
    }

    fn layout(&self) -> Arc<Layout> {
        // Poisoning needs a panic while the lock is held; nothing here can panic.
        Arc::clone(&self.layout.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Writes every per-check family in the text format, a chunk at a time: `emit` gets
    /// text of about `chunk` bytes, so a scrape never holds the whole text at once, and
    /// stops the writing by breaking (the scraper went away).
    pub fn render(&self, chunk: usize, mut emit: impl FnMut(String) -> ControlFlow<()>) {
        let layout = self.layout();
        let fresh = || String::with_capacity(chunk + 4096);
        let mut text = fresh();
        for family in FAMILIES {
            let _ = writeln!(text, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(text, "# TYPE {} {}", family.name, family.kind);
            for cell in &layout.cells {
                (family.write)(cell, &mut Out { text: &mut text }, family.name);
                if text.len() >= chunk && emit(std::mem::replace(&mut text, fresh())).is_break() {
                    return;
                }
            }
        }
        let _ = writeln!(
            text,
            "# HELP iocwatch_target_info One series per target with its own labels (owner, role, uplink …), joined on target. Always 1."
        );
        let _ = writeln!(text, "# TYPE iocwatch_target_info gauge");
        for labels in &layout.target_info {
            let _ = writeln!(text, "iocwatch_target_info{{{labels}}} 1");
            if text.len() >= chunk && emit(std::mem::replace(&mut text, fresh())).is_break() {
                return;
            }
        }
        let _ = emit(text);
    }
}

/// Whether a kept cell still fits the check (its kind and, for ports audits, its ports).
fn same_shape(cell: &Cell, check: &Check) -> bool {
    match (&cell.values, check.kind) {
        (Values::Icmp(_), Kind::Icmp)
        | (Values::Tcp { .. }, Kind::Tcp)
        | (Values::Http(_), Kind::Http)
        | (Values::Dns(_), Kind::Dns)
        | (Values::Tls(_), Kind::Tls) => true,
        (Values::Ports(ports), Kind::Ports) => ports.iter().map(|(p, _)| *p).eq(check
            .probe
            .audited_ports()
            .iter()
            .copied()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;
    use std::time::Duration;

    use super::CheckTable;
    use crate::catalog::{Catalog, Shard};
    use crate::probe::{Detail, FailureReason, IcmpStats, Outcome};

    fn catalog(targets: &str) -> Catalog {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("iocwatch.yaml");
        let text = format!(
            "areas:\n  - {{code: \"15\", name: Lào Cai, level: province, children: [{{code: \"02947\", name: Bảo Yên, level: commune}}]}}\ntargets:\n{targets}"
        );
        std::fs::write(&path, text).expect("write");
        crate::config::load(&path).expect("valid config").catalog
    }

    fn render(table: &CheckTable) -> String {
        let mut text = String::new();
        table.render(1 << 20, |chunk| {
            text.push_str(&chunk);
            ControlFlow::Continue(())
        });
        text
    }

    fn echo(rtts_ms: &[u64], sent: u32) -> Outcome {
        Outcome {
            duration: Duration::from_millis(20),
            failure: rtts_ms.is_empty().then_some(FailureReason::Timeout),
            detail: Detail::Icmp(IcmpStats {
                sent,
                rtts: rtts_ms
                    .iter()
                    .map(|&ms| Duration::from_millis(ms))
                    .collect(),
            }),
        }
    }

    const TWO: &str = "  - {id: gw, area: \"15\", address: 127.0.0.1, labels: {role: gateway, owner: vnpt}, checks: [icmp: {}]}\n  - {id: ubnd, area: \"02947\", address: 127.0.0.1, depends_on: [gw], labels: {owner: \"x\\\"y\"}, checks: [icmp: {}, tcp: {port: 80}]}\n";

    #[test]
    fn series_carry_identity_and_location_and_target_info_the_rest() {
        let catalog = catalog(TWO);
        let table = CheckTable::new(vec![("vantage".into(), "ioc".into())]);
        let cells = table.apply(&catalog);
        let cell = cells.get(catalog.check_number(1, 0)).expect("owned");
        cell.record(&echo(&[1, 3], 3), 1_700_000_000.0);
        let text = render(&table);
        assert!(
            text.contains("iocwatch_icmp_packets_sent_total{vantage=\"ioc\",target=\"ubnd\",check=\"icmp\",kind=\"icmp\",area=\"02947\",area_path=\"15/02947\",province=\"15\",commune=\"02947\"} 3\n"),
            "{text}"
        );
        // A province-level gateway: no empty commune="", system="" on its series.
        assert!(
            text.contains("iocwatch_icmp_packets_sent_total{vantage=\"ioc\",target=\"gw\",check=\"icmp\",kind=\"icmp\",area=\"15\",area_path=\"15\",province=\"15\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("=\"\""), "no empty labels: {text}");
        assert!(!text.contains("owner=\"vnpt\",target"), "{text}");
        assert!(
            text.contains("iocwatch_target_info{vantage=\"ioc\",target=\"gw\",owner=\"vnpt\",role=\"gateway\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "iocwatch_target_info{vantage=\"ioc\",target=\"ubnd\",owner=\"x\\\"y\"} 1\n"
            ),
            "escaped: {text}"
        );
        assert!(text.contains("iocwatch_icmp_round_rtt_seconds{vantage=\"ioc\",target=\"ubnd\",check=\"icmp\",kind=\"icmp\",area=\"02947\",area_path=\"15/02947\",province=\"15\",commune=\"02947\",stat=\"min\"} 0.001\n"), "{text}");
        // 2 of 3 echoes answered, both within 5 ms: 2 in the 0.005 bucket and above.
        assert!(
            text.contains("le=\"0.002\"} 1\n") && text.contains("le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("le=\"+Inf\"} 2\n"), "{text}");
        // Not run yet: no value rather than a made-up one.
        assert!(!text.contains("iocwatch_tcp_connect_seconds{"), "{text}");
        assert!(
            !text.contains("iocwatch_probe_success{vantage=\"ioc\",target=\"gw\""),
            "{text}"
        );
    }

    #[test]
    fn a_round_without_replies_clears_the_round_rtt_and_counts_the_failure() {
        let catalog = catalog(TWO);
        let table = CheckTable::new(Vec::new());
        let cells = table.apply(&catalog);
        let cell = cells.get(catalog.check_number(0, 0)).expect("owned");
        cell.record(&echo(&[2], 1), 1.0);
        cell.record(&echo(&[], 3), 2.0);
        let text = render(&table);
        assert!(!text.contains("iocwatch_icmp_round_rtt_seconds{"), "{text}");
        assert!(text.contains("iocwatch_icmp_loss_ratio{target=\"gw\",check=\"icmp\",kind=\"icmp\",area=\"15\",area_path=\"15\",province=\"15\"} 1\n"), "{text}");
        assert!(text.contains("iocwatch_probe_failures_total{target=\"gw\",check=\"icmp\",kind=\"icmp\",area=\"15\",area_path=\"15\",province=\"15\",reason=\"timeout\"} 1\n"), "{text}");
        assert!(text.contains("iocwatch_icmp_packets_sent_total{target=\"gw\",check=\"icmp\",kind=\"icmp\",area=\"15\",area_path=\"15\",province=\"15\"} 4\n"), "{text}");
        assert!(text.contains("iocwatch_probe_success{target=\"gw\",check=\"icmp\",kind=\"icmp\",area=\"15\",area_path=\"15\",province=\"15\"} 0\n"), "{text}");
    }

    #[test]
    fn a_reload_keeps_the_counters_of_unchanged_checks_and_drops_moved_ones() {
        let table = CheckTable::new(Vec::new());
        let cells = table.apply(&catalog(TWO));
        for cell in cells.0.iter().flatten() {
            cell.record(&echo(&[1], 1), 1.0);
        }
        // ubnd moves to the province: its series are new; gw's counters carry on.
        let moved = TWO.replace("area: \"02947\"", "area: \"15\"");
        let cells = table.apply(&catalog(&moved));
        let text = render(&table);
        assert!(text.contains("iocwatch_icmp_packets_sent_total{target=\"gw\",check=\"icmp\",kind=\"icmp\",area=\"15\",area_path=\"15\",province=\"15\"} 1\n"), "{text}");
        assert!(text.contains("iocwatch_icmp_packets_sent_total{target=\"ubnd\",check=\"icmp\",kind=\"icmp\",area=\"15\",area_path=\"15\",province=\"15\"} 0\n"), "{text}");
        assert!(!text.contains("02947"), "old series gone: {text}");
        assert_eq!(cells.0.iter().flatten().count(), 3);
    }

    #[test]
    fn a_shard_exports_only_what_it_owns_though_it_probes_upstreams_too() {
        let full = catalog(TWO);
        // Find a shard split where the gateway and the commune land apart.
        let split = (2..16)
            .flat_map(|count| (0..count).map(move |index| Shard { index, count }))
            .find(|s| s.owns("ubnd") && !s.owns("gw"))
            .expect("some split separates them");
        let shard = full.into_shard(split);
        assert_eq!(shard.targets.len(), 2, "the upstream is probed too");
        assert!(
            !shard
                .targets
                .iter()
                .find(|t| &*t.id == "gw")
                .expect("gw")
                .owned
        );
        let table = CheckTable::new(Vec::new());
        let cells = table.apply(&shard);
        for cell in cells.0.iter().flatten() {
            cell.record(&echo(&[1], 1), 1.0);
        }
        let text = render(&table);
        assert!(!text.contains("target=\"gw\""), "{text}");
        assert!(
            text.contains("iocwatch_target_info{target=\"ubnd\""),
            "{text}"
        );
        assert_eq!(text.matches("iocwatch_probe_success{").count(), 2, "{text}");
    }

    #[test]
    fn chunks_add_up_to_the_whole_and_a_break_stops_the_writing() {
        let many: String = (0..200)
            .map(|i| {
                format!(
                    "  - {{id: t{i}, area: \"15\", address: 127.0.0.1, checks: [icmp: {{}}]}}\n"
                )
            })
            .collect();
        let table = CheckTable::new(Vec::new());
        let cells = table.apply(&catalog(&many));
        for cell in cells.0.iter().flatten() {
            cell.record(&echo(&[1, 2], 2), 1.0);
        }
        let whole = render(&table);
        let mut chunks = Vec::new();
        table.render(4096, |chunk| {
            chunks.push(chunk);
            ControlFlow::Continue(())
        });
        assert!(chunks.len() > 10, "{}", chunks.len());
        assert!(chunks.iter().all(|c| c.len() < 4096 + 4096));
        assert_eq!(chunks.concat(), whole);
        let mut calls = 0;
        table.render(4096, |_| {
            calls += 1;
            ControlFlow::Break(())
        });
        assert_eq!(calls, 1);
    }
}
