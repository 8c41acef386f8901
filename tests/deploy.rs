//! The files in deploy/ checked by the tools that will read them: promtool (Prometheus 2.42,
//! as in Debian 12) for the rules, their unit tests and the example config; amtool (0.25)
//! for the Alertmanager config and its routes; systemd-analyze for the service unit.
//! A missing tool fails the test: `.ci/test.sh` installs them.

use std::path::Path;
use std::process::{Command, Output};

fn deploy(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
        .display()
        .to_string()
}

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed (Debian packages prometheus, prometheus-alertmanager, systemd): {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn prometheus_rules_load_and_pass_their_unit_tests() {
    let out = run(
        "promtool",
        &[
            "check",
            "rules",
            &deploy("prometheus/rules/iocwatch-recording.yml"),
            &deploy("prometheus/rules/iocwatch-alerts.yml"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SUCCESS: 7 rules found") && text.contains("SUCCESS: 22 rules found"),
        "{text}"
    );
    run(
        "promtool",
        &[
            "test",
            "rules",
            &deploy("prometheus/tests/iocwatch-rules.test.yml"),
        ],
    );
    run(
        "promtool",
        &["check", "config", &deploy("prometheus/prometheus.yml")],
    );
}

#[test]
fn alertmanager_config_is_valid_and_routes_by_owner_system_and_severity() {
    let config = deploy("alertmanager/alertmanager.yml");
    run("amtool", &["check-config", &config]);
    let route = |labels: &[&str]| {
        let mut args = vec!["config", "routes", "test", "--config.file"];
        args.push(&config);
        args.extend_from_slice(labels);
        String::from_utf8_lossy(&run("amtool", &args).stdout)
            .trim()
            .to_owned()
    };
    assert_eq!(
        route(&[
            "owner=vnpt",
            "severity=critical",
            "alertname=IocwatchTargetDown"
        ]),
        "ioc-oncall-sms,vnpt-noc"
    );
    assert_eq!(route(&["owner=viettel", "severity=warning"]), "viettel-noc");
    assert_eq!(
        route(&["system=dichvucong", "severity=warning"]),
        "trung-tam-phuc-vu-hcc"
    );
    assert_eq!(route(&["system=lgsp", "severity=warning"]), "so-khcn");
    assert_eq!(
        route(&["alertname=IocwatchAgentDown", "severity=warning"]),
        "ioc-oncall-email"
    );
}

#[test]
fn systemd_unit_verifies_and_keeps_only_cap_net_raw() {
    // verify needs the ExecStart binary to exist: point it at the one cargo built.
    let unit = std::fs::read_to_string(deploy("iocwatch.service")).expect("unit");
    assert!(
        unit.contains("AmbientCapabilities=CAP_NET_RAW\n")
            && unit.contains("CapabilityBoundingSet=CAP_NET_RAW\n")
    );
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=iocwatch",
        "ProtectHome=yes",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("iocwatch.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/iocwatch", env!("CARGO_BIN_EXE_iocwatch")),
    )
    .expect("write");
    let path = path.display().to_string();
    let out = run("systemd-analyze", &["verify", &path]);
    assert!(
        out.stderr.is_empty(),
        "warnings: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("systemd-analyze", &["security", "--offline=true", &path]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Overall exposure level for iocwatch.service: 1."),
        "{text}"
    );
}
