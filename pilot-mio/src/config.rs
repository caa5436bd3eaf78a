//! What a [`crate::MioNode`] needs: where the registry (and optionally the beacon) is, which
//! UDP address to bind, where the identity lives, and the core's own configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use pilot_proto::agent::AgentConfig;

/// Configuration of a [`crate::MioNode`]. Build with [`MioConfig::new`] and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MioConfig {
    /// The registry's TCP address.
    pub registry: SocketAddr,
    /// The beacon's UDP address (NAT traversal, relay); `None` registers the bound endpoint.
    pub beacon: Option<SocketAddr>,
    /// The beacon's TCP endpoint, used when UDP to the beacon is blocked (a pilot-rs
    /// extension; a v0.5 beacon has none). `None` disables that fallback.
    pub beacon_tcp: Option<SocketAddr>,
    /// Where the tunnel UDP socket binds. Default `0.0.0.0:0`.
    pub listen: SocketAddr,
    /// The v0.5 identity file (created with mode 0600 when missing); `None` uses a fresh
    /// identity that is never written (the node gets a new address every run).
    pub identity: Option<PathBuf>,
    /// Hostname to register.
    pub hostname: Option<String>,
    /// Public nodes are resolvable by anyone and admit every peer; private nodes (the v0.5
    /// default) admit only trusted peers.
    pub public: bool,
    /// The core's configuration (timers, limits). `beacon`, `hostname`, `public` and the local
    /// endpoint are filled in from the fields above.
    pub agent: AgentConfig,
}

impl MioConfig {
    /// A private node with a fresh identity, bound to `0.0.0.0:0`, registering at `registry`.
    pub fn new(registry: SocketAddr) -> Self {
        Self {
            registry,
            beacon: None,
            beacon_tcp: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            identity: None,
            hostname: None,
            public: false,
            agent: AgentConfig::default(),
        }
    }
}
