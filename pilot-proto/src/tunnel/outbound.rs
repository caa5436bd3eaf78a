//! The sending half of the tunnel: sealing packets into PILS, the per-peer queue of packets
//! waiting for a key, PILA frames and their retry timer, and re-keying before the nonce counter
//! runs out (`docs/design/tunnel.md#sending`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Tunnel;
use super::event::Event;
use crate::crypto::X25519Secret;
use crate::wire::tunnel::{AuthKeyExchangeRepr, FrameKind, TunnelRepr, auth_signed_message};

/// Retry intervals stop doubling after this many attempts.
const MAX_BACKOFF_DOUBLINGS: u32 = 5;

impl Tunnel {
    /// Seals `packet` under the peer's sending session, or queues it when there is none (and
    /// makes sure a key exchange is running). Re-keys when the nonce counter is used up.
    pub(super) fn seal_or_queue(&mut self, now: Instant, node: u32, packet: &[u8]) {
        if self.try_seal(node, packet) {
            return;
        }
        // A session under our current secret ran out of nonces: rotate the secret once. After
        // the rotation no session matches the new secret until the peer answers.
        let needs_rekey = self.peers.get(&node).is_some_and(|peer| {
            let ours = peer.secret.public_key();
            [&peer.current, &peer.next]
                .into_iter()
                .flatten()
                .any(|s| s.local_public == ours && s.send.is_exhausted())
        });
        if needs_rekey {
            self.start_rekey(now, node);
        } else if self
            .peers
            .get(&node)
            .is_some_and(|peer| peer.exchange.deadline.is_none())
        {
            self.start_key_exchange(now, node);
        }
        self.enqueue(node, packet);
    }

    /// Seals into a pooled buffer and queues the transmit; false when no session can seal.
    fn try_seal(&mut self, node: u32, packet: &[u8]) -> bool {
        let mut buf = self.take_buffer();
        let local_node = self.local_node;
        let Some(peer) = self.peers.get_mut(&node) else {
            self.recycle(buf);
            return false;
        };
        // Limitation: frames always go to the peer's endpoint; relaying through the beacon is
        // left to the node, which must wrap and unwrap relayed frames.
        let endpoint = peer.endpoint;
        let Some(session) = peer.sending_session() else {
            self.recycle(buf);
            return false;
        };
        let Ok(nonce) = session.send.next_nonce() else {
            self.recycle(buf);
            return false;
        };

        session
            .cipher
            .seal_frame(local_node, nonce, packet, &mut buf);
        self.transmits.push_back((endpoint, buf));
        self.stats.packets_sealed += 1;
        tracing::trace!(node, counter = nonce.counter, "sealed packet");
        true
    }

    /// Queues a packet for a peer without a usable session, dropping the oldest when full.
    fn enqueue(&mut self, node: u32, packet: &[u8]) {
        let mut buf = self.take_buffer();
        buf.extend_from_slice(packet);
        let limit = self.config.max_queued_packets;
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        peer.queue.push_back(buf);
        if peer.queue.len() > limit {
            peer.queue.pop_front();
            self.stats.queue_overflows += 1;
        }
    }

    /// Seals everything queued for `node` now that it has a session.
    pub(super) fn flush_queue(&mut self, node: u32) {
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        let queue = std::mem::take(&mut peer.queue);
        for packet in queue {
            if self.transmits.len() >= self.config.max_transmits || !self.try_seal(node, &packet) {
                self.stats.queue_overflows += 1;
            }
            self.recycle(packet);
        }
    }

    /// Queues a PILT frame (encryption off).
    pub(super) fn push_plain(&mut self, node: u32, packet: &[u8]) {
        let Some(endpoint) = self.peers.get(&node).map(|peer| peer.endpoint) else {
            return;
        };
        let mut buf = self.take_buffer();
        buf.extend_from_slice(&FrameKind::Plain.magic());
        buf.extend_from_slice(packet);
        self.transmits.push_back((endpoint, buf));
        self.stats.plaintext_sent += 1;
    }

    /// Sends a PILA now and arms the retry timer.
    pub(super) fn start_key_exchange(&mut self, now: Instant, node: u32) {
        let retry = self.config.key_exchange_retry;
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        peer.exchange.attempts = 1;
        peer.exchange.deadline = Some(now + retry);
        let endpoint = peer.endpoint;
        self.send_key_exchange(now, node, endpoint);
    }

    /// Replaces our X25519 secret for `node` because the sending nonces ran out, and announces
    /// the new key. Packets queue until the peer answers with its PILA.
    fn start_rekey(&mut self, now: Instant, node: u32) {
        let secret = X25519Secret::generate(&mut self.rng);
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        peer.secret = secret;
        self.stats.rekeys += 1;
        tracing::debug!(node, "nonce counter exhausted; re-keying");
        self.start_key_exchange(now, node);
    }

    /// Retries (or gives up on) the key exchange with `node`.
    pub(super) fn on_exchange_timeout(&mut self, now: Instant, node: u32) {
        let (retry, attempts_max) = (
            self.config.key_exchange_retry,
            self.config.key_exchange_attempts,
        );
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        if peer.is_settled() {
            peer.exchange.deadline = None;
            return;
        }
        if peer.exchange.attempts >= attempts_max {
            peer.exchange.deadline = None;
            if peer.can_send() {
                // Keyed but the peer never sent us anything: the key may well be fine.
                return;
            }
            let dropped_packets = peer.queue.len();
            let queue = std::mem::take(&mut peer.queue);
            queue.into_iter().for_each(|buf| self.recycle(buf));
            tracing::debug!(node, dropped_packets, "key exchange gave up");
            self.push_event(Event::KeyExchangeFailed {
                node,
                dropped_packets,
            });
            return;
        }

        peer.exchange.attempts += 1;
        let doublings = (peer.exchange.attempts - 1).min(MAX_BACKOFF_DOUBLINGS);
        peer.exchange.deadline = Some(now + backoff(retry, doublings));
        let endpoint = peer.endpoint;
        self.send_key_exchange(now, node, endpoint);
    }

    /// Answers with a PILA unless one went to this peer within `key_exchange_reply_interval`.
    pub(super) fn reply_key_exchange_limited(&mut self, now: Instant, node: u32, dst: SocketAddr) {
        let interval = self.config.key_exchange_reply_interval;
        let Some(peer) = self.peers.get(&node) else {
            return;
        };
        let recent = peer
            .exchange
            .last_sent
            .is_some_and(|at| now < at + interval);
        if !recent {
            self.send_key_exchange(now, node, dst);
        }
    }

    /// Queues a PILA to `dst`: our node id and X25519 key for `node`, signed by our identity.
    pub(super) fn send_key_exchange(&mut self, now: Instant, node: u32, dst: SocketAddr) {
        if self.transmits.len() >= self.config.max_transmits {
            self.stats.queue_overflows += 1;
            return;
        }
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        peer.exchange.last_sent = Some(now);
        let public_key = peer.secret.public_key();

        // signature = Ed25519(identity, "auth" ‖ BE32(local node) ‖ X25519 public key)
        let message = auth_signed_message(self.local_node, &public_key);
        let repr = TunnelRepr::AuthKeyExchange(AuthKeyExchangeRepr {
            sender: self.local_node,
            public_key,
            signing_key: self.identity.public_key_bytes(),
            signature: self.identity.sign(&message).to_bytes(),
        });
        let mut buf = self.take_buffer();
        buf.resize(repr.buffer_len(), 0);
        // The buffer was sized from `buffer_len`, so emit cannot fail.
        if repr.emit(&mut buf).is_ok() {
            self.transmits.push_back((dst, buf));
            self.stats.key_exchanges_sent += 1;
        }
    }
}

/// `retry × 2^doublings`.
fn backoff(retry: Duration, doublings: u32) -> Duration {
    retry.saturating_mul(1 << doublings)
}
