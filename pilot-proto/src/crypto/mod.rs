//! Cryptographic building blocks of the tunnel: X25519 agreement and the v0.5 key derivation
//! ([`keys`]), AES-256-GCM sealing with the v0.5 nonce layout ([`seal`]) and the 256-wide replay
//! window ([`replay`]). See `docs/design/tunnel.md#keys`.
//!
//! Nothing here reads the OS: secrets are drawn from the caller's seeded [`crate::rng::Rng`].
//! Key material lives in types that zeroize on drop and print no bytes in `Debug`.
//!
//! # Limitations
//!
//! - ring's expanded AES key schedule inside `LessSafeKey` and the intermediate SHA-256 state of
//!   the key derivation are not zeroized when dropped; ring offers no way to do so. Only the
//!   32-byte keys and secrets this module holds are wiped.

pub mod keys;
pub mod replay;
pub mod seal;

pub use keys::{KeyAgreementError, TunnelKey, X25519Secret};
pub use replay::{ReplayError, ReplayWindow};
pub use seal::{NonceExhausted, NonceSequence, OpenError, SessionCipher};
