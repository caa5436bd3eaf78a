//! The encrypted UDP tunnel: peer table, key exchange, seal/open, replay protection.
