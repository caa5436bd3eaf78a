//! Agent configuration: plain data with defaults, composed of each part's own configuration.

use std::net::SocketAddr;
use std::time::Duration;

use crate::nat::NatConfig;
use crate::node::NodeConfig;
use crate::registry::ClientConfig;
use crate::trust::TrustMode;

/// How an [`super::Agent`] behaves. Start from `AgentConfig::default()` and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AgentConfig {
    /// The data-plane node (tunnel, transport, services). The default retries key exchanges
    /// faster than the tunnel's own default (300 ms, doubling, 9 attempts) so that a punched
    /// path is keyed within the fast dial plan.
    pub node: NodeConfig,
    /// NAT traversal timers and dial plan.
    pub nat: NatConfig,
    /// The registry client (timeouts, heartbeat period).
    pub registry: ClientConfig,
    /// The beacon's UDP address; `None` disables punching and relay.
    pub beacon: Option<SocketAddr>,
    /// The beacon's TCP endpoint for the stream fallback used when UDP to the beacon is
    /// blocked (a pilot-rs extension); `None` disables the fallback.
    pub beacon_tcp: Option<SocketAddr>,
    /// This host's own endpoints for the tunnel socket (its LAN addresses). They are told to
    /// keyed peers as host candidates so that two nodes behind one NAT find the local path.
    pub local_endpoints: Vec<SocketAddr>,
    /// An endpoint to register instead of the beacon-observed one (a port forward).
    pub listen_endpoint: Option<SocketAddr>,
    /// Hostname to register.
    pub hostname: Option<String>,
    /// Owner string to register.
    pub owner: Option<String>,
    /// Public nodes are resolvable by anyone and admit every peer; private nodes (the
    /// default, as in v0.5) admit only trusted peers.
    pub public: bool,
    /// Which trust messages are believed.
    pub trust_mode: TrustMode,
    /// How long registration waits for the beacon to report the observed endpoint before it
    /// registers the local one.
    pub register_wait: Duration,
    /// First delay before reconnecting a broken registry stream; doubles up to 30 s.
    pub reconnect_first: Duration,
    /// Remote peers tracked at most (dialled or dialling us).
    pub max_peers: usize,
    /// Datagrams queued per peer while its tunnel is being set up.
    pub max_queued_datagrams: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        let mut node = NodeConfig::default();
        node.tunnel.key_exchange_retry = Duration::from_millis(300);
        node.tunnel.key_exchange_attempts = 9;
        Self {
            node,
            nat: NatConfig::default(),
            registry: ClientConfig::default(),
            beacon: None,
            beacon_tcp: None,
            local_endpoints: Vec::new(),
            listen_endpoint: None,
            hostname: None,
            owner: None,
            public: false,
            trust_mode: TrustMode::default(),
            register_wait: Duration::from_secs(2),
            reconnect_first: Duration::from_secs(1),
            max_peers: 4096,
            max_queued_datagrams: 16,
        }
    }
}
