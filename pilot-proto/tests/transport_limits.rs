//! Bounds and policies: SYN floods, the node-wide buffer budget, Nagle and its off switch,
//! keepalives, and unpredictable initial sequence numbers.

mod transport_harness;

use std::time::Duration;

use pilot_proto::transport::{ConnState, Transport, TransportConfig};
use pilot_proto::wire::addr::{Addr, AddrPort};
use pilot_proto::wire::packet::{Flags, PacketRepr, Protocol, VERSION};
use transport_harness::{
    LinkConfig, Pair, SERVER_PORT, Side, epoch, incoming, payload, read_all, rng, seed, write_some,
};

fn syn(src: Addr, src_port: u16, seq: u32) -> Vec<u8> {
    let repr = PacketRepr {
        version: VERSION,
        flags: Flags::SYN,
        protocol: Protocol::Stream,
        src,
        dst: Addr::new(0, 2),
        src_port,
        dst_port: SERVER_PORT,
        seq,
        ack: 0,
        window: 512,
        payload: &[],
    };
    let mut buf = vec![0; repr.buffer_len()];
    repr.emit(&mut buf).expect("emit");
    buf
}

/// Thousands of SYNs that never complete the handshake hold at most the accept backlog, and
/// the connection limit answers the rest with resets.
#[test]
fn syn_flood_is_bounded() {
    let seed = seed("syn_flood_is_bounded", 51);
    let mut config = TransportConfig::default();
    config.accept_backlog = 16;
    let mut us = Transport::new(Addr::new(0, 2), config, rng(seed, 1));
    us.listen(SERVER_PORT).expect("listen");
    let now = epoch();
    let mut buf = Vec::new();
    for i in 0..5000u32 {
        let bytes = syn(Addr::new(0, 100 + i % 50), 40_000 + (i % 20_000) as u16, i);
        us.handle_packet(now, &PacketRepr::decode(&bytes).expect("valid"));
        while us.poll_packet(now, &mut buf).is_some() {}
    }
    assert_eq!(us.stats().connections_open, 16, "only the backlog is held");
    // Half-open connections give up after their SYN-ACK retransmissions.
    let mut later = now;
    for _ in 0..100 {
        let Some(next) = us.poll_timeout() else { break };
        later = next;
        us.handle_timeout(later);
        while us.poll_packet(later, &mut buf).is_some() {}
    }
    assert_eq!(us.stats().connections_open, 0);
    assert!(later - now < Duration::from_secs(60));
}

/// Many connections whose application never reads cannot make the node hold more than its
/// byte budget.
#[test]
fn node_buffer_budget_holds() {
    let seed = seed("node_buffer_budget_holds", 52);
    let mut config = TransportConfig::default();
    config.max_buffered_bytes = 1024 * 1024;
    let mut pair = Pair::new(seed, LinkConfig::clean(), config);
    pair.b.listen(SERVER_PORT).expect("listen");
    let data = payload(seed, 512 * 1024);
    let clients: Vec<_> = (0..8)
        .map(|_| {
            pair.a
                .connect(pair.now, AddrPort::new(pair.b_addr, SERVER_PORT))
                .expect("dial")
        })
        .collect();
    let mut sent = vec![0; clients.len()];
    let mut peak = 0;
    pair.run_until(Duration::from_secs(20), 200_000, |p| {
        for (conn, sent) in clients.iter().zip(sent.iter_mut()) {
            write_some(&mut p.a, p.now, *conn, &data, sent);
        }
        p.flush();
        peak = peak
            .max(p.b.stats().buffered_bytes)
            .max(p.a.stats().buffered_bytes);
        p.elapsed() > Duration::from_secs(10)
    });
    println!("peak buffered: {peak} bytes");
    assert!(peak <= 1024 * 1024, "peak {peak} exceeds the budget");
    assert!(peak >= 512 * 1024, "the budget was actually exercised");
}

/// Nagle coalesces small writes while data is unacknowledged; `set_nodelay` sends each at once.
#[test]
fn nagle_coalesces_unless_switched_off() {
    let small_segments = |nodelay: bool| {
        let seed = seed("nagle_coalesces_unless_switched_off", 53);
        let mut pair = Pair::new(seed, LinkConfig::clean(), TransportConfig::default());
        pair.b.listen(SERVER_PORT).expect("listen");
        let client = pair
            .a
            .connect(pair.now, AddrPort::new(pair.b_addr, SERVER_PORT))
            .expect("dial");
        pair.a.set_nodelay(client, nodelay);
        pair.run_until(Duration::from_secs(5), 1000, |p| {
            incoming(&p.events_b).is_some()
        });
        let server = incoming(&pair.events_b).expect("accepted");
        let mut got = Vec::new();
        for i in 0..100u8 {
            assert_eq!(pair.a.send(pair.now, client, &[i; 100]), Ok(100));
            pair.flush();
            // One write per millisecond: far faster than the 40 ms RTT.
            pair.advance(Duration::from_millis(1));
            read_all(&mut pair.b, server, &mut got);
        }
        pair.run_until(Duration::from_secs(30), 10_000, |p| {
            read_all(&mut p.b, server, &mut got);
            got.len() == 10_000
        });
        pair.trace
            .iter()
            .filter(|r| r.from == Side::A && r.len > 0)
            .count()
    };
    let coalesced = small_segments(false);
    let immediate = small_segments(true);
    println!("data segments: nagle {coalesced}, nodelay {immediate}");
    assert_eq!(immediate, 100);
    assert!(coalesced <= 10, "nagle sent {coalesced} segments");
}

/// An idle connection sends keepalives and, because both ends do, outlives the idle timeout.
#[test]
fn keepalives_keep_an_idle_connection() {
    let seed = seed("keepalives_keep_an_idle_connection", 54);
    let mut pair = Pair::new(seed, LinkConfig::clean(), TransportConfig::default());
    pair.b.listen(SERVER_PORT).expect("listen");
    let client = pair
        .a
        .connect(pair.now, AddrPort::new(pair.b_addr, SERVER_PORT))
        .expect("dial");
    let idle = TransportConfig::default().idle_timeout;
    pair.run_until(idle * 3, 100_000, |p| p.elapsed() > idle * 2);
    assert_eq!(pair.a.state(client), Some(ConnState::Established));
    let keepalives = pair
        .trace
        .iter()
        .filter(|r| r.from == Side::A && r.len == 0)
        .count();
    let expected = (idle * 2).as_secs() / TransportConfig::default().keepalive_interval.as_secs();
    println!("{keepalives} pure ACKs from A in {:?}", pair.elapsed());
    assert!(keepalives as u64 >= expected, "{keepalives} < {expected}");
}

/// Initial sequence numbers come from the seeded generator: never v0.5's constant 0, different
/// per connection, and reproducible from the seed.
#[test]
fn initial_sequence_numbers_are_unpredictable() {
    let isns = |seed: u64| {
        let mut us = Transport::new(Addr::new(0, 1), TransportConfig::default(), rng(seed, 1));
        let now = epoch();
        let mut buf = Vec::new();
        (0..16)
            .map(|_| {
                us.connect(now, AddrPort::new(Addr::new(0, 2), 7))
                    .expect("dial");
                us.poll_packet(now, &mut buf).expect("SYN");
                PacketRepr::decode(&buf).expect("valid").seq
            })
            .collect::<Vec<_>>()
    };
    let first = isns(55);
    assert_eq!(first, isns(55), "deterministic under a seed");
    assert_ne!(first, isns(56));
    let mut unique = first.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), first.len());
    assert!(!first.contains(&0));
}
