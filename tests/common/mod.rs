//! Shared by the integration tests: start an agent on 127.0.0.1:0 with a config written to a
//! temp dir, scrape it, and wait on conditions with a deadline (never a fixed sleep).

#![allow(dead_code)]

pub mod netns;
pub mod process;
pub mod receivers;

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
        // Tests reload and accept baselines over HTTP; tests/web.rs checks the refusals.
        options.enable_lifecycle = true;
        options.enable_admin_api = true;
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
            client: http_client(),
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

    /// An admin POST, as the CLI sends it (`X-Requested-By`).
    pub async fn post(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .post(self.url(path))
            .header("X-Requested-By", "test")
            .send()
            .await
            .expect("POST");
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

/// An HTTP client for talking to agents and receivers on loopback.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(rustls::ClientConfig::clone(
            &iocwatch::tls::system_tls_config(),
        ))
        .no_proxy()
        .build()
        .expect("client")
}

/// Areas and one target that is down from the start (a closed loopback port), so an alert
/// fires after three 1 s rounds.
pub fn down_target_config() -> String {
    format!(
        r#"areas:
  - code: "15"
    name: Tỉnh Lào Cai
    children: [{{code: "02947", name: Xã Bảo Yên}}]
targets:
  - id: ubnd-bao-yen
    name: UBND xã Bảo Yên
    area: "02947"
    address: 127.0.0.1
    interval: 1s
    timeout: 500ms
    checks: [tcp: {{port: {}, name: https}}]
"#,
        closed_port()
    )
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

/// A real HTTPS server on loopback with a self-signed certificate for `localhost` valid until
/// June of `until_year`. Returns its address and the certificate in PEM, to trust as a CA.
pub async fn https_server(body: &'static str, until_year: i32) -> (SocketAddr, String) {
    use iocwatch::probe::test_servers::{certificate, response, serve, server_config, tls_wrap};
    let (cert, key) = certificate(until_year);
    let port = serve(
        move |_| response("200 OK", "", body),
        Some(tls_wrap(server_config(&cert, &key))),
    )
    .await;
    (SocketAddr::from(([127, 0, 0, 1], port)), cert.pem())
}

/// `iocwatch check-config -c CONFIG`, as an operator runs it.
pub fn check_config(config: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_iocwatch"))
        .args(["check-config", "-c"])
        .arg(config)
        .output()
        .expect("check-config")
}
