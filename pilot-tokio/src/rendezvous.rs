//! The rendezvous: the registry server (TCP, v0.5 length-prefixed JSON) and the beacon server
//! (UDP) from `pilot_proto::{registry, beacon}`, served on configured addresses. The daemon
//! embeds one on loopback when no registry is configured; `pilotctl rendezvous` runs one alone.
//!
//! One task owns both state machines. Each TCP connection has a reader task (bytes in) and a
//! writer task (bytes out, bounded queue; a connection that does not read is closed). The
//! registry's state is written atomically (temp file, fsync, rename) whenever it reports a
//! change, so a restart keeps every node's id and a kill at any moment leaves a whole file.
//!
//! The beacon is also served over TCP on the same port number ([`beacon_stream`]), for nodes
//! whose UDP to the beacon is blocked; when that TCP port is taken, the rendezvous runs without
//! it and says so in the log.
//!
//! # Limitations
//!
//! - The beacon runs alone (no gossip peers are configured).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pilot_proto::beacon::{BeaconConfig, BeaconServer};
use pilot_proto::registry::{ConnectionId, RegistryConfig, RegistryServer, ServerEvent};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

use crate::driver::{clock, unix_now};

mod beacon_stream;

use beacon_stream::BeaconStreams;

/// Frames queued for one registry connection before it is closed as not reading.
const WRITE_QUEUE: usize = 64;
/// Connection events queued for the rendezvous task.
const EVENT_QUEUE: usize = 1024;

/// Where the rendezvous listens and keeps state.
#[derive(Debug, Clone)]
pub struct RendezvousConfig {
    /// Registry TCP listen address.
    pub registry: SocketAddr,
    /// Beacon UDP listen address.
    pub beacon: SocketAddr,
    /// Directory for `registry.state`.
    pub state_dir: PathBuf,
    /// The admin token that network requests must carry; without one, networks are off and
    /// every network request is refused as unsupported.
    pub admin_token: Option<String>,
}

/// A running rendezvous.
#[derive(Debug)]
pub struct Rendezvous {
    /// The bound registry address.
    pub registry: SocketAddr,
    /// The bound beacon address.
    pub beacon: SocketAddr,
}

#[derive(Debug)]
enum Io {
    Opened(ConnectionId, SocketAddr, mpsc::Sender<Vec<u8>>),
    Bytes(ConnectionId, Vec<u8>),
    Closed(ConnectionId),
    BeaconOpened(u64, mpsc::Sender<Vec<u8>>),
    BeaconBytes(u64, Vec<u8>),
    BeaconClosed(u64),
}

/// Binds both sockets, recovers state and spawns the servers on the current runtime.
pub async fn start(config: &RendezvousConfig) -> Result<Rendezvous, std::io::Error> {
    std::fs::create_dir_all(&config.state_dir)?;
    let state_path = config.state_dir.join("registry.state");
    let registry = recover(&state_path, registry_config(config.admin_token.clone()));
    let tcp = TcpListener::bind(config.registry).await?;
    let udp = UdpSocket::bind(config.beacon).await?;
    let rv = Rendezvous {
        registry: tcp.local_addr()?,
        beacon: udp.local_addr()?,
    };
    tracing::info!(registry = %rv.registry, beacon = %rv.beacon, "rendezvous listening");
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    match TcpListener::bind(rv.beacon).await {
        Ok(listener) => drop(tokio::spawn(accept_loop(
            Kind::Beacon,
            listener,
            tx.clone(),
        ))),
        Err(e) => tracing::warn!(addr = %rv.beacon, error = %e, "no beacon over TCP"),
    }
    tokio::spawn(accept_loop(Kind::Registry, tcp, tx));
    let beacon = BeaconServer::new(BeaconConfig::default(), clock(), unix_now());
    tokio::spawn(core_loop(
        Core {
            registry,
            beacon,
            writers: HashMap::new(),
            streams: BeaconStreams::default(),
            state_path,
        },
        udp,
        rx,
    ));
    Ok(rv)
}

fn registry_config(admin_token: Option<String>) -> RegistryConfig {
    let admin_token = admin_token.filter(|t| !t.is_empty());
    RegistryConfig {
        networks_enabled: admin_token.is_some(),
        admin_token,
        ..RegistryConfig::default()
    }
}

fn recover(path: &std::path::Path, config: RegistryConfig) -> RegistryServer {
    let (now, unix) = (clock(), unix_now());
    let Ok(bytes) = std::fs::read(path) else {
        return RegistryServer::new(config, now, unix);
    };
    match RegistryServer::recover(config.clone(), now, unix, &bytes) {
        Ok(server) => server,
        Err(e) => {
            let path = path.display();
            tracing::error!(%path, error = %e, "registry state unreadable; starting empty");
            RegistryServer::new(config, now, unix)
        }
    }
}

/// The two kinds of TCP connection the rendezvous accepts.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A registry client (length-prefixed JSON).
    Registry,
    /// A beacon stream (framed beacon datagrams).
    Beacon,
}

impl Kind {
    fn opened(self, id: u64, peer: SocketAddr, writer: mpsc::Sender<Vec<u8>>) -> Io {
        match self {
            Kind::Registry => Io::Opened(ConnectionId(id), peer, writer),
            Kind::Beacon => Io::BeaconOpened(id, writer),
        }
    }

    fn bytes(self, id: u64, bytes: Vec<u8>) -> Io {
        match self {
            Kind::Registry => Io::Bytes(ConnectionId(id), bytes),
            Kind::Beacon => Io::BeaconBytes(id, bytes),
        }
    }

    fn closed(self, id: u64) -> Io {
        match self {
            Kind::Registry => Io::Closed(ConnectionId(id)),
            Kind::Beacon => Io::BeaconClosed(id),
        }
    }

    fn write_queue(self) -> usize {
        match self {
            Kind::Registry => WRITE_QUEUE,
            Kind::Beacon => beacon_stream::WRITE_QUEUE,
        }
    }
}

/// Accepts connections of one kind and runs a reader and a writer task for each.
async fn accept_loop(kind: Kind, listener: TcpListener, events: mpsc::Sender<Io>) {
    let mut next = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(?kind, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        next += 1;
        // Replies are small frames; without this one waits for the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let (rd, mut wr) = stream.into_split();
        let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(kind.write_queue());
        if events.send(kind.opened(next, peer, wtx)).await.is_err() {
            return;
        }
        tokio::spawn(async move {
            while let Some(bytes) = wrx.recv().await {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(read_loop(kind, next, rd, events.clone()));
    }
}

/// Forwards one connection's bytes to the core, then its end.
async fn read_loop(kind: Kind, id: u64, mut rd: OwnedReadHalf, events: mpsc::Sender<Io>) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0
            || events
                .send(kind.bytes(id, buf[..n].to_vec()))
                .await
                .is_err()
        {
            break;
        }
    }
    let _ = events.send(kind.closed(id)).await;
}

struct Core {
    registry: RegistryServer,
    beacon: BeaconServer,
    writers: HashMap<ConnectionId, mpsc::Sender<Vec<u8>>>,
    streams: BeaconStreams,
    state_path: PathBuf,
}

async fn core_loop(mut core: Core, udp: UdpSocket, mut events: mpsc::Receiver<Io>) {
    let mut buf = vec![0u8; 65536];
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    loop {
        core.drain(&udp, &mut buf);
        sleep.as_mut().reset(core.deadline().into());
        tokio::select! {
            io = events.recv() => match io {
                Some(io) => core.on_io(io),
                None => return,
            },
            received = udp.recv_from(&mut buf) => {
                if let Ok((n, from)) = received {
                    core.beacon.handle_datagram(clock(), from, &buf[..n]);
                }
            }
            () = &mut sleep => {
                let now = clock();
                core.registry.handle_timeout(now);
                core.beacon.handle_timeout(now);
            }
        }
    }
}

impl Core {
    fn on_io(&mut self, io: Io) {
        let now = clock();
        match io {
            Io::Opened(conn, peer, writer) => {
                self.writers.insert(conn, writer);
                self.registry.handle_connect(now, conn, peer);
            }
            Io::Bytes(conn, bytes) => self.registry.handle_bytes(now, conn, &bytes),
            Io::Closed(conn) => {
                self.writers.remove(&conn);
                self.registry.handle_disconnect(now, conn);
            }
            Io::BeaconOpened(id, writer) => self.streams.opened(id, writer),
            Io::BeaconBytes(id, bytes) => self.streams.bytes(now, id, &bytes, &mut self.beacon),
            Io::BeaconClosed(id) => self.streams.closed(id),
        }
    }

    fn drain(&mut self, udp: &UdpSocket, buf: &mut Vec<u8>) {
        let now = clock();
        // State first: a reply is written only once the change it reports is durable.
        while let Some(event) = self.registry.poll_event() {
            match event {
                ServerEvent::Close { conn, .. } => {
                    self.writers.remove(&conn);
                }
                ServerEvent::StateDirty => self.persist(now),
                _ => {}
            }
        }
        while let Some(t) = self.registry.poll_transmit(buf) {
            let full = self
                .writers
                .get(&t.conn)
                .is_some_and(|w| w.try_send(buf[..t.len].to_vec()).is_err());
            if full {
                tracing::debug!(conn = t.conn.0, "registry client not reading; closing");
                self.writers.remove(&t.conn);
            }
        }
        for _ in 0..4096 {
            let Some(t) = self.beacon.poll_transmit(now, buf) else {
                break;
            };
            if !self.streams.route(t.dst, &buf[..t.len]) {
                let _ = udp.try_send_to(&buf[..t.len], t.dst);
            }
        }
    }

    fn persist(&mut self, now: Instant) {
        let bytes = self.registry.encode_state(now);
        match crate::identity_file::write_atomic(&self.state_path, &bytes) {
            Ok(()) => self.registry.mark_persisted(),
            Err(e) => tracing::warn!(error = %e, "could not save registry state"),
        }
    }

    fn deadline(&self) -> Instant {
        let now = clock();
        let far = now + Duration::from_secs(3600);
        [self.registry.poll_timeout(), self.beacon.poll_timeout()]
            .into_iter()
            .flatten()
            .fold(far, Instant::min)
            .max(now)
    }
}
