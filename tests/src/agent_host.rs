//! A `pilot-sim` machine running one [`Agent`]: datagrams in and out of the host's UDP socket,
//! the registry stream carried as a simulated reliable stream, and the agent's events drained
//! after every input (kept in a bounded log for tests to inspect).
//!
//! Drain order per input, as the daemon does it: the simulator drains `poll_transmit`, then
//! `poll_stream` (stream commands first, then registry bytes), then arms `poll_timeout`; the
//! agent's events are drained right after each input and acted on (`ConnectRegistry`).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use pilot_proto::Transmit;
use pilot_proto::agent::{Agent, AgentConfig, AgentEvent, Dial, PeerRoute};
use pilot_proto::node::NodeEvent;
use pilot_proto::transport::ConnId;
use pilot_proto::wire::addr::{Addr, AddrPort};
use pilot_sim::{HostContext, Machine, StreamCommand, StreamEvent, StreamId};

use crate::rendezvous::UNIX_EPOCH_OFFSET;

/// Events kept in [`AgentHost::log`] at most (the oldest go first).
const MAX_LOG: usize = 4096;

/// One simulated host running an agent.
#[derive(Debug)]
pub struct AgentHost {
    /// The agent.
    pub agent: Agent,
    registry: SocketAddr,
    beacon_tcp: Option<SocketAddr>,
    stream: Option<StreamId>,
    beacon_stream: Option<StreamId>,
    next_stream: u64,
    commands: VecDeque<StreamCommand>,
    /// Our address once registered.
    pub address: Option<Addr>,
    /// Routes as last reported, with when they were reported.
    pub routes: BTreeMap<u32, (PeerRoute, Instant)>,
    /// Streams established (ours or accepted), with when.
    pub connected: BTreeMap<ConnId, Instant>,
    /// Streams our dials opened (at once, or once the peer was resolved).
    pub dialled: Vec<ConnId>,
    /// Every event, in order, with its time (bounded).
    pub log: VecDeque<(Instant, AgentEvent)>,
    /// The application's dial target: redialled (as an application would) when a dialled
    /// stream closes before it was established, at most [`MAX_REDIALS`] times.
    target: Option<AddrPort>,
    redials: u32,
}

/// Redials of one target at most.
pub const MAX_REDIALS: u32 = 5;

impl AgentHost {
    /// Builds the agent for the host in `ctx`, with the host's own endpoint as its only LAN
    /// candidate and a signing key derived from the host seed.
    pub fn new(ctx: &HostContext, mut config: AgentConfig, registry: SocketAddr) -> Self {
        let beacon_tcp = config.beacon_tcp;
        let port = ctx
            .udp_ports
            .first()
            .copied()
            .unwrap_or(pilot_sim::DEFAULT_UDP_PORT);
        config.local_endpoints = vec![SocketAddr::from((ctx.addr, port))];
        let mut key_seed = ctx.seed;
        key_seed[0] ^= 0x5a;
        let key = SigningKey::from_bytes(&key_seed);
        let unix_now = UNIX_EPOCH_OFFSET + u64::from(ctx.boot) * 3600;
        let agent = Agent::new(config, key, ctx.seed, ctx.now, unix_now);
        let mut host = Self {
            agent,
            registry,
            beacon_tcp,
            stream: None,
            beacon_stream: None,
            next_stream: 1,
            commands: VecDeque::new(),
            address: None,
            routes: BTreeMap::new(),
            connected: BTreeMap::new(),
            dialled: Vec::new(),
            log: VecDeque::new(),
            target: None,
            redials: 0,
        };
        host.drain_events(ctx.now);
        host
    }

    /// Dials `remote` (a stream), recording the stream once it exists.
    pub fn connect(&mut self, now: Instant, remote: AddrPort) {
        self.target = Some(remote);
        if let Ok(Dial::Ready(stream)) = self.agent.connect(now, remote) {
            self.dialled.push(stream);
        }
        self.drain_events(now);
    }

    /// The route to `peer` as last reported.
    pub fn route(&self, peer: Addr) -> PeerRoute {
        self.routes
            .get(&peer.node)
            .map_or(PeerRoute::None, |(route, _)| *route)
    }

    /// Whether any stream our dials opened is established.
    pub fn any_dial_connected(&self) -> bool {
        self.dialled.iter().any(|s| self.connected.contains_key(s))
    }

    /// When the first of our dialled streams was established.
    pub fn first_dial_connected(&self) -> Option<Instant> {
        self.dialled
            .iter()
            .filter_map(|s| self.connected.get(s).copied())
            .min()
    }

    fn drain_events(&mut self, now: Instant) {
        while let Some(event) = self.agent.poll_event() {
            self.on_event(now, &event);
            self.log_event(now, event);
        }
    }

    fn on_event(&mut self, now: Instant, event: &AgentEvent) {
        match event {
            AgentEvent::ConnectRegistry => self.reconnect(),
            AgentEvent::ConnectBeaconStream => self.connect_beacon_stream(),
            AgentEvent::Registered { address, .. } => self.address = Some(*address),
            AgentEvent::RouteChanged { peer, route } => {
                self.routes.insert(peer.node, (*route, now));
            }
            AgentEvent::DialReady { stream, .. } => self.dialled.push(*stream),
            AgentEvent::Node(NodeEvent::Connected { stream }) => {
                self.connected.entry(*stream).or_insert(now);
            }
            AgentEvent::Node(NodeEvent::Closed { stream, .. })
                if self.dialled.contains(stream) && !self.connected.contains_key(stream) =>
            {
                self.redial(now);
            }
            _ => {}
        }
    }

    fn redial(&mut self, now: Instant) {
        let Some(remote) = self.target else { return };
        if self.redials >= MAX_REDIALS {
            return;
        }
        self.redials += 1;
        if let Ok(Dial::Ready(stream)) = self.agent.connect(now, remote) {
            self.dialled.push(stream);
        }
    }

    fn log_event(&mut self, now: Instant, event: AgentEvent) {
        if self.log.len() >= MAX_LOG {
            self.log.pop_front();
        }
        self.log.push_back((now, event));
    }

    fn reconnect(&mut self) {
        if let Some(old) = self.stream.take() {
            self.commands.push_back(StreamCommand::Close { id: old });
        }
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        self.stream = Some(id);
        self.commands.push_back(StreamCommand::Connect {
            id,
            dst: self.registry,
        });
    }

    fn connect_beacon_stream(&mut self) {
        let Some(dst) = self.beacon_tcp else { return };
        if let Some(old) = self.beacon_stream.take() {
            self.commands.push_back(StreamCommand::Close { id: old });
        }
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        self.beacon_stream = Some(id);
        self.commands.push_back(StreamCommand::Connect { id, dst });
    }

    fn on_beacon_stream(&mut self, now: Instant, event: StreamEvent<'_>) {
        match event {
            StreamEvent::Connected { .. } => self.agent.handle_beacon_stream_connected(now),
            StreamEvent::Data { bytes, .. } => self.agent.handle_beacon_stream_bytes(now, bytes),
            StreamEvent::Closed { .. }
            | StreamEvent::Refused { .. }
            | StreamEvent::Reset { .. } => {
                self.beacon_stream = None;
                self.agent.handle_beacon_stream_closed(now);
            }
            StreamEvent::Accepted { .. } => {}
        }
    }

    fn on_stream(&mut self, now: Instant, event: StreamEvent<'_>) {
        let id = match event {
            StreamEvent::Connected { id }
            | StreamEvent::Data { id, .. }
            | StreamEvent::Closed { id }
            | StreamEvent::Refused { id }
            | StreamEvent::Reset { id }
            | StreamEvent::Accepted { id, .. } => id,
        };
        if Some(id) == self.beacon_stream {
            return self.on_beacon_stream(now, event);
        }
        let current = |id: StreamId| Some(id) == self.stream;
        match event {
            StreamEvent::Connected { id } if current(id) => {
                self.agent.handle_registry_connected(now)
            }
            StreamEvent::Data { id, bytes } if current(id) => {
                self.agent.handle_registry_bytes(now, bytes)
            }
            StreamEvent::Closed { id }
            | StreamEvent::Refused { id }
            | StreamEvent::Reset { id }
                if current(id) =>
            {
                self.stream = None;
                self.agent.handle_registry_closed(now);
            }
            _ => {}
        }
    }
}

impl Machine for AgentHost {
    fn handle_datagram(
        &mut self,
        now: Instant,
        _local: SocketAddr,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        let mut datagram = bytes.to_vec();
        self.agent.handle_datagram(now, from, &mut datagram);
        self.drain_events(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.agent.handle_timeout(now);
        self.drain_events(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.agent.poll_transmit(now, buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.agent.poll_timeout()
    }

    fn handle_stream(&mut self, now: Instant, event: StreamEvent<'_>) {
        self.on_stream(now, event);
        self.drain_events(now);
    }

    fn poll_stream(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<StreamCommand> {
        if let Some(command) = self.commands.pop_front() {
            return Some(command);
        }
        if let Some(id) = self.stream
            && let Some(len) = self.agent.poll_registry_bytes(buf)
        {
            return Some(StreamCommand::Send { id, len });
        }
        let id = self.beacon_stream?;
        let len = self.agent.poll_beacon_stream_bytes(buf)?;
        Some(StreamCommand::Send { id, len })
    }
}

/// Time since `epoch`, for reports.
pub fn since(epoch: Instant, at: Instant) -> Duration {
    at.saturating_duration_since(epoch)
}
