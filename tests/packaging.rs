//! The container and cluster files, checked statically (tests/container.rs builds and runs the
//! image; no cluster here): every file they copy or mount exists, the Kubernetes manifests hold
//! what they must, and the config they ship is a valid iocwatch config.

use std::path::Path;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn dockerfile_copies_what_exists_and_runs_unprivileged() {
    let dockerfile = read("Dockerfile");
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        // `target/…` is the binary the prebuilt stage takes from a build on the host.
        for source in parts[1..parts.len() - 1]
            .iter()
            .filter(|s| !s.starts_with("target/"))
        {
            assert!(
                root().join(source).exists(),
                "Dockerfile copies missing {source}"
            );
        }
    }
    assert!(
        dockerfile.contains("USER iocwatch"),
        "runs as a non-root user"
    );
    // A file capability would stop the binary from starting without NET_RAW in the bounding
    // set; tests/container.rs runs the image with and without it.
    assert!(
        !dockerfile.contains("setcap"),
        "no file capability in the image"
    );
    assert!(
        dockerfile.contains("FROM rust:") && dockerfile.contains("AS build"),
        "multi-stage"
    );
}

#[test]
fn compose_mounts_existing_files_and_keeps_only_net_raw() {
    let compose: Value =
        serde_saphyr::from_str(&read("compose.yaml")).expect("compose.yaml parses");
    let services = compose["services"].as_object().expect("services");
    for name in ["iocwatch", "prometheus", "alertmanager", "grafana"] {
        assert!(services.contains_key(name), "service {name}");
    }
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let spec = volume.as_str().expect("short volume syntax");
            if let Some(local) = spec.strip_prefix("./") {
                let path = local.split(':').next().expect("path");
                assert!(root().join(path).exists(), "{name} mounts missing ./{path}");
            }
        }
    }
    let iocwatch = &services["iocwatch"];
    assert_eq!(iocwatch["cap_drop"], serde_json::json!(["ALL"]));
    assert_eq!(iocwatch["cap_add"], serde_json::json!(["NET_RAW"]));
    // Where the runtime does not hand NET_RAW to the non-root user, the datagram ping socket.
    assert_eq!(
        iocwatch["sysctls"]["net.ipv4.ping_group_range"],
        "0 2147483647"
    );
}

#[test]
fn kubernetes_statefulset_shards_by_pod_index_and_ships_a_valid_config() {
    let docs: Vec<Value> = serde_saphyr::from_multiple(&read("deploy/kubernetes/iocwatch.yaml"))
        .expect("manifests parse");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "Service", "StatefulSet", "ServiceMonitor"]
    );
    let set = &docs[2]["spec"];
    assert_eq!(
        set["template"]["spec"]["securityContext"]["sysctls"][0]["name"],
        "net.ipv4.ping_group_range",
        "ICMP datagram sockets where NET_RAW is not held"
    );
    let container = &set["template"]["spec"]["containers"][0];
    let env = container["env"].as_array().expect("env");
    let index = env
        .iter()
        .find(|e| e["name"] == "IOCWATCH_SHARD_INDEX")
        .expect("shard index");
    assert_eq!(
        index["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    let count = env
        .iter()
        .find(|e| e["name"] == "IOCWATCH_SHARD_COUNT")
        .expect("shard count");
    assert_eq!(
        count["value"].as_str(),
        Some(set["replicas"].to_string().as_str()),
        "shard count = replicas"
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_RAW"])
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(docs[3]["spec"]["endpoints"][0]["port"], "metrics");

    let config = docs[0]["data"]["iocwatch.yaml"]
        .as_str()
        .expect("config in the ConfigMap");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("iocwatch.yaml");
    std::fs::write(&path, config).expect("write");
    let catalog = iocwatch::config::load(&path)
        .unwrap_or_else(|e| panic!("ConfigMap config:\n{e}"))
        .catalog;
    assert_eq!(catalog.targets.len(), 1);
}

/// `cargo deb` packs the binary cargo built for the tests (no release build here), with the
/// hardened unit, the example config as a conffile and a postinst that adds the user.
#[test]
fn debian_package_holds_the_unit_the_config_and_the_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deb = dir.path().join("iocwatch.deb");
    let out = std::process::Command::new("cargo")
        .current_dir(root())
        .args(["deb", "--no-build", "--profile", "dev", "-o"])
        .arg(&deb)
        .output()
        .expect("cargo");
    assert!(
        out.status.success(),
        "cargo deb failed (install it with `cargo install cargo-deb`; .ci/test.sh does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dpkg = |args: &[&str]| {
        let out = std::process::Command::new("dpkg-deb")
            .args(args)
            .arg(&deb)
            .output()
            .expect("dpkg-deb");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let contents = dpkg(&["--contents"]);
    for path in [
        "./usr/bin/iocwatch",
        "./usr/lib/systemd/system/iocwatch.service",
        "./etc/iocwatch/iocwatch.yaml",
        "./etc/iocwatch/conf.d/vnpt-tslcd.yaml",
        "./usr/share/iocwatch/dashboards/iocwatch-province.json",
        "./usr/share/iocwatch/prometheus/iocwatch-alerts.yml",
        "./usr/lib/sysctl.d/60-iocwatch.conf",
        "./usr/share/iocwatch/import-template.xlsx",
        "./usr/share/iocwatch/import-template.csv",
    ] {
        assert!(
            contents.contains(path),
            "{path} missing from the package:\n{contents}"
        );
    }
    let conffiles = dpkg(&["--info"]);
    assert!(conffiles.contains("Depends: adduser"), "{conffiles}");
    let control = tempfile::tempdir().expect("control dir");
    let out = std::process::Command::new("dpkg-deb")
        .arg("--control")
        .arg(&deb)
        .arg(control.path())
        .output()
        .expect("dpkg-deb");
    assert!(out.status.success());
    let read = |name: &str| {
        std::fs::read_to_string(control.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    assert!(read("conffiles").contains("/etc/iocwatch/iocwatch.yaml"));
    let postinst = read("postinst");
    assert!(
        postinst.contains("adduser --system --group")
            && postinst.contains("systemctl")
            && postinst.contains("60-iocwatch.conf"),
        "{postinst}"
    );
}
