//! The beacon over TCP, with real processes on loopback: a daemon whose UDP to the beacon goes
//! nowhere (a socket that never answers) falls back to the rendezvous's beacon stream on the
//! beacon's port number, and the beacon answers it there.

mod daemon_support;

use std::time::Instant;

use daemon_support::{Rendezvous, TestNode, WAIT, start_with_registry};

#[test]
fn a_node_whose_udp_to_the_beacon_is_lost_uses_the_beacon_over_tcp() {
    let rv = Rendezvous::start(&[]);
    // UDP sent here is swallowed: no reply, and no ICMP error either.
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead = black_hole.local_addr().expect("addr").to_string();

    let mut node = TestNode::new();
    let flags = ["--beacon", &dead, "--beacon-tcp", &rv.beacon, "--public"];
    start_with_registry(&mut node, &rv.registry, &flags);

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
