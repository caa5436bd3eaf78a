//! Ed25519 node identities and the v0.5 identity file format (pure encode/decode).
