//! Webhook signature verification and signing: pure functions, no I/O, no clock.
//!
//! Owns the three signature formats the bridge accepts:
//!
//! - **Standard Webhooks** (`webhook-id`, `webhook-timestamp`, `webhook-signature`): HMAC-SHA256
//!   over `{id}.{timestamp}.{body}`, the header a space-separated list of `v1,<base64>` entries,
//!   secrets written `whsec_<base64>`. Any entry matching any active secret is accepted, which is
//!   how senders and receivers rotate keys without downtime.
//! - **Stripe** (`Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>]`): HMAC-SHA256 over
//!   `{t}.{body}`, hex encoded.
//! - **GitHub** (`X-Hub-Signature-256: sha256=<hex>`): HMAC-SHA256 over the body. GitHub signs no
//!   timestamp, so replay protection rests on the `X-GitHub-Delivery` id alone.
//!
//! Every comparison of a computed tag with a received one goes through `ring::hmac::verify`,
//! which is constant-time. The current Unix time is an argument (`now_unix`), so tests pin it.
//! Header values arrive as `http::HeaderMap`; a header given twice is refused, never guessed at.
//!
//! # Limitations
//! - Only the symmetric `v1` scheme of Standard Webhooks is verified; asymmetric `v1a` (ed25519)
//!   entries are ignored, so a sender that signs with `v1a` only is refused.

use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

#[cfg(test)]
mod tests;

/// Standard Webhooks message id header.
pub const HEADER_WEBHOOK_ID: &str = "webhook-id";
/// Standard Webhooks attempt timestamp header (integer Unix seconds).
pub const HEADER_WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Standard Webhooks signature list header.
pub const HEADER_WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// Stripe signature header.
pub const HEADER_STRIPE_SIGNATURE: &str = "stripe-signature";
/// GitHub SHA-256 signature header.
pub const HEADER_GITHUB_SIGNATURE: &str = "x-hub-signature-256";
/// GitHub delivery id header (stable across redeliveries).
pub const HEADER_GITHUB_DELIVERY: &str = "x-github-delivery";

/// Default tolerance between a signed timestamp and the local clock, in either direction.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Most signature entries read from one header; more is treated as malformed.
const MAX_SIGNATURE_ENTRIES: usize = 16;

/// Length of an HMAC-SHA256 tag in bytes.
const TAG_LEN: usize = 32;

/// One HMAC-SHA256 signing secret. Its bytes are never printed.
#[derive(Clone)]
pub struct Secret {
    key: hmac::Key,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A secret used as raw bytes, as Stripe (`whsec_...` used verbatim) and GitHub do.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        })
    }

    /// A Standard Webhooks secret: `whsec_` followed by base64 (the prefix is optional, as in the
    /// reference libraries). The decoded key must be 24 to 64 bytes, as the specification asks.
    pub fn from_standard(text: &str) -> Result<Self, SecretError> {
        let encoded = text.strip_prefix("whsec_").unwrap_or(text);
        let bytes = BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SecretError::BadLength(bytes.len()));
        }
        Self::from_bytes(&bytes)
    }

    /// A fresh random 32-byte Standard Webhooks secret and its `whsec_` text, which is the
    /// only copy the caller gets (store it, show it to the user once, never log it).
    pub fn generate() -> Result<(Self, String), SecretError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SecretError::Rng)?;
        let text = format!("whsec_{}", BASE64.encode(bytes));
        Ok((Self::from_bytes(&bytes)?, text))
    }

    fn tag(&self, parts: &[&[u8]]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in parts {
            ctx.update(part);
        }
        ctx.sign()
    }

    /// Constant-time check of `tag` against the HMAC of `message`.
    fn verifies(&self, message: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.key, message, tag).is_ok()
    }
}

/// Why a secret could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret has no bytes.
    #[error("secret is empty")]
    Empty,
    /// The text after `whsec_` is not standard base64.
    #[error("secret is not valid base64 after the whsec_ prefix")]
    NotBase64,
    /// The decoded key is shorter than 24 or longer than 64 bytes.
    #[error("secret decodes to {0} bytes; 24 to 64 are allowed")]
    BadLength(usize),
    /// The operating system's random generator failed.
    #[error("no randomness available to generate a secret")]
    Rng,
}

/// Why a request failed verification. [`VerifyError::is_malformed`] separates the 400 cases
/// (the request is not well-formed) from the 401 cases (it is well-formed but not authentic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header that must appear once appears more than once.
    #[error("header {0} given more than once")]
    DuplicateHeader(&'static str),
    /// A header is present but cannot be parsed.
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    /// The signed timestamp is older than the tolerance.
    #[error("timestamp too old ({0} s)")]
    Stale(u64),
    /// The signed timestamp is further in the future than the tolerance.
    #[error("timestamp in the future ({0} s)")]
    Future(u64),
    /// No signature entry matches any active secret.
    #[error("signature does not match")]
    BadSignature,
}

impl VerifyError {
    /// True for errors about the shape of the request (answer 400), false for authenticity
    /// failures (answer 401).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            Self::MissingHeader(_) | Self::DuplicateHeader(_) | Self::MalformedHeader(_)
        )
    }
}

/// What a successful verification learned about the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The provider's delivery id, stable across its retries, if the format carries one.
    pub delivery_id: Option<String>,
    /// The signed timestamp, if the format signs one.
    pub timestamp: Option<u64>,
}

/// Checks that `timestamp` lies within `tolerance` of `now_unix`, in either direction.
pub fn check_timestamp(
    timestamp: u64,
    now_unix: u64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let tolerance = tolerance.as_secs();
    if timestamp > now_unix {
        let ahead = timestamp - now_unix;
        return if ahead > tolerance {
            Err(VerifyError::Future(ahead))
        } else {
            Ok(())
        };
    }
    let age = now_unix - timestamp;
    if age > tolerance {
        Err(VerifyError::Stale(age))
    } else {
        Ok(())
    }
}

/// Reads a header that must appear at most once, as UTF-8 text.
fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<Option<&'h str>, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(VerifyError::DuplicateHeader(name));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| VerifyError::MalformedHeader(name))
}

/// Reads a header that must appear exactly once.
fn required_header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, VerifyError> {
    single_header(headers, name)?.ok_or(VerifyError::MissingHeader(name))
}

/// Parses a decimal Unix timestamp of at most 19 digits (no sign, no spaces).
fn parse_unix(text: &str, header: &'static str) -> Result<u64, VerifyError> {
    let digits_only =
        !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only {
        return Err(VerifyError::MalformedHeader(header));
    }
    text.parse()
        .map_err(|_| VerifyError::MalformedHeader(header))
}

/// Verifies a Standard Webhooks request from its three header values.
///
/// Order: shape of id and timestamp, then the timestamp tolerance, then the signatures. A
/// request with at least one well-formed `v1` entry matching any secret is accepted; entries of
/// other versions are skipped.
pub fn verify_standard_parts(
    secrets: &[Secret],
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now_unix: u64,
    tolerance: Duration,
) -> Result<Verified, VerifyError> {
    if id.is_empty() || id.len() > 256 || id.contains('.') {
        return Err(VerifyError::MalformedHeader(HEADER_WEBHOOK_ID));
    }
    let ts = parse_unix(timestamp, HEADER_WEBHOOK_TIMESTAMP)?;
    check_timestamp(ts, now_unix, tolerance)?;

    let tags = standard_tags(signatures)?;
    let message = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
    let matched = tags
        .iter()
        .any(|tag| secrets.iter().any(|s| s.verifies(&message, tag)));
    if !matched {
        return Err(VerifyError::BadSignature);
    }
    Ok(Verified {
        delivery_id: Some(id.to_owned()),
        timestamp: Some(ts),
    })
}

/// Decodes the `v1` entries of a `webhook-signature` value.
fn standard_tags(signatures: &str) -> Result<Vec<Vec<u8>>, VerifyError> {
    let entries: Vec<&str> = signatures.split(' ').filter(|e| !e.is_empty()).collect();
    if entries.is_empty() || entries.len() > MAX_SIGNATURE_ENTRIES {
        return Err(VerifyError::MalformedHeader(HEADER_WEBHOOK_SIGNATURE));
    }
    let mut tags = Vec::new();
    for entry in entries {
        let Some((version, value)) = entry.split_once(',') else {
            return Err(VerifyError::MalformedHeader(HEADER_WEBHOOK_SIGNATURE));
        };
        // Limitation: `v1a` (ed25519) and unknown versions are skipped, not verified.
        if version != "v1" {
            continue;
        }
        tags.extend(BASE64.decode(value).ok().filter(|tag| tag.len() == TAG_LEN));
    }
    Ok(tags)
}

/// Verifies a Standard Webhooks request from its headers.
pub fn verify_standard(
    secrets: &[Secret],
    headers: &HeaderMap,
    body: &[u8],
    now_unix: u64,
    tolerance: Duration,
) -> Result<Verified, VerifyError> {
    let id = required_header(headers, HEADER_WEBHOOK_ID)?;
    let timestamp = required_header(headers, HEADER_WEBHOOK_TIMESTAMP)?;
    let signatures = required_header(headers, HEADER_WEBHOOK_SIGNATURE)?;
    verify_standard_parts(
        secrets, id, timestamp, signatures, body, now_unix, tolerance,
    )
}

/// Verifies a Stripe `Stripe-Signature` value. The delivery id is the event's top-level `"id"`
/// in the JSON body when there is one (Stripe resends the same event id).
pub fn verify_stripe_header(
    secrets: &[Secret],
    header: &str,
    body: &[u8],
    now_unix: u64,
    tolerance: Duration,
) -> Result<Verified, VerifyError> {
    let (timestamp, tags) = parse_stripe(header)?;
    let ts = parse_unix(timestamp, HEADER_STRIPE_SIGNATURE)?;
    check_timestamp(ts, now_unix, tolerance)?;

    let message = [timestamp.as_bytes(), b".", body].concat();
    let matched = tags
        .iter()
        .any(|tag| secrets.iter().any(|s| s.verifies(&message, tag)));
    if !matched {
        return Err(VerifyError::BadSignature);
    }
    Ok(Verified {
        delivery_id: json_event_id(body),
        timestamp: Some(ts),
    })
}

/// Splits `t=...,v1=...,v1=...` into the timestamp text and the decoded `v1` tags.
fn parse_stripe(header: &str) -> Result<(&str, Vec<Vec<u8>>), VerifyError> {
    let malformed = VerifyError::MalformedHeader(HEADER_STRIPE_SIGNATURE);
    let mut timestamp = None;
    let mut tags = Vec::new();
    for (count, item) in header.split(',').enumerate() {
        if count > MAX_SIGNATURE_ENTRIES {
            return Err(malformed);
        }
        let Some((key, value)) = item.trim().split_once('=') else {
            return Err(malformed);
        };
        match key {
            "t" if timestamp.is_some() => return Err(malformed),
            "t" => timestamp = Some(value),
            "v1" => tags.extend(hex::decode(value).ok().filter(|t| t.len() == TAG_LEN)),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(malformed)?;
    Ok((timestamp, tags))
}

/// Verifies a Stripe request from its headers.
pub fn verify_stripe(
    secrets: &[Secret],
    headers: &HeaderMap,
    body: &[u8],
    now_unix: u64,
    tolerance: Duration,
) -> Result<Verified, VerifyError> {
    let header = required_header(headers, HEADER_STRIPE_SIGNATURE)?;
    verify_stripe_header(secrets, header, body, now_unix, tolerance)
}

/// Verifies a GitHub `X-Hub-Signature-256` value over the raw body.
pub fn verify_github_header(
    secrets: &[Secret],
    header: &str,
    body: &[u8],
) -> Result<(), VerifyError> {
    let malformed = VerifyError::MalformedHeader(HEADER_GITHUB_SIGNATURE);
    let hex_tag = header
        .strip_prefix("sha256=")
        .ok_or_else(|| malformed.clone())?;
    let tag = hex::decode(hex_tag).map_err(|_| malformed.clone())?;
    if tag.len() != TAG_LEN {
        return Err(malformed);
    }
    if secrets.iter().any(|s| s.verifies(body, &tag)) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// Verifies a GitHub request from its headers; `X-GitHub-Delivery` is required because it is
/// the only replay protection GitHub's format offers.
pub fn verify_github(
    secrets: &[Secret],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Verified, VerifyError> {
    let header = required_header(headers, HEADER_GITHUB_SIGNATURE)?;
    let delivery = required_header(headers, HEADER_GITHUB_DELIVERY)?;
    if delivery.is_empty() || delivery.len() > 256 {
        return Err(VerifyError::MalformedHeader(HEADER_GITHUB_DELIVERY));
    }
    verify_github_header(secrets, header, body)?;
    Ok(Verified {
        delivery_id: Some(delivery.to_owned()),
        timestamp: None,
    })
}

/// The top-level `"id"` string of a JSON object body, if any (bounded to 256 bytes).
fn json_event_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct WithId {
        id: Option<String>,
    }
    let parsed: WithId = serde_json::from_slice(body).ok()?;
    parsed.id.filter(|id| !id.is_empty() && id.len() <= 256)
}

/// Signs like a Standard Webhooks sender: returns one `v1,<base64>` entry.
pub fn sign_standard(secret: &Secret, id: &str, timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let tag = secret.tag(&[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", BASE64.encode(tag.as_ref()))
}

/// Signs like Stripe: returns a full `Stripe-Signature` value `t=<ts>,v1=<hex>`.
pub fn sign_stripe(secret: &Secret, timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let tag = secret.tag(&[ts.as_bytes(), b".", body]);
    format!("t={ts},v1={}", hex::encode(tag.as_ref()))
}

/// Signs like GitHub: returns a full `X-Hub-Signature-256` value `sha256=<hex>`.
pub fn sign_github(secret: &Secret, body: &[u8]) -> String {
    let tag = secret.tag(&[body]);
    format!("sha256={}", hex::encode(tag.as_ref()))
}
