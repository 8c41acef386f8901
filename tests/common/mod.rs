//! Shared by the integration tests: start an agent on 127.0.0.1:0 with a config written to a
//! temp dir, scrape it, and wait on conditions with a deadline (never a fixed sleep).

#![allow(dead_code)]

pub mod netns;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub struct TestAgent {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    stopped: Option<tokio::task::JoinHandle<()>>,
    pub client: reqwest::Client,
}

impl TestAgent {
    /// Writes `files` (the first is the main config) and starts an agent on them.
    pub async fn start(files: &[(&str, &str)]) -> TestAgent {
        Self::start_with(files, |_| {}).await
    }

    /// Like `start`, with a chance to change the options first.
    pub async fn start_with(
        files: &[(&str, &str)],
        adjust: impl FnOnce(&mut iocwatch::Options),
    ) -> TestAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            write(&dir.path().join(name), text);
        }
        let mut options = iocwatch::Options::new(dir.path().join(files[0].0));
        options.listen = Some(vec!["127.0.0.1:0".parse().expect("addr")]);
        adjust(&mut options);
        let shutdown = CancellationToken::new();
        let agent = iocwatch::start(options, shutdown.clone())
            .await
            .expect("agent starts");
        let addr = agent.addrs[0];
        let stopped = tokio::spawn(agent.wait());
        TestAgent {
            dir,
            addr,
            shutdown,
            stopped: Some(stopped),
            client: reqwest::Client::builder()
                .use_preconfigured_tls(rustls::ClientConfig::clone(
                    &iocwatch::probe::tls_config::system_tls_config(),
                ))
                .no_proxy()
                .build()
                .expect("client"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    pub async fn post(&self, path: &str) -> (u16, String) {
        let response = self.client.post(self.url(path)).send().await.expect("POST");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    pub async fn metrics(&self) -> Metrics {
        Metrics(self.get("/metrics").await.1)
    }

    /// Scrapes until `condition` holds, or panics with the last scrape after `within`.
    pub async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        condition: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let metrics = self.metrics().await;
            if condition(&metrics) {
                return metrics;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; last scrape:\n{}", metrics.0);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(stopped) = self.stopped.take() {
            tokio::time::timeout(Duration::from_secs(15), stopped)
                .await
                .expect("agent stops within its grace period")
                .expect("agent task");
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn write(path: &std::path::Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    // Write then rename, as editors and config management do, so a reader never sees half a file.
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A scrape in the text format, with lookups by name and label subset.
pub struct Metrics(pub String);

impl Metrics {
    /// Values of the series of `name` whose labels include every `k="v"` of `labels`.
    pub fn values(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                if metric != name {
                    return None;
                }
                let all = labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
                all.then(|| value.parse().ok()).flatten()
            })
            .collect()
    }

    /// The one value of a series, if there is exactly one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.values(name, labels).as_slice() {
            [v] => Some(*v),
            _ => None,
        }
    }

    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        !self.values(name, labels).is_empty()
    }
}

/// A real HTTP server on loopback for probes to hit.
pub async fn http_server(body: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { body }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A real HTTPS server on loopback with a self-signed certificate for `localhost` that expires
/// on `not_after` (year, month, day). Returns its address and the CA (certificate) in PEM.
pub async fn https_server(body: &'static str, not_after: (i32, u8, u8)) -> (SocketAddr, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 2048];
                let _ = tls.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, cert.pem())
}
