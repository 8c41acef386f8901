//! Desktop notifications (cargo feature `desktop`, on by default) on a real session D-Bus:
//! `dbus-run-session` starts a private bus, python-dbusmock's notification daemon records
//! every `Notify` call, and the agent binary runs inside that session. Without a session
//! bus the agent warns and carries on.

#![cfg(feature = "desktop")]

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::receivers::{free_port, receiver, wait_until};
use common::{down_target_config, http_client, write};

const WAIT: Duration = Duration::from_secs(30);

fn config(extra_notifier: &str) -> String {
    format!(
        "alerting:\n  notifiers:\n    - {{name: operator-desktop, desktop: {{}}}}\n{extra_notifier}\n{}",
        down_target_config()
    )
}

/// Kills the agent (by the pid the session script wrote) and the session.
struct Session {
    child: Child,
    pidfile: std::path::PathBuf,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pidfile) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        // The session runs in its own process group: the bus, the mock daemon and the
        // shell go together, also when the test fails.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The session: start the mock notification daemon, wait (bounded) until it owns
/// org.freedesktop.Notifications, then run the agent in the same bus.
const SESSION: &str = r#"
/usr/bin/python3 -m dbusmock --template notification_daemon -l "$LOG" &
i=0
until dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.freedesktop.Notifications 2>/dev/null | grep -q true; do
  i=$((i+1)); [ "$i" -gt 400 ] && { echo "notification daemon did not start" >&2; exit 3; }
  sleep 0.05
done
"$IOCWATCH" run -c "$CONFIG" --listen "127.0.0.1:$PORT" --storage.path "$DATA" &
echo $! > "$PIDFILE"
wait $!
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_the_operators_desktop_over_the_session_bus() {
    let dir = tempfile::tempdir().expect("dir");
    let config_path = dir.path().join("iocwatch.yaml");
    write(&config_path, &config(""));
    let log = dir.path().join("notify.log");
    let pidfile = dir.path().join("iocwatch.pid");
    let child = Command::new("dbus-run-session")
        .process_group(0)
        .args(["--", "/bin/sh", "-c", SESSION])
        .env("LOG", &log)
        .env("IOCWATCH", env!("CARGO_BIN_EXE_iocwatch"))
        .env("CONFIG", &config_path)
        .env("PORT", free_port().to_string())
        .env("PIDFILE", &pidfile)
        .env("DATA", dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-run-session (Debian package dbus) must be installed");
    let _session = Session { child, pidfile };
    let call = wait_until(WAIT, "a Notify call on the session bus", || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.lines()
            .find(|l| l.contains(" Notify ") && l.contains("iocwatch"))
            .map(str::to_owned)
    })
    .await;
    assert!(
        call.contains("[NGHIÊM TRỌNG] Mất kết nối: UBND xã Bảo Yên (ubnd-bao-yen)"),
        "{call}"
    );
    assert!(
        call.contains("Địa bàn: Tỉnh Lào Cai › Xã Bảo Yên"),
        "{call}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_bus_the_agent_warns_and_other_notifiers_deliver() {
    let (hook_addr, hook) = receiver().await;
    let dir = tempfile::tempdir().expect("dir");
    let config_path = dir.path().join("iocwatch.yaml");
    write(
        &config_path,
        &config(&format!(
            "    - {{name: ops, webhook: {{url: \"http://{hook_addr}/hook\"}}}}"
        )),
    );
    let log = dir.path().join("stderr.log");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_iocwatch"))
        .args(["run", "-c"])
        .arg(&config_path)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--storage.path"])
        .arg(dir.path().join("data"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("XDG_RUNTIME_DIR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn");
    let _agent = Session {
        child,
        pidfile: dir.path().join("none"),
    };
    wait_until(WAIT, "the webhook message", || {
        (!hook.all().is_empty()).then_some(())
    })
    .await;
    let stderr = std::fs::read_to_string(&log).expect("log");
    assert!(stderr.contains("no session D-Bus"), "{stderr}");
    let client = http_client();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .expect("the agent still serves")
            .text()
            .await
            .expect("body");
        let failures = metrics
            .lines()
            .find(|l| {
                l.starts_with("iocwatch_notifications_total")
                    && l.contains("operator-desktop")
                    && l.contains("failure")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        if failures.is_some_and(|n| n >= 1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed desktop attempt counted:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
