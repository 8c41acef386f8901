//! Real servers on loopback for probe tests, hostile ones included: an HTTP/1.1 server that
//! answers with whatever a handler says (slowly, hugely, malformed or not at all), optionally
//! behind TLS with a certificate made by rcgen; and a DNS server whose answers a test changes.
//! Built for tests only (`cfg(test)` or the `test-support` feature).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::tls::provider;

/// What the test server does with one request: write these bytes (then close), or hang.
pub enum Reply {
    Bytes(Vec<u8>),
    /// Sends headers, then `chunks` chunks of 64 KiB of body without a length.
    Endless,
    Hang,
}

pub type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;
pub type Stream = Pin<Box<dyn AsyncStream>>;
pub trait AsyncStream: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> AsyncStream for T {}
pub type Wrap = Arc<
    dyn Fn(tokio::net::TcpStream) -> Pin<Box<dyn Future<Output = Option<Stream>> + Send>>
        + Send
        + Sync,
>;

/// A real HTTP/1.1 server on loopback that answers with whatever the handler says,
/// including the hostile answers a probe must survive.
pub async fn serve(
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

pub fn response(status: &str, headers: &str, body: &str) -> Reply {
    Reply::Bytes(
        format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// Accepts the TCP connection and then never speaks: a handshake that hangs.
pub fn hold_open() -> Wrap {
    Arc::new(|tcp| {
        Box::pin(async move {
            let _open = tcp;
            std::future::pending::<Option<Stream>>().await
        })
    })
}

pub fn tls_wrap(server: Arc<rustls::ServerConfig>) -> Wrap {
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
pub fn certificate(until_year: i32) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(until_year, 6, 1);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    (cert, key)
}

pub fn server_config(cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> Arc<rustls::ServerConfig> {
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server config");
    Arc::new(config)
}

/// A DNS server on loopback (UDP and TCP on one port) answering A queries from a table the
/// test can change while it runs; NXDOMAIN for names it does not know.
pub struct DnsServer {
    pub addr: std::net::SocketAddr,
    records: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>>,
}

impl DnsServer {
    pub async fn start() -> DnsServer {
        // UDP and TCP must share the port; retry until a free port is free for both.
        let (udp, tcp) = loop {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind udp");
            let addr = udp.local_addr().expect("addr");
            if let Ok(tcp) = TcpListener::bind(addr).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().expect("addr");
        let records: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>> =
            Arc::default();
        let table = Arc::clone(&records);
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                if let Some(reply) = dns_answer(&buf[..n], &table) {
                    let _ = udp.send_to(&reply, from).await;
                }
            }
        });
        let table = Arc::clone(&records);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let table = Arc::clone(&table);
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    if let Some(reply) = dns_answer(&query, &table) {
                        let Ok(n) = u16::try_from(reply.len()) else {
                            return;
                        };
                        let _ = stream.write_all(&n.to_be_bytes()).await;
                        let _ = stream.write_all(&reply).await;
                    }
                });
            }
        });
        DnsServer { addr, records }
    }

    /// Sets the A records of `name` (without the trailing dot).
    pub fn set(&self, name: &str, addresses: &[&str]) {
        let mut table = self.records.lock().expect("test lock");
        table.insert(
            name.to_owned(),
            addresses.iter().map(|a| (*a).to_owned()).collect(),
        );
    }
}

fn dns_answer(
    query: &[u8],
    table: &std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
) -> Option<Vec<u8>> {
    use hickory_proto::op::{Message, OpCode, ResponseCode};
    use hickory_proto::rr::{rdata::A, RData, Record};
    let request = Message::from_vec(query).ok()?;
    let question = request.queries.first()?.clone();
    let mut response = Message::response(request.metadata.id, OpCode::Query);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.add_query(question.clone());
    let name = question.name().to_string();
    let known = table
        .lock()
        .expect("test lock")
        .get(name.trim_end_matches('.'))
        .cloned();
    match known {
        None => response.metadata.response_code = ResponseCode::NXDomain,
        Some(addresses) => {
            for a in addresses {
                let ip: std::net::Ipv4Addr = a.parse().ok()?;
                response.answers.push(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(ip)),
                ));
            }
        }
    }
    response.to_vec().ok()
}

/// An SMTP server on loopback that greets, answers EHLO with STARTTLS, and then speaks TLS
/// with `server` (as a mail server offering STARTTLS does).
pub async fn smtp_starttls_server(server: Arc<rustls::ServerConfig>) -> u16 {
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                if tcp.write_all(b"220 mail.example ESMTP\r\n").await.is_err() {
                    return;
                }
                for reply in [
                    &b"250-mail.example\r\n250 STARTTLS\r\n"[..],
                    b"220 go ahead\r\n",
                ] {
                    if matches!(tcp.read(&mut buf).await, Ok(0) | Err(_)) {
                        return;
                    }
                    if tcp.write_all(reply).await.is_err() {
                        return;
                    }
                }
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    port
}
