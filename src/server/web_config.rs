//! The web config file (`--web.config.file`), in the exporter-toolkit format that
//! Prometheus, Alertmanager and the exporters read: TLS (with client certificates),
//! basic auth with bcrypt hashes, and extra response headers. Relative paths are relative to
//! the file. It is read again when it, or a certificate, key or CA file it names, changes;
//! a file that turns invalid is logged and the last good config stays in force.
//!
//! rustls speaks TLS 1.2 and 1.3 only: `min_version: TLS10` or `TLS11` is refused with a
//! message that says so. The agent serves HTTP/1.1; `http2` is accepted for compatibility.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

use axum::http::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    client_auth_type: String,
    #[serde(default)]
    client_ca_file: String,
    #[serde(default)]
    cipher_suites: Vec<String>,
    #[serde(default)]
    curve_preferences: Vec<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    /// Go chooses among the suites; rustls always prefers the server's order.
    #[serde(default)]
    #[allow(dead_code)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Headers the file may set, and the values a header must take when it has a fixed set
/// (exporter-toolkit's list, so that every component of the stack takes the same file).
const ALLOWED_HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// A validated web config.
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    users: BTreeMap<String, String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers)
            .finish()
    }
}

impl WebConfig {
    /// No TLS, no users, no headers: what the agent serves without a web config file.
    pub fn open() -> WebConfig {
        WebConfig {
            tls: None,
            users: BTreeMap::new(),
            headers: Vec::new(),
        }
    }

    /// Whether every request must carry a user and password.
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }
}

/// Reads and validates a web config file; the error names the file and what is wrong.
pub fn load(path: &Path) -> Result<WebConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_saphyr::from_str(&text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            let message = e.to_string();
            let message = message
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            format!("{}{at}: {message}", path.display())
        })?
    };
    let fail = |message: String| format!("{}: {message}", path.display());
    let dir = path.parent().unwrap_or(Path::new("."));
    for (user, hash) in &raw.basic_auth_users {
        bcrypt_cost(hash).map_err(|e| {
            fail(format!(
                "basic_auth_users: the password of {user:?} is not a bcrypt hash ({e}); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
            ))
        })?;
    }
    let mut headers = Vec::new();
    for (name, value) in raw.http_server_config.unwrap_or_default().headers {
        let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(h, _)| *h == name) else {
            return Err(fail(format!("HTTP header {name:?} can not be configured")));
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(fail(format!(
                "invalid value for {name}: expected one of {allowed:?}, not {value:?}"
            )));
        }
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|e| fail(e.to_string()))?;
        let value =
            HeaderValue::from_str(&value).map_err(|_| fail(format!("invalid value for {name}")))?;
        headers.push((header, value));
    }
    let tls = match raw.tls_server_config {
        Some(t) if tls_enabled(&t) => Some(Arc::new(server_config(&t, dir).map_err(fail)?)),
        _ => None,
    };
    Ok(WebConfig {
        tls,
        users: raw.basic_auth_users,
        headers,
    })
}

fn tls_enabled(t: &RawTls) -> bool {
    !(t.cert_file.is_empty()
        && t.key_file.is_empty()
        && t.client_ca_file.is_empty()
        && t.client_auth_type.is_empty())
}

fn bcrypt_cost(hash: &str) -> Result<u32, String> {
    let parts: Vec<&str> = hash.split('$').collect();
    match parts.as_slice() {
        ["", "2a" | "2b" | "2x" | "2y", cost, rest] if rest.len() == 53 => cost
            .parse::<u32>()
            .ok()
            .filter(|c| (4..=31).contains(c))
            .ok_or_else(|| "bad cost".to_owned()),
        _ => Err("not in the $2y$NN$… form".to_owned()),
    }
}

fn resolve(dir: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_owned()
    } else {
        dir.join(path)
    }
}

fn version(name: &str) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match name {
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS10" | "TLS11" => Err(format!(
            "{name} is not offered: rustls speaks TLS 1.2 and 1.3 only (use TLS12 or TLS13)"
        )),
        other => Err(format!(
            "unknown TLS version {other:?}: expected TLS12 or TLS13"
        )),
    }
}

/// Go's names of the TLS 1.2 suites rustls implements; TLS 1.3 suites are not configurable
/// in Go either and are always on.
fn cipher_suite(name: &str) -> Option<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

fn server_config(t: &RawTls, dir: &Path) -> Result<rustls::ServerConfig, String> {
    if t.cert_file.is_empty() {
        return Err("tls_server_config: missing cert_file".into());
    }
    if t.key_file.is_empty() {
        return Err("tls_server_config: missing key_file".into());
    }
    let cert_path = resolve(dir, &t.cert_file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read cert_file {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "cert_file {} holds no certificate",
            cert_path.display()
        ));
    }
    let key_path = resolve(dir, &t.key_file);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("cannot read key_file {}: {e}", key_path.display()))?;

    let min = version(t.min_version.as_deref().unwrap_or("TLS12"))?;
    let max = version(t.max_version.as_deref().unwrap_or("TLS13"))?;
    let order = |v: &rustls::SupportedProtocolVersion| u16::from(v.version);
    if order(min) > order(max) {
        return Err("min_version is above max_version".into());
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| order(v) >= order(min) && order(v) <= order(max))
            .collect();

    let mut provider = rustls::crypto::ring::default_provider();
    if !t.cipher_suites.is_empty() {
        let mut chosen = Vec::new();
        for name in &t.cipher_suites {
            chosen.push(cipher_suite(name).ok_or_else(|| format!("unknown cipher: {name}"))?);
        }
        // Go applies the list to TLS 1.2 only; TLS 1.3's suites stay.
        chosen.extend(
            provider
                .cipher_suites
                .iter()
                .filter(|s| s.tls13().is_some())
                .copied(),
        );
        provider.cipher_suites = chosen;
    }
    if !t.curve_preferences.is_empty() {
        use rustls::crypto::ring::kx_group;
        let mut groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup> = Vec::new();
        for name in &t.curve_preferences {
            groups.push(match name.as_str() {
                "X25519" => kx_group::X25519,
                "CurveP256" => kx_group::SECP256R1,
                "CurveP384" => kx_group::SECP384R1,
                "CurveP521" => {
                    return Err("CurveP521 is not offered by this build (ring has no P-521)".into())
                }
                other => return Err(format!("unknown curve: {other}")),
            });
        }
        provider.kx_groups = groups;
    }
    let provider = Arc::new(provider);
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;

    let roots = if t.client_ca_file.is_empty() {
        None
    } else {
        let ca_path = resolve(dir, &t.client_ca_file);
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(&ca_path)
            .and_then(|c| c.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read client_ca_file {}: {e}", ca_path.display()))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("client_ca_file {}: {e}", ca_path.display()))?;
        }
        Some(Arc::new(roots))
    };
    let verified = |roots: &Option<Arc<rustls::RootCertStore>>, optional: bool| {
        let Some(roots) = roots else {
            return Err(format!(
                "client_auth_type {} needs client_ca_file to verify client certificates",
                t.client_auth_type
            ));
        };
        let builder =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(roots), Arc::clone(&provider));
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder.build().map_err(|e| format!("client_ca_file: {e}"))
    };
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match t.client_auth_type.as_str() {
        "" | "NoClientCert" => {
            if roots.is_some() {
                return Err("client CA's have been configured without a Client Auth Policy".into());
            }
            None
        }
        "RequestClientCert" => Some(Arc::new(AnyCertificate {
            provider: Arc::clone(&provider),
            mandatory: false,
        })),
        "RequireAnyClientCert" | "RequireClientCert" => Some(Arc::new(AnyCertificate {
            provider: Arc::clone(&provider),
            mandatory: true,
        })),
        "VerifyClientCertIfGiven" => Some(verified(&roots, true)?),
        "RequireAndVerifyClientCert" => Some(verified(&roots, false)?),
        other => return Err(format!("invalid ClientAuth: {other}")),
    };
    let verifier = match (&t.client_allowed_sans, verifier) {
        (Some(sans), Some(inner)) if inner.client_auth_mandatory() => {
            Some(Arc::new(AllowedSans {
                inner,
                sans: sans.clone(),
            }) as Arc<dyn ClientCertVerifier>)
        }
        (Some(_), _) => {
            return Err("client_allowed_sans requires client_auth_type to be one of RequireAnyClientCert or RequireAndVerifyClientCert".into())
        }
        (None, verifier) => verifier,
    };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("cert_file and key_file: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `RequestClientCert` and `RequireAnyClientCert`: a certificate is asked for (or required)
/// but not checked against a CA, as Go's crypto/tls does; its signature over the handshake
/// still proves the client holds the key.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
    mandatory: bool,
}

impl ClientCertVerifier for AnyCertificate {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `client_allowed_sans`: the client certificate must name one of them (DNS name, e-mail,
/// IP address or URI), on top of what the inner verifier checks.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    sans: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = subject_alt_names(end_entity);
        if names.iter().any(|n| self.sans.contains(n)) {
            Ok(verified)
        } else {
            Err(rustls::Error::General(
                "the client certificate names none of client_allowed_sans".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn subject_alt_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(n) | GeneralName::RFC822Name(n) | GeneralName::URI(n) => {
                Some((*n).to_owned())
            }
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| std::net::Ipv4Addr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| std::net::Ipv6Addr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The web config as the server uses it: read at start (an invalid file stops the agent,
/// as it stops an exporter), then again whenever a file it depends on changes.
pub struct WebConfigFile {
    path: Option<PathBuf>,
    state: Mutex<(Vec<Stamp>, Arc<WebConfig>)>,
    /// Outcomes of basic-auth checks, so bcrypt (tens of milliseconds) runs once per user,
    /// password and hash, not once per request.
    verified: Mutex<HashMap<[u8; 32], bool>>,
}

/// What a file looked like when it was read: modification time and length.
type Stamp = (PathBuf, Option<(SystemTime, u64)>);

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())));
    (path.to_owned(), meta)
}

/// The files a web config depends on: itself and the TLS files it names.
fn dependencies(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_owned()];
    let dir = path.parent().unwrap_or(Path::new("."));
    let raw: Option<RawConfig> = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_saphyr::from_str(&t).ok());
    if let Some(tls) = raw.and_then(|r| r.tls_server_config) {
        for file in [&tls.cert_file, &tls.key_file, &tls.client_ca_file] {
            if !file.is_empty() {
                files.push(resolve(dir, file));
            }
        }
    }
    files
}

impl WebConfigFile {
    /// Without a file: plain HTTP, no auth.
    pub fn none() -> WebConfigFile {
        WebConfigFile {
            path: None,
            state: Mutex::new((Vec::new(), Arc::new(WebConfig::open()))),
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn open(path: &Path) -> Result<WebConfigFile, String> {
        let stamps = dependencies(path).iter().map(|p| stamp(p)).collect();
        let config = load(path)?;
        Ok(WebConfigFile {
            path: Some(path.to_owned()),
            state: Mutex::new((stamps, Arc::new(config))),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The config in force; read again first if a file changed.
    pub fn current(&self) -> Arc<WebConfig> {
        let Some(path) = &self.path else {
            return Arc::clone(&self.lock().1);
        };
        let stamps: Vec<Stamp> = dependencies(path).iter().map(|p| stamp(p)).collect();
        let mut state = self.lock();
        if state.0 != stamps {
            state.0 = stamps;
            match load(path) {
                Ok(config) => {
                    tracing::info!(file = %path.display(), tls = config.tls.is_some(), users = config.users.len(), "web config read");
                    state.1 = Arc::new(config);
                }
                Err(error) => {
                    tracing::error!(%error, "web config refused; the previous one stays in force")
                }
            }
        }
        Arc::clone(&state.1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Stamp>, Arc<WebConfig>)> {
        // Poisoning needs a panic while the lock is held; nothing here can panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a request's `Authorization` header names a user of `config` with the right
    /// password. An unknown user is checked against a fixed hash, so the time taken does not
    /// tell which users exist.
    pub async fn authorized(&self, config: &WebConfig, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return false;
        };
        let known = config.users.get(&user);
        let hash = known.cloned().unwrap_or_else(|| DUMMY_HASH.clone());
        let key = {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            for part in [user.as_bytes(), hash.as_bytes(), password.as_bytes()] {
                ctx.update(&(part.len() as u64).to_be_bytes());
                ctx.update(part);
            }
            let mut key = [0u8; 32];
            key.copy_from_slice(ctx.finish().as_ref());
            key
        };
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied();
        let matches = match cached {
            Some(ok) => ok,
            None => {
                let ok = tokio::task::spawn_blocking(move || {
                    bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
                })
                .await
                .unwrap_or(false);
                let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                if verified.len() > 1024 {
                    verified.clear();
                }
                verified.insert(key, ok);
                ok
            }
        };
        matches && known.is_some()
    }
}

/// A bcrypt hash of a password nobody knows, for unknown users.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    bcrypt::hash("no such user: compared only to take the same time", 10)
        .unwrap_or_else(|_| "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi".into())
});

fn basic_credentials(header: &HeaderValue) -> Option<(String, String)> {
    use base64::Engine;
    let text = header.to_str().ok()?;
    let encoded = text
        .strip_prefix("Basic ")
        .or_else(|| text.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn bad_files_are_refused_with_what_is_wrong() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = crate::probe::test_servers::certificate(2030);
        write(dir.path(), "cert.pem", &cert.pem());
        write(dir.path(), "key.pem", &key.serialize_pem());
        let cases = [
            ("unknown: 1\n", "unknown field"),
            ("tls_server_config: {cert_file: cert.pem}\n", "missing key_file"),
            (
                "tls_server_config: {cert_file: cert.pem, key_file: key.pem, min_version: TLS10}\n",
                "rustls speaks TLS 1.2 and 1.3 only",
            ),
            (
                "tls_server_config: {cert_file: cert.pem, key_file: key.pem, client_ca_file: cert.pem}\n",
                "without a Client Auth Policy",
            ),
            (
                "tls_server_config: {cert_file: cert.pem, key_file: key.pem, client_auth_type: RequireAndVerifyClientCert}\n",
                "needs client_ca_file",
            ),
            (
                "tls_server_config: {cert_file: cert.pem, key_file: key.pem, cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]}\n",
                "unknown cipher",
            ),
            ("basic_auth_users: {alice: plaintext}\n", "not a bcrypt hash"),
            (
                "http_server_config: {headers: {X-Powered-By: me}}\n",
                "can not be configured",
            ),
            (
                "http_server_config: {headers: {X-Frame-Options: allow}}\n",
                "expected one of",
            ),
        ];
        for (text, says) in cases {
            let path = write(dir.path(), "web.yml", text);
            match load(&path) {
                Err(e) => assert!(e.contains(says), "{text}: {e}"),
                Ok(c) => panic!("{text} accepted: {c:?}"),
            }
        }
        let path = write(
            dir.path(),
            "web.yml",
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  min_version: TLS13\nhttp_server_config:\n  headers: {X-Frame-Options: deny}\n",
        );
        let ok = load(&path).expect("valid");
        assert!(ok.tls.is_some());
        assert_eq!(ok.headers.len(), 1);
    }

    #[tokio::test]
    async fn basic_auth_checks_users_and_passwords() {
        use base64::Engine;
        let dir = tempfile::tempdir().expect("dir");
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let path = write(
            dir.path(),
            "web.yml",
            &format!("basic_auth_users: {{alice: '{hash}'}}\n"),
        );
        let file = WebConfigFile::open(&path).expect("valid");
        let config = file.current();
        assert!(config.requires_auth());
        let header = |user: &str, password: &str| {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            HeaderValue::from_str(&format!("Basic {encoded}")).expect("header")
        };
        assert!(
            file.authorized(&config, Some(&header("alice", "s3cret")))
                .await
        );
        assert!(
            file.authorized(&config, Some(&header("alice", "s3cret")))
                .await,
            "cached"
        );
        assert!(
            !file
                .authorized(&config, Some(&header("alice", "wrong")))
                .await
        );
        assert!(
            !file
                .authorized(&config, Some(&header("bob", "s3cret")))
                .await
        );
        assert!(!file.authorized(&config, None).await);
        // Changed on disk: read again.
        let other = bcrypt::hash("n3w", 4).expect("hash");
        std::fs::write(
            &path,
            format!("basic_auth_users: {{alice: '{other}'}}\n  \n"),
        )
        .expect("rewrite");
        let config = file.current();
        assert!(
            file.authorized(&config, Some(&header("alice", "n3w")))
                .await
        );
        // Broken on disk: the last good one stays.
        std::fs::write(&path, "basic_auth_users: [broken\n").expect("break");
        let config = file.current();
        assert!(
            file.authorized(&config, Some(&header("alice", "n3w")))
                .await
        );
    }
}
