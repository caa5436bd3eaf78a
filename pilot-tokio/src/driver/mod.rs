//! The driver task: the one owner of the node's [`Agent`] (registry client, beacon client, NAT
//! traversal, trust and the data-plane node, from `pilot_proto::agent`), the UDP socket and
//! the registry connection. The daemon, the mio embedding and the simulator run the same agent.
//!
//! One task runs [`run`]. It waits on: commands from IPC sessions (replies go back over
//! oneshot channels), UDP datagrams (tunnel frames and beacon messages alike), registry and
//! beacon-stream connection events, session wake-ups (a full IPC push queue freed a slot, or a
//! stream is read again after its per-wake budget; see `sessions`), event-log completions, and
//! one `Sleep` re-armed from the agent's `poll_timeout`, the reconnect, trust and durables timers.
//! After every input it drains, in the agent's order:
//! `poll_transmit`, `poll_registry_bytes`, `poll_event`, repeating while events produce more
//! output (bounded). Time is read only through [`clock`]; each wake reads the socket at most
//! [`READS_PER_WAKE`] times. Datagrams leave and arrive in runs where the kernel offers
//! segmentation offload (`udp_io`).
//!
//! The glue kept in the driver: IPC sessions and their connection ids ([`sessions`]), the IPC
//! control operations and their JSON replies (`control`), trust state on disk and the
//! dial-first delivery of handshake requests (`trust`), and the broker's event log on disk
//! with its group commit at the end of each turn (`eventlog`).
//!
//! # Limitations
//!
//! - A private node refuses an untrusted dialler after the transport handshake: the dialler's
//!   IPC dial succeeds, then the connection closes; the reason is logged on both sides.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

mod beacon_io;
pub mod commands;
mod control;
mod durables;
mod eventlog;
mod registry_io;
mod sessions;
mod trust;
mod udp_io;

use commands::Command;
use pilot_proto::agent::{Agent, AgentConfig, AgentEvent};
use pilot_proto::identity::Identity;
use pilot_proto::node::{NodeConfig, NodeEvent};
use registry_io::{RegistryIo, RegistryLink};

/// Socket reads per wake before other work gets a turn (one read can hold a run of datagrams
/// coalesced by the kernel's receive offload).
pub const READS_PER_WAKE: usize = 64;
/// Timer used when nothing is scheduled.
const IDLE: Duration = Duration::from_secs(3600);
/// Events handled per drain round at most.
const EVENTS_PER_ROUND: usize = 4096;

/// The driver's one clock read.
pub fn clock() -> Instant {
    Instant::now()
}

/// Wall-clock seconds (for the registry client's signed proofs).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the driver needs.
#[derive(Debug)]
pub struct DriverSetup {
    /// The tunnel UDP socket (beacon traffic shares it).
    pub udp: UdpSocket,
    /// Registry TCP address.
    pub registry: SocketAddr,
    /// Beacon UDP address; `None` disables punching and relay.
    pub beacon: Option<SocketAddr>,
    /// Beacon TCP address, used only when the beacon is silent over UDP.
    pub beacon_tcp: Option<SocketAddr>,
    /// Node configuration.
    pub node_config: NodeConfig,
    /// The node's identity.
    pub identity: Identity,
    /// Seed for the agent's random choices.
    pub seed: [u8; 32],
    /// Hostname to claim at registration.
    pub hostname: Option<String>,
    /// Make the node public (resolvable by any node, admitting every peer).
    pub public: bool,
    /// The identity's Ed25519 seed (signs registration and trust messages).
    pub signing_seed: zeroize::Zeroizing<[u8; 32]>,
    /// Where the trust store is saved.
    pub trust_path: std::path::PathBuf,
    /// Where the broker's events are kept; `None` keeps them in memory only.
    pub event_log: Option<std::path::PathBuf>,
}

/// Everything the driver task owns.
#[derive(Debug)]
pub(crate) struct Driver {
    agent: Agent,
    identity: Identity,
    encrypt: bool,
    trust_path: std::path::PathBuf,
    sessions: sessions::Sessions,
    control: control::Control,
    trust: trust::Trust,
    log: eventlog::EventLog,
    durables: durables::Durables,
    beacon_link: RegistryLink,
}

/// Builds the agent from the setup, with the trust store recovered from disk. With
/// `persistent`, the broker waits for the event log before it delivers an event.
fn agent(setup: &DriverSetup, local: Option<SocketAddr>, persistent: bool) -> Agent {
    let mut config = AgentConfig::default();
    config.node = setup.node_config.clone();
    if let Some(broker) = &mut config.node.broker {
        broker.persistent = persistent;
    }
    config.node.tunnel.key_exchange_retry = Duration::from_millis(300);
    config.node.tunnel.key_exchange_attempts = 9;
    config.beacon = setup.beacon;
    config.beacon_tcp = setup.beacon_tcp;
    config.local_endpoints = local.into_iter().collect();
    config.hostname = setup.hostname.clone();
    config.public = setup.public;
    config.trust_mode = pilot_proto::trust::TrustMode::Compat;
    let key = ed25519_dalek::SigningKey::from_bytes(&setup.signing_seed);
    let mut agent = Agent::new(config, key, setup.seed, clock(), unix_now());
    if let Ok(bytes) = std::fs::read(&setup.trust_path)
        && let Err(e) = agent.restore_trust(&bytes)
    {
        tracing::error!(error = %e, "trust state unreadable; starting with no trusted peers");
    }
    agent
}

/// Runs the driver until a `Shutdown` command arrives or every command sender is gone.
pub async fn run(setup: DriverSetup, mut commands: mpsc::Receiver<Command>) {
    let local = setup.udp.local_addr().ok();
    let mut link = RegistryLink::new(Some(setup.registry));
    let (log, mut log_done) = eventlog::EventLog::open(setup.event_log.clone()).await;
    let mut d = Driver {
        agent: agent(&setup, local, log.is_on()),
        identity: setup.identity,
        encrypt: setup.node_config.tunnel.encrypt,
        trust_path: setup.trust_path,
        sessions: sessions::Sessions::default(),
        control: control::Control::new(setup.hostname),
        trust: trust::Trust::new(),
        log,
        durables: durables::Durables::new(setup.event_log.as_deref()),
        beacon_link: RegistryLink::new(setup.beacon_tcp),
    };
    let mut beacon_events = d.beacon_link.take_events();
    let mut udp = match udp_io::UdpIo::new(setup.udp) {
        Ok(udp) => udp,
        Err(e) => {
            tracing::error!(error = %e, "tunnel socket unusable; the driver stops");
            return;
        }
    };
    let sleep = tokio::time::sleep(IDLE);
    tokio::pin!(sleep);
    let mut out = Vec::with_capacity(65536);
    let mut wakes = d.sessions.take_wakes();
    loop {
        // Writing the log releases events to the broker, whose output is drained again.
        for _ in 0..4 {
            d.drain(&mut udp, &mut link, &mut out);
            if !d.log_turn() {
                break;
            }
        }
        link.maybe_connect(clock());
        d.beacon_link.maybe_connect(clock());
        sleep.as_mut().reset(d.deadline(&link).into());
        tokio::select! {
            command = commands.recv() => match command {
                None | Some(Command::Shutdown) => break,
                Some(command) => d.on_command(command),
            },
            Ok(()) = udp.readable() => {
                for _ in 0..READS_PER_WAKE {
                    if !udp.try_recv(|from, datagram| d.on_datagram(from, datagram)) {
                        break;
                    }
                }
            }
            Some(io) = link.events.recv() => d.on_registry_io(&mut link, io),
            Some(wake) = wakes.recv() => d.on_wake(wake),
            Some(io) = beacon_events.recv() => d.on_beacon_io(io),
            () = &mut sleep => d.on_timeout(),
            Some(done) = log_done.recv() => d.on_log_done(done),
        }
    }
    d.save_durables();
    d.log.close().await;
    tracing::info!("driver stopped");
}

impl Driver {
    fn on_datagram(&mut self, from: SocketAddr, bytes: &mut [u8]) {
        self.agent.handle_datagram(clock(), from, bytes);
    }

    fn on_timeout(&mut self) {
        let now = clock();
        if self.agent.poll_timeout().is_some_and(|t| t <= now) {
            self.agent.handle_timeout(now);
        }
        self.trust_timers(now);
    }

    fn on_registry_io(&mut self, link: &mut RegistryLink, io: RegistryIo) {
        let now = clock();
        match io {
            RegistryIo::Connected(g, writer) if link.is_current(g) => {
                tracing::info!("connected to the registry");
                link.on_connected(writer);
                self.agent.handle_registry_connected(now);
            }
            RegistryIo::Bytes(g, bytes) if link.is_current(g) => {
                self.agent.handle_registry_bytes(now, &bytes)
            }
            RegistryIo::Closed(g) if link.is_current(g) => {
                link.on_closed();
                self.agent.handle_registry_closed(now);
            }
            _ => {}
        }
    }

    /// Drains every output in the agent's order; events can cause more output, so it repeats.
    fn drain(&mut self, udp: &mut udp_io::UdpIo, link: &mut RegistryLink, out: &mut Vec<u8>) {
        for _ in 0..8 {
            let now = clock();
            for _ in 0..4096 {
                out.clear();
                let Some(t) = self.agent.poll_transmit(now, out) else {
                    break;
                };
                udp.push(t.dst, &out[..t.len]);
            }
            udp.flush();
            out.clear();
            while let Some(len) = self.agent.poll_registry_bytes(out) {
                link.send(out[..len].to_vec());
                out.clear();
            }
            self.drain_beacon_stream(out);
            let mut handled = 0;
            while let Some(event) = self.agent.poll_event() {
                self.on_agent_event(link, event);
                handled += 1;
                if handled == EVENTS_PER_ROUND {
                    break;
                }
            }
            if handled == 0 {
                return;
            }
        }
    }

    fn on_agent_event(&mut self, link: &mut RegistryLink, event: AgentEvent) {
        match event {
            AgentEvent::ConnectRegistry => link.request_connect(clock()),
            AgentEvent::ConnectBeaconStream => self.connect_beacon_stream(),
            AgentEvent::Registered { address, endpoint } => {
                tracing::info!(%address, %endpoint, "registered with the registry")
            }
            AgentEvent::RegistrationFailed { error } => {
                tracing::warn!(%error, "registration refused")
            }
            AgentEvent::EndpointObserved { observed } => {
                tracing::info!(%observed, "the beacon observes this node's endpoint")
            }
            AgentEvent::RouteChanged { peer, route } => {
                tracing::info!(%peer, route = route.label(), "route to peer")
            }
            AgentEvent::Refused { peer, reason } => self.on_refused(peer, &reason),
            AgentEvent::RefusedInbound { peer, port } => {
                tracing::info!(%peer, port, "refused an untrusted peer (this node is private)")
            }
            AgentEvent::ControlResult { id, result } => self.on_control_result(id, result),
            AgentEvent::Trust(event) => tracing::info!(?event, "trust"),
            AgentEvent::PersistTrust(bytes) => self.persist_trust(&bytes),
            AgentEvent::DialReady { dial, stream } => self.on_dial_ready(dial, stream),
            AgentEvent::DialFailed { dial, error, .. } => self.on_dial_failed(dial, &error),
            AgentEvent::Node(NodeEvent::LogAppend { seq, record }) => {
                self.on_log_append(seq, &record)
            }
            AgentEvent::Node(NodeEvent::LogEvicted { through }) => self.on_log_evicted(through),
            AgentEvent::Node(event) => self.on_node_event(event),
            other => tracing::debug!(?other, "agent event ignored"),
        }
    }

    fn deadline(&self, link: &RegistryLink) -> Instant {
        let now = clock();
        let candidates = [
            self.agent.poll_timeout(),
            link.reconnect_at,
            self.beacon_link.reconnect_at,
            self.trust.next_timer(),
            self.durables.next_timer(),
        ];
        candidates
            .into_iter()
            .flatten()
            .fold(now + IDLE, Instant::min)
            .max(now)
    }
}
