//! Every captured port-444 trust message parses, re-emits byte-identically (Go struct order) and
//! carries a v0.5 signature that verifies over `handshake:<sender>:<receiver>`.

use ed25519_dalek::{Signature, VerifyingKey};
use pilot_proto::wire::trust::{HandshakeType, TrustMessage};

/// (capture id, receiver node id, exact JSON text sent).
const MESSAGES: &[(&str, u32, &str)] = &[
    (
        "tr-0001",
        2,
        r#"{"type":"handshake_request","node_id":1,"public_key":"JRQBP8m3QfqOjs22TzVT0xExxuzqQto1JrKeMmBS4Jk=","justification":"please trust node-a","signature":"RvrnO3b3LpWNdHGSYzrJcjDLT0S3kjANx8IV0D1ZXaFqxf4yqLbkd5Ey/BmOGV+rGIbSFqCGmMdORRB8ShW+AQ==","reason":"","timestamp":1796317584}"#,
    ),
    (
        "tr-0002",
        1,
        r#"{"type":"handshake_accept","node_id":2,"public_key":"EOC8Puhs6/uxw0uBbBlVmqjg1VjLa+WIv/hH0xnb+a4=","justification":"","signature":"IMnZvmQ6R8dS2zw1Y+Xd0k0CAJcy/cBGkK8r0LQ9xWZhmFBHBHF6D+yvG5GWypWN7sreRuPWW6IXFEGL7oyuBA==","reason":"","timestamp":1796317585}"#,
    ),
    (
        "tr-0003",
        2,
        r#"{"type":"handshake_revoke","node_id":1,"public_key":"JRQBP8m3QfqOjs22TzVT0xExxuzqQto1JrKeMmBS4Jk=","justification":"","signature":"RvrnO3b3LpWNdHGSYzrJcjDLT0S3kjANx8IV0D1ZXaFqxf4yqLbkd5Ey/BmOGV+rGIbSFqCGmMdORRB8ShW+AQ==","reason":"trust revoked","timestamp":1796317587}"#,
    ),
    (
        "tr-0004",
        2,
        r#"{"type":"handshake_request","node_id":1,"public_key":"JRQBP8m3QfqOjs22TzVT0xExxuzqQto1JrKeMmBS4Jk=","justification":"second request","signature":"RvrnO3b3LpWNdHGSYzrJcjDLT0S3kjANx8IV0D1ZXaFqxf4yqLbkd5Ey/BmOGV+rGIbSFqCGmMdORRB8ShW+AQ==","reason":"","timestamp":1796317596}"#,
    ),
    (
        "tr-0008",
        2,
        r#"{"type":"handshake_reject","node_id":3,"public_key":"ppwg9BmKUNzYuQOm7wpxLrmcBmcLBPz+HA8f8ZCP9qI=","justification":"","signature":"/XXxwGQSJK1MvLx5r2RIo9l3b1A5Ga0CZi5t9lYJyrxo50ifl9VXFkAxWn31aMShNRzKY8PKMC64iW0g2bEBCg==","reason":"no thanks","timestamp":1796317607}"#,
    ),
];

#[test]
fn captured_messages_round_trip_byte_identically() {
    for (id, _, text) in MESSAGES {
        let message = TrustMessage::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(
            !matches!(message.kind, HandshakeType::Other(_)),
            "{id}: known type"
        );
        assert_eq!(
            String::from_utf8(message.to_json()).expect("utf-8"),
            *text,
            "{id}"
        );
    }
}

#[test]
fn captured_signatures_verify_over_the_v05_challenge() {
    for (id, receiver, text) in MESSAGES {
        let message = TrustMessage::parse(text.as_bytes()).expect("parses");
        let key = VerifyingKey::from_bytes(&message.public_key.to_array().expect("32 bytes"))
            .expect("valid key");
        let signature = Signature::from_bytes(&message.signature.to_array().expect("64 bytes"));
        let challenge = TrustMessage::challenge(message.node_id, *receiver);
        assert!(
            key.verify_strict(challenge.as_bytes(), &signature).is_ok(),
            "{id}"
        );
        let wrong = TrustMessage::challenge(message.node_id, receiver + 1);
        assert!(
            key.verify_strict(wrong.as_bytes(), &signature).is_err(),
            "{id}"
        );
    }
}
