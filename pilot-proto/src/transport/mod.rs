//! The reliable stream transport, datagrams and virtual ports of Pilot Protocol v0.5, sans-IO.
//!
//! A [`Transport`] owns every stream connection and listener of one node. It sees packets only
//! after the tunnel has decrypted and parsed them, and produces whole serialized packets for the
//! tunnel to seal. It reads no clock (`now` is passed in) and draws randomness (initial sequence
//! numbers, ephemeral ports) from the [`Rng`] it was given.
//!
//! # Driving it
//!
//! - Inputs: [`handle_packet`](Transport::handle_packet) for each inbound packet whose protocol
//!   is stream or datagram, [`handle_timeout`](Transport::handle_timeout) when the deadline from
//!   [`poll_timeout`](Transport::poll_timeout) passes, and the application calls (`listen`,
//!   `connect`, `send`, `recv`, `close`, `abort`, `set_nodelay`, `send_datagram`).
//! - After any input: drain [`poll_packet`](Transport::poll_packet) until `None` (each call
//!   writes one packet, header and payload, checksum filled, and names the destination node),
//!   then [`poll_event`](Transport::poll_event), then re-arm the timer from `poll_timeout`.
//! - Time must not go backwards between calls.
//!
//! The design, every timer, the segment size, ISNs, the SACK-prefix handling, the bounds and all
//! differences from v0.5 are described in `docs/design/transport.md`.
//!
//! # Limitations
//!
//! - Simultaneous open (both sides sending SYN to each other at once) is not supported: a SYN
//!   arriving in SYN_SENT is ignored and the connect attempt times out or is retried.
//! - Switching a peer to the beacon relay after three unanswered SYNs (v0.5) is the node's job;
//!   the transport only retransmits the SYN.
//! - SYN floods are bounded by the accept backlog and connection limits, not by v0.5's per-source
//!   token buckets.
//! - Broadcast needs the member list of the network from the caller
//!   ([`Transport::broadcast_datagram`]); the transport keeps no membership.
//! - Congestion control is Reno-like; under random loss goodput follows about
//!   1.22·MSS/(RTT·√p) (see `docs/design/transport-goodput.md`).
//! - A v0.5 FIN that overtakes data v0.5 will never retransmit leaves the connection waiting
//!   until the idle timeout.
//! - `poll_timeout` and `handle_timeout` scan every connection, so their cost grows linearly
//!   with the number of connections (at most `max_connections`).

mod config;
mod congestion;
mod conn;
mod datagram;
mod ports;
mod recv;
mod rtt;
mod scoreboard;
mod send;
mod seq;
mod timer;
mod types;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

pub use config::{DEFAULT_SEGMENT_SIZE, TransportConfig, WINDOW_UNIT};
pub use types::{
    CloseReason, ConnId, ConnState, ConnStats, ConnectError, DatagramError, ListenError,
    StreamError, TransportEvent, TransportStats,
};

use conn::input::InputCtx;
use conn::output::{OutHeader, OutKind};
use conn::{Conn, Events};
use ports::Ports;

use crate::rng::Rng;
use crate::wire::addr::{Addr, AddrPort};
use crate::wire::packet::{Flags, HEADER_LEN, Packet, PacketRepr, Protocol, VERSION};

/// A packet built outside any connection (datagram, reset, pong), waiting for `poll_packet`.
struct Queued {
    dst: Addr,
    protocol: Protocol,
    flags: Flags,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    payload: Vec<u8>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the payload.
        f.debug_struct("Queued")
            .field("dst", &self.dst)
            .field("protocol", &self.protocol)
            .field("flags", &self.flags)
            .field("len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// All stream connections, listeners and datagram traffic of one node.
#[derive(Debug)]
pub struct Transport {
    local: Addr,
    config: TransportConfig,
    rng: Rng,
    conns: BTreeMap<ConnId, Conn>,
    tuples: BTreeMap<(u16, AddrPort), ConnId>,
    ports: Ports,
    next_id: u64,
    /// Connections that may have something to send, in round-robin order.
    ready: VecDeque<ConnId>,
    queued: VecDeque<Queued>,
    events: Events,
    /// Buffered bytes per connection as last accounted, and their sum.
    accounted: BTreeMap<ConnId, usize>,
    buffered: usize,
    /// Connections counted in their listener's half-open total.
    half_open: BTreeMap<ConnId, u16>,
    pending_datagrams: usize,
    stats: TransportStats,
}

impl Transport {
    /// A transport for the node at `local`.
    pub fn new(local: Addr, config: TransportConfig, rng: Rng) -> Self {
        Self {
            local,
            config,
            rng,
            conns: BTreeMap::new(),
            tuples: BTreeMap::new(),
            ports: Ports::default(),
            next_id: 1,
            ready: VecDeque::new(),
            queued: VecDeque::new(),
            events: VecDeque::new(),
            accounted: BTreeMap::new(),
            buffered: 0,
            half_open: BTreeMap::new(),
            pending_datagrams: 0,
            stats: TransportStats::default(),
        }
    }

    /// The node address this transport speaks for.
    pub fn local_addr(&self) -> Addr {
        self.local
    }

    /// Accepts connections on `port`; each completed handshake raises
    /// [`TransportEvent::Incoming`].
    ///
    /// # Errors
    ///
    /// [`ListenError::PortInUse`] if the port already listens.
    pub fn listen(&mut self, port: u16) -> Result<(), ListenError> {
        if self.ports.listen(port) {
            Ok(())
        } else {
            Err(ListenError::PortInUse(port))
        }
    }

    /// Stops accepting on `port`; established connections continue. Returns whether it
    /// listened.
    pub fn unlisten(&mut self, port: u16) -> bool {
        self.ports.unlisten(port)
    }

    /// Opens a connection to `remote` from a fresh ephemeral port. The SYN goes out on the next
    /// `poll_packet`; [`TransportEvent::Connected`] or [`TransportEvent::Closed`] follows.
    /// Data may be sent before the handshake completes; it is buffered.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Broadcast`], [`ConnectError::TooManyConnections`] or
    /// [`ConnectError::NoEphemeralPort`].
    pub fn connect(&mut self, now: Instant, remote: AddrPort) -> Result<ConnId, ConnectError> {
        if remote.addr.is_broadcast() {
            return Err(ConnectError::Broadcast);
        }
        if self.conns.len() >= self.config.max_connections {
            return Err(ConnectError::TooManyConnections);
        }
        let port = self
            .ports
            .ephemeral(&mut self.rng)
            .ok_or(ConnectError::NoEphemeralPort)?;
        let id = self.allocate_id();
        let isn = self.rng.next_u32();
        let conn = Conn::dial(id, port, remote, isn, &self.config);
        self.insert(conn);
        tracing::debug!(%id, port, "connecting");
        let _ = now;
        Ok(id)
    }

    /// Queues up to the free send-buffer space of `data`; returns the bytes accepted.
    ///
    /// # Errors
    ///
    /// [`StreamError::WouldBlock`] when no byte fits (wait for `Writable`),
    /// [`StreamError::Closed`] after `close` or once the connection is finishing,
    /// [`StreamError::UnknownConnection`] once it is forgotten (right after an abnormal
    /// `Closed` event, or when TIME_WAIT ends).
    pub fn send(&mut self, now: Instant, conn: ConnId, data: &[u8]) -> Result<usize, StreamError> {
        let budget = self.config.max_buffered_bytes.saturating_sub(self.buffered);
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or(StreamError::UnknownConnection)?;
        let result = c.write(data, budget);
        self.settle(conn, true);
        let _ = now;
        result
    }

    /// Reads in-order bytes into `buf`. `Ok(0)` with a non-empty `buf` is the end of the
    /// stream. Reading frees window; an update is sent if it grew enough to matter.
    ///
    /// # Errors
    ///
    /// [`StreamError::WouldBlock`] when nothing is readable yet,
    /// [`StreamError::UnknownConnection`] once the connection is forgotten (right after an
    /// abnormal `Closed` event, or when TIME_WAIT ends; unread data goes with it).
    pub fn recv(&mut self, conn: ConnId, buf: &mut [u8]) -> Result<usize, StreamError> {
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or(StreamError::UnknownConnection)?;
        let result = c.read(buf);
        if let Ok(n) = result {
            self.stats.stream_bytes_received += n as u64;
        }
        self.settle(conn, true);
        result
    }

    /// Closes our sending side: the FIN follows every queued byte once they are acknowledged.
    /// Reading stays possible until the peer's FIN. Unknown connections are ignored.
    pub fn close(&mut self, now: Instant, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.close();
            let _ = now;
            self.settle(conn, true);
        }
    }

    /// Resets the connection at once; queued data is discarded. Raises `Closed` with
    /// [`CloseReason::Aborted`].
    pub fn abort(&mut self, now: Instant, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.abort(&mut self.events);
            self.settle(conn, true);
        }
        let _ = now;
    }

    /// Switches Nagle coalescing off (`true`) or back on for `conn`.
    pub fn set_nodelay(&mut self, conn: ConnId, nodelay: bool) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.set_nodelay(nodelay);
            self.settle(conn, true);
        }
    }

    /// The state of `conn`, or `None` once it is forgotten.
    pub fn state(&self, conn: ConnId) -> Option<ConnState> {
        self.conns.get(&conn).map(Conn::state)
    }

    /// A diagnostic snapshot of `conn`.
    pub fn conn_stats(&self, conn: ConnId) -> Option<ConnStats> {
        self.conns.get(&conn).map(Conn::stats)
    }

    /// Local port and remote address of `conn`.
    pub fn endpoints(&self, conn: ConnId) -> Option<(u16, AddrPort)> {
        self.conns.get(&conn).map(|c| (c.local_port, c.remote))
    }

    /// Processes one inbound packet (already decrypted and parsed). Stream packets go to their
    /// connection or listener, datagrams become events, control pings to port 0 are answered.
    /// Packets for another node, for no connection, or of another protocol are counted and
    /// dropped; a stray stream packet may be answered with a reset.
    pub fn handle_packet(&mut self, now: Instant, packet: &PacketRepr<'_>) {
        self.stats.packets_received += 1;
        let _span = tracing::trace_span!("transport_in", len = packet.payload.len()).entered();
        match packet.protocol {
            Protocol::Stream if packet.dst == self.local => self.input_stream(now, packet),
            Protocol::Datagram if self.is_for_us(packet.dst) => self.input_datagram(packet),
            Protocol::Control if packet.dst == self.local => self.input_control(packet),
            _ => self.stats.packets_dropped += 1,
        }
    }

    /// Writes the next packet (header and payload, checksum filled) into `buf`, replacing its
    /// contents, and returns the destination node; `None` when nothing is due.
    #[must_use = "a packet was written into the buffer and must be sent"]
    pub fn poll_packet(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Addr> {
        buf.clear();
        if let Some(queued) = self.queued.pop_front() {
            return self.emit_queued(&queued, buf);
        }
        while let Some(id) = self.ready.pop_front() {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            conn.ready_queued = false;
            buf.clear();
            buf.resize(HEADER_LEN, 0);
            if let Some(header) = conn.output(now, &self.config, buf) {
                let endpoints = (conn.local_port, conn.remote);
                self.count_output(&header, buf.len() - HEADER_LEN);
                write_header(buf, self.local, endpoints, &header);
                self.settle(id, true);
                return Some(endpoints.1.addr);
            }
            self.settle(id, false);
        }
        buf.clear();
        None
    }

    /// The next application event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<TransportEvent> {
        let event = self.events.pop_front()?;
        if matches!(event, TransportEvent::Datagram { .. }) {
            self.pending_datagrams = self.pending_datagrams.saturating_sub(1);
        }
        Some(event)
    }

    /// When `handle_timeout` should next be called.
    // Limitation: a linear scan over connections; a timer wheel would make it constant-time.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns.values().filter_map(Conn::next_timeout).min()
    }

    /// Services every timer that expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.next_timeout().is_some_and(|t| t <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.timeout(now, &self.config, &mut self.events);
                self.settle(id, true);
            }
        }
    }

    /// Counters and gauges.
    pub fn stats(&self) -> TransportStats {
        let mut stats = self.stats;
        stats.connections_open = self.conns.len() as u64;
        stats.buffered_bytes = self.buffered as u64;
        stats
    }

    /// Events held before new connections are refused: a few per connection plus the
    /// datagram allowance, so an application that never polls cannot grow the queue forever.
    fn event_cap(&self) -> usize {
        4 * self.config.max_connections + self.config.max_pending_datagrams
    }

    fn is_for_us(&self, dst: Addr) -> bool {
        dst == self.local || (dst.is_broadcast() && dst.network == self.local.network)
    }

    fn allocate_id(&mut self) -> ConnId {
        let id = ConnId(self.next_id);
        self.next_id += 1;
        id
    }

    fn insert(&mut self, conn: Conn) {
        let id = conn.id;
        self.ports.add(conn.local_port);
        self.tuples.insert((conn.local_port, conn.remote), id);
        self.conns.insert(id, conn);
        self.stats.connections_opened += 1;
        self.settle(id, true);
    }

    fn input_stream(&mut self, now: Instant, packet: &PacketRepr<'_>) {
        let key = (packet.dst_port, packet.src_addr_port());
        if let Some(&id) = self.tuples.get(&key) {
            if !self.replaces_time_wait(id, packet) {
                self.input_conn(id, now, packet);
                return;
            }
            self.remove(id);
        }
        let flags = packet.flags;
        if flags.contains(Flags::SYN) && !flags.contains(Flags::ACK) && !flags.contains(Flags::RST)
        {
            self.accept_syn(now, packet);
        } else {
            self.stats.packets_dropped += 1;
            if !flags.contains(Flags::RST) && !flags.contains(Flags::FIN) {
                self.queue_reset(packet);
            }
        }
    }

    /// A new SYN on a 4-tuple lingering in TIME_WAIT starts a new connection (v0.5 keeps
    /// answering it as a retransmission of the old one).
    fn replaces_time_wait(&self, id: ConnId, packet: &PacketRepr<'_>) -> bool {
        let syn = packet.flags.contains(Flags::SYN) && !packet.flags.contains(Flags::ACK);
        syn && self
            .conns
            .get(&id)
            .is_some_and(|c| c.state() == ConnState::TimeWait)
    }

    fn input_conn(&mut self, id: ConnId, now: Instant, packet: &PacketRepr<'_>) {
        let budget = self.config.max_buffered_bytes.saturating_sub(self.buffered);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let mut ctx = InputCtx {
            now,
            config: &self.config,
            budget,
            events: &mut self.events,
        };
        conn.input(packet, &mut ctx);
        self.settle(id, true);
    }

    fn accept_syn(&mut self, now: Instant, packet: &PacketRepr<'_>) {
        let port = packet.dst_port;
        let full = self.conns.len() >= self.config.max_connections
            || self.ports.count(port) >= self.config.max_connections_per_port;
        let backlog = self.config.accept_backlog;
        if self.events.len() >= self.event_cap() {
            // The application is not draining events; take no new connections until it does.
            self.stats.packets_dropped += 1;
            return;
        }
        let Some(listener) = self.ports.listener(port) else {
            self.queue_reset(packet);
            return;
        };
        // Limitation: there is no per-source SYN rate limit (v0.5 has token buckets); a flood
        // costs at most the backlog of half-open entries and the connection limits.
        if listener.half_open >= backlog {
            self.stats.packets_dropped += 1;
            return;
        }
        if full {
            self.queue_reset(packet);
            return;
        }
        listener.half_open += 1;
        let id = self.allocate_id();
        self.half_open.insert(id, port);
        let isn = self.rng.next_u32();
        let syn = (packet.seq, packet.window);
        let conn = Conn::accept(id, port, packet.src_addr_port(), isn, syn, &self.config);
        tracing::debug!(%id, port, "accepting");
        self.insert(conn);
        let _ = now;
    }

    /// Answers a stray packet with a reset (RFC 793 §3.4 form, which v0.5 also accepts).
    fn queue_reset(&mut self, packet: &PacketRepr<'_>) {
        let (flags, seq, ack) = if packet.flags.contains(Flags::ACK) {
            (Flags::RST, packet.ack, 0)
        } else {
            let syn = u32::from(packet.flags.contains(Flags::SYN));
            let len = packet.payload.len() as u32;
            (
                Flags::RST | Flags::ACK,
                0,
                packet.seq.wrapping_add(len).wrapping_add(syn),
            )
        };
        self.enqueue(Queued {
            dst: packet.src,
            protocol: Protocol::Stream,
            flags,
            src_port: packet.dst_port,
            dst_port: packet.src_port,
            seq,
            ack,
            payload: Vec::new(),
        });
    }

    /// Queues a packet built outside a connection; false if the queue is full.
    fn enqueue(&mut self, queued: Queued) -> bool {
        if self.queued.len() >= self.config.max_queued_packets {
            return false;
        }
        self.queued.push_back(queued);
        true
    }

    fn emit_queued(&mut self, q: &Queued, buf: &mut Vec<u8>) -> Option<Addr> {
        let repr = PacketRepr {
            version: VERSION,
            flags: q.flags,
            protocol: q.protocol,
            src: self.local,
            dst: q.dst,
            src_port: q.src_port,
            dst_port: q.dst_port,
            seq: q.seq,
            ack: q.ack,
            window: 0,
            payload: &q.payload,
        };
        buf.resize(repr.buffer_len(), 0);
        // The buffer is sized from `buffer_len` and payloads are bounded by the datagram limit,
        // which never exceeds the header's 65,535 bytes, so emitting cannot fail.
        repr.emit(buf).ok()?;
        self.stats.packets_sent += 1;
        if q.flags.contains(Flags::RST) {
            self.stats.resets_sent += 1;
        }
        Some(q.dst)
    }

    fn count_output(&mut self, header: &OutHeader, payload: usize) {
        self.stats.packets_sent += 1;
        match header.kind {
            OutKind::Data | OutKind::Retransmit => {
                self.stats.segments_sent += 1;
                self.stats.stream_bytes_sent += payload as u64;
                if header.kind == OutKind::Retransmit {
                    self.stats.segments_retransmitted += 1;
                }
            }
            OutKind::Reset => self.stats.resets_sent += 1,
            OutKind::Control => {}
        }
    }

    /// Book-keeping after any operation on a connection: memory accounting, the listener's
    /// half-open count, the ready queue, and forgetting it once finished.
    fn settle(&mut self, id: ConnId, ready: bool) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let now_buffered = conn.buffered();
        let before = self.accounted.insert(id, now_buffered).unwrap_or(0);
        self.buffered = self.buffered + now_buffered - before;
        let state = conn.state();
        if ready && !conn.ready_queued {
            conn.ready_queued = true;
            self.ready.push_back(id);
        }
        let finished = conn.is_finished();
        if state != ConnState::SynReceived
            && let Some(port) = self.half_open.remove(&id)
            && let Some(listener) = self.ports.listener(port)
        {
            listener.half_open = listener.half_open.saturating_sub(1);
        }
        if finished {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: ConnId) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        tracing::debug!(%id, state = ?conn.state(), "forgetting connection");
        self.ports.remove(conn.local_port);
        self.tuples.remove(&(conn.local_port, conn.remote));
        let before = self.accounted.remove(&id).unwrap_or(0);
        self.buffered -= before;
        if let Some(port) = self.half_open.remove(&id)
            && let Some(listener) = self.ports.listener(port)
        {
            listener.half_open = listener.half_open.saturating_sub(1);
        }
    }
}

/// Fills in the 34-byte header in front of the payload already in `buf`.
fn write_header(buf: &mut [u8], local: Addr, endpoints: (u16, AddrPort), header: &OutHeader) {
    let payload_len = buf.len() - HEADER_LEN;
    let Ok(mut packet) = Packet::new_unverified(buf) else {
        // Unreachable: the caller reserved HEADER_LEN bytes before the payload.
        return;
    };
    packet.set_version_flags(VERSION, header.flags);
    packet.set_protocol(Protocol::Stream);
    // Payloads are one MSS (clamped to 65,535) or a SACK blob.
    packet.set_payload_len(payload_len as u16);
    packet.set_src_addr(local);
    packet.set_dst_addr(endpoints.1.addr);
    packet.set_src_port(endpoints.0);
    packet.set_dst_port(endpoints.1.port);
    packet.set_seq(header.seq);
    packet.set_ack(header.ack);
    packet.set_window(header.window);
    packet.fill_checksum();
}
