//! The rendezvous host: a [`RegistryServer`] on a reliable stream port and a [`BeaconServer`]
//! on UDP, driven in `pilot-sim` through the same calls the tokio daemon makes.
//!
//! # Limitations
//!
//! - Limitation: `pilot-sim` streams report the connecting host's own (private) address as
//!   their source, where a real TCP connection through a NAT shows the NAT's public address.
//!   The registry stores the source IP with the offered port (as v0.5 does), so the
//!   rendezvous translates stream sources through a [`SourceMap`] the test fills with each
//!   NAT'd host's public address.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

use pilot_proto::Transmit;
use pilot_proto::beacon::{BeaconConfig, BeaconServer};
use pilot_proto::registry::{ConnectionId, RegistryConfig, RegistryServer, ServerEvent};
use pilot_proto::wire::beacon_stream::{pop_frame, push_frame};
use pilot_sim::{HostContext, Machine, StreamCommand, StreamEvent, StreamId};

/// Wall-clock anchor of every simulated run (Unix seconds).
pub const UNIX_EPOCH_OFFSET: u64 = 1_796_317_551;

/// The registry's stream port.
pub const REGISTRY_PORT: u16 = 9000;

/// The beacon's UDP port.
pub const BEACON_PORT: u16 = 9001;

/// The beacon's stream port (the agent's fallback when its UDP is blocked): each stream
/// carries beacon datagrams framed as a 2-byte big-endian length and the bytes.
pub const BEACON_STREAM_PORT: u16 = 9002;

/// One beacon stream: the source address the beacon sees for it and its buffers.
#[derive(Debug)]
struct BeaconConn {
    source: SocketAddr,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
}

/// Private host address → the public address its NAT shows, for stream sources.
pub type SourceMap = Rc<RefCell<BTreeMap<Ipv4Addr, Ipv4Addr>>>;

/// Registry and beacon on one host.
#[derive(Debug)]
pub struct Rendezvous {
    /// The registry.
    pub registry: RegistryServer,
    /// The beacon.
    pub beacon: BeaconServer,
    sources: SourceMap,
    closing: Vec<StreamId>,
    beacon_conns: BTreeMap<StreamId, BeaconConn>,
    by_source: BTreeMap<SocketAddr, StreamId>,
}

impl Rendezvous {
    /// A rendezvous with default configurations.
    pub fn new(ctx: &HostContext, sources: SourceMap) -> Self {
        let beacon_config = BeaconConfig {
            beacon_id: 1,
            ..BeaconConfig::default()
        };
        Self {
            registry: RegistryServer::new(RegistryConfig::default(), ctx.now, UNIX_EPOCH_OFFSET),
            beacon: BeaconServer::new(beacon_config, ctx.now, UNIX_EPOCH_OFFSET),
            sources,
            closing: Vec::new(),
            beacon_conns: BTreeMap::new(),
            by_source: BTreeMap::new(),
        }
    }

    /// A beacon stream's source: an address in `fd00::/64` numbered by the stream, so that
    /// the beacon's replies and relay deliveries to it can be told from UDP ones.
    fn stream_source(id: StreamId) -> SocketAddr {
        let ip = std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (id.0 >> 16) as u16, id.0 as u16);
        SocketAddr::from((ip, 9))
    }

    fn on_beacon_stream(&mut self, now: Instant, event: StreamEvent<'_>) {
        match event {
            StreamEvent::Accepted { id, .. } => {
                let source = Self::stream_source(id);
                let conn = BeaconConn {
                    source,
                    inbox: Vec::new(),
                    outbox: Vec::new(),
                };
                self.beacon_conns.insert(id, conn);
                self.by_source.insert(source, id);
            }
            StreamEvent::Data { id, bytes } => self.on_beacon_bytes(now, id, bytes),
            StreamEvent::Closed { id } | StreamEvent::Reset { id } => {
                if let Some(conn) = self.beacon_conns.remove(&id) {
                    self.by_source.remove(&conn.source);
                }
            }
            _ => {}
        }
    }

    fn on_beacon_bytes(&mut self, now: Instant, id: StreamId, bytes: &[u8]) {
        let Some(conn) = self.beacon_conns.get_mut(&id) else {
            return;
        };
        conn.inbox.extend_from_slice(bytes);
        while let Some(datagram) = pop_frame(&mut conn.inbox) {
            self.beacon.handle_datagram(now, conn.source, &datagram);
        }
    }

    fn translate(&self, peer: SocketAddr) -> SocketAddr {
        let SocketAddr::V4(v4) = peer else {
            return peer;
        };
        match self.sources.borrow().get(v4.ip()) {
            Some(public) => SocketAddr::from((*public, v4.port())),
            None => peer,
        }
    }

    fn drain_server_events(&mut self) {
        while let Some(event) = self.registry.poll_event() {
            if let ServerEvent::Close { conn, .. } = event {
                self.closing.push(StreamId(conn.0));
            }
        }
    }
}

impl Machine for Rendezvous {
    fn handle_datagram(
        &mut self,
        now: Instant,
        _local: SocketAddr,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        self.beacon.handle_datagram(now, from, bytes);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.registry.poll_timeout().is_some_and(|at| at <= now) {
            self.registry.handle_timeout(now);
        }
        if self.beacon.poll_timeout().is_some_and(|at| at <= now) {
            self.beacon.handle_timeout(now);
        }
        self.drain_server_events();
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        loop {
            let transmit = self.beacon.poll_transmit(now, buf)?;
            let Some(conn) = self
                .by_source
                .get(&transmit.dst)
                .and_then(|id| self.beacon_conns.get_mut(id))
            else {
                return Some(transmit);
            };
            push_frame(&mut conn.outbox, &buf[..transmit.len]);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [self.registry.poll_timeout(), self.beacon.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle_stream(&mut self, now: Instant, event: StreamEvent<'_>) {
        let beacon_stream = match event {
            StreamEvent::Accepted { local, .. } => local.port() == BEACON_STREAM_PORT,
            StreamEvent::Data { id, .. }
            | StreamEvent::Closed { id }
            | StreamEvent::Reset { id } => self.beacon_conns.contains_key(&id),
            _ => false,
        };
        if beacon_stream {
            return self.on_beacon_stream(now, event);
        }
        match event {
            StreamEvent::Accepted { id, peer, .. } => {
                let peer = self.translate(peer);
                self.registry.handle_connect(now, ConnectionId(id.0), peer)
            }
            StreamEvent::Data { id, bytes } => {
                self.registry.handle_bytes(now, ConnectionId(id.0), bytes)
            }
            StreamEvent::Closed { id } | StreamEvent::Reset { id } => {
                self.registry.handle_disconnect(now, ConnectionId(id.0))
            }
            _ => {}
        }
        self.drain_server_events();
    }

    fn poll_stream(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<StreamCommand> {
        if let Some(transmit) = self.registry.poll_transmit(buf) {
            return Some(StreamCommand::Send {
                id: StreamId(transmit.conn.0),
                len: transmit.len,
            });
        }
        for (&id, conn) in &mut self.beacon_conns {
            if !conn.outbox.is_empty() {
                buf.clear();
                std::mem::swap(buf, &mut conn.outbox);
                return Some(StreamCommand::Send { id, len: buf.len() });
            }
        }
        self.closing.pop().map(|id| StreamCommand::Close { id })
    }
}
