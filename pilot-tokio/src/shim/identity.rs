//! Ed25519 node identities and the v0.5 identity file format (pure encode/decode).
//!
//! File format (controlplane.md §5): JSON `{"private_key": b64(seed ‖ public), "public_key":
//! b64(public)}`; on load the public key must match the one derived from the seed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

/// A node's long-term Ed25519 key pair.
pub struct Identity {
    seed: [u8; 32],
    public: [u8; 32],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &self.public_key_b64())
            .finish()
    }
}

/// Why an identity could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Not the JSON object the format expects.
    #[error("identity file is not valid JSON with private_key and public_key")]
    NotJson,
    /// A key field is not base64 of the right length.
    #[error("identity {0} has the wrong encoding or length")]
    BadKey(&'static str),
    /// The stored public key does not belong to the private key.
    #[error("identity public_key does not match its private_key")]
    Mismatch,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct IdentityFile {
    private_key: String,
    public_key: String,
}

impl Identity {
    /// Builds the identity for a 32-byte Ed25519 seed.
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        // from_seed_unchecked only fails on a seed of the wrong length, and ours is 32 bytes.
        let public = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map(|k| {
                let mut p = [0u8; 32];
                p.copy_from_slice(k.public_key().as_ref());
                p
            })
            .unwrap_or([0u8; 32]);
        Identity { seed, public }
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The public key in standard base64, as the registry expects it.
    pub fn public_key_b64(&self) -> String {
        B64.encode(self.public)
    }

    /// Signs `msg`, returning the 64-byte signature.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        Ed25519KeyPair::from_seed_unchecked(&self.seed)
            .map(|k| k.sign(msg).as_ref().to_vec())
            .unwrap_or_default()
    }

    /// The v0.5 identity file bytes (2-space indented JSON).
    pub fn encode(&self) -> Vec<u8> {
        let mut private = self.seed.to_vec();
        private.extend_from_slice(&self.public);
        let file = IdentityFile {
            private_key: B64.encode(&private),
            public_key: B64.encode(self.public),
        };
        serde_json::to_vec_pretty(&file).unwrap_or_default()
    }

    /// Parses the v0.5 identity file bytes.
    pub fn decode(bytes: &[u8]) -> Result<Identity, IdentityError> {
        let file: IdentityFile =
            serde_json::from_slice(bytes).map_err(|_| IdentityError::NotJson)?;
        let private = B64
            .decode(&file.private_key)
            .map_err(|_| IdentityError::BadKey("private_key"))?;
        let public = B64
            .decode(&file.public_key)
            .map_err(|_| IdentityError::BadKey("public_key"))?;
        let seed: [u8; 32] = private
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or(IdentityError::BadKey("private_key"))?;
        if private.len() != 64 || public.len() != 32 {
            return Err(IdentityError::BadKey("private_key"));
        }
        let id = Identity::from_seed(seed);
        if id.public[..] != public[..] || private[32..] != public[..] {
            return Err(IdentityError::Mismatch);
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_mismatch() {
        let id = Identity::from_seed([7u8; 32]);
        let back = Identity::decode(&id.encode()).expect("round trip");
        assert_eq!(back.public_key(), id.public_key());
        let other = Identity::from_seed([8u8; 32]);
        let mut v: serde_json::Value = serde_json::from_slice(&id.encode()).expect("json");
        v["public_key"] = other.public_key_b64().into();
        let bytes = serde_json::to_vec(&v).expect("json");
        assert_eq!(
            Identity::decode(&bytes).err(),
            Some(IdentityError::Mismatch)
        );
        assert_eq!(
            Identity::decode(b"nope").err(),
            Some(IdentityError::NotJson)
        );
    }
}
