//! TCP connect: how long the handshake takes, and whether the port answers at all.
//! Refused (RST) and timeout (no answer, a filtering firewall or a dead link) are told apart,
//! because they point to different faults. An optional banner regex checks what the
//! service says first (SSH, SMTP, FTP greet before the client speaks).

use regex::Regex;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{resolve_one, Detail, FailureReason, IpFamily};
use crate::model::{FieldError, Spanned};

/// The most of a banner we read; a service that sends more is not waited on.
const MAX_BANNER: usize = 4096;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// Alert conditions of this check, over the built-in ones and the matching rules.
    #[serde(default)]
    pub alerts: Option<Box<crate::model::AlertsConfig>>,
    /// Name of the check within its target; defaults to `tcp_<port>`.
    #[serde(default)]
    pub name: Option<String>,
    pub port: u16,
    /// A regex the first bytes the server sends must match (e.g. `^SSH-2.0`).
    #[serde(default)]
    pub expect_banner: Option<Spanned<String>>,
    #[serde(default)]
    pub ip_family: Option<IpFamily>,
}

#[derive(Debug)]
pub struct TcpProbe {
    host: String,
    port: u16,
    expect_banner: Option<Regex>,
    ip_family: Option<IpFamily>,
}

impl TcpProbe {
    pub fn new(config: &TcpConfig, address: Option<&str>) -> Result<TcpProbe, Vec<FieldError>> {
        let mut errors = Vec::new();
        if config.port == 0 {
            errors.push(FieldError::unlocated(
                "tcp port must be 1 to 65535".to_owned(),
            ));
        }
        let expect_banner = match &config.expect_banner {
            None => None,
            Some(spanned) => match Regex::new(&spanned.value) {
                Ok(re) => Some(re),
                Err(e) => {
                    errors.push(FieldError::at(
                        spanned.referenced,
                        format!("invalid regex in expect_banner: {e}"),
                    ));
                    None
                }
            },
        };
        let Some(host) = super::require_address(super::Kind::Tcp, address, &mut errors) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(TcpProbe {
            host: host.to_owned(),
            port: config.port,
            expect_banner,
            ip_family: config.ip_family,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run(&self, deadline: Instant) -> (Option<FailureReason>, Detail) {
        let addr = match resolve_one(&self.host, self.port, self.ip_family).await {
            Ok(addr) => addr,
            Err(reason) => return (Some(reason), Detail::None),
        };
        let started = Instant::now();
        let mut stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return (Some(FailureReason::from_io(&e)), Detail::None),
            Err(_) => return (Some(FailureReason::Timeout), Detail::None),
        };
        let connect = started.elapsed();
        let detail = Detail::Tcp { connect };
        let Some(expect) = &self.expect_banner else {
            return (None, detail);
        };
        match read_banner(&mut stream, expect, deadline).await {
            Ok(()) => (None, detail),
            Err(reason) => (Some(reason), detail),
        }
    }
}

/// Reads until the banner matches, the peer closes, the cap is reached or the deadline passes.
async fn read_banner(
    stream: &mut TcpStream,
    expect: &Regex,
    deadline: Instant,
) -> Result<(), FailureReason> {
    let mut banner = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await;
        match read {
            Err(_) => return Err(FailureReason::Timeout),
            Ok(Err(e)) => return Err(FailureReason::from_io(&e)),
            Ok(Ok(0)) => return Err(FailureReason::Banner),
            Ok(Ok(n)) => banner.extend_from_slice(&chunk[..n]),
        }
        if expect.is_match(&String::from_utf8_lossy(&banner)) {
            return Ok(());
        }
        if banner.len() >= MAX_BANNER {
            return Err(FailureReason::Banner);
        }
    }
}

/// The default check name: `tcp_<port>`.
pub fn default_name(config: &TcpConfig) -> String {
    format!("tcp_{}", config.port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn probe(port: u16, banner: Option<&str>) -> TcpProbe {
        let config = TcpConfig {
            alerts: None,
            name: None,
            port,
            expect_banner: banner.map(|b| Spanned {
                value: b.to_owned(),
                referenced: crate::model::Location::UNKNOWN,
                defined: crate::model::Location::UNKNOWN,
            }),
            ip_family: None,
        };
        TcpProbe::new(&config, Some("127.0.0.1")).expect("valid")
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(2)
    }

    #[tokio::test]
    async fn open_port_succeeds_with_connect_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (failure, detail) = probe(port, None).run(soon()).await;
        assert_eq!(failure, None);
        assert!(matches!(detail, Detail::Tcp { .. }));
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        // Bind then drop: the port is known free and nothing listens on it.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let (failure, _) = probe(port, None).run(soon()).await;
        assert_eq!(failure, Some(FailureReason::Refused));
    }

    #[tokio::test]
    async fn banner_is_checked() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            for greeting in [&b"SSH-2.0-OpenSSH_9.2\r\n"[..], b"220 smtp ready\r\n"] {
                let (mut s, _) = listener.accept().await.expect("accept");
                s.write_all(greeting).await.expect("write");
            }
        });
        let (failure, _) = probe(port, Some("^SSH-2\\.0")).run(soon()).await;
        assert_eq!(failure, None);
        let (failure, _) = probe(port, Some("^SSH-2\\.0")).run(soon()).await;
        assert_eq!(failure, Some(FailureReason::Banner));
    }

    #[tokio::test]
    async fn silent_server_times_out_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // Accepts (the kernel completes the handshake) but never speaks.
        let deadline = Instant::now() + Duration::from_millis(200);
        let (failure, _) = probe(port, Some("^SSH")).run(deadline).await;
        assert_eq!(failure, Some(FailureReason::Timeout));
        drop(listener);
    }

    #[test]
    fn bad_banner_regex_is_a_config_error() {
        let config = TcpConfig {
            alerts: None,
            name: None,
            port: 22,
            expect_banner: Some(Spanned {
                value: "(".to_owned(),
                referenced: crate::model::Location::UNKNOWN,
                defined: crate::model::Location::UNKNOWN,
            }),
            ip_family: None,
        };
        let errors = TcpProbe::new(&config, Some("127.0.0.1")).expect_err("bad regex");
        assert!(errors[0].message.contains("invalid regex"), "{errors:?}");
    }
}
