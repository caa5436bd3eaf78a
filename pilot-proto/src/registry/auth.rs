//! Request signatures: the v0.5 challenge signature and the hardened `auth` proof.
//!
//! Owns how a client signs a request ([`sign_request`]) and how the server checks it
//! ([`verify_v05`], [`verify_auth`]), plus the bounded nonce cache that makes a hardened proof
//! single-use ([`NonceCache`]). Never decides *whether* a proof is required; that is policy in
//! the server.

use std::collections::{BTreeMap, VecDeque};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::Value;

use crate::rng::Rng;
use crate::wire::registry::{Auth, Base64, Request, auth_transcript};

/// How far a hardened timestamp may be from the verifier's clock, either way (seconds).
pub const AUTH_WINDOW_SECS: u64 = 120;

/// Nonces remembered per node; more proofs than this inside one window are refused.
pub(super) const MAX_NONCES_PER_NODE: usize = 512;

/// Nodes the nonce cache tracks at once.
pub(super) const MAX_NONCE_NODES: usize = 100_000;

/// Which signatures a client attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureForm {
    /// Only the v0.5 challenge signature (a Go-compatible client against a v0.5 server).
    V05,
    /// The v0.5 signature and the hardened proof (until the server says it is hardened).
    Both,
    /// Only the hardened proof; no replayable v0.5 signature leaves the node.
    Hardened,
}

/// Why a proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No proof of the required kind was present.
    #[error("missing signature")]
    Missing,
    /// The signature or key bytes are malformed or do not verify.
    #[error("bad signature")]
    BadSignature,
    /// The timestamp is outside the accepted window.
    #[error("timestamp outside the accepted window")]
    Stale,
    /// The nonce was already used.
    #[error("replayed nonce")]
    Replayed,
}

/// Signs `request` in place with `key`, in the given form, at wall time `unix_now`.
///
/// The v0.5 signature covers the fixed challenge of the request type; the hardened proof covers
/// the whole body (see [`auth_transcript`]). Types without a signer get only the proof where
/// they can carry one (`register` proves possession of its own key this way).
pub fn sign_request(
    request: &mut Request,
    key: &SigningKey,
    form: SignatureForm,
    unix_now: u64,
    rng: &mut Rng,
) {
    // The v0.5 signature goes on first: the transcript excludes it anyway.
    let v05 = match (form, request.challenge()) {
        (SignatureForm::V05 | SignatureForm::Both, Some((_, challenge))) => {
            Some(Base64(key.sign(challenge.as_bytes()).to_bytes().to_vec()))
        }
        _ => None,
    };
    request.set_signature(v05);
    if form == SignatureForm::V05 {
        request.set_auth(None);
        return;
    }

    let nonce: [u8; 16] = rng.bytes();
    let Value::Object(object) = request.to_value() else {
        return;
    };
    let transcript = auth_transcript(&object, unix_now, &nonce);
    let signature = key.sign(&transcript);
    request.set_auth(Some(Auth {
        ts: unix_now,
        nonce: Base64(nonce.to_vec()),
        sig: Base64(signature.to_bytes().to_vec()),
    }));
}

/// Checks the v0.5 challenge signature of `request` against `key`.
///
/// # Errors
/// [`AuthError::Missing`] without a signature, [`AuthError::BadSignature`] when it does not
/// verify or the request type has no challenge.
pub fn verify_v05(request: &Request, key: &VerifyingKey) -> Result<(), AuthError> {
    let (_, challenge) = request.challenge().ok_or(AuthError::Missing)?;
    let signature = request.signature().ok_or(AuthError::Missing)?;
    let signature = parse_signature(signature)?;
    key.verify(challenge.as_bytes(), &signature)
        .map_err(|_| AuthError::BadSignature)
}

/// Checks the hardened proof of `request` against `key`: signature, time window and nonce.
///
/// The nonce is recorded only when everything else passed, so a forged proof cannot burn a
/// legitimate nonce.
///
/// # Errors
/// [`AuthError`] naming the first check that failed.
pub fn verify_auth(
    request: &Request,
    key: &VerifyingKey,
    node_id: u32,
    unix_now: u64,
    nonces: &mut NonceCache,
) -> Result<(), AuthError> {
    let auth = request.auth().ok_or(AuthError::Missing)?;
    if auth.ts.abs_diff(unix_now) > AUTH_WINDOW_SECS {
        return Err(AuthError::Stale);
    }
    let signature = parse_signature(&auth.sig)?;
    let Value::Object(object) = request.to_value() else {
        return Err(AuthError::BadSignature);
    };
    let transcript = auth_transcript(&object, auth.ts, &auth.nonce.0);
    key.verify(&transcript, &signature)
        .map_err(|_| AuthError::BadSignature)?;
    nonces.check_and_insert(node_id, &auth.nonce.0, auth.ts, unix_now)
}

/// Parses a 32-byte Ed25519 public key.
pub fn parse_key(bytes: &[u8]) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(bytes.try_into().ok()?).ok()
}

fn parse_signature(bytes: &Base64) -> Result<Signature, AuthError> {
    let array: [u8; 64] = bytes.to_array().ok_or(AuthError::BadSignature)?;
    Ok(Signature::from_bytes(&array))
}

/// Nonces seen per signer inside the time window, bounded in both dimensions.
#[derive(Debug, Default)]
pub struct NonceCache {
    per_node: BTreeMap<u32, VecDeque<(u64, [u8; 16])>>,
}

impl NonceCache {
    /// Records a nonce, refusing one already seen for this signer.
    ///
    /// # Errors
    /// [`AuthError::Replayed`] for a repeat or when the signer's cache is full of live entries;
    /// [`AuthError::BadSignature`] for a nonce that is not 16 bytes.
    pub fn check_and_insert(
        &mut self,
        node_id: u32,
        nonce: &[u8],
        ts: u64,
        unix_now: u64,
    ) -> Result<(), AuthError> {
        let nonce: [u8; 16] = nonce.try_into().map_err(|_| AuthError::BadSignature)?;
        if !self.per_node.contains_key(&node_id) && self.per_node.len() >= MAX_NONCE_NODES {
            self.prune(unix_now);
        }
        let seen = self.per_node.entry(node_id).or_default();
        while seen
            .front()
            .is_some_and(|(at, _)| at.abs_diff(unix_now) > AUTH_WINDOW_SECS)
        {
            seen.pop_front();
        }
        if seen.iter().any(|(_, old)| *old == nonce) || seen.len() >= MAX_NONCES_PER_NODE {
            return Err(AuthError::Replayed);
        }
        seen.push_back((ts.max(unix_now), nonce));
        Ok(())
    }

    /// Drops every entry older than the window.
    pub fn prune(&mut self, unix_now: u64) {
        self.per_node.retain(|_, seen| {
            seen.retain(|(at, _)| at.abs_diff(unix_now) <= AUTH_WINDOW_SECS);
            !seen.is_empty()
        });
    }
}
