//! The driver task: the one owner of the node, the registry client, the UDP socket and the
//! registry connection.
//!
//! One task runs [`run`]. It waits on four things: commands from IPC sessions (replies go back
//! over oneshot channels), UDP datagrams, registry connection events, and one `Sleep` re-armed
//! from the earliest of the node's and the registry client's `poll_timeout`, the heartbeat and
//! the reconnect back-off. After every input it drains, in order: the node's `poll_transmit`,
//! the registry client's `poll_bytes`, the node's `poll_event`, the registry client's
//! `poll_event`, repeating while events produce more output (bounded). Time is read only
//! through [`clock`]; each wake reads at most [`DATAGRAMS_PER_WAKE`] datagrams.
//!
//! The node needs its address at construction, so it is created when the registry answers
//! `register`; until then stream and datagram commands fail with "not registered yet".
//!
//! # Limitations
//!
//! - Beacon messages (non-tunnel datagrams) are dropped: NAT traversal through the beacon is not
//!   wired yet, so peers must be reachable at their registered endpoints.
//! - Trust commands (handshake, approve, reject, pending, trust, untrust) answer "not
//!   supported": the node does not compose the trust service yet.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

pub mod commands;
mod control;
mod registry_io;
mod sessions;

use commands::Command;
use pilot_proto::identity::Identity;
use pilot_proto::node::{Node, NodeConfig};
use pilot_proto::registry::RegistryClient;
use registry_io::{RegistryIo, RegistryLink};

/// Datagrams read per wake before other work gets a turn.
pub const DATAGRAMS_PER_WAKE: usize = 64;
/// How soon to retry streams whose session queue was full.
const STALL_RETRY: Duration = Duration::from_millis(10);
/// Timer used when nothing is scheduled.
const IDLE: Duration = Duration::from_secs(3600);

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
    /// The tunnel UDP socket.
    pub udp: UdpSocket,
    /// Registry TCP address.
    pub registry: SocketAddr,
    /// Node configuration.
    pub node_config: NodeConfig,
    /// The node's identity.
    pub identity: Identity,
    /// Seed for the node's random choices.
    pub seed: [u8; 32],
    /// Registry client, keyed with the identity.
    pub registry_client: RegistryClient,
    /// Hostname to claim at registration.
    pub hostname: Option<String>,
    /// Make the node public (resolvable by any node) after registering.
    pub public: bool,
}

/// Everything the driver task owns.
#[derive(Debug)]
pub(crate) struct Driver {
    node: Option<Node>,
    node_config: NodeConfig,
    identity: Identity,
    seed: [u8; 32],
    local: Option<SocketAddr>,
    sessions: sessions::Sessions,
    control: control::Control,
}

/// Runs the driver until a `Shutdown` command arrives or every command sender is gone.
pub async fn run(setup: DriverSetup, mut commands: mpsc::Receiver<Command>) {
    let udp = setup.udp;
    let mut link = RegistryLink::new(Some(setup.registry), clock());
    let mut d = Driver {
        node: None,
        node_config: setup.node_config,
        identity: setup.identity,
        seed: setup.seed,
        local: udp.local_addr().ok(),
        sessions: sessions::Sessions::default(),
        control: control::Control::new(setup.registry_client, setup.hostname, setup.public),
    };
    let sleep = tokio::time::sleep(IDLE);
    tokio::pin!(sleep);
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::with_capacity(65536);
    loop {
        d.drain(&udp, &mut link, &mut out);
        link.maybe_connect(clock());
        sleep.as_mut().reset(d.deadline(&link).into());
        tokio::select! {
            command = commands.recv() => match command {
                None | Some(Command::Shutdown) => break,
                Some(command) => d.on_command(command),
            },
            received = udp.recv_from(&mut buf) => {
                if let Ok((n, from)) = received {
                    d.on_datagram(from, &mut buf[..n]);
                }
                for _ in 1..DATAGRAMS_PER_WAKE {
                    let Ok((n, from)) = udp.try_recv_from(&mut buf) else { break };
                    d.on_datagram(from, &mut buf[..n]);
                }
            }
            Some(io) = link.events.recv() => d.on_registry_io(&mut link, io),
            () = &mut sleep => d.on_timeout(),
        }
    }
    tracing::info!("driver stopped");
}

impl Driver {
    fn on_datagram(&mut self, from: SocketAddr, bytes: &mut [u8]) {
        if let Some(node) = self.node.as_mut() {
            node.handle_datagram(clock(), from, bytes);
        }
    }

    fn on_timeout(&mut self) {
        let now = clock();
        if let Some(node) = self.node.as_mut()
            && node.poll_timeout().is_some_and(|t| t <= now)
        {
            node.handle_timeout(now);
        }
        self.control.on_timeout(now);
        self.retry_stalled();
    }

    fn on_registry_io(&mut self, link: &mut RegistryLink, io: RegistryIo) {
        let now = clock();
        match io {
            RegistryIo::Connected(g, writer) if link.is_current(g) => {
                tracing::info!("connected to the registry");
                link.on_connected(writer);
                self.control.on_connected(now, self.local);
            }
            RegistryIo::Bytes(g, bytes) if link.is_current(g) => {
                self.control.client.handle_bytes(now, &bytes)
            }
            RegistryIo::Closed(g) if link.is_current(g) => {
                link.on_closed(now);
                self.control.client.handle_disconnected(now);
            }
            _ => {}
        }
    }

    /// Drains every output in the fixed order; events can cause more output, so it repeats.
    fn drain(&mut self, udp: &UdpSocket, link: &mut RegistryLink, out: &mut Vec<u8>) {
        for _ in 0..8 {
            let now = clock();
            if let Some(node) = self.node.as_mut() {
                for _ in 0..4096 {
                    out.clear();
                    let Some(t) = node.poll_transmit(now, out) else {
                        break;
                    };
                    // Limitation: a datagram the kernel refuses (full buffer) is dropped; the
                    // transport retransmits.
                    let _ = udp.try_send_to(&out[..t.len], t.dst);
                }
            }
            while let Some(len) = self.control.client.poll_bytes(out) {
                link.send(out[..len].to_vec());
            }
            let mut handled = 0;
            while let Some(event) = self.node.as_mut().and_then(Node::poll_event) {
                self.on_node_event(event);
                handled += 1;
                if handled == 4096 {
                    break;
                }
            }
            while let Some(event) = self.control.client.poll_event() {
                self.on_registry_event(link, event);
                handled += 1;
            }
            if handled == 0 {
                return;
            }
        }
    }

    fn deadline(&self, link: &RegistryLink) -> Instant {
        let now = clock();
        let candidates = [
            self.node.as_ref().and_then(Node::poll_timeout),
            self.control.client.poll_timeout(),
            self.control.next_timer(),
            link.reconnect_at,
            self.sessions.has_stalled().then_some(now + STALL_RETRY),
        ];
        candidates
            .into_iter()
            .flatten()
            .fold(now + IDLE, Instant::min)
            .max(now)
    }
}
