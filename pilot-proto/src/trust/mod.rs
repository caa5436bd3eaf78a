//! The trust handshake (request, approve, reject, revoke) and the trust store.
//!
//! Owns the node's trust state ([`TrustStore`]), the port-444 message checks
//! ([`message`]) and the admission decision a private node applies to every inbound
//! connection and datagram ([`TrustStore::admit`]). Transport is the node's business: the
//! store asks for messages to be sent and registry calls to be made through
//! [`TrustAction`]s. Design notes: `docs/design/control-plane.md#trust`.
//!
//! # Beyond v0.5
//!
//! - Messages are verified against the registry's key for the claimed sender, never the key
//!   they carry; the sender must be the authenticated tunnel peer the stream came from.
//! - A hardened signature (`auth_sig`) binds type, timestamp, nonce, texts and receiver.
//!   [`TrustMode::Compat`] also accepts the v0.5 signature (made by the registry key), which is
//!   static: a v0.5 message can be replayed with a new timestamp. That is what compat gives up.
//! - An accept we never asked for is ignored; pending requests are bounded.
//! - A private node refuses connections from untrusted peers ([`Refusal`]); v0.5 only hid its
//!   endpoint.
//!
//! # Limitations
//!
//! - The replay filter lives in memory; after a restart a message seen in the last five minutes
//!   could be accepted once more (for hardened messages only a duplicate of an already-applied
//!   one, which is harmless).
//! - Shared-network auto-approval (v0.5's `same_network`) is not implemented: only network 0
//!   exists in v0.5.

pub mod message;
mod store;

pub use message::{Arrival, Rejection, build_message};
pub use store::{
    MAX_PENDING, MAX_TEXT, MAX_TRUSTED, PendingRequest, TRUST_FORMAT, TrustAction, TrustEvent,
    TrustStore, TrustedPeer, key_from_lookup,
};

/// The virtual port of the trust handshake.
pub const TRUST_PORT: u16 = 444;

/// Which trust messages are believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrustMode {
    /// Hardened signatures, or v0.5 signatures verified with the registry's key (Go peers).
    #[default]
    Compat,
    /// Hardened signatures only; Go daemons cannot establish trust with this node.
    Hardened,
}

/// Why a trust operation could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// No pending request from this node.
    #[error("no pending trust request from node {0}")]
    NotPending(u32),
    /// This node is not trusted.
    #[error("node {0} is not trusted")]
    NotTrusted(u32),
    /// A persisted store could not be read.
    #[error("trust store is corrupt: {0}")]
    Corrupt(String),
}

/// Why a private node refused an inbound connection; sent back to the dialler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The node is private and does not trust the dialler.
    #[error("node is private and does not trust node {peer}; ask with a trust handshake first")]
    Untrusted {
        /// The refused dialler.
        peer: u32,
    },
}
