//! Beacon messages: the v0.5 byte vectors for every type, the Discover proof extension, and
//! property tests (arbitrary bytes never panic; parse(emit(x)) == x).

use std::net::SocketAddr;

use pilot_proto::wire::ParseError;
use pilot_proto::wire::beacon::{
    BeaconKind, BeaconPacket, BeaconRepr, DiscoverProof, NodeIdList, encode_sync,
    is_beacon_datagram,
};
use proptest::prelude::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

#[test]
fn v05_vectors_for_every_type() {
    let syn = hex::decode("50494c5411010000").expect("hex");
    let cases: Vec<(BeaconRepr<'_>, &str)> = vec![
        (
            BeaconRepr::Discover {
                node_id: 5,
                proof: None,
            },
            "0100000005",
        ),
        (
            BeaconRepr::DiscoverReply {
                observed: addr("127.0.0.1:24001"),
            },
            "02047f0000015dc1",
        ),
        (
            BeaconRepr::PunchRequest {
                requester_id: 6,
                target_id: 5,
            },
            "030000000600000005",
        ),
        (
            BeaconRepr::PunchCommand {
                peer: addr("127.0.0.1:24002"),
            },
            "04047f0000015dc2",
        ),
        (
            BeaconRepr::Relay {
                sender_id: 10,
                dest_id: 12,
                payload: &syn,
            },
            "050000000a0000000c50494c5411010000",
        ),
        (
            BeaconRepr::RelayDeliver {
                sender_id: 10,
                payload: &syn,
            },
            "060000000a50494c5411010000",
        ),
        (
            BeaconRepr::Sync {
                beacon_id: 2,
                node_ids: NodeIdList::new(&[0, 0, 0, 200]),
            },
            "07000000020001000000c8",
        ),
    ];
    for (repr, expected) in cases {
        assert_eq!(hex::encode(repr.to_vec()), expected, "{:?}", repr.kind());
        let bytes = hex::decode(expected).expect("hex");
        assert_eq!(BeaconRepr::parse_bytes(&bytes).expect("parses"), repr);
        assert!(is_beacon_datagram(&bytes));
    }
}

#[test]
fn ipv6_and_mapped_ipv4_endpoints() {
    let v6 = BeaconRepr::DiscoverReply {
        observed: addr("[2001:db8::1]:9001"),
    };
    assert_eq!(v6.buffer_len(), 20);
    assert_eq!(BeaconRepr::parse_bytes(&v6.to_vec()).expect("parses"), v6);
    let mapped = BeaconRepr::PunchCommand {
        peer: addr("[::ffff:10.0.0.1]:4000"),
    };
    assert_eq!(
        hex::encode(mapped.to_vec()),
        "04040a000001".to_owned() + "0fa0"
    );
}

#[test]
fn discover_proof_is_an_ignorable_suffix() {
    let proof = DiscoverProof {
        unix_time: 1_796_317_551,
        signature: [0xa5; 64],
    };
    let repr = BeaconRepr::Discover {
        node_id: 7,
        proof: Some(proof),
    };
    let bytes = repr.to_vec();
    assert_eq!(bytes.len(), 81);
    assert_eq!(&bytes[..5], &hex::decode("0100000007").expect("hex")[..]);
    assert_eq!(BeaconRepr::parse_bytes(&bytes).expect("parses"), repr);
    // v0.5 ignores bytes after the id, and so do we when they are not a proof.
    let mut junk = hex::decode("0100000007").expect("hex");
    junk.extend_from_slice(b"xyz");
    assert_eq!(
        BeaconRepr::parse_bytes(&junk).expect("parses"),
        BeaconRepr::Discover {
            node_id: 7,
            proof: None
        }
    );
}

#[test]
fn malformed_datagrams_are_typed_errors() {
    assert_eq!(
        BeaconPacket::new_checked(&[][..]).err(),
        Some(ParseError::Truncated { needed: 1, got: 0 })
    );
    assert!(matches!(
        BeaconPacket::new_checked(&[0x01, 0, 0][..]),
        Err(ParseError::Truncated { needed: 5, .. })
    ));
    assert!(matches!(
        BeaconPacket::new_checked(&[0x02, 5, 1, 2, 3, 4, 5, 0, 1][..]),
        Err(ParseError::UnknownValue { .. })
    ));
    assert!(matches!(
        BeaconPacket::new_checked(&[0x09, 0, 0, 0, 0][..]),
        Err(ParseError::UnknownValue { .. })
    ));
    assert!(matches!(
        BeaconPacket::new_checked(&[0x07, 0, 0, 0, 1, 0, 2, 0, 0, 0, 1][..]),
        Err(ParseError::Truncated { .. })
    ));
    assert_eq!(BeaconKind::from(0x0f), BeaconKind::Unknown(0x0f));
}

#[test]
fn sync_helper_lists_ids() {
    let bytes = encode_sync(3, &[1, 2, 3]);
    let BeaconRepr::Sync { node_ids, .. } = BeaconRepr::parse_bytes(&bytes).expect("parses") else {
        panic!("sync")
    };
    assert_eq!(node_ids.iter().collect::<Vec<_>>(), vec![1, 2, 3]);
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u16; 8]>(), any::<u16>())
            .prop_filter("not ipv4-mapped", |(ip, _)| ip[..6]
                != [0, 0, 0, 0, 0, 0xffff])
            .prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        if let Ok(packet) = BeaconPacket::new_checked(&bytes[..]) {
            let _ = (packet.kind(), packet.first_id(), packet.second_id(), packet.endpoint());
            let _ = packet.payload();
            let repr = BeaconRepr::parse(packet);
            let mut out = vec![0u8; repr.buffer_len()];
            prop_assert!(repr.emit(&mut out).is_ok());
        }
    }

    #[test]
    fn endpoints_round_trip(observed in arb_addr(), command in any::<bool>()) {
        let repr = if command {
            BeaconRepr::PunchCommand { peer: observed }
        } else {
            BeaconRepr::DiscoverReply { observed }
        };
        let bytes = repr.to_vec();
        prop_assert_eq!(BeaconRepr::parse_bytes(&bytes).expect("parses"), repr);
    }

    #[test]
    fn ids_and_payloads_round_trip(
        first in any::<u32>(),
        second in any::<u32>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        ts in any::<u64>(),
        with_proof in any::<bool>(),
    ) {
        let proof = with_proof.then_some(DiscoverProof { unix_time: ts, signature: [7; 64] });
        let ids: Vec<u8> = payload.chunks_exact(4).flatten().copied().collect();
        let reprs = [
            BeaconRepr::Discover { node_id: first, proof },
            BeaconRepr::PunchRequest { requester_id: first, target_id: second },
            BeaconRepr::Relay { sender_id: first, dest_id: second, payload: &payload },
            BeaconRepr::RelayDeliver { sender_id: first, payload: &payload },
            BeaconRepr::Sync { beacon_id: first, node_ids: NodeIdList::new(&ids) },
        ];
        for repr in reprs {
            let bytes = repr.to_vec();
            prop_assert_eq!(BeaconRepr::parse_bytes(&bytes).expect("parses"), repr);
        }
    }
}
