//! Owner files that cannot block each other: three departments keep their own files; one
//! breaks its file, another adds a target that depends on the broken file's new one. The
//! broken file is refused alone (its previous version stays in force), the dependent change
//! waits with it, the third department's change applies, and the per-file metric says which
//! is which. Then a new broken file is left out, and fixing the file applies everything.

mod common;

use std::time::Duration;

use common::{write, TestAgent};

const WAIT: Duration = Duration::from_secs(20);

const MAIN: &str = "defaults: {interval: 1s, timeout: 800ms}\n\
include: [\"owners/*.yaml\"]\n\
areas:\n  - {code: \"15\", name: Lào Cai}\n";

fn owner_file(owner: &str, targets: &[&str]) -> String {
    let mut text = format!("owner: {owner}\ncontact: \"trực kỹ thuật {owner}\"\ntargets:\n");
    for target in targets {
        text.push_str(&format!("  - {target}\n"));
    }
    text
}

fn target(id: &str) -> String {
    format!("{{id: {id}, area: \"15\", address: 127.0.0.1, checks: [icmp: {{count: 1}}]}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_owner_file_is_refused_alone() {
    let a = owner_file("STTTT", &[&target("a1")]);
    let b = owner_file("VNPT", &[&target("b1")]);
    let c = owner_file("UBND", &[&target("c1")]);
    let agent = TestAgent::start(&[
        ("iocwatch.yaml", MAIN),
        ("owners/a.yaml", &a),
        ("owners/b.yaml", &b),
        ("owners/c.yaml", &c),
    ])
    .await;
    let file_ok = |m: &common::Metrics, name: &str| {
        let path = agent.path(name).to_string_lossy().into_owned();
        m.value(
            "iocwatch_config_file_last_reload_successful",
            &[("file", &path)],
        )
    };
    let m = agent
        .wait_for(WAIT, "first rounds", |m| {
            ["a1", "b1", "c1"]
                .iter()
                .all(|t| m.has("iocwatch_probe_success", &[("target", t)]))
        })
        .await;
    assert_eq!(file_ok(&m, "owners/b.yaml"), Some(1.0));
    // The file's owner is its targets' owner label.
    assert!(m.has(
        "iocwatch_target_info",
        &[("target", "b1"), ("owner", "VNPT")]
    ));

    // STTTT adds a target; VNPT adds one with a typo; UBND adds one behind VNPT's new one.
    let a2 = owner_file("STTTT", &[&target("a1"), &target("a2")]);
    write(&agent.path("owners/a.yaml"), &a2);
    let b_typo = owner_file(
        "VNPT",
        &[
            &target("b1"),
            "{id: b2, area: \"15\", adress: 127.0.0.1, checks: [icmp: {}]}",
        ],
    );
    write(&agent.path("owners/b.yaml"), &b_typo);
    let c2 = owner_file(
        "UBND",
        &[
            &target("c1"),
            "{id: c2, area: \"15\", address: 127.0.0.1, depends_on: [b2], checks: [icmp: {count: 1}]}",
        ],
    );
    write(&agent.path("owners/c.yaml"), &c2);
    let (status, _) = agent.post("/-/reload").await;
    assert_eq!(status, 500, "something was refused");
    let m = agent
        .wait_for(WAIT, "STTTT's new target", |m| {
            m.has("iocwatch_probe_success", &[("target", "a2")])
        })
        .await;
    assert_eq!(file_ok(&m, "owners/a.yaml"), Some(1.0));
    assert_eq!(
        file_ok(&m, "owners/b.yaml"),
        Some(0.0),
        "the typo is refused"
    );
    assert_eq!(file_ok(&m, "owners/c.yaml"), Some(0.0), "c2 waits for b2");
    assert_eq!(file_ok(&m, "iocwatch.yaml"), Some(1.0));
    assert_eq!(
        m.value("iocwatch_config_last_reload_successful", &[]),
        Some(0.0)
    );
    // The refused files' previous versions stay in force.
    for kept in ["b1", "c1"] {
        assert!(
            m.has("iocwatch_probe_success", &[("target", kept)]),
            "{kept}"
        );
    }
    for waiting in ["b2", "c2"] {
        assert!(
            !m.has("iocwatch_probe_success", &[("target", waiting)]),
            "{waiting}"
        );
        assert!(
            !m.has("iocwatch_target_info", &[("target", waiting)]),
            "{waiting}"
        );
    }
    // check-config names the file, line and column of the typo.
    let checked = common::check_config(&agent.path("iocwatch.yaml"));
    let errors = String::from_utf8_lossy(&checked.stderr);
    assert!(
        errors.contains("b.yaml:5:26:") && errors.contains("unknown field `adress`"),
        "{errors}"
    );

    // A new file that does not parse is left out; nothing else changes.
    write(&agent.path("owners/d.yaml"), "owner: [unclosed\n");
    let (status, _) = agent.post("/-/reload").await;
    assert_eq!(status, 500);
    let m = agent.metrics().await;
    assert_eq!(file_ok(&m, "owners/d.yaml"), Some(0.0));
    assert!(m.has("iocwatch_probe_success", &[("target", "a2")]));
    std::fs::remove_file(agent.path("owners/d.yaml")).expect("remove d");

    // VNPT fixes its typo: its target and the one waiting for it both apply.
    let b_fixed = owner_file("VNPT", &[&target("b1"), &target("b2")]);
    write(&agent.path("owners/b.yaml"), &b_fixed);
    let (status, body) = agent.post("/-/reload").await;
    assert_eq!(status, 200, "{body}");
    let m = agent
        .wait_for(WAIT, "b2 and c2", |m| {
            m.has("iocwatch_probe_success", &[("target", "b2")])
                && m.has("iocwatch_probe_success", &[("target", "c2")])
        })
        .await;
    for file in ["owners/a.yaml", "owners/b.yaml", "owners/c.yaml"] {
        assert_eq!(file_ok(&m, file), Some(1.0), "{file}");
    }
    assert_eq!(
        file_ok(&m, "owners/d.yaml"),
        None,
        "a removed file's series goes"
    );
    assert_eq!(
        m.value("iocwatch_config_last_reload_successful", &[]),
        Some(1.0)
    );

    // check-config: a summary per owner with its contact and file.
    let checked = common::check_config(&agent.path("iocwatch.yaml"));
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{out}");
    assert!(out.contains("owners:"), "{out}");
    assert!(
        out.lines().any(
            |l| l.starts_with("  VNPT (trực kỹ thuật VNPT): 2 targets, 2 checks in ")
                && l.ends_with("owners/b.yaml")
        ),
        "{out}"
    );
    agent.stop().await;
}
