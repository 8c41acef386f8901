//! Test hosts in network namespaces: a veth pair between this namespace and a new one, with
//! addresses from 198.18.0.0/15 (reserved for benchmarking, routed nowhere). Names and subnets
//! are unique per process and test; the guard removes everything even when the test fails.
//!
//! Network safety: when a test cuts a link, the kernel may drop the routes through it, and
//! traffic to the test addresses would then follow the host's default route out of the
//! machine. Before the first namespace is made, a fallback `unreachable 198.18.0.0/15` route
//! (metric 4000, below every real route) is put in place, so a cut link drops packets here.
//! It is never removed: tests run in parallel, and another may still be cutting links.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Adds the fallback route once per process; `replace` makes it idempotent across processes.
pub fn ensure_fallback_route() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        ip(&[
            "route",
            "replace",
            "unreachable",
            "198.18.0.0/15",
            "metric",
            "4000",
        ]);
    });
}

/// What `ip route get ADDR` answers in this namespace.
pub fn route_to(addr: Ipv4Addr) -> String {
    let out = Command::new("ip")
        .args(["route", "get", &addr.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (install iproute2): {e}"));
    // An unreachable route makes `ip route get` fail ("No route to host"): that is the
    // answer we want, so both streams are the result.
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The device and gateway of this namespace's default route, if it has one.
pub fn default_route() -> Option<String> {
    let out = Command::new("ip")
        .args(["route", "show", "default"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim().to_owned();
    (!line.is_empty()).then_some(line)
}

/// Panics if traffic to `addr` would leave through the default route.
pub fn assert_not_via_default(addr: Ipv4Addr) {
    let route = route_to(addr);
    let Some(default) = default_route() else {
        return;
    };
    let words: Vec<&str> = default.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string())
    };
    for (key, value) in [("via", after("via")), ("dev", after("dev"))] {
        if let Some(value) = value {
            assert!(
                !route.contains(&format!("{key} {value} "))
                    && !route.trim_end().ends_with(&format!("{key} {value}")),
                "traffic to {addr} would leave through the default route ({default}): {route}"
            );
        }
    }
}

pub struct TestHost {
    pub name: String,
    host_if: String,
    peer_if: String,
    pub host_ip: Ipv4Addr,
    pub peer_ip: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run `ip` (install iproute2): {e}"));
    assert!(status.success(), "ip {} failed", args.join(" "));
}

fn veth(one: &str, other: &str) {
    ip(&["link", "add", one, "type", "veth", "peer", "name", other]);
}

/// A fresh host: a unique namespace and interface names (`side` tells the end in the
/// parent namespace apart), and a /30 inside 198.18.0.0/15 (32768 of them).
fn allocate(side: char) -> TestHost {
    ensure_fallback_route();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let index = (pid.wrapping_mul(64).wrapping_add(n)) % 32768;
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + index * 4;
    TestHost {
        name: format!("iw{pid:x}n{n}"),
        host_if: format!("iw{:x}{side}{n}", pid % 0xfffff),
        peer_if: format!("iw{:x}p{n}", pid % 0xfffff),
        host_ip: Ipv4Addr::from(base + 1),
        peer_ip: Ipv4Addr::from(base + 2),
    }
}

impl TestHost {
    /// Creates namespace + veth pair, link up on both sides.
    pub fn new() -> TestHost {
        let host = allocate('h');
        let peer_if = host.peer_if.clone();
        ip(&["netns", "add", &host.name]);
        veth(&host.host_if, &peer_if);
        ip(&["link", "set", &peer_if, "netns", &host.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", host.host_ip),
            "dev",
            &host.host_if,
        ]);
        ip(&["link", "set", &host.host_if, "up"]);
        host.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", host.peer_ip),
            "dev",
            &peer_if,
        ]);
        host.exec(&["ip", "link", "set", &peer_if, "up"]);
        host.exec(&["ip", "link", "set", "lo", "up"]);
        host
    }

    /// A host routed behind `gateway` (a commune behind its district uplink): its own
    /// namespace, linked to the gateway's, which forwards; this namespace reaches it through
    /// the gateway, so cutting the gateway's link cuts it too.
    pub fn behind(gateway: &TestHost) -> TestHost {
        let host = allocate('g');
        ip(&["netns", "add", &host.name]);
        veth(&host.host_if, &host.peer_if);
        ip(&["link", "set", &host.host_if, "netns", &gateway.name]);
        ip(&["link", "set", &host.peer_if, "netns", &host.name]);
        gateway.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", host.host_ip),
            "dev",
            &host.host_if,
        ]);
        gateway.exec(&["ip", "link", "set", &host.host_if, "up"]);
        gateway.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        host.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", host.peer_ip),
            "dev",
            &host.peer_if,
        ]);
        host.exec(&["ip", "link", "set", &host.peer_if, "up"]);
        host.exec(&["ip", "link", "set", "lo", "up"]);
        host.exec(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &host.host_ip.to_string(),
        ]);
        // Gone with the gateway's veth when the gateway is dropped.
        ip(&[
            "route",
            "add",
            &format!("{}/32", host.peer_ip),
            "via",
            &gateway.peer_ip.to_string(),
        ]);
        host
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        ip(&full);
    }

    /// Cuts the link, as a dropped uplink would: packets go out and nothing answers.
    pub fn cut(&self) {
        self.exec(&["ip", "link", "set", "dev", &self.peer_if, "down"]);
    }

    pub fn restore(&self) {
        self.exec(&["ip", "link", "set", "dev", &self.peer_if, "up"]);
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes the peer end, and with it our end of the veth pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        // Usually gone with the namespace already; this catches a half-built pair.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// An empty network namespace with only loopback up: a machine of its own for sysctls such as
/// `net.ipv4.ping_group_range`, which are per namespace.
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    pub fn new() -> Namespace {
        ensure_fallback_route();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ns = Namespace {
            name: format!("iw{:x}s{n}", std::process::id()),
        };
        ip(&["netns", "add", &ns.name]);
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn sysctl(&self, setting: &str) {
        ip(&["netns", "exec", &self.name, "sysctl", "-q", "-w", setting]);
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
