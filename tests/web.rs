//! The agent's own doors, tried with real clients: the exporter-toolkit web config (basic
//! auth, TLS, client certificates, headers; re-read on change; the same verdicts as
//! `promtool check web-config`), admin actions that need a flag or a user and never come
//! from another site, the Host a loopback listener answers to, and security headers.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{down_target_config, write, TestAgent};

const WAIT: Duration = Duration::from_secs(20);

/// A CA, a server certificate it signed for localhost and 127.0.0.1, and a client
/// certificate it signed; written as PEM files into `dir`.
struct Pki {
    ca: String,
}

fn pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "iocwatch test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, file: &str| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        let cert = params.signed_by(&key, &issuer).expect("signed");
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).expect("write");
    };
    leaf(vec!["localhost".into()], "server");
    leaf(vec!["operator.ioc.example".into()], "client");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    Pki { ca: ca.pem() }
}

fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let roots = iocwatch::tls::ca_roots(&ca.to_string_lossy()).expect("roots");
    let (cert, key) = identity
        .map(|(c, k)| {
            (
                c.to_string_lossy().into_owned(),
                k.to_string_lossy().into_owned(),
            )
        })
        .unzip();
    let tls =
        iocwatch::tls::client_config(roots, cert.as_deref().zip(key.as_deref())).expect("tls");
    reqwest::Client::builder()
        .use_preconfigured_tls(rustls::ClientConfig::clone(&tls))
        .no_proxy()
        .build()
        .expect("client")
}

/// An agent with a web config (and the certificates it names) in a directory of its own,
/// returned with the agent so the test can change the file.
async fn start_with_web(
    web: &str,
    adjust: impl FnOnce(&mut iocwatch::Options),
) -> (TestAgent, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let _ = pki(dir.path());
    let web_path = dir.path().join("web.yml");
    std::fs::write(&web_path, web).expect("web config");
    let agent = TestAgent::start_with(&[("iocwatch.yaml", &down_target_config())], |o| {
        o.web_config = Some(web_path.clone());
        adjust(o);
    })
    .await;
    (agent, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_lets_in_only_known_users_with_their_password() {
    let hash = bcrypt::hash("đúng-mật-khẩu", 4).expect("hash");
    let (agent, web_dir) =
        start_with_web(&format!("basic_auth_users:\n  truc-ca: '{hash}'\n"), |_| {}).await;
    let client = common::http_client();
    let url = agent.url("/metrics");
    let plain = client.get(&url).send().await.expect("GET");
    assert_eq!(plain.status(), 401);
    assert_eq!(
        plain
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic")
    );
    for (user, password) in [("truc-ca", "sai"), ("khach", "đúng-mật-khẩu"), ("", "")] {
        let r = client
            .get(&url)
            .basic_auth(user, Some(password))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 401, "{user}:{password}");
    }
    let ok = client
        .get(&url)
        .basic_auth("truc-ca", Some("đúng-mật-khẩu"))
        .send()
        .await
        .expect("GET");
    assert_eq!(ok.status(), 200);
    assert!(ok
        .text()
        .await
        .expect("body")
        .contains("iocwatch_build_info"));

    // Re-read on change: the password rotated, the old one no longer works.
    let rotated = bcrypt::hash("mới", 4).expect("hash");
    write(
        &web_dir.path().join("web.yml"),
        &format!("basic_auth_users:\n  truc-ca: '{rotated}'\n"),
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = client
            .get(&url)
            .basic_auth("truc-ca", Some("mới"))
            .send()
            .await
            .expect("GET");
        if r.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "new password refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old = client
        .get(&url)
        .basic_auth("truc-ca", Some("đúng-mật-khẩu"))
        .send()
        .await
        .expect("GET");
    assert_eq!(old.status(), 401);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_client_certificates_are_served_as_the_web_config_says() {
    let (agent, web_dir) = start_with_web(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\nhttp_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n",
        |_| {},
    )
    .await;
    let port = agent.addr.port();
    let https = format!("https://localhost:{port}/-/healthy");
    let ca = web_dir.path().join("ca.pem");
    let (cert, key) = (
        web_dir.path().join("client.pem"),
        web_dir.path().join("client.key"),
    );
    // With the client certificate: served, with the configured header.
    let ok = client(&ca, Some((&cert, &key)))
        .get(&https)
        .send()
        .await
        .expect("mTLS GET");
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000")
    );
    // Without one: the handshake fails.
    let refused = client(&ca, None).get(&https).send().await;
    assert!(refused.is_err(), "served without a client certificate");
    // Plain HTTP to the TLS listener: no answer a client can read as HTTP.
    let plain = common::http_client()
        .get(format!("http://127.0.0.1:{port}/-/healthy"))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| r.status() != 200),
        "plain HTTP served"
    );
    // A server certificate the client does not trust: refused.
    let other_dir = tempfile::tempdir().expect("dir");
    let other = pki(other_dir.path());
    assert!(!other.ca.is_empty());
    let untrusted = client(&other_dir.path().join("ca.pem"), None)
        .get(&https)
        .send()
        .await;
    assert!(untrusted.is_err());

    // The CLI reaches it with the CA and the client certificate.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_iocwatch"))
        .args(["baseline", "accept", "ubnd-bao-yen", "--agent"])
        .arg(format!("https://localhost:{port}"))
        .arg("--web.ca-file")
        .arg(&ca)
        .arg("--web.cert-file")
        .arg(&cert)
        .arg("--web.key-file")
        .arg(&key)
        .output()
        .await
        .expect("cli");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"accepted\":[]"));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_need_a_flag_or_a_user_and_refuse_other_sites() {
    // Off by default: no flag, no users.
    let agent = TestAgent::start_with(&[("iocwatch.yaml", &down_target_config())], |o| {
        o.enable_lifecycle = false;
        o.enable_admin_api = false;
    })
    .await;
    let client = common::http_client();
    let post = |path: &str| {
        client
            .post(agent.url(path))
            .header("X-Requested-By", "test")
    };
    for path in ["/-/reload", "/api/v1/baselines/accept?target=ubnd-bao-yen"] {
        let r = post(path).send().await.expect("POST");
        assert_eq!(r.status(), 403, "{path}");
        let body = r.text().await.expect("body");
        assert!(body.contains("--web.enable-"), "{path}: {body}");
    }
    agent.stop().await;

    // Enabled: allowed from the CLI, refused from a web page on another site.
    let agent = TestAgent::start(&[("iocwatch.yaml", &down_target_config())]).await;
    let accept = agent.url("/api/v1/baselines/accept?target=ubnd-bao-yen");
    let ok = client
        .post(&accept)
        .header("X-Requested-By", "test")
        .send()
        .await
        .expect("POST");
    assert_eq!(ok.status(), 200);
    let json = client
        .post(&accept)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("POST");
    assert_eq!(json.status(), 200, "a JSON body is not a simple request");
    let refused: Vec<(&str, Vec<(&str, &str)>)> = vec![
        // The forged form of the report: text/plain from evil.example.
        (
            "simple cross-site form",
            vec![
                ("Origin", "http://evil.example"),
                ("Content-Type", "text/plain"),
            ],
        ),
        (
            "a simple request, no origin",
            vec![("Content-Type", "text/plain")],
        ),
        (
            "another origin",
            vec![("Origin", "http://evil.example"), ("X-Requested-By", "x")],
        ),
        (
            "the browser says cross-site",
            vec![("Sec-Fetch-Site", "cross-site"), ("X-Requested-By", "x")],
        ),
    ];
    for (what, headers) in refused {
        let mut r = client.post(&accept);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        let r = r.send().await.expect("POST");
        assert_eq!(r.status(), 403, "{what}");
    }
    // DNS rebinding: a loopback listener answers only to loopback names.
    let rebound = client
        .get(agent.url("/api/v1/status"))
        .header("Host", "evil.example:10090")
        .send()
        .await
        .expect("GET");
    assert_eq!(rebound.status(), 403);
    let by_name = client
        .get(format!(
            "http://localhost:{}/api/v1/status",
            agent.addr.port()
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(by_name.status(), 200);
    // `iocwatch reload` carries what the agent asks for.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_iocwatch"))
        .args(["reload", "--agent", &agent.url("")])
        .output()
        .await
        .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("config reloaded"));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_may_reload_and_sees_why_a_config_was_refused() {
    let hash = bcrypt::hash("pw", 4).expect("hash");
    let (agent, _web_dir) =
        start_with_web(&format!("basic_auth_users: {{ops: '{hash}'}}\n"), |o| {
            o.enable_lifecycle = false;
        })
        .await;
    write(
        &agent.path("iocwatch.yaml"),
        "targets: [{id: x, colour: red}]\n",
    );
    let r = common::http_client()
        .post(agent.url("/-/reload"))
        .basic_auth("ops", Some("pw"))
        .header("X-Requested-By", "test")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 500);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("unknown field `colour`"));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_the_api_carry_security_headers() {
    let agent = TestAgent::start(&[("iocwatch.yaml", &down_target_config())]).await;
    let client = common::http_client();
    for path in ["/", "/api/v1/status", "/metrics", "/-/healthy"] {
        let r = client.get(agent.url(path)).send().await.expect("GET");
        let h = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(h("referrer-policy"), "no-referrer", "{path}");
        let csp = h("content-security-policy");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
        if path == "/" {
            assert!(csp.contains("style-src 'sha256-"), "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
        }
    }
    agent.stop().await;
}

/// Our reading of the format against Prometheus's own: `promtool check web-config`
/// (exporter-toolkit 0.8 in Debian 12) must agree on every file.
#[test]
fn web_config_verdicts_match_promtool() {
    let dir = tempfile::tempdir().expect("dir");
    let _ = pki(dir.path());
    let hash = bcrypt::hash("x", 4).expect("hash");
    let files = [
        ("empty", "".to_owned()),
        ("users", format!("basic_auth_users: {{a: '{hash}'}}\n")),
        ("tls", "tls_server_config: {cert_file: server.pem, key_file: server.key}\n".to_owned()),
        (
            "mtls",
            "tls_server_config: {cert_file: server.pem, key_file: server.key, client_auth_type: RequireAndVerifyClientCert, client_ca_file: ca.pem}\n".to_owned(),
        ),
        (
            "ciphers",
            "tls_server_config: {cert_file: server.pem, key_file: server.key, min_version: TLS12, cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256], curve_preferences: [X25519, CurveP256]}\n".to_owned(),
        ),
        ("headers", "http_server_config: {headers: {X-Frame-Options: deny, Content-Security-Policy: \"default-src 'none'\"}}\n".to_owned()),
        ("unknown key", "tls_server_config: {cert_file: server.pem, key_file: server.key, colour: red}\n".to_owned()),
        ("no key", "tls_server_config: {cert_file: server.pem}\n".to_owned()),
        ("missing file", "tls_server_config: {cert_file: nope.pem, key_file: server.key}\n".to_owned()),
        ("ca without policy", "tls_server_config: {cert_file: server.pem, key_file: server.key, client_ca_file: ca.pem}\n".to_owned()),
        ("bad policy", "tls_server_config: {cert_file: server.pem, key_file: server.key, client_auth_type: Sometimes}\n".to_owned()),
        ("bad cipher", "tls_server_config: {cert_file: server.pem, key_file: server.key, cipher_suites: [TLS_FAKE]}\n".to_owned()),
        ("bad curve", "tls_server_config: {cert_file: server.pem, key_file: server.key, curve_preferences: [CurveP999]}\n".to_owned()),
        ("bad hash", "basic_auth_users: {a: plaintext}\n".to_owned()),
        ("bad header", "http_server_config: {headers: {Server: iocwatch}}\n".to_owned()),
        ("bad header value", "http_server_config: {headers: {X-Content-Type-Options: sniff}}\n".to_owned()),
    ];
    let mut disagreements = Vec::new();
    for (name, text) in files {
        let path = dir.path().join("web.yml");
        std::fs::write(&path, &text).expect("write");
        let promtool = std::process::Command::new("promtool")
            .args(["check", "web-config"])
            .arg(&path)
            .output()
            .expect("promtool (Debian package prometheus)");
        let ours = iocwatch::server::web_config::load(&path);
        if promtool.status.success() != ours.is_ok() {
            disagreements.push(format!(
                "{name}: promtool {} ({}), iocwatch {:?}",
                promtool.status.success(),
                String::from_utf8_lossy(&promtool.stdout).trim(),
                ours.map(|_| "ok")
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
