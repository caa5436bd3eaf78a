//! The NAT matrix: the kinds of network a node can sit in, the route the agent is expected to
//! reach for every pair, and one seeded run of a pair in `pilot-sim`.
//!
//! A cell runs a rendezvous host (registry + beacon) on the internet and two agents `a` and
//! `b`, each in its kind of network. Every link has 10 ms latency, up to 2 ms jitter and a
//! loss rate drawn per seed from 0-5 %. Both register; then `a` opens a stream to `b`'s echo
//! port. The cell passes when the stream is established and both sides report the expected
//! route.
//!
//! The two "same LAN" kinds describe a node on a home network behind a port-restricted NAT
//! with (or without) hairpinning. When both sides of a cell have the same LAN kind they share
//! that one NAT; paired with any other kind the node simply sits behind its own such NAT.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pilot_proto::agent::{AgentConfig, PeerRoute};
use pilot_proto::wire::addr::{AddrPort, port};
use pilot_sim::{HostId, LinkConfig, NatConfig, NatId, NetId, Sim, SimBuilder};

use crate::agent_host::AgentHost;
pub use crate::rendezvous::SourceMap;
use crate::rendezvous::{BEACON_PORT, BEACON_STREAM_PORT, REGISTRY_PORT, Rendezvous};

/// Where the rendezvous host lives.
pub const RENDEZVOUS_IP: [u8; 4] = [203, 0, 113, 250];

/// How long a cell may take (simulated) to reach its expected route after the dial.
pub const CELL_DEADLINE: Duration = Duration::from_secs(60);

/// The network a node sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NatKind {
    /// A public address, no NAT.
    Public,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    Restricted,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestricted,
    /// Address-and-port-dependent mapping with sequential ports.
    SymmetricSequential,
    /// Address-and-port-dependent mapping with random ports.
    SymmetricRandom,
    /// A home LAN behind a port-restricted NAT with hairpinning.
    LanHairpin,
    /// A home LAN behind a port-restricted NAT without hairpinning.
    LanNoHairpin,
    /// A firewall dropping all UDP (TCP to the registry still works).
    UdpBlocked,
}

/// Every kind, in table order.
pub const KINDS: [NatKind; 9] = [
    NatKind::Public,
    NatKind::FullCone,
    NatKind::Restricted,
    NatKind::PortRestricted,
    NatKind::SymmetricSequential,
    NatKind::SymmetricRandom,
    NatKind::LanHairpin,
    NatKind::LanNoHairpin,
    NatKind::UdpBlocked,
];

impl NatKind {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::FullCone => "full cone",
            Self::Restricted => "restricted",
            Self::PortRestricted => "port-restricted",
            Self::SymmetricSequential => "symmetric seq",
            Self::SymmetricRandom => "symmetric rand",
            Self::LanHairpin => "LAN hairpin",
            Self::LanNoHairpin => "LAN no hairpin",
            Self::UdpBlocked => "UDP blocked",
        }
    }

    fn nat(self) -> Option<NatConfig> {
        match self {
            Self::Public => None,
            Self::FullCone => Some(NatConfig::full_cone()),
            Self::Restricted => Some(NatConfig::restricted_cone()),
            Self::PortRestricted => Some(NatConfig::port_restricted_cone()),
            Self::SymmetricSequential => Some(NatConfig::symmetric_sequential()),
            Self::SymmetricRandom => Some(NatConfig::symmetric()),
            Self::LanHairpin => Some(NatConfig::port_restricted_cone().hairpinning(true)),
            Self::LanNoHairpin => Some(NatConfig::port_restricted_cone()),
            Self::UdpBlocked => Some(NatConfig::udp_blocked()),
        }
    }

    fn is_symmetric(self) -> bool {
        matches!(self, Self::SymmetricSequential | Self::SymmetricRandom)
    }

    /// Filters inbound packets by remote port (so a symmetric peer's new port is refused).
    fn filters_port(self) -> bool {
        matches!(
            self,
            Self::PortRestricted | Self::LanHairpin | Self::LanNoHairpin
        ) || self.is_symmetric()
    }

    fn is_lan(self) -> bool {
        matches!(self, Self::LanHairpin | Self::LanNoHairpin)
    }
}

/// The route a cell must reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Straight between public endpoints (punched or not).
    Direct,
    /// Straight between LAN endpoints (same network).
    Local,
    /// Through the beacon.
    Relay,
}

impl Expected {
    /// `direct`, `local` or `relay`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Local => "local",
            Self::Relay => "relay",
        }
    }

    fn matches(self, route: PeerRoute) -> bool {
        matches!(
            (self, route),
            (Self::Direct, PeerRoute::Direct(_))
                | (Self::Local, PeerRoute::Local(_))
                | (Self::Relay, PeerRoute::Relay)
        )
    }
}

/// The expectation table (symmetric in `a` and `b`):
///
/// | pair | route |
/// |---|---|
/// | both on the same LAN (same LAN kind) | local (host candidates exchanged once keyed) |
/// | either UDP-blocked | relay |
/// | symmetric × (port-filtering: port-restricted, LAN, symmetric) | relay (no port prediction) |
/// | anything else | direct (punched when needed) |
pub fn expected(a: NatKind, b: NatKind) -> Expected {
    if a == b && a.is_lan() {
        return Expected::Local;
    }
    if a == NatKind::UdpBlocked || b == NatKind::UdpBlocked {
        return Expected::Relay;
    }
    if (a.is_symmetric() && b.filters_port()) || (b.is_symmetric() && a.filters_port()) {
        return Expected::Relay;
    }
    Expected::Direct
}

/// One cell's simulated network.
#[derive(Debug)]
pub struct Cell {
    /// The simulation.
    pub sim: Sim,
    /// The rendezvous host.
    pub rendezvous: HostId,
    /// The dialling node.
    pub a: HostId,
    /// The dialled node.
    pub b: HostId,
    /// NATs in front of `a` and `b` (the same one for a shared LAN).
    pub nats: (Option<NatId>, Option<NatId>),
    /// Stream sources as the rendezvous sees them (see [`SourceMap`]).
    pub sources: SourceMap,
}

impl Cell {
    /// Re-reads the NATs' public addresses into the rendezvous's source map (after building,
    /// and after a scenario changes a NAT's address).
    pub fn refresh_sources(&mut self) {
        let mut map = self.sources.borrow_mut();
        map.clear();
        for (host, nat) in [(self.a, self.nats.0), (self.b, self.nats.1)] {
            let (Some(nat), Some(SocketAddr::V4(addr))) = (nat, self.sim.host_addr(host)) else {
                continue;
            };
            if let Some(public) = self.sim.nat(nat).map(|n| n.public_ip()) {
                map.insert(*addr.ip(), public);
            }
        }
    }
}

/// The base seed of cell (a, b); run `i` uses `derive_seed(base, "sweep", i)`, the same
/// derivation as `Scenario::run_many`, so the test and the example run the same seeds.
pub fn base_seed(a: NatKind, b: NatKind) -> u64 {
    0x6e61_745f_0000_0000 | (a as u64) << 8 | b as u64
}

/// The seed of run `index` of cell (a, b).
pub fn run_seed(a: NatKind, b: NatKind, index: u64) -> u64 {
    let bytes = pilot_sim::seed::derive_seed(base_seed(a, b), "sweep", index);
    u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default())
}

/// The link loss for `seed`: 0-5 % in whole percent.
pub fn loss_for(seed: u64) -> f64 {
    (seed % 6) as f64 / 100.0
}

/// Agent configuration used in the matrix: public nodes (so the registry resolves them).
pub fn agent_config() -> AgentConfig {
    let mut config = AgentConfig::default();
    config.beacon = Some(SocketAddr::from((RENDEZVOUS_IP, BEACON_PORT)));
    config.beacon_tcp = Some(SocketAddr::from((RENDEZVOUS_IP, BEACON_STREAM_PORT)));
    config.public = true;
    config
}

/// Builds a cell with `loss` on every link.
pub fn build_cell(seed: u64, a: NatKind, b: NatKind, loss: f64) -> Cell {
    build_cell_with(seed, a, b, loss, (agent_config(), agent_config()))
}

/// [`build_cell`] with the agents' configurations given (`a`'s, then `b`'s).
pub fn build_cell_with(
    seed: u64,
    a: NatKind,
    b: NatKind,
    loss: f64,
    configs: (AgentConfig, AgentConfig),
) -> Cell {
    let mut builder = SimBuilder::new(seed);
    let link = LinkConfig::with_latency(Duration::from_millis(10))
        .jitter(Duration::from_millis(2))
        .loss(loss);
    builder.default_link(link);
    let sources = SourceMap::default();
    let rendezvous = add_rendezvous(&mut builder, sources.clone());
    let nat_a = a.nat().map(|c| builder.nat("nat-a", NetId::INTERNET, c));
    let shared = a == b && a.is_lan();
    let nat_b = if shared {
        nat_a
    } else {
        b.nat().map(|c| builder.nat("nat-b", NetId::INTERNET, c))
    };
    let a_host = add_agent(&mut builder, "a", nat_a, configs.0);
    let b_host = add_agent(&mut builder, "b", nat_b, configs.1);
    debug_assert_eq!((rendezvous, a_host, b_host), (RENDEZVOUS, A, B));
    let mut cell = Cell {
        sim: builder.build().expect("the matrix topology is valid"),
        rendezvous,
        a: a_host,
        b: b_host,
        nats: (nat_a, nat_b),
        sources,
    };
    cell.refresh_sources();
    cell
}

fn add_rendezvous(builder: &mut SimBuilder, sources: SourceMap) -> HostId {
    let rendezvous = builder.host("rendezvous", NetId::INTERNET, move |ctx: &_| {
        Box::new(Rendezvous::new(ctx, sources.clone()))
    });
    builder
        .host_mut(rendezvous)
        .addr(RENDEZVOUS_IP.into())
        .udp_ports(&[BEACON_PORT])
        .listen(REGISTRY_PORT)
        .listen(BEACON_STREAM_PORT);
    rendezvous
}

fn add_agent(
    builder: &mut SimBuilder,
    name: &str,
    nat: Option<NatId>,
    config: AgentConfig,
) -> HostId {
    let net = nat.map_or(NetId::INTERNET, NatId::inside);
    let registry = SocketAddr::from((RENDEZVOUS_IP, REGISTRY_PORT));
    builder.host(name, net, move |ctx: &_| {
        Box::new(AgentHost::new(ctx, config.clone(), registry))
    })
}

/// What one run of a cell achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// `a`'s route to `b` at the end.
    pub route_a: PeerRoute,
    /// `b`'s route to `a` at the end.
    pub route_b: PeerRoute,
    /// From the dial to the established stream.
    pub connect: Option<Duration>,
    /// From the dial until both sides reported the expected route (if they did).
    pub settled: Option<Duration>,
}

impl Outcome {
    /// Whether the run reached `expected` on both sides with the stream established.
    pub fn reached(&self, expected: Expected) -> bool {
        self.settled.is_some() && expected.matches(self.route_a) && expected.matches(self.route_b)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a->b {:?}, b->a {:?}, connect {:?}, settled {:?}",
            self.route_a, self.route_b, self.connect, self.settled
        )
    }
}

/// The rendezvous host of every cell (built first).
pub const RENDEZVOUS: HostId = HostId(0);
/// The dialling host of every cell.
pub const A: HostId = HostId(1);
/// The dialled host of every cell.
pub const B: HostId = HostId(2);

/// Registers both agents, dials `b`'s echo port from `a`, and runs until the stream is up and
/// both routes are `expected` (or [`CELL_DEADLINE`] passes).
pub fn run_cell(cell: &mut Cell, expected: Expected) -> Outcome {
    run_sim(&mut cell.sim, expected)
}

/// [`run_cell`] on a cell's simulation alone (hosts [`A`] and [`B`]).
pub fn run_sim(sim: &mut Sim, expected: Expected) -> Outcome {
    let (a, b) = (A, B);
    let registered = |sim: &Sim| address(sim, a).is_some() && address(sim, b).is_some();
    let deadline = sim.now() + Duration::from_secs(30);
    let ok = sim.run_until_true(deadline, registered).unwrap_or(false);
    assert!(ok, "both agents must register within 30 s");
    let b_addr = address(sim, b).expect("registered above");
    let a_addr = address(sim, a).expect("registered above");

    let start = sim.now();
    sim.act::<AgentHost, _>(a, |host, now| {
        host.connect(now, AddrPort::new(b_addr, port::ECHO));
    });
    let done = |sim: &Sim| {
        let (Some(ha), Some(hb)) = (sim.machine::<AgentHost>(a), sim.machine::<AgentHost>(b))
        else {
            return false;
        };
        ha.any_dial_connected()
            && expected.matches(ha.route(b_addr))
            && expected.matches(hb.route(a_addr))
    };
    let settled = sim
        .run_until_true(start + CELL_DEADLINE, done)
        .unwrap_or(false);
    outcome(sim, a, b, (a_addr, b_addr), start, settled)
}

fn outcome(
    sim: &Sim,
    a: HostId,
    b: HostId,
    (a_addr, b_addr): (pilot_proto::wire::addr::Addr, pilot_proto::wire::addr::Addr),
    start: Instant,
    settled: bool,
) -> Outcome {
    let ha = sim.machine::<AgentHost>(a);
    let hb = sim.machine::<AgentHost>(b);
    Outcome {
        route_a: ha.map_or(PeerRoute::None, |h| h.route(b_addr)),
        route_b: hb.map_or(PeerRoute::None, |h| h.route(a_addr)),
        connect: ha
            .and_then(AgentHost::first_dial_connected)
            .map(|at| at.saturating_duration_since(start)),
        settled: settled.then(|| sim.now().saturating_duration_since(start)),
    }
}

/// A host's registered address.
pub fn address(sim: &Sim, host: HostId) -> Option<pilot_proto::wire::addr::Addr> {
    sim.machine::<AgentHost>(host)?.address
}
