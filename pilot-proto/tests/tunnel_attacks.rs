//! Every attack from the tunnel's threat list, each as its own test: the frame is dropped,
//! counted under its own reason, and the session keeps working afterwards.

mod tunnel_harness;

use std::net::SocketAddr;

use pilot_proto::identity::Identity;
use pilot_proto::tunnel::{DropReason, Event, TunnelConfig, TunnelStats};
use pilot_proto::wire::tunnel::Nonce;
use tunnel_harness::{A, B, Datagram, FakePeer, Outcome, Pair, packet, tunnel_with_fake_peer};

fn attacker() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 66], 6666))
}

/// Asserts that exactly one more frame was dropped, and for `reason`.
fn assert_counted_once(before: &TunnelStats, after: &TunnelStats, reason: DropReason) {
    assert_eq!(
        after.dropped(reason) - before.dropped(reason),
        1,
        "{after:?}"
    );
    assert_eq!(
        after.total_dropped() - before.total_dropped(),
        1,
        "{after:?}"
    );
}

#[test]
fn tampered_ciphertext_is_dropped_and_the_genuine_frame_still_opens() {
    let mut pair = Pair::established();
    let before = pair.b.tunnel.stats().clone();
    let genuine = pair.intercept_a_to_b(b"tamper target");
    let mut tampered = genuine.clone();
    let last = tampered.bytes.len() - 20;
    tampered.bytes[last] ^= 0x80;

    assert_eq!(
        pair.deliver(&tampered),
        Some(Outcome::Dropped(DropReason::DecryptFailed))
    );
    assert_eq!(
        pair.deliver(&genuine),
        Some(Outcome::Packet {
            node: A,
            encrypted: true
        })
    );
    assert_counted_once(&before, pair.b.tunnel.stats(), DropReason::DecryptFailed);
    pair.assert_working();
}

#[test]
fn replayed_frame_is_dropped() {
    let mut pair = Pair::established();
    let before = pair.b.tunnel.stats().clone();
    let frame = pair.intercept_a_to_b(b"once only");
    assert!(matches!(pair.deliver(&frame), Some(Outcome::Packet { .. })));
    let replay = Datagram {
        src: attacker(),
        ..frame
    };
    assert_eq!(
        pair.deliver(&replay),
        Some(Outcome::Dropped(DropReason::Replayed))
    );
    assert_counted_once(&before, pair.b.tunnel.stats(), DropReason::Replayed);
    assert_eq!(
        pair.b.tunnel.endpoint(A),
        Some(pair.a.addr),
        "a replay must not move the endpoint"
    );
    pair.assert_working();
}

#[test]
fn frame_older_than_the_window_is_dropped() {
    let mut pair = Pair::established();
    let before = pair.b.tunnel.stats().clone();
    let old = pair.intercept_a_to_b(b"held back");
    for i in 0..300u16 {
        pair.send_a_to_b(&i.to_be_bytes());
    }
    pair.run();
    assert_eq!(
        pair.deliver(&old),
        Some(Outcome::Dropped(DropReason::TooOld))
    );
    assert_counted_once(&before, pair.b.tunnel.stats(), DropReason::TooOld);
    pair.assert_working();
}

#[test]
fn reordered_frames_inside_the_window_are_all_accepted() {
    let mut pair = Pair::established();
    let before = pair.b.tunnel.stats().total_dropped();
    let frames: Vec<_> = (0..50u8).map(|i| pair.intercept_a_to_b(&[i])).collect();
    for frame in frames.iter().rev() {
        assert_eq!(
            pair.deliver(frame),
            Some(Outcome::Packet {
                node: A,
                encrypted: true
            })
        );
    }
    assert_eq!(pair.b.tunnel.stats().total_dropped(), before);
    // Delivered in reverse order, each exactly once.
    let delivered: Vec<u8> = pair.b.delivered.iter().map(|d| d.1[34]).collect();
    assert_eq!(delivered, (0..50u8).rev().collect::<Vec<_>>());
    pair.assert_working();
}

#[test]
fn forged_frame_with_huge_counter_does_not_move_the_window() {
    let mut pair = Pair::established();
    let before = pair.b.tunnel.stats().clone();
    let mut forged = pair.intercept_a_to_b(b"template");
    forged.bytes[12..20].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(
        pair.deliver(&forged),
        Some(Outcome::Dropped(DropReason::DecryptFailed))
    );
    assert_counted_once(&before, pair.b.tunnel.stats(), DropReason::DecryptFailed);
    // v0.5 would now call every genuine frame "too old"; here they still open.
    pair.assert_working();
}

#[test]
fn replayed_pila_neither_resets_replay_state_nor_moves_the_endpoint() {
    let mut pair = Pair::established();
    let before = pair.a.tunnel.stats().clone();
    let b_pila = pair
        .log
        .iter()
        .find(|d| d.src == pair.b.addr && d.bytes.starts_with(b"PILA"))
        .unwrap()
        .clone();
    let old_frame = pair
        .log
        .iter()
        .rev()
        .find(|d| d.src == pair.b.addr && d.bytes.starts_with(b"PILS"))
        .unwrap()
        .clone();

    let replayed_pila = Datagram {
        src: attacker(),
        ..b_pila
    };
    assert_eq!(
        pair.deliver(&replayed_pila),
        Some(Outcome::Dropped(DropReason::RepeatedKeyExchange))
    );
    assert_eq!(pair.a.tunnel.endpoint(B), Some(pair.b.addr));
    assert!(
        !pair
            .a
            .events
            .iter()
            .any(|e| matches!(e, Event::EndpointChanged { .. }))
    );

    assert_counted_once(
        &before,
        pair.a.tunnel.stats(),
        DropReason::RepeatedKeyExchange,
    );

    // The replay window survived: an old frame is still a replay.
    assert_eq!(
        pair.deliver(&old_frame),
        Some(Outcome::Dropped(DropReason::Replayed))
    );
    pair.assert_working();
}

#[test]
fn pila_with_bad_signature_is_dropped() {
    let mut pair = Pair::established();
    let before = pair.b.tunnel.stats().clone();
    let fake = FakePeer::new(A, 1); // claims to be A with A's real identity...
    let mut pila = fake.pila();
    pila[100] ^= 0x01; // ...but the signature is damaged.
    let outcome = pair.b.receive(pair.now, attacker(), &pila);
    assert_eq!(outcome, Outcome::Dropped(DropReason::BadSignature));
    assert_counted_once(&before, pair.b.tunnel.stats(), DropReason::BadSignature);
    pair.assert_working();
}

#[test]
fn pila_signed_by_the_wrong_key_is_dropped() {
    let mut pair = Pair::established();
    let before = pair.b.tunnel.stats().clone();
    let mallory = Identity::from_seed(&[0x66; 32]);
    let fake = FakePeer::new(A, 1);
    // Mallory's own key in the frame: not A's registered key.
    let own_key = fake.pila_signed_by(&mallory, mallory.public_key_bytes());
    assert_eq!(
        pair.b.receive(pair.now, attacker(), &own_key),
        Outcome::Dropped(DropReason::WrongSigningKey)
    );
    assert_counted_once(&before, pair.b.tunnel.stats(), DropReason::WrongSigningKey);
    let before = pair.b.tunnel.stats().clone();
    // A's registered key in the frame, but Mallory's signature.
    let claimed = fake.pila_signed_by(&mallory, pair.a.identity.public_key_bytes());
    assert_eq!(
        pair.b.receive(pair.now, attacker(), &claimed),
        Outcome::Dropped(DropReason::BadSignature)
    );
    assert_counted_once(&before, pair.b.tunnel.stats(), DropReason::BadSignature);
    pair.assert_working();
}

#[test]
fn plaintext_after_keying_is_dropped_unless_the_compat_switch_is_on() {
    let mut pair = Pair::established();
    let before = pair.b.tunnel.stats().clone();
    let mut injected = b"PILT".to_vec();
    injected.extend_from_slice(&packet(A, B, b"rm -rf"));
    let outcome = pair.b.receive(pair.now, attacker(), &injected);
    assert_eq!(outcome, Outcome::Dropped(DropReason::PlaintextAfterKeying));
    assert_counted_once(
        &before,
        pair.b.tunnel.stats(),
        DropReason::PlaintextAfterKeying,
    );
    pair.assert_working();

    let mut config = TunnelConfig::default();
    config.accept_plaintext_after_keying = true;
    let mut compat = Pair::with_config(config);
    compat.run();
    let outcome = compat.b.receive(compat.now, compat.a.addr, &injected);
    assert_eq!(
        outcome,
        Outcome::Packet {
            node: A,
            encrypted: false
        }
    );
}

#[test]
fn pilk_from_a_node_with_a_registered_key_is_refused() {
    let mut pair = Pair::established();
    let before = pair.b.tunnel.stats().clone();
    let fake = FakePeer::new(A, 1);
    let outcome = pair
        .b
        .receive(pair.now, attacker(), &fake.pilk(fake.secret.public_key()));
    assert_eq!(outcome, Outcome::Dropped(DropReason::AnonymousKeyRefused));
    assert_counted_once(
        &before,
        pair.b.tunnel.stats(),
        DropReason::AnonymousKeyRefused,
    );
    pair.assert_working();
}

#[test]
fn reflected_frame_is_dropped() {
    let mut pair = Pair::established();
    let before = pair.a.tunnel.stats().clone();
    let mut frame = pair.intercept_a_to_b(b"mirror");
    // Same key both directions in v0.5: send A's own frame back to A in B's name.
    frame.bytes[4..8].copy_from_slice(&B.to_be_bytes());
    let outcome = pair.a.receive(pair.now, attacker(), &frame.bytes);
    assert_eq!(outcome, Outcome::Dropped(DropReason::Reflected));
    assert_counted_once(&before, pair.a.tunnel.stats(), DropReason::Reflected);
    pair.assert_working();
}

#[test]
fn inner_source_must_match_the_authenticated_sender() {
    let (mut side, mut fake, now) = tunnel_with_fake_peer(TunnelConfig::default());
    let before = side.tunnel.stats().clone();
    let spoofed = fake.seal(&packet(77, A, b"I am node 77"));
    let outcome = side.receive(now, fake.addr, &spoofed);
    assert_eq!(outcome, Outcome::Dropped(DropReason::SourceMismatch));
    assert_counted_once(&before, side.tunnel.stats(), DropReason::SourceMismatch);
    let genuine = fake.seal(&packet(B, A, b"I am B"));
    assert!(matches!(
        side.receive(now, fake.addr, &genuine),
        Outcome::Packet { node: B, .. }
    ));
}

#[test]
fn unknown_sender_and_unknown_magic_are_dropped() {
    let mut pair = Pair::established();
    let mut frame = pair.intercept_a_to_b(b"x");
    frame.bytes[4..8].copy_from_slice(&77u32.to_be_bytes());
    assert_eq!(
        pair.deliver(&frame),
        Some(Outcome::Dropped(DropReason::UnknownPeer))
    );
    let outcome = pair.b.receive(pair.now, attacker(), b"PILZ and more");
    assert_eq!(outcome, Outcome::Dropped(DropReason::UnknownFrame));
    assert_eq!(
        pair.b.receive(pair.now, attacker(), &[0x01, 0, 0, 0, 5]),
        Outcome::NotTunnel
    );
    assert_eq!(
        pair.b.receive(pair.now, attacker(), b"PILS"),
        Outcome::Dropped(DropReason::Malformed)
    );
    pair.assert_working();
}

#[test]
fn low_order_key_is_refused() {
    let (mut side, fake, now) = tunnel_with_fake_peer(TunnelConfig::default());
    let mut anonymous = FakePeer::new(5, 12);
    anonymous.node = 5;
    side.tunnel.add_peer(now, 5, anonymous.addr, None).unwrap();
    let before = side.tunnel.stats().clone();
    let outcome = side.receive(now, anonymous.addr, &anonymous.pilk([0; 32]));
    assert_eq!(outcome, Outcome::Dropped(DropReason::LowOrderKey));
    assert_counted_once(&before, side.tunnel.stats(), DropReason::LowOrderKey);
    // An ordinary anonymous exchange with the same node works (v0.5 PILK for unregistered).
    let outcome = side.receive(
        now,
        anonymous.addr,
        &anonymous.pilk(anonymous.secret.public_key()),
    );
    assert_eq!(outcome, Outcome::Consumed);
    drop(fake);
}

#[test]
fn pila_of_a_replaced_key_is_stale() {
    let (mut side, mut fake, now) = tunnel_with_fake_peer(TunnelConfig::default());
    let old_pila = fake.pila();
    // The fake peer restarts with a new X25519 key and re-keys.
    fake.secret = pilot_proto::crypto::X25519Secret::from_bytes([0x42; 32]);
    assert_eq!(
        side.receive(now, fake.addr, &fake.pila()),
        Outcome::Consumed
    );
    let reply = side.transmits(now);
    fake.learn(
        &reply
            .iter()
            .find(|d| d.bytes.starts_with(b"PILA"))
            .unwrap()
            .bytes,
    );
    fake.reset_prefix([7, 7, 7, 7]);
    let frame = fake.seal(&packet(B, A, b"new key"));
    assert!(matches!(
        side.receive(now, fake.addr, &frame),
        Outcome::Packet { .. }
    ));

    let before = side.tunnel.stats().clone();
    assert_eq!(
        side.receive(now, attacker(), &old_pila),
        Outcome::Dropped(DropReason::StaleKeyExchange)
    );
    assert_counted_once(&before, side.tunnel.stats(), DropReason::StaleKeyExchange);
    let frame = fake.seal(&packet(B, A, b"still fine"));
    assert!(matches!(
        side.receive(now, fake.addr, &frame),
        Outcome::Packet { .. }
    ));
}

#[test]
fn endpoint_moves_only_on_fresh_authenticated_traffic() {
    let (mut side, mut fake, now) = tunnel_with_fake_peer(TunnelConfig::default());
    let reordered = fake.seal(&packet(B, A, b"older"));
    let newest = fake.seal(&packet(B, A, b"newer"));
    let roamed = SocketAddr::from(([127, 0, 0, 9], 5000));
    assert!(matches!(
        side.receive(now, roamed, &newest),
        Outcome::Packet { .. }
    ));
    assert_eq!(side.tunnel.endpoint(B), Some(roamed));
    assert!(side.events.contains(&Event::EndpointChanged {
        node: B,
        old: fake.addr,
        new: roamed
    }));
    // A reordered (older) frame from yet another address is delivered but does not move it.
    assert!(matches!(
        side.receive(now, attacker(), &reordered),
        Outcome::Packet { .. }
    ));
    assert_eq!(side.tunnel.endpoint(B), Some(roamed));
    // A forged frame from the attacker does not either.
    let forged = fake.seal_with(
        Nonce {
            prefix: fake.prefix,
            counter: 99,
        },
        b"short",
    );
    let outcome = side.receive(now, attacker(), &forged);
    assert_eq!(outcome, Outcome::Dropped(DropReason::Malformed));
    assert_eq!(side.tunnel.endpoint(B), Some(roamed));
}

#[test]
fn pils_before_any_session_nudges_a_key_exchange() {
    let mut pair = Pair::established();
    let frame = pair.intercept_a_to_b(b"for the old b");
    // B restarts and has no session with A yet; A's frame cannot be opened.
    let now = pair.now;
    pair.b.tunnel = pilot_proto::tunnel::Tunnel::new(
        TunnelConfig::default(),
        pair.b.identity.clone(),
        B,
        pilot_proto::rng::Rng::from_seed([77; 32]),
    );
    pair.b
        .tunnel
        .add_peer(now, A, pair.a.addr, Some(pair.a.identity.verifying_key()))
        .unwrap();
    pair.b.transmits(now); // Its first PILA is lost.
    pair.now += std::time::Duration::from_secs(2);
    assert_eq!(
        pair.deliver(&frame),
        Some(Outcome::Dropped(DropReason::NoSession))
    );
    let nudge = pair.b.transmits(pair.now);
    assert!(
        nudge
            .iter()
            .any(|d| d.bytes.starts_with(b"PILA") && d.dst == pair.a.addr)
    );
    for datagram in nudge {
        pair.deliver(&datagram);
    }
    pair.run();
    pair.assert_working();
}

#[test]
fn oversized_and_undersized_sends_are_refused() {
    let mut pair = Pair::established();
    let now = pair.now;
    assert!(pair.a.tunnel.send(now, B, &[0; 10]).is_err());
    assert!(pair.a.tunnel.send(now, B, &vec![0; 70_000]).is_err());
    assert!(pair.a.tunnel.send(now, 99, &packet(A, 99, b"")).is_err());
    pair.assert_working();
}
