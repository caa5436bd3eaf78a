//! The beacon over TCP, with real processes on loopback: a daemon whose UDP to the beacon goes
//! nowhere (a socket that never answers) falls back to the rendezvous's beacon stream on the
//! beacon's port number, and the beacon answers it there.

mod daemon_support;

use std::time::Instant;

use daemon_support::{Streamed, TestNode, WAIT};
use serde_json::Value;

/// A standalone rendezvous; returns it with its registry and beacon addresses.
fn rendezvous(dir: &tempfile::TempDir) -> (Streamed, String, String) {
    let helper = TestNode::new();
    let state = dir.path().to_str().expect("utf-8 path").to_owned();
    let proc = helper.spawn(&[
        "--json",
        "rendezvous",
        "--registry-listen",
        "127.0.0.1:0",
        "--beacon-listen",
        "127.0.0.1:0",
        "--state-dir",
        &state,
    ]);
    let line: Value = serde_json::from_str(&proc.next_stdout()).expect("rendezvous addresses");
    let text = |key: &str| line["data"][key].as_str().expect("address").to_owned();
    (proc, text("registry"), text("beacon"))
}

#[test]
fn a_node_whose_udp_to_the_beacon_is_lost_uses_the_beacon_over_tcp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_rv, registry, beacon) = rendezvous(&dir);
    // UDP sent here is swallowed: no reply, and no ICMP error either.
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead = black_hole.local_addr().expect("addr").to_string();

    let mut node = TestNode::new();
    let data = node.json_ok(&[
        "daemon",
        "start",
        "--registry",
        &registry,
        "--beacon",
        &dead,
        "--beacon-tcp",
        &beacon,
        "--listen",
        "127.0.0.1:0",
        "--public",
        "--wait",
        "20s",
    ]);
    node.pid = data["pid"].as_u64().map(|p| p as u32);

    // The beacon reports the address it sees us from; over the stream that is the stream's
    // own address in fd00::/64, so seeing one proves the beacon answered over TCP.
    let deadline = Instant::now() + WAIT;
    let observed = loop {
        let info = node.json_ok(&["info"]);
        let observed = info["observed_endpoint"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if observed.starts_with("[fd00:") {
            break observed;
        }
        assert!(
            Instant::now() < deadline,
            "the beacon never answered over TCP: {info}"
        );
        std::thread::yield_now();
    };
    let registered = node.json_ok(&["info"])["registered_endpoint"].clone();
    assert!(
        !registered
            .as_str()
            .unwrap_or_default()
            .starts_with("[fd00:"),
        "the stream's address ({observed}) must not be registered as ours: {registered}"
    );
}
