//! What the tunnel reports: the result of one inbound datagram ([`Inbound`]), queued
//! [`Event`]s, drop reasons with their counters ([`TunnelStats`]) and the errors of its
//! commands.

use std::net::SocketAddr;

/// The outcome of [`super::Tunnel::handle_datagram`]. `Packet` borrows the caller's datagram
/// buffer, where the plaintext was decrypted in place.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a delivered packet must be routed"]
pub enum Inbound<'a> {
    /// A packet (34-byte header and payload, not yet decoded) from `node`.
    Packet {
        /// The sending node. For a sealed frame this is the authenticated sender and the
        /// packet's own source node has been checked against it; for plaintext it is only the
        /// packet's claimed source.
        node: u32,
        /// The marshalled packet.
        packet: &'a [u8],
        /// Whether it arrived sealed (PILS) rather than in clear (PILT).
        encrypted: bool,
    },
    /// Not a tunnel frame (no `PIL?` magic); it belongs to the beacon client.
    NotTunnel,
    /// A tunnel control frame (key exchange, punch probe) that was handled.
    Consumed,
    /// The frame was dropped and counted; see [`TunnelStats::dropped`].
    Dropped(DropReason),
}

/// Something the node must learn about, from [`super::Tunnel::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A session key with `node` was installed. `rekeyed` is true when it replaces one.
    PeerKeyed {
        /// The peer.
        node: u32,
        /// Whether a previous session existed.
        rekeyed: bool,
    },
    /// Authenticated, fresh traffic from `node` arrived from a new address; frames now go there.
    EndpointChanged {
        /// The peer.
        node: u32,
        /// The previous endpoint.
        old: SocketAddr,
        /// The new endpoint.
        new: SocketAddr,
    },
    /// A frame was dropped. `UnknownPeer` drops tell the node to look the sender up in the
    /// registry and call `add_peer`.
    FrameDropped {
        /// The datagram's source address.
        from: SocketAddr,
        /// The node id the frame names, when it could be read.
        node: Option<u32>,
        /// Why.
        reason: DropReason,
    },
    /// Every key-exchange attempt to `node` went unanswered; its queued packets were dropped.
    KeyExchangeFailed {
        /// The peer.
        node: u32,
        /// Packets discarded from its queue.
        dropped_packets: usize,
    },
}

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Why an inbound frame was dropped. Each reason has its own counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum DropReason {
            $($(#[$doc])* $name,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
        }
    };
}

drop_reasons! {
    /// Too short or otherwise unparsable for its magic.
    Malformed,
    /// A `PIL?` magic that is not PILT/PILS/PILK/PILA/PILP.
    UnknownFrame,
    /// PILS/PILA/PILK while encryption is off.
    EncryptionDisabled,
    /// The sender node is not in the peer table.
    UnknownPeer,
    /// PILS from a peer with which no session exists (a key exchange is nudged).
    NoSession,
    /// PILS carrying one of our own nonce prefixes: our frame reflected back at us.
    Reflected,
    /// PILS whose counter was already accepted.
    Replayed,
    /// PILS whose counter is 256 or more behind the newest accepted one.
    TooOld,
    /// PILS under a nonce prefix the peer has already moved away from.
    StalePrefix,
    /// PILS that failed AES-GCM authentication (tampered, forged or wrong key).
    DecryptFailed,
    /// PILS whose inner packet names a different source node than the frame's sender.
    SourceMismatch,
    /// PILT in a peer's name while an encrypted session with it exists.
    PlaintextAfterKeying,
    /// PILA from a peer whose registry key is unknown.
    NoSigningKey,
    /// PILA carrying an Ed25519 key other than the peer's registered one.
    WrongSigningKey,
    /// PILA whose signature does not verify.
    BadSignature,
    /// PILA/PILK repeating the key of an installed session (replayed or redundant); nothing
    /// is reset.
    RepeatedKeyExchange,
    /// PILA/PILK carrying a key the peer has already replaced.
    StaleKeyExchange,
    /// Key exchange with a low-order X25519 key.
    LowOrderKey,
    /// PILK from a peer whose registry key is known (it must authenticate with PILA).
    AnonymousKeyRefused,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// Position of this reason's counter.
    fn index(self) -> usize {
        // Fieldless enum: the discriminant is the position in `ALL`.
        self as usize
    }
}

/// Counters kept by the tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunnelStats {
    dropped: [u64; DropReason::COUNT],
    /// Packets sealed into PILS frames.
    pub packets_sealed: u64,
    /// PILS frames opened and delivered.
    pub packets_opened: u64,
    /// PILT frames delivered.
    pub plaintext_delivered: u64,
    /// PILT frames sent (encryption off).
    pub plaintext_sent: u64,
    /// PILA frames sent.
    pub key_exchanges_sent: u64,
    /// Re-keys started because a nonce counter reached its limit.
    pub rekeys: u64,
    /// PILP punch probes received.
    pub punches_received: u64,
    /// Packets lost from full queues (per-peer pending queue or transmit queue).
    pub queue_overflows: u64,
    /// Events discarded because the event queue was full.
    pub events_lost: u64,
}

impl TunnelStats {
    /// Frames dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Frames dropped for any reason.
    pub fn total_dropped(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub(super) fn count_drop(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }
}

/// Why [`super::Tunnel::send`] refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The node is not in the peer table; call `add_peer` first.
    #[error("node {0} is not a tunnel peer")]
    UnknownPeer(u32),
    /// The packet is shorter than a packet header or longer than a packet can be.
    #[error("packet of {len} bytes is outside {min}..={max}")]
    BadPacketLength {
        /// Length given.
        len: usize,
        /// Smallest allowed.
        min: usize,
        /// Largest allowed.
        max: usize,
    },
    /// `poll_transmit` has not been drained; the transmit queue is full.
    #[error("transmit queue is full; drain poll_transmit")]
    TransmitQueueFull,
}

/// Why a peer-table command failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The table already holds `max_peers` peers.
    #[error("peer table is full ({max} peers)")]
    TableFull {
        /// The configured bound.
        max: usize,
    },
    /// The node is our own.
    #[error("node {0} is the local node")]
    LocalNode(u32),
    /// The node is not in the peer table.
    #[error("node {0} is not a tunnel peer")]
    UnknownPeer(u32),
}
