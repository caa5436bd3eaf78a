//! The control-plane pieces composed end to end on a tiny virtual network: a beacon server,
//! two nodes with a beacon client and a `PeerPath` each, and a NAT model per node. Shows that
//! the decisions reach the expected route: direct through cone NATs (even when the first
//! punch packets are lost), relay within 5 s when a symmetric NAT makes direct impossible, and
//! an upgrade from relay to direct once the NAT allows it. Virtual time; bounded loops.
//!
//! The full NAT matrix over `pilot-sim` lives in the workspace `tests/` crate.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use pilot_proto::beacon::{
    BeaconClient, BeaconClientConfig, BeaconConfig, BeaconEvent, BeaconServer,
};
use pilot_proto::nat::{NatConfig, PathAction, PeerPath, Route};

const UNIX: u64 = 1_796_317_551;
const LATENCY: Duration = Duration::from_millis(20);

#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    // Only offsets from this instant matter.
    Instant::now()
}

fn sa(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Endpoint,
    Address,
    AddressPort,
}

/// A NAT box: endpoint-independent or -dependent mapping, one of three filters.
struct Nat {
    public_ip: Ipv4Addr,
    symmetric: bool,
    filter: Filter,
    mappings: HashMap<(SocketAddr, Option<SocketAddr>), u16>,
    reverse: HashMap<u16, SocketAddr>,
    contacted: HashSet<(u16, SocketAddr)>,
    next_port: u16,
    drop_first_probes: usize,
}

impl Nat {
    fn new(public_ip: [u8; 4], symmetric: bool, filter: Filter) -> Self {
        Self {
            public_ip: Ipv4Addr::from(public_ip),
            symmetric,
            filter,
            mappings: HashMap::new(),
            reverse: HashMap::new(),
            contacted: HashSet::new(),
            next_port: 40_000,
            drop_first_probes: 0,
        }
    }

    fn outbound(
        &mut self,
        internal: SocketAddr,
        dst: SocketAddr,
        bytes: &[u8],
    ) -> Option<SocketAddr> {
        if bytes.starts_with(b"PROBE") && self.drop_first_probes > 0 {
            self.drop_first_probes -= 1;
            return None;
        }
        let key = (internal, self.symmetric.then_some(dst));
        let port = match self.mappings.get(&key) {
            Some(port) => *port,
            None => {
                let port = self.next_port;
                self.next_port += 1;
                self.mappings.insert(key, port);
                self.reverse.insert(port, internal);
                port
            }
        };
        self.contacted.insert((port, dst));
        Some(SocketAddr::new(IpAddr::V4(self.public_ip), port))
    }

    fn inbound(&self, port: u16, src: SocketAddr) -> Option<SocketAddr> {
        let internal = *self.reverse.get(&port)?;
        let allowed = match self.filter {
            Filter::Endpoint => true,
            Filter::Address => self
                .contacted
                .iter()
                .any(|(p, d)| *p == port && d.ip() == src.ip()),
            Filter::AddressPort => self.contacted.contains(&(port, src)),
        };
        allowed.then_some(internal)
    }
}

struct Node {
    id: u32,
    peer_id: u32,
    internal: SocketAddr,
    nat: Nat,
    beacon: BeaconClient,
    path: Option<PeerPath>,
    route: Route,
    relay_at: Option<Duration>,
    direct_at: Option<Duration>,
    outbox: Vec<(SocketAddr, Vec<u8>)>,
}

impl Node {
    fn new(
        id: u32,
        peer_id: u32,
        internal: SocketAddr,
        nat: Nat,
        beacon: SocketAddr,
        now: Instant,
    ) -> Self {
        let mut client = BeaconClient::new(BeaconClientConfig::new(beacon), now, UNIX, None);
        client.set_node_id(now, id);
        Self {
            id,
            peer_id,
            internal,
            nat,
            beacon: client,
            path: None,
            route: Route::None,
            relay_at: None,
            direct_at: None,
            outbox: Vec::new(),
        }
    }

    fn path(&mut self) -> &mut PeerPath {
        let peer = self.peer_id;
        self.path
            .get_or_insert_with(|| PeerPath::new(peer, NatConfig::default()))
    }

    fn receive(&mut self, now: Instant, src: SocketAddr, bytes: &[u8]) {
        if self.beacon.handle_datagram(now, src, bytes) {
            while let Some(event) = self.beacon.poll_event() {
                match event {
                    BeaconEvent::PunchCommand { peer } => {
                        self.path().handle_punch_command(now, peer)
                    }
                    BeaconEvent::Relayed { .. } => self.path().handle_relayed_rx(now),
                    _ => {}
                }
            }
        } else if bytes.starts_with(b"PROBE") {
            self.path().handle_direct_rx(now, src);
            self.outbox.push((src, b"PONG".to_vec()));
        } else if bytes.starts_with(b"PONG") {
            self.path().handle_direct_rx(now, src);
        }
    }

    /// Carries out path actions; `resolved` is what the registry would answer for the peer.
    fn act(&mut self, now: Instant, start: Instant, resolved: Option<SocketAddr>) {
        let Some(path) = self.path.as_mut() else {
            return;
        };
        let mut actions = Vec::new();
        while let Some(action) = path.poll_action() {
            actions.push(action);
        }
        for action in actions {
            match action {
                PathAction::Resolve => {
                    if let Some(endpoint) = resolved {
                        self.path().handle_resolved(now, endpoint);
                        self.act(now, start, resolved);
                    }
                }
                PathAction::RequestPunch => self.beacon.request_punch(now, self.peer_id),
                PathAction::Probe { addr } | PathAction::Keepalive { addr } => self
                    .outbox
                    .push((addr, format!("PROBE{}", self.id).into_bytes())),
                PathAction::UseDirect { addr } => {
                    self.route = Route::Direct(addr);
                    self.direct_at.get_or_insert(now - start);
                }
                PathAction::UseRelay => {
                    self.route = Route::Relay;
                    self.relay_at.get_or_insert(now - start);
                    self.beacon
                        .send_relay(now, self.peer_id, b"PILT relayed hello");
                }
                _ => {}
            }
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        let path = self.path.as_ref().and_then(PeerPath::poll_timeout);
        [self.beacon.poll_timeout(), path]
            .into_iter()
            .flatten()
            .min()
    }
}

/// A datagram on the wire: (arrival, sequence, source, destination, bytes).
type InFlight = (Instant, u64, SocketAddr, SocketAddr, Vec<u8>);

struct World {
    start: Instant,
    now: Instant,
    beacon_addr: SocketAddr,
    beacon: BeaconServer,
    nodes: [Node; 2],
    wire: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
}

impl World {
    fn new(nat_a: Nat, nat_b: Nat) -> Self {
        let start = epoch();
        let beacon_addr = sa([192, 0, 2, 1], 9001);
        let beacon = BeaconServer::new(
            BeaconConfig {
                beacon_id: 1,
                ..BeaconConfig::default()
            },
            start,
            UNIX,
        );
        let a = Node::new(1, 2, sa([10, 0, 0, 2], 4000), nat_a, beacon_addr, start);
        let b = Node::new(2, 1, sa([10, 1, 0, 2], 4000), nat_b, beacon_addr, start);
        Self {
            start,
            now: start,
            beacon_addr,
            beacon,
            nodes: [a, b],
            wire: BinaryHeap::new(),
            seq: 0,
        }
    }

    fn send_from_node(&mut self, index: usize, dst: SocketAddr, bytes: Vec<u8>) {
        let node = &mut self.nodes[index];
        let Some(src) = node.nat.outbound(node.internal, dst, &bytes) else {
            return;
        };
        self.seq += 1;
        self.wire
            .push(Reverse((self.now + LATENCY, self.seq, src, dst, bytes)));
    }

    fn flush(&mut self) {
        let mut buf = Vec::new();
        while let Some(t) = self.beacon.poll_transmit(self.now, &mut buf) {
            self.seq += 1;
            self.wire.push(Reverse((
                self.now + LATENCY,
                self.seq,
                self.beacon_addr,
                t.dst,
                buf[..t.len].to_vec(),
            )));
        }
        for index in 0..2 {
            let observed_peer = self.nodes[1 - index].beacon.observed();
            self.nodes[index].act(self.now, self.start, observed_peer);
            while let Some(t) = self.nodes[index].beacon.poll_transmit(self.now, &mut buf) {
                let bytes = buf[..t.len].to_vec();
                self.send_from_node(index, t.dst, bytes);
            }
            for (dst, bytes) in std::mem::take(&mut self.nodes[index].outbox) {
                self.send_from_node(index, dst, bytes);
            }
        }
    }

    fn deliver(&mut self, src: SocketAddr, dst: SocketAddr, bytes: &[u8]) {
        if dst == self.beacon_addr {
            return self.beacon.handle_datagram(self.now, src, bytes);
        }
        for node in &mut self.nodes {
            if IpAddr::V4(node.nat.public_ip) == dst.ip() {
                if node.nat.inbound(dst.port(), src).is_some() {
                    node.receive(self.now, src, bytes);
                }
                return;
            }
        }
    }

    fn run_until(&mut self, secs: u64) {
        let until = self.start + Duration::from_secs(secs);
        for _ in 0..200_000 {
            self.flush();
            let timers = [
                self.beacon.poll_timeout(),
                self.nodes[0].next_timer(),
                self.nodes[1].next_timer(),
            ];
            let wire = self.wire.peek().map(|Reverse((at, ..))| *at);
            let Some(next) = timers.into_iter().chain([wire]).flatten().min() else {
                return;
            };
            if next > until {
                self.now = until;
                return;
            }
            self.now = next.max(self.now);
            if wire == Some(next) {
                let Some(Reverse((_, _, src, dst, bytes))) = self.wire.pop() else {
                    continue;
                };
                self.deliver(src, dst, &bytes);
                continue;
            }
            self.beacon.handle_timeout(self.now);
            for node in &mut self.nodes {
                node.beacon.handle_timeout(self.now);
                if let Some(path) = node.path.as_mut() {
                    path.handle_timeout(self.now);
                }
            }
        }
        panic!("event loop did not reach {secs} s");
    }

    /// Registers both nodes with the beacon, then node A dials node B.
    fn dial(&mut self) {
        self.run_until(1);
        let start = self.now;
        self.nodes[0].path().start(start);
    }
}

#[test]
fn port_restricted_cones_punch_to_direct_quickly() {
    let mut world = World::new(
        Nat::new([198, 51, 100, 1], false, Filter::AddressPort),
        Nat::new([203, 0, 113, 1], false, Filter::AddressPort),
    );
    world.dial();
    world.run_until(10);
    let [a, b] = &world.nodes;
    assert!(
        matches!(a.route, Route::Direct(_)) && matches!(b.route, Route::Direct(_)),
        "{:?} {:?}",
        a.route,
        b.route
    );
    assert!(
        a.direct_at.is_some_and(|t| t < Duration::from_millis(1500)),
        "{:?}",
        a.direct_at
    );
    assert_eq!((a.relay_at, b.relay_at), (None, None));
}

#[test]
fn lost_first_punch_packets_still_end_direct() {
    let mut nat_a = Nat::new([198, 51, 100, 1], false, Filter::AddressPort);
    let mut nat_b = Nat::new([203, 0, 113, 1], false, Filter::Address);
    nat_a.drop_first_probes = 2;
    nat_b.drop_first_probes = 2;
    let mut world = World::new(nat_a, nat_b);
    world.dial();
    world.run_until(10);
    assert!(matches!(world.nodes[0].route, Route::Direct(_)));
    assert_eq!(world.nodes[0].relay_at, None);
}

#[test]
fn symmetric_against_port_restricted_relays_within_5s_and_stays_relayed() {
    let mut world = World::new(
        Nat::new([198, 51, 100, 1], true, Filter::AddressPort),
        Nat::new([203, 0, 113, 1], false, Filter::AddressPort),
    );
    world.dial();
    world.run_until(120);
    let a = &world.nodes[0];
    assert_eq!(a.route, Route::Relay);
    assert!(
        a.relay_at.is_some_and(|t| t <= Duration::from_secs(1 + 5)),
        "{:?}",
        a.relay_at
    );
    assert_eq!(
        world.nodes[1].route,
        Route::Relay,
        "the peer answers by relay"
    );
}

#[test]
fn relay_upgrades_to_direct_once_the_nat_allows_it() {
    let mut world = World::new(
        Nat::new([198, 51, 100, 1], true, Filter::AddressPort),
        Nat::new([203, 0, 113, 1], false, Filter::AddressPort),
    );
    world.dial();
    world.run_until(20);
    assert_eq!(world.nodes[0].route, Route::Relay);

    // The blocker goes away: A's NAT starts mapping independently of the destination.
    world.nodes[0].nat.symmetric = false;
    world.run_until(80);
    let a = &world.nodes[0];
    assert!(matches!(a.route, Route::Direct(_)), "{:?}", a.route);
    assert!(a.direct_at.is_some_and(|t| t <= Duration::from_secs(80)));
    assert!(matches!(world.nodes[1].route, Route::Direct(_)));
}

#[test]
fn full_cone_against_symmetric_goes_direct_through_the_learned_source() {
    let mut world = World::new(
        Nat::new([198, 51, 100, 1], true, Filter::AddressPort),
        Nat::new([203, 0, 113, 1], false, Filter::Endpoint),
    );
    world.dial();
    world.run_until(10);
    let [a, b] = &world.nodes;
    assert!(matches!(a.route, Route::Direct(_)), "{:?}", a.route);
    // B answers the symmetric NAT's fresh mapping, not the endpoint the beacon saw.
    let Route::Direct(seen_by_b) = b.route else {
        panic!("{:?}", b.route)
    };
    assert_ne!(Some(seen_by_b), a.beacon.observed());
    assert_eq!(a.relay_at, None);
}
