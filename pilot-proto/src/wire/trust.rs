//! The trust-handshake message (port 444).
//!
//! Owns the JSON layout of the one message a trust connection carries: the seven v0.5 fields in
//! Go struct order (`type`, `node_id`, `public_key`, `justification`, `signature`, `reason`,
//! `timestamp`), plus two optional fields of the hardened form (`nonce`, `auth_sig`) that v0.5
//! ignores. Also the bytes each signature covers. Verification policy lives in `crate::trust`.

use serde::de::Deserializer;
use serde::{Deserialize, Serialize, Serializer};

use super::registry::Base64;

/// Largest message accepted: v0.5 reads one 4096-byte stream segment.
pub const MAX_TRUST_MESSAGE: usize = 4096;

/// Domain string of the hardened signature transcript.
pub const TRUST_AUTH_DOMAIN: &[u8] = b"pilot-trust-auth-v1";

/// Why a trust message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustMessageError {
    /// Larger than one segment.
    #[error("trust message of {0} bytes exceeds the 4096-byte limit")]
    TooLarge(usize),
    /// Not the expected JSON object.
    #[error("invalid trust message: {0}")]
    Invalid(String),
}

/// The `type` of a trust message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HandshakeType {
    /// `handshake_request`.
    Request,
    /// `handshake_accept`.
    Accept,
    /// `handshake_reject`.
    Reject,
    /// `handshake_revoke`.
    Revoke,
    /// Anything else (v0.5 ignores it).
    Other(String),
}

impl HandshakeType {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Request => "handshake_request",
            Self::Accept => "handshake_accept",
            Self::Reject => "handshake_reject",
            Self::Revoke => "handshake_revoke",
            Self::Other(other) => other,
        }
    }

    fn from_wire(text: String) -> Self {
        match text.as_str() {
            "handshake_request" => Self::Request,
            "handshake_accept" => Self::Accept,
            "handshake_reject" => Self::Reject,
            "handshake_revoke" => Self::Revoke,
            _ => Self::Other(text),
        }
    }
}

impl Default for HandshakeType {
    fn default() -> Self {
        Self::Other(String::new())
    }
}

impl Serialize for HandshakeType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for HandshakeType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from_wire)
    }
}

/// One port-444 message. Field order is the Go struct order, so emission is byte-identical.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrustMessage {
    /// What the message does.
    #[serde(rename = "type")]
    pub kind: HandshakeType,
    /// Sender's node id.
    pub node_id: u32,
    /// Sender's Ed25519 key, or empty.
    pub public_key: Base64,
    /// Free text of a request.
    pub justification: String,
    /// v0.5 signature over `handshake:<sender>:<receiver>`.
    pub signature: Base64,
    /// Free text of a reject or revoke.
    pub reason: String,
    /// Sender's wall clock, Unix seconds.
    pub timestamp: i64,
    /// Hardened form: 16 random bytes, unique per message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<Base64>,
    /// Hardened form: Ed25519 over [`TrustMessage::auth_transcript`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_sig: Option<Base64>,
}

impl TrustMessage {
    /// Decodes a message.
    ///
    /// # Errors
    /// [`TrustMessageError`] when larger than [`MAX_TRUST_MESSAGE`] or not a valid object.
    pub fn parse(bytes: &[u8]) -> Result<Self, TrustMessageError> {
        if bytes.len() > MAX_TRUST_MESSAGE {
            return Err(TrustMessageError::TooLarge(bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(|error| TrustMessageError::Invalid(error.to_string()))
    }

    /// Encodes compactly in Go struct order.
    pub fn to_json(&self) -> Vec<u8> {
        // Every field serialises infallibly.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The v0.5 challenge: the same for all four types.
    pub fn challenge(sender: u32, receiver: u32) -> String {
        format!("handshake:{sender}:{receiver}")
    }

    /// Bytes the hardened `auth_sig` covers: every field that carries meaning, each
    /// length-prefixed, plus the receiver, so a signature cannot be moved to another message,
    /// type, time or recipient.
    pub fn auth_transcript(&self, receiver: u32) -> Vec<u8> {
        let nonce = self
            .nonce
            .as_ref()
            .map_or(&[][..], |nonce| nonce.0.as_slice());
        let parts: [&[u8]; 5] = [
            self.kind.as_str().as_bytes(),
            self.justification.as_bytes(),
            self.reason.as_bytes(),
            nonce,
            &self.public_key.0,
        ];
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(TRUST_AUTH_DOMAIN);
        out.extend_from_slice(&self.node_id.to_be_bytes());
        out.extend_from_slice(&receiver.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        for part in parts {
            // Length-prefixed so that no two field splits give the same bytes.
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }
}
