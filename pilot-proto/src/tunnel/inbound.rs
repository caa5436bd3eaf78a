//! The receiving half of the tunnel: classifying datagrams, opening PILS in place, the
//! plaintext policy for PILT, and verifying PILA/PILK key exchanges
//! (`docs/design/tunnel.md#receiving`).

use std::net::SocketAddr;
use std::time::Instant;

use ed25519_dalek::Signature;
use subtle::ConstantTimeEq as _;

use super::Tunnel;
use super::event::{DropReason, Event, Inbound};
use super::peer::{KeyStatus, RecvReject, Session, Slot};
use crate::crypto::{NonceSequence, ReplayError};
use crate::wire::tunnel::{
    AuthKeyExchangeFrame, FrameKind, KeyExchangeFrame, MAGIC_LEN, Nonce, PACKET_HEADER_LEN,
    PlainFrame, SEALED_HEADER_LEN, SealedFrame, TAG_LEN, auth_signed_message,
};

/// A drop decided while a peer was borrowed: the node the frame named, and why.
type Refusal = (Option<u32>, DropReason);

impl Tunnel {
    /// Routes a datagram to the handler for its magic.
    pub(super) fn dispatch<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &'a mut [u8],
    ) -> Inbound<'a> {
        let Some(kind) = FrameKind::classify(datagram) else {
            return Inbound::NotTunnel;
        };
        let outcome = match kind {
            FrameKind::Sealed => self.on_sealed(now, from, datagram),
            FrameKind::Plain => self.on_plain(datagram),
            FrameKind::AuthKeyExchange => self.on_auth_key_exchange(now, from, datagram),
            FrameKind::KeyExchange => self.on_key_exchange(now, from, datagram),
            FrameKind::Punch => {
                self.stats.punches_received += 1;
                Ok(Inbound::Consumed)
            }
            FrameKind::Unknown(_) => Err((None, DropReason::UnknownFrame)),
        };
        outcome.unwrap_or_else(|(node, reason)| self.dropped(from, node, reason))
    }

    /// Counts, logs and reports a dropped frame.
    fn dropped(
        &mut self,
        from: SocketAddr,
        node: Option<u32>,
        reason: DropReason,
    ) -> Inbound<'static> {
        self.stats.count_drop(reason);
        tracing::debug!(?node, ?reason, "dropped tunnel frame");
        self.push_event(Event::FrameDropped { from, node, reason });
        Inbound::Dropped(reason)
    }

    /// PILS: pick the session, replay check, open in place, mark, check the inner source.
    fn on_sealed<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &'a mut [u8],
    ) -> Result<Inbound<'a>, Refusal> {
        let frame =
            SealedFrame::new_checked(&*datagram).map_err(|_| (None, DropReason::Malformed))?;
        let (node, nonce) = (frame.sender(), frame.nonce());
        let refuse = |reason| (Some(node), reason);
        let slot = self.select_session(now, node, nonce).map_err(refuse)?;

        let sealed = &mut datagram[SEALED_HEADER_LEN..];
        let fresh = self.open(node, slot, nonce, sealed).map_err(refuse)?;
        let packet: &'a [u8] = &datagram[SEALED_HEADER_LEN..datagram.len() - TAG_LEN];
        self.after_open(node, slot);

        check_inner_source(node, packet).map_err(refuse)?;
        if fresh {
            self.roam(node, from);
        }
        self.stats.packets_opened += 1;
        Ok(Inbound::Packet {
            node,
            packet,
            encrypted: true,
        })
    }

    /// Finds the session a PILS from `node` belongs to, refusing reflections. A peer without
    /// any session is reminded of our key.
    fn select_session(
        &mut self,
        now: Instant,
        node: u32,
        nonce: Nonce,
    ) -> Result<Slot, DropReason> {
        if !self.config.encrypt {
            return Err(DropReason::EncryptionDisabled);
        }
        let peer = self.peers.get(&node).ok_or(DropReason::UnknownPeer)?;
        if peer.is_own_prefix(nonce.prefix) {
            return Err(DropReason::Reflected);
        }
        if let Some(slot) = peer.session_for(nonce.prefix) {
            return Ok(slot);
        }
        let endpoint = peer.endpoint;
        self.reply_key_exchange_limited(now, node, endpoint);
        Err(DropReason::NoSession)
    }

    /// Checks the replay window, decrypts in place and marks the counter. Returns whether the
    /// frame is the newest under its prefix.
    fn open(
        &mut self,
        node: u32,
        slot: Slot,
        nonce: Nonce,
        sealed: &mut [u8],
    ) -> Result<bool, DropReason> {
        let session = self
            .peers
            .get_mut(&node)
            .and_then(|peer| peer.session_mut(slot))
            .ok_or(DropReason::NoSession)?;
        session
            .recv
            .check(nonce.prefix, nonce.counter)
            .map_err(|reject| match reject {
                RecvReject::Replay(ReplayError::TooOld) => DropReason::TooOld,
                RecvReject::Replay(_) => DropReason::Replayed,
                RecvReject::StalePrefix => DropReason::StalePrefix,
            })?;
        session
            .cipher
            .open_in_place(nonce, sealed)
            .map_err(|_| DropReason::DecryptFailed)?;

        // Only an authenticated frame moves the window.
        let fresh = session.recv.mark(nonce.prefix, nonce.counter);
        session.confirmed = true;
        Ok(fresh)
    }

    /// A session decrypted a frame: a pending one replaces the old, and retries may stop.
    fn after_open(&mut self, node: u32, slot: Slot) {
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        if slot == Slot::Next {
            peer.promote();
        }
        if peer.is_settled() {
            peer.exchange.deadline = None;
        }
    }

    /// Moves `node`'s endpoint to `from` after fresh authenticated traffic came from there.
    fn roam(&mut self, node: u32, from: SocketAddr) {
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        if peer.endpoint == from {
            return;
        }
        let old = std::mem::replace(&mut peer.endpoint, from);
        tracing::debug!(node, "peer endpoint changed");
        self.push_event(Event::EndpointChanged {
            node,
            old,
            new: from,
        });
    }

    /// PILT: delivered unless an encrypted session with the claimed source exists.
    fn on_plain<'a>(&mut self, datagram: &'a mut [u8]) -> Result<Inbound<'a>, Refusal> {
        let frame =
            PlainFrame::new_checked(&*datagram).map_err(|_| (None, DropReason::Malformed))?;
        let node = frame.packet_src_node();
        let keyed = self.peers.get(&node).is_some_and(|peer| peer.has_session());
        if self.config.encrypt && keyed && !self.config.accept_plaintext_after_keying {
            return Err((Some(node), DropReason::PlaintextAfterKeying));
        }
        self.stats.plaintext_delivered += 1;
        let packet: &'a [u8] = &datagram[MAGIC_LEN..];
        Ok(Inbound::Packet {
            node,
            packet,
            encrypted: false,
        })
    }

    /// PILA: the claimed Ed25519 key must be the registered one and the signature must verify.
    fn on_auth_key_exchange(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<Inbound<'static>, Refusal> {
        let frame = AuthKeyExchangeFrame::new_checked(datagram)
            .map_err(|_| (None, DropReason::Malformed))?;
        let node = frame.sender();
        let refuse = |reason| (Some(node), reason);
        if !self.config.encrypt {
            return Err(refuse(DropReason::EncryptionDisabled));
        }
        let peer = self
            .peers
            .get(&node)
            .ok_or_else(|| refuse(DropReason::UnknownPeer))?;
        let expected = peer
            .signing_key
            .ok_or_else(|| refuse(DropReason::NoSigningKey))?;
        if !bool::from(expected.as_bytes().ct_eq(&frame.signing_key())) {
            return Err(refuse(DropReason::WrongSigningKey));
        }

        // Verify against the registry's key, never the one the frame carries.
        let public_key = frame.public_key();
        let message = auth_signed_message(node, &public_key);
        let signature = Signature::from_bytes(&frame.signature());
        expected
            .verify_strict(&message, &signature)
            .map_err(|_| refuse(DropReason::BadSignature))?;
        self.accept_peer_key(now, from, node, public_key)
            .map_err(refuse)
    }

    /// PILK: refused (and answered with our PILA) when the node has a registered key.
    fn on_key_exchange(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<Inbound<'static>, Refusal> {
        let frame =
            KeyExchangeFrame::new_checked(datagram).map_err(|_| (None, DropReason::Malformed))?;
        let node = frame.sender();
        let refuse = |reason| (Some(node), reason);
        if !self.config.encrypt {
            return Err(refuse(DropReason::EncryptionDisabled));
        }
        let peer = self
            .peers
            .get(&node)
            .ok_or_else(|| refuse(DropReason::UnknownPeer))?;
        if peer.signing_key.is_some() {
            let endpoint = peer.endpoint;
            self.reply_key_exchange_limited(now, node, endpoint);
            return Err(refuse(DropReason::AnonymousKeyRefused));
        }
        self.accept_peer_key(now, from, node, frame.public_key())
            .map_err(refuse)
    }

    /// Installs a session for a verified peer key unless it repeats or revives an old one.
    /// Replies with our PILA to the frame's source and flushes the peer's queue.
    fn accept_peer_key(
        &mut self,
        now: Instant,
        from: SocketAddr,
        node: u32,
        peer_public: [u8; 32],
    ) -> Result<Inbound<'static>, DropReason> {
        let prefix = self.rng.bytes::<4>();
        let nonce_limit = self.config.nonce_limit;
        let peer = self.peers.get_mut(&node).ok_or(DropReason::UnknownPeer)?;
        match peer.key_status(&peer_public) {
            KeyStatus::Repeated => {
                // Nothing is reset and the endpoint stays; the peer may have lost our key.
                let endpoint = peer.endpoint;
                self.reply_key_exchange_limited(now, node, endpoint);
                return Err(DropReason::RepeatedKeyExchange);
            }
            // Limitation: a key exchange recorded before this tunnel started was never seen,
            // so a replay of it is taken as new; the genuine peer's next exchange corrects it.
            KeyStatus::Stale => return Err(DropReason::StaleKeyExchange),
            KeyStatus::New => {}
        }

        // key = SHA-256("pilot-tunnel-v1:" ‖ X25519(our secret, peer key))
        let key = peer
            .secret
            .agree(&peer_public)
            .map_err(|_| DropReason::LowOrderKey)?;
        let local_public = peer.secret.public_key();
        let send = NonceSequence::new(prefix, nonce_limit);
        let rekeyed = peer.install(Session::new(&key, peer_public, local_public, send));

        tracing::debug!(node, rekeyed, "peer keyed");
        self.send_key_exchange(now, node, from);
        self.push_event(Event::PeerKeyed { node, rekeyed });
        self.flush_queue(node);
        Ok(Inbound::Consumed)
    }
}

/// Checks that an opened packet is at least a header and names `node` as its source.
fn check_inner_source(node: u32, packet: &[u8]) -> Result<(), DropReason> {
    if packet.len() < PACKET_HEADER_LEN {
        return Err(DropReason::Malformed);
    }
    if packet[PACKET_SRC_NODE] != node.to_be_bytes() {
        return Err(DropReason::SourceMismatch);
    }
    Ok(())
}

/// Offset of the source node id inside a marshalled packet header.
const PACKET_SRC_NODE: core::ops::Range<usize> = 6..10;
