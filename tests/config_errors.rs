//! A table of bad configs and the exact errors they must produce: file, line, column and
//! what was expected. Every case also proves that nothing stops at the first error.

use std::path::Path;

use iocwatch::config;

/// A valid base: one area tree and one target; each case appends or replaces parts of it.
const BASE: &str = r#"areas:
  - code: "15"
    name: Tỉnh Lào Cai
    level: province
    children:
      - {code: "02947", name: Xã Bảo Yên, kind: xa}
systems:
  - {id: qlvb, name: Quản lý văn bản}
targets:
  - id: gw
    area: "15"
    address: 127.0.0.1
    checks:
      - icmp: {}
"#;

fn load(files: &[(&str, &str)]) -> Result<iocwatch::catalog::Catalog, Vec<String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
    }
    config::load(&dir.path().join(files[0].0))
        .map(|c| c.catalog)
        .map_err(|errors| {
            errors
                .0
                .iter()
                .map(|e| {
                    // Paths are printed as given; strip the temp dir for stable expectations.
                    let file = e
                        .file
                        .strip_prefix(dir.path())
                        .unwrap_or(&e.file)
                        .display()
                        .to_string();
                    let message = e.message.replace(&format!("{}/", dir.path().display()), "");
                    format!("{file}:{}:{}: {message}", e.line, e.column)
                })
                .collect()
        })
}

fn errors_of(main: &str) -> Vec<String> {
    match load(&[("main.yaml", main)]) {
        Ok(_) => panic!("config should be refused:\n{main}"),
        Err(errors) => errors,
    }
}

#[test]
fn base_config_is_valid() {
    let catalog = load(&[("main.yaml", BASE)]).expect("valid");
    assert_eq!(catalog.targets.len(), 1);
    assert_eq!(catalog.areas.len(), 2);
}

#[test]
fn table_of_single_errors() {
    let target = |body: &str| format!("{BASE}  - id: t2\n    area: \"02947\"\n{body}");
    let cases: Vec<(String, &str)> = vec![
        (
            target("    address: 127.0.0.2\n    bogus: 1\n    checks: [icmp: {}]\n"),
            "main.yaml:18:5: unknown field `bogus`, expected one of id, name, area, address, system, checks, labels, depends_on, interval, timeout",
        ),
        (
            format!("{BASE}  - id: t2\n    area: \"99999\"\n    address: 127.0.0.2\n    checks: [icmp: {{}}]\n"),
            "main.yaml:16:11: target \"t2\": unknown area \"99999\"",
        ),
        (
            format!("{BASE}  - id: gw\n    area: \"15\"\n    address: 127.0.0.2\n    checks: [icmp: {{}}]\n"),
            "main.yaml:15:9: target id \"gw\" is already used at main.yaml:10",
        ),
        (
            target("    address: 127.0.0.300\n    checks: [icmp: {}]\n"),
            "main.yaml:17:14: target \"t2\": address \"127.0.0.300\": expected an IPv4 or IPv6 address or a host name",
        ),
        (
            target("    address: 127.0.0.2\n    interval: 5s\n    timeout: 5s\n    checks: [icmp: {}]\n"),
            "main.yaml:19:14: target \"t2\": timeout 5s must be shorter than interval 5s",
        ),
        (
            target("    address: 127.0.0.2\n    interval: 5 minutes\n    checks: [icmp: {}]\n"),
            "main.yaml:18:15: invalid duration \"5 minutes\": expected a number followed by a unit (ms, s, m, h, d, w, y), such as \"30s\" or \"1h30m\"",
        ),
        (
            target("    address: 127.0.0.2\n    checks:\n      - tcp: {port: 70000}\n"),
            "main.yaml:19:21: `port` must be a port number from 1 to 65535, not 70000",
        ),
        (
            target("    address: 127.0.0.2\n    checks:\n      - udp: {port: 53}\n"),
            "main.yaml:19:9: unknown variant `udp`, expected one of icmp, tcp, http, dns, ports, tls, template",
        ),
        (
            target("    address: 127.0.0.2\n    checks:\n      - template: nope\n"),
            "main.yaml:19:9: target \"t2\": unknown template \"nope\"",
        ),
        (
            target("    address: 127.0.0.2\n    system: erp\n    checks: [icmp: {}]\n"),
            "main.yaml:18:13: target \"t2\": unknown system \"erp\"",
        ),
        (
            target("    address: 127.0.0.2\n    depends_on: [gateway]\n    checks: [icmp: {}]\n"),
            "main.yaml:18:18: target \"t2\": depends_on names unknown target \"gateway\"",
        ),
        (
            target("    checks: [icmp: {}]\n"),
            "main.yaml:17:14: icmp check needs the target's `address`",
        ),
        (
            target("    checks:\n      - http: {url: \"ftp://x/\"}\n"),
            "main.yaml:18:21: url \"ftp://x/\": expected an absolute http:// or https:// URL with a host",
        ),
        (
            target("    address: 127.0.0.2\n    checks:\n      - tcp: {port: 22}\n      - tcp: {port: 22}\n"),
            "main.yaml:20:9: target \"t2\" has two checks named \"tcp_22\": give one a `name:`",
        ),
        (
            target("    address: 127.0.0.2\n    labels: {province: x}\n    checks: [icmp: {}]\n"),
            "main.yaml:0:0: label \"province\" is both an area level and a target label; rename one",
        ),
        (
            target("    address: 127.0.0.2\n    labels: {kind: x}\n    checks: [icmp: {}]\n"),
            "main.yaml:15:9: target \"t2\": label \"kind\" is set by iocwatch itself; choose another name",
        ),
        (
            format!("{BASE}  - id: t2\n    area: \"15\"\n    address: 127.0.0.2\n  checks: []\n"),
            "main.yaml:18:3: while parsing a block collection, did not find expected '-' indicator",
        ),
        (
            format!("{BASE}  - id: t2\n    area: [\"15\"\n"),
            "main.yaml:16:11: `area` takes a single value (text), not a list or a mapping",
        ),
        (
            BASE.replace("      - {code: \"02947\", name: Xã Bảo Yên, kind: xa}", "      - {code: \"15\", name: Trùng mã}"),
            "main.yaml:6:16: area code \"15\" is defined twice",
        ),
        // An area written by its name, with the other tone-mark placement: its code is named.
        (
            format!("{BASE}  - id: t2\n    area: Xa Bao Yen\n    address: 127.0.0.2\n    checks: [icmp: {{}}]\n"),
            "main.yaml:16:11: target \"t2\": unknown area \"Xa Bao Yen\": areas are named by their code; \"02947\" is Xã Bảo Yên",
        ),
        (
            target("    address: 127.0.0.2\n    address: 127.0.0.3\n    checks: [icmp: {}]\n"),
            "main.yaml:18:5: `address` is given twice in the same mapping; keep one",
        ),
        (
            target("    address: 127.0.0.2\n    checks:\n      - icmp: {count: 70000}\n"),
            "main.yaml:19:23: `count` must be a whole number from 0 to 65535, not 70000",
        ),
    ];
    let mut mismatches = Vec::new();
    for (config, expected) in cases {
        let errors = errors_of(&config);
        if errors != vec![expected.to_owned()] {
            mismatches.push(format!("expected {expected}\n     got {errors:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// One owner's broken file must not make another owner chase errors that are not theirs:
/// a reference into the broken file says where to look first.
#[test]
fn a_broken_file_is_named_on_the_errors_it_causes_elsewhere() {
    let main = format!(
        "include: [\"conf.d/*.yaml\"]\n{BASE}  - id: commune\n    area: \"02947\"\n    address: 127.0.0.2\n    depends_on: [vnpt-gw]\n    checks: [icmp: {{}}]\n"
    );
    let broken = "targets:\n  - id: vnpt-gw\n    area: \"15\"\n  checks: [\n";
    let errors = load(&[("main.yaml", &main), ("conf.d/vnpt.yaml", broken)]).expect_err("refused");
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].starts_with("conf.d/vnpt.yaml:4:3:"),
        "{errors:#?}"
    );
    assert!(
        errors[1].ends_with("depends_on names unknown target \"vnpt-gw\" (perhaps defined in conf.d/vnpt.yaml, which could not be read: fix that first)"),
        "{errors:#?}"
    );
}

#[test]
fn an_include_that_matches_nothing_is_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = dir.path().join("main.yaml");
    std::fs::write(&main, format!("include: [\"conf.d/*.yaml\"]\n{BASE}")).expect("write");
    let config = config::load(&main).expect("valid");
    assert_eq!(config.warnings.len(), 1);
    assert_eq!(
        config.warnings[0].to_string(),
        format!("{}:1:11: \"conf.d/*.yaml\" matches no file", main.display())
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_iocwatch"))
        .args(["check-config", "-c"])
        .arg(&main)
        .output()
        .expect("check-config");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: "));
}

#[test]
fn all_errors_are_reported_at_once_across_files() {
    let main = format!("include: [\"conf.d/*.yaml\"]\n{BASE}  - id: a\n    area: \"nowhere\"\n    address: 127.0.0.2\n    checks: [icmp: {{}}]\n");
    let owner = "targets:\n  - id: b\n    area: \"15\"\n    address: 127.0.0.3\n    depends_on: [c]\n    checks: [icmp: {}]\n  - id: c\n    area: \"15\"\n    address: 127.0.0.4\n    depends_on: [b]\n    checks: [icmp: {}]\n";
    let broken = "global:\n  listen: [\"0.0.0.0:1\"]\ntargets: []\n";
    let errors = load(&[
        ("main.yaml", &main),
        ("conf.d/vnpt.yaml", owner),
        ("conf.d/x-broken.yaml", broken),
    ])
    .expect_err("invalid");
    assert_eq!(
        errors,
        vec![
            "conf.d/x-broken.yaml:2:3: `global` belongs in the main file only".to_owned(),
            "main.yaml:17:11: target \"a\": unknown area \"nowhere\"".to_owned(),
            "conf.d/vnpt.yaml:7:9: dependency cycle: b → c → b".to_owned(),
        ]
    );
}

#[test]
fn file_sd_targets_are_loaded_and_their_errors_positioned() {
    let main = format!(
        "{BASE}file_sd:\n  - files: [\"sd/*.json\"]\n    area: \"15\"\n    checks: [icmp: {{}}]\n"
    );
    let good = r#"[{"targets": ["127.0.0.5:9100", "[::1]:80"], "labels": {"owner": "dc", "area": "02947", "__meta_x": "y"}}]"#;
    let catalog = load(&[("main.yaml", &main), ("sd/servers.json", good)]).expect("valid");
    let target = catalog
        .targets
        .iter()
        .find(|t| &*t.id == "127.0.0.5:9100")
        .expect("file_sd target");
    assert_eq!(target.address.as_deref(), Some("127.0.0.5"));
    assert_eq!(catalog.areas.get(target.area).code, "02947");
    assert_eq!(target.labels.get("owner").map(String::as_str), Some("dc"));
    assert!(!target.labels.contains_key("__meta_x"));

    let bad = "[{\"targets\": [\"127.0.0.5\"],\n  \"lables\": {}}]";
    let errors = load(&[("main.yaml", &main), ("sd/servers.json", bad)]).expect_err("invalid");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("sd/servers.json:2:"), "{errors:?}");
    assert!(errors[0].contains("unknown field `lables`"), "{errors:?}");
}

#[test]
fn missing_main_file_is_named() {
    let errors = config::load(Path::new("/nonexistent/iocwatch.yaml")).expect_err("missing");
    assert_eq!(errors.0.len(), 1);
    assert!(errors
        .to_string()
        .starts_with("/nonexistent/iocwatch.yaml: cannot read file"));
}

#[test]
fn bundled_demo_config_is_valid() {
    let catalog = config::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/iocwatch.yaml"
    )))
    .unwrap_or_else(|e| panic!("bundled config must load:\n{e}"))
    .catalog;
    // Lào Cai communes from the 2025 list, plus the province and three former-district groups.
    assert_eq!(catalog.areas.len(), 29);
    let commune = catalog.areas.find("02947").expect("Xã Bảo Yên");
    assert_eq!(catalog.areas.path(commune), "15/huyen-bao-yen/02947");
    assert_eq!(catalog.areas.get(commune).name, "Xã Bảo Yên");
    assert!(catalog.targets.iter().any(|t| &*t.id == "tslcd-gw"));
    assert_eq!(catalog.systems.len(), 7);
}

#[test]
fn alerting_errors_name_file_line_and_column() {
    let main = format!(
        r#"alerting:
  time_zone: Asia/Hanoi_City
  notifiers:
    - {{name: ops, webhook: {{url: "ftp://bridge/"}}}}
    - {{name: mail, email: {{smarthost: "mail:587", from: ioc@laocai.test, to: [a@laocai.test]}}}}
  rules:
    - targets: [gw, gateway]
      areas: ["99"]
      systems: [erp]
      alerts: {{down: {{after: 2}}, notify: [pager]}}
    - kinds: [icmp]
      alerts: {{loss: {{above: 150%}}}}
  maintenance:
    - {{name: night, areas: ["98"], cron: "0 22 * * 6", duration: 2h}}
    - {{name: once, targets: [gw], start: "2026-12-01 12:00", end: "2026-12-01 08:00"}}
    - {{name: neither, targets: [gw]}}
{BASE}  - id: t2
    area: "02947"
    address: 127.0.0.2
    checks:
      - tcp: {{port: 22, alerts: {{loss: {{above: 5%}}}}}}
"#
    );
    let errors = errors_of(&main);
    let expected = [
        "main.yaml:35:40: alert condition `loss` does not apply to tcp checks",
        "main.yaml:2:14: unknown time zone \"Asia/Hanoi_City\": expected an IANA name such as Asia/Ho_Chi_Minh",
        "main.yaml:4:7: notifier \"ops\": webhook url: expected an http or https URL",
        "main.yaml:10:43: unknown notifier \"pager\"",
        "main.yaml:7:21: unknown target \"gateway\"",
        "main.yaml:8:15: unknown area \"99\"",
        "main.yaml:9:17: unknown system \"erp\"",
        "main.yaml:12:22: loss threshold must be at least 0 and below 1 (100%), not 1.5",
        "main.yaml:14:29: unknown area \"98\"",
        "main.yaml:15:67: maintenance \"once\" ends before it starts",
        "main.yaml:16:7: maintenance \"neither\" needs either `start` and `end`, or `cron` and `duration`",
    ];
    assert_eq!(errors, expected);
}
