//! TLS posture of a server: certificate expiry (leaf and whole chain), chain validity against
//! the system roots or a CA file, hostname match, negotiated version and cipher, key type and
//! size, the certificate's fingerprint and its change, whether TLS 1.0 or 1.1 are still
//! accepted, and one grade (A to F) with the reasons behind it. Over TLS directly or after
//! SMTP STARTTLS.
//!
//! The handshake verifies the chain with rustls's WebPKI verifier but records its verdict
//! instead of aborting, so an untrusted or expired certificate is still inspected. rustls
//! does not speak TLS 1.0/1.1 at all; the legacy check sends its own minimal ClientHello that
//! offers only that version and reads whether the server answers with a ServerHello.

use crate::model::Grade;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::tls_wire::{legacy_client_hello, smtp_starttls};
use super::{resolve_one, Detail, FailureReason, IpFamily, ProbeContext};
use crate::model::{FieldError, Spanned};
use crate::tls::{ca_roots, provider};

const EXPIRY_WARNING: Duration = Duration::from_secs(21 * 86_400);

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Alert conditions of this check, over the built-in ones and the matching rules.
    #[serde(default)]
    pub alerts: Option<Box<crate::model::AlertsConfig>>,
    /// Name of the check within its target; defaults to `tls`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Name sent as SNI and checked against the certificate; default the target's address.
    #[serde(default)]
    pub server_name: Option<Spanned<String>>,
    /// Speak a protocol's plain greeting first: `smtp` (EHLO, STARTTLS).
    #[serde(default)]
    pub starttls: Option<StartTls>,
    /// PEM file with the CA certificates to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    /// Also test whether TLS 1.0 and 1.1 are still accepted (two extra connections).
    #[serde(default = "default_true")]
    pub check_legacy: bool,
    #[serde(default)]
    pub ip_family: Option<IpFamily>,
}

fn default_port() -> u16 {
    443
}
fn default_true() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartTls {
    Smtp,
}

pub struct TlsProbe {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    starttls: Option<StartTls>,
    /// A verifier for the check's own CA; `None` uses the system roots.
    verifier: Option<Arc<WebPkiServerVerifier>>,
    check_legacy: bool,
    ip_family: Option<IpFamily>,
}

impl std::fmt::Debug for TlsProbe {
    // The verifier holds the roots; the config it came from is what identifies the probe.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsProbe")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("server_name", &self.server_name)
            .field("starttls", &self.starttls)
            .field("own_ca", &self.verifier.is_some())
            .field("check_legacy", &self.check_legacy)
            .field("ip_family", &self.ip_family)
            .finish()
    }
}

impl TlsProbe {
    pub fn new(config: &TlsConfig, address: Option<&str>) -> Result<TlsProbe, Vec<FieldError>> {
        let mut errors = Vec::new();
        if config.port == 0 {
            errors.push(FieldError::unlocated(
                "tls port must be 1 to 65535".to_owned(),
            ));
        }
        let Some(host) = super::require_address(super::Kind::Tls, address, &mut errors) else {
            return Err(errors);
        };
        let name_text = config
            .server_name
            .as_ref()
            .map_or(host, |n| n.value.as_str());
        let server_name = ServerName::try_from(name_text.to_owned()).map_err(|_| {
            let message =
                format!("invalid server_name {name_text:?}: expected a DNS name or an IP address");
            match &config.server_name {
                Some(n) => FieldError::at(n.referenced, message),
                None => FieldError::unlocated(message),
            }
        });
        let server_name = match server_name {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let verifier = match &config.ca_file {
            None => None,
            Some(path) => match ca_roots(&path.value).and_then(|roots| verifier(Arc::new(roots))) {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.push(FieldError::at(path.referenced, e));
                    None
                }
            },
        };
        let (Some(server_name), true) = (server_name, errors.is_empty()) else {
            return Err(errors);
        };
        Ok(TlsProbe {
            host: host.to_owned(),
            port: config.port,
            server_name,
            starttls: config.starttls,
            verifier,
            check_legacy: config.check_legacy,
            ip_family: config.ip_family,
        })
    }

    pub async fn run(
        &self,
        ctx: &ProbeContext,
        deadline: Instant,
    ) -> (Option<FailureReason>, Detail) {
        let addr = match resolve_one(&self.host, self.port, self.ip_family).await {
            Ok(addr) => addr,
            Err(reason) => return (Some(reason), Detail::None),
        };
        let verifier = match &self.verifier {
            Some(v) => Arc::clone(v),
            None => match verifier(Arc::clone(&ctx.roots)) {
                Ok(v) => v,
                Err(_) => return (Some(FailureReason::Tls), Detail::None),
            },
        };
        let mut legacy = Vec::new();
        if self.check_legacy {
            for (version, label) in [(0x0301u16, "TLS1.0"), (0x0302, "TLS1.1")] {
                let accepted = self.legacy_accepted(addr, version, deadline).await;
                legacy.push((label, accepted));
            }
        }
        let handshake = self.handshake(addr, verifier, deadline).await;
        let mut detail = TlsDetail {
            legacy,
            ..TlsDetail::default()
        };
        let failure = match handshake {
            Err(reason) => {
                detail.reasons.push(match reason {
                    FailureReason::Timeout => "handshake timed out",
                    _ => "handshake failed",
                });
                Some(reason)
            }
            Ok(h) => {
                self.inspect(h, &mut detail);
                (!detail.chain_valid || !detail.hostname_match).then_some(FailureReason::Tls)
            }
        };
        let (grade, reasons) = grade(&detail);
        detail.grade = grade;
        detail.reasons.extend(reasons);
        (failure, Detail::Tls(Box::new(detail)))
    }

    async fn connect(
        &self,
        addr: std::net::SocketAddr,
        deadline: Instant,
    ) -> Result<TcpStream, FailureReason> {
        let mut stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| FailureReason::Timeout)?
            .map_err(|e| FailureReason::from_io(&e))?;
        if self.starttls == Some(StartTls::Smtp) {
            tokio::time::timeout_at(deadline, smtp_starttls(&mut stream))
                .await
                .map_err(|_| FailureReason::Timeout)??;
        }
        Ok(stream)
    }

    async fn handshake(
        &self,
        addr: std::net::SocketAddr,
        inner: Arc<WebPkiServerVerifier>,
        deadline: Instant,
    ) -> Result<Handshake, FailureReason> {
        let recorder = Arc::new(Recorder {
            inner,
            verdict: Mutex::new(None),
        });
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|_| FailureReason::Tls)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(&recorder) as Arc<dyn ServerCertVerifier>)
            .with_no_client_auth();
        let stream = self.connect(addr, deadline).await?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tls = tokio::time::timeout_at(
            deadline,
            connector.connect(self.server_name.clone(), stream),
        )
        .await
        .map_err(|_| FailureReason::Timeout)?
        .map_err(|_| FailureReason::Tls)?;
        let (_, conn) = tls.get_ref();
        let verdict = recorder
            .verdict
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        Ok(Handshake {
            version: conn.protocol_version().map_or("unknown", version_name),
            cipher: conn
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()))
                .unwrap_or_default(),
            chain: conn
                .peer_certificates()
                .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect())
                .unwrap_or_default(),
            verdict: verdict.unwrap_or(Err(rustls::Error::NoCertificatesPresented)),
        })
    }

    fn inspect(&self, h: Handshake, detail: &mut TlsDetail) {
        detail.version = h.version;
        detail.cipher = h.cipher;
        let now = SystemTime::now();
        match &h.verdict {
            Ok(()) => {
                detail.chain_valid = true;
                detail.hostname_match = true;
            }
            Err(rustls::Error::InvalidCertificate(e)) => {
                use rustls::CertificateError as C;
                detail.hostname_match =
                    !matches!(e, C::NotValidForName | C::NotValidForNameContext { .. });
                // A name mismatch says nothing against the chain itself.
                detail.chain_valid = !detail.hostname_match;
                detail.problem = Some(format!("{e:?}"));
            }
            Err(e) => detail.problem = Some(e.to_string()),
        }
        let parsed: Vec<_> = h
            .chain
            .iter()
            .filter_map(|der| {
                x509_parser::parse_x509_certificate(der)
                    .ok()
                    .map(|(_, c)| c)
            })
            .collect();
        if let Some(leaf) = parsed.first() {
            detail.leaf_not_after = timestamp(leaf.validity().not_after.timestamp());
            detail.issuer = leaf.issuer().to_string();
            detail.key = key_description(leaf.public_key());
            detail.key_bits = leaf
                .public_key()
                .parsed()
                .ok()
                .and_then(|k| u32::try_from(k.key_size()).ok())
                .filter(|bits| *bits > 0);
            detail.expired = detail.leaf_not_after.is_some_and(|t| t < now);
        }
        detail.chain_not_after = parsed
            .iter()
            .filter_map(|c| timestamp(c.validity().not_after.timestamp()))
            .min();
        if let Some(leaf_der) = h.chain.first() {
            let digest = ring::digest::digest(&ring::digest::SHA256, leaf_der);
            detail.fingerprint = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        }
    }

    /// Offers only `version` (0x0301 = TLS 1.0, 0x0302 = 1.1); true if the server agrees.
    async fn legacy_accepted(
        &self,
        addr: std::net::SocketAddr,
        version: u16,
        deadline: Instant,
    ) -> bool {
        let exchange = async {
            let mut stream = self.connect(addr, deadline).await.ok()?;
            let sni = match &self.server_name {
                ServerName::DnsName(name) => Some(name.as_ref().to_owned()),
                _ => None,
            };
            stream
                .write_all(&legacy_client_hello(version, sni.as_deref()))
                .await
                .ok()?;
            let mut header = [0u8; 9];
            stream.read_exact(&mut header).await.ok()?;
            // Handshake record (22) holding a ServerHello (2) at the version we offered.
            Some(
                header[0] == 22 && header[5] == 2 && {
                    let mut server_version = [0u8; 2];
                    stream.read_exact(&mut server_version).await.ok()?;
                    u16::from_be_bytes(server_version) == version
                },
            )
        };
        tokio::time::timeout_at(deadline, exchange)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }
}

struct Handshake {
    version: &'static str,
    cipher: String,
    chain: Vec<Vec<u8>>,
    verdict: Result<(), rustls::Error>,
}

/// What a TLS round found.
#[derive(Debug, Clone, Default)]
pub struct TlsDetail {
    pub version: &'static str,
    pub cipher: String,
    pub chain_valid: bool,
    pub hostname_match: bool,
    pub expired: bool,
    /// Why verification failed, when it did.
    pub problem: Option<String>,
    pub leaf_not_after: Option<SystemTime>,
    /// The earliest notAfter in the chain the server sent.
    pub chain_not_after: Option<SystemTime>,
    pub issuer: String,
    pub key: String,
    /// Bits of the leaf's public key (RSA modulus, EC field size).
    pub key_bits: Option<u32>,
    /// SHA-256 of the leaf certificate, hex.
    pub fingerprint: String,
    /// Set by the state: the fingerprint differs from its baseline.
    pub fingerprint_changed: bool,
    /// `("TLS1.0", accepted)`, `("TLS1.1", accepted)` when checked.
    pub legacy: Vec<(&'static str, bool)>,
    pub grade: Grade,
    pub reasons: Vec<&'static str>,
}

/// The grade and the reasons that lowered it.
pub fn grade(d: &TlsDetail) -> (Grade, Vec<&'static str>) {
    let mut grade = Grade::A;
    let mut reasons = Vec::new();
    let mut cap = |g: Grade, reason: &'static str| {
        grade = grade.min(g);
        reasons.push(reason);
    };
    if d.version.is_empty() {
        cap(Grade::F, "no TLS 1.2 or 1.3 handshake");
    } else {
        if d.expired {
            cap(Grade::F, "certificate expired");
        }
        if !d.chain_valid && !d.expired {
            cap(Grade::F, "certificate not trusted");
        }
        if !d.hostname_match {
            cap(Grade::F, "certificate does not match the host name");
        }
        if d.version != "TLS1.3" {
            cap(Grade::B, "TLS 1.3 not offered");
        }
        if let Some(bits) = d
            .key
            .strip_prefix("RSA ")
            .and_then(|b| b.parse::<u32>().ok())
        {
            if bits < 1024 {
                cap(Grade::F, "RSA key below 1024 bits");
            } else if bits < 2048 {
                cap(Grade::C, "RSA key below 2048 bits");
            }
        }
    }
    for (version, accepted) in &d.legacy {
        if *accepted {
            cap(
                Grade::C,
                if *version == "TLS1.0" {
                    "accepts TLS 1.0"
                } else {
                    "accepts TLS 1.1"
                },
            );
        }
    }
    // A note, not a cap: expiry has its own alerts at 21 and 7 days.
    let expiring = !d.expired
        && d.leaf_not_after
            .is_some_and(|t| t < SystemTime::now() + EXPIRY_WARNING);
    if expiring {
        reasons.push("certificate expires within 21 days");
    }
    (grade, reasons)
}

fn verifier(roots: Arc<rustls::RootCertStore>) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| format!("cannot build a certificate verifier: {e}"))
}

/// Verifies like rustls would, remembers the verdict, and lets the handshake go on so the
/// certificate can be inspected. Handshake signatures are still checked.
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    verdict: Mutex<Option<Result<(), rustls::Error>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map(|_| ());
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(verdict);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn version_name(v: rustls::ProtocolVersion) -> &'static str {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLS1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLS1.2",
        rustls::ProtocolVersion::TLSv1_1 => "TLS1.1",
        rustls::ProtocolVersion::TLSv1_0 => "TLS1.0",
        _ => "unknown",
    }
}

fn timestamp(secs: i64) -> Option<SystemTime> {
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

fn key_description(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(point)) => format!("EC {}", point.key_size()),
        Ok(PublicKey::DSA(_)) => "DSA".to_owned(),
        Ok(_) => spki.algorithm.algorithm.to_id_string(),
        Err(_) => "unknown".to_owned(),
    }
}

impl std::fmt::Display for TlsDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  grade {} {}",
            self.grade.letter(),
            self.reasons.join("; ")
        )?;
        writeln!(
            f,
            "  {} {} key {} issuer {}",
            self.version, self.cipher, self.key, self.issuer
        )?;
        writeln!(
            f,
            "  chain valid {}, hostname match {}",
            self.chain_valid, self.hostname_match
        )?;
        if let Some(problem) = &self.problem {
            writeln!(f, "  problem: {problem}")?;
        }
        for (version, accepted) in &self.legacy {
            writeln!(f, "  {version} accepted: {accepted}")?;
        }
        if !self.fingerprint.is_empty() {
            writeln!(f, "  sha256 {}", self.fingerprint)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::test_servers::{
        certificate, hold_open, response, serve, server_config, smtp_starttls_server, tls_wrap,
        Reply, Stream, Wrap,
    };
    use std::sync::atomic::{AtomicBool, Ordering};

    const SOON: Duration = Duration::from_secs(5);

    fn probe(port: u16, extra: &str, ca: Option<&std::path::Path>) -> TlsProbe {
        let mut text = format!("port: {port}\nserver_name: localhost\n{extra}");
        if let Some(ca) = ca {
            text.push_str(&format!(
                "ca_file: {}\n",
                serde_json::to_string(ca).expect("path")
            ));
        }
        TlsProbe::new(&crate::model::parse_test_yaml(&text), Some("127.0.0.1")).expect("valid")
    }

    async fn run(p: &TlsProbe, within: Duration) -> (Option<FailureReason>, TlsDetail) {
        let ctx = ProbeContext::new();
        let (failure, detail) = p.run(&ctx, Instant::now() + within).await;
        match detail {
            Detail::Tls(d) => (failure, *d),
            other => panic!("expected tls detail, got {other:?}"),
        }
    }

    /// A TLS server with a certificate for localhost valid until June of `year`, and its CA file.
    async fn server(year: i32) -> (u16, tempfile::NamedTempFile) {
        let (cert, key) = certificate(year);
        let port = serve(
            |_| response("200 OK", "", "ok"),
            Some(tls_wrap(server_config(&cert, &key))),
        )
        .await;
        let ca = tempfile::NamedTempFile::new().expect("ca");
        std::fs::write(ca.path(), cert.pem()).expect("write");
        (port, ca)
    }

    #[tokio::test]
    async fn a_good_server_gets_an_a() {
        let (port, ca) = server(2031).await;
        let (failure, d) = run(&probe(port, "", Some(ca.path())), SOON).await;
        assert_eq!(failure, None, "{d:?}");
        assert_eq!(
            (d.grade, d.version),
            (Grade::A, "TLS1.3"),
            "{:?}",
            d.reasons
        );
        assert!(d.chain_valid && d.hostname_match && !d.expired);
        assert_eq!(d.legacy, [("TLS1.0", false), ("TLS1.1", false)]);
        assert_eq!(d.key, "EC 256");
        assert_eq!(d.fingerprint.len(), 64);
        assert!(d.leaf_not_after.is_some() && d.chain_not_after == d.leaf_not_after);
    }

    #[tokio::test]
    async fn untrusted_expired_and_misnamed_certificates_fail_with_grade_f() {
        let (port, ca) = server(2031).await;
        let (failure, d) = run(&probe(port, "", None), SOON).await;
        assert_eq!(failure, Some(FailureReason::Tls));
        assert_eq!(d.grade, Grade::F);
        assert!(
            d.reasons.contains(&"certificate not trusted"),
            "{:?}",
            d.reasons
        );
        assert!(!d.fingerprint.is_empty(), "still inspected");

        let wrong = TlsProbe::new(
            &crate::model::parse_test_yaml(&format!(
                "port: {port}\nserver_name: portal.example\nca_file: {}\n",
                serde_json::to_string(ca.path()).expect("path")
            )),
            Some("127.0.0.1"),
        )
        .expect("valid");
        let (failure, d) = run(&wrong, SOON).await;
        assert_eq!(failure, Some(FailureReason::Tls));
        assert!(!d.hostname_match && d.chain_valid, "{d:?}");
        assert!(d
            .reasons
            .contains(&"certificate does not match the host name"));

        let (old, old_ca) = server(2021).await;
        let (failure, d) = run(&probe(old, "", Some(old_ca.path())), SOON).await;
        assert_eq!(failure, Some(FailureReason::Tls));
        assert!(d.expired, "{d:?}");
        assert_eq!(d.grade, Grade::F);
        assert!(d.reasons.contains(&"certificate expired"));
    }

    #[tokio::test]
    async fn a_changed_certificate_is_noticed_until_accepted() {
        let (first, first_key) = certificate(2031);
        let (second, second_key) = certificate(2032);
        let flipped = Arc::new(AtomicBool::new(false));
        let (a, b) = (
            tokio_rustls::TlsAcceptor::from(server_config(&first, &first_key)),
            tokio_rustls::TlsAcceptor::from(server_config(&second, &second_key)),
        );
        let choice = Arc::clone(&flipped);
        let wrap: Wrap = Arc::new(move |tcp| {
            let acceptor = if choice.load(Ordering::SeqCst) {
                b.clone()
            } else {
                a.clone()
            };
            Box::pin(async move {
                acceptor
                    .accept(tcp)
                    .await
                    .ok()
                    .map(|s| Box::pin(s) as Stream)
            })
        });
        let port = serve(|_| response("200 OK", "", "ok"), Some(wrap)).await;
        let p = probe(port, "check_legacy: false\n", None);
        let before = run(&p, SOON).await.1.fingerprint;
        assert_eq!(before.len(), 64, "SHA-256 in hex");
        assert_eq!(
            run(&p, SOON).await.1.fingerprint,
            before,
            "same certificate"
        );
        flipped.store(true, Ordering::SeqCst);
        let after = run(&p, SOON).await.1;
        assert_ne!(
            after.fingerprint, before,
            "a new certificate, a new fingerprint"
        );
        assert!(
            !after.fingerprint_changed,
            "the probe measures; the state judges"
        );
    }

    #[tokio::test]
    async fn starttls_on_smtp() {
        let (cert, key) = certificate(2031);
        let port = smtp_starttls_server(server_config(&cert, &key)).await;
        let ca = tempfile::NamedTempFile::new().expect("ca");
        std::fs::write(ca.path(), cert.pem()).expect("write");
        let (failure, d) = run(
            &probe(
                port,
                "starttls: smtp\ncheck_legacy: false\n",
                Some(ca.path()),
            ),
            SOON,
        )
        .await;
        assert_eq!(failure, None, "{d:?}");
        assert_eq!(d.version, "TLS1.3");
    }

    #[tokio::test]
    async fn hanging_and_garbage_servers_do_not_stall_the_probe() {
        let hanging = serve(|_| Reply::Hang, Some(hold_open())).await;
        let started = Instant::now();
        let (failure, d) = run(&probe(hanging, "", None), Duration::from_millis(400)).await;
        assert_eq!(failure, Some(FailureReason::Timeout));
        assert_eq!(d.grade, Grade::F);
        assert!(started.elapsed() < Duration::from_secs(3));

        // Answers every connection with bytes that are not TLS.
        let garbage = serve(
            |_| Reply::Hang,
            Some(Arc::new(|mut tcp: tokio::net::TcpStream| {
                Box::pin(async move {
                    let _ = tcp
                        .write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n\x00\xff garbage")
                        .await;
                    None
                })
            })),
        )
        .await;
        let (failure, d) = run(&probe(garbage, "", None), SOON).await;
        assert_eq!(failure, Some(FailureReason::Tls));
        assert_eq!(d.legacy, [("TLS1.0", false), ("TLS1.1", false)]);
    }

    /// A server whose certificate is not X.509 at all: the handshake completes (the key is
    /// real), verification fails, nothing is parsed, and the probe reports it calmly.
    #[tokio::test]
    async fn a_garbage_certificate_is_a_failure_not_a_crash() {
        #[derive(Debug)]
        struct Garbage(Arc<rustls::sign::CertifiedKey>);
        impl rustls::server::ResolvesServerCert for Garbage {
            fn resolve(
                &self,
                _: rustls::server::ClientHello<'_>,
            ) -> Option<Arc<rustls::sign::CertifiedKey>> {
                Some(Arc::clone(&self.0))
            }
        }
        let (_, key) = certificate(2031);
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signing = provider().key_provider.load_private_key(der).expect("key");
        let garbage = rustls::sign::CertifiedKey::new(
            vec![CertificateDer::from(b"\x30\x03garbage".to_vec())],
            signing,
        );
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Garbage(Arc::new(garbage))));
        let port = serve(
            |_| response("200 OK", "", "ok"),
            Some(tls_wrap(Arc::new(config))),
        )
        .await;
        let (failure, d) = run(&probe(port, "check_legacy: false\n", None), SOON).await;
        assert_eq!(failure, Some(FailureReason::Tls));
        assert!(!d.chain_valid && d.leaf_not_after.is_none(), "{d:?}");
        assert_eq!(d.grade, Grade::F);
    }

    /// A server that speaks only TLS 1.0 (Debian's openssl with the old protocol re-enabled):
    /// the legacy check sees it, rustls cannot handshake, the grade says why.
    #[tokio::test]
    async fn a_tls_1_0_only_server_is_detected() {
        let (cert, key) = certificate(2031);
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).expect("cert");
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("key");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut server = tokio::process::Command::new("openssl")
            .current_dir(dir.path())
            .args([
                "s_server",
                "-accept",
                &format!("127.0.0.1:{port}"),
                "-cert",
                "cert.pem",
                "-key",
                "key.pem",
            ])
            .args(["-tls1", "-cipher", "DEFAULT@SECLEVEL=0", "-www", "-quiet"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("openssl must be installed (Debian package openssl)");
        let deadline = Instant::now() + SOON;
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (failure, d) = run(&probe(port, "", None), SOON).await;
        assert_eq!(failure, Some(FailureReason::Tls));
        assert_eq!(d.legacy, [("TLS1.0", true), ("TLS1.1", false)], "{d:?}");
        assert!(d.reasons.contains(&"accepts TLS 1.0"), "{:?}", d.reasons);
        assert_eq!(d.grade, Grade::F);
        let _ = server.kill().await;
    }

    #[test]
    fn grades_follow_the_findings() {
        let good = TlsDetail {
            version: "TLS1.3",
            chain_valid: true,
            hostname_match: true,
            key: "RSA 2048".into(),
            leaf_not_after: Some(SystemTime::now() + Duration::from_secs(90 * 86_400)),
            legacy: vec![("TLS1.0", false), ("TLS1.1", false)],
            ..TlsDetail::default()
        };
        assert_eq!(grade(&good), (Grade::A, vec![]));
        let tls12 = TlsDetail {
            version: "TLS1.2",
            ..good.clone()
        };
        assert_eq!(grade(&tls12).0, Grade::B);
        let legacy = TlsDetail {
            legacy: vec![("TLS1.0", false), ("TLS1.1", true)],
            ..good.clone()
        };
        assert_eq!(grade(&legacy), (Grade::C, vec!["accepts TLS 1.1"]));
        let weak = TlsDetail {
            key: "RSA 1024".into(),
            ..good.clone()
        };
        assert_eq!(grade(&weak).0, Grade::C);
        let soon = TlsDetail {
            leaf_not_after: Some(SystemTime::now() + Duration::from_secs(86_400)),
            ..good
        };
        assert_eq!(
            grade(&soon),
            (Grade::A, vec!["certificate expires within 21 days"])
        );
    }
}
