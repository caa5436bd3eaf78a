//! What a node reports to its driver: events, errors and a statistics snapshot.

use std::net::SocketAddr;

use crate::pubsub::Seq;
use crate::transport::{CloseReason, ConnId, TransportStats};
use crate::tunnel::TunnelStats;
use crate::wire::addr::{Addr, AddrPort};

/// Something the driver or application must learn, from [`super::Node::poll_event`].
///
/// Stream events concern only connections the application opened or accepted on a port it
/// listens on; connections of built-in services (echo, event broker) never surface here.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A peer connected to a port the application listens on.
    Incoming {
        /// The new stream.
        stream: ConnId,
        /// The local port.
        port: u16,
        /// The peer's address and port.
        remote: AddrPort,
    },
    /// A stream the application opened is established.
    Connected {
        /// The stream.
        stream: ConnId,
    },
    /// Data or end-of-stream can be read with [`super::Node::recv`].
    Readable {
        /// The stream.
        stream: ConnId,
    },
    /// Send-buffer space opened after a short [`super::Node::send`].
    Writable {
        /// The stream.
        stream: ConnId,
    },
    /// The stream ended.
    Closed {
        /// The stream.
        stream: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// A datagram arrived on a port.
    Datagram {
        /// Sender.
        src: AddrPort,
        /// Local port.
        dst_port: u16,
        /// Payload.
        data: Vec<u8>,
    },
    /// A session key with a peer was installed: the tunnel to it is up.
    PeerUp {
        /// The peer.
        peer: Addr,
        /// Where its frames are sent.
        endpoint: Option<SocketAddr>,
    },
    /// A peer's endpoint moved (roaming or NAT rebinding), proven by authenticated traffic.
    PeerMoved {
        /// The peer.
        peer: Addr,
        /// Its new endpoint.
        endpoint: SocketAddr,
    },
    /// Every key-exchange attempt to a peer went unanswered.
    PeerUnreachable {
        /// The peer.
        peer: Addr,
    },
    /// A key exchange arrived from a node the node knows nothing about. The driver should look
    /// its key up (registry `lookup`) and call [`super::Node::add_peer`]; the sender retries.
    UnknownPeer {
        /// The node id the frame names.
        node: u32,
        /// Where it came from.
        from: SocketAddr,
    },
    /// The event broker accepted a publish: append `record` to the event log, make it durable,
    /// then call [`super::Node::handle_persisted`] with `seq`. Only with a persistent broker.
    LogAppend {
        /// Sequence number of the record.
        seq: Seq,
        /// Encoded log record (see `pubsub::log`).
        record: Vec<u8>,
    },
    /// Log records up to and including `through` left retention and may be compacted away.
    LogEvicted {
        /// Last evicted sequence number.
        through: Seq,
    },
    /// A sealed control packet (port 0) arrived from a keyed peer; its payload belongs to the
    /// agent (path probes, candidates, refusals).
    Control {
        /// The authenticated sender.
        peer: Addr,
        /// Where the frame came from (an endpoint, or the agent's relay marker).
        from: SocketAddr,
        /// The payload (at most `MAX_CONTROL_PAYLOAD` bytes).
        payload: Vec<u8>,
    },
    /// A datagram that is not a tunnel frame arrived (a beacon message); the node hands it on.
    NonTunnel {
        /// Where it came from.
        from: SocketAddr,
        /// Its bytes.
        bytes: Vec<u8>,
    },
}

/// Why a node command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node has no route to the destination node: it is not in the peer table.
    #[error("no tunnel to node {0}: it is not a known peer")]
    UnknownPeer(Addr),
    /// The node was not given its own address yet.
    #[error("this node has no address yet")]
    NoAddress,
    /// The transport refused to listen.
    #[error(transparent)]
    Listen(#[from] crate::transport::ListenError),
    /// The transport refused to connect.
    #[error(transparent)]
    Connect(#[from] crate::transport::ConnectError),
    /// A stream operation failed.
    #[error(transparent)]
    Stream(#[from] crate::transport::StreamError),
    /// A datagram could not be sent.
    #[error(transparent)]
    Datagram(#[from] crate::transport::DatagramError),
    /// The port is used by a built-in service.
    #[error("port {0} is reserved for a built-in service")]
    ServicePort(u16),
    /// The node runs no event broker.
    #[error("the event broker is not enabled on this node")]
    NoBroker,
    /// The broker refused a local publish.
    #[error(transparent)]
    Publish(#[from] crate::pubsub::broker::PublishError),
    /// The peer table is full or refused the peer.
    #[error(transparent)]
    Peer(#[from] crate::tunnel::PeerError),
}

/// A snapshot of a node's counters.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NodeStats {
    /// The tunnel's counters (drops by reason among them).
    pub tunnel: TunnelStats,
    /// The transport's counters.
    pub transport: TransportStats,
    /// Packets the node delivered to itself without the tunnel.
    pub loopback_packets: u64,
    /// Inbound packets that decoded badly or named another destination.
    pub packets_dropped: u64,
    /// Packets the transport produced for nodes with no tunnel.
    pub no_route: u64,
    /// Events discarded because the event queue was full.
    pub events_lost: u64,
}
