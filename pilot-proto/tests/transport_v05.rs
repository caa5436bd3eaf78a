//! Wire compatibility with the Go v0.5 daemon: a scripted peer sends exactly what v0.5 sends
//! (ISN 0, FIN with ack 0 and window 0, RST with sequence 0, keepalives with window 0, SACK blobs
//! in ACK payloads, the FIN|ACK reply to every FIN) and checks what the transport answers.

use std::time::{Duration, Instant};

use pilot_proto::rng::Rng;
use pilot_proto::transport::{CloseReason, ConnState, Transport, TransportConfig, TransportEvent};
use pilot_proto::wire::addr::{Addr, AddrPort};
use pilot_proto::wire::packet::{Flags, PacketRepr, Protocol, VERSION};

mod transport_harness;

const US: Addr = Addr::new(0, 2);
const GO: Addr = Addr::new(0, 1);
const GO_PORT: u16 = 49152;
const PORT: u16 = 1000;

/// One packet as the Go daemon would write it, from `GO:GO_PORT` to `US:PORT`.
fn go_packet(flags: Flags, seq: u32, ack: u32, window: u16, payload: &[u8]) -> Vec<u8> {
    let repr = PacketRepr {
        version: VERSION,
        flags,
        protocol: Protocol::Stream,
        src: GO,
        dst: US,
        src_port: GO_PORT,
        dst_port: PORT,
        seq,
        ack,
        window,
        payload,
    };
    let mut buf = vec![0; repr.buffer_len()];
    repr.emit(&mut buf).expect("emit");
    buf
}

/// Our side plus a clock.
struct Rig {
    us: Transport,
    now: Instant,
}

impl Rig {
    fn new(seed: u64) -> Self {
        let rng = transport_harness::rng(seed, 7);
        Self {
            us: Transport::new(US, TransportConfig::default(), rng),
            now: transport_harness::epoch(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        let packet = PacketRepr::decode(bytes).expect("valid packet");
        self.us.handle_packet(self.now, &packet);
    }

    /// Everything we send now, decoded (header fields and payload).
    fn drain(&mut self) -> Vec<(Flags, u32, u32, u16, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(dst) = self.us.poll_packet(self.now, &mut buf) {
            assert_eq!(dst, GO);
            let p = PacketRepr::decode(&buf).expect("we emit valid packets");
            out.push((p.flags, p.seq, p.ack, p.window, p.payload.to_vec()));
        }
        out
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.us.poll_timeout().is_some_and(|t| t <= self.now) {
            self.us.handle_timeout(self.now);
        }
    }

    fn events(&mut self) -> Vec<TransportEvent> {
        std::iter::from_fn(|| self.us.poll_event()).collect()
    }

    /// Accepts a v0.5 dial (ISN 0) and returns our ISN and the connection.
    fn accept_go(&mut self) -> (u32, pilot_proto::transport::ConnId) {
        self.us.listen(PORT).expect("listen");
        self.feed(&go_packet(Flags::SYN, 0, 0, 512, &[]));
        let out = self.drain();
        assert_eq!(out.len(), 1);
        let (flags, isn, ack, _, _) = &out[0];
        assert_eq!(*flags, Flags::SYN | Flags::ACK);
        assert_eq!(*ack, 1, "SYN consumes one sequence number");
        self.feed(&go_packet(Flags::ACK, 1, isn.wrapping_add(1), 512, &[]));
        let conn = transport_harness::incoming(&self.events()).expect("incoming");
        (*isn, conn)
    }
}

#[test]
fn accepts_a_v05_dial_and_data() {
    let mut rig = Rig::new(1);
    let (isn, conn) = rig.accept_go();
    let window = rig.us.conn_stats(conn).expect("open").peer_window;
    assert_eq!(
        window,
        512 * 1360,
        "v0.5 counts queue slots: one of our segments each"
    );
    rig.feed(&go_packet(
        Flags::ACK,
        1,
        isn.wrapping_add(1),
        512,
        b"hello",
    ));
    let mut buf = [0u8; 16];
    assert_eq!(rig.us.recv(conn, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"hello");
    assert!(rig.drain().is_empty(), "the ACK is delayed");
    rig.advance(Duration::from_millis(40));
    let out = rig.drain();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].0, out[0].2),
        (Flags::ACK, 6),
        "delayed ACK after 40 ms, ack = 6"
    );
}

/// v0.5 cannot tell data that starts like a SACK blob from SACK; we deliver it.
#[test]
fn v05_data_that_looks_like_sack_is_delivered() {
    let mut rig = Rig::new(2);
    let (isn, conn) = rig.accept_go();
    let blob = b"SACK\x01\x00\x00\x00\x05\x00\x00\x00\x09";
    rig.feed(&go_packet(Flags::ACK, 1, isn.wrapping_add(1), 512, blob));
    let mut buf = [0u8; 32];
    assert_eq!(rig.us.recv(conn, &mut buf), Ok(blob.len()));
    assert_eq!(&buf[..blob.len()], blob);
}

/// A SACK blob from v0.5 naming our own outstanding data is read as SACK, not data, and the
/// hole is retransmitted before any retransmission timeout.
#[test]
fn v05_sack_drives_fast_retransmit() {
    let mut rig = Rig::new(3);
    let (isn, conn) = rig.accept_go();
    rig.us.set_nodelay(conn, true);
    let data = transport_harness::payload(3, 1360 * 6);
    assert_eq!(rig.us.send(rig.now, conn, &data), Ok(data.len()));
    let sent = rig.drain();
    assert_eq!(sent.len(), 6);
    let seq0 = isn.wrapping_add(1);
    // Go got segments 2..6 but not the first: ACK 1 with one block, 10 ms later.
    rig.advance(Duration::from_millis(10));
    let mut sack = b"SACK\x01".to_vec();
    sack.extend_from_slice(&seq0.wrapping_add(1360).to_be_bytes());
    sack.extend_from_slice(&seq0.wrapping_add(1360 * 6).to_be_bytes());
    rig.feed(&go_packet(Flags::ACK, 1, seq0, 512, &sack));
    let mut buf = [0u8; 64];
    assert!(rig.us.recv(conn, &mut buf).is_err(), "the blob is not data");
    rig.advance(Duration::from_millis(10));
    let again = rig.drain();
    assert_eq!(again.len(), 1, "exactly the hole is resent");
    assert_eq!(again[0].1, seq0);
    assert!(rig.us.conn_stats(conn).expect("open").rto >= Duration::from_millis(200));
}

/// v0.5 keepalives and FINs carry window 0; that must not stall our sender.
#[test]
fn v05_keepalive_window_zero_does_not_stall() {
    let mut rig = Rig::new(4);
    let (isn, conn) = rig.accept_go();
    rig.feed(&go_packet(Flags::ACK, 1, isn.wrapping_add(1), 0, &[]));
    assert_eq!(rig.us.send(rig.now, conn, b"ping"), Ok(4));
    let out = rig.drain();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].4, b"ping");
}

/// A v0.5 close: FIN (ack 0, window 0) → we ACK it; we close → FIN; v0.5 answers FIN|ACK,
/// which must end the exchange; a further FIN|ACK (the v0.5 storm) gets no answer at all.
#[test]
fn v05_close_ends_without_a_storm() {
    let mut rig = Rig::new(5);
    let (isn, conn) = rig.accept_go();
    rig.feed(&go_packet(Flags::FIN, 1, 0, 0, &[]));
    let out = rig.drain();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].0, out[0].2),
        (Flags::ACK, 2),
        "a plain ACK of the FIN, not FIN|ACK"
    );
    let mut buf = [0u8; 4];
    assert_eq!(rig.us.recv(conn, &mut buf), Ok(0), "end of stream");
    assert_eq!(rig.us.state(conn), Some(ConnState::CloseWait));

    rig.us.close(rig.now, conn);
    let out = rig.drain();
    assert_eq!(out.len(), 1);
    assert!(out[0].0.contains(Flags::FIN));
    let our_fin = out[0].1;
    assert_eq!(our_fin, isn.wrapping_add(1));

    let fin_ack = go_packet(Flags::FIN | Flags::ACK, 1, our_fin.wrapping_add(1), 0, &[]);
    rig.feed(&fin_ack);
    assert!(rig.drain().is_empty(), "no reply to the FIN|ACK");
    assert_eq!(rig.us.state(conn), None, "gone");
    for _ in 0..100 {
        rig.feed(&fin_ack);
        rig.advance(Duration::from_millis(1));
    }
    assert!(rig.drain().is_empty(), "the storm finds nobody to answer");
    let closed = rig.events().into_iter().any(|e| {
        e == TransportEvent::Closed {
            conn,
            reason: CloseReason::Normal,
        }
    });
    assert!(closed);
}

/// v0.5 sends RSTs with sequence 0 (its ISN is always 0): accepted.
#[test]
fn v05_reset_is_accepted() {
    let mut rig = Rig::new(6);
    let (_, conn) = rig.accept_go();
    rig.feed(&go_packet(Flags::RST, 0, 0, 0, &[]));
    assert_eq!(rig.us.state(conn), None);
    let reasons: Vec<_> = rig.events();
    assert!(reasons.contains(&TransportEvent::Closed {
        conn,
        reason: CloseReason::Reset
    }));
}

/// A reset whose sequence number is neither in the window nor the peer's ISN is ignored.
#[test]
fn blind_reset_is_ignored() {
    let mut rig = Rig::new(7);
    let (_, conn) = rig.accept_go();
    rig.feed(&go_packet(Flags::RST, 0x8000_0000, 0, 0, &[]));
    assert_eq!(rig.us.state(conn), Some(ConnState::Established));
    rig.feed(&go_packet(Flags::FIN, 0x8000_0000, 0, 0, &[]));
    assert_eq!(
        rig.us.state(conn),
        Some(ConnState::Established),
        "out-of-window FIN ignored"
    );
}

/// We dial; v0.5 answers SYN-ACK with ISN 0 and window 512.
#[test]
fn dials_a_v05_listener() {
    let mut rig = Rig::new(8);
    let conn = rig.us.connect(rig.now, AddrPort::new(GO, 7)).expect("dial");
    let out = rig.drain();
    assert_eq!(out.len(), 1);
    let (flags, isn, ack, window, _) = out[0].clone();
    assert_eq!((flags, ack), (Flags::SYN, 0));
    assert!(window > 0);
    let (port, _) = rig.us.endpoints(conn).expect("open");
    assert!(port >= 49152, "ephemeral port {port}");
    let syn_ack = PacketRepr {
        version: VERSION,
        flags: Flags::SYN | Flags::ACK,
        protocol: Protocol::Stream,
        src: GO,
        dst: US,
        src_port: 7,
        dst_port: port,
        seq: 0,
        ack: isn.wrapping_add(1),
        window: 512,
        payload: &[],
    };
    rig.us.handle_packet(rig.now, &syn_ack);
    let out = rig.drain();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].0, out[0].1, out[0].2),
        (Flags::ACK, isn.wrapping_add(1), 1)
    );
    assert!(rig.events().contains(&TransportEvent::Connected { conn }));
}

/// v0.5's answer to a SYN for an unbound port (RST, sequence 0, ack 0) refuses our dial.
#[test]
fn v05_refusal_fails_the_dial() {
    let mut rig = Rig::new(9);
    let conn = rig
        .us
        .connect(rig.now, AddrPort::new(GO, 9999))
        .expect("dial");
    rig.drain();
    let (port, _) = rig.us.endpoints(conn).expect("open");
    let rst = PacketRepr {
        version: VERSION,
        flags: Flags::RST,
        protocol: Protocol::Stream,
        src: GO,
        dst: US,
        src_port: 9999,
        dst_port: port,
        seq: 0,
        ack: 0,
        window: 0,
        payload: &[],
    };
    rig.us.handle_packet(rig.now, &rst);
    assert!(rig.events().contains(&TransportEvent::Closed {
        conn,
        reason: CloseReason::Refused
    }));
}

/// Our datagram is byte-for-byte the v0.5 one (vector P8 of the reference).
#[test]
fn datagram_matches_v05_bytes() {
    let mut us = Transport::new(GO, TransportConfig::default(), Rng::from_seed([0; 32]));
    let now = transport_harness::epoch();
    us.send_datagram(now, 49153, AddrPort::new(US, 5000), b"unicast hello")
        .expect("send");
    let mut buf = Vec::new();
    assert_eq!(us.poll_packet(now, &mut buf), Some(US));
    let expected = hex::decode(concat!(
        "1002000d",
        "000000000001",
        "000000000002",
        "c0011388",
        "00000000",
        "00000000",
        "0000",
        "aecc370b",
        "756e696361737420",
        "68656c6c6f"
    ))
    .expect("hex");
    assert_eq!(hex::encode(&buf), hex::encode(expected));
}

/// Broadcast goes to every member but ourselves; received datagrams become events.
#[test]
fn broadcast_and_receive_datagrams() {
    let now = transport_harness::epoch();
    let mut us = Transport::new(GO, TransportConfig::default(), Rng::from_seed([1; 32]));
    let members = [GO, US, Addr::new(0, 3)];
    assert_eq!(us.broadcast_datagram(now, 0, &members, 5000, b"all"), Ok(2));
    let mut buf = Vec::new();
    let mut them = Transport::new(US, TransportConfig::default(), Rng::from_seed([2; 32]));
    let mut dsts = Vec::new();
    while let Some(dst) = us.poll_packet(now, &mut buf) {
        dsts.push(dst);
        if dst == US {
            them.handle_packet(now, &PacketRepr::decode(&buf).expect("valid"));
        }
    }
    assert_eq!(dsts, vec![US, Addr::new(0, 3)]);
    match them.poll_event() {
        Some(TransportEvent::Datagram {
            src,
            dst_port,
            data,
        }) => {
            assert_eq!(
                (src.addr, dst_port, data.as_slice()),
                (GO, 5000, &b"all"[..])
            );
            assert!(pilot_proto::wire::addr::EPHEMERAL_PORTS.contains(&src.port));
        }
        other => panic!("expected a datagram, got {other:?}"),
    }
}

/// A control ping to port 0 is answered exactly as v0.5 answers it (vectors P11 and P12); the
/// pong itself is never answered.
#[test]
fn control_ping_matches_v05_bytes() {
    let now = transport_harness::epoch();
    let mut us = Transport::new(US, TransportConfig::default(), Rng::from_seed([3; 32]));
    let ping = hex::decode(concat!(
        "10030004",
        "000000000001",
        "000000000002",
        "c0000000",
        "00000007",
        "00000000",
        "0000",
        "6b128122",
        "70696e67"
    ))
    .expect("hex");
    us.handle_packet(now, &PacketRepr::decode(&ping).expect("P11 decodes"));
    let mut buf = Vec::new();
    assert_eq!(us.poll_packet(now, &mut buf), Some(GO));
    let pong = concat!(
        "12030004",
        "000000000002",
        "000000000001",
        "0000c000",
        "00000007",
        "00000008",
        "0000",
        "19f64d81",
        "70696e67"
    );
    assert_eq!(hex::encode(&buf), pong);
    let mut them = Transport::new(GO, TransportConfig::default(), Rng::from_seed([4; 32]));
    them.handle_packet(now, &PacketRepr::decode(&buf).expect("pong decodes"));
    assert_eq!(
        them.poll_packet(now, &mut buf),
        None,
        "a pong is not answered"
    );
}
