//! Tunable limits and timings of the transport, with defaults and the reasoning behind them.

use std::time::Duration;

/// Payload bytes per stream segment by default.
///
/// v0.5 uses 4,096, so every full segment is IP-fragmented on a 1,500-byte path. This value keeps
/// a full segment inside one 1,500-byte IPv6 packet even when it is sealed and relayed:
/// 1,500 − 40 (IPv6) − 8 (UDP) − 9 (beacon relay envelope) − 36 (`PILS` magic, sender, nonce,
/// tag) − 34 (packet header) = 1,373, rounded down to 1,360. See `docs/design/transport.md`.
pub const DEFAULT_SEGMENT_SIZE: usize = 1360;

/// The unit in which the 16-bit window field counts (v0.5: one "segment" of 4,096 bytes).
pub const WINDOW_UNIT: usize = 4096;

/// Limits and timings of a [`Transport`](super::Transport).
///
/// Every field that bounds memory a peer can make this node spend has a finite default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportConfig {
    /// Largest stream segment payload (MSS), in bytes.
    pub segment_size: usize,
    /// Send buffer per connection, in bytes (unacknowledged plus unsent); at least one segment.
    pub send_buffer: usize,
    /// Receive buffer per connection, in bytes (unread plus out-of-order); the advertised
    /// window is derived from it. At least two window units (8 KiB), since the window is
    /// advertised in 4,096-byte units rounded down.
    pub recv_buffer: usize,
    /// Out-of-order ranges held per connection.
    pub max_ooo_ranges: usize,
    /// Bytes held in stream buffers across all connections of this node.
    pub max_buffered_bytes: usize,
    /// Connections held by this node, TIME_WAIT included.
    pub max_connections: usize,
    /// Connections held per local port.
    pub max_connections_per_port: usize,
    /// Half-open (SYN received) connections per listening port.
    pub accept_backlog: usize,
    /// Transmissions of one segment (first plus retransmissions) before the connection is
    /// reset. v0.5: 8.
    pub max_transmissions: u8,
    /// SYN transmissions before a connect attempt fails. v0.5 without a beacon: 7.
    pub max_syn_transmissions: u8,
    /// Largest congestion window, in bytes.
    pub max_cwnd: usize,
    /// Delayed-ACK timer. v0.5: 40 ms.
    pub delayed_ack: Duration,
    /// Longest a small segment waits for outstanding data to be acknowledged (Nagle).
    /// v0.5: 40 ms.
    pub nagle_delay: Duration,
    /// Quiet time after which a keepalive is sent. v0.5: 30 s.
    pub keepalive_interval: Duration,
    /// Silence from the peer after which the connection is reset. v0.5: 120 s.
    pub idle_timeout: Duration,
    /// Time spent in TIME_WAIT (and the longest wait in FIN_WAIT_2). v0.5: 10 s.
    pub time_wait: Duration,
    /// Received datagrams queued as events before further ones are dropped.
    pub max_pending_datagrams: usize,
    /// Outbound packets (datagrams, resets) queued before further ones are refused.
    pub max_queued_packets: usize,
    /// Largest datagram payload accepted by `send_datagram`.
    pub max_datagram_size: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            segment_size: DEFAULT_SEGMENT_SIZE,
            send_buffer: 512 * 1024,
            recv_buffer: 512 * 1024,
            max_ooo_ranges: 64,
            max_buffered_bytes: 64 * 1024 * 1024,
            max_connections: 4096,
            max_connections_per_port: 1024,
            accept_backlog: 64,
            max_transmissions: 8,
            max_syn_transmissions: 7,
            max_cwnd: 2 * 1024 * 1024,
            delayed_ack: Duration::from_millis(40),
            nagle_delay: Duration::from_millis(40),
            keepalive_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            time_wait: Duration::from_secs(10),
            max_pending_datagrams: 256,
            max_queued_packets: 1024,
            max_datagram_size: crate::wire::packet::MAX_PAYLOAD_LEN,
        }
    }
}

impl TransportConfig {
    /// The segment size actually used: at least 64 bytes, at most the header's payload limit.
    pub(crate) fn mss(&self) -> usize {
        self.segment_size
            .clamp(64, crate::wire::packet::MAX_PAYLOAD_LEN)
    }

    /// The send buffer actually used: at least one segment.
    pub(crate) fn send_buffer_len(&self) -> usize {
        self.send_buffer.max(self.mss())
    }

    /// The receive buffer actually used: at least two window units.
    pub(crate) fn recv_buffer_len(&self) -> usize {
        self.recv_buffer.max(2 * WINDOW_UNIT)
    }
}
