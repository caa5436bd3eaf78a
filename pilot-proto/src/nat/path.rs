//! The path to one peer: the dial plan, relay fallback, upgrade to direct, keepalives and
//! recovery after a NAT reboot or address change.
//!
//! [`PeerPath`] decides; the node acts. It asks for a registry resolve, beacon punch requests,
//! probes to candidate endpoints and keepalives ([`PathAction`]), and it is told what happened:
//! an endpoint resolved, a punch command arrived, an authenticated frame came in directly or
//! through the relay. Time is always an argument.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{DialFailure, DialTiming, NatConfig, Route};

/// Candidate endpoints kept per peer.
pub const MAX_CANDIDATES: usize = 8;

/// Something the node must do for this peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathAction {
    /// Ask the registry for the peer's endpoint (`resolve`).
    Resolve,
    /// Ask the beacon to coordinate a punch (PunchRequest).
    RequestPunch,
    /// Send a probe (key exchange or keepalive frame, or `PILP`) straight to `addr`.
    Probe {
        /// A candidate endpoint.
        addr: SocketAddr,
    },
    /// Send a keepalive on the direct path, to hold NAT mappings open.
    Keepalive {
        /// The direct endpoint.
        addr: SocketAddr,
    },
    /// Send the peer's traffic straight to `addr` from now on.
    UseDirect {
        /// The endpoint the peer answered from.
        addr: SocketAddr,
    },
    /// Send the peer's traffic through the beacon relay from now on.
    UseRelay,
    /// Give up on this dial.
    Failed(DialFailure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Resolving,
    Connecting {
        started: Instant,
        probes_sent: usize,
    },
    Direct {
        addr: SocketAddr,
    },
    Revalidating {
        addr: SocketAddr,
        deadline: Instant,
    },
    Relay,
    Failed,
}

/// The NAT-traversal state machine for one peer.
///
/// After any call, drain [`Self::poll_action`] until `None`, then re-arm the timer from
/// [`Self::poll_timeout`].
#[derive(Debug)]
pub struct PeerPath {
    peer: u32,
    config: NatConfig,
    phase: Phase,
    candidates: Vec<SocketAddr>,
    last_direct_rx: Option<Instant>,
    next_keepalive: Option<Instant>,
    next_upgrade: Option<Instant>,
    upgrade_backoff: Duration,
    actions: VecDeque<PathAction>,
}

impl PeerPath {
    /// A path to `peer` with nothing known yet.
    pub fn new(peer: u32, config: NatConfig) -> Self {
        Self {
            peer,
            upgrade_backoff: config.upgrade_first,
            config,
            phase: Phase::Idle,
            candidates: Vec::new(),
            last_direct_rx: None,
            next_keepalive: None,
            next_upgrade: None,
            actions: VecDeque::new(),
        }
    }

    /// Starts a dial: resolve first (v0.5 `ensureTunnel`). A path already in use is kept.
    pub fn start(&mut self, _now: Instant) {
        if matches!(self.phase, Phase::Idle | Phase::Failed) {
            self.phase = Phase::Resolving;
            self.actions.push_back(PathAction::Resolve);
        }
    }

    /// The registry gave the peer's endpoint.
    pub fn handle_resolved(&mut self, now: Instant, endpoint: SocketAddr) {
        self.add_candidate(endpoint);
        match self.phase {
            Phase::Resolving | Phase::Idle | Phase::Failed => self.begin_connecting(now),
            // A fresh endpoint while relayed or revalidating: try it at once.
            Phase::Relay | Phase::Revalidating { .. } => self.probe_all(),
            _ => {}
        }
    }

    /// The registry refused or failed the resolve.
    pub fn handle_resolve_failed(&mut self, now: Instant) {
        if self.phase == Phase::Resolving {
            self.fail(now, DialFailure::Unresolvable);
        }
    }

    /// The beacon told us to punch towards `addr` (the peer's observed endpoint); the beacon
    /// client already sent probes, this records the candidate and probes it on later rounds.
    pub fn handle_punch_command(&mut self, now: Instant, addr: SocketAddr) {
        self.add_candidate(addr);
        if matches!(self.phase, Phase::Idle | Phase::Failed) {
            // The peer is dialling us: probe it on the dial schedule to open our side too.
            self.phase = Phase::Connecting {
                started: now,
                probes_sent: 0,
            };
            self.on_connecting_timer(now, now, 0);
        }
    }

    /// Our own endpoint changed (beacon observed a new address, NAT reboot): the peer's view
    /// of us is stale, so re-punch now.
    pub fn handle_local_endpoint_changed(&mut self, now: Instant) {
        match self.phase {
            Phase::Direct { addr } => self.revalidate(now, addr),
            Phase::Relay => self.attempt_upgrade(now),
            _ => {}
        }
    }

    /// An authenticated frame from the peer arrived straight from `from`.
    pub fn handle_direct_rx(&mut self, now: Instant, from: SocketAddr) {
        self.last_direct_rx = Some(now);
        self.add_candidate(from);
        let current = match self.phase {
            Phase::Direct { addr } | Phase::Revalidating { addr, .. } => Some(addr),
            _ => None,
        };
        if current == Some(from) {
            // Same path (possibly just revalidated): nothing changes for the node.
            self.phase = Phase::Direct { addr: from };
            self.next_keepalive
                .get_or_insert(now + self.config.keepalive);
            return;
        }
        debug!(
            peer = self.peer,
            upgraded = self.phase == Phase::Relay,
            "direct path open"
        );
        self.phase = Phase::Direct { addr: from };
        self.next_keepalive = Some(now + self.config.keepalive);
        self.next_upgrade = None;
        self.upgrade_backoff = self.config.upgrade_first;
        self.actions.push_back(PathAction::UseDirect { addr: from });
    }

    /// An authenticated frame from the peer arrived through the relay.
    pub fn handle_relayed_rx(&mut self, now: Instant) {
        // The peer relays to us: answer the same way unless a direct path works.
        if matches!(
            self.phase,
            Phase::Idle | Phase::Resolving | Phase::Connecting { .. } | Phase::Failed
        ) {
            self.enter_relay(now);
        }
    }

    /// Runs due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Connecting {
                started,
                probes_sent,
            } => self.on_connecting_timer(now, started, probes_sent),
            Phase::Direct { addr } => self.on_direct_timer(now, addr),
            Phase::Revalidating { deadline, .. } if now >= deadline => {
                debug!(peer = self.peer, "direct path lost");
                self.enter_relay(now);
                self.actions.push_back(PathAction::Resolve);
            }
            _ => {}
        }
        if self.next_upgrade.is_some_and(|at| now >= at) {
            self.attempt_upgrade(now);
        }
    }

    /// Next action.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<PathAction> {
        self.actions.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase_timer = match self.phase {
            Phase::Connecting {
                started,
                probes_sent,
            } => Some(self.connecting_deadline(started, probes_sent)),
            Phase::Direct { .. } => self
                .next_keepalive
                .map(|at| at.min(self.stale_at().unwrap_or(at))),
            Phase::Revalidating { deadline, .. } => Some(deadline),
            _ => None,
        };
        [phase_timer, self.next_upgrade].into_iter().flatten().min()
    }

    /// The route traffic to the peer should take now.
    pub fn route(&self) -> Route {
        match self.phase {
            Phase::Direct { addr } | Phase::Revalidating { addr, .. } => Route::Direct(addr),
            Phase::Relay => Route::Relay,
            Phase::Connecting { .. } => self
                .candidates
                .first()
                .map_or(Route::None, |a| Route::Direct(*a)),
            _ => Route::None,
        }
    }

    /// Endpoints being tried.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    fn begin_connecting(&mut self, now: Instant) {
        self.phase = Phase::Connecting {
            started: now,
            probes_sent: 0,
        };
        if self.config.beacon_available {
            self.actions.push_back(PathAction::RequestPunch);
        }
        self.on_connecting_timer(now, now, 0);
    }

    fn on_connecting_timer(&mut self, now: Instant, started: Instant, mut probes_sent: usize) {
        let schedule = self.config.timing.probe_offsets();
        while probes_sent < schedule.len() && now >= started + schedule[probes_sent] {
            self.probe_all();
            probes_sent += 1;
        }
        self.phase = Phase::Connecting {
            started,
            probes_sent,
        };
        let elapsed = now.saturating_duration_since(started);
        if self.config.beacon_available && elapsed >= self.config.timing.relay_after() {
            return self.enter_relay(now);
        }
        if elapsed >= self.config.timing.give_up_after() {
            self.fail(now, DialFailure::Timeout);
        }
    }

    fn connecting_deadline(&self, started: Instant, probes_sent: usize) -> Instant {
        let schedule = self.config.timing.probe_offsets();
        let relay = if self.config.beacon_available {
            self.config.timing.relay_after()
        } else {
            self.config.timing.give_up_after()
        };
        let next_probe = schedule.get(probes_sent).copied().unwrap_or(relay);
        started + next_probe.min(relay)
    }

    fn on_direct_timer(&mut self, now: Instant, addr: SocketAddr) {
        if self.stale_at().is_some_and(|at| now >= at) {
            return self.revalidate(now, addr);
        }
        if self.next_keepalive.is_some_and(|at| now >= at) {
            self.actions.push_back(PathAction::Keepalive { addr });
            self.next_keepalive = Some(now + self.config.keepalive);
        }
    }

    fn stale_at(&self) -> Option<Instant> {
        self.last_direct_rx.map(|at| at + self.config.stale_after)
    }

    /// The direct path went quiet (or our address moved): probe it and punch again, and fall
    /// back to relay if nothing answers in time.
    fn revalidate(&mut self, now: Instant, addr: SocketAddr) {
        debug!(peer = self.peer, "revalidating direct path");
        self.phase = Phase::Revalidating {
            addr,
            deadline: now + self.config.revalidate_timeout,
        };
        self.last_direct_rx = None;
        // The keepalive restarts from the answer that ends revalidation, never from before it.
        self.next_keepalive = None;
        if self.config.beacon_available {
            self.actions.push_back(PathAction::RequestPunch);
        }
        self.probe_all();
    }

    fn enter_relay(&mut self, now: Instant) {
        if !self.config.beacon_available {
            return self.fail(now, DialFailure::Timeout);
        }
        if self.phase != Phase::Relay {
            debug!(peer = self.peer, "falling back to relay");
            self.phase = Phase::Relay;
            self.actions.push_back(PathAction::UseRelay);
        }
        self.upgrade_backoff = self.config.upgrade_first;
        self.next_upgrade = Some(now + self.upgrade_backoff);
    }

    /// While relayed, keep punching on a backoff so a direct path replaces the relay as soon
    /// as the NATs allow one.
    fn attempt_upgrade(&mut self, now: Instant) {
        if self.phase != Phase::Relay {
            self.next_upgrade = None;
            return;
        }
        self.actions.push_back(PathAction::RequestPunch);
        self.probe_all();
        self.upgrade_backoff = (self.upgrade_backoff * 2).min(self.config.upgrade_max);
        self.next_upgrade = Some(now + self.upgrade_backoff);
    }

    fn probe_all(&mut self) {
        for addr in self.candidates.clone() {
            self.actions.push_back(PathAction::Probe { addr });
        }
    }

    fn add_candidate(&mut self, addr: SocketAddr) {
        if self.candidates.contains(&addr) {
            return;
        }
        if self.candidates.len() >= MAX_CANDIDATES {
            // The oldest after the registry's endpoint goes first.
            self.candidates.remove(1.min(self.candidates.len() - 1));
        }
        self.candidates.push(addr);
    }

    fn fail(&mut self, _now: Instant, failure: DialFailure) {
        self.phase = Phase::Failed;
        self.next_upgrade = None;
        self.actions.push_back(PathAction::Failed(failure));
    }
}

impl DialTiming {
    /// Offsets from the start of a dial at which every candidate is probed.
    pub fn probe_offsets(self) -> &'static [Duration] {
        const V05: [Duration; 3] = [
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(3),
        ];
        const FAST: [Duration; 6] = [
            Duration::ZERO,
            Duration::from_millis(200),
            Duration::from_millis(500),
            Duration::from_millis(1000),
            Duration::from_millis(1500),
            Duration::from_millis(2500),
        ];
        match self {
            Self::V05 => &V05,
            Self::Fast => &FAST,
        }
    }

    /// When an unanswered dial switches to relay (v0.5: the third SYN timeout, 7 s).
    pub fn relay_after(self) -> Duration {
        match self {
            Self::V05 => Duration::from_secs(7),
            Self::Fast => Duration::from_secs(3),
        }
    }

    /// When a dial with no relay available gives up (v0.5: 29 s).
    pub fn give_up_after(self) -> Duration {
        Duration::from_secs(29)
    }
}
