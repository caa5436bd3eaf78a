//! Trust store: the handshake transitions over port 444 and the registry relay, the checks on
//! incoming messages, admission for private nodes, and persistence.

use ed25519_dalek::{SigningKey, VerifyingKey};
use pilot_proto::rng::Rng;
use pilot_proto::trust::{
    Arrival, Refusal, Rejection, TrustAction, TrustError, TrustEvent, TrustMode, TrustStore,
    build_message,
};
use pilot_proto::wire::registry::{
    HandshakeRequestEntry, HandshakeResponseEntry, PollHandshakesOk,
};
use pilot_proto::wire::trust::{HandshakeType, TrustMessage};

const NOW: i64 = 1_796_317_584;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn store(id: u32, mode: TrustMode) -> TrustStore {
    TrustStore::new(id, key(id as u8), mode, Rng::from_seed([id as u8; 32]))
}

fn actions(store: &mut TrustStore) -> Vec<TrustAction> {
    std::iter::from_fn(|| store.poll_action()).collect()
}

fn direct(actions: &[TrustAction]) -> Vec<TrustMessage> {
    actions
        .iter()
        .filter_map(|action| match action {
            TrustAction::SendDirect { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn deliver(to: &mut TrustStore, receiver: u32, message: &TrustMessage, sender_key: &VerifyingKey) {
    let arrival = Arrival {
        receiver,
        tunnel_peer: Some(message.node_id),
        registry_key: Some(sender_key),
        unix_now: NOW,
    };
    to.handle_message(message, &arrival);
}

#[test]
fn request_approve_over_port_444() {
    let (mut a, mut b) = (store(1, TrustMode::Compat), store(2, TrustMode::Compat));
    a.request(NOW, 2, "please");
    let sent = direct(&actions(&mut a));
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].kind.clone(), sent[0].justification.as_str()),
        (HandshakeType::Request, "please")
    );
    assert!(a.is_outgoing(2));

    deliver(&mut b, 2, &sent[0], &key(1).verifying_key());
    let b_actions = actions(&mut b);
    assert!(b_actions.contains(&TrustAction::Notify(TrustEvent::Pending { peer: 1 })));
    assert_eq!(b.admit(1), Err(Refusal::Untrusted { peer: 1 }));
    assert_eq!(b.admit_connection(1, 444), Ok(()));

    b.approve(NOW, 1).expect("pending");
    let b_actions = actions(&mut b);
    assert!(b_actions.contains(&TrustAction::ReportTrust { peer: 1 }));
    assert!(b_actions.contains(&TrustAction::RelayResponse {
        peer: 1,
        accept: true
    }));
    let accept = direct(&b_actions);
    deliver(&mut a, 1, &accept[0], &key(2).verifying_key());
    let a_actions = actions(&mut a);
    assert!(a_actions.contains(&TrustAction::Notify(TrustEvent::Established { peer: 2 })));
    assert!(a.is_trusted(2) && b.is_trusted(1));
    assert_eq!((a.admit(2), b.admit(1)), (Ok(()), Ok(())));
    assert_eq!(b.approve(NOW, 1), Err(TrustError::NotPending(1)));
}

#[test]
fn mutual_requests_auto_approve() {
    let (mut a, mut b) = (store(1, TrustMode::Hardened), store(2, TrustMode::Hardened));
    a.request(NOW, 2, "");
    b.request(NOW, 1, "");
    let (to_b, to_a) = (direct(&actions(&mut a)), direct(&actions(&mut b)));
    deliver(&mut b, 2, &to_b[0], &key(1).verifying_key());
    deliver(&mut a, 1, &to_a[0], &key(2).verifying_key());
    let (a_actions, b_actions) = (actions(&mut a), actions(&mut b));
    assert!(a_actions.contains(&TrustAction::Notify(TrustEvent::AutoApproved { peer: 2 })));
    assert!(b_actions.contains(&TrustAction::Notify(TrustEvent::AutoApproved { peer: 1 })));
    assert!(a.is_trusted(2) && b.is_trusted(1));
}

#[test]
fn forged_replayed_stale_and_unsolicited_messages_are_refused() {
    let mut victim = store(2, TrustMode::Compat);
    let registry_key_of_1 = key(1).verifying_key();
    let mut rng = Rng::from_seed([7; 32]);

    // An attacker signs an accept "from node 1" with its own key and embeds that key.
    let forged = build_message(
        HandshakeType::Accept,
        (1, 2),
        &key(66),
        ("", ""),
        NOW,
        TrustMode::Compat,
        &mut rng,
    );
    victim.request(NOW, 1, "");
    actions(&mut victim);
    deliver(&mut victim, 2, &forged, &registry_key_of_1);
    let rejected = actions(&mut victim);
    assert_eq!(
        rejected,
        vec![TrustAction::Notify(TrustEvent::MessageRejected {
            peer: 1,
            reason: Rejection::KeyMismatch
        })]
    );
    assert!(!victim.is_trusted(1));

    // The real accept arrives through another node's tunnel: refused.
    let real = build_message(
        HandshakeType::Accept,
        (1, 2),
        &key(1),
        ("", ""),
        NOW,
        TrustMode::Compat,
        &mut rng,
    );
    let arrival = Arrival {
        receiver: 2,
        tunnel_peer: Some(3),
        registry_key: Some(&registry_key_of_1),
        unix_now: NOW,
    };
    victim.handle_message(&real, &arrival);
    assert!(
        actions(&mut victim).contains(&TrustAction::Notify(TrustEvent::MessageRejected {
            peer: 1,
            reason: Rejection::WrongSender
        }))
    );

    // Through the right tunnel it works once; a replay is refused.
    deliver(&mut victim, 2, &real, &registry_key_of_1);
    assert!(victim.is_trusted(1));
    actions(&mut victim);
    deliver(&mut victim, 2, &real, &registry_key_of_1);
    assert!(
        actions(&mut victim).contains(&TrustAction::Notify(TrustEvent::MessageRejected {
            peer: 1,
            reason: Rejection::Replayed
        }))
    );

    // Stale, and unsolicited accepts, change nothing.
    let old = build_message(
        HandshakeType::Accept,
        (3, 2),
        &key(3),
        ("", ""),
        NOW - 301,
        TrustMode::Compat,
        &mut rng,
    );
    deliver(&mut victim, 2, &old, &key(3).verifying_key());
    let fresh = build_message(
        HandshakeType::Accept,
        (3, 2),
        &key(3),
        ("", ""),
        NOW,
        TrustMode::Compat,
        &mut rng,
    );
    deliver(&mut victim, 2, &fresh, &key(3).verifying_key());
    assert!(!victim.is_trusted(3));
    let events = actions(&mut victim);
    assert!(
        events.contains(&TrustAction::Notify(TrustEvent::MessageRejected {
            peer: 3,
            reason: Rejection::Stale
        }))
    );
}

#[test]
fn captured_go_request_is_believed_in_compat_only_with_the_registry_key() {
    let text = r#"{"type":"handshake_request","node_id":1,"public_key":"JRQBP8m3QfqOjs22TzVT0xExxuzqQto1JrKeMmBS4Jk=","justification":"please trust node-a","signature":"RvrnO3b3LpWNdHGSYzrJcjDLT0S3kjANx8IV0D1ZXaFqxf4yqLbkd5Ey/BmOGV+rGIbSFqCGmMdORRB8ShW+AQ==","reason":"","timestamp":1796317584}"#;
    let message = TrustMessage::parse(text.as_bytes()).expect("capture");
    let registry_key = pilot_proto::trust::key_from_lookup(&message.public_key).expect("key");

    let mut compat = store(2, TrustMode::Compat);
    deliver(&mut compat, 2, &message, &registry_key);
    assert!(actions(&mut compat).contains(&TrustAction::Notify(TrustEvent::Pending { peer: 1 })));

    let mut hardened = store(2, TrustMode::Hardened);
    deliver(&mut hardened, 2, &message, &registry_key);
    assert_eq!(
        actions(&mut hardened),
        vec![TrustAction::Notify(TrustEvent::MessageRejected {
            peer: 1,
            reason: Rejection::Unsigned
        })]
    );

    // Without the registry's key nothing is believed, whatever the message carries.
    let mut unknown = store(2, TrustMode::Compat);
    let arrival = Arrival {
        receiver: 2,
        tunnel_peer: Some(1),
        registry_key: None,
        unix_now: NOW,
    };
    unknown.handle_message(&message, &arrival);
    assert!(
        actions(&mut unknown).contains(&TrustAction::Notify(TrustEvent::MessageRejected {
            peer: 1,
            reason: Rejection::UnknownKey
        }))
    );
}

#[test]
fn revoke_by_peer_drops_trust_and_tunnel() {
    let (mut a, mut b) = (store(1, TrustMode::Compat), store(2, TrustMode::Compat));
    a.request(NOW, 2, "");
    b.request(NOW, 1, "");
    let (to_b, to_a) = (direct(&actions(&mut a)), direct(&actions(&mut b)));
    deliver(&mut b, 2, &to_b[0], &key(1).verifying_key());
    deliver(&mut a, 1, &to_a[0], &key(2).verifying_key());
    actions(&mut a);
    actions(&mut b);

    a.revoke(NOW, 2).expect("trusted");
    let a_actions = actions(&mut a);
    assert!(a_actions.contains(&TrustAction::RevokeTrust { peer: 2 }));
    let position = |wanted: fn(&TrustAction) -> bool| a_actions.iter().position(wanted);
    let sent = position(|a| matches!(a, TrustAction::SendDirect { peer: 2, .. }));
    let dropped = position(|a| matches!(a, TrustAction::DropTunnel { peer: 2 }));
    assert!(
        sent < dropped && sent.is_some(),
        "the revoke leaves before the tunnel drops"
    );
    deliver(&mut b, 2, &direct(&a_actions)[0], &key(1).verifying_key());
    let b_actions = actions(&mut b);
    assert!(b_actions.contains(&TrustAction::DropTunnel { peer: 1 }));
    assert!(b_actions.contains(&TrustAction::Notify(TrustEvent::RevokedByPeer { peer: 1 })));
    assert!(!b.is_trusted(1));
    assert_eq!(a.revoke(NOW, 2), Err(TrustError::NotTrusted(2)));
}

#[test]
fn relayed_requests_and_verdicts() {
    let mut a = store(1, TrustMode::Compat);
    a.request(NOW, 3, "relay please");
    let first = actions(&mut a);
    a.handle_direct_failure(3, &direct(&first)[0]);
    assert_eq!(
        actions(&mut a),
        vec![TrustAction::RelayRequest {
            peer: 3,
            justification: "relay please".into()
        }]
    );

    let polled = PollHandshakesOk {
        requests: vec![HandshakeRequestEntry {
            from_node_id: 9,
            justification: "hi".into(),
            timestamp: NOW,
        }],
        responses: vec![HandshakeResponseEntry {
            from_node_id: 3,
            accept: true,
            timestamp: NOW,
        }],
    };
    a.handle_relayed(NOW, &polled);
    let relayed = actions(&mut a);
    assert!(relayed.contains(&TrustAction::Notify(TrustEvent::Pending { peer: 9 })));
    assert!(relayed.contains(&TrustAction::Notify(TrustEvent::Established { peer: 3 })));
    assert!(a.is_trusted(3));
    assert!(a.pending().any(|p| p.node_id == 9 && p.relayed));

    // A second relayed accept from someone we never asked changes nothing.
    let unsolicited = PollHandshakesOk {
        requests: vec![],
        responses: vec![HandshakeResponseEntry {
            from_node_id: 4,
            accept: true,
            timestamp: NOW,
        }],
    };
    a.handle_relayed(NOW, &unsolicited);
    assert!(!a.is_trusted(4));
}

#[test]
fn store_round_trips_and_public_nodes_admit_everyone() {
    let mut a = store(1, TrustMode::Compat);
    a.request(NOW, 5, "");
    let polled = PollHandshakesOk {
        requests: vec![HandshakeRequestEntry {
            from_node_id: 6,
            justification: "x".into(),
            timestamp: NOW,
        }],
        responses: vec![HandshakeResponseEntry {
            from_node_id: 5,
            accept: true,
            timestamp: NOW,
        }],
    };
    a.handle_relayed(NOW, &polled);
    a.request(NOW, 7, "");
    let bytes = a.encode();
    let b = TrustStore::recover(
        1,
        key(1),
        TrustMode::Compat,
        Rng::from_seed([0; 32]),
        &bytes,
    )
    .expect("recovers");
    assert_eq!(b.encode(), bytes);
    assert!(b.is_trusted(5) && b.is_outgoing(7) && b.pending().count() == 1);
    assert!(
        TrustStore::recover(1, key(1), TrustMode::Compat, Rng::from_seed([0; 32]), b"[]").is_err()
    );

    let mut public = store(8, TrustMode::Compat);
    public.set_private(false);
    assert_eq!(public.admit(1234), Ok(()));
    let refusal = store(8, TrustMode::Compat)
        .admit(1234)
        .expect_err("private");
    assert!(refusal.to_string().contains("does not trust node 1234"));
}
