//! A link drop, for real: a test host in its own network namespace answers ICMP and TCP until
//! the test cuts its link; the agent must report it down (timeout, full loss) while every
//! other check keeps its schedule, and up again once the link is restored.

mod common;

use std::time::Duration;

use common::netns::{assert_not_via_default, TestHost};
use common::TestAgent;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_is_reported_down_and_recovers() {
    let host = TestHost::new();
    // TCP to a closed port of the test host: while reachable its kernel answers RST
    // (refused); behind a cut link nothing answers (timeout). The two must be told apart.
    let peer = host.peer_ip.to_string();
    let main = format!(
        r#"defaults: {{interval: 1s, timeout: 700ms}}
areas:
  - {{code: "15", name: Tỉnh Lào Cai, children: [{{code: "02839", name: Xã Bắc Hà}}]}}
targets:
  - id: local
    area: "15"
    address: 127.0.0.1
    checks: [icmp: {{count: 1}}]
  - id: commune
    area: "02839"
    address: {peer}
    checks:
      - icmp: {{count: 3, spacing: 50ms}}
      - tcp: {{port: 9, name: discard}}
"#
    );
    let agent = TestAgent::start(&[("iocwatch.yaml", &main)]).await;
    let commune_icmp = [("target", "commune"), ("kind", "icmp")];
    let commune_tcp = [("target", "commune"), ("kind", "tcp")];

    agent
        .wait_for(WAIT, "the test host to answer", |m| {
            m.value("iocwatch_probe_success", &commune_icmp) == Some(1.0)
                && m.value(
                    "iocwatch_probe_failures_total",
                    &[("target", "commune"), ("reason", "refused")],
                )
                .is_some()
        })
        .await;

    host.cut();
    // Network safety: the cut host's address must not fall through to the default route.
    assert_not_via_default(host.peer_ip);
    let m = agent
        .wait_for(WAIT, "the cut link to show", |m| {
            m.value("iocwatch_probe_success", &commune_icmp) == Some(0.0)
                && m.value("iocwatch_icmp_loss_ratio", &commune_icmp) == Some(1.0)
                && m.value(
                    "iocwatch_probe_failures_total",
                    &[
                        ("target", "commune"),
                        ("kind", "tcp"),
                        ("reason", "timeout"),
                    ],
                )
                .is_some()
        })
        .await;
    assert_eq!(
        m.value("iocwatch_icmp_loss_ratio", &commune_icmp),
        Some(1.0)
    );
    assert_eq!(m.value("iocwatch_probe_success", &commune_tcp), Some(0.0));
    assert!(
        !m.has("iocwatch_icmp_round_rtt_seconds", &[("target", "commune")]),
        "no reply, no RTT (not a misleading 0)"
    );
    agent
        .wait_for(WAIT, "the commune rollup to show it down", |m| {
            m.value(
                "iocwatch_area_targets",
                &[("area", "02839"), ("state", "down")],
            ) == Some(1.0)
        })
        .await;

    // The unreachable host does not hold up the others: the local check keeps running.
    let local_rounds = |m: &common::Metrics| {
        m.value("iocwatch_icmp_packets_sent_total", &[("target", "local")])
            .unwrap_or(0.0)
    };
    let seen = local_rounds(&m);
    agent
        .wait_for(WAIT, "local rounds to go on", |m| {
            local_rounds(m) >= seen + 2.0
        })
        .await;

    host.restore();
    agent
        .wait_for(WAIT, "recovery", |m| {
            m.value("iocwatch_probe_success", &commune_icmp) == Some(1.0)
        })
        .await;
    agent.stop().await;
}

/// The fallback route is what keeps test traffic here: with every route through a cut
/// gateway gone, a host behind it is unreachable, not sent to the default gateway.
#[test]
fn a_host_behind_a_cut_gateway_is_unreachable_not_routed_out() {
    let gateway = TestHost::new();
    let commune = TestHost::behind(&gateway);
    gateway.cut();
    assert_not_via_default(commune.peer_ip);
    assert_not_via_default(gateway.peer_ip);
    // Taking the whole gateway away (its namespace and veth deleted) removes every specific
    // route: what is left must be the fallback.
    let (gw_ip, commune_ip) = (gateway.peer_ip, commune.peer_ip);
    drop(commune);
    drop(gateway);
    for addr in [gw_ip, commune_ip] {
        let route = common::netns::route_to(addr);
        assert!(
            // `ip route get` answers an `unreachable` route with EHOSTUNREACH.
            route.contains("unreachable") || route.contains("No route to host"),
            "{addr}: {route}"
        );
        assert_not_via_default(addr);
    }
}
