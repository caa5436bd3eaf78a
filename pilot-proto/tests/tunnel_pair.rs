//! Two tunnels in memory: key exchange, packets both ways, queueing before keys, retries and
//! giving up, re-keying on nonce exhaustion, a peer restart, and v0.5 prefix resets.

mod tunnel_harness;

use std::time::Duration;

use pilot_proto::tunnel::{DropReason, Event, PeerState, TunnelConfig};
use tunnel_harness::{A, B, FakePeer, Outcome, Pair, Side, packet, tunnel_with_fake_peer};

#[test]
fn keys_and_packets_flow_both_ways() {
    let mut pair = Pair::new();
    pair.run();
    assert_eq!(pair.a.tunnel.peer_state(B), Some(PeerState::Keyed));
    assert!(pair.a.events.contains(&Event::PeerKeyed {
        node: B,
        rekeyed: false
    }));
    assert!(pair.b.events.contains(&Event::PeerKeyed {
        node: A,
        rekeyed: false
    }));

    for round in 0..20u8 {
        pair.send_a_to_b(&[round; 100]);
        pair.send_b_to_a(&[round; 1200]);
    }
    pair.run();
    assert_eq!(pair.b.delivered.len(), 20);
    assert_eq!(pair.a.delivered.len(), 20);
    for (round, (node, bytes, encrypted)) in pair.b.delivered.iter().enumerate() {
        assert_eq!((*node, *encrypted), (A, true));
        assert_eq!(bytes, &packet(A, B, &[round as u8; 100]));
    }
    assert_eq!(pair.a.delivered[19].1, packet(B, A, &[19; 1200]));
    assert_eq!(pair.a.tunnel.peer_state(B), Some(PeerState::Confirmed));
    // Both sides sent a PILA at add_peer and answered the other's: each sees one redundant
    // PILA, counted and ignored. Nothing else is dropped.
    for side in [&pair.a, &pair.b] {
        let stats = side.tunnel.stats();
        assert_eq!(
            stats.dropped(DropReason::RepeatedKeyExchange),
            1,
            "{stats:?}"
        );
        assert_eq!(stats.total_dropped(), 1, "{stats:?}");
    }
    assert_eq!(
        pair.a.tunnel.poll_timeout(),
        None,
        "retries must stop once confirmed"
    );
}

#[test]
fn packets_sent_before_keys_are_queued_then_sealed_never_in_clear() {
    let mut pair = Pair::new();
    pair.send_a_to_b(b"early one");
    pair.send_a_to_b(b"early two");
    pair.run();
    let payloads: Vec<_> = pair.b.delivered.iter().map(|d| d.1.clone()).collect();
    assert_eq!(
        payloads,
        [packet(A, B, b"early one"), packet(A, B, b"early two")]
    );
    assert!(pair.b.delivered.iter().all(|d| d.2));
    assert!(
        pair.log.iter().all(|d| !d.bytes.starts_with(b"PILT")),
        "plaintext on the wire"
    );
}

#[test]
fn unknown_sender_is_reported_then_keyed_after_add_peer() {
    let mut pair = Pair::new();
    pair.b.tunnel.remove_peer(pair.now, A);
    pair.run();
    let unknown = Event::FrameDropped {
        from: pair.a.addr,
        node: Some(A),
        reason: DropReason::UnknownPeer,
    };
    assert!(pair.b.events.contains(&unknown));

    let key = pair.a.identity.verifying_key();
    pair.b
        .tunnel
        .add_peer(pair.now, A, pair.a.addr, Some(key))
        .unwrap();
    pair.run();
    pair.assert_working();
}

#[test]
fn lost_key_exchange_is_retried_with_backoff_then_abandoned() {
    let mut pair = Pair::new();
    pair.send_a_to_b(b"doomed");
    // B is unreachable: drop everything A sends.
    let mut sent = pair.a.transmits(pair.now).len();
    let mut gaps = Vec::new();
    let mut last = pair.now;
    for _ in 0..20 {
        let Some(deadline) = pair.a.tunnel.poll_timeout() else {
            break;
        };
        gaps.push(deadline - last);
        last = deadline;
        pair.now = deadline;
        pair.a.tunnel.handle_timeout(pair.now);
        sent += pair.a.transmits(pair.now).len();
    }
    let secs: Vec<u64> = gaps.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 32]);
    assert_eq!(sent, 6, "one PILA per attempt");
    assert!(pair.a.events.contains(&Event::KeyExchangeFailed {
        node: B,
        dropped_packets: 1
    }));

    // A later send restarts the exchange, and this time B answers.
    pair.send_a_to_b(b"second try");
    pair.run();
    assert_eq!(
        pair.b.delivered.last().unwrap().1,
        packet(A, B, b"second try")
    );
}

#[test]
fn first_pila_lost_recovers_through_retry() {
    let mut pair = Pair::new();
    pair.a.transmits(pair.now); // A's first PILA is lost.
    pair.run();
    pair.advance(Duration::from_secs(1));
    pair.run();
    pair.assert_working();
}

#[test]
fn nonce_exhaustion_rekeys_instead_of_reusing_nonces() {
    let mut config = TunnelConfig::default();
    config.nonce_limit = 4;
    let mut pair = Pair::with_config(config);
    pair.run();
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..30u8 {
        pair.send_a_to_b(&[round; 8]);
        pair.send_b_to_a(&[round; 8]);
        pair.run();
    }
    assert_eq!(pair.b.delivered.len(), 30);
    assert_eq!(pair.a.delivered.len(), 30);
    assert!(
        pair.a.tunnel.stats().rekeys >= 5,
        "{:?}",
        pair.a.tunnel.stats()
    );
    for datagram in pair.log.iter().filter(|d| d.bytes.starts_with(b"PILS")) {
        let nonce = &datagram.bytes[8..20];
        assert!(u64::from_be_bytes(nonce[4..].try_into().unwrap()) <= 4);
        assert!(seen.insert((
            datagram.src,
            datagram.bytes[8..20].to_vec(),
            rekey_epoch(&pair, datagram)
        )));
    }
}

/// Frames under different keys may share a nonce legitimately; count PILA frames sent before a
/// frame by the same source to tell key epochs apart.
fn rekey_epoch(pair: &Pair, frame: &tunnel_harness::Datagram) -> usize {
    let position = pair.log.iter().position(|d| d == frame).unwrap();
    pair.log[..position]
        .iter()
        .filter(|d| d.bytes.starts_with(b"PILA"))
        .count()
}

#[test]
fn peer_restart_with_new_key_replaces_the_session() {
    let mut pair = Pair::established();
    // B restarts: same identity and address, fresh tunnel and X25519 keys.
    let mut restarted = Side::with_rng_seed(B, 2, 222, TunnelConfig::default());
    let key = pair.a.identity.verifying_key();
    restarted
        .tunnel
        .add_peer(pair.now, A, pair.a.addr, Some(key))
        .unwrap();
    pair.b = restarted;
    pair.run();
    assert!(pair.a.events.contains(&Event::PeerKeyed {
        node: B,
        rekeyed: true
    }));
    pair.assert_working();
    assert_eq!(pair.a.tunnel.peer_state(B), Some(PeerState::Confirmed));
}

#[test]
fn v05_prefix_reset_after_our_pila_is_accepted_without_false_replays() {
    let (mut side, mut fake, now) = tunnel_with_fake_peer(TunnelConfig::default());
    let first_prefix_frames: Vec<_> = (0..3).map(|i| fake.seal(&packet(B, A, &[i; 4]))).collect();
    // Go picks a new prefix and restarts at counter 1 whenever it receives our PILA.
    fake.reset_prefix([1, 2, 3, 4]);
    let fresh = fake.seal(&packet(B, A, b"after reset"));
    let outcome = side.receive(now, fake.addr, &fresh);
    assert_eq!(
        outcome,
        Outcome::Packet {
            node: B,
            encrypted: true
        }
    );
    // Frames of the previous prefix still in flight are accepted once.
    for frame in &first_prefix_frames {
        assert!(matches!(
            side.receive(now, fake.addr, frame),
            Outcome::Packet { .. }
        ));
        assert_eq!(
            side.receive(now, fake.addr, frame),
            Outcome::Dropped(DropReason::Replayed)
        );
    }
    assert_eq!(side.tunnel.stats().dropped(DropReason::Replayed), 3);
}

#[test]
fn retired_prefix_frames_are_refused() {
    let (mut side, mut fake, now) = tunnel_with_fake_peer(TunnelConfig::default());
    let old = fake.seal(&packet(B, A, b"old prefix"));
    for prefix in [[1, 1, 1, 1], [2, 2, 2, 2]] {
        fake.reset_prefix(prefix);
        let frame = fake.seal(&packet(B, A, b"x"));
        assert!(matches!(
            side.receive(now, fake.addr, &frame),
            Outcome::Packet { .. }
        ));
    }
    assert_eq!(
        side.receive(now, fake.addr, &old),
        Outcome::Dropped(DropReason::StalePrefix)
    );
}

#[test]
fn tunnel_frames_open_at_a_v05_style_peer() {
    let (mut side, fake, now) = tunnel_with_fake_peer(TunnelConfig::default());
    side.tunnel
        .send(now, B, &packet(A, B, b"to the fake peer"))
        .unwrap();
    let frames = side.transmits(now);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        fake.open(&frames[0].bytes),
        packet(A, B, b"to the fake peer")
    );
    // The first counter is 1, as v0.5 does.
    assert_eq!(frames[0].bytes[12..20], 1u64.to_be_bytes());
}

#[test]
fn encryption_off_speaks_plaintext() {
    let mut config = TunnelConfig::default();
    config.encrypt = false;
    let mut pair = Pair::with_config(config);
    pair.send_a_to_b(b"clear");
    pair.run();
    assert_eq!(pair.b.delivered, [(A, packet(A, B, b"clear"), false)]);
    assert!(pair.log.iter().all(|d| d.bytes.starts_with(b"PILT")));
    let fake = FakePeer::new(B, 9);
    let outcome = pair.a.receive(pair.now, fake.addr, &fake.pila());
    assert_eq!(outcome, Outcome::Dropped(DropReason::EncryptionDisabled));
}

#[test]
fn same_seed_same_wire_bytes() {
    let run = || {
        let mut pair = Pair::new();
        pair.send_a_to_b(b"deterministic");
        pair.run();
        pair.log.iter().map(|d| d.bytes.clone()).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn keyed_but_silent_peer_stops_retries_without_failing() {
    let mut pair = Pair::new();
    pair.run();
    assert_eq!(pair.a.tunnel.peer_state(B), Some(PeerState::Keyed));
    // B never sends A anything; A's retries go unanswered.
    for _ in 0..20 {
        let Some(deadline) = pair.a.tunnel.poll_timeout() else {
            break;
        };
        pair.now = deadline;
        pair.a.tunnel.handle_timeout(pair.now);
        pair.a.transmits(pair.now);
    }
    assert_eq!(pair.a.tunnel.poll_timeout(), None);
    assert!(
        !pair
            .a
            .events
            .iter()
            .any(|e| matches!(e, Event::KeyExchangeFailed { .. }))
    );
    pair.send_a_to_b(b"still deliverable");
    pair.run();
    assert_eq!(
        pair.b.delivered.last().unwrap().1,
        packet(A, B, b"still deliverable")
    );
}
