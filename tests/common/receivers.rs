//! Real receivers for notifications: an HTTP server that records what it is sent (webhooks,
//! Telegram and Zalo APIs, Alertmanager's own webhook), and a real Alertmanager.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone, Default)]
pub struct Recorder {
    pub requests: Arc<Mutex<Vec<Received>>>,
    /// Requests answered 503 before the receiver starts accepting.
    pub fail_first: Arc<AtomicUsize>,
    /// Replies by path suffix; `{"ok": true}` otherwise. One-time replies come first.
    pub replies: Arc<Mutex<Vec<(String, String)>>>,
    pub once: Arc<Mutex<Vec<(String, String)>>>,
}

impl Recorder {
    pub fn all(&self) -> Vec<Received> {
        self.requests.lock().expect("lock").clone()
    }

    /// The next request to `path_suffix` (only that one) gets `reply`; queued in order.
    pub fn once(&self, path_suffix: &str, reply: &str) {
        self.once
            .lock()
            .expect("lock")
            .push((path_suffix.to_owned(), reply.to_owned()));
    }

    pub fn on(&self, path_suffix: &str, reply: &str) {
        self.replies
            .lock()
            .expect("lock")
            .push((path_suffix.to_owned(), reply.to_owned()));
    }
}

async fn record(
    State(recorder): State<Recorder>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_owned();
    let failing = recorder
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return (StatusCode::SERVICE_UNAVAILABLE, "try later".into());
    }
    let once = {
        let mut once = recorder.once.lock().expect("lock");
        once.iter()
            .position(|(suffix, _)| path.ends_with(suffix.as_str()))
            .map(|i| once.remove(i).1)
    };
    let reply = once
        .or_else(|| {
            recorder
                .replies
                .lock()
                .expect("lock")
                .iter()
                .rev()
                .find(|(suffix, _)| path.ends_with(suffix.as_str()))
                .map(|(_, reply)| reply.clone())
        })
        .unwrap_or_else(|| r#"{"ok": true}"#.into());
    recorder.requests.lock().expect("lock").push(Received {
        path,
        headers,
        body,
    });
    (StatusCode::OK, reply)
}

/// An HTTP server on loopback that records every request.
pub async fn receiver() -> (SocketAddr, Recorder) {
    receiver_on(0).await
}

/// A recording server on a given port (one that refused connections until now).
pub async fn receiver_on(port: u16) -> (SocketAddr, Recorder) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let recorder = Recorder::default();
    let app = axum::Router::new()
        .fallback(record)
        .with_state(recorder.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, recorder)
}

/// Polls `probe` until it returns `Some`, or panics after `within`.
pub async fn wait_until<T>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free loopback port, for programs that cannot bind port 0 and report it.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The Debian package's Alertmanager on loopback, routing everything to `webhook` with
/// resolved notifications on. Killed when dropped.
pub struct Alertmanager {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    pub async fn start(webhook: SocketAddr) -> Alertmanager {
        Self::start_peer(webhook, None).await
    }

    /// `n` Alertmanagers gossiping on loopback as one cluster (`--cluster.listen-address`,
    /// `--cluster.peer`), each routing to `webhook`: an HA pair when `n` is 2.
    pub async fn cluster(webhook: SocketAddr, n: usize) -> Vec<Alertmanager> {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut members = Vec::new();
        for (i, &port) in ports.iter().enumerate() {
            let peers: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("127.0.0.1:{p}"))
                .collect();
            members.push(Self::start_peer(webhook, Some((port, peers))).await);
        }
        members
    }

    async fn start_peer(webhook: SocketAddr, cluster: Option<(u16, Vec<String>)>) -> Alertmanager {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "route:\n  receiver: hook\n  group_by: [alertname, target]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://{webhook}/am\n        send_resolved: true\n"
        );
        std::fs::write(dir.path().join("am.yml"), config).expect("write");
        let port = free_port();
        let mut command = Command::new("prometheus-alertmanager");
        command
            .arg(format!(
                "--config.file={}",
                dir.path().join("am.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        match &cluster {
            None => {
                command.arg("--cluster.listen-address=");
            }
            Some((gossip, peers)) => {
                command
                    .arg(format!("--cluster.listen-address=127.0.0.1:{gossip}"))
                    .arg(format!("--cluster.advertise-address=127.0.0.1:{gossip}"))
                    // Loopback: settle fast, and wait little for a peer before notifying.
                    .arg("--cluster.settle-timeout=2s")
                    .arg("--cluster.peer-timeout=3s")
                    .arg("--cluster.gossip-interval=100ms")
                    .arg("--cluster.pushpull-interval=1s");
                for peer in peers {
                    command.arg(format!("--cluster.peer={peer}"));
                }
            }
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
            "prometheus-alertmanager must be installed (Debian package prometheus-alertmanager)",
        );
        let am = Alertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let client = super::http_client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client.get(format!("{}/-/ready", am.url)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Alertmanager did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        am
    }

    /// Alerts Alertmanager holds as active (not resolved).
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        super::http_client()
            .get(format!("{}/api/v2/alerts", self.url))
            .send()
            .await
            .expect("GET alerts")
            .json()
            .await
            .expect("JSON")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// aiosmtpd from Debian (python3-aiosmtpd): STARTTLS and AUTH (user `ioc`) required; each
/// message is written as JSON (decoded headers and body) into `out`.
pub struct SmtpServer {
    child: Child,
}

const SMTP_SERVER: &str = r#"
import email, email.policy, json, os, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
port, password, cert, key, out = sys.argv[1:6]
tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)
class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        record = {
            "rcpt": envelope.rcpt_tos,
            "from": envelope.mail_from,
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "subject": str(msg["subject"]),
            "message_id": str(msg["message-id"]),
            "body": msg.get_body().get_content(),
        }
        path = os.path.join(out, "%d.json" % len(os.listdir(out)))
        with open(path + ".tmp", "w") as f:
            json.dump(record, f, ensure_ascii=False)
        os.rename(path + ".tmp", path)
        return "250 OK"
def authenticate(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == b"ioc" and data.password == password.encode()
    return AuthResult(success=ok)
controller = Controller(Handler(), hostname="127.0.0.1", port=int(port), tls_context=tls,
    require_starttls=True, auth_required=True, auth_require_tls=True, authenticator=authenticate)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"#;

impl SmtpServer {
    pub fn start(port: u16, password: &str, cert: &str, key: &str, out: &str) -> SmtpServer {
        use std::io::BufRead;
        let mut child = Command::new("/usr/bin/python3")
            .args([
                "-c",
                SMTP_SERVER,
                &port.to_string(),
                password,
                cert,
                key,
                out,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with aiosmtpd (Debian python3-aiosmtpd) must be installed");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
        SmtpServer { child }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
