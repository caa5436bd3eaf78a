//! What the agent reports: events for the driver and the application, errors, and the
//! snapshots answered by `peers()` and `info()`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::nat::DialFailure;
use crate::node::{NodeError, NodeEvent};
use crate::registry::{RegistryError, RequestId};
use crate::transport::ConnId;
use crate::trust::{TrustError, TrustEvent};
use crate::wire::addr::{Addr, AddrPort};
use crate::wire::registry::Response;

/// Identifies a stream dial that waits for its peer to be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DialId(pub u64);

/// Identifies a control command answered later by [`AgentEvent::ControlResult`].
pub type ControlId = RequestId;

/// The outcome of [`super::Agent::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dial {
    /// The peer's tunnel exists: the stream is opening now.
    Ready(ConnId),
    /// The peer is being resolved; [`AgentEvent::DialReady`] or [`AgentEvent::DialFailed`]
    /// follows with this id.
    Pending(DialId),
}

/// Where a peer's traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRoute {
    /// Nowhere yet (resolving, or the dial failed).
    None,
    /// Straight to the peer's public (or registered) endpoint.
    Direct(SocketAddr),
    /// Straight to one of the peer's own LAN endpoints (same network).
    Local(SocketAddr),
    /// Through the beacon.
    Relay,
}

impl PeerRoute {
    /// `direct`, `local`, `relay` or `none`.
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Direct(_) => "direct",
            Self::Local(_) => "local",
            Self::Relay => "relay",
        }
    }
}

/// Something the driver or the application must learn, from [`super::Agent::poll_event`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AgentEvent {
    /// Driver: (re)open the registry byte stream, closing any open one, then call
    /// `handle_registry_connected` (or `handle_registry_closed` if it fails).
    ConnectRegistry,
    /// Driver: open a byte stream to the beacon's TCP endpoint (`AgentConfig::beacon_tcp`),
    /// then call `handle_beacon_stream_connected` (or `handle_beacon_stream_closed`).
    ConnectBeaconStream,
    /// The registry assigned (or confirmed) our address; the node is running.
    Registered {
        /// Our virtual address.
        address: Addr,
        /// The endpoint registered for us.
        endpoint: SocketAddr,
    },
    /// The registry refused to register us.
    RegistrationFailed {
        /// Why.
        error: RegistryError,
    },
    /// The beacon observed our endpoint at a new address (first answer, NAT reboot, address
    /// change).
    EndpointObserved {
        /// The endpoint now observed.
        observed: SocketAddr,
    },
    /// A pending dial opened its stream.
    DialReady {
        /// The dial.
        dial: DialId,
        /// The stream, as if [`super::Agent::connect`] had returned it.
        stream: ConnId,
    },
    /// A pending dial failed.
    DialFailed {
        /// The dial.
        dial: DialId,
        /// Where it was going.
        remote: AddrPort,
        /// Why.
        error: AgentError,
    },
    /// A peer's route changed.
    RouteChanged {
        /// The peer.
        peer: Addr,
        /// The new route.
        route: PeerRoute,
    },
    /// A peer refused our connection (it is private and does not trust us).
    Refused {
        /// The peer.
        peer: Addr,
        /// Its reason, as it sent it.
        reason: String,
    },
    /// We refused an inbound connection or datagram from an untrusted peer.
    RefusedInbound {
        /// The peer.
        peer: Addr,
        /// The local port it tried.
        port: u16,
    },
    /// A control command finished.
    ControlResult {
        /// The command.
        id: ControlId,
        /// The registry's answer.
        result: Result<Response, RegistryError>,
    },
    /// A trust change the application may want to hear about.
    Trust(TrustEvent),
    /// The trust store changed: write these bytes durably (`TrustStore::recover` reads them).
    PersistTrust(Vec<u8>),
    /// An application event from the node (streams, datagrams, event log, peers).
    Node(NodeEvent),
}

/// Why an agent command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The registry has not assigned us an address yet.
    #[error("not registered yet")]
    NotRegistered,
    /// The node refused the command.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The registry refused or failed the request.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A trust command failed.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// NAT traversal gave up.
    #[error(transparent)]
    Dial(#[from] DialFailure),
    /// Too many peers are tracked.
    #[error("peer table is full")]
    TooManyPeers,
    /// The peer refused us.
    #[error("refused by peer: {0}")]
    Refused(String),
}

/// A snapshot of one tracked peer, from [`super::Agent::peers`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer.
    pub peer: Addr,
    /// Its route now.
    pub route: PeerRoute,
    /// Whether the tunnel has a session key.
    pub keyed: bool,
    /// Whether we trust it.
    pub trusted: bool,
    /// How long after tracking began its first route was chosen, if one was.
    pub time_to_route: Option<Duration>,
    /// Endpoints being tried.
    pub candidates: Vec<SocketAddr>,
}

/// A snapshot of the agent, from [`super::Agent::info`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentInfo {
    /// Our address, once registered.
    pub address: Option<Addr>,
    /// The endpoint registered for us.
    pub registered_endpoint: Option<SocketAddr>,
    /// The endpoint the beacon observes.
    pub observed_endpoint: Option<SocketAddr>,
    /// Whether the node is public.
    pub public: bool,
    /// Peers tracked.
    pub peers: usize,
    /// Peers trusted.
    pub trusted: usize,
}
