//! HTTP(S): status against an expected set, phases (resolve, connect, processing, transfer),
//! body regexes that must or must not match, a body size cap, redirect policy, HTTP version
//! and the certificate's expiry.
//!
//! Every round uses a fresh client and connection, so connect and TLS time are what a user
//! opening the page would see, not a pooled connection's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use regex::Regex;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Deserialize;
use tokio::time::Instant;

use super::http_content::{ContentConfig, ContentFindings, ContentWatch};
use super::http_security;
use super::{Detail, FailureReason, IpFamily, ProbeContext};
use crate::model::{FieldError, Spanned};
use crate::tls::{ca_tls_config, insecure_tls_config};

const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const DEFAULT_MAX_REDIRECTS: u8 = 10;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Alert conditions of this check, over the built-in ones and the matching rules.
    #[serde(default)]
    pub alerts: Option<Box<crate::model::AlertsConfig>>,
    /// Name of the check within its target; defaults to `http`.
    #[serde(default)]
    pub name: Option<String>,
    pub url: Spanned<String>,
    #[serde(default)]
    pub method: Method,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    /// Accepted status codes: `200`, `2xx`, `200-399`. Default: `2xx`.
    #[serde(default)]
    pub expect_status: Vec<Spanned<String>>,
    /// A regex the body must match.
    #[serde(default)]
    pub body_match: Option<Spanned<String>>,
    /// A regex the body must not match (an error page that answers 200).
    #[serde(default)]
    pub body_not_match: Option<Spanned<String>>,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    #[serde(default = "default_max_redirects")]
    pub max_redirects: u8,
    /// Accepted HTTP versions, e.g. `["HTTP/2"]`; empty accepts any.
    #[serde(default)]
    pub http_versions: Vec<Spanned<String>>,
    /// Accept any certificate (the expiry is still reported).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// PEM file with the CA certificates to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    #[serde(default)]
    pub ip_family: Option<IpFamily>,
    /// Also report the security posture: missing security headers, a disclosed server
    /// version, and (for `http://` URLs) whether the site moves to HTTPS.
    #[serde(default)]
    pub security_headers: bool,
    /// Watch the page for defacement: changes against a baseline, forbidden phrases.
    #[serde(default)]
    pub content: Option<ContentConfig>,
}

fn default_max_body() -> u64 {
    DEFAULT_MAX_BODY
}
fn default_true() -> bool {
    true
}
fn default_max_redirects() -> u8 {
    DEFAULT_MAX_REDIRECTS
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Head,
    Post,
}

/// An inclusive range of accepted status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StatusRange(u16, u16);

fn parse_status(text: &str) -> Option<StatusRange> {
    let valid = |c: u16| (100..=599).contains(&c);
    if let Some(class) = text.strip_suffix("xx") {
        let digit: u16 = class.parse().ok().filter(|d| (1..=5).contains(d))?;
        return Some(StatusRange(digit * 100, digit * 100 + 99));
    }
    if let Some((low, high)) = text.split_once('-') {
        let (low, high) = (low.trim().parse().ok()?, high.trim().parse().ok()?);
        return (valid(low) && valid(high) && low <= high).then_some(StatusRange(low, high));
    }
    let code = text.parse().ok().filter(|c| valid(*c))?;
    Some(StatusRange(code, code))
}

#[derive(Debug)]
pub struct HttpProbe {
    url: reqwest::Url,
    method: reqwest::Method,
    headers: reqwest::header::HeaderMap,
    body: Option<String>,
    expect_status: Vec<StatusRange>,
    body_match: Option<Regex>,
    body_not_match: Option<Regex>,
    max_body_bytes: u64,
    redirects: Option<u8>,
    http_versions: Vec<reqwest::Version>,
    /// Own TLS settings when the check has a CA file or skips verification.
    tls: Option<Arc<rustls::ClientConfig>>,
    ip_family: Option<IpFamily>,
    security_headers: bool,
    content: Option<ContentWatch>,
}

impl HttpProbe {
    pub fn new(config: &HttpConfig) -> Result<HttpProbe, Vec<FieldError>> {
        let mut errors = Vec::new();
        let url = match reqwest::Url::parse(&config.url.value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(url)
            }
            Ok(_) => {
                errors.push(FieldError::at(
                    config.url.referenced,
                    format!(
                        "url {:?}: expected an absolute http:// or https:// URL with a host",
                        config.url.value
                    ),
                ));
                None
            }
            Err(e) => {
                errors.push(FieldError::at(
                    config.url.referenced,
                    format!("invalid url {:?}: {e}", config.url.value),
                ));
                None
            }
        };
        let mut expect_status = Vec::new();
        for spec in &config.expect_status {
            match parse_status(spec.value.trim()) {
                Some(range) => expect_status.push(range),
                None => errors.push(FieldError::at(
                    spec.referenced,
                    format!(
                        "invalid status {:?}: expected a code (200), a class (2xx) or a range (200-399)",
                        spec.value
                    ),
                )),
            }
        }
        if expect_status.is_empty() {
            expect_status.push(StatusRange(200, 299));
        }
        let mut regex = |field: &str, spanned: &Option<Spanned<String>>| {
            let spanned = spanned.as_ref()?;
            Regex::new(&spanned.value)
                .map_err(|e| {
                    errors.push(FieldError::at(
                        spanned.referenced,
                        format!("invalid regex in {field}: {e}"),
                    ))
                })
                .ok()
        };
        let body_match = regex("body_match", &config.body_match);
        let body_not_match = regex("body_not_match", &config.body_not_match);

        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &config.headers {
            match (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(value),
            ) {
                (Ok(n), Ok(v)) => {
                    headers.insert(n, v);
                }
                _ => errors.push(FieldError::unlocated(format!(
                    "invalid header {name:?}: names are tokens, values visible ASCII"
                ))),
            }
        }
        let mut http_versions = Vec::new();
        for v in &config.http_versions {
            match v.value.as_str() {
                "HTTP/1.0" => http_versions.push(reqwest::Version::HTTP_10),
                "HTTP/1.1" => http_versions.push(reqwest::Version::HTTP_11),
                "HTTP/2" | "HTTP/2.0" => http_versions.push(reqwest::Version::HTTP_2),
                other => errors.push(FieldError::at(
                    v.referenced,
                    format!(
                        "unknown HTTP version {other:?}: expected HTTP/1.0, HTTP/1.1 or HTTP/2"
                    ),
                )),
            }
        }
        let tls = match (&config.ca_file, config.insecure_skip_verify) {
            (_, true) => Some(insecure_tls_config()),
            (Some(path), false) => match ca_tls_config(&path.value) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    errors.push(FieldError::at(path.referenced, e));
                    None
                }
            },
            (None, false) => None,
        };
        let content = config.content.as_ref().and_then(|c| {
            ContentWatch::new(c)
                .map_err(|mut e| errors.append(&mut e))
                .ok()
        });
        let (Some(url), true) = (url, errors.is_empty()) else {
            return Err(errors);
        };
        Ok(HttpProbe {
            url,
            method: match config.method {
                Method::Get => reqwest::Method::GET,
                Method::Head => reqwest::Method::HEAD,
                Method::Post => reqwest::Method::POST,
            },
            headers,
            body: config.body.clone(),
            expect_status,
            body_match,
            body_not_match,
            max_body_bytes: config.max_body_bytes,
            redirects: config.follow_redirects.then_some(config.max_redirects),
            http_versions,
            tls,
            ip_family: config.ip_family,
            security_headers: config.security_headers,
            content,
        })
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// Whether the page is watched for defacement (and so has a baseline).
    pub fn watches_content(&self) -> bool {
        self.content.is_some()
    }

    pub async fn run(
        &self,
        ctx: &ProbeContext,
        deadline: Instant,
    ) -> (Option<FailureReason>, Detail) {
        let marks = Arc::new(PhaseMarks::default());
        let redirects = Arc::new(AtomicU32::new(0));
        let client = match self.client(ctx, &marks, &redirects) {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build HTTP client");
                return (Some(FailureReason::Io), Detail::None);
            }
        };
        let mut request = client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .timeout(deadline.saturating_duration_since(Instant::now()));
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }

        let started = Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let reason = classify(&e);
                // A check's URL may hold a user and password or a token: never in the log.
                tracing::debug!(url = %crate::model::redacted(self.url.as_str()), error = %e.without_url(), "request failed");
                return (Some(reason), Detail::None);
            }
        };
        let headers_at = started.elapsed();
        let mut detail = HttpDetail {
            status: response.status().as_u16(),
            version: response.version(),
            redirects: redirects.load(Ordering::Relaxed),
            cert_not_after: response
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|info| info.peer_certificate())
                .and_then(cert_not_after),
            posture: self
                .security_headers
                .then(|| http_security::assess(&self.url, response.url(), response.headers())),
            ..HttpDetail::default()
        };
        let failure = self.read_and_check(response, &mut detail, deadline).await;
        let resolve = marks.resolve();
        let connect = marks.connect().saturating_sub(resolve);
        detail.phases = Phases {
            resolve,
            connect,
            processing: headers_at.saturating_sub(resolve + connect),
            transfer: started.elapsed().saturating_sub(headers_at),
        };
        (failure, Detail::Http(Box::new(detail)))
    }

    fn client(
        &self,
        ctx: &ProbeContext,
        marks: &Arc<PhaseMarks>,
        redirects: &Arc<AtomicU32>,
    ) -> reqwest::Result<reqwest::Client> {
        let tls = self.tls.as_ref().unwrap_or(&ctx.tls);
        let redirect = match self.redirects {
            None => reqwest::redirect::Policy::none(),
            Some(max) => {
                let counter = Arc::clone(redirects);
                reqwest::redirect::Policy::custom(move |attempt| {
                    counter.store(
                        u32::try_from(attempt.previous().len()).unwrap_or(u32::MAX),
                        Ordering::Relaxed,
                    );
                    if attempt.previous().len() > usize::from(max) {
                        attempt.error("too many redirects")
                    } else {
                        attempt.follow()
                    }
                })
            }
        };
        let connect_marks = Arc::clone(marks);
        reqwest::Client::builder()
            .use_preconfigured_tls(rustls::ClientConfig::clone(tls))
            .tls_info(true)
            .no_proxy()
            .pool_max_idle_per_host(0)
            .redirect(redirect)
            .user_agent(concat!("iocwatch/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(TimedResolver {
                marks: Arc::clone(marks),
                family: self.ip_family,
            })
            .connector_layer(tower::util::MapFutureLayer::new(move |connecting| {
                let marks = Arc::clone(&connect_marks);
                let started = Instant::now();
                async move {
                    let conn = connecting.await;
                    marks.add_connect(started.elapsed());
                    conn
                }
            }))
            .build()
    }

    async fn read_and_check(
        &self,
        mut response: reqwest::Response,
        detail: &mut HttpDetail,
        deadline: Instant,
    ) -> Option<FailureReason> {
        if response
            .content_length()
            .is_some_and(|len| len > self.max_body_bytes)
        {
            return Some(FailureReason::BodyTooLarge);
        }
        let mut body = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, response.chunk()).await {
                Err(_) => return Some(FailureReason::Timeout),
                Ok(Err(e)) => return Some(classify(&e)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => {
                    detail.body_bytes += chunk.len() as u64;
                    if detail.body_bytes > self.max_body_bytes {
                        return Some(FailureReason::BodyTooLarge);
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
        let status_ok = self
            .expect_status
            .iter()
            .any(|r| (r.0..=r.1).contains(&detail.status));
        // Only a page that answered as expected is compared: an error page is an outage,
        // not a defacement, and must not become the baseline.
        if let (Some(watch), true) = (&self.content, status_ok) {
            let findings = watch.assess(&String::from_utf8_lossy(&body));
            let forbidden = !findings.forbidden_found.is_empty();
            detail.content = Some(findings);
            if forbidden {
                return Some(FailureReason::Content);
            }
        }
        if !status_ok {
            return Some(FailureReason::HttpStatus);
        }
        if !self.http_versions.is_empty() && !self.http_versions.contains(&detail.version) {
            return Some(FailureReason::HttpVersion);
        }
        if self.body_match.is_some() || self.body_not_match.is_some() {
            let text = String::from_utf8_lossy(&body);
            let must = self.body_match.as_ref().is_none_or(|re| re.is_match(&text));
            let must_not = self
                .body_not_match
                .as_ref()
                .is_some_and(|re| re.is_match(&text));
            if !must || must_not {
                return Some(FailureReason::Content);
            }
        }
        None
    }
}

/// What an HTTP round measured.
#[derive(Debug, Clone, Default)]
pub struct HttpDetail {
    pub status: u16,
    pub version: reqwest::Version,
    pub redirects: u32,
    pub body_bytes: u64,
    pub phases: Phases,
    /// `notAfter` of the server's leaf certificate, for HTTPS.
    pub cert_not_after: Option<SystemTime>,
    /// With `security_headers: true`.
    pub posture: Option<http_security::Posture>,
    /// With `content:`.
    pub content: Option<ContentFindings>,
}

impl HttpDetail {
    /// The version as a number, as blackbox_exporter reports it (1.1, 2).
    pub fn version_number(&self) -> f64 {
        match self.version {
            reqwest::Version::HTTP_09 => 0.9,
            reqwest::Version::HTTP_10 => 1.0,
            reqwest::Version::HTTP_11 => 1.1,
            reqwest::Version::HTTP_2 => 2.0,
            reqwest::Version::HTTP_3 => 3.0,
            _ => 0.0,
        }
    }
}

/// Time spent in each phase of a round, summed over redirects.
/// `connect` includes the TLS handshake for HTTPS.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    pub resolve: Duration,
    pub connect: Duration,
    pub processing: Duration,
    pub transfer: Duration,
}

impl Phases {
    pub fn named(&self) -> [(&'static str, Duration); 4] {
        [
            ("resolve", self.resolve),
            ("connect", self.connect),
            ("processing", self.processing),
            ("transfer", self.transfer),
        ]
    }
}

/// Accumulates phase times reported by the resolver and the connector of one round.
#[derive(Default, Debug)]
struct PhaseMarks {
    // Microseconds. The resolver and connector report from reqwest's own futures, so the
    // marks are shared; atomics keep that lock-free.
    resolve_us: AtomicU32,
    connect_us: AtomicU32,
}

impl PhaseMarks {
    fn add_resolve(&self, d: Duration) {
        self.resolve_us.fetch_add(micros(d), Ordering::Relaxed);
    }
    fn add_connect(&self, d: Duration) {
        self.connect_us.fetch_add(micros(d), Ordering::Relaxed);
    }
    fn resolve(&self) -> Duration {
        Duration::from_micros(u64::from(self.resolve_us.load(Ordering::Relaxed)))
    }
    fn connect(&self) -> Duration {
        Duration::from_micros(u64::from(self.connect_us.load(Ordering::Relaxed)))
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The system resolver, timed. Errors are typed so a failed lookup reads as `dns`.
struct TimedResolver {
    marks: Arc<PhaseMarks>,
    family: Option<IpFamily>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {0}")]
struct ResolveError(String);

impl Resolve for TimedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let marks = Arc::clone(&self.marks);
        let family = self.family;
        Box::pin(async move {
            let started = Instant::now();
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await;
            marks.add_resolve(started.elapsed());
            let addrs: Vec<_> = found
                .map_err(|_| ResolveError(host.clone()))?
                .filter(|a| match family {
                    None => true,
                    Some(IpFamily::V4) => a.is_ipv4(),
                    Some(IpFamily::V6) => a.is_ipv6(),
                })
                .collect();
            if addrs.is_empty() {
                return Err(
                    Box::new(ResolveError(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Maps a reqwest error to a reason by walking its causes.
fn classify(error: &reqwest::Error) -> FailureReason {
    if error.is_timeout() {
        return FailureReason::Timeout;
    }
    if error.is_redirect() {
        return FailureReason::Redirects;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut io_kind = None;
    while let Some(e) = source {
        if e.is::<ResolveError>() {
            return FailureReason::Dns;
        }
        if e.is::<rustls::Error>() {
            return FailureReason::Tls;
        }
        source = match e.downcast_ref::<std::io::Error>() {
            // io::Error::source() skips the error it wraps; rustls and hyper nest theirs there.
            Some(io) => {
                io_kind = Some(io.kind());
                io.get_ref()
                    .map(|inner| inner as &(dyn std::error::Error + 'static))
            }
            None => e.source(),
        };
    }
    io_kind.map_or(FailureReason::Io, |kind| {
        FailureReason::from_io(&kind.into())
    })
}

fn cert_not_after(der: &[u8]) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

impl std::fmt::Display for HttpDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  status {}, {:?}, {} bytes, {} redirect(s)",
            self.status, self.version, self.body_bytes, self.redirects
        )?;
        for (phase, d) in self.phases.named() {
            writeln!(f, "  {phase:<10} {}", super::millis(d))?;
        }
        if let Some(not_after) = self.cert_not_after {
            let left = not_after
                .duration_since(SystemTime::now())
                .map(|d| format!("{} days left", d.as_secs() / 86_400))
                .unwrap_or_else(|_| "EXPIRED".to_owned());
            writeln!(f, "  certificate valid until {not_after:?} ({left})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::test_servers::{
        certificate, hold_open, response, serve, server_config, tls_wrap, Reply,
    };

    #[test]
    fn status_specs() {
        assert_eq!(parse_status("200"), Some(StatusRange(200, 200)));
        assert_eq!(parse_status("2xx"), Some(StatusRange(200, 299)));
        assert_eq!(parse_status("200-399"), Some(StatusRange(200, 399)));
        for bad in ["", "99", "600", "6xx", "x", "300-200", "abc-def"] {
            assert_eq!(parse_status(bad), None, "{bad}");
        }
    }

    fn config(url: &str) -> HttpConfig {
        let mut text = format!("url: {}\n", serde_json::to_string(url).expect("string"));
        text.push_str("ip_family: ip4\n");
        crate::model::parse_test_yaml(&text)
    }

    fn with(url: &str, extra: &str) -> HttpProbe {
        let mut text = format!("url: {}\n", serde_json::to_string(url).expect("string"));
        text.push_str(extra);
        HttpProbe::new(&crate::model::parse_test_yaml(&text)).expect("valid config")
    }

    async fn run(
        probe: &HttpProbe,
        within: Duration,
    ) -> (Option<FailureReason>, Option<HttpDetail>) {
        let ctx = ProbeContext::new();
        let (failure, detail) = probe.run(&ctx, Instant::now() + within).await;
        let detail = match detail {
            Detail::Http(d) => Some(*d),
            _ => None,
        };
        (failure, detail)
    }

    const SOON: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn healthy_page_succeeds_with_status_size_and_phases() {
        let port = serve(
            |_| response("200 OK", "", "<h1>Cổng dịch vụ công</h1>"),
            None,
        )
        .await;
        let probe = HttpProbe::new(&config(&format!("http://localhost:{port}/"))).expect("valid");
        let (failure, detail) = run(&probe, SOON).await;
        let detail = detail.expect("http detail");
        assert_eq!(failure, None);
        assert_eq!(detail.status, 200);
        assert_eq!(detail.body_bytes, "<h1>Cổng dịch vụ công</h1>".len() as u64);
        assert_eq!(detail.version, reqwest::Version::HTTP_11);
        assert!(
            detail.phases.resolve > Duration::ZERO,
            "localhost was resolved: {:?}",
            detail.phases
        );
        assert!(
            detail.phases.connect > Duration::ZERO,
            "{:?}",
            detail.phases
        );
        assert!(detail.cert_not_after.is_none());
    }

    #[tokio::test]
    async fn unexpected_status_fails_but_reports_the_code() {
        let port = serve(|_| response("503 Service Unavailable", "", "busy"), None).await;
        let (failure, detail) = run(&with(&format!("http://127.0.0.1:{port}/"), ""), SOON).await;
        assert_eq!(failure, Some(FailureReason::HttpStatus));
        assert_eq!(detail.expect("detail").status, 503);
        let accepting = with(
            &format!("http://127.0.0.1:{port}/"),
            "expect_status: [\"200\", \"503\"]\n",
        );
        assert_eq!(run(&accepting, SOON).await.0, None);
    }

    #[tokio::test]
    async fn body_regexes_must_and_must_not_match() {
        let port = serve(|_| response("200 OK", "", "Hệ thống đang bảo trì"), None).await;
        let url = format!("http://127.0.0.1:{port}/");
        assert_eq!(
            run(&with(&url, "body_match: \"đang bảo trì\"\n"), SOON)
                .await
                .0,
            None
        );
        assert_eq!(
            run(&with(&url, "body_match: \"Đăng nhập\"\n"), SOON)
                .await
                .0,
            Some(FailureReason::Content)
        );
        assert_eq!(
            run(&with(&url, "body_not_match: \"bảo trì\"\n"), SOON)
                .await
                .0,
            Some(FailureReason::Content)
        );
    }

    #[tokio::test]
    async fn huge_bodies_are_capped() {
        let declared = serve(
            |_| Reply::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\nxx".to_vec()),
            None,
        )
        .await;
        let (failure, _) = run(&with(&format!("http://127.0.0.1:{declared}/"), ""), SOON).await;
        assert_eq!(failure, Some(FailureReason::BodyTooLarge));

        let endless = serve(|_| Reply::Endless, None).await;
        let probe = with(
            &format!("http://127.0.0.1:{endless}/"),
            "max_body_bytes: 100000\n",
        );
        let (failure, detail) = run(&probe, SOON).await;
        assert_eq!(failure, Some(FailureReason::BodyTooLarge));
        assert!(detail.expect("detail").body_bytes <= 100_000 + 64 * 1024);
    }

    #[tokio::test]
    async fn hanging_server_times_out_at_the_deadline() {
        let port = serve(|_| Reply::Hang, None).await;
        let started = Instant::now();
        let (failure, _) = run(
            &with(&format!("http://127.0.0.1:{port}/"), ""),
            Duration::from_millis(300),
        )
        .await;
        assert_eq!(failure, Some(FailureReason::Timeout));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "probe must end near its deadline"
        );
    }

    #[tokio::test]
    async fn malformed_response_is_a_failure_not_a_crash() {
        let port = serve(
            |_| Reply::Bytes(b"\x00\x01garbage that is not HTTP\r\n\r\n".to_vec()),
            None,
        )
        .await;
        let (failure, _) = run(&with(&format!("http://127.0.0.1:{port}/"), ""), SOON).await;
        assert!(failure.is_some());
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let (failure, _) = run(&with(&format!("http://127.0.0.1:{port}/"), ""), SOON).await;
        assert_eq!(failure, Some(FailureReason::Refused));
    }

    #[tokio::test]
    async fn redirects_are_followed_up_to_the_limit() {
        // /3 → /2 → /1 → /0 (200).
        let port = serve(
            |head| {
                let path = head.split_whitespace().nth(1).unwrap_or("/0").to_owned();
                let n: u32 = path.trim_start_matches('/').parse().unwrap_or(0);
                if n == 0 {
                    response("200 OK", "", "arrived")
                } else {
                    response("302 Found", &format!("location: /{}\r\n", n - 1), "")
                }
            },
            None,
        )
        .await;
        let url = format!("http://127.0.0.1:{port}/3");
        let (failure, detail) = run(&with(&url, ""), SOON).await;
        assert_eq!(failure, None);
        assert_eq!(detail.expect("detail").redirects, 3);
        assert_eq!(
            run(&with(&url, "max_redirects: 2\n"), SOON).await.0,
            Some(FailureReason::Redirects)
        );
        let (failure, detail) = run(&with(&url, "follow_redirects: false\n"), SOON).await;
        assert_eq!(failure, Some(FailureReason::HttpStatus));
        assert_eq!(detail.expect("detail").status, 302);
    }

    #[tokio::test]
    async fn https_reports_certificate_expiry_and_checks_trust() {
        let (cert, key) = certificate(2031);
        let port = serve(
            |_| response("200 OK", "", "secure"),
            Some(tls_wrap(server_config(&cert, &key))),
        )
        .await;
        let url = format!("https://localhost:{port}/");

        // Self-signed: not trusted by the system roots.
        let (failure, _) = run(&with(&url, "ip_family: ip4\n"), SOON).await;
        assert_eq!(failure, Some(FailureReason::Tls));

        // Trusted through ca_file, with the expiry read from the leaf.
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.pem()).expect("write ca");
        let trusted = with(
            &url,
            &format!(
                "ip_family: ip4\nca_file: {}\n",
                serde_json::to_string(&ca).expect("path")
            ),
        );
        let (failure, detail) = run(&trusted, SOON).await;
        assert_eq!(failure, None);
        let not_after = detail
            .expect("detail")
            .cert_not_after
            .expect("https has a certificate");
        let year_2031 = UNIX_EPOCH + Duration::from_secs(1_937_779_200); // 2031-05-30
        let days = not_after
            .duration_since(year_2031)
            .expect("after")
            .as_secs()
            / 86_400;
        assert!(days <= 3, "notAfter {not_after:?}");

        // insecure_skip_verify accepts it too.
        let insecure = with(&url, "ip_family: ip4\ninsecure_skip_verify: true\n");
        assert_eq!(run(&insecure, SOON).await.0, None);
    }

    #[tokio::test]
    async fn tls_handshake_that_hangs_times_out() {
        // Accepts TCP, never speaks TLS.
        let port = serve(|_| Reply::Hang, Some(hold_open())).await;
        let probe = with(&format!("https://localhost:{port}/"), "ip_family: ip4\n");
        let (failure, _) = run(&probe, Duration::from_millis(300)).await;
        assert_eq!(failure, Some(FailureReason::Timeout));
    }

    #[tokio::test]
    async fn security_posture_is_reported_without_failing_the_check() {
        let port = serve(
            |_| {
                response(
                    "200 OK",
                    "server: nginx/1.18.0\r\nx-content-type-options: nosniff\r\n",
                    "trang chủ",
                )
            },
            None,
        )
        .await;
        let probe = with(
            &format!("http://127.0.0.1:{port}/"),
            "security_headers: true\n",
        );
        let (failure, detail) = run(&probe, SOON).await;
        assert_eq!(failure, None, "findings are signals, not failures");
        let posture = detail.expect("detail").posture.expect("posture");
        let missing: Vec<&str> = posture.missing().map(|h| h.label()).collect();
        assert_eq!(missing, ["frame-ancestors", "content-security-policy"]);
        assert_eq!(posture.version_disclosed.as_deref(), Some("nginx/1.18.0"));
        assert_eq!(posture.redirected_to_https, Some(false));
        let (_, plain) = run(&with(&format!("http://127.0.0.1:{port}/"), ""), SOON).await;
        assert!(
            plain.expect("detail").posture.is_none(),
            "only when asked for"
        );
    }

    #[test]
    fn config_errors_are_positioned() {
        let text = "url: \"ftp://x\"\nexpect_status: [\"2xx\", \"7xx\"]\nbody_match: \"(\"\nhttp_versions: [\"HTTP/4\"]\n";
        let errors = HttpProbe::new(&crate::model::parse_test_yaml(text)).expect_err("invalid");
        let lines: Vec<u64> = errors
            .iter()
            .map(|e| e.at.map_or(0, |l| l.line()))
            .collect();
        assert_eq!(lines, vec![1, 2, 3, 4], "{errors:?}");
        assert!(errors[0].message.contains("http:// or https://"));
        assert!(errors[1].message.contains("7xx"));
        assert!(errors[2].message.contains("invalid regex in body_match"));
        assert!(errors[3].message.contains("HTTP/4"));
    }
}
