//! Real servers on loopback for probe tests, hostile ones included: an HTTP/1.1 server that
//! answers with whatever a handler says (slowly, hugely, malformed or not at all), optionally
//! behind TLS with a certificate made by rcgen.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::probe::tls_config::provider;

/// What the test server does with one request: write these bytes (then close), or hang.
pub(crate) enum Reply {
    Bytes(Vec<u8>),
    /// Sends headers, then `chunks` chunks of 64 KiB of body without a length.
    Endless,
    Hang,
}

pub(crate) type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;
pub(crate) type Stream = Pin<Box<dyn AsyncStream>>;
pub(crate) trait AsyncStream: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> AsyncStream for T {}
pub(crate) type Wrap = Arc<
    dyn Fn(tokio::net::TcpStream) -> Pin<Box<dyn Future<Output = Option<Stream>> + Send>>
        + Send
        + Sync,
>;

/// A real HTTP/1.1 server on loopback that answers with whatever the handler says,
/// including the hostile answers a probe must survive.
pub(crate) async fn serve(
    handler: impl Fn(&str) -> Reply + Send + Sync + 'static,
    wrap: Option<Wrap>,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handler: Handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (handler, wrap) = (Arc::clone(&handler), wrap.clone());
            tokio::spawn(async move {
                let stream: Stream = match wrap {
                    Some(wrap) => match wrap(tcp).await {
                        Some(s) => s,
                        None => return,
                    },
                    None => Box::pin(tcp),
                };
                answer(stream, handler).await;
            });
        }
    });
    port
}

async fn answer(mut stream: Stream, handler: Handler) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    match handler(&String::from_utf8_lossy(&head)) {
        Reply::Bytes(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Reply::Endless => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
                .await;
            let chunk = vec![b'x'; 64 * 1024];
            // Bounded: 64 MiB at most, far past any cap the tests set.
            for _ in 0..1024 {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
        Reply::Hang => std::future::pending::<()>().await,
    }
}

pub(crate) fn response(status: &str, headers: &str, body: &str) -> Reply {
    Reply::Bytes(
        format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

pub(crate) fn tls_wrap(server: Arc<rustls::ServerConfig>) -> Wrap {
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    Arc::new(move |tcp| {
        let acceptor = acceptor.clone();
        Box::pin(async move {
            acceptor
                .accept(tcp)
                .await
                .ok()
                .map(|s| Box::pin(s) as Stream)
        })
    })
}

/// A self-signed certificate for `localhost` valid until the given year.
pub(crate) fn certificate(until_year: i32) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(until_year, 6, 1);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    (cert, key)
}

pub(crate) fn server_config(
    cert: &rcgen::Certificate,
    key: &rcgen::KeyPair,
) -> Arc<rustls::ServerConfig> {
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server config");
    Arc::new(config)
}
