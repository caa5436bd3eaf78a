//! Deterministic network simulator for pilot-proto nodes.
//!
//! `pilot-sim` runs many hosts in one thread on virtual time. Each host drives a sans-IO
//! [`Machine`] through exactly the calls the tokio and mio drivers make; the hosts exchange real
//! IPv4/UDP packets (built with `smoltcp::wire`) across [links](link) with latency, jitter,
//! bandwidth, loss, duplication, reordering and MTU, through [RFC 4787 NAT boxes](nat) that can
//! be chained, and over reliable byte streams (the registry's TCP). Partitions, holds, host
//! crashes and restarts, NAT reboots, address changes and [fault rules](fault) aimed at packet
//! kinds are all scheduled on the same virtual clock.
//!
//! Everything random derives from one master seed, and event ties break by insertion order, so
//! one seed always gives the same run; the [trace] hashes every event so that this is
//! checked. A failing [`Scenario`] prints its seed and the command that reruns it, and writes
//! pcap files of every host and NAT. See `docs/design/simulator.md` for the model.
//!
//! ```
//! use pilot_sim::{NetId, NatConfig, SimBuilder};
//! # use pilot_sim::{Machine, HostContext};
//! # struct Idle;
//! # impl Machine for Idle {
//! #     fn handle_datagram(&mut self, _: std::time::Instant, _: std::net::SocketAddr,
//! #         _: std::net::SocketAddr, _: &[u8]) {}
//! #     fn handle_timeout(&mut self, _: std::time::Instant) {}
//! #     fn poll_transmit(&mut self, _: std::time::Instant, _: &mut Vec<u8>)
//! #         -> Option<pilot_proto::Transmit> { None }
//! #     fn poll_timeout(&self) -> Option<std::time::Instant> { None }
//! # }
//! let mut builder = SimBuilder::new(7);
//! let home = builder.nat("home", NetId::INTERNET, NatConfig::port_restricted_cone());
//! let alice = builder.host("alice", home.inside(), |_ctx: &HostContext| Box::new(Idle));
//! let mut sim = builder.build().unwrap();
//! sim.run_for(std::time::Duration::from_secs(1)).unwrap();
//! assert!(sim.machine::<Idle>(alice).is_some());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod builder;
mod control;
pub mod fault;
mod harness;
pub mod link;
mod machine;
pub mod nat;
mod net;
mod packet;
pub mod pcap;
mod queue;
mod report;
pub mod seed;
mod sim;
mod stream;
pub mod trace;

pub use builder::{BuildError, DEFAULT_UDP_PORT, HostSpec, NatSpec, SimBuilder};
pub use fault::{FaultAction, FaultRule, Stage};
pub use harness::Scenario;
pub use link::{Direction, LinkConfig};
pub use machine::{
    DRAIN_LIMIT, HostContext, Machine, MachineFactory, StreamCommand, StreamEvent, StreamId,
};
pub use nat::{Filtering, Mapping, NatBox, NatConfig, NatDrop, PortAllocation};
pub use packet::HEADER_LEN;
pub use seed::{SEED_ENV, seed_from_env};
pub use sim::{Iface, SeedChoice, Sim, SimError, Stats};
pub use trace::{DropReason, Place, TraceKind, TraceRecord};

/// Identifies a host in a simulation (its index in creation order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId(pub usize);

/// Identifies a NAT box in a simulation (its index in creation order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatId(pub usize);

impl NatId {
    /// Returns the private network behind this NAT.
    pub fn inside(self) -> NetId {
        NetId(self.0 + 1)
    }
}

/// Identifies a network: the public internet, or the private side of one NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetId(pub usize);

impl NetId {
    /// The public internet.
    pub const INTERNET: Self = Self(0);

    /// Returns the NAT that owns this network, or `None` for the internet.
    pub fn nat(self) -> Option<NatId> {
        self.0.checked_sub(1).map(NatId)
    }
}
