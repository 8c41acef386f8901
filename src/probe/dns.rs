//! DNS: ask one server for one name and type; measure the time, check the response code and
//! the answers, and notice when the answer set changes (a hijack or misconfiguration signal).
//!
//! Messages are built and parsed with hickory-proto; the exchange itself is one datagram (or
//! one length-prefixed TCP message, and TCP again when the UDP answer is truncated), so no
//! background task or connection pool is kept per check.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::str::FromStr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use regex::Regex;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use super::{Detail, FailureReason};
use crate::model::{FieldError, Spanned};

/// A DNS message over UDP without EDNS is at most 512 bytes; we accept what EDNS servers send.
const MAX_UDP_RESPONSE: usize = 4096;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Alert conditions of this check, over the built-in ones and the matching rules.
    #[serde(default)]
    pub alerts: Option<Box<crate::model::AlertsConfig>>,
    /// Name of the check within its target; defaults to `dns`.
    #[serde(default)]
    pub name: Option<String>,
    /// The name to look up, e.g. `dichvucong.laocai.gov.vn`.
    pub query: Spanned<String>,
    /// Record type: A, AAAA, CNAME, MX, NS, TXT, SOA, PTR, SRV, CAA …; default A.
    #[serde(default)]
    pub record_type: Option<Spanned<String>>,
    /// The server to ask, `IP` or `IP:PORT`; default the target's address, port 53.
    #[serde(default)]
    pub server: Option<Spanned<String>>,
    #[serde(default)]
    pub transport: Transport,
    /// Accepted response code; default NOERROR.
    #[serde(default)]
    pub expect_rcode: Option<Spanned<String>>,
    /// The exact answer set expected (order does not matter), e.g. `["203.0.113.10"]`.
    #[serde(default)]
    pub expect_answers: Vec<String>,
    /// A regex every answer must match.
    #[serde(default)]
    pub answer_match: Option<Spanned<String>>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
}

#[derive(Debug)]
pub struct DnsProbe {
    query: Name,
    record_type: RecordType,
    server: Server,
    transport: Transport,
    expect_rcode: ResponseCode,
    expect_answers: Option<BTreeSet<String>>,
    answer_match: Option<Regex>,
}

#[derive(Debug)]
enum Server {
    Addr(SocketAddr),
    /// A host name, resolved each round with the system resolver.
    Name(String, u16),
}

impl DnsProbe {
    pub fn new(config: &DnsConfig, address: Option<&str>) -> Result<DnsProbe, Vec<FieldError>> {
        let mut errors = Vec::new();
        let query = Name::from_utf8(&config.query.value)
            .map(|mut name| {
                name.set_fqdn(true);
                name
            })
            .map_err(|e| {
                errors.push(FieldError::at(
                    config.query.referenced,
                    format!("invalid DNS name {:?}: {e}", config.query.value),
                ))
            })
            .ok();
        let record_type = match &config.record_type {
            None => RecordType::A,
            Some(t) => RecordType::from_str(&t.value.to_ascii_uppercase()).unwrap_or_else(|_| {
                errors.push(FieldError::at(
                    t.referenced,
                    format!("unknown record type {:?}: expected A, AAAA, CNAME, MX, NS, TXT, SOA, PTR, SRV …", t.value),
                ));
                RecordType::A
            }),
        };
        let expect_rcode = match &config.expect_rcode {
            None => ResponseCode::NoError,
            Some(code) => parse_rcode(&code.value).unwrap_or_else(|| {
                errors.push(FieldError::at(
                    code.referenced,
                    format!("unknown response code {:?}: expected NOERROR, NXDOMAIN, SERVFAIL, REFUSED …", code.value),
                ));
                ResponseCode::NoError
            }),
        };
        let answer_match = config.answer_match.as_ref().and_then(|re| {
            Regex::new(&re.value)
                .map_err(|e| {
                    errors.push(FieldError::at(
                        re.referenced,
                        format!("invalid regex in answer_match: {e}"),
                    ))
                })
                .ok()
        });
        let server = match (&config.server, address) {
            (Some(s), _) => parse_server(&s.value).ok_or_else(|| {
                FieldError::at(
                    s.referenced,
                    format!("server {:?}: expected IP, IP:PORT or HOST:PORT", s.value),
                )
            }),
            (None, Some(a)) => parse_server(a).ok_or_else(|| {
                FieldError::unlocated(format!("address {a:?} is not a DNS server address"))
            }),
            (None, None) => Err(FieldError::unlocated(
                "dns check needs `server` or the target's `address`".to_owned(),
            )),
        };
        let server = match server {
            Ok(s) => Some(s),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let (Some(query), Some(server), true) = (query, server, errors.is_empty()) else {
            return Err(errors);
        };
        Ok(DnsProbe {
            query,
            record_type,
            server,
            transport: config.transport,
            expect_rcode,
            expect_answers: (!config.expect_answers.is_empty())
                .then(|| config.expect_answers.iter().map(|a| normalise(a)).collect()),
            answer_match,
        })
    }

    pub async fn run(&self, deadline: Instant) -> (Option<FailureReason>, Detail) {
        let server = match &self.server {
            Server::Addr(addr) => *addr,
            Server::Name(host, port) => match super::resolve_one(host, *port, None).await {
                Ok(addr) => addr,
                Err(reason) => return (Some(reason), Detail::None),
            },
        };
        let mut request = Message::new(rand_id(), MessageType::Query, OpCode::Query);
        request.metadata.recursion_desired = true;
        request.add_query(Query::query(self.query.clone(), self.record_type));
        let Ok(bytes) = request.to_vec() else {
            return (Some(FailureReason::Io), Detail::None);
        };
        let exchanged = match self.transport {
            Transport::Udp => {
                match exchange_udp(server, &bytes, request.metadata.id, deadline).await {
                    // Too big for a datagram: ask again over TCP, as resolvers do.
                    Ok(response) if response.metadata.truncation => {
                        exchange_tcp(server, &bytes, request.metadata.id, deadline).await
                    }
                    other => other,
                }
            }
            Transport::Tcp => exchange_tcp(server, &bytes, request.metadata.id, deadline).await,
        };
        let response = match exchanged {
            Ok(response) => response,
            Err(reason) => return (Some(reason), Detail::None),
        };
        let answers: BTreeSet<String> = response
            .answers
            .iter()
            .filter(|r| r.record_type() == self.record_type)
            .map(|r| normalise(&r.data.to_string()))
            .collect();
        let rcode = response.metadata.response_code;
        let detail = DnsDetail {
            rcode: u16::from(rcode),
            rcode_name: rcode.to_str(),
            answers: answers.iter().cloned().collect(),
            changed: false,
        };
        let failure = if rcode != self.expect_rcode {
            Some(FailureReason::Dns)
        } else if self
            .expect_answers
            .as_ref()
            .is_some_and(|want| *want != answers)
            || self
                .answer_match
                .as_ref()
                .is_some_and(|re| answers.is_empty() || !answers.iter().all(|a| re.is_match(a)))
        {
            Some(FailureReason::Content)
        } else {
            None
        };
        (failure, Detail::Dns(Box::new(detail)))
    }
}

/// What a DNS round measured.
#[derive(Debug, Clone)]
pub struct DnsDetail {
    pub rcode: u16,
    pub rcode_name: &'static str,
    pub answers: Vec<String>,
    /// Set by the state: the answer set differs from its baseline.
    pub changed: bool,
}

fn normalise(answer: &str) -> String {
    answer.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn parse_rcode(text: &str) -> Option<ResponseCode> {
    let code = match text.to_ascii_uppercase().as_str() {
        "NOERROR" => ResponseCode::NoError,
        "FORMERR" => ResponseCode::FormErr,
        "SERVFAIL" => ResponseCode::ServFail,
        "NXDOMAIN" => ResponseCode::NXDomain,
        "NOTIMP" => ResponseCode::NotImp,
        "REFUSED" => ResponseCode::Refused,
        _ => return None,
    };
    Some(code)
}

fn parse_server(text: &str) -> Option<Server> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(Server::Addr(addr));
    }
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Some(Server::Addr(SocketAddr::new(ip, 53)));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (text, 53),
    };
    (!host.is_empty() && !host.contains(':')).then(|| Server::Name(host.to_owned(), port))
}

/// Message ids need not be secret here (we check the answer against the question and the
/// server address), only different between rounds.
fn rand_id() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    u16::try_from(RandomState::new().hash_one(Instant::now()) & 0xffff).unwrap_or(0)
}

async fn exchange_udp(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    deadline: Instant,
) -> Result<Message, FailureReason> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|e| FailureReason::from_io(&e))?;
    socket
        .connect(server)
        .await
        .map_err(|e| FailureReason::from_io(&e))?;
    socket
        .send(request)
        .await
        .map_err(|e| FailureReason::from_io(&e))?;
    let mut buf = vec![0u8; MAX_UDP_RESPONSE];
    loop {
        let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_) => return Err(FailureReason::Timeout),
            Ok(Err(e)) => return Err(FailureReason::from_io(&e)),
            Ok(Ok(n)) => n,
        };
        // A datagram that is not the answer to our question (stale, spoofed, garbage) is
        // ignored, and we keep waiting until the deadline.
        if let Ok(message) = Message::from_vec(&buf[..n]) {
            if message.metadata.id == id && message.metadata.message_type == MessageType::Response {
                return Ok(message);
            }
        }
    }
}

async fn exchange_tcp(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    deadline: Instant,
) -> Result<Message, FailureReason> {
    let within = |e: std::io::Error| FailureReason::from_io(&e);
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.map_err(within)?;
        let len = u16::try_from(request.len()).map_err(|_| FailureReason::Io)?;
        let mut framed = Vec::with_capacity(request.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(request);
        stream.write_all(&framed).await.map_err(within)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.map_err(within)?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut body).await.map_err(within)?;
        let message = Message::from_vec(&body).map_err(|_| FailureReason::Dns)?;
        if message.metadata.id != id {
            return Err(FailureReason::Dns);
        }
        Ok(message)
    };
    tokio::time::timeout_at(deadline, exchange)
        .await
        .unwrap_or(Err(FailureReason::Timeout))
}

impl std::fmt::Display for DnsDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  rcode {} ({})", self.rcode_name, self.rcode)?;
        for answer in &self.answers {
            writeln!(f, "  answer {answer}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::test_servers::DnsServer;
    use std::time::Duration;

    fn probe(server: SocketAddr, extra: &str) -> DnsProbe {
        let text = format!("query: dichvucong.laocai.gov.vn\nserver: \"{server}\"\n{extra}");
        DnsProbe::new(&crate::model::parse_test_yaml(&text), None).expect("valid")
    }

    async fn run(p: &DnsProbe) -> (Option<FailureReason>, Option<DnsDetail>) {
        let (failure, detail) = p.run(Instant::now() + Duration::from_secs(2)).await;
        let detail = match detail {
            Detail::Dns(d) => Some(*d),
            _ => None,
        };
        (failure, detail)
    }

    #[tokio::test]
    async fn answers_are_checked_and_what_was_answered_is_reported() {
        let server = DnsServer::start().await;
        server.set("dichvucong.laocai.gov.vn", &["127.0.10.1", "127.0.10.2"]);
        let p = probe(
            server.addr,
            "expect_answers: [\"127.0.10.2\", \"127.0.10.1\"]\n",
        );
        let (failure, detail) = run(&p).await;
        let detail = detail.expect("detail");
        assert_eq!(failure, None);
        assert_eq!(detail.rcode_name, "No Error");
        assert_eq!(detail.answers, ["127.0.10.1", "127.0.10.2"]);
        assert!(
            !detail.changed,
            "the probe measures; the state judges changes"
        );

        // The answer changes (a hijacked record): a content failure, and the new answer.
        server.set("dichvucong.laocai.gov.vn", &["127.66.6.6"]);
        let (failure, detail) = run(&p).await;
        assert_eq!(failure, Some(FailureReason::Content));
        assert_eq!(detail.expect("detail").answers, ["127.66.6.6"]);

        // Without expectations any answer is a success; what it was is reported.
        let watcher = probe(server.addr, "");
        server.set("dichvucong.laocai.gov.vn", &["127.0.10.9"]);
        let (failure, detail) = run(&watcher).await;
        assert_eq!(failure, None);
        assert_eq!(detail.expect("detail").answers, ["127.0.10.9"]);
    }

    #[tokio::test]
    async fn nxdomain_fails_unless_expected() {
        let server = DnsServer::start().await;
        let (failure, detail) = run(&probe(server.addr, "")).await;
        assert_eq!(failure, Some(FailureReason::Dns));
        assert_eq!(detail.expect("detail").rcode, 3);
        let expecting = probe(server.addr, "expect_rcode: NXDOMAIN\n");
        assert_eq!(run(&expecting).await.0, None);
    }

    #[tokio::test]
    async fn tcp_transport_and_answer_regex() {
        let server = DnsServer::start().await;
        server.set("dichvucong.laocai.gov.vn", &["127.0.10.1"]);
        let p = probe(
            server.addr,
            "transport: tcp\nanswer_match: '^127\\.0\\.10\\.'\n",
        );
        assert_eq!(run(&p).await.0, None);
        let strict = probe(server.addr, "transport: tcp\nanswer_match: '^10\\.'\n");
        assert_eq!(run(&strict).await.0, Some(FailureReason::Content));
    }

    #[tokio::test]
    async fn silent_and_garbage_servers_time_out() {
        // A UDP socket that reads and never answers, and one that answers garbage.
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = silent.local_addr().expect("addr");
        let garbage = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let garbage_addr = garbage.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((_, from)) = garbage.recv_from(&mut buf).await {
                let _ = garbage.send_to(b"\xff\x00not dns at all", from).await;
            }
        });
        for server in [addr, garbage_addr] {
            let p = probe(server, "");
            let started = Instant::now();
            let (failure, _) = p.run(Instant::now() + Duration::from_millis(300)).await;
            assert_eq!(failure, Some(FailureReason::Timeout));
            assert!(started.elapsed() < Duration::from_secs(2));
        }
        drop(silent);
    }

    #[test]
    fn config_errors() {
        let text =
            "query: \"bad..name\"\nrecord_type: QQQ\nexpect_rcode: MAYBE\nserver: \"host:port\"\n";
        let config: DnsConfig = crate::model::parse_test_yaml(text);
        let errors = DnsProbe::new(&config, None).expect_err("invalid");
        let lines: Vec<u64> = errors
            .iter()
            .map(|e| e.at.map_or(0, |l| l.line()))
            .collect();
        assert_eq!(lines, vec![1, 2, 3, 4], "{errors:?}");
    }
}
