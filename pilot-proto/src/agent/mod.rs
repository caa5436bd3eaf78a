//! The agent: a whole node brain (registry client, beacon client, NAT traversal, trust and the
//! data-plane node) behind one sans-IO interface that every driver runs unchanged.
//!
//! An [`Agent`] owns a [`RegistryClient`] whose byte stream the driver carries, a
//! [`BeaconClient`] sharing the node's UDP socket, one [`PeerPath`](crate::nat::PeerPath) per
//! remote peer, a [`TrustStore`], and the [`Node`] (created once the registry assigns our
//! address). Design notes: `docs/design/agent.md`.
//!
//! # Driving it
//!
//! Inputs: [`Agent::handle_datagram`] (every datagram of the UDP socket),
//! [`Agent::handle_timeout`], the registry stream's [`Agent::handle_registry_connected`],
//! [`Agent::handle_registry_bytes`] and [`Agent::handle_registry_closed`], and the commands.
//! After any input or command, drain in this order:
//!
//! 1. [`Agent::poll_transmit`] until `None` (datagrams for the UDP socket);
//! 2. [`Agent::poll_registry_bytes`] until `None` (bytes for the registry stream), and
//!    [`Agent::poll_beacon_stream_bytes`] until `None` (only once a beacon stream is open);
//! 3. [`Agent::poll_event`] until `None` ([`AgentEvent::ConnectRegistry`] and
//!    [`AgentEvent::ConnectBeaconStream`] are the driver's);
//! 4. re-arm the timer from [`Agent::poll_timeout`].
//!
//! # Limitations
//!
//! - A trust message goes over a port-444 stream only when a keyed tunnel to the peer exists
//!   already; otherwise it takes the registry relay (delivered at the peer's next heartbeat
//!   poll, up to 30 s later) instead of dialling first as v0.5 does.
//! - `poll_timeout` and `handle_timeout` visit every tracked peer: O(peers) per call.
//! - A re-registration that returns a different node id keeps the old node running.
//! - Admission covers application ports only: the built-in echo and event-broker services
//!   answer every keyed peer. The transport completes its handshake before admission, so a
//!   refused dialler sees its stream open, then reset, then the `Refused` reason.
//! - No port prediction: a symmetric NAT facing a port-filtering one stays relayed.
//! - The beacon-over-stream fallback for UDP-blocked nodes is a pilot-rs extension: a v0.5
//!   beacon does not accept it, and once on the stream a node stays there until it closes.

mod app;
mod beacon_stream;
mod config;
mod control;
mod dialing;
mod directory;
mod event;
mod handshake;
mod registration;
mod relay;
mod signal;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use ed25519_dalek::SigningKey;

pub use config::AgentConfig;
pub use directory::NetworkRequest;
pub use event::{AgentError, AgentEvent, AgentInfo, ControlId, Dial, DialId, PeerInfo, PeerRoute};
pub use relay::{relay_marker, relay_target};
pub use signal::{MAX_HOST_CANDIDATES, Signal};

use crate::Transmit;
use crate::beacon::{BeaconClient, BeaconClientConfig};
use crate::identity::Identity;
use crate::node::Node;
use crate::registry::{RegistryClient, RequestId, WallClock};
use crate::rng::Rng;
use crate::trust::TrustStore;
use dialing::PeerEntry;
use registration::{Pending, Registration};

/// Rounds of "move work between the parts" one input may run; each round drains every queue.
const MAX_PROCESS_ROUNDS: usize = 64;

/// Relay frames wrapped in one `poll_transmit` call at most before it yields a datagram.
const MAX_WRAPS_PER_POLL: usize = 4096;

/// One node's whole control and data plane. See the module docs for the drive loop.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    key: SigningKey,
    identity: Identity,
    rng: Rng,
    clock: WallClock,
    registry: RegistryClient,
    beacon: Option<BeaconClient>,
    node: Option<Node>,
    trust: TrustStore,
    reg: Registration,
    peers: BTreeMap<u32, PeerEntry>,
    requests: BTreeMap<RequestId, Pending>,
    next_dial: u64,
    events: VecDeque<AgentEvent>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    beacon_stream: beacon_stream::BeaconStream,
    handshakes: handshake::Handshakes,
    last_now: Instant,
}

impl Agent {
    /// Creates an agent with its identity key and a seed for every random choice. It asks for
    /// the registry stream at once ([`AgentEvent::ConnectRegistry`]) and registers when the
    /// beacon has observed our endpoint (or after `register_wait`).
    pub fn new(
        mut config: AgentConfig,
        key: SigningKey,
        seed: [u8; 32],
        now: Instant,
        unix_now: u64,
    ) -> Self {
        config.nat.beacon_available = config.beacon.is_some();
        config.nat = config.nat.clamped();
        let mut rng = Rng::from_seed(seed);
        let identity = Identity::from_seed(&key.to_bytes());
        let (registry, beacon) = Self::clients(&config, &key, &mut rng, now, unix_now);
        let mut trust = TrustStore::new(0, key.clone(), config.trust_mode, rng.fork());
        trust.set_private(!config.public);
        let mut agent = Self {
            reg: Registration::new(now, &config),
            config,
            key,
            identity,
            rng,
            clock: WallClock::new(now, unix_now),
            registry,
            beacon,
            node: None,
            trust,
            peers: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_dial: 1,
            events: VecDeque::new(),
            out: VecDeque::new(),
            beacon_stream: Default::default(),
            handshakes: Default::default(),
            last_now: now,
        };
        agent.events.push_back(AgentEvent::ConnectRegistry);
        agent.start_registration(now);
        agent.process(now);
        agent
    }

    fn clients(
        config: &AgentConfig,
        key: &SigningKey,
        rng: &mut Rng,
        now: Instant,
        unix_now: u64,
    ) -> (RegistryClient, Option<BeaconClient>) {
        let key = Some(key.clone());
        let registry = RegistryClient::new(
            config.registry.clone(),
            now,
            unix_now,
            key.clone(),
            rng.fork(),
        );
        let beacon = config.beacon.map(|addr| {
            BeaconClient::new(BeaconClientConfig::new(addr), now, unix_now, key.clone())
        });
        (registry, beacon)
    }

    /// Handles one datagram received on the UDP socket (beacon messages and tunnel frames).
    /// The buffer is decrypted in place. Never fails: bad input is dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        let now = self.clamp(now);
        let from_beacon = self.beacon.as_ref().is_some_and(|b| b.beacon() == from);
        if from_beacon && crate::wire::beacon::is_beacon_datagram(datagram) {
            if let Some(beacon) = &mut self.beacon {
                beacon.handle_datagram(now, from, datagram);
            }
        } else {
            if datagram == crate::beacon::PUNCH_PROBE {
                self.on_punch_probe(now, from);
            }
            self.tunnel_datagram(now, from, datagram);
        }
        self.process(now);
    }

    /// Fires every timer that is due. Call when the instant from `poll_timeout` has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        if self.registry.poll_timeout().is_some_and(|at| at <= now) {
            self.registry.handle_timeout(now);
        }
        if let Some(beacon) = &mut self.beacon
            && beacon.poll_timeout().is_some_and(|at| at <= now)
        {
            beacon.handle_timeout(now);
        }
        if let Some(node) = &mut self.node
            && node.poll_timeout().is_some_and(|at| at <= now)
        {
            node.handle_timeout(now);
        }
        self.registration_timers(now);
        let mut opening = Vec::new();
        for (&peer, entry) in &mut self.peers {
            if entry.path.poll_timeout().is_some_and(|at| at <= now) {
                entry.path.handle_timeout(now);
            }
            if entry.open_at.is_some_and(|at| at <= now) {
                opening.push(peer);
            }
        }
        for peer in opening {
            self.open_due(now, peer, false);
        }
        self.process(now);
    }

    /// Writes the next datagram to send into `buf` and says where it goes. Frames for relayed
    /// peers come out wrapped for the beacon.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let now = self.clamp(now);
        for _ in 0..2 {
            if let Some(transmit) = self.next_transmit(now, buf) {
                return Some(transmit);
            }
            if !self.process(now) {
                break;
            }
        }
        None
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<AgentEvent> {
        self.events.pop_front()
    }

    /// When [`Agent::handle_timeout`] must next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let parts = [
            self.registry.poll_timeout(),
            self.beacon.as_ref().and_then(BeaconClient::poll_timeout),
            self.node.as_ref().and_then(Node::poll_timeout),
            self.reg.poll_timeout(),
        ];
        // Limitation: every tracked peer is visited (O(peers) per call).
        let paths = self
            .peers
            .values()
            .flat_map(|e| [e.path.poll_timeout(), e.open_at])
            .flatten();
        parts.into_iter().flatten().chain(paths).min()
    }

    /// The data-plane node, once registered (read-only: commands go through the agent).
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// The trust store.
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    fn next_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if let Some(transmit) = self.node_transmit(now, buf) {
            return Some(transmit);
        }
        if let Some((dst, bytes)) = self.out.pop_front() {
            buf.clear();
            buf.extend_from_slice(&bytes);
            return Some(Transmit {
                dst,
                len: bytes.len(),
            });
        }
        self.beacon_transmit(now, buf)
    }

    /// The node's next frame for a real endpoint; frames for relay markers are wrapped into
    /// the beacon client's queue on the way.
    fn node_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let node = self.node.as_mut()?;
        for _ in 0..MAX_WRAPS_PER_POLL {
            let transmit = node.poll_transmit(now, buf)?;
            let Some(dest) = relay_target(transmit.dst) else {
                return Some(transmit);
            };
            if let Some(beacon) = &mut self.beacon {
                beacon.send_relay(now, dest, &buf[..transmit.len]);
            }
        }
        None
    }

    /// Moves work between the parts until nothing is left; true if anything moved.
    fn process(&mut self, now: Instant) -> bool {
        let mut any = false;
        for _ in 0..MAX_PROCESS_ROUNDS {
            let mut moved = self.drain_registry(now);
            moved |= self.drain_beacon(now);
            moved |= self.drain_node(now);
            moved |= self.drain_paths(now);
            moved |= self.drain_trust(now);
            if !moved {
                break;
            }
            any = true;
        }
        any
    }

    fn unix_now(&self, now: Instant) -> i64 {
        i64::try_from(self.clock.unix_at(now)).unwrap_or(i64::MAX)
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        if now < self.last_now {
            return self.last_now;
        }
        self.last_now = now;
        now
    }
}
