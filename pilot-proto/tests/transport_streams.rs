//! Stream behaviour through the seeded lossy link: bulk transfers under loss, closing, a
//! vanishing peer, a receiver that stops reading, and the "SACK" payload prefix.

mod transport_harness;

use std::time::Duration;

use pilot_proto::transport::{CloseReason, TransportConfig};
use pilot_proto::wire::addr::AddrPort;
use pilot_proto::wire::packet::Flags;
use transport_harness::{
    LinkConfig, Pair, Record, SERVER_PORT, Side, bulk, closed, incoming, payload, read_all, seed,
    write_some,
};

const TEN_MB: usize = 10 * 1024 * 1024;

fn loss_run(name: &str, loss: f64, limit: Duration) {
    let seed = seed(name, 0x5eed_0000 + (loss * 1000.0) as u64);
    let mut pair = Pair::new(seed, LinkConfig::hostile(loss), TransportConfig::default());
    let data = payload(seed, TEN_MB);
    let result = bulk(&mut pair, &data, limit, 2_000_000);
    let stats = pair.a.stats();
    println!(
        "{name}: {:?} virtual, {} segments, {} retransmitted, {} steps",
        result.elapsed, stats.segments_sent, stats.segments_retransmitted, pair.steps
    );
}

#[test]
fn ten_mb_no_loss() {
    loss_run("ten_mb_no_loss", 0.0, Duration::from_secs(20));
}

#[test]
fn ten_mb_one_percent_loss() {
    loss_run("ten_mb_one_percent_loss", 0.01, Duration::from_secs(60));
}

#[test]
fn ten_mb_five_percent_loss() {
    loss_run("ten_mb_five_percent_loss", 0.05, Duration::from_secs(150));
}

#[test]
fn ten_mb_twenty_percent_loss() {
    loss_run("ten_mb_twenty_percent_loss", 0.20, Duration::from_secs(600));
}

/// Both sides send, then both close: both report a normal close, both connections are forgotten
/// after TIME_WAIT, and not one packet flows after the ACK of the last FIN.
#[test]
fn both_close_and_silence_follows() {
    let seed = seed("both_close_and_silence_follows", 41);
    let mut pair = Pair::new(seed, LinkConfig::clean(), TransportConfig::default());
    let (a_data, b_data) = (payload(seed, 100_000), payload(seed + 1, 50_000));
    pair.b.listen(SERVER_PORT).expect("listen");
    let client = pair
        .a
        .connect(pair.now, AddrPort::new(pair.b_addr, SERVER_PORT))
        .expect("dial");
    let (mut a_sent, mut b_sent) = (0, 0);
    let (mut a_got, mut b_got) = (Vec::new(), Vec::new());
    let (mut a_eof, mut b_eof) = (false, false);
    let mut server = None;
    let mut closed_a = false;
    let mut closed_b = false;
    pair.run_until(Duration::from_secs(30), 100_000, |p| {
        write_some(&mut p.a, p.now, client, &a_data, &mut a_sent);
        if a_sent == a_data.len() && !closed_a {
            p.a.close(p.now, client);
            closed_a = true;
        }
        server = server.or_else(|| incoming(&p.events_b));
        if let Some(conn) = server {
            write_some(&mut p.b, p.now, conn, &b_data, &mut b_sent);
            if b_sent == b_data.len() && !closed_b {
                p.b.close(p.now, conn);
                closed_b = true;
            }
            b_eof |= read_all(&mut p.b, conn, &mut b_got);
        }
        a_eof |= read_all(&mut p.a, client, &mut a_got);
        p.flush();
        a_eof && b_eof
    });
    assert!(a_got == b_data && b_got == a_data, "bytes differ");
    let server = server.expect("accepted");

    pair.run_idle(Duration::from_secs(60), 100_000);
    assert_eq!(closed(&pair.events_a, client), Some(CloseReason::Normal));
    assert_eq!(closed(&pair.events_b, server), Some(CloseReason::Normal));
    assert_eq!(
        pair.a.state(client),
        None,
        "A forgets the connection after TIME_WAIT"
    );
    assert_eq!(pair.b.state(server), None, "B forgets the connection");
    assert_eq!(pair.a.poll_timeout(), None);
    assert_eq!(pair.b.poll_timeout(), None);
    assert_eq!(packets_after_last_fin_ack(&pair.trace), Some(0));
}

/// The index of the ACK of the last FIN in `trace`, and how many packets followed it.
fn packets_after_last_fin_ack(trace: &[Record]) -> Option<usize> {
    let (fin_index, fin) = trace
        .iter()
        .enumerate()
        .rev()
        .find(|(_, r)| r.flags.contains(Flags::FIN))?;
    let fin_end = fin.seq.wrapping_add(1);
    let ack_index = trace[fin_index..]
        .iter()
        .position(|r| r.from != fin.from && r.flags.contains(Flags::ACK) && r.ack == fin_end)?;
    Some(trace.len() - (fin_index + ack_index) - 1)
}

/// The receiver vanishes mid-transfer: the sender resets within its retransmission budget.
#[test]
fn sender_resets_when_receiver_vanishes() {
    let seed = seed("sender_resets_when_receiver_vanishes", 42);
    let mut pair = Pair::new(seed, LinkConfig::hostile(0.01), TransportConfig::default());
    let data = payload(seed, 4 * 1024 * 1024);
    pair.b.listen(SERVER_PORT).expect("listen");
    let client = pair
        .a
        .connect(pair.now, AddrPort::new(pair.b_addr, SERVER_PORT))
        .expect("dial");
    let mut sent = 0;
    let mut got = Vec::new();
    pair.run_until(Duration::from_secs(60), 100_000, |p| {
        write_some(&mut p.a, p.now, client, &data, &mut sent);
        if let Some(conn) = incoming(&p.events_b) {
            read_all(&mut p.b, conn, &mut got);
        }
        p.flush();
        got.len() >= 1024 * 1024
    });
    pair.b_alive = false;
    pair.set_link_up(false);
    let vanished = pair.elapsed();
    // Eight transmissions with the RTO doubling from at least 200 ms and capped at 10 s take at
    // most 0.2 + 0.4 + ... + 10 + 10 s, about 33 s; allow 45 s.
    let bound = Duration::from_secs(45);
    pair.run_until(vanished + bound, 100_000, |p| {
        closed(&p.events_a, client).is_some()
    });
    assert_eq!(
        closed(&pair.events_a, client),
        Some(CloseReason::RetransmitLimit)
    );
    assert_eq!(pair.a.state(client), None);
    assert_eq!(pair.a.stats().resets_sent, 1);
    println!("reset after {:?}", pair.elapsed() - vanished);
}

/// The sender vanishes: the receiver, which has nothing to send, resets at the idle timeout.
#[test]
fn receiver_resets_when_sender_vanishes() {
    let seed = seed("receiver_resets_when_sender_vanishes", 43);
    let mut pair = Pair::new(seed, LinkConfig::clean(), TransportConfig::default());
    let data = payload(seed, 1024 * 1024);
    pair.b.listen(SERVER_PORT).expect("listen");
    let client = pair
        .a
        .connect(pair.now, AddrPort::new(pair.b_addr, SERVER_PORT))
        .expect("dial");
    let mut sent = 0;
    pair.run_until(Duration::from_secs(10), 100_000, |p| {
        write_some(&mut p.a, p.now, client, &data, &mut sent);
        p.flush();
        let server = incoming(&p.events_b).and_then(|conn| p.b.conn_stats(conn));
        server.is_some_and(|s| s.bytes_received > 256 * 1024)
    });
    let server = incoming(&pair.events_b).expect("accepted");
    pair.set_link_up(false);
    let vanished = pair.elapsed();
    let idle = TransportConfig::default().idle_timeout;
    pair.run_until(vanished + idle + Duration::from_secs(1), 100_000, |p| {
        closed(&p.events_b, server).is_some()
    });
    assert_eq!(
        closed(&pair.events_b, server),
        Some(CloseReason::IdleTimeout)
    );
}

/// A receiver that stops reading: its window closes, the sender probes, and when reading
/// resumes every byte arrives.
#[test]
fn zero_window_probes_and_resumes() {
    let seed = seed("zero_window_probes_and_resumes", 44);
    let mut config = TransportConfig::default();
    config.recv_buffer = 64 * 1024;
    config.send_buffer = 64 * 1024;
    let mut pair = Pair::new(seed, LinkConfig::hostile(0.0), config);
    let data = payload(seed, 1024 * 1024);
    pair.b.listen(SERVER_PORT).expect("listen");
    let client = pair
        .a
        .connect(pair.now, AddrPort::new(pair.b_addr, SERVER_PORT))
        .expect("dial");
    let mut sent = 0;
    let mut got = Vec::new();
    let mut stalled_at = None;
    pair.run_until(Duration::from_secs(30), 100_000, |p| {
        write_some(&mut p.a, p.now, client, &data, &mut sent);
        p.flush();
        let zero = p
            .trace
            .iter()
            .position(|r| r.from == Side::B && r.window == 0 && r.len == 0);
        stalled_at = zero;
        let probes = zero.map_or(0, |i| p.trace[i..].iter().filter(|r| is_probe(r)).count());
        probes >= 3
    });
    let stalled_at = stalled_at.expect("window reached zero");
    let probes = pair.trace[stalled_at..]
        .iter()
        .filter(|r| is_probe(r))
        .count();
    println!(
        "window closed at {:?}; {probes} probes",
        pair.trace[stalled_at].at
    );

    let server = incoming(&pair.events_b).expect("accepted");
    let mut closed_a = false;
    let mut eof = false;
    let resume = pair.elapsed();
    pair.run_until(resume + Duration::from_secs(60), 100_000, |p| {
        write_some(&mut p.a, p.now, client, &data, &mut sent);
        if sent == data.len() && !closed_a {
            p.a.close(p.now, client);
            closed_a = true;
        }
        eof |= read_all(&mut p.b, server, &mut got);
        p.flush();
        eof
    });
    assert!(got == data, "bytes differ after the window reopened");
}

fn is_probe(record: &Record) -> bool {
    record.from == Side::A && record.len == 1
}

/// Payloads that begin like a v0.5 SACK blob are delivered as data, and our sender never
/// starts a segment with such a blob (which a v0.5 receiver would swallow).
#[test]
fn sack_prefixed_payload_is_data() {
    let seed = seed("sack_prefixed_payload_is_data", 45);
    let mut pair = Pair::new(seed, LinkConfig::hostile(0.05), TransportConfig::default());
    let blob: &[u8] = b"SACK\x01\x00\x00\x00\x05\x00\x00\x00\x09";
    let mut data = blob.to_vec();
    let filler = payload(seed, 300_000);
    for (i, chunk) in filler.chunks(997).enumerate() {
        data.extend_from_slice(chunk);
        let mut again = blob.to_vec();
        again[4] = 1 + (i % 4) as u8;
        data.extend_from_slice(&again);
    }
    let result = bulk(&mut pair, &data, Duration::from_secs(60), 100_000);
    println!("delivered {} bytes in {:?}", data.len(), result.elapsed);
    let sack_like = |r: &&Record| {
        r.from == Side::A
            && r.len > 4
            && r.head.starts_with(b"SACK")
            && (1..=4).contains(&r.head[4])
    };
    assert_eq!(pair.trace.iter().filter(sack_like).count(), 0);
}
