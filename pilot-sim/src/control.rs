//! Scenario controls: crashes and restarts, partitions and holds, link changes, NAT reboots and
//! address changes, fault rules, the classifier and packet capture.
//!
//! Each control takes effect at the current virtual time; `Sim::schedule` runs one at a later
//! instant. Controls that change the network leave a note in the trace.

use std::net::Ipv4Addr;

use crate::fault::FaultRule;
use crate::link::{Direction, LinkConfig};
use crate::pcap::Capture;
use crate::seed::derive_seed;
use crate::sim::{Attach, Iface, SeedChoice, Sim};
use crate::trace::TraceKind;
use crate::{HostId, NatId};

impl Sim {
    /// Crashes a host: its machine is dropped with all its state, its timer and streams die,
    /// and packets reaching it are dropped until it restarts.
    pub fn crash(&mut self, host: HostId) {
        let Some(state) = self.hosts.get_mut(host.0) else {
            return;
        };
        if state.machine.take().is_none() {
            return;
        }
        state.timer = None;
        state.timer_generation += 1;
        self.record(None, TraceKind::Crashed { host });
        self.streams_crash(host.0);
    }

    /// Restarts a host with a fresh machine from its factory (crashing it first if running).
    pub fn restart(&mut self, host: HostId, seed: SeedChoice) {
        self.crash(host);
        let master = self.seed;
        let Some(state) = self.hosts.get_mut(host.0) else {
            return;
        };
        state.boot += 1;
        if seed == SeedChoice::Fresh {
            let index = ((host.0 as u64) << 32) | u64::from(state.boot);
            state.seed = derive_seed(master, "host-restart", index);
        }
        self.start_host(host.0);
    }

    /// Cuts both directions between two hosts from now on.
    pub fn partition(&mut self, a: HostId, b: HostId) {
        self.partition_oneway(a, b);
        self.partition_oneway(b, a);
    }

    /// Cuts packets and streams from `from` to `to` (the other direction keeps working).
    pub fn partition_oneway(&mut self, from: HostId, to: HostId) {
        self.blocked.insert((from.0, to.0));
        self.note(format!(
            "partition {} -> {}",
            self.host_name(from),
            self.host_name(to)
        ));
    }

    /// Cuts a host off from every other host, both ways.
    pub fn isolate(&mut self, host: HostId) {
        self.isolated.insert(host.0);
        self.note(format!("isolate {}", self.host_name(host)));
    }

    /// Heals the partitions between two hosts (both directions) and any isolation of either.
    pub fn heal(&mut self, a: HostId, b: HostId) {
        self.blocked.remove(&(a.0, b.0));
        self.blocked.remove(&(b.0, a.0));
        self.isolated.remove(&a.0);
        self.isolated.remove(&b.0);
        self.note(format!(
            "heal {} <-> {}",
            self.host_name(a),
            self.host_name(b)
        ));
    }

    /// Heals every partition and isolation.
    pub fn heal_all(&mut self) {
        self.blocked.clear();
        self.isolated.clear();
        self.note("heal all".to_owned());
    }

    /// Holds packets from `from` to `to` at delivery until [`Sim::release`].
    pub fn hold(&mut self, from: HostId, to: HostId) {
        self.holds.insert((from.0, to.0));
        self.note(format!(
            "hold {} -> {}",
            self.host_name(from),
            self.host_name(to)
        ));
    }

    /// Ends a hold and delivers every held packet at once, in the order they were held
    /// (delivery-stage fault rules are skipped for them).
    pub fn release(&mut self, from: HostId, to: HostId) {
        self.holds.remove(&(from.0, to.0));
        self.note(format!(
            "release {} -> {}",
            self.host_name(from),
            self.host_name(to)
        ));
        let (released, kept) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(host, packet)| (packet.origin, *host) == (from.0, to.0));
        self.held = kept;
        // Delivered at once, before anything else due now, so the held order is kept.
        for (host, packet) in released {
            self.on_deliver(host, packet, true);
        }
    }

    /// Replaces the configuration of one direction of an interface's link.
    pub fn set_link(&mut self, iface: Iface, direction: Direction, config: LinkConfig) {
        let link = match (iface, direction) {
            (Iface::Host(host), Direction::Up) => self.hosts.get_mut(host.0).map(|h| &mut h.up),
            (Iface::Host(host), Direction::Down) => self.hosts.get_mut(host.0).map(|h| &mut h.down),
            (Iface::Nat(nat), Direction::Up) => self.nats.get_mut(nat.0).map(|n| &mut n.up),
            (Iface::Nat(nat), Direction::Down) => self.nats.get_mut(nat.0).map(|n| &mut n.down),
        };
        if let Some(link) = link {
            link.config = config;
        }
    }

    /// Reboots a NAT: every mapping is lost.
    pub fn reboot_nat(&mut self, nat: NatId) {
        if let Some(state) = self.nats.get_mut(nat.0) {
            state.nat.reboot();
            let name = state.name.clone();
            self.note(format!("nat {name} rebooted"));
        }
    }

    /// Changes a NAT's behaviour at run time; every mapping is lost, as after a reboot.
    pub fn set_nat_config(&mut self, nat: NatId, config: crate::nat::NatConfig) {
        if let Some(state) = self.nats.get_mut(nat.0) {
            state.nat.set_config(config);
            let name = state.name.clone();
            self.note(format!("nat {name} reconfigured: {config:?}"));
        }
    }

    /// Gives a NAT a new public address (as after a DHCP renewal); every mapping is lost.
    pub fn set_nat_public_ip(&mut self, nat: NatId, ip: Ipv4Addr) {
        let Some(state) = self.nats.get_mut(nat.0) else {
            return;
        };
        let old = state.nat.public_ip();
        state.nat.set_public_ip(ip);
        let addrs = &mut self.nets[state.outside_net].addrs;
        addrs.remove(&old);
        addrs.insert(ip, Attach::Nat(nat.0));
        let name = state.name.clone();
        self.note(format!("nat {name} public address {old} -> {ip}"));
    }

    /// Gives a host a new address in its network (a public host whose address changes).
    pub fn set_host_ip(&mut self, host: HostId, ip: Ipv4Addr) {
        let Some(state) = self.hosts.get_mut(host.0) else {
            return;
        };
        let old = std::mem::replace(&mut state.addr, ip);
        let addrs = &mut self.nets[state.net].addrs;
        addrs.remove(&old);
        addrs.insert(ip, Attach::Host(host.0));
        let name = state.name.clone();
        self.note(format!("host {name} address {old} -> {ip}"));
    }

    /// Adds a fault rule (checked after those already added); returns its index.
    pub fn add_fault(&mut self, rule: FaultRule) -> usize {
        self.faults.push(rule);
        self.faults.len() - 1
    }

    /// Returns a fault rule, with its counters.
    pub fn fault(&self, index: usize) -> Option<&FaultRule> {
        self.faults.get(index)
    }

    /// Removes every fault rule.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Sets the classifier that labels UDP payloads for fault rules and the timeline.
    pub fn set_classifier(&mut self, classify: impl Fn(&[u8]) -> Option<&'static str> + 'static) {
        self.classifier = Some(Box::new(classify));
    }

    /// Starts or stops capturing packets at every host and NAT.
    pub fn set_capture(&mut self, on: bool) {
        let make = || on.then(Capture::default);
        for host in &mut self.hosts {
            if host.capture.is_some() != on {
                host.capture = make();
            }
        }
        for nat in &mut self.nats {
            if nat.capture.is_some() != on {
                nat.capture = make();
            }
        }
    }

    /// Returns the packets captured at an interface, if capturing is on.
    pub fn capture(&self, iface: Iface) -> Option<&Capture> {
        match iface {
            Iface::Host(host) => self.hosts.get(host.0)?.capture.as_ref(),
            Iface::Nat(nat) => self.nats.get(nat.0)?.capture.as_ref(),
        }
    }
}
