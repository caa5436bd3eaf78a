//! The simulation: its state, the run loop and host driving.
//!
//! The packet path lives in `net.rs`, the reliable streams in `stream.rs`, the scenario
//! controls (partitions, crashes, NAT changes, faults) in `control.rs` and the timeline and
//! pcap output in `report.rs`; this module owns the event loop that dispatches to them.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::fault::FaultRule;
use crate::link::Link;
use crate::machine::{DRAIN_LIMIT, HostContext, Machine, MachineFactory};
use crate::nat::NatBox;
use crate::pcap::Capture;
use crate::queue::{EventQueue, nanos};
use crate::seed::SimRng;
use crate::stream::{StreamDelivery, Streams};
use crate::trace::{DropReason, Place, Trace, TraceKind};
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
        place: Place,
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
            Event::Drop {
                packet,
                reason,
                place,
            } => self.drop_packet(packet, reason, place),
            Event::Timer { host, generation } => self.on_timer(host, generation),
            Event::Stream {
                host,
                boot,
                delivery,
            } => self.on_stream_delivery(host, boot, delivery),
            Event::Action(action) => action(self),
        }
    }

    pub(crate) fn start_host(&mut self, host: usize) {
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
