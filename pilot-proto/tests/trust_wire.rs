//! Trust message wire tests: hardened fields are optional suffixes, transcripts bind every
//! field, and arbitrary input never panics.

use pilot_proto::wire::registry::Base64;
use pilot_proto::wire::trust::{HandshakeType, MAX_TRUST_MESSAGE, TrustMessage};
use proptest::prelude::*;

fn sample() -> TrustMessage {
    TrustMessage {
        kind: HandshakeType::Request,
        node_id: 1,
        public_key: Base64(vec![1; 32]),
        justification: "hi".into(),
        signature: Base64(vec![2; 64]),
        reason: String::new(),
        timestamp: 1_796_317_584,
        nonce: Some(Base64(vec![3; 16])),
        auth_sig: Some(Base64(vec![4; 64])),
    }
}

#[test]
fn hardened_fields_follow_the_v05_fields() {
    let text = String::from_utf8(sample().to_json()).expect("utf-8");
    let order = [
        "\"type\"",
        "\"node_id\"",
        "\"public_key\"",
        "\"justification\"",
        "\"signature\"",
        "\"reason\"",
        "\"timestamp\"",
        "\"nonce\"",
        "\"auth_sig\"",
    ];
    let positions: Vec<usize> = order.iter().map(|key| text.find(key).expect(key)).collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
}

#[test]
fn transcript_binds_type_receiver_time_and_text() {
    let base = sample();
    let transcript = base.auth_transcript(2);
    assert_ne!(transcript, base.auth_transcript(3));
    let mut changed = base.clone();
    changed.kind = HandshakeType::Accept;
    assert_ne!(transcript, changed.auth_transcript(2));
    let mut changed = base.clone();
    changed.timestamp += 1;
    assert_ne!(transcript, changed.auth_transcript(2));
    let mut changed = base;
    changed.justification.push('!');
    assert_ne!(transcript, changed.auth_transcript(2));
}

#[test]
fn oversize_and_unknown_types() {
    assert!(TrustMessage::parse(&vec![b' '; MAX_TRUST_MESSAGE + 1]).is_err());
    let odd = TrustMessage::parse(br#"{"type":"handshake_hug","node_id":3}"#).expect("parses");
    assert_eq!(odd.kind, HandshakeType::Other("handshake_hug".into()));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = TrustMessage::parse(&bytes);
    }

    #[test]
    fn messages_round_trip(
        node_id in any::<u32>(),
        justification in "[ -~]{0,40}",
        reason in "[ -~]{0,20}",
        timestamp in any::<i64>(),
        kind in 0u8..5,
    ) {
        let kind = match kind {
            0 => HandshakeType::Request,
            1 => HandshakeType::Accept,
            2 => HandshakeType::Reject,
            3 => HandshakeType::Revoke,
            _ => HandshakeType::Other("x".into()),
        };
        let message = TrustMessage { kind, node_id, justification, reason, timestamp, ..sample() };
        prop_assert_eq!(TrustMessage::parse(&message.to_json()).expect("parses"), message);
    }
}
