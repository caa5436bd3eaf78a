//! Cryptographic building blocks of the tunnel: key derivation, AES-256-GCM sealing, replay window.
