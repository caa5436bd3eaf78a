//! Registration: the registry stream, `register` with the beacon-observed endpoint, the
//! reconnect timer, re-registration when the observed endpoint moves, and dispatching every
//! registry answer to whoever asked.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Agent, AgentEvent, config::AgentConfig};
use crate::beacon::BeaconEvent;
use crate::nat::{needs_reregistration, registration_endpoint};
use crate::node::Node;
use crate::registry::{ClientEvent, RegistryError, RequestId};
use crate::wire::addr::Addr;
use crate::wire::registry::{RegisterOk, Response};

/// Longest gap between registry reconnect attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Delay before registering again after the registry refused us.
const REGISTER_RETRY: Duration = Duration::from_secs(5);

/// Who asked a registry request, so its answer goes back there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pending {
    /// Our own `register`, offering `endpoint`.
    Register { endpoint: SocketAddr },
    /// A `resolve` of a peer's endpoint.
    Resolve { peer: u32 },
    /// A `lookup` of a peer's key.
    Lookup { peer: u32 },
    /// The `set_visibility` after registering: `Registered` is announced when it is answered,
    /// so that a public node is resolvable by then.
    Visibility { address: Addr, endpoint: SocketAddr },
    /// A control command: the answer becomes [`AgentEvent::ControlResult`].
    Control,
    /// Housekeeping whose answer only matters if it fails (visibility, trust reports).
    Internal,
}

/// Registration state and registry-stream timers.
#[derive(Debug)]
pub(super) struct Registration {
    /// Registration waits for the beacon's observation until then.
    pub waiting_until: Option<Instant>,
    /// A `register` is in flight.
    pub registering: bool,
    /// Our address and the endpoint registered for it.
    pub registered: Option<(Addr, SocketAddr)>,
    /// The registry stream is open.
    pub connected: bool,
    /// When to ask the driver for a new registry stream.
    pub reconnect_at: Option<Instant>,
    /// The next reconnect delay.
    pub backoff: Duration,
}

impl Registration {
    pub(super) fn new(_now: Instant, config: &AgentConfig) -> Self {
        Self {
            waiting_until: None,
            registering: false,
            registered: None,
            connected: false,
            reconnect_at: None,
            backoff: config.reconnect_first,
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [self.waiting_until, self.reconnect_at]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Agent {
    /// The driver opened the registry stream.
    pub fn handle_registry_connected(&mut self, now: Instant) {
        let now = self.clamp(now);
        self.reg.connected = true;
        self.reg.reconnect_at = None;
        self.reg.backoff = self.config.reconnect_first;
        self.registry.handle_connected(now);
        self.process(now);
    }

    /// Bytes arrived on the registry stream.
    pub fn handle_registry_bytes(&mut self, now: Instant, bytes: &[u8]) {
        let now = self.clamp(now);
        self.registry.handle_bytes(now, bytes);
        self.process(now);
    }

    /// The registry stream closed, broke or could not be opened; the agent asks for a new one
    /// ([`AgentEvent::ConnectRegistry`]) after a backoff.
    pub fn handle_registry_closed(&mut self, now: Instant) {
        let now = self.clamp(now);
        self.reg.connected = false;
        self.registry.handle_disconnected(now);
        self.reg.reconnect_at = Some(now + self.reg.backoff);
        self.reg.backoff = (self.reg.backoff * 2).min(RECONNECT_MAX);
        self.process(now);
    }

    /// Bytes to write to the registry stream, in a cleared `buf`; returns their length.
    #[must_use]
    pub fn poll_registry_bytes(&mut self, buf: &mut Vec<u8>) -> Option<usize> {
        self.registry.poll_bytes(buf)
    }

    /// Registers at once without a beacon, else once the beacon has observed us.
    pub(super) fn start_registration(&mut self, now: Instant) {
        if self.beacon.is_some() && self.config.listen_endpoint.is_none() {
            self.reg.waiting_until = Some(now + self.config.register_wait);
        } else {
            self.register(now);
        }
    }

    pub(super) fn registration_timers(&mut self, now: Instant) {
        if self.reg.waiting_until.is_some_and(|at| now >= at) {
            self.reg.waiting_until = None;
            if self.beacon.as_ref().is_some_and(|b| b.observed().is_none()) {
                self.beacon_unreachable();
            }
            self.register(now);
        }
        if self.reg.reconnect_at.is_some_and(|at| now >= at) {
            self.reg.reconnect_at = None;
            self.events.push_back(AgentEvent::ConnectRegistry);
        }
    }

    fn register(&mut self, now: Instant) {
        if self.reg.registering {
            return;
        }
        let local = self
            .config
            .local_endpoints
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        // Over the beacon stream the beacon observes a stream, not our UDP socket.
        let observed = self
            .beacon
            .as_ref()
            .filter(|_| !self.beacon_over_stream())
            .and_then(|b| b.observed());
        let endpoint = registration_endpoint(self.config.listen_endpoint, observed, local);
        let (hostname, owner) = (self.config.hostname.clone(), self.config.owner.clone());
        match self
            .registry
            .register(now, Some(endpoint.to_string()), hostname, owner)
        {
            Ok(id) => {
                self.reg.registering = true;
                self.requests.insert(id, Pending::Register { endpoint });
            }
            Err(error) => debug!(%error, "register could not be queued"),
        }
    }

    pub(super) fn drain_registry(&mut self, now: Instant) -> bool {
        let mut moved = false;
        while let Some(event) = self.registry.poll_event() {
            moved = true;
            match event {
                ClientEvent::Response { id, result, .. } => self.on_response(now, id, result),
                ClientEvent::Reconnect if self.reg.connected => {
                    self.reg.connected = false;
                    self.events.push_back(AgentEvent::ConnectRegistry);
                }
                ClientEvent::ReRegister => {
                    self.register(now);
                    self.trust.reannounce();
                }
                _ => {}
            }
        }
        moved
    }

    fn on_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<Response, RegistryError>,
    ) {
        match self.requests.remove(&id) {
            Some(Pending::Register { endpoint }) => self.on_register_result(now, endpoint, result),
            Some(Pending::Resolve { peer }) => self.on_resolved(now, peer, result),
            Some(Pending::Lookup { peer }) => self.on_lookup(now, peer, result),
            Some(Pending::Visibility { address, endpoint }) => {
                if let Err(error) = result {
                    debug!(%error, "visibility not applied");
                }
                self.events
                    .push_back(AgentEvent::Registered { address, endpoint });
            }
            Some(Pending::Control) => {
                self.events
                    .push_back(AgentEvent::ControlResult { id, result });
            }
            Some(Pending::Internal) | None => self.on_housekeeping(now, result),
        }
    }

    fn on_register_result(
        &mut self,
        now: Instant,
        endpoint: SocketAddr,
        result: Result<Response, RegistryError>,
    ) {
        self.reg.registering = false;
        match result {
            Ok(Response::RegisterOk(ok)) => self.on_registered(now, endpoint, &ok),
            Ok(_) => {}
            Err(error) => {
                debug!(%error, "registration refused");
                self.reg.waiting_until = Some(now + REGISTER_RETRY);
                self.events
                    .push_back(AgentEvent::RegistrationFailed { error });
            }
        }
    }

    fn on_registered(&mut self, now: Instant, endpoint: SocketAddr, ok: &RegisterOk) {
        let address = Addr::new(ok.network_id, ok.node_id);
        self.reg.registered = Some((address, endpoint));
        // Limitation: a different node id on re-registration keeps the node at the old address.
        if self.node.is_none() {
            let seed = self.rng.bytes::<32>();
            let node = Node::new(
                self.config.node.clone(),
                self.identity.clone(),
                address,
                seed,
                now,
            );
            self.node = Some(node);
            self.listen_trust();
        }
        if let Some(beacon) = &mut self.beacon {
            beacon.set_node_id(now, ok.node_id);
        }
        self.trust.set_node_id(ok.node_id);
        match self.registry.set_visibility(now, self.config.public) {
            Ok(id) => {
                let pending = Pending::Visibility { address, endpoint };
                self.requests.insert(id, pending);
            }
            Err(_) => self
                .events
                .push_back(AgentEvent::Registered { address, endpoint }),
        }
    }

    /// Answers nobody waits for: relayed trust requests arrive in `poll_handshakes_ok`.
    fn on_housekeeping(&mut self, now: Instant, result: Result<Response, RegistryError>) {
        match result {
            Ok(Response::PollHandshakesOk(polled)) => {
                let unix_now = self.unix_now(now);
                self.trust.handle_relayed(unix_now, &polled);
            }
            Ok(_) => {}
            Err(error) => debug!(%error, "registry housekeeping request failed"),
        }
    }

    pub(super) fn drain_beacon(&mut self, now: Instant) -> bool {
        let Some(beacon) = &mut self.beacon else {
            return false;
        };
        let mut events = Vec::new();
        while let Some(event) = beacon.poll_event() {
            events.push(event);
        }
        let moved = !events.is_empty();
        for event in events {
            match event {
                BeaconEvent::ObservedEndpoint { observed, previous } => {
                    self.on_observed(now, observed, previous)
                }
                BeaconEvent::PunchCommand { peer } => self.on_punch_command(now, peer),
                BeaconEvent::Relayed { sender, frame } => self.on_relayed(now, sender, frame),
                BeaconEvent::BeaconSilent { .. } => self.beacon_unreachable(),
            }
        }
        moved
    }

    fn on_observed(&mut self, now: Instant, observed: SocketAddr, previous: Option<SocketAddr>) {
        if self.beacon_over_stream() {
            return;
        }
        self.events
            .push_back(AgentEvent::EndpointObserved { observed });
        if self.reg.waiting_until.take().is_some() {
            self.register(now);
        } else if let Some((_, registered)) = self.reg.registered
            && self.config.listen_endpoint.is_none()
            && needs_reregistration(Some(registered), observed)
        {
            debug!("observed endpoint moved; registering again");
            self.register(now);
        }
        if previous.is_some() {
            for entry in self.peers.values_mut() {
                entry.path.handle_local_endpoint_changed(now);
            }
        }
    }
}
