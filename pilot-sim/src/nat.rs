//! NAT boxes per RFC 4787: mapping, filtering, port allocation, timers, hairpinning.
//!
//! A [`NatBox`] owns one public address and a mapping table from internal endpoints to external
//! ports. It never sees packets, only endpoints: the router asks it to translate an outbound
//! `(internal, remote)` pair or an inbound `(external port, remote)` pair and applies the answer
//! to the bytes. Tables are `BTreeMap`s so that nothing depends on hash order.
//!
//! Each mapping owns a unique external port (RFC 4787 REQ-3: no port overloading). A mapping
//! lives while outbound traffic refreshes it within `mapping_timeout` (REQ-6); expired entries
//! are removed lazily when they are next looked up or their port is wanted again.
//!
//! # Limitations
//!
//! - Limitation: one public address per NAT (no address pooling, RFC 4787 REQ-2), and no port
//!   parity or port-range-class preservation (REQ-3a, REQ-4).
//! - Limitation: a freed external port may be reissued at once; RFC 6888's 120 s quarantine is
//!   not modelled.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::seed::SimRng;

/// How a NAT reuses an external endpoint for one internal endpoint (RFC 4787 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mapping {
    /// One external port per internal endpoint, whatever the destination.
    EndpointIndependent,
    /// A new external port per destination IP.
    AddressDependent,
    /// A new external port per destination IP and port.
    AddressPortDependent,
}

/// Which inbound packets a NAT admits on an existing mapping (RFC 4787 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Filtering {
    /// Any remote endpoint may send to a live mapping.
    EndpointIndependent,
    /// Only remote IPs the internal endpoint has sent to.
    AddressDependent,
    /// Only remote IP and port pairs the internal endpoint has sent to.
    AddressPortDependent,
}

/// How a NAT picks the external port of a new mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortAllocation {
    /// Reuse the internal port if it is free, else fall back to sequential.
    Preserving,
    /// The next free port after the last one handed out.
    Sequential,
    /// A uniformly random free port from the NAT's random stream.
    Random,
}

/// The behaviour of one NAT box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatConfig {
    /// Mapping behaviour.
    pub mapping: Mapping,
    /// Filtering behaviour.
    pub filtering: Filtering,
    /// Port allocation behaviour.
    pub allocation: PortAllocation,
    /// How long a mapping (and each filter entry) survives without outbound refresh.
    pub mapping_timeout: Duration,
    /// Whether admitted inbound packets also refresh the mapping.
    pub inbound_refresh: bool,
    /// Whether packets from inside to the NAT's own public address are looped back inside
    /// (with the sender's external address as source, RFC 4787 REQ-9).
    pub hairpinning: bool,
    /// A firewall that drops all UDP in both directions.
    pub block_udp: bool,
    /// The lowest external port handed out.
    pub port_min: u16,
    /// The highest external port handed out.
    pub port_max: u16,
}

impl NatConfig {
    /// A NAT with the given mapping and filtering and otherwise typical settings: random
    /// allocation for endpoint-dependent mapping, preserving otherwise; 120 s timeout; no
    /// hairpinning.
    pub fn new(mapping: Mapping, filtering: Filtering) -> Self {
        let allocation = match mapping {
            Mapping::EndpointIndependent => PortAllocation::Preserving,
            _ => PortAllocation::Random,
        };
        Self {
            mapping,
            filtering,
            allocation,
            mapping_timeout: Duration::from_secs(120),
            inbound_refresh: false,
            hairpinning: false,
            block_udp: false,
            port_min: 1024,
            port_max: 65_535,
        }
    }

    /// Full cone: EIM + EIF.
    pub fn full_cone() -> Self {
        Self::new(Mapping::EndpointIndependent, Filtering::EndpointIndependent)
    }

    /// Restricted cone: EIM + ADF.
    pub fn restricted_cone() -> Self {
        Self::new(Mapping::EndpointIndependent, Filtering::AddressDependent)
    }

    /// Port-restricted cone: EIM + APDF (most home routers).
    pub fn port_restricted_cone() -> Self {
        Self::new(
            Mapping::EndpointIndependent,
            Filtering::AddressPortDependent,
        )
    }

    /// Symmetric: APDM + APDF with random ports.
    pub fn symmetric() -> Self {
        Self::new(
            Mapping::AddressPortDependent,
            Filtering::AddressPortDependent,
        )
    }

    /// Symmetric with sequential ports (predictable).
    pub fn symmetric_sequential() -> Self {
        Self::symmetric().allocation(PortAllocation::Sequential)
    }

    /// A firewall that drops every UDP packet.
    pub fn udp_blocked() -> Self {
        Self {
            block_udp: true,
            ..Self::port_restricted_cone()
        }
    }

    /// Returns a copy with the given port allocation.
    pub fn allocation(mut self, allocation: PortAllocation) -> Self {
        self.allocation = allocation;
        self
    }

    /// Returns a copy with the given mapping timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.mapping_timeout = timeout;
        self
    }

    /// Returns a copy with hairpinning on or off.
    pub fn hairpinning(mut self, on: bool) -> Self {
        self.hairpinning = on;
        self
    }
}

/// Why a NAT refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatDrop {
    /// No live mapping owns the destination port.
    NoMapping,
    /// A mapping exists but its filter does not admit this remote.
    Filtered,
    /// Every external port is in use.
    PortsExhausted,
    /// The box drops all UDP.
    Firewall,
    /// A packet to the NAT's own address from inside, with hairpinning off.
    NoHairpin,
}

/// The outcome of an outbound translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbound {
    /// The external source endpoint.
    pub external: SocketAddrV4,
    /// Whether a new mapping was created for this packet.
    pub created: bool,
}

/// The state of one NAT box.
#[derive(Debug, Clone)]
pub struct NatBox {
    config: NatConfig,
    // Limitation: a single public address; no pooling of several addresses (RFC 4787 REQ-2).
    public_ip: Ipv4Addr,
    by_internal: BTreeMap<MapKey, u16>,
    by_external: BTreeMap<u16, Entry>,
    next_port: u16,
    rng: SimRng,
}

/// The most filter entries one mapping keeps; older ones are evicted first.
const MAX_FILTER_ENTRIES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct MapKey {
    internal: SocketAddrV4,
    // The parts of the remote endpoint the mapping type looks at; zeroed otherwise.
    remote_ip: Ipv4Addr,
    remote_port: u16,
}

#[derive(Debug, Clone)]
struct Entry {
    key: MapKey,
    refreshed: Instant,
    // Remote endpoints the internal endpoint has sent to, with the time of the last send.
    contacted: BTreeMap<SocketAddrV4, Instant>,
}

impl NatBox {
    /// Creates an empty NAT with public address `public_ip`, drawing random ports from a
    /// stream derived from `seed` (for using a NAT box on its own, outside a simulation).
    pub fn new(config: NatConfig, public_ip: Ipv4Addr, seed: u64) -> Self {
        Self::with_rng(config, public_ip, SimRng::new(seed, "nat", 0))
    }

    /// Creates an empty NAT drawing from the given random stream.
    pub(crate) fn with_rng(config: NatConfig, public_ip: Ipv4Addr, mut rng: SimRng) -> Self {
        let span = u64::from(config.port_max.saturating_sub(config.port_min)) + 1;
        let next_port = config.port_min + rng.below(span) as u16;
        Self {
            config,
            public_ip,
            by_internal: BTreeMap::new(),
            by_external: BTreeMap::new(),
            next_port,
            rng,
        }
    }

    /// Returns the configuration.
    pub fn config(&self) -> &NatConfig {
        &self.config
    }

    /// Returns the public address.
    pub fn public_ip(&self) -> Ipv4Addr {
        self.public_ip
    }

    /// Returns how many mappings are live at `now`.
    pub fn live_mappings(&self, now: Instant) -> usize {
        self.by_external
            .values()
            .filter(|entry| !self.is_expired(entry.refreshed, now))
            .count()
    }

    /// Translates an outbound packet from `internal` to `remote`, creating or refreshing its
    /// mapping and filter entry.
    pub fn outbound(
        &mut self,
        now: Instant,
        internal: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> Result<Outbound, NatDrop> {
        if self.config.block_udp {
            return Err(NatDrop::Firewall);
        }
        let key = self.map_key(internal, remote);
        let (port, created) = match self.live_port(now, &key) {
            Some(port) => (port, false),
            None => (self.create_mapping(now, key)?, true),
        };

        // Outbound traffic refreshes the mapping and opens the filter for this remote.
        if let Some(entry) = self.by_external.get_mut(&port) {
            entry.refreshed = now;
            if entry.contacted.len() >= MAX_FILTER_ENTRIES && !entry.contacted.contains_key(&remote)
            {
                entry.contacted.pop_first();
            }
            entry.contacted.insert(remote, now);
        }
        Ok(Outbound {
            external: SocketAddrV4::new(self.public_ip, port),
            created,
        })
    }

    /// Translates an inbound packet from `remote` to external port `port`, returning the
    /// internal endpoint it is forwarded to.
    pub fn inbound(
        &mut self,
        now: Instant,
        port: u16,
        remote: SocketAddrV4,
    ) -> Result<SocketAddrV4, NatDrop> {
        if self.config.block_udp {
            return Err(NatDrop::Firewall);
        }
        let timeout = self.config.mapping_timeout;
        let Some(entry) = self.by_external.get_mut(&port) else {
            return Err(NatDrop::NoMapping);
        };
        if now.saturating_duration_since(entry.refreshed) >= timeout {
            let key = entry.key;
            self.remove(port, key);
            return Err(NatDrop::NoMapping);
        }
        if !admits(self.config.filtering, entry, remote, now, timeout) {
            return Err(NatDrop::Filtered);
        }
        if self.config.inbound_refresh {
            entry.refreshed = now;
        }
        Ok(entry.key.internal)
    }

    /// Forgets every mapping, as a reboot does.
    pub fn reboot(&mut self) {
        self.by_internal.clear();
        self.by_external.clear();
    }

    /// Replaces the behaviour (a NAT changing type); all mappings are lost.
    pub fn set_config(&mut self, config: NatConfig) {
        self.config = config;
        self.reboot();
    }

    /// Changes the public address; all mappings are lost.
    pub fn set_public_ip(&mut self, ip: Ipv4Addr) {
        self.public_ip = ip;
        self.reboot();
    }

    fn map_key(&self, internal: SocketAddrV4, remote: SocketAddrV4) -> MapKey {
        let (remote_ip, remote_port) = match self.config.mapping {
            Mapping::EndpointIndependent => (Ipv4Addr::UNSPECIFIED, 0),
            Mapping::AddressDependent => (*remote.ip(), 0),
            Mapping::AddressPortDependent => (*remote.ip(), remote.port()),
        };
        MapKey {
            internal,
            remote_ip,
            remote_port,
        }
    }

    fn is_expired(&self, refreshed: Instant, now: Instant) -> bool {
        now.saturating_duration_since(refreshed) >= self.config.mapping_timeout
    }

    /// Returns the port of a live mapping for `key`, removing it if it has expired.
    fn live_port(&mut self, now: Instant, key: &MapKey) -> Option<u16> {
        let port = *self.by_internal.get(key)?;
        let refreshed = self.by_external.get(&port).map(|entry| entry.refreshed)?;
        if self.is_expired(refreshed, now) {
            self.remove(port, *key);
            return None;
        }
        Some(port)
    }

    fn create_mapping(&mut self, now: Instant, key: MapKey) -> Result<u16, NatDrop> {
        let port = self
            .allocate(now, key.internal.port())
            .ok_or(NatDrop::PortsExhausted)?;
        self.by_internal.insert(key, port);
        let entry = Entry {
            key,
            refreshed: now,
            contacted: BTreeMap::new(),
        };
        self.by_external.insert(port, entry);
        Ok(port)
    }

    fn remove(&mut self, port: u16, key: MapKey) {
        self.by_external.remove(&port);
        self.by_internal.remove(&key);
    }

    /// Picks a free external port according to the allocation policy.
    fn allocate(&mut self, now: Instant, internal_port: u16) -> Option<u16> {
        let (min, max) = (self.config.port_min, self.config.port_max);
        let allocation = self.config.allocation;
        match allocation {
            PortAllocation::Preserving
                if (min..=max).contains(&internal_port) && self.is_free(now, internal_port) =>
            {
                return Some(internal_port);
            }
            PortAllocation::Random => {
                for _ in 0..64 {
                    let port = min + self.rng.below(u64::from(max - min) + 1) as u16;
                    if self.is_free(now, port) {
                        return Some(port);
                    }
                }
            }
            _ => {}
        }
        self.allocate_sequential(now)
    }

    fn allocate_sequential(&mut self, now: Instant) -> Option<u16> {
        let (min, max) = (self.config.port_min, self.config.port_max);
        let span = u32::from(max.saturating_sub(min)) + 1;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port >= max { min } else { port + 1 };
            if (min..=max).contains(&port) && self.is_free(now, port) {
                return Some(port);
            }
        }
        None
    }

    /// Returns true if `port` has no live mapping, removing an expired one.
    // Limitation: an expired mapping's port is free at once (no RFC 6888 reuse quarantine).
    fn is_free(&mut self, now: Instant, port: u16) -> bool {
        let Some(entry) = self.by_external.get(&port) else {
            return true;
        };
        if self.is_expired(entry.refreshed, now) {
            let key = entry.key;
            self.remove(port, key);
            return true;
        }
        false
    }
}

/// Applies the filtering rule: has the internal endpoint recently sent to this remote?
fn admits(
    filtering: Filtering,
    entry: &Entry,
    remote: SocketAddrV4,
    now: Instant,
    timeout: Duration,
) -> bool {
    let fresh = |sent: &Instant| now.saturating_duration_since(*sent) < timeout;
    match filtering {
        Filtering::EndpointIndependent => true,
        Filtering::AddressPortDependent => entry.contacted.get(&remote).is_some_and(fresh),
        Filtering::AddressDependent => {
            let low = SocketAddrV4::new(*remote.ip(), 0);
            let high = SocketAddrV4::new(*remote.ip(), u16::MAX);
            entry
                .contacted
                .range(low..=high)
                .any(|(_, sent)| fresh(sent))
        }
    }
}
