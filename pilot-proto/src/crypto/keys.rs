//! X25519 key agreement and the v0.5 tunnel key derivation
//! (`docs/design/tunnel.md#key-derivation`).
//!
//! Owns the per-peer X25519 secret and the derived 32-byte AES key. Both zeroize on drop and
//! never print their bytes.

use ring::digest;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::rng::Rng;

/// The label v0.5 hashes in front of the X25519 shared secret.
pub const TUNNEL_KEY_LABEL: &[u8; 16] = b"pilot-tunnel-v1:";

/// Why an X25519 agreement produced no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyAgreementError {
    /// The peer's public key is of low order, so the shared secret is all zeros (v0.5 drops
    /// such exchanges too).
    #[error("peer public key is of low order")]
    LowOrderPoint,
}

/// An X25519 secret with its public key. Zeroized on drop.
pub struct X25519Secret {
    secret: StaticSecret,
    public: [u8; 32],
}

impl X25519Secret {
    /// Draws a fresh secret from the seeded generator.
    pub fn generate(rng: &mut Rng) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill(&mut bytes[..]);
        Self::from_bytes(*bytes)
    }

    /// Loads a secret from its 32 bytes (for test vectors; production draws from the RNG).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret).to_bytes();
        Self { secret, public }
    }

    /// The public key sent in PILA/PILK frames.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// Agrees on the tunnel key with a peer's public key.
    ///
    /// # Errors
    /// [`KeyAgreementError::LowOrderPoint`] when the shared secret is all zeros.
    pub fn agree(&self, peer_public: &[u8; 32]) -> Result<TunnelKey, KeyAgreementError> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*peer_public));
        if !shared.was_contributory() {
            return Err(KeyAgreementError::LowOrderPoint);
        }
        Ok(TunnelKey::derive(shared.as_bytes()))
    }
}

impl std::fmt::Debug for X25519Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X25519Secret")
            .field("public", &Hex(&self.public))
            .finish_non_exhaustive()
    }
}

/// The AES-256-GCM key both directions of a v0.5 tunnel use. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TunnelKey([u8; 32]);

impl TunnelKey {
    /// `key = SHA-256("pilot-tunnel-v1:" ‖ X25519(our_secret, peer_public))`.
    pub fn derive(shared_secret: &[u8; 32]) -> Self {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(TUNNEL_KEY_LABEL);
        context.update(shared_secret);
        let digest = context.finish();

        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        Self(key)
    }

    /// Wraps raw key bytes (for test vectors and captured keys).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes. Handle with care: never log them.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for TunnelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TunnelKey(..)")
    }
}

/// Lower-case hex for public values in `Debug` output.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl std::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(text: &str) -> [u8; 32] {
        hex::decode(text).unwrap().try_into().unwrap()
    }

    // RFC 7748 §6.1 keys, and the derived tunnel key from dataplane.md §9.2.
    const ALICE_SECRET: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const BOB_PUBLIC: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
    const TUNNEL_KEY: &str = "7fba3471bc8efe5a218c59651ad860926646b44c842bb2747ad11d976d60c50e";

    #[test]
    fn rfc7748_agreement_gives_spec_tunnel_key() {
        let alice = X25519Secret::from_bytes(array(ALICE_SECRET));
        assert_eq!(
            hex::encode(alice.public_key()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let key = alice.agree(&array(BOB_PUBLIC)).unwrap();
        assert_eq!(key.as_bytes(), &array(TUNNEL_KEY));
    }

    #[test]
    fn low_order_peer_key_is_refused() {
        let alice = X25519Secret::from_bytes(array(ALICE_SECRET));
        assert_eq!(
            alice.agree(&[0u8; 32]).err(),
            Some(KeyAgreementError::LowOrderPoint)
        );
    }

    #[test]
    fn debug_shows_no_secret_bytes() {
        let alice = X25519Secret::from_bytes(array(ALICE_SECRET));
        let text = format!("{alice:?} {:?}", TunnelKey::from_bytes(array(TUNNEL_KEY)));
        assert!(!text.contains("77076d0a"), "{text}");
        assert!(!text.contains("7fba3471"), "{text}");
        assert!(text.contains("8520f009"), "{text}");
    }

    #[test]
    fn seeded_generation_is_deterministic() {
        let one = X25519Secret::generate(&mut Rng::from_seed([3; 32]));
        let two = X25519Secret::generate(&mut Rng::from_seed([3; 32]));
        assert_eq!(one.public_key(), two.public_key());
    }
}
