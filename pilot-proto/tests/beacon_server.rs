//! Beacon server: v0.5 behaviour (discovery, punch, relay, gossip) and the rules added on top
//! (source binding, proofs, rate limits, expiry). Virtual time throughout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use pilot_proto::beacon::{
    BeaconClient, BeaconClientConfig, BeaconConfig, BeaconEvent, BeaconServer,
};
use pilot_proto::registry::SecurityMode;
use pilot_proto::wire::beacon::{BeaconRepr, DiscoverProof, encode_sync};

const UNIX: u64 = 1_796_317_551;

#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    // Only offsets from this instant matter.
    Instant::now()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

fn drain(server: &mut BeaconServer, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut buf = Vec::new();
    std::iter::from_fn(|| {
        server
            .poll_transmit(now, &mut buf)
            .map(|t| (t.dst, buf[..t.len].to_vec()))
    })
    .collect()
}

fn beacon(now: Instant) -> BeaconServer {
    BeaconServer::new(
        BeaconConfig {
            beacon_id: 1,
            ..BeaconConfig::default()
        },
        now,
        UNIX,
    )
}

fn discover(node_id: u32) -> Vec<u8> {
    BeaconRepr::Discover {
        node_id,
        proof: None,
    }
    .to_vec()
}

#[test]
fn discover_reply_matches_the_captured_bytes() {
    let now = epoch();
    let mut server = beacon(now);
    server.handle_datagram(
        now,
        addr("127.0.0.1:39510"),
        &hex::decode("0100000001").expect("hex"),
    );
    let sent = drain(&mut server, now);
    assert_eq!(
        sent,
        vec![(
            addr("127.0.0.1:39510"),
            hex::decode("02047f0000019a56").expect("hex")
        )]
    );
    assert_eq!(server.endpoint(1), Some(addr("127.0.0.1:39510")));

    // Node 0 is the anonymous probe: answered, not recorded.
    server.handle_datagram(now, addr("127.0.0.1:40000"), &discover(0));
    assert_eq!(drain(&mut server, now).len(), 1);
    assert_eq!(server.endpoint(0), None);
}

#[test]
fn punch_request_commands_both_sides() {
    let now = epoch();
    let mut server = beacon(now);
    let (a, b) = (addr("198.51.100.1:4000"), addr("203.0.113.2:5000"));
    server.handle_datagram(now, a, &discover(100));
    server.handle_datagram(now, b, &discover(200));
    drain(&mut server, now);
    server.handle_datagram(
        now,
        a,
        &BeaconRepr::PunchRequest {
            requester_id: 100,
            target_id: 200,
        }
        .to_vec(),
    );
    let sent = drain(&mut server, now);
    assert_eq!(
        sent,
        vec![
            (a, BeaconRepr::PunchCommand { peer: b }.to_vec()),
            (b, BeaconRepr::PunchCommand { peer: a }.to_vec()),
        ]
    );

    // Unknown target: silently dropped. Spoofed requester: dropped, nothing redirected.
    server.handle_datagram(
        now,
        a,
        &BeaconRepr::PunchRequest {
            requester_id: 100,
            target_id: 999,
        }
        .to_vec(),
    );
    let spoof = addr("192.0.2.66:1");
    server.handle_datagram(
        now,
        spoof,
        &BeaconRepr::PunchRequest {
            requester_id: 200,
            target_id: 100,
        }
        .to_vec(),
    );
    assert!(drain(&mut server, now).is_empty());
    assert_eq!(server.endpoint(200), Some(b));
}

#[test]
fn relay_only_between_registered_nodes() {
    let now = epoch();
    let mut server = beacon(now);
    let (a, b) = (addr("198.51.100.1:4000"), addr("203.0.113.2:5000"));
    server.handle_datagram(now, a, &discover(300));
    server.handle_datagram(now, b, &discover(400));
    drain(&mut server, now);

    let frame = b"PILTframe";
    server.handle_datagram(
        now,
        a,
        &BeaconRepr::Relay {
            sender_id: 300,
            dest_id: 400,
            payload: frame,
        }
        .to_vec(),
    );
    assert_eq!(
        drain(&mut server, now),
        vec![(
            b,
            BeaconRepr::RelayDeliver {
                sender_id: 300,
                payload: frame
            }
            .to_vec()
        )]
    );

    // A relay claiming to be node 300 from another address is not an open relay.
    server.handle_datagram(
        now,
        addr("192.0.2.9:9"),
        &BeaconRepr::Relay {
            sender_id: 300,
            dest_id: 400,
            payload: frame,
        }
        .to_vec(),
    );
    server.handle_datagram(
        now,
        a,
        &BeaconRepr::Relay {
            sender_id: 300,
            dest_id: 777,
            payload: frame,
        }
        .to_vec(),
    );
    assert!(drain(&mut server, now).is_empty());
    assert_eq!(server.stats().dropped, 2);
}

#[test]
fn relay_is_rate_limited_per_sender() {
    let now = epoch();
    let config = BeaconConfig {
        relay_limit: pilot_proto::registry::ratelimit::RateLimit {
            capacity: 5,
            period: Duration::from_secs(1),
        },
        ..BeaconConfig::default()
    };
    let mut server = BeaconServer::new(config, now, UNIX);
    let (a, b) = (addr("198.51.100.1:4000"), addr("203.0.113.2:5000"));
    server.handle_datagram(now, a, &discover(1));
    server.handle_datagram(now, b, &discover(2));
    drain(&mut server, now);
    let relay = BeaconRepr::Relay {
        sender_id: 1,
        dest_id: 2,
        payload: b"x",
    }
    .to_vec();
    for _ in 0..10 {
        server.handle_datagram(now, a, &relay);
    }
    assert_eq!(drain(&mut server, now).len(), 5);
    let later = now + Duration::from_secs(1);
    server.handle_datagram(later, a, &relay);
    assert_eq!(drain(&mut server, later).len(), 1);
}

#[test]
fn proven_node_cannot_be_moved_by_an_unproven_discover() {
    let now = epoch();
    let mut server = beacon(now);
    let key = SigningKey::from_bytes(&[5; 32]);
    server.set_node_key(7, Some(key.verifying_key()));
    let signature = key.sign(&DiscoverProof::signed_bytes(7, UNIX)).to_bytes();
    let proven = BeaconRepr::Discover {
        node_id: 7,
        proof: Some(DiscoverProof {
            unix_time: UNIX,
            signature,
        }),
    };
    let home = addr("198.51.100.7:4000");
    server.handle_datagram(now, home, &proven.to_vec());
    assert_eq!(server.endpoint(7), Some(home));

    server.handle_datagram(now, addr("192.0.2.66:1"), &discover(7));
    assert_eq!(server.endpoint(7), Some(home), "hijack refused");

    // A forged proof is dropped without a reply; a stale one too.
    let forged = BeaconRepr::Discover {
        node_id: 7,
        proof: Some(DiscoverProof {
            unix_time: UNIX,
            signature: [1; 64],
        }),
    };
    drain(&mut server, now);
    server.handle_datagram(now, addr("192.0.2.66:1"), &forged.to_vec());
    assert!(drain(&mut server, now).is_empty());
    let late = now + Duration::from_secs(600);
    server.handle_datagram(late, addr("192.0.2.66:2"), &proven.to_vec());
    assert_eq!(server.endpoint(7), Some(home));

    // The real node moving (NAT rebinding) with a fresh proof is accepted.
    let moved = addr("198.51.100.7:4111");
    let signature = key
        .sign(&DiscoverProof::signed_bytes(7, UNIX + 30))
        .to_bytes();
    let fresh = BeaconRepr::Discover {
        node_id: 7,
        proof: Some(DiscoverProof {
            unix_time: UNIX + 30,
            signature,
        }),
    };
    server.handle_datagram(now + Duration::from_secs(30), moved, &fresh.to_vec());
    assert_eq!(server.endpoint(7), Some(moved));
}

#[test]
fn hardened_beacon_binds_only_proven_ids() {
    let now = epoch();
    let config = BeaconConfig {
        security: SecurityMode::Hardened,
        ..BeaconConfig::default()
    };
    let mut server = BeaconServer::new(config, now, UNIX);
    server.handle_datagram(now, addr("198.51.100.1:1"), &discover(9));
    assert_eq!(
        drain(&mut server, now).len(),
        1,
        "still answers the STUN part"
    );
    assert_eq!(server.endpoint(9), None);
}

#[test]
fn gossip_and_cross_beacon_relay_without_loops() {
    let now = epoch();
    let (addr1, addr2) = (addr("10.0.0.1:9001"), addr("10.0.0.2:9001"));
    let mut one = BeaconServer::new(
        BeaconConfig {
            beacon_id: 1,
            ..BeaconConfig::default()
        },
        now,
        UNIX,
    );
    let mut two = BeaconServer::new(
        BeaconConfig {
            beacon_id: 2,
            ..BeaconConfig::default()
        },
        now,
        UNIX,
    );
    one.set_peers(vec![addr2]);
    two.set_peers(vec![addr1]);
    let (n10, n20) = (addr("198.51.100.10:1"), addr("198.51.100.20:1"));
    one.handle_datagram(now, n10, &discover(10));
    two.handle_datagram(now, n20, &discover(20));
    drain(&mut one, now);
    drain(&mut two, now);

    let tick = now + Duration::from_secs(10);
    assert_eq!(two.poll_timeout(), Some(tick));
    two.handle_timeout(tick);
    let sync = drain(&mut two, tick);
    assert_eq!(sync, vec![(addr1, encode_sync(2, &[20]))]);
    one.handle_datagram(tick, addr2, &sync[0].1);

    let relay = BeaconRepr::Relay {
        sender_id: 10,
        dest_id: 20,
        payload: b"PILS..",
    }
    .to_vec();
    one.handle_datagram(tick, n10, &relay);
    let forwarded = drain(&mut one, tick);
    assert_eq!(forwarded, vec![(addr2, relay.clone())]);
    two.handle_datagram(tick, addr1, &forwarded[0].1);
    assert_eq!(
        drain(&mut two, tick),
        vec![(
            n20,
            BeaconRepr::RelayDeliver {
                sender_id: 10,
                payload: b"PILS.."
            }
            .to_vec()
        )]
    );

    // A forwarded relay for a node the peer does not know is dropped, not bounced back.
    let stray = BeaconRepr::Relay {
        sender_id: 10,
        dest_id: 99,
        payload: b"x",
    }
    .to_vec();
    two.handle_datagram(tick, addr1, &stray);
    assert!(drain(&mut two, tick).is_empty());
    // Sync from a stranger is ignored.
    one.handle_datagram(tick, addr("192.0.2.1:9001"), &encode_sync(3, &[20, 30]));
    one.handle_datagram(
        tick,
        n10,
        &BeaconRepr::Relay {
            sender_id: 10,
            dest_id: 30,
            payload: b"x",
        }
        .to_vec(),
    );
    assert!(drain(&mut one, tick).is_empty());
}

#[test]
fn silent_nodes_expire() {
    let now = epoch();
    let mut server = beacon(now);
    server.handle_datagram(now, addr("198.51.100.1:1"), &discover(5));
    for step in 1..=7 {
        server.handle_timeout(now + Duration::from_secs(30 * step));
    }
    assert_eq!(server.endpoint(5), None);
}

#[test]
fn client_and_server_discover_punch_and_relay() {
    let now = epoch();
    let beacon_addr = addr("10.0.0.1:9001");
    let mut server = beacon(now);
    let key = SigningKey::from_bytes(&[3; 32]);
    server.set_node_key(1, Some(key.verifying_key()));
    let mut client = BeaconClient::new(BeaconClientConfig::new(beacon_addr), now, UNIX, Some(key));
    client.set_node_id(now, 1);
    let nat_addr = addr("198.51.100.1:62000");

    let mut buf = Vec::new();
    while let Some(t) = client.poll_transmit(now, &mut buf) {
        assert_eq!(t.dst, beacon_addr);
        server.handle_datagram(now, nat_addr, &buf[..t.len]);
    }
    for (dst, bytes) in drain(&mut server, now) {
        assert_eq!(dst, nat_addr);
        assert!(client.handle_datagram(now, beacon_addr, &bytes));
    }
    assert_eq!(
        client.poll_event(),
        Some(BeaconEvent::ObservedEndpoint {
            observed: nat_addr,
            previous: None
        })
    );
    assert_eq!(client.observed(), Some(nat_addr));
    assert_eq!(client.poll_timeout(), Some(now + Duration::from_secs(25)));

    // A punch command from the beacon queues three PILP probes to the peer.
    let peer = addr("203.0.113.5:7000");
    assert!(client.handle_datagram(
        now,
        beacon_addr,
        &BeaconRepr::PunchCommand { peer }.to_vec()
    ));
    let probes: Vec<_> = std::iter::from_fn(|| {
        client
            .poll_transmit(now, &mut buf)
            .map(|t| (t.dst, buf[..t.len].to_vec()))
    })
    .collect();
    assert_eq!(probes, vec![(peer, b"PILP".to_vec()); 3]);
    assert_eq!(
        client.poll_event(),
        Some(BeaconEvent::PunchCommand { peer })
    );

    // Beacon messages from anyone else are consumed and ignored.
    assert!(client.handle_datagram(now, peer, &BeaconRepr::PunchCommand { peer }.to_vec()));
    assert!(client.poll_transmit(now, &mut buf).is_none());
    assert!(!client.handle_datagram(now, peer, b"PILT...."));
}

mod untrusted {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Arbitrary datagrams from arbitrary sources never panic the beacon or the client,
        /// and the beacon's send queue stays bounded.
        #[test]
        fn arbitrary_datagrams_never_panic(
            datagrams in proptest::collection::vec(
                (0u8..4, proptest::collection::vec(any::<u8>(), 0..64), 0u8..8),
                0..64,
            ),
        ) {
            let now = epoch();
            let mut server = beacon(now);
            server.set_peers(vec![addr("10.0.0.2:9001")]);
            let beacon_addr = addr("10.0.0.1:9001");
            let config = BeaconClientConfig::new(beacon_addr);
            let mut client = BeaconClient::new(config, now, UNIX, None);
            for (source, mut bytes, kind) in datagrams {
                if let Some(first) = bytes.first_mut() {
                    *first = kind;
                }
                let sources = [
                    addr("198.51.100.1:1"), addr("198.51.100.2:2"), addr("10.0.0.2:9001"),
                    beacon_addr,
                ];
                let src = sources[usize::from(source)];
                server.handle_datagram(now, src, &bytes);
                client.handle_datagram(now, src, &bytes);
            }
            server.handle_timeout(now + Duration::from_secs(30));
            prop_assert!(drain(&mut server, now).len() <= BeaconConfig::default().max_queue);
            let mut buf = Vec::new();
            while client.poll_transmit(now, &mut buf).is_some() {}
            while client.poll_event().is_some() {}
        }
    }
}
