//! Tunnel configuration: policy switches and the bounds on everything a peer can make grow.

use std::time::Duration;

/// How a [`super::Tunnel`] behaves. Start from `TunnelConfig::default()` and change fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunnelConfig {
    /// Seal packets and run key exchanges (v0.5 `-encrypt`, default on). Off: packets travel as
    /// PILT and PILS/PILA/PILK are dropped.
    pub encrypt: bool,
    /// Compatibility switch, off by default: accept a PILT claiming to come from a node with
    /// which an encrypted session exists. v0.5 always accepts plaintext, which lets anyone
    /// inject packets in a peer's name; only turn this on for peers that switch encryption off
    /// while a session is still installed.
    pub accept_plaintext_after_keying: bool,
    /// First key-exchange retry interval; doubled after every unanswered attempt.
    pub key_exchange_retry: Duration,
    /// Key-exchange frames sent before giving up on a peer (and dropping its queued packets).
    pub key_exchange_attempts: u32,
    /// Least time between two PILA answers to repeated or refused exchanges from one peer.
    pub key_exchange_reply_interval: Duration,
    /// Most peers the table holds.
    pub max_peers: usize,
    /// Most packets queued per peer while it has no key (the oldest is dropped beyond this).
    pub max_queued_packets: usize,
    /// Most frames waiting in `poll_transmit`'s queue.
    pub max_transmits: usize,
    /// Most events waiting in `poll_event`'s queue (more are counted and discarded).
    pub max_events: usize,
    /// Last nonce counter a sending session may use before it re-keys. The default is
    /// `u64::MAX`; tests lower it to exercise re-keying.
    pub nonce_limit: u64,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        Self {
            encrypt: true,
            accept_plaintext_after_keying: false,
            key_exchange_retry: Duration::from_secs(1),
            key_exchange_attempts: 6,
            key_exchange_reply_interval: Duration::from_millis(500),
            max_peers: 4096,
            max_queued_packets: 64,
            max_transmits: 4096,
            max_events: 1024,
            nonce_limit: u64::MAX,
        }
    }
}
