//! Building and checking port-444 trust messages.
//!
//! Owns what makes a trust message believable: freshness, replay, the binding of the claimed
//! sender to the tunnel it arrived on, and signature verification against the key the
//! registry holds for the sender (never the key carried in the message).

use std::collections::{BTreeMap, VecDeque};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use ring::digest;

use super::TrustMode;
use crate::rng::Rng;
use crate::wire::registry::Base64;
use crate::wire::trust::{HandshakeType, TrustMessage};

/// Oldest timestamp accepted (v0.5: 5 minutes).
pub const MAX_AGE_SECS: i64 = 300;

/// Furthest future timestamp accepted (v0.5: 30 s).
pub const MAX_SKEW_SECS: i64 = 30;

/// Message digests remembered for replay detection.
const MAX_SEEN: usize = 4096;

/// Why an incoming trust message was not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Timestamp too old or too far ahead.
    #[error("trust message timestamp outside the accepted window")]
    Stale,
    /// Seen before.
    #[error("replayed trust message")]
    Replayed,
    /// The claimed sender is not the authenticated tunnel peer it came from.
    #[error("trust message sender does not match its tunnel")]
    WrongSender,
    /// The registry's key for the sender is unknown, so nothing can be verified.
    #[error("no registry key for the sender")]
    UnknownKey,
    /// The message carries a key other than the registry's for the sender.
    #[error("trust message key differs from the registry's")]
    KeyMismatch,
    /// No signature of a form the mode accepts.
    #[error("trust message lacks an acceptable signature")]
    Unsigned,
    /// A signature did not verify.
    #[error("bad trust message signature")]
    BadSignature,
}

/// Where and how an incoming message arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// Our node id (the receiver the signatures name).
    pub receiver: u32,
    /// The authenticated tunnel peer the port-444 stream came from, if known.
    pub tunnel_peer: Option<u32>,
    /// The registry's Ed25519 key for the claimed sender, if looked up.
    pub registry_key: Option<&'a VerifyingKey>,
    /// Our wall clock, Unix seconds.
    pub unix_now: i64,
}

/// Builds a signed message from `sender` to `receiver`.
///
/// Compat mode carries both the v0.5 signature (so Go daemons accept it) and the hardened
/// `auth_sig`; hardened mode leaves the replayable v0.5 signature out.
pub fn build_message(
    kind: HandshakeType,
    (sender, receiver): (u32, u32),
    key: &SigningKey,
    text: (&str, &str),
    unix_now: i64,
    mode: TrustMode,
    rng: &mut Rng,
) -> TrustMessage {
    let (justification, reason) = text;
    let v05 = match mode {
        TrustMode::Compat => key
            .sign(TrustMessage::challenge(sender, receiver).as_bytes())
            .to_bytes()
            .to_vec(),
        TrustMode::Hardened => Vec::new(),
    };
    let mut message = TrustMessage {
        kind,
        node_id: sender,
        public_key: Base64(key.verifying_key().to_bytes().to_vec()),
        justification: justification.into(),
        signature: Base64(v05),
        reason: reason.into(),
        timestamp: unix_now,
        nonce: Some(Base64(rng.bytes::<16>().to_vec())),
        auth_sig: None,
    };
    let auth = key.sign(&message.auth_transcript(receiver));
    message.auth_sig = Some(Base64(auth.to_bytes().to_vec()));
    message
}

/// Remembers digests of accepted messages for the freshness window.
#[derive(Debug, Default)]
pub struct ReplayFilter {
    seen: BTreeMap<[u8; 32], i64>,
    order: VecDeque<([u8; 32], i64)>,
}

impl ReplayFilter {
    /// Checks `message` as it arrived and records it when believed.
    ///
    /// # Errors
    /// The first [`Rejection`] that applies.
    pub fn check(
        &mut self,
        message: &TrustMessage,
        arrival: &Arrival<'_>,
        mode: TrustMode,
    ) -> Result<(), Rejection> {
        let age = arrival.unix_now.saturating_sub(message.timestamp);
        if !(-MAX_SKEW_SECS..=MAX_AGE_SECS).contains(&age) {
            return Err(Rejection::Stale);
        }
        if arrival
            .tunnel_peer
            .is_some_and(|peer| peer != message.node_id)
        {
            return Err(Rejection::WrongSender);
        }
        let digest = fingerprint(message);
        self.expire(arrival.unix_now);
        if self.seen.contains_key(&digest) {
            return Err(Rejection::Replayed);
        }
        verify_signature(message, arrival, mode)?;
        self.remember(digest, arrival.unix_now);
        Ok(())
    }

    fn expire(&mut self, unix_now: i64) {
        while let Some((digest, at)) = self.order.front().copied() {
            if unix_now.saturating_sub(at) <= MAX_AGE_SECS + MAX_SKEW_SECS
                && self.order.len() < MAX_SEEN
            {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&digest);
        }
    }

    fn remember(&mut self, digest: [u8; 32], unix_now: i64) {
        self.seen.insert(digest, unix_now);
        self.order.push_back((digest, unix_now));
    }
}

fn verify_signature(
    message: &TrustMessage,
    arrival: &Arrival<'_>,
    mode: TrustMode,
) -> Result<(), Rejection> {
    let key = arrival.registry_key.ok_or(Rejection::UnknownKey)?;
    if !message.public_key.0.is_empty() && message.public_key.0 != key.to_bytes() {
        return Err(Rejection::KeyMismatch);
    }

    // The hardened signature binds type, time, text, nonce and receiver.
    if let Some(auth) = &message.auth_sig {
        let signature = to_signature(auth)?;
        return key
            .verify(&message.auth_transcript(arrival.receiver), &signature)
            .map_err(|_| Rejection::BadSignature);
    }
    if mode == TrustMode::Hardened || message.signature.0.is_empty() {
        return Err(Rejection::Unsigned);
    }
    let signature = to_signature(&message.signature)?;
    let challenge = TrustMessage::challenge(message.node_id, arrival.receiver);
    key.verify(challenge.as_bytes(), &signature)
        .map_err(|_| Rejection::BadSignature)
}

fn to_signature(bytes: &Base64) -> Result<Signature, Rejection> {
    let array: [u8; 64] = bytes.to_array().ok_or(Rejection::BadSignature)?;
    Ok(Signature::from_bytes(&array))
}

fn fingerprint(message: &TrustMessage) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, &message.to_json());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}
