//! The daemon process (`pilotctl daemon run`): identity, embedded rendezvous, UDP socket, driver
//! task and IPC server, until SIGTERM, SIGINT or an IPC shutdown request.
//!
//! Start-up order: state directory (0700) → identity (created atomically if missing) → embedded
//! rendezvous when no registry is configured (loopback only) → UDP socket → IPC socket (0600) →
//! PID file → driver and IPC server. On exit the socket and PID file are removed.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::config::Paths;
use pilot_proto::node::NodeConfig;
use pilot_proto::registry::{ClientConfig, RegistryClient};
use pilot_proto::rng::Rng;

use crate::driver::{self, DriverSetup};
use crate::identity_file;
use crate::rendezvous::{self, RendezvousConfig};

/// Everything the daemon needs, already resolved from flags, environment and file.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// State paths.
    pub paths: Paths,
    /// Registry to use; `None` runs the embedded rendezvous.
    pub registry: Option<SocketAddr>,
    /// Beacon to use (ignored with the embedded rendezvous, which provides its own).
    pub beacon: Option<SocketAddr>,
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
    let registry = match settings.registry {
        Some(r) => r,
        None => {
            let rv = rendezvous::start(&RendezvousConfig {
                registry: settings.rendezvous_registry,
                beacon: settings.rendezvous_beacon,
                state_dir: paths.home.join("rendezvous"),
            })
            .await
            .map_err(io("embedded rendezvous"))?;
            rv.registry
        }
    };
    let udp = UdpSocket::bind(settings.listen)
        .await
        .map_err(io(format!("bind UDP {}", settings.listen)))?;
    let listener = crate::server::bind(&paths.socket)
        .await
        .map_err(io(format!("IPC socket {}", paths.socket.display())))?;
    let pid = format!("{}\n", std::process::id());
    identity_file::write_atomic(&paths.pidfile, pid.as_bytes())?;
    let key = ed25519_dalek::SigningKey::from_bytes(&loaded.seed);
    let now = driver::clock();
    let client_rng = Rng::from_seed(identity_file::random_seed()?);
    let registry_client = RegistryClient::new(
        ClientConfig::default(),
        now,
        driver::unix_now(),
        Some(key),
        client_rng,
    );
    let setup = DriverSetup {
        udp,
        registry,
        node_config: NodeConfig::default(),
        identity: loaded.identity,
        seed: identity_file::random_seed()?,
        registry_client,
        hostname: settings.hostname.clone(),
        public: settings.public,
    };
    let (tx, rx) = mpsc::channel(1024);
    let mut driver_task = tokio::spawn(driver::run(setup, rx));
    let server_task = tokio::spawn(crate::server::serve(listener, tx));
    tracing::info!(socket = %paths.socket.display(), %registry, "daemon running");
    tokio::select! {
        _ = &mut driver_task => tracing::info!("stopping: shutdown requested over IPC"),
        signal = stop_signal() => tracing::info!(signal, "stopping"),
    }
    server_task.abort();
    cleanup(paths);
    Ok(())
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
