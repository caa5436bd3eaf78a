//! Node configuration: plain data with defaults, composed of each layer's own configuration.

use crate::pubsub::BrokerConfig;
use crate::transport::TransportConfig;
use crate::tunnel::TunnelConfig;

/// How a [`super::Node`] behaves. Start from `NodeConfig::default()` and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The tunnel layer (encryption, key exchange, peer table bounds).
    pub tunnel: TunnelConfig,
    /// The stream transport (buffers, timers, connection limits).
    pub transport: TransportConfig,
    /// Serve the echo service on port 7 (v0.5 does).
    pub echo: bool,
    /// Run the event broker on port 1002 (v0.5 does); `None` leaves the port free.
    pub broker: Option<BrokerConfig>,
    /// Most bytes a built-in service may hold for one connection whose peer is not reading.
    /// Beyond this the service connection is reset rather than buffering without limit.
    pub service_outbox: usize,
    /// Most node events queued before the oldest informational ones are discarded.
    pub max_events: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            tunnel: TunnelConfig::default(),
            transport: TransportConfig::default(),
            echo: true,
            broker: Some(BrokerConfig::default()),
            service_outbox: 1 << 20,
            max_events: 65_536,
        }
    }
}
