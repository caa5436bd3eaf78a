//! Public types of the transport: connection handles and states, events, errors, statistics.

use std::fmt;

use crate::wire::addr::AddrPort;

/// A connection handle, unique for the lifetime of one [`Transport`](super::Transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub(crate) u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Connection states. v0.5 declares the first eight names (LISTEN is a listener here, not a
/// connection); FIN_WAIT and CLOSE_WAIT are split into the RFC 793 sub-states because this
/// transport, unlike v0.5, waits for data to be acknowledged before finishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnState {
    /// SYN sent, waiting for SYN-ACK.
    SynSent,
    /// SYN received and SYN-ACK sent, waiting for the handshake ACK.
    SynReceived,
    /// Data flows both ways.
    Established,
    /// We closed; our FIN is queued or unacknowledged.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's.
    FinWait2,
    /// Both FINs sent; ours is unacknowledged.
    Closing,
    /// The peer closed; we may still send.
    CloseWait,
    /// Both closed; our FIN (sent after the peer's) is unacknowledged.
    LastAck,
    /// Finished; lingering to absorb a retransmitted FIN, silent otherwise.
    TimeWait,
    /// Gone.
    Closed,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Both sides closed and every byte was acknowledged.
    Normal,
    /// The peer reset the connection.
    Reset,
    /// The peer refused the connection (reset in reply to our SYN).
    Refused,
    /// No SYN-ACK after the last SYN retransmission.
    ConnectTimeout,
    /// A segment went unacknowledged through every retransmission; we reset.
    RetransmitLimit,
    /// Nothing heard from the peer for the idle timeout; we reset.
    IdleTimeout,
    /// The application aborted the connection.
    Aborted,
}

/// Something the application must learn, from [`Transport::poll_event`](super::Transport).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportEvent {
    /// A peer completed a handshake with a listening port.
    Incoming {
        /// The new connection.
        conn: ConnId,
        /// Local port it arrived on.
        port: u16,
        /// The peer.
        remote: AddrPort,
    },
    /// A connection we opened is established.
    Connected {
        /// The connection.
        conn: ConnId,
    },
    /// Data (or end of stream) can be read. Edge-triggered: it is raised again only after
    /// [`recv`](super::Transport::recv) has been called.
    Readable {
        /// The connection.
        conn: ConnId,
    },
    /// Send-buffer space opened after a `send` accepted less than offered.
    Writable {
        /// The connection.
        conn: ConnId,
    },
    /// The connection ended (it may linger in TIME_WAIT, silently, for a while).
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// A datagram arrived.
    Datagram {
        /// Sender address and port.
        src: AddrPort,
        /// Destination port on this node.
        dst_port: u16,
        /// The payload.
        data: Vec<u8>,
    },
}

/// Why `listen` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// Something already listens there.
    #[error("port {0} is already bound")]
    PortInUse(u16),
}

/// Why `connect` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Every ephemeral port is taken.
    #[error("no free ephemeral port")]
    NoEphemeralPort,
    /// The node or the port holds its maximum of connections.
    #[error("too many connections")]
    TooManyConnections,
    /// Streams cannot go to a broadcast address.
    #[error("cannot connect to a broadcast address")]
    Broadcast,
}

/// Why a stream operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// No such connection (never existed, or already forgotten).
    #[error("unknown connection")]
    UnknownConnection,
    /// Nothing can be done now; wait for `Readable` or `Writable`.
    #[error("operation would block")]
    WouldBlock,
    /// The application already closed this side for writing.
    #[error("connection closed for writing")]
    Closed,
    /// The connection ended abnormally.
    #[error("connection ended: {0:?}")]
    Ended(CloseReason),
}

/// Why `send_datagram` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// The payload exceeds the configured maximum.
    #[error("datagram of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Payload size offered.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// The outbound queue is full; drain `poll_packet` first.
    #[error("outbound queue full")]
    QueueFull,
    /// Use `broadcast_datagram` with the network's members instead.
    #[error("broadcast needs the member list")]
    Broadcast,
    /// Every ephemeral port is taken.
    #[error("no free ephemeral port")]
    NoEphemeralPort,
}

/// Counters of one transport (monotonic unless stated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportStats {
    /// Packets handed to the driver.
    pub packets_sent: u64,
    /// Packets passed to `handle_packet`.
    pub packets_received: u64,
    /// Stream data segments sent, retransmissions included.
    pub segments_sent: u64,
    /// Stream data segments retransmitted.
    pub segments_retransmitted: u64,
    /// Stream payload bytes sent, retransmissions included.
    pub stream_bytes_sent: u64,
    /// Stream payload bytes received in order.
    pub stream_bytes_received: u64,
    /// Inbound packets dropped (wrong destination, unknown connection, memory limits).
    pub packets_dropped: u64,
    /// Resets sent.
    pub resets_sent: u64,
    /// Connections opened (either direction).
    pub connections_opened: u64,
    /// Connections currently held, TIME_WAIT included (a gauge).
    pub connections_open: u64,
    /// Bytes held in stream buffers right now (a gauge).
    pub buffered_bytes: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams received and queued.
    pub datagrams_received: u64,
    /// Datagrams dropped because the event queue held its maximum.
    pub datagrams_dropped: u64,
}

/// A snapshot of one connection's sender and receiver state, for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnStats {
    /// Current state.
    pub state: ConnState,
    /// Congestion window, bytes.
    pub cwnd: usize,
    /// Bytes believed in the network.
    pub in_flight: usize,
    /// The peer's advertised window, bytes.
    pub peer_window: u64,
    /// Smoothed round-trip time.
    pub srtt: std::time::Duration,
    /// Current retransmission timeout.
    pub rto: std::time::Duration,
    /// Bytes acknowledged by the peer.
    pub bytes_acked: u64,
    /// Bytes received in order.
    pub bytes_received: u64,
}
