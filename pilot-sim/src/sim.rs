//! The simulation: its state, the run loop, host driving, and the scenario controls
//! (partitions, holds, crashes, NAT changes, fault rules).
//!
//! The packet path lives in `net.rs` and the reliable streams in `stream.rs`; this module owns
//! the event loop that dispatches to them and the public API a test uses to steer a run.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fault::FaultRule;
use crate::link::{Direction, Link, LinkConfig};
use crate::machine::{DRAIN_LIMIT, HostContext, Machine, MachineFactory};
use crate::nat::NatBox;
use crate::pcap::Capture;
use crate::queue::{EventQueue, format_elapsed, nanos};
use crate::seed::{SimRng, derive_seed};
use crate::stream::{StreamDelivery, Streams};
use crate::trace::{DropReason, Trace, TraceKind};
use crate::{HostId, NatId};

/// A network interface with a link: a host's, or a NAT's public side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Iface {
    /// A host's only interface.
    Host(HostId),
    /// A NAT's outside (public) interface.
    Nat(NatId),
}

/// Which seed a restarted host's machine gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedChoice {
    /// The seed of its first boot (same identity, same random stream).
    Same,
    /// A fresh seed derived from the master seed and the boot count.
    Fresh,
}

/// Errors of a simulation run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// More events ran than the budget allows: a machine probably re-arms its timer in the
    /// past forever.
    #[error("event budget of {budget} events exhausted at {at:?} of virtual time")]
    EventBudgetExhausted {
        /// The budget.
        budget: u64,
        /// Virtual time since the epoch when it ran out.
        at: Duration,
    },
}

/// Counters over a whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to the simulator by machines.
    pub sent: u64,
    /// Datagrams delivered to machines.
    pub delivered: u64,
    /// Datagrams dropped, by reason.
    pub drops: BTreeMap<DropReason, u64>,
    /// Events processed.
    pub events: u64,
}

impl Stats {
    /// Returns the total number of drops.
    pub fn dropped(&self) -> u64 {
        self.drops.values().sum()
    }

    /// Returns the number of drops for one reason.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.drops.get(&reason).copied().unwrap_or(0)
    }
}

/// A UDP packet in flight: its bytes, the host that sent it and its class label.
#[derive(Debug)]
pub(crate) struct Packet {
    pub(crate) bytes: Vec<u8>,
    pub(crate) origin: usize,
    pub(crate) class: Option<&'static str>,
}

pub(crate) enum Event {
    Start {
        host: usize,
    },
    Route {
        net: usize,
        packet: Packet,
    },
    NatIn {
        nat: usize,
        packet: Packet,
    },
    Deliver {
        host: usize,
        packet: Packet,
        faults_checked: bool,
    },
    Drop {
        packet: Packet,
        reason: DropReason,
    },
    Timer {
        host: usize,
        generation: u64,
    },
    Stream {
        host: usize,
        boot: u32,
        delivery: StreamDelivery,
    },
    Action(Box<dyn FnOnce(&mut Sim)>),
}

pub(crate) struct HostState {
    pub(crate) name: String,
    pub(crate) net: usize,
    pub(crate) addr: Ipv4Addr,
    pub(crate) udp_ports: Vec<u16>,
    pub(crate) listen_ports: Vec<u16>,
    pub(crate) machine: Option<Box<dyn Machine>>,
    pub(crate) factory: MachineFactory,
    pub(crate) boot: u32,
    pub(crate) started: bool,
    pub(crate) seed: [u8; 32],
    pub(crate) timer: Option<Instant>,
    pub(crate) timer_generation: u64,
    pub(crate) up: Link,
    pub(crate) down: Link,
    pub(crate) capture: Option<Capture>,
}

pub(crate) struct NatState {
    pub(crate) name: String,
    pub(crate) outside_net: usize,
    pub(crate) nat: NatBox,
    pub(crate) up: Link,
    pub(crate) down: Link,
    pub(crate) capture: Option<Capture>,
}

/// What sits at an address in a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attach {
    Host(usize),
    Nat(usize),
}

pub(crate) struct Network {
    /// The NAT whose inside this network is; `None` for the internet.
    pub(crate) nat: Option<usize>,
    pub(crate) addrs: BTreeMap<Ipv4Addr, Attach>,
}

/// Classifies UDP payloads into labels used by fault rules and the timeline.
pub(crate) type Classifier = Box<dyn Fn(&[u8]) -> Option<&'static str>>;

/// A running simulation. Built by [`crate::SimBuilder`].
pub struct Sim {
    pub(crate) epoch: Instant,
    pub(crate) now: Instant,
    /// `now` as nanoseconds since the epoch, the queue's time unit.
    pub(crate) now_ns: u64,
    pub(crate) seed: u64,
    pub(crate) queue: EventQueue<Event>,
    pub(crate) hosts: Vec<HostState>,
    pub(crate) nats: Vec<NatState>,
    pub(crate) nets: Vec<Network>,
    pub(crate) blocked: BTreeSet<(usize, usize)>,
    pub(crate) isolated: BTreeSet<usize>,
    pub(crate) holds: BTreeSet<(usize, usize)>,
    pub(crate) held: Vec<(usize, Packet)>,
    pub(crate) faults: Vec<FaultRule>,
    pub(crate) fault_rng: SimRng,
    pub(crate) classifier: Option<Classifier>,
    pub(crate) trace: Trace,
    pub(crate) stats: Stats,
    pub(crate) pool: Vec<Vec<u8>>,
    pub(crate) scratch: Vec<u8>,
    pub(crate) streams: Streams,
    pub(crate) event_budget: u64,
}

impl Sim {
    /// Runs every event due at or before `deadline`, then sets the clock to `deadline`.
    ///
    /// # Errors
    ///
    /// Returns [`SimError::EventBudgetExhausted`] if the run exceeds the event budget.
    pub fn run_until(&mut self, deadline: Instant) -> Result<(), SimError> {
        let deadline_ns = self.to_ns(deadline);
        while self.queue.peek_time().is_some_and(|at| at <= deadline_ns) {
            self.step()?;
        }
        self.advance_to(deadline_ns);
        Ok(())
    }

    /// Runs for `duration` of virtual time.
    ///
    /// # Errors
    ///
    /// Returns [`SimError::EventBudgetExhausted`] if the run exceeds the event budget.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), SimError> {
        self.run_until(self.now + duration)
    }

    /// Runs until `done` returns true (checked after every event) or `deadline` passes.
    /// Returns whether `done` became true.
    ///
    /// # Errors
    ///
    /// Returns [`SimError::EventBudgetExhausted`] if the run exceeds the event budget.
    pub fn run_until_true(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<bool, SimError> {
        if done(self) {
            return Ok(true);
        }
        let deadline_ns = self.to_ns(deadline);
        while self.queue.peek_time().is_some_and(|at| at <= deadline_ns) {
            self.step()?;
            if done(self) {
                return Ok(true);
            }
        }
        self.advance_to(deadline_ns);
        Ok(false)
    }

    /// Runs the single earliest event, if any. Returns false when the queue is empty.
    ///
    /// # Errors
    ///
    /// Returns [`SimError::EventBudgetExhausted`] if the run exceeds the event budget.
    pub fn step(&mut self) -> Result<bool, SimError> {
        let Some((at, event)) = self.queue.pop() else {
            return Ok(false);
        };
        self.stats.events += 1;
        if self.stats.events > self.event_budget {
            let (budget, at) = (self.event_budget, self.elapsed());
            return Err(SimError::EventBudgetExhausted { budget, at });
        }
        self.advance_to(at);
        self.dispatch(event);
        Ok(true)
    }

    /// Schedules `action` to run on the simulation at `at` (or now, if `at` has passed).
    pub fn schedule(&mut self, at: Instant, action: impl FnOnce(&mut Sim) + 'static) {
        self.push_event(at, Event::Action(Box::new(action)));
    }

    /// Returns the current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Returns the instant virtual time started from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Returns the virtual time elapsed since the epoch.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.now_ns)
    }

    /// Returns the master seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Returns the run's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Returns the trace (its hash always; its records if recording is on).
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Starts or stops keeping trace records in memory.
    pub fn set_record_trace(&mut self, keep: bool) {
        self.trace.set_keep(keep);
    }

    /// Returns the host's machine if it is running and is a `T`.
    pub fn machine<T: Machine>(&self, host: HostId) -> Option<&T> {
        let machine = self.hosts.get(host.0)?.machine.as_deref()?;
        (machine as &dyn Any).downcast_ref::<T>()
    }

    /// Calls `act` on the host's machine (if it is running and is a `T`), then drains the
    /// machine's outputs as after any input. Returns what `act` returned.
    pub fn act<T: Machine, R>(
        &mut self,
        host: HostId,
        act: impl FnOnce(&mut T, Instant) -> R,
    ) -> Option<R> {
        let now = self.now;
        let machine = self.hosts.get_mut(host.0)?.machine.as_deref_mut()?;
        let result = act((machine as &mut dyn Any).downcast_mut::<T>()?, now);
        self.drive(host.0);
        Some(result)
    }

    /// Returns the host's name.
    pub fn host_name(&self, host: HostId) -> &str {
        self.hosts
            .get(host.0)
            .map_or("?", |state| state.name.as_str())
    }

    /// Returns the host's own address and primary UDP port (private behind a NAT).
    pub fn host_addr(&self, host: HostId) -> Option<SocketAddr> {
        let state = self.hosts.get(host.0)?;
        let port = state.udp_ports.first().copied().unwrap_or(0);
        Some(SocketAddr::V4(SocketAddrV4::new(state.addr, port)))
    }

    /// Returns whether the host's machine is running.
    pub fn is_up(&self, host: HostId) -> bool {
        self.hosts
            .get(host.0)
            .is_some_and(|state| state.machine.is_some())
    }

    /// Returns the NAT box, for inspection.
    pub fn nat(&self, nat: NatId) -> Option<&NatBox> {
        self.nats.get(nat.0).map(|state| &state.nat)
    }

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

    /// Writes one pcap file per host (`<name>.pcap`) and per NAT public side
    /// (`nat-<name>.pcap`) into `dir`, creating it. Returns the paths written.
    ///
    /// # Errors
    ///
    /// Returns any I/O error.
    pub fn write_pcaps(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let hosts = self
            .hosts
            .iter()
            .map(|h| (file_name(&h.name, ""), &h.capture));
        let nats = self
            .nats
            .iter()
            .map(|n| (file_name(&n.name, "nat-"), &n.capture));
        let mut written = Vec::new();
        for (name, capture) in hosts.chain(nats) {
            let Some(capture) = capture else { continue };
            let path = dir.join(format!("{name}.pcap"));
            let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
            capture.write_pcap(&mut file)?;
            std::io::Write::flush(&mut file)?;
            written.push(path);
        }
        Ok(written)
    }

    /// Renders the recorded trace as a readable timeline, one event per line.
    pub fn timeline(&self) -> String {
        let mut out = String::new();
        for record in self.trace.records() {
            let class = record
                .class
                .map(|label| format!(" [{label}]"))
                .unwrap_or_default();
            let line = self.describe(&record.kind);
            let _ = writeln!(out, "{} {line}{class}", format_elapsed(record.at));
        }
        out
    }

    fn describe(&self, kind: &TraceKind) -> String {
        let host = |id: &HostId| self.host_name(*id).to_owned();
        let nat = |id: &NatId| {
            self.nats
                .get(id.0)
                .map_or("?", |n| n.name.as_str())
                .to_owned()
        };
        match kind {
            TraceKind::Sent {
                host: h,
                src,
                dst,
                len,
            } => {
                format!("{:<8} send    {src} -> {dst} len={len}", host(h))
            }
            TraceKind::Delivered {
                host: h,
                src,
                dst,
                len,
            } => {
                format!("{:<8} recv    {src} -> {dst} len={len}", host(h))
            }
            TraceKind::Dropped {
                reason,
                src,
                dst,
                len,
            } => {
                format!("{:<8} DROP    {src} -> {dst} len={len} ({reason})", "-")
            }
            TraceKind::Mapped {
                nat: n,
                internal,
                external,
                remote,
            } => {
                format!(
                    "{:<8} map     {internal} => {external} (to {remote})",
                    nat(n)
                )
            }
            TraceKind::Faulted {
                rule,
                action,
                src,
                dst,
            } => {
                format!("{:<8} fault   {src} -> {dst} rule {rule} {action}", "-")
            }
            TraceKind::Timer { host: h } => format!("{:<8} timer", host(h)),
            TraceKind::Crashed { host: h } => format!("{:<8} CRASH", host(h)),
            TraceKind::Started { host: h, boot } => format!("{:<8} start   boot {boot}", host(h)),
            TraceKind::Stream {
                host: h,
                id,
                what,
                len,
            } => {
                format!("{:<8} stream  {id} {what} len={len}", host(h))
            }
            TraceKind::Note(text) => format!("{:<8} {text}", "*"),
        }
    }

    pub(crate) fn record(&mut self, class: Option<&'static str>, kind: TraceKind) {
        self.trace
            .record(Duration::from_nanos(self.now_ns), class, kind);
    }

    pub(crate) fn note(&mut self, text: String) {
        self.record(None, TraceKind::Note(text));
    }

    /// Converts an instant to nanoseconds since the epoch (instants before it count as 0).
    pub(crate) fn to_ns(&self, at: Instant) -> u64 {
        nanos(at.saturating_duration_since(self.epoch))
    }

    /// Queues `event` at `at`, or now if `at` has passed.
    pub(crate) fn push_event(&mut self, at: Instant, event: Event) {
        let at = self.to_ns(at).max(self.now_ns);
        self.queue.push(at, event);
    }

    /// Moves the clock forward to `at` nanoseconds since the epoch (never backwards).
    fn advance_to(&mut self, at: u64) {
        if at > self.now_ns {
            self.now_ns = at;
            self.now = self.epoch + Duration::from_nanos(at);
        }
    }

    /// Returns true if packets or stream bytes from `from` to `to` are cut right now.
    pub(crate) fn is_blocked(&self, from: usize, to: usize) -> bool {
        if self.blocked.is_empty() && self.isolated.is_empty() {
            return false;
        }
        let isolated = from != to && (self.isolated.contains(&from) || self.isolated.contains(&to));
        isolated || self.blocked.contains(&(from, to))
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Start { host } => self.start_host(host),
            Event::Route { net, packet } => self.on_route(net, packet),
            Event::NatIn { nat, packet } => self.on_nat_inbound(nat, packet),
            Event::Deliver {
                host,
                packet,
                faults_checked,
            } => self.on_deliver(host, packet, faults_checked),
            Event::Drop { packet, reason } => self.drop_packet(packet, reason),
            Event::Timer { host, generation } => self.on_timer(host, generation),
            Event::Stream {
                host,
                boot,
                delivery,
            } => self.on_stream_delivery(host, boot, delivery),
            Event::Action(action) => action(self),
        }
    }

    fn start_host(&mut self, host: usize) {
        let now = self.now;
        let Some(state) = self.hosts.get_mut(host) else {
            return;
        };
        if state.machine.is_some() {
            return;
        }
        let context = HostContext {
            id: HostId(host),
            name: state.name.clone(),
            addr: state.addr,
            udp_ports: state.udp_ports.clone(),
            seed: state.seed,
            now,
            boot: state.boot,
        };
        state.machine = Some((state.factory)(&context));
        state.started = true;
        let boot = state.boot;
        self.record(
            None,
            TraceKind::Started {
                host: HostId(host),
                boot,
            },
        );
        self.drive(host);
    }

    fn on_timer(&mut self, host: usize, generation: u64) {
        let now = self.now;
        let Some(state) = self.hosts.get_mut(host) else {
            return;
        };
        if state.timer_generation != generation {
            return;
        }
        let Some(machine) = state.machine.as_deref_mut() else {
            return;
        };
        state.timer = None;
        machine.handle_timeout(now);
        self.record(None, TraceKind::Timer { host: HostId(host) });
        self.drive(host);
    }

    /// Drains a machine's outputs after an input: transmits, then stream commands, then the
    /// timer, as the real drivers do.
    pub(crate) fn drive(&mut self, host: usize) {
        let Some(mut machine) = self.hosts[host].machine.take() else {
            return;
        };
        let now = self.now;
        let mut scratch = std::mem::take(&mut self.scratch);
        for _ in 0..DRAIN_LIMIT {
            scratch.clear();
            let Some(transmit) = machine.poll_transmit(now, &mut scratch) else {
                break;
            };
            self.send_datagram(host, transmit, &scratch);
        }
        for _ in 0..DRAIN_LIMIT {
            scratch.clear();
            let Some(command) = machine.poll_stream(now, &mut scratch) else {
                break;
            };
            self.stream_command(host, command, &scratch);
        }
        let deadline = machine.poll_timeout();
        self.scratch = scratch;
        self.hosts[host].machine = Some(machine);
        self.arm_timer(host, deadline);
    }

    fn arm_timer(&mut self, host: usize, deadline: Option<Instant>) {
        let state = &mut self.hosts[host];
        if state.timer == deadline {
            return;
        }
        state.timer = deadline;
        state.timer_generation += 1;
        if let Some(at) = deadline {
            let generation = state.timer_generation;
            self.push_event(at, Event::Timer { host, generation });
        }
    }
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("elapsed", &self.elapsed())
            .field("hosts", &self.hosts.len())
            .field("nats", &self.nats.len())
            .field("pending_events", &self.queue.len())
            .field("stats", &self.stats)
            .finish()
    }
}

fn file_name(name: &str, prefix: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}{clean}")
}
