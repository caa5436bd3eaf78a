//! Tiny machines for testing the simulator itself: a pinger, a rendezvous beacon and a
//! hole-punching peer. The real pilot-proto node is driven the same way.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pilot_proto::Transmit;
use pilot_sim::{HostContext, Machine};

/// A queue of datagrams waiting for `poll_transmit`.
#[derive(Debug, Default)]
pub struct Outbox(VecDeque<(SocketAddr, Vec<u8>)>);

impl Outbox {
    pub fn push(&mut self, dst: SocketAddr, bytes: impl Into<Vec<u8>>) {
        self.0.push_back((dst, bytes.into()));
    }

    pub fn pop(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        let (dst, bytes) = self.0.pop_front()?;
        buf.extend_from_slice(&bytes);
        Some(Transmit {
            dst,
            len: bytes.len(),
        })
    }
}

/// Sends `PING <n>` to a fixed target every `interval`; answers every `PING` with `PONG`.
#[derive(Debug)]
pub struct Pinger {
    pub target: Option<SocketAddr>,
    pub interval: Duration,
    pub next_ping: Option<Instant>,
    pub sent: u64,
    pub pongs: u64,
    pub pings_seen: u64,
    pub pong_times: Vec<Instant>,
    pub ping_times: Vec<Instant>,
    pub last_from: Option<SocketAddr>,
    /// The sequence numbers of the pings seen, in arrival order.
    pub ping_seqs: Vec<u64>,
    pub seed: [u8; 32],
    pub boot: u32,
    outbox: Outbox,
}

impl Pinger {
    pub fn new(ctx: &HostContext, target: Option<SocketAddr>, interval: Duration) -> Self {
        Self {
            target,
            interval,
            next_ping: target.map(|_| ctx.now),
            sent: 0,
            pongs: 0,
            pings_seen: 0,
            pong_times: Vec::new(),
            ping_times: Vec::new(),
            last_from: None,
            ping_seqs: Vec::new(),
            seed: ctx.seed,
            boot: ctx.boot,
            outbox: Outbox::default(),
        }
    }

    pub fn boxed(
        target: Option<SocketAddr>,
        interval: Duration,
    ) -> impl FnMut(&HostContext) -> Box<dyn Machine> {
        move |ctx| Box::new(Self::new(ctx, target, interval))
    }
}

impl Machine for Pinger {
    fn handle_datagram(
        &mut self,
        now: Instant,
        _local: SocketAddr,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        self.last_from = Some(from);
        if let Some(rest) = bytes.strip_prefix(b"PING") {
            self.pings_seen += 1;
            self.ping_times.push(now);
            let seq = std::str::from_utf8(rest)
                .ok()
                .and_then(|text| text.trim().parse().ok());
            self.ping_seqs.push(seq.unwrap_or(0));
            self.outbox.push(from, [b"PONG", rest].concat());
        } else if bytes.starts_with(b"PONG") {
            self.pongs += 1;
            self.pong_times.push(now);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let (Some(target), Some(due)) = (self.target, self.next_ping) else {
            return;
        };
        if now < due {
            return;
        }
        self.sent += 1;
        self.outbox.push(target, format!("PING {}", self.sent));
        self.next_ping = Some(now + self.interval);
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.outbox.pop(buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_ping
    }
}

/// A rendezvous server: remembers the observed address of each `HELLO` and, once two peers
/// have registered, tells each the other's observed address (`PEER <addr>`).
#[derive(Debug, Default)]
pub struct Beacon {
    pub peers: Vec<SocketAddr>,
    outbox: Outbox,
}

impl Machine for Beacon {
    fn handle_datagram(
        &mut self,
        _now: Instant,
        _local: SocketAddr,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        if !bytes.starts_with(b"HELLO") {
            return;
        }
        if !self.peers.contains(&from) {
            self.peers.push(from);
        }
        if self.peers.len() >= 2 {
            let (a, b) = (self.peers[0], self.peers[1]);
            self.outbox.push(a, format!("PEER {b}"));
            self.outbox.push(b, format!("PEER {a}"));
        }
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.outbox.pop(buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

/// A hole-punching peer: says `HELLO` to the beacon every second until it learns its peer,
/// then sends `PUNCH` to the peer every 100 ms for three seconds; answers `PUNCH` with `ACK`
/// to the observed source and counts the `ACK`s it gets.
#[derive(Debug)]
pub struct Puncher {
    pub beacon: SocketAddr,
    pub peer: Option<SocketAddr>,
    pub acks: u64,
    pub punches_seen: u64,
    pub punch_until: Option<Instant>,
    next: Option<Instant>,
    outbox: Outbox,
}

impl Puncher {
    pub fn boxed(beacon: SocketAddr) -> impl FnMut(&HostContext) -> Box<dyn Machine> {
        move |ctx| {
            Box::new(Self {
                beacon,
                peer: None,
                acks: 0,
                punches_seen: 0,
                punch_until: None,
                next: Some(ctx.now),
                outbox: Outbox::default(),
            })
        }
    }

    pub fn connected(&self) -> bool {
        self.acks > 0
    }
}

impl Machine for Puncher {
    fn handle_datagram(
        &mut self,
        now: Instant,
        _local: SocketAddr,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        if let Some(text) = bytes.strip_prefix(b"PEER ") {
            let parsed = std::str::from_utf8(text).ok().and_then(|t| t.parse().ok());
            if self.peer.is_none() && parsed.is_some() {
                self.peer = parsed;
                self.punch_until = Some(now + Duration::from_secs(3));
                self.next = Some(now);
            }
        } else if bytes == b"PUNCH" {
            // Peer-reflexive learning: punch back to wherever the peer's punches come from.
            self.punches_seen += 1;
            if self.peer.is_some() && self.peer != Some(from) {
                self.peer = Some(from);
            }
            self.outbox.push(from, &b"ACK"[..]);
        } else if bytes == b"ACK" {
            self.acks += 1;
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match (self.peer, self.punch_until) {
            (Some(peer), Some(until)) if now < until => {
                self.outbox.push(peer, &b"PUNCH"[..]);
                self.next = Some(now + Duration::from_millis(100));
            }
            (Some(_), _) => self.next = None,
            (None, _) => {
                self.outbox.push(self.beacon, &b"HELLO"[..]);
                self.next = Some(now + Duration::from_secs(1));
            }
        }
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.outbox.pop(buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }
}
