//! The driver task: the one owner of the node, the UDP socket and the registry connection.
//!
//! One task runs [`run`]. It waits on four things: commands from IPC sessions (replies go back
//! over oneshot channels), UDP datagrams, registry connection events and one `Sleep` re-armed
//! from the node's `poll_timeout`. After every input it drains the node in the order
//! `/work/team/NODE_API.md` fixes: `poll_transmit` until `None`, `poll_registry_bytes` until
//! `None`, `poll_event` until `None`, then re-arms the timer. Time is read only through
//! [`clock`]; each wake reads at most [`DATAGRAMS_PER_WAKE`] datagrams.
//!
//! Everything that names the node type goes through `node.rs` (the seam) and `control.rs`.
//!
//! # Limitations
//!
//! - Until `pilot_proto::node` is merged, `node.rs` points at a loopback-only stand-in
//!   (`standin.rs`): the daemon serves its own clients, its broker and echo, and registers with
//!   the registry, but reaches no other node.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

pub mod commands;
mod control;
mod node;
mod registry_io;
mod standin;
mod state;

use commands::Command;
pub(crate) use node::{Node, NodeConfig};
use registry_io::{RegistryIo, RegistryLink};
use state::State;

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

/// What the driver needs besides the node.
#[derive(Debug)]
pub struct DriverSetup {
    /// The tunnel/beacon UDP socket.
    pub udp: UdpSocket,
    /// Registry TCP address (`None`: never register).
    pub registry: Option<SocketAddr>,
    /// Hostname reported by `info`.
    pub hostname: Option<String>,
    /// Whether the identity is persisted in a file.
    pub identity_persisted: bool,
}

/// Runs the driver until a `Shutdown` command arrives or every command sender is gone.
pub async fn run(mut node: Node, setup: DriverSetup, mut commands: mpsc::Receiver<Command>) {
    if let Ok(local) = setup.udp.local_addr() {
        node.set_local_endpoint(local);
    }
    let mut state = State::new(setup.hostname, setup.identity_persisted);
    let mut registry = RegistryLink::new(setup.registry, clock());
    let sleep = tokio::time::sleep(IDLE);
    tokio::pin!(sleep);
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::with_capacity(65536);
    loop {
        drain(&mut node, &mut state, &setup.udp, &mut registry, &mut out);
        registry.maybe_connect(clock());
        sleep
            .as_mut()
            .reset(deadline(&node, &state, &registry).into());
        tokio::select! {
            command = commands.recv() => match command {
                None | Some(Command::Shutdown) => break,
                Some(command) => state.on_command(&mut node, command),
            },
            received = setup.udp.recv_from(&mut buf) => {
                if let Ok((n, from)) = received {
                    node.handle_datagram(clock(), from, &mut buf[..n]);
                }
                read_more(&mut node, &setup.udp, &mut buf);
            }
            Some(io) = registry.events.recv() => on_registry(&mut node, &mut registry, io),
            () = &mut sleep => {
                node.handle_timeout(clock());
                state.retry_stalled(&mut node);
            }
        }
    }
    tracing::info!("driver stopped");
}

fn read_more(node: &mut Node, udp: &UdpSocket, buf: &mut [u8]) {
    for _ in 1..DATAGRAMS_PER_WAKE {
        match udp.try_recv_from(buf) {
            Ok((n, from)) => node.handle_datagram(clock(), from, &mut buf[..n]),
            Err(_) => return,
        }
    }
}

fn on_registry(node: &mut Node, registry: &mut RegistryLink, io: RegistryIo) {
    match io {
        RegistryIo::Connected(g, writer) if registry.is_current(g) => {
            tracing::info!("connected to the registry");
            registry.on_connected(writer);
            node.handle_registry_connected(clock());
        }
        RegistryIo::Bytes(g, bytes) if registry.is_current(g) => {
            node.handle_registry_bytes(clock(), &bytes);
        }
        RegistryIo::Closed(g) if registry.is_current(g) => {
            registry.on_closed(clock());
            node.handle_registry_closed(clock());
        }
        _ => {}
    }
}

/// Drains the node in the fixed order; events can cause more output, so it repeats (bounded).
fn drain(
    node: &mut Node,
    state: &mut State,
    udp: &UdpSocket,
    registry: &mut RegistryLink,
    out: &mut Vec<u8>,
) {
    for _ in 0..8 {
        let now = clock();
        for _ in 0..1024 {
            out.clear();
            let Some(transmit) = node.poll_transmit(now, out) else {
                break;
            };
            // Limitation: a datagram the kernel refuses (full buffer) is dropped; the node retransmits.
            let _ = udp.try_send_to(&out[..transmit.len], transmit.dst);
        }
        while let Some(bytes) = node.poll_registry_bytes() {
            registry.send(bytes);
        }
        let mut events = 0;
        while let Some(event) = node.poll_event() {
            state.on_event(node, event);
            events += 1;
            if events == 4096 {
                break;
            }
        }
        if events == 0 {
            return;
        }
    }
}

fn deadline(node: &Node, state: &State, registry: &RegistryLink) -> Instant {
    let now = clock();
    let mut at = now + IDLE;
    if let Some(t) = node.poll_timeout() {
        at = at.min(t);
    }
    if let Some(t) = registry.reconnect_at {
        at = at.min(t);
    }
    if state.has_stalled() {
        at = at.min(now + STALL_RETRY);
    }
    at.max(now)
}
