//! Each notifier against a real receiver on loopback: e-mail through a real SMTP server
//! (aiosmtpd, STARTTLS and AUTH required), Telegram and Zalo through local HTTP servers that
//! play their APIs and check path, auth and body; a receiver that hangs blocks nobody.

mod common;

use std::time::Duration;

use common::receivers::{free_port, receiver, wait_until, SmtpServer};
use common::{down_target_config, write, TestAgent};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_mail_goes_through_starttls_and_auth_to_every_recipient() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = iocwatch::probe::test_servers::certificate(2099);
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).expect("cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("key");
    std::fs::write(dir.path().join("smtp-password"), "s3cret\n").expect("password");
    let out = dir.path().join("mail");
    std::fs::create_dir(&out).expect("mail dir");
    let port = free_port();
    let _smtp = SmtpServer::start(
        port,
        "s3cret",
        &cert_path.to_string_lossy(),
        &key_path.to_string_lossy(),
        &out.to_string_lossy(),
    );
    let config = format!(
        r#"alerting:
  external_url: http://ioc.laocai.test/
  notifiers:
    - name: oncall-mail
      email:
        smarthost: localhost:{port}
        tls: starttls
        ca_file: {ca}
        username: ioc
        password_file: {password}
        from: "IOC Lào Cai <ioc@laocai.test>"
        to: [truc-ca@laocai.test, "Trưởng ca <truong-ca@laocai.test>"]
{targets}"#,
        ca = cert_path.display(),
        password = dir.path().join("smtp-password").display(),
        targets = down_target_config(),
    );
    let agent = TestAgent::start(&[("iocwatch.yaml", &config)]).await;
    let mail = wait_until(WAIT, "an e-mail", || {
        std::fs::read_to_string(out.join("0.json")).ok()
    })
    .await;
    let mail: serde_json::Value = serde_json::from_str(&mail).expect("JSON");
    assert_eq!(mail["tls"], true, "STARTTLS was used");
    assert_eq!(mail["authenticated"], true);
    assert_eq!(
        mail["rcpt"],
        serde_json::json!(["truc-ca@laocai.test", "truong-ca@laocai.test"])
    );
    assert_eq!(
        mail["subject"],
        "[NGHIÊM TRỌNG] Mất kết nối: UBND xã Bảo Yên (ubnd-bao-yen)"
    );
    let body = mail["body"].as_str().expect("body");
    assert!(
        body.contains("Địa bàn: Tỉnh Lào Cai › Xã Bảo Yên"),
        "{body}"
    );
    // The reason in words and the start in Vietnam time, not a label and raw UTC.
    assert!(body.contains("Chi tiết: máy chủ từ chối kết nối"), "{body}");
    assert!(
        body.lines().any(|l| l.starts_with("Bắt đầu: ")
            && l.ends_with("(giờ Việt Nam)")
            && l.contains('/')),
        "{body}"
    );
    assert!(body.contains("Xem: http://ioc.laocai.test/"), "{body}");
    assert!(mail["message_id"]
        .as_str()
        .is_some_and(|id| id.ends_with("-firing@iocwatch>")));
    // The server wrote the mail before the agent read its last reply: wait for the count.
    agent
        .wait_for(WAIT, "the delivery counted", |m| {
            m.value(
                "iocwatch_notifications_total",
                &[("notifier", "oncall-mail"), ("result", "success")],
            ) == Some(1.0)
        })
        .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_and_zalo_apis_get_the_right_paths_tokens_and_texts() {
    let (api, received) = receiver().await;
    // Zalo OA: the first token works for no message ("access token invalid", -216), so the
    // sender must refresh again, with the refresh token the first refresh returned.
    received.once(
        "/v4/oa/access_token",
        r#"{"access_token": "AT-1", "refresh_token": "RT-2", "expires_in": "90000"}"#,
    );
    received.once(
        "/v4/oa/access_token",
        r#"{"access_token": "AT-2", "refresh_token": "RT-3", "expires_in": "90000"}"#,
    );
    received.once(
        "/v3.0/oa/message/cs",
        r#"{"error": -216, "message": "Access token is invalid"}"#,
    );
    received.on(
        "/v3.0/oa/message/cs",
        r#"{"error": 0, "message": "Success"}"#,
    );
    // A receiver that accepts and never answers: it must delay nobody but itself.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hanging_addr = hanging.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hanging.incoming() {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().expect("dir");
    write(&dir.path().join("zalo-bot-token"), "ZALO-BOT-TOKEN\n");
    write(&dir.path().join("zalo-refresh"), "RT-1\n");
    std::env::set_var("IOCWATCH_TEST_TELEGRAM_TOKEN", "123:TG-TOKEN");
    let config = format!(
        r#"alerting:
  notifiers:
    - name: slow-bridge
      timeout: 60s
      webhook: {{url: "http://{hanging_addr}/sms"}}
    - name: telegram
      telegram: {{bot_token: "${{IOCWATCH_TEST_TELEGRAM_TOKEN}}", chat_id: "-100200", api_url: "http://{api}"}}
    - name: zalo
      zalo_bot: {{bot_token_file: {bot}, chat_id: "nhom-truc-ca", api_url: "http://{api}"}}
    - name: zalo-oa
      zalo_oa:
        app_id: "4242"
        secret_key: OA-SECRET
        refresh_token_file: {refresh}
        user_id: "8899"
        api_url: http://{api}
        oauth_url: http://{api}
{targets}"#,
        bot = dir.path().join("zalo-bot-token").display(),
        refresh = dir.path().join("zalo-refresh").display(),
        targets = down_target_config(),
    );
    let data = dir.path().join("data");
    let storage = data.clone();
    let agent =
        TestAgent::start_with(&[("iocwatch.yaml", &config)], |o| o.storage = Some(storage)).await;
    let requests = wait_until(WAIT, "Telegram, Zalo bot and Zalo OA messages", || {
        let all = received.all();
        (all.len() >= 6).then_some(all)
    })
    .await;
    let find = |path: &str| {
        requests
            .iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("no request to {path}: {requests:?}"))
    };
    let telegram = find("/bot123:TG-TOKEN/sendMessage").json();
    assert_eq!(telegram["chat_id"], "-100200");
    assert!(telegram["text"]
        .as_str()
        .is_some_and(|t| t.starts_with("[NGHIÊM TRỌNG] Mất kết nối: UBND xã Bảo Yên")));
    let zalo = find("/botZALO-BOT-TOKEN/sendMessage").json();
    assert_eq!(zalo["chat_id"], "nhom-truc-ca");
    assert!(zalo["text"]
        .as_str()
        .is_some_and(|t| t.chars().count() <= 2000));
    let tokens: Vec<String> = requests
        .iter()
        .filter(|r| r.path == "/v4/oa/access_token")
        .map(|r| {
            assert_eq!(r.header("secret_key"), Some("OA-SECRET"));
            String::from_utf8_lossy(&r.body).into_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert!(
        tokens[0].contains("refresh_token=RT-1") && tokens[0].contains("grant_type=refresh_token"),
        "{tokens:?}"
    );
    assert!(
        tokens[1].contains("refresh_token=RT-2"),
        "single-use: {tokens:?}"
    );
    let messages: Vec<_> = requests
        .iter()
        .filter(|r| r.path == "/v3.0/oa/message/cs")
        .collect();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].header("access_token"), Some("AT-1"));
    assert_eq!(messages[1].header("access_token"), Some("AT-2"));
    assert_eq!(messages[1].json()["recipient"]["user_id"], "8899");
    // The new refresh token was kept: the old one is single-use.
    let store = iocwatch::store::Store::open(&data).await.expect("database");
    assert_eq!(
        store
            .kv("zalo_oa/zalo-oa/4242/refresh_token")
            .await
            .expect("kv")
            .as_deref(),
        Some("RT-3")
    );
    // Probing went on, and the hanging receiver delivered nothing.
    let m = agent.metrics().await;
    assert_eq!(
        m.value(
            "iocwatch_notifications_total",
            &[("notifier", "slow-bridge"), ("result", "success")]
        ),
        Some(0.0)
    );
    for notifier in ["telegram", "zalo", "zalo-oa"] {
        assert_eq!(
            m.value(
                "iocwatch_notifications_total",
                &[("notifier", notifier), ("result", "success")]
            ),
            Some(1.0),
            "{notifier}"
        );
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_moves_a_notifier_sends_the_resolution_to_the_new_place() {
    let (old_addr, old) = receiver().await;
    let (new_addr, new) = receiver().await;
    let open = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let open_port = open.local_addr().expect("addr").port();
    std::thread::spawn(move || for _ in open.incoming() {});
    let config = |hook: std::net::SocketAddr, target: &str| {
        format!(
            "alerting:\n  notifiers:\n    - {{name: ops, webhook: {{url: \"http://{hook}/hook\"}}}}\n  rules: [{{alerts: {{down: {{keep_firing_for: 0s}}}}}}]\n{target}"
        )
    };
    let down = down_target_config();
    let agent = TestAgent::start(&[("iocwatch.yaml", &config(old_addr, &down))]).await;
    wait_until(WAIT, "the firing message at the old receiver", || {
        (!old.all().is_empty()).then_some(())
    })
    .await;
    // The notifier moves and the target comes back (its check now reaches an open port).
    let port = down
        .split("port: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("port in the config")
        .to_owned();
    let up = down.replace(&format!("port: {port},"), &format!("port: {open_port},"));
    write(&agent.path("iocwatch.yaml"), &config(new_addr, &up));
    assert_eq!(agent.post("/-/reload").await.0, 200);
    let resolved = wait_until(WAIT, "the resolution at the new receiver", || {
        new.all().first().cloned()
    })
    .await;
    assert_eq!(resolved.json()["status"], "resolved");
    assert_eq!(
        old.all().len(),
        1,
        "the old receiver got only the firing message"
    );
    agent.stop().await;
}
