//! The container image, built from the Dockerfile and run for real with Debian's podman on a
//! local base image (`.ci/container-base.sh` makes it; no registry is reachable). The build
//! runs with no network; every container has its own network namespace with only loopback,
//! so nothing a test container sends leaves it.
//!
//! What only a real run shows: the agent runs as its non-root user, ICMP works with the
//! capabilities compose.yaml and the Kubernetes manifest give it, a read-only root keeps its
//! state in the volume, and two containers split the targets as the StatefulSet's pods do.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

const BASE: &str = "localhost/debian:bookworm-slim";

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(["--runtime", "runc", "--cgroup-manager=cgroupfs"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman must be installed (.ci/test.sh installs it): {e}"))
}

fn ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Unique names, so that tests and runs never meet; containers, volumes and the image are
/// removed when the guard drops, also when the test fails.
struct Podman {
    prefix: String,
    containers: Vec<String>,
    volumes: Vec<String>,
    image: String,
}

impl Podman {
    fn new() -> Podman {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "iw{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Podman {
            image: format!("localhost/iocwatch-test:{prefix}"),
            prefix,
            containers: Vec::new(),
            volumes: Vec::new(),
        }
    }

    /// Builds the image from the repository's Dockerfile with this test's binary in place of
    /// the toolchain stage (`BINARY=prebuilt`), offline.
    fn build(&self) {
        assert!(
            podman(&["image", "exists", BASE]).status.success(),
            "{BASE} is missing: .ci/container-base.sh makes it"
        );
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let context = tempfile::tempdir().expect("context");
        for file in ["Dockerfile", ".dockerignore"] {
            std::fs::copy(root.join(file), context.path().join(file)).expect("copy");
        }
        let release = context.path().join("target/release");
        std::fs::create_dir_all(&release).expect("mkdir");
        std::fs::copy(env!("CARGO_BIN_EXE_iocwatch"), release.join("iocwatch")).expect("binary");
        copy_dir(&root.join("config"), &context.path().join("config"));
        ok(&[
            "build",
            "--pull=never",
            "--network=none",
            "--format=docker",
            "--ulimit=nofile=1024:1024",
            "--ulimit=nproc=1000:1000",
            "--build-arg=BINARY=prebuilt",
            &format!("--build-arg=BASE={BASE}"),
            "-t",
            &self.image,
            &context.path().display().to_string(),
        ]);
    }

    fn volume(&mut self, name: &str) -> String {
        let volume = format!("{}-{name}", self.prefix);
        ok(&["volume", "create", &volume]);
        self.volumes.push(volume.clone());
        volume
    }

    /// Runs the agent detached, with the security settings of compose.yaml unless `extra`
    /// changes them, and this config directory mounted read-only.
    fn run(&mut self, name: &str, config: &Path, volume: &str, extra: &[&str]) -> String {
        let container = format!("{}-{name}", self.prefix);
        let mut args = vec![
            "run".to_owned(),
            "-d".into(),
            "--name".into(),
            container.clone(),
            "--network=none".into(),
            "--read-only".into(),
            "--ulimit=nofile=1024:1024".into(),
            "--ulimit=nproc=1000:1000".into(),
            "--cap-drop=ALL".into(),
            "-v".into(),
            format!("{}:/etc/iocwatch:ro", config.display()),
            "-v".into(),
            format!("{volume}:/var/lib/iocwatch"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(self.image.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&args);
        self.containers.push(container.clone());
        container
    }

    /// An HTTP GET inside the container (its own loopback), with the bash the image has.
    fn get(&self, container: &str, path: &str) -> Option<String> {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/10090 && printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
        );
        let out = podman(&["exec", container, "bash", "-c", &script]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn wait_for(
        &self,
        container: &str,
        path: &str,
        what: &str,
        until: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(body) = self.get(container, path) {
                if until(&body) {
                    return body;
                }
            }
            if Instant::now() >= deadline {
                let logs = podman(&["logs", container]);
                panic!(
                    "{container}: {what} never came; log:\n{}{}",
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = podman(&["rm", "-f", "-t", "0", c]);
        }
        for v in &self.volumes {
            let _ = podman(&["volume", "rm", "-f", v]);
        }
        let _ = podman(&["rmi", "-f", &self.image]);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Six loopback hosts (inside the container, all of 127/8 answers) in two communes.
fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("config dir");
    let mut text = String::from(
        "defaults: {interval: 1s, timeout: 800ms}\n\
         areas: [{code: \"15\", name: Lào Cai, children: [{code: \"02947\", name: Xã Bảo Yên}, {code: \"02839\", name: Xã Bắc Hà}]}]\n\
         targets:\n",
    );
    for i in 1..=6 {
        let area = if i % 2 == 0 { "02947" } else { "02839" };
        text.push_str(&format!(
            "  - {{id: host{i}, area: \"{area}\", address: 127.0.3.{i}, checks: [icmp: {{count: 1}}]}}\n"
        ));
    }
    std::fs::write(dir.path().join("iocwatch.yaml"), text).expect("write");
    dir
}

/// The targets of one series family whose line ends in `value` (any value when empty).
fn targets_of(metrics: &str, family: &str, value: &str) -> Vec<String> {
    let mut targets: Vec<String> = metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.ends_with(value))
        .filter_map(|l| {
            let start = l.find("target=\"")? + 8;
            let end = l[start..].find('"')? + start;
            Some(l[start..end].to_owned())
        })
        .collect();
    targets.sort();
    targets
}

/// The targets this agent probes and reports, with a successful round.
fn owned_targets(metrics: &str) -> Vec<String> {
    targets_of(metrics, "iocwatch_probe_success", " 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_non_root_probes_icmp_keeps_state_and_shards() {
    let mut podman = Podman::new();
    podman.build();
    let config = config_dir();

    // As compose.yaml runs it: every capability dropped but NET_RAW, no-new-privileges,
    // read-only root, state in a volume.
    let state = podman.volume("state");
    let compose = [
        "--cap-add=NET_RAW",
        "--security-opt=no-new-privileges",
        "--sysctl=net.ipv4.ping_group_range=0 2147483647",
    ];
    let agent = podman.run("agent", config.path(), &state, &compose);
    let metrics = podman
        .wait_for(&agent, "/metrics", "six hosts answering", |m| {
            owned_targets(m).len() == 6
        })
        .await;
    assert!(
        metrics.contains("iocwatch_icmp_socket_info{family=\"ip4\",mode=\"raw\"} 1"),
        "NET_RAW gives a raw socket:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("icmp_socket"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let healthy = podman.get(&agent, "/-/healthy").expect("healthy");
    assert!(healthy.starts_with("HTTP/1.0 200"), "{healthy}");
    let uid = ok(&["exec", &agent, "cat", "/proc/1/status"]);
    assert!(
        uid.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("10090")),
        "the agent runs as its own user:\n{uid}"
    );

    // The state lives in the volume: stopped (drained to disk) and started again on it,
    // the database is there and the agent serves from it.
    ok(&["stop", "-t", "10", &agent]);
    let mountpoint = ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", &state]);
    let db = Path::new(&mountpoint).join("iocwatch.db");
    assert!(db.exists(), "no database in the volume at {}", db.display());
    ok(&["start", &agent]);
    podman
        .wait_for(&agent, "/metrics", "probing again", |m| {
            owned_targets(m).len() == 6
        })
        .await;

    // Without any capability, the datagram ping socket the sysctl allows (compose.yaml and
    // the manifest set it, for runtimes that do not grant NET_RAW under no-new-privileges).
    let bare_state = podman.volume("bare");
    let bare = podman.run(
        "bare",
        config.path(),
        &bare_state,
        &[
            "--security-opt=no-new-privileges",
            "--sysctl=net.ipv4.ping_group_range=0 2147483647",
        ],
    );
    let metrics = podman
        .wait_for(&bare, "/metrics", "six hosts answering", |m| {
            owned_targets(m).len() == 6
        })
        .await;
    assert!(
        metrics.contains("iocwatch_icmp_socket_info{family=\"ip4\",mode=\"datagram\"} 1"),
        "no capability: datagram socket"
    );

    // Two pods of the StatefulSet: shard 0 and 1 of one config split the targets, each
    // exactly once.
    let mut seen = Vec::new();
    for index in ["0", "1"] {
        let volume = podman.volume(&format!("shard{index}"));
        let shard = podman.run(
            &format!("shard{index}"),
            config.path(),
            &volume,
            &[
                compose[0],
                compose[1],
                compose[2],
                &format!("--env=IOCWATCH_SHARD_INDEX={index}"),
                "--env=IOCWATCH_SHARD_COUNT=2",
            ],
        );
        // Done when every target it reports (one info series each) has answered.
        let metrics = podman
            .wait_for(&shard, "/metrics", "its share probed", |m| {
                let owned = owned_targets(m);
                !owned.is_empty() && owned == targets_of(m, "iocwatch_target_info", "")
            })
            .await;
        seen.push(owned_targets(&metrics));
    }
    let mut union: Vec<String> = seen.concat();
    union.sort();
    assert_eq!(
        union,
        (1..=6).map(|i| format!("host{i}")).collect::<Vec<_>>(),
        "each target on exactly one shard: {seen:?}"
    );
    assert!(seen.iter().all(|s| !s.is_empty()), "{seen:?}");
}
