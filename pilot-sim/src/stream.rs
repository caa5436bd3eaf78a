//! Reliable in-order byte streams between hosts: the simulator's model of the registry's TCP.
//!
//! A stream connects a host to a listening port of a host it can reach without NAT traversal
//! (on its own network or a network above it, such as a public registry). Bytes arrive in order,
//! one base path latency after they are sent (never before earlier bytes). A connect is refused
//! when nothing listens, the host is down or a partition cuts the path; an open stream is reset
//! when its peer crashes or a partition is active when bytes are sent or would arrive.
//!
//! # Limitations
//!
//! - Limitation: streams do not cross NATs inbound, do not consume link bandwidth, see no loss
//!   or jitter, and do not appear in packet captures; they model a healthy TCP connection's
//!   ordering and failure modes, not its congestion behaviour.
//! - Limitation: a partition resets a stream at once, where real TCP would retransmit until
//!   its own timeout.

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::HostId;
use crate::machine::{StreamCommand, StreamEvent, StreamId};
use crate::sim::{Attach, Event, Sim};
use crate::trace::TraceKind;

/// A stream event waiting in the queue for its host.
#[derive(Debug)]
pub(crate) enum StreamDelivery {
    Connected {
        conn: u64,
        id: StreamId,
    },
    Accepted {
        conn: u64,
        id: StreamId,
        local: SocketAddrV4,
        peer: SocketAddrV4,
    },
    Data {
        conn: u64,
        id: StreamId,
        bytes: Vec<u8>,
    },
    Closed {
        conn: u64,
        id: StreamId,
    },
    Refused {
        id: StreamId,
    },
    Reset {
        id: StreamId,
    },
}

impl StreamDelivery {
    fn as_event(&self) -> StreamEvent<'_> {
        match self {
            Self::Connected { id, .. } => StreamEvent::Connected { id: *id },
            Self::Accepted {
                id, local, peer, ..
            } => StreamEvent::Accepted {
                id: *id,
                local: SocketAddr::V4(*local),
                peer: SocketAddr::V4(*peer),
            },
            Self::Data { id, bytes, .. } => StreamEvent::Data { id: *id, bytes },
            Self::Closed { id, .. } => StreamEvent::Closed { id: *id },
            Self::Refused { id } => StreamEvent::Refused { id: *id },
            Self::Reset { id } => StreamEvent::Reset { id: *id },
        }
    }
}

/// All open streams.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    conns: BTreeMap<u64, Conn>,
    by_end: BTreeMap<(usize, StreamId), u64>,
    next_conn: u64,
    next_accepted: u64,
}

#[derive(Debug)]
struct Conn {
    ends: [End; 2],
    latency: Duration,
}

#[derive(Debug, Clone, Copy)]
struct End {
    host: usize,
    boot: u32,
    id: StreamId,
    /// When the last byte or close sent towards this end arrives.
    arrives_until: Instant,
    /// False once this end has closed or is gone.
    open: bool,
}

impl Sim {
    /// Carries out one stream command from a machine.
    pub(crate) fn stream_command(&mut self, host: usize, command: StreamCommand, buf: &[u8]) {
        match command {
            StreamCommand::Connect { id, dst } => self.stream_connect(host, id, dst),
            StreamCommand::Send { id, len } => {
                if let Some(bytes) = buf.get(..len) {
                    self.stream_send(host, id, bytes.to_vec());
                }
            }
            StreamCommand::Close { id } => self.stream_close(host, id),
        }
    }

    fn stream_connect(&mut self, host: usize, id: StreamId, dst: SocketAddr) {
        let refuse = |sim: &mut Self, after: Duration| {
            let boot = sim.hosts[host].boot;
            let delivery = StreamDelivery::Refused { id };
            sim.push_event(
                sim.now + after,
                Event::Stream {
                    host,
                    boot,
                    delivery,
                },
            );
        };
        let SocketAddr::V4(dst) = dst else {
            return refuse(self, Duration::ZERO);
        };
        if id.is_accepted() || self.streams.by_end.contains_key(&(host, id)) {
            return refuse(self, Duration::ZERO);
        }
        let Some(peer) = self.stream_target(host, *dst.ip()) else {
            return refuse(self, Duration::ZERO);
        };
        let latency = self.path_latency(host, peer);
        let listening = self.hosts[peer].listen_ports.contains(&dst.port());
        let reachable = !self.is_blocked(host, peer) && !self.is_blocked(peer, host);
        if self.hosts[peer].machine.is_none() || !listening || !reachable {
            return refuse(self, latency * 2);
        }
        self.open_stream(host, id, peer, dst, latency);
    }

    fn open_stream(
        &mut self,
        host: usize,
        id: StreamId,
        peer: usize,
        dst: SocketAddrV4,
        latency: Duration,
    ) {
        let conn = self.streams.next_conn;
        self.streams.next_conn += 1;
        let accepted = StreamId(StreamId::ACCEPTED_BASE + self.streams.next_accepted);
        self.streams.next_accepted += 1;
        let (accept_at, connect_at) = (self.now + latency, self.now + latency * 2);
        let local_port = 49_152 + (conn % 16_384) as u16;
        let source = SocketAddrV4::new(self.hosts[host].addr, local_port);

        let end = |host: usize, id, arrives_until| End {
            host,
            boot: self.hosts[host].boot,
            id,
            arrives_until,
            open: true,
        };
        let ends = [end(host, id, connect_at), end(peer, accepted, accept_at)];
        self.streams.conns.insert(conn, Conn { ends, latency });
        self.streams.by_end.insert((host, id), conn);
        self.streams.by_end.insert((peer, accepted), conn);

        let accept = StreamDelivery::Accepted {
            conn,
            id: accepted,
            local: dst,
            peer: source,
        };
        self.push_stream(peer, ends[1].boot, accept_at, accept);
        self.push_stream(
            host,
            ends[0].boot,
            connect_at,
            StreamDelivery::Connected { conn, id },
        );
    }

    fn stream_send(&mut self, host: usize, id: StreamId, bytes: Vec<u8>) {
        let Some((conn, side)) = self.stream_end(host, id) else {
            return;
        };
        let (peer, latency) = {
            let c = &self.streams.conns[&conn];
            (c.ends[1 - side], c.latency)
        };
        if !peer.open {
            return;
        }
        // Limitation: a partition resets at once; real TCP would retransmit until it gives up.
        if self.is_blocked(host, peer.host) {
            return self.reset_stream(conn);
        }
        let at = (self.now + latency).max(peer.arrives_until);
        self.set_arrival(conn, 1 - side, at);
        self.push_stream(
            peer.host,
            peer.boot,
            at,
            StreamDelivery::Data {
                conn,
                id: peer.id,
                bytes,
            },
        );
    }

    fn stream_close(&mut self, host: usize, id: StreamId) {
        let Some((conn, side)) = self.stream_end(host, id) else {
            return;
        };
        self.streams.by_end.remove(&(host, id));
        let Some(c) = self.streams.conns.get_mut(&conn) else {
            return;
        };
        c.ends[side].open = false;
        let (peer, latency) = (c.ends[1 - side], c.latency);
        if !peer.open {
            self.streams.conns.remove(&conn);
            return;
        }
        let at = (self.now + latency).max(peer.arrives_until);
        self.push_stream(
            peer.host,
            peer.boot,
            at,
            StreamDelivery::Closed { conn, id: peer.id },
        );
    }

    /// Resets every stream of a crashed host; peers learn one path latency later.
    pub(crate) fn streams_crash(&mut self, host: usize) {
        let conns: Vec<u64> = self
            .streams
            .conns
            .iter()
            .filter(|(_, c)| c.ends.iter().any(|end| end.host == host))
            .map(|(conn, _)| *conn)
            .collect();
        for conn in conns {
            self.reset_stream(conn);
        }
    }

    /// Removes a stream and tells both open ends it was reset.
    fn reset_stream(&mut self, conn: u64) {
        let Some(c) = self.streams.conns.remove(&conn) else {
            return;
        };
        for end in c.ends {
            self.streams.by_end.remove(&(end.host, end.id));
            if end.open {
                let delivery = StreamDelivery::Reset { id: end.id };
                self.push_stream(end.host, end.boot, self.now + c.latency, delivery);
            }
        }
    }

    /// Hands a queued stream event to its machine if the host (same boot) and stream live.
    pub(crate) fn on_stream_delivery(&mut self, host: usize, boot: u32, delivery: StreamDelivery) {
        if self.hosts[host].boot != boot || self.hosts[host].machine.is_none() {
            return;
        }
        if !self.stream_deliverable(host, &delivery) {
            return;
        }
        if let StreamDelivery::Closed { conn, id } = delivery {
            self.finish_closed(conn, host, id);
        }

        let event = delivery.as_event();
        let (id, what, len) = describe(&event);
        self.record(
            None,
            TraceKind::Stream {
                host: HostId(host),
                id,
                what,
                len,
            },
        );
        if let Some(machine) = self.hosts[host].machine.as_deref_mut() {
            machine.handle_stream(self.now, event);
        }
        self.drive(host);
    }

    /// Returns whether a queued stream event still applies; data meeting a partition resets
    /// the stream instead.
    fn stream_deliverable(&mut self, host: usize, delivery: &StreamDelivery) -> bool {
        let (conn, receiver) = match delivery {
            StreamDelivery::Refused { .. } | StreamDelivery::Reset { .. } => return true,
            StreamDelivery::Connected { conn, .. }
            | StreamDelivery::Accepted { conn, .. }
            | StreamDelivery::Closed { conn, .. } => return self.streams.conns.contains_key(conn),
            StreamDelivery::Data { conn, id, .. } => (*conn, *id),
        };
        let Some(c) = self.streams.conns.get(&conn) else {
            return false;
        };
        let sender = c
            .ends
            .iter()
            .find(|end| (end.host, end.id) != (host, receiver));
        if sender.is_some_and(|sender| self.is_blocked(sender.host, host)) {
            self.reset_stream(conn);
            return false;
        }
        true
    }

    /// Once the peer's close arrives the stream is over for both sides.
    fn finish_closed(&mut self, conn: u64, host: usize, id: StreamId) {
        self.streams.conns.remove(&conn);
        self.streams.by_end.remove(&(host, id));
    }

    fn stream_end(&self, host: usize, id: StreamId) -> Option<(u64, usize)> {
        let conn = *self.streams.by_end.get(&(host, id))?;
        let c = self.streams.conns.get(&conn)?;
        let side = c
            .ends
            .iter()
            .position(|end| end.host == host && end.id == id)?;
        c.ends[side].open.then_some((conn, side))
    }

    fn set_arrival(&mut self, conn: u64, side: usize, at: Instant) {
        if let Some(c) = self.streams.conns.get_mut(&conn) {
            c.ends[side].arrives_until = at;
        }
    }

    fn push_stream(&mut self, host: usize, boot: u32, at: Instant, delivery: StreamDelivery) {
        self.push_event(
            at,
            Event::Stream {
                host,
                boot,
                delivery,
            },
        );
    }

    /// Finds the host at `ip` on `host`'s network or any network above it.
    // Limitation: streams never cross a NAT inbound, so a listener behind a NAT is unreachable.
    fn stream_target(&self, host: usize, ip: std::net::Ipv4Addr) -> Option<usize> {
        let mut net = self.hosts[host].net;
        loop {
            if let Some(Attach::Host(target)) = self.nets[net].addrs.get(&ip) {
                return Some(*target);
            }
            let nat = self.nets[net].nat?;
            net = self.nats[nat].outside_net;
        }
    }

    /// The base one-way latency from `host` up through its NATs to `peer`'s network and down.
    fn path_latency(&self, host: usize, peer: usize) -> Duration {
        let mut total = self.hosts[host].up.config.latency + self.hosts[peer].down.config.latency;
        let mut net = self.hosts[host].net;
        while net != self.hosts[peer].net {
            let Some(nat) = self.nets[net].nat else { break };
            total += self.nats[nat].up.config.latency;
            net = self.nats[nat].outside_net;
        }
        total
    }
}

fn describe(event: &StreamEvent<'_>) -> (StreamId, &'static str, usize) {
    match *event {
        StreamEvent::Connected { id } => (id, "connected", 0),
        StreamEvent::Accepted { id, .. } => (id, "accepted", 0),
        StreamEvent::Data { id, bytes } => (id, "data", bytes.len()),
        StreamEvent::Closed { id } => (id, "closed", 0),
        StreamEvent::Refused { id } => (id, "refused", 0),
        StreamEvent::Reset { id } => (id, "reset", 0),
    }
}
