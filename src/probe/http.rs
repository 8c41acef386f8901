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
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use tokio::time::Instant;

use super::{Detail, FailureReason, IpFamily, ProbeContext};
use crate::config::{FieldError, Spanned};

const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const DEFAULT_MAX_REDIRECTS: u8 = 10;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
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
        })
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.url
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
            Err(_) => return (Some(FailureReason::Io), Detail::None),
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
            Err(e) => return (Some(classify(&e)), Detail::None),
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
    // Microseconds; a std Mutex would do too, but atomics cannot be held across an await.
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
    while let Some(e) = source {
        if e.is::<ResolveError>() {
            return FailureReason::Dns;
        }
        if e.is::<rustls::Error>() {
            return FailureReason::Tls;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // rustls reports handshake failures as io errors wrapping its own error.
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return FailureReason::Tls;
            }
            return FailureReason::from_io(io);
        }
        source = e.source();
    }
    FailureReason::Io
}

fn cert_not_after(der: &[u8]) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn finish(config: rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// TLS settings with the operating system's trusted roots, built once at start-up.
pub fn system_tls_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::warn!(%error, "could not load some system root certificates");
    }
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        tracing::warn!("no system root certificates found: HTTPS checks will fail verification unless they set ca_file");
    }
    root_config(roots)
}

fn root_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    // The ring provider supports the safe default versions, so this cannot fail.
    match rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => finish(builder.with_root_certificates(roots).with_no_client_auth()),
        Err(e) => unreachable!("ring supports the default protocol versions: {e}"),
    }
}

fn ca_tls_config(path: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read ca_file {path:?}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca_file {path:?} is not valid PEM: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("ca_file {path:?} holds no usable certificate"));
    }
    Ok(root_config(roots))
}

fn insecure_tls_config() -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(AcceptAnyCert(Arc::clone(&provider)));
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => finish(
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth(),
        ),
        Err(e) => unreachable!("ring supports the default protocol versions: {e}"),
    }
}

/// For `insecure_skip_verify`: accepts any certificate but still checks the handshake
/// signatures, so the connection is a real TLS one.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_specs() {
        assert_eq!(parse_status("200"), Some(StatusRange(200, 200)));
        assert_eq!(parse_status("2xx"), Some(StatusRange(200, 299)));
        assert_eq!(parse_status("200-399"), Some(StatusRange(200, 399)));
        for bad in ["", "99", "600", "6xx", "x", "300-200", "abc-def"] {
            assert_eq!(parse_status(bad), None, "{bad}");
        }
    }
}
