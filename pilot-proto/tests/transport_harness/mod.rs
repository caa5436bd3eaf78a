//! Two [`Transport`]s joined by a lossy, seeded link model on virtual time.
//!
//! Each direction of the link serializes packets at a fixed bandwidth behind a drop-tail queue,
//! then applies random loss, duplication, extra reordering delay and jitter on top of a fixed
//! latency. All randomness comes from one seed, so a run is reproducible from the seed the test
//! prints. Time is virtual: an arbitrary epoch plus the durations the model computes.

#![allow(dead_code, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use pilot_proto::rng::Rng;
use pilot_proto::transport::{ConnId, Transport, TransportConfig, TransportEvent};
use pilot_proto::wire::addr::{Addr, AddrPort};
use pilot_proto::wire::packet::{Flags, PacketRepr};

/// The epoch of virtual time. Any instant works; it is never compared with the real clock.
#[allow(clippy::disallowed_methods)]
pub fn epoch() -> Instant {
    Instant::now()
}

/// The seed for a test: `TRANSPORT_SEED` if set, else `default`. Printed so a failure can be
/// replayed.
pub fn seed(name: &str, default: u64) -> u64 {
    let seed = std::env::var("TRANSPORT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    println!("{name}: seed = {seed} (set TRANSPORT_SEED to replay)");
    seed
}

/// A seeded generator; `stream` separates independent uses of one seed.
pub fn rng(seed: u64, stream: u8) -> Rng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8] = stream;
    Rng::from_seed(bytes)
}

/// One direction of the link.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub latency: Duration,
    /// Uniform extra delay in `[0, jitter)` per packet; jitter alone never lets a packet
    /// overtake an earlier one (queues are FIFO).
    pub jitter: Duration,
    /// Probability a packet is lost.
    pub loss: f64,
    /// Probability a packet is delivered twice.
    pub duplicate: f64,
    /// Probability a packet is held back by up to `latency` more (reordering).
    pub reorder: f64,
    /// Bits per second.
    pub bandwidth: u64,
    /// Drop-tail queue in front of the link, in bytes.
    pub queue: usize,
}

impl LinkConfig {
    /// A clean 20 Mbit/s link with 20 ms one-way latency.
    pub fn clean() -> Self {
        Self {
            latency: Duration::from_millis(20),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            bandwidth: 20_000_000,
            queue: 256 * 1024,
        }
    }

    /// The clean link with `loss`, plus 1% duplication, 2% reordering and 5 ms jitter.
    pub fn hostile(loss: f64) -> Self {
        Self {
            jitter: Duration::from_millis(5),
            loss,
            duplicate: 0.01,
            reorder: 0.02,
            ..Self::clean()
        }
    }
}

/// Which transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// One packet put on the wire, for assertions about what flowed.
#[derive(Debug, Clone)]
pub struct Record {
    pub at: Duration,
    pub from: Side,
    pub flags: Flags,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub len: usize,
    /// The first (up to) eight payload bytes.
    pub head: Vec<u8>,
}

#[derive(Debug)]
struct Link {
    config: LinkConfig,
    busy_until: Instant,
    /// Latest arrival scheduled so far, so jitter keeps FIFO order.
    last_arrival: Instant,
    /// When false, every packet is dropped (a vanished peer or a partition).
    up: bool,
}

/// A packet in flight: arrival time, tie-breaker, destination, bytes.
type Flight = Reverse<(Instant, u64, u8, Vec<u8>)>;

/// The two transports, the links and the virtual clock.
#[derive(Debug)]
pub struct Pair {
    pub a: Transport,
    pub b: Transport,
    pub a_addr: Addr,
    pub b_addr: Addr,
    pub now: Instant,
    pub start: Instant,
    links: [Link; 2],
    rng: Rng,
    flights: BinaryHeap<Flight>,
    counter: u64,
    pub trace: Vec<Record>,
    pub events_a: Vec<TransportEvent>,
    pub events_b: Vec<TransportEvent>,
    /// When false, B is frozen: it gets no input, no timers, and sends nothing.
    pub b_alive: bool,
    buf: Vec<u8>,
    pub steps: u64,
    /// Packets A put on the link so far, indexing `drop_mask`.
    sent_count: usize,
    /// `true` at index i drops the i-th packet A sends, on top of random loss.
    pub drop_mask: Vec<bool>,
}

impl Pair {
    /// Two transports (nodes 1 and 2 of network 0) joined by `link` in both directions.
    pub fn new(seed: u64, link: LinkConfig, config: TransportConfig) -> Self {
        let start = epoch();
        let a_addr = Addr::new(0, 1);
        let b_addr = Addr::new(0, 2);
        let link_of = |config| Link {
            config,
            busy_until: start,
            last_arrival: start,
            up: true,
        };
        Self {
            a: Transport::new(a_addr, config.clone(), rng(seed, 1)),
            b: Transport::new(b_addr, config, rng(seed, 2)),
            a_addr,
            b_addr,
            now: start,
            start,
            links: [link_of(link), link_of(link)],
            rng: rng(seed, 3),
            flights: BinaryHeap::new(),
            counter: 0,
            trace: Vec::new(),
            events_a: Vec::new(),
            events_b: Vec::new(),
            b_alive: true,
            buf: Vec::new(),
            steps: 0,
            sent_count: 0,
            drop_mask: Vec::new(),
        }
    }

    /// Virtual time elapsed.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Cuts (or restores) both directions of the link.
    pub fn set_link_up(&mut self, up: bool) {
        for link in &mut self.links {
            link.up = up;
        }
    }

    /// Drains both transports' output and events (call after acting on them directly).
    pub fn flush(&mut self) {
        self.drain(Side::A);
        if self.b_alive {
            self.drain(Side::B);
        }
    }

    /// Advances to the next arrival or timer and processes it. Returns false when nothing at
    /// all is scheduled (both sides idle, nothing in flight).
    pub fn step(&mut self) -> bool {
        self.steps += 1;
        self.flush();
        let Some(next) = self.next_deadline() else {
            return false;
        };
        self.now = self.now.max(next);
        self.deliver_due();
        if self.a.poll_timeout().is_some_and(|t| t <= self.now) {
            self.a.handle_timeout(self.now);
        }
        if self.b_alive && self.b.poll_timeout().is_some_and(|t| t <= self.now) {
            self.b.handle_timeout(self.now);
        }
        self.flush();
        true
    }

    /// Steps until `done` returns true, failing the test if virtual time passes `limit` or
    /// the step count passes `max_steps`. `done` may act on the pair (read, write, close).
    pub fn run_until(
        &mut self,
        limit: Duration,
        max_steps: u64,
        mut done: impl FnMut(&mut Self) -> bool,
    ) {
        let first = self.steps;
        loop {
            if done(self) {
                return;
            }
            assert!(
                self.elapsed() <= limit,
                "not done within {limit:?} of virtual time"
            );
            assert!(
                self.steps - first < max_steps,
                "not done within {max_steps} steps"
            );
            if !self.step() {
                assert!(
                    done(self),
                    "went idle before done at {:?}; last packets: {:?}",
                    self.elapsed(),
                    &self.trace[self.trace.len().saturating_sub(4)..]
                );
                return;
            }
        }
    }

    /// Processes everything due within `by`, then sets the clock to exactly `by` later.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        for _ in 0..1_000_000 {
            self.flush();
            match self.next_deadline() {
                Some(t) if t <= target => {
                    self.step();
                }
                _ => break,
            }
        }
        self.now = self.now.max(target);
        self.flush();
    }

    /// Steps until nothing is scheduled, bounded like [`Self::run_until`].
    pub fn run_idle(&mut self, limit: Duration, max_steps: u64) {
        let first = self.steps;
        while self.step() {
            assert!(
                self.elapsed() <= limit,
                "still busy after {limit:?} of virtual time"
            );
            assert!(
                self.steps - first < max_steps,
                "still busy after {max_steps} steps"
            );
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let flight = self.flights.peek().map(|Reverse((t, ..))| *t);
        let b = if self.b_alive {
            self.b.poll_timeout()
        } else {
            None
        };
        [flight, self.a.poll_timeout(), b]
            .into_iter()
            .flatten()
            .min()
    }

    fn deliver_due(&mut self) {
        while let Some(Reverse((at, ..))) = self.flights.peek() {
            if *at > self.now {
                break;
            }
            let Some(Reverse((_, _, to, bytes))) = self.flights.pop() else {
                break;
            };
            let Ok(packet) = PacketRepr::decode(&bytes) else {
                panic!("transport emitted an undecodable packet");
            };
            match to {
                0 => self.a.handle_packet(self.now, &packet),
                _ if self.b_alive => self.b.handle_packet(self.now, &packet),
                _ => {}
            }
        }
    }

    fn drain(&mut self, side: Side) {
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            let transport = match side {
                Side::A => &mut self.a,
                Side::B => &mut self.b,
            };
            if transport.poll_packet(self.now, &mut buf).is_none() {
                break;
            }
            self.record(side, &buf);
            self.transmit(side, &buf);
        }
        self.buf = buf;
        let (transport, events) = match side {
            Side::A => (&mut self.a, &mut self.events_a),
            Side::B => (&mut self.b, &mut self.events_b),
        };
        while let Some(event) = transport.poll_event() {
            events.push(event);
        }
    }

    fn record(&mut self, from: Side, bytes: &[u8]) {
        let Ok(p) = PacketRepr::decode(bytes) else {
            panic!("transport emitted an undecodable packet");
        };
        self.trace.push(Record {
            at: self.elapsed(),
            from,
            flags: p.flags,
            seq: p.seq,
            ack: p.ack,
            window: p.window,
            len: p.payload.len(),
            head: p.payload.iter().take(8).copied().collect(),
        });
    }

    /// Puts a packet through the link model of its direction.
    fn transmit(&mut self, from: Side, bytes: &[u8]) {
        let (index, to) = match from {
            Side::A => (0, 1u8),
            Side::B => (1, 0u8),
        };
        let now = self.now;
        let link = &mut self.links[index];
        let config = link.config;
        if !link.up {
            return;
        }
        let start = link.busy_until.max(now);
        let backlog = (start - now).as_secs_f64() * config.bandwidth as f64 / 8.0;
        if backlog > config.queue as f64 {
            return;
        }
        let wire_bits = (bytes.len() as u64 + 28) * 8;
        let serialize = Duration::from_nanos(wire_bits * 1_000_000_000 / config.bandwidth.max(1));
        link.busy_until = start + serialize;
        let departed = link.busy_until;
        let mut masked = false;
        if from == Side::A {
            masked = self
                .drop_mask
                .get(self.sent_count)
                .copied()
                .unwrap_or(false);
            self.sent_count += 1;
        }
        if self.rng.unit() < config.loss || masked {
            return;
        }
        let copies = if self.rng.unit() < config.duplicate {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = self.random_delay(config.jitter);
            let link = &mut self.links[index];
            let mut arrival = (departed + config.latency + jitter).max(link.last_arrival);
            link.last_arrival = arrival;
            if self.rng.unit() < config.reorder {
                arrival += self.random_delay(config.latency);
            }
            self.counter += 1;
            self.flights
                .push(Reverse((arrival, self.counter, to, bytes.to_vec())));
        }
    }

    fn random_delay(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos() as u64;
        Duration::from_nanos(self.rng.below(nanos.max(1)))
    }
}

/// The first `Incoming` connection B reported.
pub fn incoming(events: &[TransportEvent]) -> Option<ConnId> {
    events.iter().find_map(|e| match e {
        TransportEvent::Incoming { conn, .. } => Some(*conn),
        _ => None,
    })
}

/// The close reason reported for `conn`, if any.
pub fn closed(
    events: &[TransportEvent],
    conn: ConnId,
) -> Option<pilot_proto::transport::CloseReason> {
    events.iter().find_map(|e| match e {
        TransportEvent::Closed { conn: c, reason } if *c == conn => Some(*reason),
        _ => None,
    })
}

/// `len` seeded pseudo-random bytes.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rng(seed, 9).fill(&mut data);
    data
}

/// Reads everything readable on `conn` of `side` into `sink`; returns true at end of stream.
pub fn read_all(transport: &mut Transport, conn: ConnId, sink: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    for _ in 0..100_000 {
        match transport.recv(conn, &mut chunk) {
            Ok(0) => return true,
            Ok(n) => sink.extend_from_slice(&chunk[..n]),
            Err(_) => return false,
        }
    }
    false
}

/// Writes as much of `data[*sent..]` as `conn` accepts, advancing `sent`.
pub fn write_some(
    transport: &mut Transport,
    now: Instant,
    conn: ConnId,
    data: &[u8],
    sent: &mut usize,
) {
    while *sent < data.len() {
        match transport.send(now, conn, &data[*sent..]) {
            Ok(n) if n > 0 => *sent += n,
            _ => return,
        }
    }
}

/// Port the bulk-transfer server listens on.
pub const SERVER_PORT: u16 = 1000;

/// Outcome of [`bulk`].
#[derive(Debug)]
pub struct BulkResult {
    /// Virtual time from connect to the receiver seeing end of stream.
    pub elapsed: Duration,
    pub client: ConnId,
    pub server: ConnId,
}

/// A connects to B, sends `data`, closes; B reads until end of stream. Asserts byte equality
/// and that it finished within `limit` of virtual time.
pub fn bulk(pair: &mut Pair, data: &[u8], limit: Duration, max_steps: u64) -> BulkResult {
    pair.b.listen(SERVER_PORT).expect("port free");
    let started = pair.elapsed();
    let client = pair
        .a
        .connect(pair.now, AddrPort::new(pair.b_addr, SERVER_PORT))
        .expect("connect");
    let mut sent = 0;
    let mut closed = false;
    let mut server = None;
    let mut received = Vec::with_capacity(data.len());
    let mut eof = false;
    pair.run_until(started + limit, max_steps, |p| {
        write_some(&mut p.a, p.now, client, data, &mut sent);
        if sent == data.len() && !closed {
            p.a.close(p.now, client);
            closed = true;
        }
        if server.is_none() {
            server = p.events_b.iter().find_map(|e| match e {
                TransportEvent::Incoming { conn, .. } => Some(*conn),
                _ => None,
            });
        }
        if let Some(conn) = server
            && !eof
        {
            eof = read_all(&mut p.b, conn, &mut received);
        }
        p.flush();
        eof
    });
    assert_eq!(received.len(), data.len(), "byte count differs");
    assert!(received == data, "bytes differ");
    let server = server.expect("server connection");
    BulkResult {
        elapsed: pair.elapsed() - started,
        client,
        server,
    }
}
