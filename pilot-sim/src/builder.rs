//! Building a simulation: seed, networks, NATs, hosts and their links.
//!
//! Addresses are assigned automatically unless given: public hosts and NATs on the internet get
//! addresses from 203.0.113.10 upwards, and the private network behind NAT `k` uses
//! `10.k.0.0/16` from `10.k.0.10` upwards. Hosts start (their factory runs) at the epoch, or
//! after the delay set with [`HostSpec::start_after`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::fault::FaultRule;
use crate::link::{Link, LinkConfig};
use crate::machine::{HostContext, Machine, MachineFactory};
use crate::nat::{NatBox, NatConfig};
use crate::pcap::Capture;
use crate::queue::{EventQueue, nanos};
use crate::seed::{SimRng, derive_seed, seed_from_env};
use crate::sim::{Attach, Classifier, Event, HostState, NatState, Network, Sim};
use crate::stream::Streams;
use crate::trace::Trace;
use crate::{HostId, NatId, NetId};

/// The UDP port a host binds when none is given.
pub const DEFAULT_UDP_PORT: u16 = 4000;

/// Errors found when building a simulation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Two interfaces on one network were given the same address.
    #[error("address {addr} is used twice on network {net}")]
    DuplicateAddress {
        /// The address.
        addr: Ipv4Addr,
        /// The network's index.
        net: usize,
    },
    /// A host or NAT names a network that does not exist (yet).
    #[error("network {0} does not exist")]
    UnknownNetwork(usize),
}

/// Settings of one host, changed through [`SimBuilder::host_mut`].
pub struct HostSpec {
    name: String,
    net: NetId,
    addr: Option<Ipv4Addr>,
    udp_ports: Vec<u16>,
    listen_ports: Vec<u16>,
    up: Option<LinkConfig>,
    down: Option<LinkConfig>,
    start_after: Duration,
    factory: MachineFactory,
}

impl HostSpec {
    /// Sets the host's address on its network.
    pub fn addr(&mut self, addr: Ipv4Addr) -> &mut Self {
        self.addr = Some(addr);
        self
    }

    /// Sets the UDP ports the host binds; the first is the one it sends from.
    pub fn udp_ports(&mut self, ports: &[u16]) -> &mut Self {
        self.udp_ports = ports.to_vec();
        self
    }

    /// Adds a port on which the host accepts reliable streams.
    pub fn listen(&mut self, port: u16) -> &mut Self {
        self.listen_ports.push(port);
        self
    }

    /// Sets both directions of the host's link.
    pub fn link(&mut self, config: LinkConfig) -> &mut Self {
        self.up = Some(config);
        self.down = Some(config);
        self
    }

    /// Sets the host's up-link (towards the network) only.
    pub fn up_link(&mut self, config: LinkConfig) -> &mut Self {
        self.up = Some(config);
        self
    }

    /// Sets the host's down-link (towards the host) only.
    pub fn down_link(&mut self, config: LinkConfig) -> &mut Self {
        self.down = Some(config);
        self
    }

    /// Starts the host `delay` after the epoch instead of at it.
    pub fn start_after(&mut self, delay: Duration) -> &mut Self {
        self.start_after = delay;
        self
    }
}

impl std::fmt::Debug for HostSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSpec")
            .field("name", &self.name)
            .field("net", &self.net)
            .field("addr", &self.addr)
            .field("udp_ports", &self.udp_ports)
            .finish_non_exhaustive()
    }
}

/// Settings of one NAT, changed through [`SimBuilder::nat_mut`].
#[derive(Debug)]
pub struct NatSpec {
    name: String,
    parent: NetId,
    config: NatConfig,
    public_ip: Option<Ipv4Addr>,
    link: Option<LinkConfig>,
}

impl NatSpec {
    /// Sets the NAT's address on its parent network.
    pub fn public_ip(&mut self, ip: Ipv4Addr) -> &mut Self {
        self.public_ip = Some(ip);
        self
    }

    /// Sets both directions of the link from the NAT to its parent network.
    pub fn link(&mut self, config: LinkConfig) -> &mut Self {
        self.link = Some(config);
        self
    }
}

/// Builds a [`Sim`].
pub struct SimBuilder {
    seed: u64,
    record_trace: bool,
    capture: bool,
    default_link: LinkConfig,
    event_budget: u64,
    classifier: Option<Classifier>,
    faults: Vec<FaultRule>,
    hosts: Vec<HostSpec>,
    nats: Vec<NatSpec>,
}

impl SimBuilder {
    /// Starts a simulation description with the given master seed.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            record_trace: false,
            capture: false,
            default_link: LinkConfig::with_latency(Duration::from_millis(10)),
            event_budget: 500_000_000,
            classifier: None,
            faults: Vec::new(),
            hosts: Vec::new(),
            nats: Vec::new(),
        }
    }

    /// Like [`SimBuilder::new`], but `PILOT_SIM_SEED` overrides `default_seed` when set.
    pub fn from_env(default_seed: u64) -> Self {
        Self::new(seed_from_env(default_seed))
    }

    /// Returns the master seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Keeps every trace record in memory (for [`Sim::timeline`]); off by default.
    pub fn record_trace(&mut self, on: bool) -> &mut Self {
        self.record_trace = on;
        self
    }

    /// Captures every packet at every host and NAT (for pcap files); off by default.
    pub fn capture(&mut self, on: bool) -> &mut Self {
        self.capture = on;
        self
    }

    /// Sets the link of every host and NAT that does not set its own (default: 10 ms latency,
    /// otherwise ideal).
    pub fn default_link(&mut self, config: LinkConfig) -> &mut Self {
        self.default_link = config;
        self
    }

    /// Sets how many events a run may process before it fails (default 500 million).
    pub fn event_budget(&mut self, events: u64) -> &mut Self {
        self.event_budget = events;
        self
    }

    /// Sets the classifier labelling UDP payloads for fault rules and the timeline.
    pub fn classifier(
        &mut self,
        classify: impl Fn(&[u8]) -> Option<&'static str> + 'static,
    ) -> &mut Self {
        self.classifier = Some(Box::new(classify));
        self
    }

    /// Adds a fault rule.
    pub fn fault(&mut self, rule: FaultRule) -> &mut Self {
        self.faults.push(rule);
        self
    }

    /// Adds a NAT whose public side sits on `parent` (the internet, or another NAT's inside
    /// for chaining). Its private network is [`NatId::inside`].
    pub fn nat(&mut self, name: &str, parent: NetId, config: NatConfig) -> NatId {
        let spec = NatSpec {
            name: name.to_owned(),
            parent,
            config,
            public_ip: None,
            link: None,
        };
        self.nats.push(spec);
        NatId(self.nats.len() - 1)
    }

    /// Returns a NAT's settings for changing.
    ///
    /// # Panics
    ///
    /// Panics if `nat` was not returned by this builder (a bug in the test).
    pub fn nat_mut(&mut self, nat: NatId) -> &mut NatSpec {
        &mut self.nats[nat.0]
    }

    /// Adds a host on network `net` whose machine `factory` builds, binding UDP port
    /// [`DEFAULT_UDP_PORT`] unless changed with [`SimBuilder::host_mut`].
    pub fn host<F>(&mut self, name: &str, net: NetId, factory: F) -> HostId
    where
        F: FnMut(&HostContext) -> Box<dyn Machine> + 'static,
    {
        self.hosts.push(HostSpec {
            name: name.to_owned(),
            net,
            addr: None,
            udp_ports: vec![DEFAULT_UDP_PORT],
            listen_ports: Vec::new(),
            up: None,
            down: None,
            start_after: Duration::ZERO,
            factory: Box::new(factory),
        });
        HostId(self.hosts.len() - 1)
    }

    /// Returns a host's settings for changing.
    ///
    /// # Panics
    ///
    /// Panics if `host` was not returned by this builder (a bug in the test).
    pub fn host_mut(&mut self, host: HostId) -> &mut HostSpec {
        &mut self.hosts[host.0]
    }

    /// Builds the simulation. Virtual time starts now: the epoch is read from the wall clock
    /// once, and only differences from it are ever used.
    ///
    /// # Errors
    ///
    /// Returns a [`BuildError`] for duplicate addresses or unknown networks.
    pub fn build(mut self) -> Result<Sim, BuildError> {
        let epoch = Instant::now();
        let mut addressing = Addressing::new(self.nats.len());
        let nat_specs = std::mem::take(&mut self.nats);
        let nats = nat_specs
            .into_iter()
            .enumerate()
            .map(|(index, spec)| self.nat_state(index, spec, &mut addressing))
            .collect::<Result<Vec<_>, _>>()?;

        let mut queue = EventQueue::new();
        let host_specs = std::mem::take(&mut self.hosts);
        let mut hosts = Vec::with_capacity(host_specs.len());
        for (index, spec) in host_specs.into_iter().enumerate() {
            queue.push(nanos(spec.start_after), Event::Start { host: index });
            hosts.push(self.host_state(index, spec, &mut addressing)?);
        }

        Ok(Sim {
            epoch,
            now: epoch,
            now_ns: 0,
            seed: self.seed,
            queue,
            hosts,
            nats,
            nets: addressing.nets,
            blocked: Default::default(),
            isolated: Default::default(),
            holds: Default::default(),
            held: Vec::new(),
            faults: self.faults,
            fault_rng: SimRng::new(self.seed, "faults", 0),
            classifier: self.classifier,
            trace: Trace::new(self.record_trace),
            stats: Default::default(),
            pool: Vec::new(),
            scratch: Vec::with_capacity(2048),
            streams: Streams::default(),
            event_budget: self.event_budget,
        })
    }

    fn nat_state(
        &self,
        index: usize,
        spec: NatSpec,
        addressing: &mut Addressing,
    ) -> Result<NatState, BuildError> {
        let parent = spec.parent.0;
        // A NAT may only sit on the internet or on an earlier NAT's inside (no cycles).
        if parent > index {
            return Err(BuildError::UnknownNetwork(parent));
        }
        let ip = addressing.assign(parent, spec.public_ip, Attach::Nat(index))?;
        let link = spec.link.unwrap_or(self.default_link);
        let rng = |label: &str| SimRng::new(self.seed, label, index as u64);
        Ok(NatState {
            name: spec.name,
            outside_net: parent,
            nat: NatBox::with_rng(spec.config, ip, rng("nat")),
            up: Link::new(link, rng("nat-up")),
            down: Link::new(link, rng("nat-down")),
            capture: self.capture.then(Capture::default),
        })
    }

    fn host_state(
        &self,
        index: usize,
        spec: HostSpec,
        addressing: &mut Addressing,
    ) -> Result<HostState, BuildError> {
        let net = spec.net.0;
        let addr = addressing.assign(net, spec.addr, Attach::Host(index))?;
        let rng = |label: &str| SimRng::new(self.seed, label, index as u64);
        Ok(HostState {
            name: spec.name,
            net,
            addr,
            udp_ports: spec.udp_ports,
            listen_ports: spec.listen_ports,
            machine: None,
            factory: spec.factory,
            boot: 0,
            seed: derive_seed(self.seed, "host", index as u64),
            timer: None,
            timer_generation: 0,
            up: Link::new(spec.up.unwrap_or(self.default_link), rng("host-up")),
            down: Link::new(spec.down.unwrap_or(self.default_link), rng("host-down")),
            capture: self.capture.then(Capture::default),
        })
    }
}

/// The networks being built and the next automatic address on each.
struct Addressing {
    nets: Vec<Network>,
    next: Vec<u32>,
}

impl Addressing {
    fn new(nat_count: usize) -> Self {
        let nets: Vec<Network> = std::iter::once(None)
            .chain((0..nat_count).map(Some))
            .map(|nat| Network {
                nat,
                addrs: BTreeMap::new(),
            })
            .collect();
        let next = vec![10; nets.len()];
        Self { nets, next }
    }

    /// Claims `explicit` (or the next automatic address) on `net` for `attach`.
    fn assign(
        &mut self,
        net: usize,
        explicit: Option<Ipv4Addr>,
        attach: Attach,
    ) -> Result<Ipv4Addr, BuildError> {
        let Some(network) = self.nets.get_mut(net) else {
            return Err(BuildError::UnknownNetwork(net));
        };
        let addr = explicit.unwrap_or_else(|| auto_addr(net, &mut self.next[net]));
        if network.addrs.insert(addr, attach).is_some() {
            return Err(BuildError::DuplicateAddress { addr, net });
        }
        Ok(addr)
    }
}

impl std::fmt::Debug for SimBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBuilder")
            .field("seed", &self.seed)
            .field("hosts", &self.hosts)
            .field("nats", &self.nats)
            .finish_non_exhaustive()
    }
}

/// Returns the next automatic address on network `net`.
fn auto_addr(net: usize, next: &mut u32) -> Ipv4Addr {
    let base = if net == 0 {
        u32::from(Ipv4Addr::new(203, 0, 113, 0))
    } else {
        u32::from(Ipv4Addr::new(10, (net % 256) as u8, 0, 0))
    };
    let addr = Ipv4Addr::from(base + *next);
    *next += 1;
    addr
}
