//! The node: one identity and one UDP socket, composing tunnel, transport and built-in services.
//!
//! A [`Node`] owns a [`Tunnel`] (peer table, key exchange, sealing) and a [`Transport`]
//! (streams, datagrams, ports), routes packets between them, answers the built-in services
//! and delivers packets addressed to itself without touching the network. A driver that uses
//! its own event broker can skip even the loopback streams with an in-process broker client
//! ([`Node::open_broker_client`]).
//!
//! # Driving it
//!
//! After any `handle_*` call or application command: drain [`Node::poll_transmit`] until
//! `None`, then [`Node::poll_event`] until `None`, then re-arm the timer from
//! [`Node::poll_timeout`] and call [`Node::handle_timeout`] when it passes.
//!
//! # Limitations
//!
//! - Peers are added by the driver ([`Node::add_peer`]) from registry lookups; the node does
//!   not yet run the registry client or the beacon client itself, so non-tunnel datagrams are
//!   surfaced as [`NodeEvent::NonTunnel`] for the driver to route.
//! - Control-protocol packets (v0.5 ping to port 0) are surfaced only when they arrived sealed
//!   from a keyed peer ([`NodeEvent::Control`]); plaintext ones are counted and dropped.

mod config;
mod control;
mod event;
mod local;
mod services;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use ed25519_dalek::VerifyingKey;

pub use config::NodeConfig;
pub use control::MAX_CONTROL_PAYLOAD;
pub use event::{NodeError, NodeEvent, NodeStats};
pub use local::BrokerClient;

use crate::Transmit;
use crate::identity::Identity;
use crate::pubsub::log::{LogRecord, Recovery};
use crate::pubsub::{Seq, Topic};
use crate::rng::Rng;
use crate::transport::{ConnId, Transport};
use crate::tunnel::{self, DropReason, Inbound, SendError, Tunnel};
use crate::wire::addr::{Addr, AddrPort};
use crate::wire::packet::{Packet, PacketRepr, Protocol};
use services::Services;

/// Rounds of "move packets between layers" one pump may run before yielding; each round
/// drains every queue, so this only bounds pathological ping-pong between local services.
const MAX_PUMP_ROUNDS: usize = 64;

/// One Pilot Protocol node. See the module docs for the drive loop.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    address: Addr,
    tunnel: Tunnel,
    transport: Transport,
    services: Services,
    loopback: VecDeque<Vec<u8>>,
    events: VecDeque<NodeEvent>,
    scratch: Vec<u8>,
    stats: NodeStats,
    last_now: Instant,
}

impl Node {
    /// Creates a node with its identity, its virtual address, and a seed for every random
    /// choice it will make (keys, sequence numbers, ports).
    pub fn new(
        config: NodeConfig,
        identity: Identity,
        address: Addr,
        seed: [u8; 32],
        now: Instant,
    ) -> Self {
        let mut rng = Rng::from_seed(seed);
        let tunnel = Tunnel::new(config.tunnel.clone(), identity, address.node, rng.fork());
        let transport = Transport::new(address, config.transport.clone(), rng.fork());
        let mut node = Self {
            services: Services::new(&config),
            config,
            address,
            tunnel,
            transport,
            loopback: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::with_capacity(2048),
            stats: NodeStats::default(),
            last_now: now,
        };
        node.listen_services();
        node
    }

    /// This node's virtual address.
    pub fn address(&self) -> Addr {
        self.address
    }

    /// Makes `peer` reachable at `endpoint`, with its registry-published signing key, and
    /// starts the key exchange. Calling it again updates the endpoint and key.
    ///
    /// # Errors
    /// [`NodeError::Peer`] when the peer table is full or `peer` is this node.
    pub fn add_peer(
        &mut self,
        now: Instant,
        peer: Addr,
        endpoint: SocketAddr,
        signing_key: Option<VerifyingKey>,
    ) -> Result<(), NodeError> {
        let now = self.clamp(now);
        self.tunnel
            .add_peer(now, peer.node, endpoint, signing_key)?;
        self.pump(now);
        Ok(())
    }

    /// Points an existing peer's frames at a new endpoint (a NAT traversal decision).
    ///
    /// # Errors
    /// [`NodeError::Peer`] when `peer` is unknown.
    pub fn set_peer_endpoint(
        &mut self,
        now: Instant,
        peer: Addr,
        endpoint: SocketAddr,
    ) -> Result<(), NodeError> {
        let now = self.clamp(now);
        self.tunnel.set_endpoint(now, peer.node, endpoint)?;
        Ok(())
    }

    /// Whether the tunnel to `peer` has a session key.
    pub fn is_peer_keyed(&self, peer: Addr) -> bool {
        matches!(
            self.tunnel.peer_state(peer.node),
            Some(tunnel::PeerState::Keyed | tunnel::PeerState::Confirmed)
        )
    }

    /// Handles one UDP datagram received on the node's socket. The buffer is decrypted in
    /// place. Never fails: bad input is dropped and counted.
    ///
    /// Returns the peer's node id when the datagram was a sealed frame that authenticated under
    /// a session with that peer (the evidence NAT traversal needs that `from` reaches it).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> Option<u32> {
        let now = self.clamp(now);
        let mut authenticated = None;
        match self.tunnel.handle_datagram(now, from, datagram) {
            Inbound::Packet {
                node,
                packet,
                encrypted,
            } => {
                authenticated = encrypted.then_some(node);
                if encrypted && control::is_control(packet) {
                    self.on_control(from, node, packet);
                } else {
                    Self::route_inbound(
                        &mut self.transport,
                        &mut self.stats,
                        now,
                        self.address,
                        packet,
                    );
                }
            }
            Inbound::NotTunnel => self.push_event(NodeEvent::NonTunnel {
                from,
                bytes: datagram.to_vec(),
            }),
            Inbound::Consumed | Inbound::Dropped(_) => {}
        }
        self.pump(now);
        authenticated
    }

    /// Fires every timer that is due. Call when the instant from `poll_timeout` has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        self.tunnel.handle_timeout(now);
        self.transport.handle_timeout(now);
        if let Some(broker) = &mut self.services.broker {
            broker.handle_timeout(now);
        }
        self.pump(now);
    }

    /// Reports that every event-log record up to and including `through` is durable, so the
    /// broker may deliver and acknowledge those events.
    pub fn handle_persisted(&mut self, now: Instant, through: Seq) {
        let now = self.clamp(now);
        if let Some(broker) = &mut self.services.broker {
            broker.handle_persisted(now, through);
        }
        self.services.resume(now, &mut self.transport);
        self.pump(now);
    }

    /// Refills the broker's retained history from the records recovered from the event log at
    /// start-up (see `pubsub::log::recover`). Call before any client connects.
    pub fn restore_log(&mut self, now: Instant, records: Vec<LogRecord>) {
        let now = self.clamp(now);
        if let Some(broker) = &mut self.services.broker {
            broker.restore(now, records);
        }
    }

    /// Like [`Node::restore_log`], from a whole [`Recovery`]: numbering also resumes after a
    /// marker, so it survives a compaction that left no record.
    pub fn restore_log_from(&mut self, now: Instant, recovery: Recovery) {
        let now = self.clamp(now);
        if let Some(broker) = &mut self.services.broker {
            broker.restore_from(now, recovery);
        }
    }

    /// Every durable subscription's position (see `pubsub::durable`), for the driver to save
    /// now and then; `None` when the broker is off.
    pub fn durables_snapshot(&self) -> Option<Vec<u8>> {
        self.services.broker.as_ref().map(|b| b.durables_snapshot())
    }

    /// Loads durable positions saved by [`Node::durables_snapshot`], after the log was restored
    /// and before any client connects.
    pub fn restore_durables(&mut self, records: Vec<crate::pubsub::durable::DurableRecord>) {
        if let Some(broker) = &mut self.services.broker {
            broker.restore_durables(records);
        }
    }

    /// Publishes an event from the node itself to its own broker (used by bridges such as the
    /// inbound webhook receiver). Returns the sequence number assigned.
    ///
    /// # Errors
    /// [`NodeError::NoBroker`] when the broker is off, or the broker's refusal.
    pub fn publish_local(
        &mut self,
        now: Instant,
        topic: &Topic,
        payload: &[u8],
    ) -> Result<Seq, NodeError> {
        let now = self.clamp(now);
        let broker = self.services.broker.as_mut().ok_or(NodeError::NoBroker)?;
        let seq = broker.publish_local(now, topic, payload)?;
        self.pump(now);
        Ok(seq)
    }

    /// Listens for streams on `port`.
    ///
    /// # Errors
    /// [`NodeError::ServicePort`] for a port a built-in service uses, or the transport's error.
    pub fn listen(&mut self, port: u16) -> Result<(), NodeError> {
        if self.services.owns_port(port) {
            return Err(NodeError::ServicePort(port));
        }
        self.transport.listen(port)?;
        self.services.app_ports.insert(port);
        Ok(())
    }

    /// Stops listening on `port`; established streams are unaffected.
    pub fn unlisten(&mut self, port: u16) {
        if self.services.app_ports.remove(&port) {
            self.transport.unlisten(port);
        }
    }

    /// Opens a stream to `remote`. Dialling this node's own address works without the network.
    ///
    /// # Errors
    /// [`NodeError::UnknownPeer`] when there is no tunnel to the node, or the transport's error.
    pub fn connect(&mut self, now: Instant, remote: AddrPort) -> Result<ConnId, NodeError> {
        let now = self.clamp(now);
        self.check_route(remote.addr)?;
        let stream = self.transport.connect(now, remote)?;
        self.pump(now);
        Ok(stream)
    }

    /// Queues bytes on a stream; returns how many were accepted (the send buffer is bounded;
    /// wait for [`NodeEvent::Writable`] before offering the rest).
    ///
    /// # Errors
    /// The transport's error when the stream is unknown or closing.
    pub fn send(&mut self, now: Instant, stream: ConnId, data: &[u8]) -> Result<usize, NodeError> {
        let now = self.clamp(now);
        let accepted = self.transport.send(now, stream, data)?;
        self.pump(now);
        Ok(accepted)
    }

    /// Reads received bytes from a stream. `Ok(0)` with a non-empty `buf` means end of stream
    /// once the stream has reported [`NodeEvent::Closed`] or its peer closed.
    ///
    /// # Errors
    /// The transport's error when the stream is unknown.
    pub fn recv(&mut self, stream: ConnId, buf: &mut [u8]) -> Result<usize, NodeError> {
        Ok(self.transport.recv(stream, buf)?)
    }

    /// Closes a stream gracefully (FIN after the queued bytes).
    pub fn close(&mut self, now: Instant, stream: ConnId) {
        let now = self.clamp(now);
        self.transport.close(now, stream);
        self.pump(now);
    }

    /// Switches Nagle coalescing off (`true`) or on for a stream.
    pub fn set_nodelay(&mut self, stream: ConnId, nodelay: bool) {
        self.transport.set_nodelay(stream, nodelay);
    }

    /// Sends one datagram from `src_port` to `dst`.
    ///
    /// # Errors
    /// [`NodeError::UnknownPeer`] or the transport's error.
    pub fn send_datagram(
        &mut self,
        now: Instant,
        src_port: u16,
        dst: AddrPort,
        data: &[u8],
    ) -> Result<(), NodeError> {
        let now = self.clamp(now);
        self.check_route(dst.addr)?;
        self.transport.send_datagram(now, src_port, dst, data)?;
        self.pump(now);
        Ok(())
    }

    /// Writes the next datagram to send into `buf` and says where it goes.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let now = self.clamp(now);
        self.pump(now);
        self.tunnel.poll_transmit(now, buf)
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] must next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let broker = self.services.broker.as_ref().and_then(|b| b.poll_timeout());
        [
            self.tunnel.poll_timeout(),
            self.transport.poll_timeout(),
            broker,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> NodeStats {
        let mut stats = self.stats.clone();
        stats.tunnel = self.tunnel.stats().clone();
        stats.transport = self.transport.stats();
        stats
    }

    /// How many frames the tunnel dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.tunnel.stats().dropped(reason)
    }

    fn check_route(&self, dst: Addr) -> Result<(), NodeError> {
        let local = dst.node == self.address.node || dst.is_broadcast();
        if local || self.tunnel.peer_state(dst.node).is_some() {
            return Ok(());
        }
        Err(NodeError::UnknownPeer(dst))
    }

    fn listen_services(&mut self) {
        for port in self.services.ports(&self.config) {
            // A fresh transport has every port free, so this cannot fail; ignore defensively.
            let _ = self.transport.listen(port);
        }
    }

    /// Moves packets and events between the layers until nothing is left to move.
    fn pump(&mut self, now: Instant) {
        for _ in 0..MAX_PUMP_ROUNDS {
            let mut moved = self.drain_transport_packets(now);
            moved |= self.drain_loopback(now);
            moved |= self.drain_transport_events(now);
            moved |= self.drain_tunnel_events();
            moved |= self.drain_broker(now);
            if !moved {
                return;
            }
        }
    }

    fn drain_transport_packets(&mut self, now: Instant) -> bool {
        let mut moved = false;
        while let Some(dst) = self.transport.poll_packet(now, &mut self.scratch) {
            moved = true;
            self.route_outbound(now, dst);
        }
        moved
    }

    fn route_outbound(&mut self, now: Instant, dst: Addr) {
        if dst.node == self.address.node {
            self.stats.loopback_packets += 1;
            self.loopback.push_back(self.scratch.clone());
            return;
        }
        match self.tunnel.send(now, dst.node, &self.scratch) {
            Ok(()) => {}
            Err(SendError::UnknownPeer(_)) => self.stats.no_route += 1,
            Err(error) => tracing::debug!(%error, "tunnel refused a packet"),
        }
    }

    fn drain_loopback(&mut self, now: Instant) -> bool {
        let mut moved = false;
        while let Some(packet) = self.loopback.pop_front() {
            moved = true;
            Self::route_inbound(
                &mut self.transport,
                &mut self.stats,
                now,
                self.address,
                &packet,
            );
        }
        moved
    }

    /// Decodes one inbound packet and hands it to the transport.
    fn route_inbound(
        transport: &mut Transport,
        stats: &mut NodeStats,
        now: Instant,
        local: Addr,
        bytes: &[u8],
    ) {
        let parsed = Packet::new_checked(bytes).and_then(|view| PacketRepr::parse(&view));
        let Ok(packet) = parsed else {
            stats.packets_dropped += 1;
            return;
        };
        let for_us = packet.dst.node == local.node || packet.dst.is_broadcast();
        match packet.protocol {
            Protocol::Stream | Protocol::Datagram if for_us => {
                transport.handle_packet(now, &packet)
            }
            _ => stats.packets_dropped += 1,
        }
    }

    fn drain_transport_events(&mut self, now: Instant) -> bool {
        let mut moved = false;
        while let Some(event) = self.transport.poll_event() {
            moved = true;
            if let Some(app_event) = self.services.on_event(now, &mut self.transport, event) {
                self.push_event(app_event);
            }
        }
        moved
    }

    fn drain_broker(&mut self, now: Instant) -> bool {
        let mut work = Vec::new();
        let moved = self
            .services
            .pump_broker(now, &mut self.transport, &mut work);
        for event in work {
            self.push_event(event);
        }
        moved
    }

    fn drain_tunnel_events(&mut self) -> bool {
        let mut moved = false;
        while let Some(event) = self.tunnel.poll_event() {
            moved = true;
            if let Some(node_event) = self.translate_tunnel_event(event) {
                self.push_event(node_event);
            }
        }
        moved
    }

    fn translate_tunnel_event(&self, event: tunnel::Event) -> Option<NodeEvent> {
        let peer = |node| Addr::new(self.address.network, node);
        match event {
            tunnel::Event::PeerKeyed { node, .. } => Some(NodeEvent::PeerUp {
                peer: peer(node),
                endpoint: self.tunnel.endpoint(node),
            }),
            tunnel::Event::EndpointChanged { node, new, .. } => Some(NodeEvent::PeerMoved {
                peer: peer(node),
                endpoint: new,
            }),
            tunnel::Event::KeyExchangeFailed { node, .. } => {
                Some(NodeEvent::PeerUnreachable { peer: peer(node) })
            }
            tunnel::Event::FrameDropped {
                from,
                node: Some(node),
                reason: DropReason::UnknownPeer,
            } => Some(NodeEvent::UnknownPeer { node, from }),
            _ => None,
        }
    }

    fn push_event(&mut self, event: NodeEvent) {
        if self.events.len() >= self.config.max_events {
            self.stats.events_lost += 1;
            return;
        }
        self.events.push_back(event);
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        if now < self.last_now {
            tracing::debug!("time went backwards; clamping");
            return self.last_now;
        }
        self.last_now = now;
        now
    }
}
