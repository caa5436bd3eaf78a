//! The event loop: one mio `Poll` over the tunnel UDP socket, the registry TCP stream and a
//! waker, driving the core (`pilot_proto::agent::Agent`) in the caller's thread.
//!
//! One [`Driver::turn`]: poll with the timeout from the core's `poll_timeout` (capped by the
//! caller's), receive datagrams until `WouldBlock`, feed registry bytes (and beacon-stream
//! bytes, when the core fell back to it: UDP to the beacon blocked), fire due timers, then
//! [`Driver::drain`]: the core's datagrams (a send hitting `WouldBlock` is queued and the socket
//! re-registered `WRITABLE` until the queue empties), its stream bytes, and its events, which
//! update the application-facing [`AppState`]. Every command the public API issues is followed
//! by a drain too, so nothing waits for the next turn.
//!
//! The core sits behind this one module: nothing else in the crate touches sockets, and the
//! rest reaches the core only through [`Driver::agent`] followed by [`Driver::drain`].
//!
//! # Limitations
//!
//! - At most [`MAX_QUEUED_DATAGRAMS`](crate::udp::MAX_QUEUED_DATAGRAMS) datagrams wait for a writable socket; more are dropped
//!   (the transport retransmits). Datagrams leave in runs with segmentation offload and arrive
//!   in coalesced reads where the kernel offers it (`udp`).
//! - `AgentEvent::PersistTrust` is not written anywhere: trust granted to this node is lost on
//!   restart. Run the node public, or re-approve after a restart.
//! - Inbound port datagrams (`NodeEvent::Datagram`) are dropped: only streams are exposed.

use std::collections::{BTreeMap, VecDeque};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use pilot_proto::agent::{Agent, AgentError, AgentEvent, DialId};
use pilot_proto::node::NodeEvent;
use pilot_proto::transport::{CloseReason, ConnId};
use pilot_proto::wire::addr::{Addr, AddrPort};

use crate::error::{MioError, Result};
use crate::link::{BEACON_TOKENS, ByteLink, LinkIo, REGISTRY_TOKENS};
use crate::udp::{Received, UdpIo};

const UDP: Token = Token(0);
const WAKER: Token = Token(1);

/// Socket reads per turn before other work gets a go (the next turn does not sleep); one read
/// can hold a run of datagrams coalesced by the kernel.
pub(crate) const MAX_READS_PER_TURN: usize = 1024;
/// Reads between two drains while receiving a burst (acks go out promptly).
const DRAIN_EVERY: usize = 8;
/// Inbound streams waiting for `accept` per listening port at most; more are closed.
const MAX_BACKLOG: usize = 128;
/// Drain rounds per call (events can produce more output).
const DRAIN_ROUNDS: usize = 16;

/// What the application side needs to know about one stream.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StreamState {
    pub connected: bool,
    pub closed: Option<CloseReason>,
}

/// What the core told the application, kept for the blocking handles to look at.
#[derive(Debug, Default)]
pub(crate) struct AppState {
    pub address: Option<Addr>,
    pub registration_error: Option<String>,
    pub streams: BTreeMap<ConnId, StreamState>,
    pub incoming: BTreeMap<u16, VecDeque<(ConnId, AddrPort)>>,
    pub dials: BTreeMap<DialId, std::result::Result<ConnId, AgentError>>,
}

/// Sockets, the core and the application state: everything one node owns.
#[derive(Debug)]
pub(crate) struct Driver {
    pub agent: Agent,
    pub state: AppState,
    poll: Poll,
    events: Events,
    udp: UdpIo,
    local: SocketAddr,
    udp_writable: bool,
    udp_backlog: bool,
    link: ByteLink,
    beacon_link: Option<ByteLink>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl Driver {
    /// Binds nothing itself: takes the bound socket and the core, and starts the first drain
    /// (which opens the registry stream).
    pub(crate) fn new(
        udp: UdpSocket,
        registry: SocketAddr,
        beacon_tcp: Option<SocketAddr>,
        agent: Agent,
        now: Instant,
    ) -> Result<Self> {
        let poll = Poll::new()?;
        let mut udp = UdpIo::new(udp)?;
        poll.registry()
            .register(udp.socket_mut(), UDP, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let local = udp.local_addr()?;
        let mut driver = Self {
            agent,
            state: AppState::default(),
            poll,
            events: Events::with_capacity(256),
            udp,
            local,
            udp_writable: false,
            udp_backlog: false,
            link: ByteLink::new("registry", registry, REGISTRY_TOKENS),
            beacon_link: beacon_tcp.map(|at| ByteLink::new("beacon stream", at, BEACON_TOKENS)),
            rx: vec![0u8; 65536],
            tx: Vec::with_capacity(65536),
            stop: Arc::new(AtomicBool::new(false)),
            waker,
        };
        driver.drain(now);
        Ok(driver)
    }

    /// The bound UDP address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether the registry stream is open.
    pub(crate) fn registry_connected(&self) -> bool {
        self.link.is_connected()
    }

    /// The stop flag and the waker that interrupts a sleeping `poll`.
    pub(crate) fn stop_parts(&self) -> (Arc<AtomicBool>, Arc<Waker>) {
        (self.stop.clone(), self.waker.clone())
    }

    /// Whether a stop was requested.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// One turn of the loop, sleeping at most `timeout`.
    ///
    /// # Errors
    /// [`MioError::Stopped`] once stopped, or the poll's own failure.
    pub(crate) fn turn(&mut self, timeout: Duration) -> Result<()> {
        if self.stopped() {
            return Err(MioError::Stopped);
        }
        let wait = self.wait_time(Instant::now(), timeout);
        self.poll_once(wait)?;

        let now = Instant::now();
        if let Some(io) = self.link.check_deadline(self.poll.registry(), now) {
            self.on_link(now, io);
        }
        let beacon = self.beacon_link.as_mut();
        if let Some(io) = beacon.and_then(|l| l.check_deadline(self.poll.registry(), now)) {
            self.on_beacon_link(now, io);
        }
        if self.agent.poll_timeout().is_some_and(|at| at <= now) {
            self.agent.handle_timeout(now);
        }
        self.drain(now);
        Ok(())
    }

    fn wait_time(&self, now: Instant, cap: Duration) -> Duration {
        if self.udp_backlog {
            return Duration::ZERO;
        }
        let beacon = self.beacon_link.as_ref().and_then(ByteLink::deadline);
        [self.agent.poll_timeout(), self.link.deadline(), beacon]
            .into_iter()
            .flatten()
            .map(|at| at.saturating_duration_since(now))
            .fold(cap, Duration::min)
    }

    fn poll_once(&mut self, wait: Duration) -> Result<()> {
        loop {
            match self.poll.poll(&mut self.events, Some(wait)) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let ready: Vec<(Token, bool, bool)> = self
            .events
            .iter()
            .map(|e| (e.token(), e.is_readable(), e.is_writable()))
            .collect();
        let udp_readable = self.udp_backlog;
        let mut read_udp = udp_readable;
        for (token, readable, writable) in ready {
            match token {
                UDP => {
                    read_udp |= readable;
                    if writable {
                        self.udp.send_queued();
                    }
                }
                WAKER => {}
                token if self.link.owns(token) => self.on_link_ready(),
                token if self.beacon_link.as_ref().is_some_and(|l| l.owns(token)) => {
                    self.on_beacon_link_ready();
                }
                _ => {}
            }
        }
        if read_udp {
            self.receive_datagrams();
        }
        Ok(())
    }

    /// Receives until `WouldBlock` (or the per-turn cap, which leaves a backlog flag).
    fn receive_datagrams(&mut self) {
        let mut now = Instant::now();
        self.udp_backlog = true;
        for count in 1..=MAX_READS_PER_TURN {
            let agent = &mut self.agent;
            let got = self
                .udp
                .recv(|from, datagram| agent.handle_datagram(now, from, datagram));
            if got == Received::Empty {
                self.udp_backlog = false;
                break;
            }
            if count % DRAIN_EVERY == 0 {
                self.drain(now);
                now = Instant::now();
            }
        }
    }

    fn on_link_ready(&mut self) {
        let now = Instant::now();
        for io in self.link.on_ready(self.poll.registry(), &mut self.rx) {
            self.on_link(now, io);
        }
    }

    fn on_beacon_link_ready(&mut self) {
        let now = Instant::now();
        let Some(link) = self.beacon_link.as_mut() else {
            return;
        };
        for io in link.on_ready(self.poll.registry(), &mut self.rx) {
            self.on_beacon_link(now, io);
        }
    }

    fn on_beacon_link(&mut self, now: Instant, io: LinkIo) {
        match io {
            LinkIo::Connected => {
                tracing::info!("beacon traffic now goes over the beacon stream");
                self.agent.handle_beacon_stream_connected(now);
            }
            LinkIo::Bytes(bytes) => self.agent.handle_beacon_stream_bytes(now, &bytes),
            LinkIo::Closed => {
                tracing::info!("beacon stream closed");
                self.agent.handle_beacon_stream_closed(now);
            }
        }
    }

    fn on_link(&mut self, now: Instant, io: LinkIo) {
        match io {
            LinkIo::Connected => {
                tracing::info!("connected to the registry");
                self.agent.handle_registry_connected(now);
            }
            LinkIo::Bytes(bytes) => self.agent.handle_registry_bytes(now, &bytes),
            LinkIo::Closed => {
                tracing::info!("registry stream closed; the core reconnects with back-off");
                self.agent.handle_registry_closed(now);
            }
        }
    }

    /// Moves everything the core produced to the sockets and the application state.
    pub(crate) fn drain(&mut self, now: Instant) {
        for _ in 0..DRAIN_ROUNDS {
            self.drain_transmits(now);
            self.drain_registry(now);
            if !self.drain_events(now) {
                break;
            }
        }
        self.arm_udp();
    }

    fn drain_transmits(&mut self, now: Instant) {
        let mut tx = std::mem::take(&mut self.tx);
        loop {
            tx.clear();
            let Some(transmit) = self.agent.poll_transmit(now, &mut tx) else {
                break;
            };
            self.udp.push(transmit.dst, &tx[..transmit.len]);
        }
        self.udp.flush();
        self.tx = tx;
    }

    fn drain_registry(&mut self, now: Instant) {
        let mut buf = std::mem::take(&mut self.tx);
        while let Some(len) = self.agent.poll_registry_bytes(&mut buf) {
            if let Some(io) = self.link.send(self.poll.registry(), &buf[..len]) {
                self.on_link(now, io);
            }
        }
        while let Some(len) = self.agent.poll_beacon_stream_bytes(&mut buf) {
            let link = self.beacon_link.as_mut();
            if let Some(io) = link.and_then(|l| l.send(self.poll.registry(), &buf[..len])) {
                self.on_beacon_link(now, io);
            }
        }
        self.tx = buf;
    }

    fn drain_events(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(event) = self.agent.poll_event() {
            any = true;
            self.on_event(now, event);
        }
        any
    }

    /// Registers `WRITABLE` interest while datagrams wait, and drops it once they are out.
    fn arm_udp(&mut self) {
        let want = self.udp.has_queued();
        if want == self.udp_writable {
            return;
        }
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match self
            .poll
            .registry()
            .reregister(self.udp.socket_mut(), UDP, interest)
        {
            Ok(()) => self.udp_writable = want,
            Err(e) => tracing::warn!(error = %e, "could not re-register the udp socket"),
        }
    }

    fn on_event(&mut self, now: Instant, event: AgentEvent) {
        match event {
            AgentEvent::ConnectRegistry => {
                if let Err(e) = self.link.connect(self.poll.registry(), now) {
                    tracing::debug!(error = %e, "registry connect failed at once");
                    self.agent.handle_registry_closed(now);
                }
            }
            AgentEvent::ConnectBeaconStream => self.connect_beacon_stream(now),
            AgentEvent::Registered { address, endpoint } => {
                tracing::info!(%address, %endpoint, "registered");
                self.state.address = Some(address);
                self.state.registration_error = None;
            }
            AgentEvent::RegistrationFailed { error } => {
                tracing::warn!(%error, "registration refused; retrying");
                self.state.registration_error = Some(error.to_string());
            }
            AgentEvent::EndpointObserved { observed } => {
                tracing::info!(%observed, "beacon observed our endpoint");
            }
            AgentEvent::DialReady { dial, stream } => {
                self.state.streams.insert(stream, StreamState::default());
                self.state.dials.insert(dial, Ok(stream));
            }
            AgentEvent::DialFailed { dial, error, .. } => {
                self.state.dials.insert(dial, Err(error));
            }
            AgentEvent::Refused { peer, reason } => {
                tracing::info!(%peer, %reason, "peer refused our connection");
            }
            AgentEvent::Node(event) => self.on_node_event(now, event),
            // Limitation: `PersistTrust` is not written to disk, so trust is lost on restart.
            _ => {}
        }
    }

    fn connect_beacon_stream(&mut self, now: Instant) {
        let Some(link) = self.beacon_link.as_mut() else {
            self.agent.handle_beacon_stream_closed(now);
            return;
        };
        tracing::info!("beacon silent over udp; opening the beacon stream");
        if let Err(e) = link.connect(self.poll.registry(), now) {
            tracing::debug!(error = %e, link = link.name(), "connect failed at once");
            self.agent.handle_beacon_stream_closed(now);
        }
    }

    fn on_node_event(&mut self, now: Instant, event: NodeEvent) {
        match event {
            NodeEvent::Incoming {
                stream,
                port,
                remote,
            } => self.on_incoming(now, stream, port, remote),
            NodeEvent::Connected { stream } => {
                if let Some(state) = self.state.streams.get_mut(&stream) {
                    state.connected = true;
                }
            }
            NodeEvent::Closed { stream, reason } => {
                if let Some(state) = self.state.streams.get_mut(&stream) {
                    state.closed = Some(reason);
                }
            }
            // Limitation: inbound port datagrams (`NodeEvent::Datagram`) are not exposed.
            _ => {}
        }
    }

    fn on_incoming(&mut self, now: Instant, stream: ConnId, port: u16, remote: AddrPort) {
        let queue = self.state.incoming.get_mut(&port);
        match queue {
            Some(queue) if queue.len() < MAX_BACKLOG => {
                queue.push_back((stream, remote));
                let state = StreamState {
                    connected: true,
                    closed: None,
                };
                self.state.streams.insert(stream, state);
            }
            _ => self.agent.close(now, stream),
        }
    }
}
