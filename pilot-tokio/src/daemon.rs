//! The daemon process (`pilotctl daemon run`): identity, embedded rendezvous, UDP socket, driver
//! task and IPC server, until SIGTERM, SIGINT or an IPC shutdown request.
//!
//! Start-up order: state directory (0700) → identity (created atomically if missing) → embedded
//! rendezvous when no registry is configured (loopback only) → UDP socket → IPC socket (0600) →
//! PID file → driver → webhook host (restores `<home>/webhook/config.json`) → IPC server. On
//! exit the socket and PID file are removed.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::config::Paths;
use pilot_proto::node::NodeConfig;

use crate::driver::{self, DriverSetup};
use crate::identity_file;
use crate::rendezvous::{self, RendezvousConfig};
use crate::webhook;

/// Everything the daemon needs, already resolved from flags, environment and file.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// State paths.
    pub paths: Paths,
    /// Registry to use; `None` runs the embedded rendezvous.
    pub registry: Option<SocketAddr>,
    /// Beacon to use (ignored with the embedded rendezvous, which provides its own).
    pub beacon: Option<SocketAddr>,
    /// Beacon over TCP, when UDP to it is blocked; `None` means the beacon's own address.
    pub beacon_tcp: Option<SocketAddr>,
    /// v0.5 `-webhook`: POST every event to this URL (signed, retried), set at start.
    pub webhook: Option<String>,
    /// Tunnel UDP listen address.
    pub listen: SocketAddr,
    /// Hostname to claim.
    pub hostname: Option<String>,
    /// Make the node public (any node may resolve its endpoint) after registering.
    pub public: bool,
    /// Embedded rendezvous registry address (loopback).
    pub rendezvous_registry: SocketAddr,
    /// Embedded rendezvous beacon address (loopback).
    pub rendezvous_beacon: SocketAddr,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// Identity file problem.
    #[error(transparent)]
    Identity(#[from] identity_file::IdentityFileError),
    /// A socket or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// Runs the daemon in the foreground until it is told to stop.
pub async fn run(settings: DaemonSettings) -> Result<(), DaemonError> {
    let paths = &settings.paths;
    prepare_home(&paths.home)?;
    let loaded = identity_file::load_or_create(&paths.identity)?;
    tracing::info!(path = %paths.identity.display(), created = loaded.created, "identity ready");
    let (registry, beacon) = match settings.registry {
        Some(r) => (r, settings.beacon),
        None => {
            let rv = rendezvous::start(&RendezvousConfig {
                registry: settings.rendezvous_registry,
                beacon: settings.rendezvous_beacon,
                state_dir: paths.home.join("rendezvous"),
                // Limitation: the embedded rendezvous offers no networks (no admin token).
                admin_token: None,
            })
            .await
            .map_err(io("embedded rendezvous"))?;
            (rv.registry, Some(rv.beacon))
        }
    };
    let udp = bind_udp(&paths.home, settings.listen).await?;
    let listener = crate::server::bind(&paths.socket)
        .await
        .map_err(io(format!("IPC socket {}", paths.socket.display())))?;
    let pid = format!("{}\n", std::process::id());
    identity_file::write_atomic(&paths.pidfile, pid.as_bytes())?;
    let setup = DriverSetup {
        udp,
        registry,
        beacon,
        beacon_tcp: settings.beacon_tcp.or(beacon),
        node_config: NodeConfig::default(),
        identity: loaded.identity,
        seed: identity_file::random_seed()?,
        hostname: settings.hostname.clone(),
        public: settings.public,
        signing_seed: loaded.seed,
        trust_path: paths.home.join("trust.state"),
        event_log: Some(paths.home.join("events.log")),
    };
    let (tx, rx) = mpsc::channel(1024);
    let mut driver_task = tokio::spawn(driver::run(setup, rx));
    let webhooks = webhook::host::start(&paths.home, paths.socket.clone(), tx.clone()).await;
    let server_task = tokio::spawn(crate::server::serve(listener, tx, webhooks.clone()));
    if let Some(url) = settings.webhook.clone() {
        tokio::spawn(set_start_webhook(webhooks, url));
    }
    tokio::spawn(crate::dataexchange::serve(
        paths.socket.clone(),
        paths.home.clone(),
    ));
    tracing::info!(socket = %paths.socket.display(), %registry, "daemon running");
    tokio::select! {
        _ = &mut driver_task => tracing::info!("stopping: shutdown requested over IPC"),
        signal = stop_signal() => tracing::info!(signal, "stopping"),
    }
    server_task.abort();
    cleanup(paths);
    Ok(())
}

/// Binds the tunnel socket. With port 0, the port of the previous run is tried first, so peers
/// that still hold this node's endpoint reach it again after a restart.
async fn bind_udp(home: &std::path::Path, listen: SocketAddr) -> Result<UdpSocket, DaemonError> {
    let remembered = home.join("udp.port");
    if listen.port() == 0 {
        let last = std::fs::read_to_string(&remembered)
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok());
        if let Some(port) = last.filter(|p| *p != 0)
            && let Ok(udp) = UdpSocket::bind(SocketAddr::new(listen.ip(), port)).await
        {
            return Ok(udp);
        }
    }
    let udp = UdpSocket::bind(listen)
        .await
        .map_err(io(format!("bind UDP {listen}")))?;
    if let Ok(local) = udp.local_addr() {
        identity_file::write_atomic(&remembered, format!("{}\n", local.port()).as_bytes())?;
    }
    Ok(udp)
}

fn prepare_home(home: &PathBuf) -> Result<(), DaemonError> {
    if !home.exists() {
        std::fs::create_dir_all(home).map_err(io(format!("create {}", home.display())))?;
        let perms = std::fs::Permissions::from_mode(0o700);
        std::fs::set_permissions(home, perms).map_err(io(format!("chmod {}", home.display())))?;
    }
    Ok(())
}

fn cleanup(paths: &Paths) {
    let _ = std::fs::remove_file(&paths.socket);
    let ours = std::fs::read_to_string(&paths.pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if ours {
        let _ = std::fs::remove_file(&paths.pidfile);
    }
}

async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// `--webhook URL`: the outbound webhook as v0.5 sets it at start (once the IPC server runs,
/// since the webhook feed subscribes through it).
async fn set_start_webhook(webhooks: webhook::host::HostHandle, url: String) {
    match webhooks.set_outbound_v05(url).await {
        Ok(_) => tracing::info!("outbound webhook set from --webhook"),
        Err(error) => tracing::error!(%error, "--webhook not applied"),
    }
}
