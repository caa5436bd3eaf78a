//! The beacon server: observed endpoints, punch coordination, relay and gossip over UDP.
//!
//! Owns the beacon's tables (node → observed endpoint, node → peer beacon), the rules that
//! decide which datagrams are honoured, and the gossip timer. Never touches a socket: the
//! driver passes each datagram to [`BeaconServer::handle_datagram`] and sends what
//! [`BeaconServer::poll_transmit`] returns.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use tracing::trace;

use crate::registry::SecurityMode;
use crate::registry::WallClock;
use crate::registry::ratelimit::{RateLimit, RateLimiter};
use crate::transmit::Transmit;
use crate::wire::beacon::{BeaconRepr, DiscoverProof, NodeIdList};

/// Most node ids one Sync carries: keeps the datagram under the UDP payload limit.
pub const MAX_GOSSIP_IDS: usize = 16_000;

/// Beacon limits and timers. Defaults follow v0.5 where it has a value.
#[derive(Debug, Clone)]
pub struct BeaconConfig {
    /// This beacon's id (in Sync).
    pub beacon_id: u32,
    /// Compatibility or hardened rules (see the module docs).
    pub security: SecurityMode,
    /// A node not heard from (Discover) for this long is forgotten (v0.5: never).
    pub node_expiry: Duration,
    /// Nodes remembered at most.
    pub max_nodes: usize,
    /// Nodes learned through gossip at most.
    pub max_remote: usize,
    /// Datagrams waiting to be sent at most (v0.5's relay queue: 4096).
    pub max_queue: usize,
    /// Relayed datagrams per sender node.
    pub relay_limit: RateLimit,
    /// Discover and PunchRequest datagrams per source IP.
    pub control_limit: RateLimit,
    /// Gossip period (v0.5: 10 s).
    pub gossip_interval: Duration,
    /// Accepted distance between a Discover proof's time and ours, either way.
    pub proof_window: Duration,
}

impl Default for BeaconConfig {
    fn default() -> Self {
        Self {
            beacon_id: 0,
            security: SecurityMode::Compat,
            node_expiry: Duration::from_secs(180),
            max_nodes: 100_000,
            max_remote: 200_000,
            max_queue: 4096,
            relay_limit: RateLimit {
                capacity: 2000,
                period: Duration::from_secs(1),
            },
            control_limit: RateLimit {
                capacity: 200,
                period: Duration::from_secs(10),
            },
            gossip_interval: Duration::from_secs(10),
            proof_window: Duration::from_secs(120),
        }
    }
}

/// What the beacon knows about a node registered with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeEntry {
    addr: SocketAddr,
    last_seen: Instant,
    /// Unix time of the last accepted Discover proof; `Some` binds the id to its key.
    proven_at: Option<u64>,
}

/// Counters of honoured and dropped datagrams, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BeaconStats {
    /// Datagrams relayed or delivered.
    pub relayed: u64,
    /// Datagrams dropped by a rule, a limit or a parse error.
    pub dropped: u64,
    /// Punch commands sent.
    pub punches: u64,
}

/// The beacon as a pure state machine.
///
/// Drain order after any input: [`Self::poll_transmit`] until `None`, then
/// [`Self::poll_timeout`].
#[derive(Debug)]
pub struct BeaconServer {
    config: BeaconConfig,
    clock: WallClock,
    nodes: HashMap<u32, NodeEntry>,
    remote: HashMap<u32, SocketAddr>,
    peers: Vec<SocketAddr>,
    keys: HashMap<u32, VerifyingKey>,
    relay_limiter: RateLimiter<u32>,
    control_limiter: RateLimiter<IpAddr>,
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    next_gossip: Instant,
    next_sweep: Instant,
    stats: BeaconStats,
}

impl BeaconServer {
    /// Creates a beacon; `unix_now` anchors the clock used to judge Discover proofs.
    pub fn new(config: BeaconConfig, now: Instant, unix_now: u64) -> Self {
        let idle = Duration::from_secs(120);
        Self {
            relay_limiter: RateLimiter::new(config.relay_limit, config.max_nodes, idle),
            control_limiter: RateLimiter::new(config.control_limit, config.max_nodes, idle),
            next_gossip: now + config.gossip_interval,
            next_sweep: now + Duration::from_secs(30),
            clock: WallClock::new(now, unix_now),
            config,
            nodes: HashMap::new(),
            remote: HashMap::new(),
            peers: Vec::new(),
            keys: HashMap::new(),
            queue: VecDeque::new(),
            stats: BeaconStats::default(),
        }
    }

    /// Sets the peer beacons gossip goes to and is accepted from (from `-peers` or the
    /// registry's `beacon_list`).
    pub fn set_peers(&mut self, peers: Vec<SocketAddr>) {
        self.remote.retain(|_, beacon| peers.contains(beacon));
        self.peers = peers;
    }

    /// Tells the beacon a node's identity key (from the registry), so Discover proofs for it
    /// can be checked; `None` forgets it.
    pub fn set_node_key(&mut self, node_id: u32, key: Option<VerifyingKey>) {
        match key {
            Some(key)
                if self.keys.len() < self.config.max_nodes || self.keys.contains_key(&node_id) =>
            {
                self.keys.insert(node_id, key);
            }
            Some(_) => {}
            None => {
                self.keys.remove(&node_id);
            }
        }
    }

    /// Handles one datagram received from `src`.
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, bytes: &[u8]) {
        let _span = tracing::trace_span!("beacon_datagram", len = bytes.len()).entered();
        let Ok(repr) = BeaconRepr::parse_bytes(bytes) else {
            return self.drop_datagram("unparsable");
        };
        match repr {
            BeaconRepr::Discover { node_id, proof } => self.on_discover(now, src, node_id, proof),
            BeaconRepr::PunchRequest {
                requester_id,
                target_id,
            } => self.on_punch_request(now, src, requester_id, target_id),
            BeaconRepr::Relay {
                sender_id,
                dest_id,
                payload,
            } => self.on_relay(now, src, sender_id, dest_id, payload, bytes),
            BeaconRepr::Sync {
                beacon_id,
                node_ids,
            } => self.on_sync(src, beacon_id, node_ids),
            _ => self.drop_datagram("not for a beacon"),
        }
    }

    /// Runs due timers: gossip and table expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_gossip {
            self.gossip();
            self.next_gossip = now + self.config.gossip_interval;
        }
        if now >= self.next_sweep {
            let expiry = self.config.node_expiry;
            self.nodes
                .retain(|_, entry| now.saturating_duration_since(entry.last_seen) <= expiry);
            self.relay_limiter.prune(now);
            self.control_limiter.prune(now);
            self.next_sweep = now + Duration::from_secs(30);
        }
    }

    /// Next datagram to send, written into a cleared `buf`.
    #[must_use]
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let (dst, bytes) = self.queue.pop_front()?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Some(Transmit {
            dst,
            len: bytes.len(),
        })
    }

    /// When to call [`Self::handle_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_gossip.min(self.next_sweep))
    }

    /// The endpoint recorded for a node, if any.
    pub fn endpoint(&self, node_id: u32) -> Option<SocketAddr> {
        self.nodes.get(&node_id).map(|entry| entry.addr)
    }

    /// Counters.
    pub fn stats(&self) -> BeaconStats {
        self.stats
    }

    fn on_discover(
        &mut self,
        now: Instant,
        src: SocketAddr,
        node_id: u32,
        proof: Option<DiscoverProof>,
    ) {
        if !self.control_limiter.allow(now, &src.ip()) {
            return self.drop_datagram("discover rate");
        }
        let proven = match proof {
            Some(proof) => match self.check_proof(now, node_id, &proof) {
                Ok(proven) => proven,
                Err(reason) => return self.drop_datagram(reason),
            },
            None => None,
        };

        // Node 0 is the anonymous start-up probe: answer, remember nothing.
        if node_id != 0 && self.may_bind(node_id, src, proven.is_some()) {
            self.bind(now, node_id, src, proven);
        }
        self.send(src, &BeaconRepr::DiscoverReply { observed: src });
    }

    /// A proof is checked when the node's key is known; `Ok(None)` when it cannot be.
    fn check_proof(
        &self,
        now: Instant,
        node_id: u32,
        proof: &DiscoverProof,
    ) -> Result<Option<u64>, &'static str> {
        let Some(key) = self.keys.get(&node_id) else {
            return Ok(None);
        };
        let ours = self.clock.unix_at(now);
        if proof.unix_time.abs_diff(ours) > self.config.proof_window.as_secs() {
            return Err("stale discover proof");
        }
        if self
            .nodes
            .get(&node_id)
            .and_then(|entry| entry.proven_at)
            .is_some_and(|last| proof.unix_time < last)
        {
            return Err("replayed discover proof");
        }
        let signed = DiscoverProof::signed_bytes(node_id, proof.unix_time);
        key.verify(&signed, &Signature::from_bytes(&proof.signature))
            .map(|()| Some(proof.unix_time))
            .map_err(|_| "bad discover proof")
    }

    /// Unproven claims may not move an id that proved its key, nor any id in hardened mode.
    fn may_bind(&self, node_id: u32, src: SocketAddr, proven: bool) -> bool {
        if proven {
            return true;
        }
        if self.config.security == SecurityMode::Hardened {
            return false;
        }
        match self.nodes.get(&node_id) {
            Some(entry) if entry.proven_at.is_some() => entry.addr == src,
            _ => true,
        }
    }

    fn bind(&mut self, now: Instant, node_id: u32, src: SocketAddr, proven_at: Option<u64>) {
        if !self.nodes.contains_key(&node_id) && self.nodes.len() >= self.config.max_nodes {
            return self.drop_datagram("node table full");
        }
        let previous = self.nodes.get(&node_id).and_then(|entry| entry.proven_at);
        let entry = NodeEntry {
            addr: src,
            last_seen: now,
            proven_at: proven_at.or(previous),
        };
        self.nodes.insert(node_id, entry);
        self.remote.remove(&node_id);
    }

    fn on_punch_request(&mut self, now: Instant, src: SocketAddr, requester: u32, target: u32) {
        if !self.control_limiter.allow(now, &src.ip()) {
            return self.drop_datagram("punch rate");
        }
        // The requester must be the node registered at this source (v0.5 re-records it from
        // any source, which lets anyone redirect punches and reflect traffic).
        // An id nobody holds yet may be taken here in compatibility mode, as v0.5 does.
        match self.nodes.get(&requester) {
            Some(entry) if entry.addr == src => {}
            None if self.config.security == SecurityMode::Compat && requester != 0 => {
                self.bind(now, requester, src, None);
            }
            _ => return self.drop_datagram("punch from unregistered source"),
        }
        let Some(target_addr) = self.endpoint(target) else {
            return self.drop_datagram("punch target unknown");
        };
        self.send(src, &BeaconRepr::PunchCommand { peer: target_addr });
        self.send(target_addr, &BeaconRepr::PunchCommand { peer: src });
        self.stats.punches += 1;
    }

    fn on_relay(
        &mut self,
        now: Instant,
        src: SocketAddr,
        sender: u32,
        dest: u32,
        payload: &[u8],
        raw: &[u8],
    ) {
        let from_peer_beacon = self.peers.contains(&src);
        let bound = self
            .nodes
            .get(&sender)
            .is_some_and(|entry| entry.addr == src);
        if !bound && !from_peer_beacon {
            return self.drop_datagram("relay from unregistered source");
        }
        if !self.relay_limiter.allow(now, &sender) {
            return self.drop_datagram("relay rate");
        }
        if let Some(addr) = self.endpoint(dest) {
            self.send(
                addr,
                &BeaconRepr::RelayDeliver {
                    sender_id: sender,
                    payload,
                },
            );
            self.stats.relayed += 1;
            return;
        }

        // Forward once to the beacon that knows the destination; never bounce a forwarded one.
        match self.remote.get(&dest).copied() {
            Some(beacon) if !from_peer_beacon => {
                self.enqueue(beacon, raw.to_vec());
                self.stats.relayed += 1;
            }
            _ => self.drop_datagram("relay destination unknown"),
        }
    }

    fn on_sync(&mut self, src: SocketAddr, beacon_id: u32, node_ids: NodeIdList<'_>) {
        if !self.peers.contains(&src) {
            return self.drop_datagram("sync from a non-peer");
        }
        trace!(beacon_id, count = node_ids.len(), "gossip");
        self.remote.retain(|_, beacon| *beacon != src);
        for id in node_ids.iter() {
            if self.remote.len() >= self.config.max_remote {
                break;
            }
            if !self.nodes.contains_key(&id) {
                self.remote.insert(id, src);
            }
        }
    }

    fn gossip(&mut self) {
        if self.peers.is_empty() {
            return;
        }
        // Sorted so that gossip is deterministic.
        let ids: BTreeSet<u32> = self.nodes.keys().copied().collect();
        let ids: Vec<u32> = ids.into_iter().take(MAX_GOSSIP_IDS).collect();
        let sync = crate::wire::beacon::encode_sync(self.config.beacon_id, &ids);
        for peer in self.peers.clone() {
            self.enqueue(peer, sync.clone());
        }
    }

    fn send(&mut self, dst: SocketAddr, repr: &BeaconRepr<'_>) {
        self.enqueue(dst, repr.to_vec());
    }

    fn enqueue(&mut self, dst: SocketAddr, bytes: Vec<u8>) {
        if self.queue.len() >= self.config.max_queue {
            return self.drop_datagram("send queue full");
        }
        self.queue.push_back((dst, bytes));
    }

    fn drop_datagram(&mut self, reason: &'static str) {
        self.stats.dropped += 1;
        trace!(reason, "beacon dropped datagram");
    }
}
