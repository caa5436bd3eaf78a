//! Registry client and server state machines over a reliable byte stream.
//!
//! Owns the registry protocol's behaviour: the server ([`RegistryServer`]: tables, rules,
//! timers, persistence as pure encode + recover) and the client ([`RegistryClient`]: request
//! signing, request/response correlation, retries). Both are sans-IO: the driver carries the
//! bytes of one TCP connection per client and never sees a parsed message unless it asks.
//! Wire layouts live in [`crate::wire::registry`]; design notes in
//! `docs/design/control-plane.md`.
//!
//! # Security modes
//!
//! [`SecurityMode::Compat`] serves Go v0.5 daemons unchanged, but every node that once proved
//! possession of its key (a hardened `register`) is protected from then on: v0.5 signatures
//! alone are refused for it, unsigned re-registration of its key is refused, its owner string
//! cannot take it over, and it is resolvable (by id or hostname) only by peers it trusts.
//! [`SecurityMode::Hardened`] applies those rules to every node, so v0.5 daemons cannot
//! register.
//!
//! # Limitations
//!
//! - Hot-standby replication is not implemented: `subscribe_replication` is answered as a v0.5
//!   primary without a token answers it.
//! - Hardened-proof nonces are remembered in memory only; after a registry restart a proof
//!   captured in the previous 120 s could be replayed once.
//! - `beacon_register` stays unauthenticated (the v0.5 message has no credential field), so a
//!   rogue beacon can still be listed; it is only required to give a parsable address and is
//!   bounded in number.
//! - `lookup` stays unauthenticated (v0.5 daemons need it to fetch keys), so ids, keys,
//!   hostnames and tags remain enumerable; only endpoints of private nodes are protected.

mod auth;
mod client;
mod handlers;
pub mod ratelimit;
mod relay;
mod server;
mod state;

pub use auth::{
    AUTH_WINDOW_SECS, AuthError, NonceCache, SignatureForm, parse_key, sign_request, verify_auth,
    verify_v05,
};
pub use client::{
    ClientConfig, ClientEvent, NetworkTokens, RegistryClient, RegistryError, RequestId,
};
pub use server::{
    CloseReason, ConnectionId, RegistryConfig, RegistryServer, ServerEvent, StreamTransmit,
};
pub use state::{RecoverError, STATE_FORMAT, WallClock};

/// Which rules the registry server applies (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityMode {
    /// v0.5 rules for v0.5 nodes; hardened rules for nodes that proved their key.
    #[default]
    Compat,
    /// Hardened rules for everyone; v0.5 daemons cannot register.
    Hardened,
}

/// Machine-readable reason sent as `code` beside v0.5's opaque `request failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Too many requests from this source.
    RateLimited,
    /// The node, hostname or pair does not exist.
    NotFound,
    /// Not allowed (privacy, ownership, reserved name).
    Denied,
    /// A signature did not verify.
    BadSignature,
    /// The hardened proof's timestamp is outside the window.
    Stale,
    /// The hardened proof's nonce was already used.
    Replayed,
    /// This node must use the hardened proof.
    ProofRequired,
    /// The hostname belongs to another node.
    HostnameTaken,
    /// The hostname breaks the naming rule.
    InvalidHostname,
    /// A tag breaks the naming rule, or there are too many.
    InvalidTags,
    /// Malformed or unknown request.
    InvalidRequest,
    /// A bounded table is full.
    TableFull,
    /// The request type is not served here.
    Unsupported,
}

impl ErrorCode {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::NotFound => "not_found",
            Self::Denied => "denied",
            Self::BadSignature => "bad_signature",
            Self::Stale => "stale",
            Self::Replayed => "replayed",
            Self::ProofRequired => "proof_required",
            Self::HostnameTaken => "hostname_taken",
            Self::InvalidHostname => "invalid_hostname",
            Self::InvalidTags => "invalid_tags",
            Self::InvalidRequest => "invalid_request",
            Self::TableFull => "table_full",
            Self::Unsupported => "unsupported",
        }
    }

    /// Parses the wire string.
    pub fn parse(text: &str) -> Option<Self> {
        const ALL: [ErrorCode; 13] = [
            ErrorCode::RateLimited,
            ErrorCode::NotFound,
            ErrorCode::Denied,
            ErrorCode::BadSignature,
            ErrorCode::Stale,
            ErrorCode::Replayed,
            ErrorCode::ProofRequired,
            ErrorCode::HostnameTaken,
            ErrorCode::InvalidHostname,
            ErrorCode::InvalidTags,
            ErrorCode::InvalidRequest,
            ErrorCode::TableFull,
            ErrorCode::Unsupported,
        ];
        ALL.into_iter().find(|code| code.as_str() == text)
    }
}

/// Text form of a virtual address: `N:NNNN.HHHH.LLLL` (decimal network, then hex).
pub fn address_text(network: u16, node: u32) -> String {
    format!(
        "{network}:{network:04X}.{:04X}.{:04X}",
        node >> 16,
        node & 0xffff
    )
}

/// Most tags a node may carry at the registry.
pub const MAX_TAGS: usize = 10;

/// Checks the v0.5 hostname rule: 1-63 of `a-z0-9-`, alphanumeric at both ends, not reserved.
///
/// # Errors
/// A short lowercase reason.
pub fn validate_hostname(name: &str) -> Result<(), &'static str> {
    if matches!(name, "localhost" | "backbone" | "broadcast") {
        return Err("hostname is reserved");
    }
    validate_label(name, 63)
        .map_err(|_| "hostname must be 1-63 of a-z, 0-9 and '-', alphanumeric at both ends")
}

/// Normalises and checks tags: leading `#` stripped, each 1-32 of `a-z0-9-`, at most
/// [`MAX_TAGS`].
///
/// # Errors
/// A short lowercase reason.
pub fn validate_tags(tags: &[String]) -> Result<Vec<String>, &'static str> {
    if tags.len() > MAX_TAGS {
        return Err("too many tags");
    }
    tags.iter()
        .map(|tag| {
            let tag = tag.strip_prefix('#').unwrap_or(tag);
            validate_label(tag, 32).map(|()| tag.to_owned())
        })
        .collect()
}

fn validate_label(label: &str, max: usize) -> Result<(), &'static str> {
    let bytes = label.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err("empty");
    };
    if bytes.len() > max || !alnum(first) || !alnum(last) {
        return Err("bad shape");
    }
    if bytes.iter().all(|b| alnum(b) || *b == b'-') {
        Ok(())
    } else {
        Err("bad character")
    }
}
