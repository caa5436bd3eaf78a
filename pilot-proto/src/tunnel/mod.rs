//! The encrypted UDP tunnel as a sans-IO peer table: key exchange (PILA/PILK), sealing and
//! opening (PILS), plaintext (PILT) policy, replay protection and endpoint tracking
//! (`docs/design/tunnel.md`).
//!
//! [`Tunnel`] never touches a socket or a clock. The driver feeds it datagrams and packets, and
//! after every call drains [`Tunnel::poll_transmit`] until `None`, then [`Tunnel::poll_event`]
//! until `None`, then re-arms its timer from [`Tunnel::poll_timeout`].
//!
//! # Limitations
//!
//! - The beacon relay is not handled here: frames are always addressed to the peer's endpoint,
//!   and the node must wrap and unwrap relayed frames itself.
//! - A peer's first packets from a v0.5 daemon arrive as plaintext PILT before keys exist; they
//!   are delivered (marked `encrypted: false`) so that v0.5 dials work, and are refused only
//!   once a session with that node exists.
//! - A PILA recorded before this tunnel started (so never seen, never superseded) and replayed
//!   later is accepted as a new key: sealing switches to it until the genuine peer's next key
//!   exchange corrects it. Only 8 replaced keys and 16 retired nonce prefixes are remembered
//!   per peer; replays of older ones are treated as new.
//! - v0.5 uses one key for both directions; a 1-in-2^32 collision of the two random nonce
//!   prefixes would reuse nonces across directions. Frames carrying our own prefix are dropped
//!   as reflections, which also drops a genuinely colliding peer.

mod config;
mod event;
mod inbound;
mod outbound;
mod peer;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use ed25519_dalek::VerifyingKey;

pub use config::TunnelConfig;
pub use event::{DropReason, Event, Inbound, PeerError, SendError, TunnelStats};

use crate::Transmit;
use crate::crypto::X25519Secret;
use crate::identity::Identity;
use crate::rng::Rng;
use peer::Peer;

/// Largest packet (header and payload) the tunnel carries.
pub const MAX_PACKET_LEN: usize = crate::wire::tunnel::PACKET_HEADER_LEN + 65_535;
/// Buffers kept for reuse by `send` and `poll_transmit`.
const POOL_LIMIT: usize = 256;

/// Where a peer stands in the key exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerState {
    /// No session: packets are queued and key exchanges are being sent.
    Unkeyed,
    /// A session is installed but no frame has been decrypted under it yet.
    Keyed,
    /// The session has decrypted at least one frame from the peer.
    Confirmed,
}

/// The tunnel's peer table and everything it sends and receives. See the module docs for the
/// call order. `Debug` shows counts only: no keys, no packet bytes.
pub struct Tunnel {
    config: TunnelConfig,
    identity: Identity,
    local_node: u32,
    rng: Rng,
    peers: BTreeMap<u32, Peer>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    pool: Vec<Vec<u8>>,
    events: VecDeque<Event>,
    stats: TunnelStats,
    last_now: Option<Instant>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("local_node", &self.local_node)
            .field("identity", &self.identity)
            .field("peers", &self.peers)
            .field("transmits", &self.transmits.len())
            .field("events", &self.events.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Tunnel {
    /// Creates an empty tunnel for `local_node`, signing key exchanges with `identity` and
    /// drawing X25519 secrets and nonce prefixes from `rng`.
    pub fn new(config: TunnelConfig, identity: Identity, local_node: u32, rng: Rng) -> Self {
        Self {
            config,
            identity,
            local_node,
            rng,
            peers: BTreeMap::new(),
            transmits: VecDeque::new(),
            pool: Vec::new(),
            events: VecDeque::new(),
            stats: TunnelStats::default(),
            last_now: None,
        }
    }

    /// Adds `node` at `endpoint` (or updates an existing peer's endpoint and key) and, with
    /// encryption on, starts the key exchange: a PILA is queued for `poll_transmit` and retries
    /// are armed. `signing_key` is the node's Ed25519 key from the registry; without one its
    /// PILA frames are refused and only PILK is accepted.
    ///
    /// # Errors
    /// [`PeerError::TableFull`] or [`PeerError::LocalNode`].
    pub fn add_peer(
        &mut self,
        now: Instant,
        node: u32,
        endpoint: SocketAddr,
        signing_key: Option<VerifyingKey>,
    ) -> Result<(), PeerError> {
        let now = self.clamp(now);
        if node == self.local_node {
            return Err(PeerError::LocalNode(node));
        }
        if let Some(peer) = self.peers.get_mut(&node) {
            peer.endpoint = endpoint;
            peer.signing_key = signing_key.or(peer.signing_key);
            return Ok(());
        }
        if self.peers.len() >= self.config.max_peers {
            return Err(PeerError::TableFull {
                max: self.config.max_peers,
            });
        }

        let secret = X25519Secret::generate(&mut self.rng);
        self.peers
            .insert(node, Peer::new(endpoint, signing_key, secret));
        if self.config.encrypt {
            self.start_key_exchange(now, node);
        }
        Ok(())
    }

    /// Points `node`'s frames at a new endpoint (the node's NAT traversal decided so).
    ///
    /// # Errors
    /// [`PeerError::UnknownPeer`].
    pub fn set_endpoint(
        &mut self,
        now: Instant,
        node: u32,
        endpoint: SocketAddr,
    ) -> Result<(), PeerError> {
        self.clamp(now);
        let peer = self
            .peers
            .get_mut(&node)
            .ok_or(PeerError::UnknownPeer(node))?;
        peer.endpoint = endpoint;
        Ok(())
    }

    /// Removes `node`, wiping its keys; returns how many queued packets were discarded.
    pub fn remove_peer(&mut self, now: Instant, node: u32) -> Option<usize> {
        self.clamp(now);
        let peer = self.peers.remove(&node)?;
        Some(peer.queue.len())
    }

    /// Changes the node id written into outgoing frames (after the registry assigned one).
    pub fn set_local_node(&mut self, node: u32) {
        self.local_node = node;
    }

    /// Sends one marshalled packet (34-byte header and payload) to `node`. With a session it is
    /// sealed now and appears in `poll_transmit`; without one it is queued (at most
    /// `max_queued_packets`, oldest dropped) and sealed once keyed. Encryption off sends PILT.
    ///
    /// # Errors
    /// [`SendError::UnknownPeer`], [`SendError::BadPacketLength`] or
    /// [`SendError::TransmitQueueFull`].
    pub fn send(&mut self, now: Instant, node: u32, packet: &[u8]) -> Result<(), SendError> {
        let now = self.clamp(now);
        let min = crate::wire::tunnel::PACKET_HEADER_LEN;
        if !(min..=MAX_PACKET_LEN).contains(&packet.len()) {
            let len = packet.len();
            return Err(SendError::BadPacketLength {
                len,
                min,
                max: MAX_PACKET_LEN,
            });
        }
        if self.transmits.len() >= self.config.max_transmits {
            return Err(SendError::TransmitQueueFull);
        }
        if !self.peers.contains_key(&node) {
            return Err(SendError::UnknownPeer(node));
        }
        if !self.config.encrypt {
            self.push_plain(node, packet);
            return Ok(());
        }
        self.seal_or_queue(now, node, packet);
        Ok(())
    }

    /// Handles one received UDP datagram. Sealed frames are decrypted in place, so the returned
    /// packet borrows `datagram`. Never fails: bad input is dropped and counted.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &'a mut [u8],
    ) -> Inbound<'a> {
        let now = self.clamp(now);
        let _span = tracing::trace_span!("tunnel_datagram", len = datagram.len()).entered();
        self.dispatch(now, from, datagram)
    }

    /// Fires due key-exchange retries. Call when the instant from `poll_timeout` has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        let due: Vec<u32> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.exchange.deadline.is_some_and(|at| at <= now))
            .map(|(&node, _)| node)
            .collect();
        for node in due {
            self.on_exchange_timeout(now, node);
        }
    }

    /// Writes the next frame to send into `buf` (replacing its content) and says where to send
    /// it. The frame's buffer is swapped with `buf`, so nothing is copied.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.clamp(now);
        let (dst, mut frame) = self.transmits.pop_front()?;
        std::mem::swap(buf, &mut frame);
        self.recycle(frame);
        Some(Transmit {
            dst,
            len: buf.len(),
        })
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|peer| peer.exchange.deadline)
            .min()
    }

    /// The counters.
    pub fn stats(&self) -> &TunnelStats {
        &self.stats
    }

    /// Where `node` stands in the key exchange, or `None` if it is not a peer.
    pub fn peer_state(&self, node: u32) -> Option<PeerState> {
        let peer = self.peers.get(&node)?;
        let confirmed = [&peer.current, &peer.next]
            .into_iter()
            .flatten()
            .any(|s| s.confirmed);
        Some(match (peer.has_session(), confirmed) {
            (false, _) => PeerState::Unkeyed,
            (true, false) => PeerState::Keyed,
            (true, true) => PeerState::Confirmed,
        })
    }

    /// `node`'s current endpoint.
    pub fn endpoint(&self, node: u32) -> Option<SocketAddr> {
        self.peers.get(&node).map(|peer| peer.endpoint)
    }

    /// The local node id written into frames.
    pub fn local_node(&self) -> u32 {
        self.local_node
    }

    /// The configuration.
    pub fn config(&self) -> &TunnelConfig {
        &self.config
    }

    /// Clamps `now` so that time never moves backwards inside the tunnel.
    fn clamp(&mut self, now: Instant) -> Instant {
        match self.last_now {
            Some(last) if now < last => {
                tracing::debug!("clock moved backwards; clamping");
                last
            }
            _ => {
                self.last_now = Some(now);
                now
            }
        }
    }

    /// Queues an event unless the queue is full (then it is counted as lost).
    fn push_event(&mut self, event: Event) {
        if self.events.len() >= self.config.max_events {
            self.stats.events_lost += 1;
            return;
        }
        self.events.push_back(event);
    }

    /// A cleared buffer from the pool, or a new one.
    fn take_buffer(&mut self) -> Vec<u8> {
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < POOL_LIMIT {
            self.pool.push(buf);
        }
    }
}
