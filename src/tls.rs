//! TLS client settings shared by probes and notifiers: the system roots (built once), a
//! configured CA file, or `insecure_skip_verify`. ring is the crypto provider (no C toolchain
//! for aws-lc). A leaf: it imports nothing of the crate.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn finish(config: rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// TLS settings with the operating system's trusted roots.
pub fn system_tls_config() -> Arc<rustls::ClientConfig> {
    root_config(system_roots().as_ref().clone())
}

/// The operating system's trusted roots, loaded once at start-up.
pub fn system_roots() -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::warn!(%error, "could not load some system root certificates");
    }
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        tracing::warn!("no system root certificates found: HTTPS checks will fail verification unless they set ca_file");
    }
    Arc::new(roots)
}

pub fn root_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    // The ring provider supports the safe default versions, so this cannot fail.
    match rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => finish(builder.with_root_certificates(roots).with_no_client_auth()),
        Err(e) => unreachable!("ring supports the default protocol versions: {e}"),
    }
}

pub fn ca_tls_config(path: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    Ok(root_config(ca_roots(path)?))
}

/// The certificates of a PEM file, as trusted roots.
pub fn ca_roots(path: &str) -> Result<rustls::RootCertStore, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read ca_file {path:?}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca_file {path:?} is not valid PEM: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("ca_file {path:?} holds no usable certificate"));
    }
    Ok(roots)
}

/// A client that trusts `roots` and, when given, shows a certificate of its own (for an
/// agent whose web config asks for client certificates).
pub fn client_config(
    roots: rustls::RootCertStore,
    identity: Option<(&str, &str)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let Some((cert_file, key_file)) = identity else {
        return Ok(root_config(roots));
    };
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the certificate {cert_file:?}: {e}"))?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("cannot read the key {key_file:?}: {e}"))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = builder
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    Ok(finish(config))
}

pub fn insecure_tls_config() -> Arc<rustls::ClientConfig> {
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
