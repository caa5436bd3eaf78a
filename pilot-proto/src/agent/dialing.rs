//! Dialing: one [`PeerEntry`] per remote peer, the registry resolve and key lookup that put
//! it into the tunnel, the `PeerPath` actions carried out with the node and the beacon
//! client, path probes, host candidates, and inbound peers announced by `UnknownPeer`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use tracing::debug;

use super::relay::{relay_marker, relay_target};
use super::signal::{MAX_HOST_CANDIDATES, Signal};
use super::{Agent, AgentError, AgentEvent, DialId, PeerRoute, registration::Pending};
use crate::beacon::PUNCH_PROBE;
use crate::nat::{PathAction, PeerPath, Route};
use crate::registry::RegistryError;
use crate::trust::key_from_lookup;
use crate::wire::addr::{Addr, AddrPort};
use crate::wire::registry::Response;

/// Unknown peers being looked up at once at most; further key exchanges from unknown nodes
/// are ignored until one finishes (their senders retry).
const MAX_INBOUND_LOOKUPS: usize = 16;

/// Raw datagrams (punch probes) the agent queues at most.
const MAX_OUT: usize = 1024;

/// After a tunnel is keyed, how long waiting dials wait for the peer to prove it holds our
/// key (a frame that opens) before they go out anyway. Avoids a first SYN that overtakes the
/// key exchange and is dropped, costing a 1 s retransmission.
const OPEN_GRACE: Duration = Duration::from_millis(250);

/// Everything the agent knows about one remote peer.
#[derive(Debug)]
pub(super) struct PeerEntry {
    pub path: PeerPath,
    pub key: Option<VerifyingKey>,
    /// The endpoint the peer is added to the tunnel with (resolved, or where it came from).
    pub first_endpoint: Option<SocketAddr>,
    /// Where an unknown peer's first frame came from.
    pub inbound_from: Option<SocketAddr>,
    pub resolved: Option<SocketAddr>,
    pub in_tunnel: bool,
    pub lookup_pending: bool,
    pub resolve_pending: bool,
    /// We dial it (as opposed to it dialling us).
    pub dialing: bool,
    /// The peer's own LAN endpoints, as it told us.
    pub host_candidates: Vec<SocketAddr>,
    pub dials: Vec<(DialId, u16)>,
    pub datagrams: VecDeque<(u16, u16, Vec<u8>)>,
    pub route: PeerRoute,
    pub tracked_at: Instant,
    pub first_route_after: Option<Duration>,
    /// Open the waiting dials then at the latest (keyed, but the peer not yet heard under the
    /// new session).
    pub open_at: Option<Instant>,
}

impl PeerEntry {
    fn new(now: Instant, peer: u32, config: crate::nat::NatConfig) -> Self {
        Self {
            path: PeerPath::new(peer, config),
            key: None,
            first_endpoint: None,
            inbound_from: None,
            resolved: None,
            in_tunnel: false,
            lookup_pending: false,
            resolve_pending: false,
            dialing: false,
            host_candidates: Vec::new(),
            dials: Vec::new(),
            datagrams: VecDeque::new(),
            route: PeerRoute::None,
            tracked_at: now,
            first_route_after: None,
            open_at: None,
        }
    }

    /// One of the peer's own LAN endpoints (not its public one, which a public host also
    /// reports as its own).
    fn is_host_candidate(&self, addr: SocketAddr) -> bool {
        self.host_candidates.contains(&addr) && self.resolved != Some(addr)
    }

    /// True when `from` would move a local route to a non-local one (never preferred).
    fn keeps_local(&self, from: SocketAddr) -> bool {
        matches!(self.route, PeerRoute::Local(_)) && !self.is_host_candidate(from)
    }
}

impl Agent {
    /// Starts (or restarts) the dial plan to `peer`: resolve, key lookup, punch, relay.
    /// Progress shows as [`AgentEvent::RouteChanged`] and the node's `PeerUp`.
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`] or [`AgentError::TooManyPeers`].
    pub fn dial_peer(&mut self, now: Instant, peer: Addr) -> Result<(), AgentError> {
        let now = self.clamp(now);
        self.start_dial(now, peer.node)?;
        self.process(now);
        Ok(())
    }

    pub(super) fn start_dial(&mut self, now: Instant, peer: u32) -> Result<(), AgentError> {
        let own = self.reg.registered.ok_or(AgentError::NotRegistered)?.0;
        if peer == own.node {
            return Ok(());
        }
        let entry = self.entry(now, peer)?;
        entry.dialing = true;
        if !entry.in_tunnel || entry.route == PeerRoute::None {
            entry.path.start(now);
        }
        Ok(())
    }

    pub(super) fn entry(&mut self, now: Instant, peer: u32) -> Result<&mut PeerEntry, AgentError> {
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.config.max_peers {
            return Err(AgentError::TooManyPeers);
        }
        let nat = self.config.nat;
        Ok(self
            .peers
            .entry(peer)
            .or_insert_with(|| PeerEntry::new(now, peer, nat)))
    }

    fn request_resolve(&mut self, now: Instant, peer: u32) {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        if entry.resolve_pending {
            return;
        }
        if let Ok(id) = self.registry.resolve(now, peer) {
            entry.resolve_pending = true;
            self.requests.insert(id, Pending::Resolve { peer });
        }
    }

    fn request_lookup(&mut self, now: Instant, peer: u32) {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        if entry.lookup_pending || entry.key.is_some() {
            return;
        }
        if let Ok(id) = self.registry.lookup(now, peer) {
            entry.lookup_pending = true;
            self.requests.insert(id, Pending::Lookup { peer });
        }
    }

    pub(super) fn on_resolved(
        &mut self,
        now: Instant,
        peer: u32,
        result: Result<Response, RegistryError>,
    ) {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        entry.resolve_pending = false;
        let endpoint = match result {
            Ok(Response::ResolveOk(ok)) => ok.real_addr.parse::<SocketAddr>().ok(),
            _ => None,
        };
        let Some(endpoint) = endpoint else {
            if !entry.in_tunnel && entry.dialing {
                entry.path.handle_resolve_failed(now);
            }
            return;
        };
        entry.resolved = Some(endpoint);
        if entry.in_tunnel {
            entry.path.handle_resolved(now, endpoint);
            return;
        }
        entry.first_endpoint.get_or_insert(endpoint);
        self.try_activate(now, peer);
    }

    pub(super) fn on_lookup(
        &mut self,
        now: Instant,
        peer: u32,
        result: Result<Response, RegistryError>,
    ) {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        entry.lookup_pending = false;
        let key = match &result {
            Ok(Response::LookupOk(ok)) => key_from_lookup(&ok.public_key),
            _ => None,
        };
        match key {
            Some(key) => {
                entry.key = Some(key);
                self.try_activate(now, peer);
            }
            None => {
                let error = match result {
                    Err(error) => AgentError::Registry(error),
                    Ok(_) => AgentError::Dial(crate::nat::DialFailure::Unresolvable),
                };
                self.fail_dials(peer, &error);
                if self.peers.get(&peer).is_some_and(|e| !e.in_tunnel) {
                    self.peers.remove(&peer);
                }
            }
        }
    }

    /// Puts the peer into the tunnel once its key and a first endpoint are known. Dials and
    /// datagrams that wait for it go out once the tunnel is keyed (`on_peer_up`), so that the
    /// transport's retry schedule starts when a path exists.
    fn try_activate(&mut self, now: Instant, peer: u32) {
        let Some(node) = &mut self.node else { return };
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        let (Some(key), Some(endpoint)) = (entry.key, entry.first_endpoint) else {
            return;
        };
        if entry.in_tunnel {
            return;
        }
        let addr = Addr::new(node.address().network, peer);
        if let Err(error) = node.add_peer(now, addr, endpoint, Some(key)) {
            debug!(%error, "peer could not be added to the tunnel");
            return;
        }
        entry.in_tunnel = true;
        Self::seed_path(now, entry, endpoint);
    }

    /// Tells a fresh path what is known: relayed, dialled, or punched towards us.
    fn seed_path(now: Instant, entry: &mut PeerEntry, endpoint: SocketAddr) {
        let inbound = entry.inbound_from.unwrap_or(endpoint);
        if relay_target(inbound).is_some() {
            entry.path.handle_relayed_rx(now);
        } else if entry.dialing {
            entry.path.handle_resolved(now, endpoint);
        } else {
            entry.path.handle_punch_command(now, inbound);
        }
        if let Some(resolved) = entry.resolved.filter(|r| *r != endpoint) {
            entry.path.handle_resolved(now, resolved);
        }
    }

    /// A key exchange arrived from a node we do not know: look up its key (and its endpoint,
    /// for candidates) and add it.
    pub(super) fn on_unknown_peer(&mut self, now: Instant, peer: u32, from: SocketAddr) {
        let inbound_lookups = self
            .peers
            .values()
            .filter(|e| e.lookup_pending && !e.dialing)
            .count();
        if inbound_lookups >= MAX_INBOUND_LOOKUPS && !self.peers.contains_key(&peer) {
            return;
        }
        let Ok(entry) = self.entry(now, peer) else {
            return;
        };
        if entry.in_tunnel {
            return;
        }
        entry.inbound_from.get_or_insert(from);
        entry.first_endpoint.get_or_insert(from);
        self.request_lookup(now, peer);
        self.request_resolve(now, peer);
        self.try_activate(now, peer);
        // A lookup the registry client could not queue would leave the entry stuck.
        let stuck = self
            .peers
            .get(&peer)
            .is_some_and(|e| !e.in_tunnel && !e.lookup_pending && e.key.is_none() && !e.dialing);
        if stuck {
            self.peers.remove(&peer);
        }
    }

    /// The beacon asked us to punch towards `addr`: tell the path that knows it.
    pub(super) fn on_punch_command(&mut self, now: Instant, addr: SocketAddr) {
        for entry in self.peers.values_mut() {
            let known = entry.resolved == Some(addr) || entry.path.candidates().contains(&addr);
            if known {
                entry.path.handle_punch_command(now, addr);
            }
        }
    }

    /// A punch probe arrived from `from`. If it shares the IP of a peer we are still keying
    /// with but not its port, the peer sits behind a NAT that maps per destination and this
    /// is its mapping towards us (a peer-reflexive candidate): send the key exchange there.
    pub(super) fn on_punch_probe(&mut self, now: Instant, from: SocketAddr) {
        let Some(node) = &mut self.node else { return };
        let network = node.address().network;
        for (&peer, entry) in &mut self.peers {
            let addr = Addr::new(network, peer);
            let same_host = entry
                .resolved
                .is_some_and(|r| r.ip() == from.ip() && r != from);
            if !same_host || !entry.in_tunnel || node.is_peer_keyed(addr) {
                continue;
            }
            entry.path.handle_punch_command(now, from);
            let _ = node.set_peer_endpoint(now, addr, from);
        }
    }

    /// A relayed frame from `sender`: the node sees it as coming from the sender's marker.
    pub(super) fn on_relayed(&mut self, now: Instant, sender: u32, mut frame: Vec<u8>) {
        self.tunnel_datagram(now, relay_marker(sender), &mut frame);
    }

    /// Hands a datagram to the node and tells the path when it authenticated.
    pub(super) fn tunnel_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        let Some(node) = &mut self.node else { return };
        let Some(peer) = node.handle_datagram(now, from, datagram) else {
            return;
        };
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        if relay_target(from).is_some() {
            entry.path.handle_relayed_rx(now);
        } else if !entry.keeps_local(from) {
            entry.path.handle_direct_rx(now, from);
        }
        self.sync_endpoint(now, peer);
        self.open_due(now, peer, true);
    }

    /// Points the tunnel at the route the path chose (the tunnel roams on its own when fresh
    /// frames come from elsewhere, relayed ones included).
    pub(super) fn sync_endpoint(&mut self, now: Instant, peer: u32) {
        let (Some(node), Some(entry)) = (&mut self.node, self.peers.get(&peer)) else {
            return;
        };
        if !entry.in_tunnel {
            return;
        }
        let desired = match (entry.route, entry.path.route()) {
            (PeerRoute::Direct(a) | PeerRoute::Local(a), _) => a,
            (PeerRoute::Relay, _) => relay_marker(peer),
            (PeerRoute::None, Route::Direct(a)) => a,
            (PeerRoute::None, _) => return,
        };
        let addr = Addr::new(node.address().network, peer);
        if node.peer_endpoint(addr) != Some(desired) {
            let _ = node.set_peer_endpoint(now, addr, desired);
        }
    }

    pub(super) fn drain_paths(&mut self, now: Instant) -> bool {
        let mut actions = Vec::new();
        for (&peer, entry) in &mut self.peers {
            while let Some(action) = entry.path.poll_action() {
                actions.push((peer, action));
            }
        }
        let moved = !actions.is_empty();
        for (peer, action) in actions {
            self.apply_action(now, peer, action);
        }
        moved
    }

    fn apply_action(&mut self, now: Instant, peer: u32, action: PathAction) {
        match action {
            PathAction::Resolve => {
                self.request_resolve(now, peer);
                self.request_lookup(now, peer);
            }
            PathAction::RequestPunch => {
                if let (Some(beacon), Some(_)) = (&mut self.beacon, self.reg.registered) {
                    beacon.request_punch(now, peer);
                }
                self.send_candidates(now, peer);
            }
            PathAction::Probe { addr } | PathAction::Keepalive { addr } => {
                self.probe(now, peer, addr)
            }
            PathAction::UseDirect { addr } => {
                self.set_route(now, peer, PeerRoute::Direct(addr));
                self.probe(now, peer, addr);
            }
            PathAction::UseRelay => self.set_route(now, peer, PeerRoute::Relay),
            PathAction::Failed(failure) => {
                self.set_route(now, peer, PeerRoute::None);
                self.fail_dials(peer, &AgentError::Dial(failure));
            }
        }
    }

    fn set_route(&mut self, now: Instant, peer: u32, route: PeerRoute) {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        let route = match route {
            PeerRoute::Direct(a) | PeerRoute::Local(a) if entry.is_host_candidate(a) => {
                PeerRoute::Local(a)
            }
            other => other,
        };
        if entry.route == route {
            return;
        }
        entry.route = route;
        if route != PeerRoute::None && entry.first_route_after.is_none() {
            entry.first_route_after = Some(now.saturating_duration_since(entry.tracked_at));
        }
        self.sync_endpoint(now, peer);
        if let Some(node) = &self.node {
            let peer = Addr::new(node.address().network, peer);
            self.events
                .push_back(AgentEvent::RouteChanged { peer, route });
        }
    }

    /// Checks that `addr` reaches the peer: a sealed probe once keyed (answered by the peer),
    /// else a punch probe that opens our NAT towards it.
    pub(super) fn probe(&mut self, now: Instant, peer: u32, addr: SocketAddr) {
        if relay_target(addr).is_some() {
            return;
        }
        let probe = Signal::Probe(self.own_candidates()).to_bytes();
        if let Some(node) = &mut self.node {
            let target = Addr::new(node.address().network, peer);
            if node.send_control(now, target, Some(addr), &probe) == Ok(true) {
                return;
            }
        }
        if self.out.len() < MAX_OUT {
            self.out.push_back((addr, PUNCH_PROBE.to_vec()));
        }
    }

    /// Our own LAN endpoints, as told to peers.
    fn own_candidates(&self) -> Vec<SocketAddr> {
        self.config
            .local_endpoints
            .iter()
            .copied()
            .take(MAX_HOST_CANDIDATES)
            .collect()
    }

    /// Tells a keyed peer our LAN endpoints over its current route (again at every punch
    /// round, in case the message was lost).
    fn send_candidates(&mut self, now: Instant, peer: u32) {
        let local = self.own_candidates();
        let Some(node) = &mut self.node else { return };
        let target = Addr::new(node.address().network, peer);
        if local.is_empty() || !node.is_peer_keyed(target) {
            return;
        }
        let _ = node.send_control(now, target, None, &Signal::Candidates(local).to_bytes());
    }

    /// The tunnel to `peer` is keyed: tell it our LAN endpoints and probe every candidate.
    pub(super) fn on_peer_up(&mut self, now: Instant, peer: u32) {
        self.send_candidates(now, peer);
        let candidates = self
            .peers
            .get(&peer)
            .map(|e| e.path.candidates().to_vec())
            .unwrap_or_default();
        for addr in candidates {
            self.probe(now, peer, addr);
        }
        if let Some(entry) = self.peers.get_mut(&peer)
            && (!entry.dials.is_empty() || !entry.datagrams.is_empty())
        {
            entry.open_at = Some(now + OPEN_GRACE);
        }
    }

    /// Opens waiting dials once the peer proved it holds our key, or when the grace expires.
    pub(super) fn open_due(&mut self, now: Instant, peer: u32, confirmed: bool) {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        let due = entry.open_at.is_some_and(|at| confirmed || now >= at);
        if due {
            entry.open_at = None;
            self.open_waiting(now, peer);
        }
    }

    /// An agent message from an authenticated peer.
    pub(super) fn on_signal(&mut self, now: Instant, peer: Addr, from: SocketAddr, signal: Signal) {
        match signal {
            Signal::Probe(addrs) => {
                let reply = Signal::ProbeReply(self.own_candidates()).to_bytes();
                if let Some(node) = &mut self.node
                    && relay_target(from).is_none()
                {
                    let _ = node.send_control(now, peer, Some(from), &reply);
                }
                self.on_host_candidates(now, peer.node, addrs);
            }
            Signal::Candidates(addrs) | Signal::ProbeReply(addrs) => {
                self.on_host_candidates(now, peer.node, addrs)
            }
            Signal::Refused(reason) => {
                let error = AgentError::Refused(reason.clone());
                self.fail_dials(peer.node, &error);
                self.events.push_back(AgentEvent::Refused { peer, reason });
            }
        }
    }

    fn on_host_candidates(&mut self, now: Instant, peer: u32, addrs: Vec<SocketAddr>) {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        let usable: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| relay_target(*a).is_none() && !a.ip().is_unspecified())
            .take(MAX_HOST_CANDIDATES)
            .collect();
        if entry.host_candidates == usable {
            return;
        }
        entry.host_candidates = usable.clone();
        for &addr in &usable {
            entry.path.handle_resolved(now, addr);
        }
        // A probe over the LAN may have arrived before the candidates that name it.
        if let PeerRoute::Direct(current) = entry.route
            && entry.is_host_candidate(current)
        {
            self.set_route(now, peer, PeerRoute::Direct(current));
        }
        for addr in usable {
            self.probe(now, peer, addr);
        }
    }

    /// Opens the dials and sends the datagrams that waited for the peer's tunnel.
    fn open_waiting(&mut self, now: Instant, peer: u32) {
        let (Some(node), Some(entry)) = (&mut self.node, self.peers.get_mut(&peer)) else {
            return;
        };
        let addr = Addr::new(node.address().network, peer);
        for (dial, port) in std::mem::take(&mut entry.dials) {
            let remote = AddrPort::new(addr, port);
            let event = match node.connect(now, remote) {
                Ok(stream) => AgentEvent::DialReady { dial, stream },
                Err(error) => AgentEvent::DialFailed {
                    dial,
                    remote,
                    error: error.into(),
                },
            };
            self.events.push_back(event);
        }
        for (src_port, dst_port, data) in std::mem::take(&mut entry.datagrams) {
            let dst = AddrPort::new(addr, dst_port);
            let _ = node.send_datagram(now, src_port, dst, &data);
        }
    }

    pub(super) fn fail_dials(&mut self, peer: u32, error: &AgentError) {
        let network = self.node.as_ref().map_or(0, |n| n.address().network);
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        entry.datagrams.clear();
        for (dial, port) in std::mem::take(&mut entry.dials) {
            let remote = AddrPort::new(Addr::new(network, peer), port);
            self.events.push_back(AgentEvent::DialFailed {
                dial,
                remote,
                error: error.clone(),
            });
        }
    }
}
