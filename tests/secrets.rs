//! No secret in any output. Distinctive secrets are planted in every notifier kind (an
//! Alertmanager bearer token, a webhook with basic auth and a token in its URL and a bearer
//! token, Telegram and Zalo bot tokens, a Zalo Official Account key and refresh token, an
//! e-mail password), given inline, through `${ENV}` and through `*_file`. Every delivery
//! fails first (nothing listens yet: errors that carry URLs) and then succeeds. The agent
//! runs at `--log.level debug`; its output, every HTTP endpoint, `check-config` (also on a
//! config with the secret written where a file name belongs) and every file under
//! `--storage.path` are searched: none may hold a secret.

mod common;

use std::path::Path;
use std::time::Duration;

use common::process::{AgentProcess, Toggle};
use common::receivers::{free_port, receiver_on, SmtpServer};
use common::write;

const WAIT: Duration = Duration::from_secs(60);

const AM_TOKEN: &str = "SECRET-AM-BEARER-7f3a";
const HOOK_PASSWORD: &str = "SECRET-HOOK-PASS-2b9c";
const HOOK_QUERY_TOKEN: &str = "SECRET-HOOK-QUERY-5k1m";
const HOOK_BEARER: &str = "SECRET-HOOK-BEARER-9d1e";
const TELEGRAM_TOKEN: &str = "123456:SECRET-TG-TOKEN-4e8f";
const ZALO_BOT_TOKEN: &str = "SECRET-ZALO-BOT-1a2b";
const ZALO_OA_KEY: &str = "SECRET-ZALO-OA-KEY-5c6d";
const ZALO_OA_REFRESH: &str = "SECRET-ZALO-OA-REFRESH-8e9f";
const MAIL_PASSWORD: &str = "SECRET-MAIL-PASS-3g4h";

const SECRETS: [&str; 9] = [
    AM_TOKEN,
    HOOK_PASSWORD,
    HOOK_QUERY_TOKEN,
    HOOK_BEARER,
    TELEGRAM_TOKEN,
    ZALO_BOT_TOKEN,
    ZALO_OA_KEY,
    ZALO_OA_REFRESH,
    MAIL_PASSWORD,
];

/// Where each secret was found, by source.
fn leaks(source: &str, text: &[u8], found: &mut Vec<String>) {
    let text = String::from_utf8_lossy(text);
    for secret in SECRETS {
        // The Telegram token is also checked by its distinctive half (a URL may encode ':').
        let needle = secret.rsplit(':').next().unwrap_or(secret);
        if text.contains(needle) {
            found.push(format!("{secret} in {source}"));
        }
    }
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_output() {
    let dir = tempfile::tempdir().expect("dir");
    let at = |name: &str| dir.path().join(name);
    std::fs::write(at("am-token"), format!("{AM_TOKEN}\n")).expect("write");
    std::fs::write(at("zalo-bot-token"), ZALO_BOT_TOKEN).expect("write");
    std::fs::write(at("zalo-oa-refresh"), ZALO_OA_REFRESH).expect("write");
    std::fs::write(at("mail-password"), MAIL_PASSWORD).expect("write");
    let (cert, key) = iocwatch::probe::test_servers::certificate(2099);
    std::fs::write(at("cert.pem"), cert.pem()).expect("cert");
    std::fs::write(at("key.pem"), key.serialize_pem()).expect("key");
    std::fs::create_dir(at("mail")).expect("mail dir");
    let ports = [(); 6].map(|_| free_port());
    let [am, hook, telegram, zalo_bot, zalo_oa, smtp] = ports;
    let mut target = Toggle::new();
    let config = format!(
        r#"alerting:
  notifiers:
    - {{name: am, alertmanager: {{urls: ["http://127.0.0.1:{am}"], resend_interval: 1s, bearer_token_file: {am_token}}}}}
    - name: hook
      webhook:
        url: "http://ioc:{HOOK_PASSWORD}@127.0.0.1:{hook}/hook?token={HOOK_QUERY_TOKEN}"
        bearer_token: "${{IOCWATCH_TEST_HOOK_BEARER}}"
    - {{name: tg, telegram: {{bot_token: "{TELEGRAM_TOKEN}", chat_id: "-100", api_url: "http://127.0.0.1:{telegram}"}}}}
    - {{name: zb, zalo_bot: {{bot_token_file: {zalo_bot_token}, chat_id: "42", api_url: "http://127.0.0.1:{zalo_bot}"}}}}
    - name: zoa
      zalo_oa:
        app_id: "4242"
        secret_key: "{ZALO_OA_KEY}"
        refresh_token_file: {zalo_oa_refresh}
        user_id: "8899"
        api_url: "http://127.0.0.1:{zalo_oa}"
        oauth_url: "http://127.0.0.1:{zalo_oa}"
    - name: mail
      email:
        smarthost: localhost:{smtp}
        tls: starttls
        ca_file: {ca}
        username: ioc
        password_file: {mail_password}
        from: "IOC <ioc@laocai.test>"
        to: [truc-ca@laocai.test]
  rules: [{{alerts: {{down: {{keep_firing_for: 0s}}}}}}]
areas: [{{code: "15", name: Tỉnh Lào Cai}}]
targets:
  - {{id: mail-server, area: "15", address: 127.0.0.1, interval: 1s, timeout: 500ms, checks: [tcp: {{port: {port}}}]}}
"#,
        am_token = at("am-token").display(),
        zalo_bot_token = at("zalo-bot-token").display(),
        zalo_oa_refresh = at("zalo-oa-refresh").display(),
        mail_password = at("mail-password").display(),
        ca = at("cert.pem").display(),
        port = target.port,
    );
    let config_path = at("iocwatch.yaml");
    write(&config_path, &config);
    let data = at("data");
    std::env::set_var("IOCWATCH_TEST_HOOK_BEARER", HOOK_BEARER);
    let agent = AgentProcess::start_with(&config_path, &data, &["--log.level", "debug"]);
    agent.serving(WAIT).await;

    // Every delivery fails: nothing listens on the receivers' ports yet.
    let count = |m: &common::Metrics, notifier: &str, result: &str| {
        m.value(
            "iocwatch_notifications_total",
            &[("notifier", notifier), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    let names = ["am", "hook", "tg", "zb", "zoa", "mail"];
    agent
        .wait_for(WAIT, "every notifier to fail", |m| {
            names.iter().all(|n| count(m, n, "failure") >= 1.0)
        })
        .await;

    // Then every one succeeds.
    let mut receivers = Vec::new();
    for port in [am, hook, telegram, zalo_bot, zalo_oa] {
        receivers.push(receiver_on(port).await);
    }
    let zoa = &receivers[4].1;
    zoa.on(
        "/v4/oa/access_token",
        r#"{"access_token": "AT-1", "refresh_token": "RT-2"}"#,
    );
    zoa.on("/v3.0/oa/message/cs", r#"{"error": 0}"#);
    let _smtp = SmtpServer::start(
        smtp,
        MAIL_PASSWORD,
        &at("cert.pem").to_string_lossy(),
        &at("key.pem").to_string_lossy(),
        &at("mail").to_string_lossy(),
    );
    agent
        .wait_for(Duration::from_secs(120), "every notifier to deliver", |m| {
            names.iter().all(|n| count(m, n, "success") >= 1.0)
        })
        .await;
    // The target comes back: resolutions go out too.
    target.up().await;
    agent
        .wait_for(WAIT, "the resolution delivered", |m| {
            count(m, "hook", "success") >= 2.0
        })
        .await;

    let mut found = Vec::new();
    for path in [
        "/",
        "/?lang=en",
        "/metrics",
        "/api/v1/status",
        "/api/v1/alerts",
        "/api/v1/incidents?days=1",
        "/-/ready",
        "/-/healthy",
    ] {
        let (_, body) = agent.get(path).await.expect("GET");
        leaks(path, body.as_bytes(), &mut found);
    }
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_iocwatch"))
        .args(["check-config", "-c"])
        .arg(&config_path)
        .env("IOCWATCH_TEST_HOOK_BEARER", HOOK_BEARER)
        .output()
        .expect("check-config");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    leaks("check-config stdout", &check.stdout, &mut found);
    leaks("check-config stderr", &check.stderr, &mut found);
    // The secret written where its file's name belongs, and an unset variable.
    let mistaken = config
        .replace(&at("mail-password").display().to_string(), MAIL_PASSWORD)
        .replace("IOCWATCH_TEST_HOOK_BEARER", "IOCWATCH_TEST_UNSET");
    write(&at("mistaken.yaml"), &mistaken);
    let check = common::check_config(&at("mistaken.yaml"));
    assert_eq!(check.status.code(), Some(64));
    let said = String::from_utf8_lossy(&check.stderr).into_owned();
    assert!(
        said.contains("password_file names no readable file"),
        "{said}"
    );
    leaks(
        "check-config on a mistaken config",
        said.as_bytes(),
        &mut found,
    );

    let log = agent.log();
    agent.kill_9();
    assert!(log.contains("DEBUG"), "ran at debug level");
    assert!(log.contains("notification failed"), "failures were logged");
    leaks("the agent's output", log.as_bytes(), &mut found);
    let mut files = Vec::new();
    files_under(&data, &mut files);
    assert!(files.iter().any(|f| f.ends_with("iocwatch.db")));
    for file in &files {
        let bytes = std::fs::read(file).expect("read");
        leaks(&file.display().to_string(), &bytes, &mut found);
    }
    println!(
        "{} secrets planted; searched {} endpoints, check-config twice, {} bytes of log and {} files under --storage.path: {} found",
        SECRETS.len(),
        8,
        log.len(),
        files.len(),
        found.len()
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}
