//! Trust messages over their own streams to port 444, as v0.5 sends them: one JSON object per
//! stream, closed after writing. Outbound messages whose stream cannot be opened fall back to
//! the registry relay (`TrustStore::handle_direct_failure`); inbound streams are read up to
//! one message and handed to the trust store with the tunnel peer they came from.
//!
//! A revocation needs the tunnel it ends (and has no relay form): to a peer without a keyed
//! tunnel the agent dials first and sends it when the tunnel is up; the tunnel is dropped only
//! once the revoke's stream has ended (delivered, refused or timed out).

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::debug;

use super::Agent;
use crate::node::NodeEvent;
use crate::transport::ConnId;
use crate::trust::{Arrival, TRUST_PORT};
use crate::wire::addr::{Addr, AddrPort};
use crate::wire::trust::{HandshakeType, TrustMessage};

/// Largest trust message read from a stream (v0.5: one segment, at most 4096 bytes).
const MAX_MESSAGE: usize = 4096;

/// Trust streams open at once at most, each way.
const MAX_STREAMS: usize = 64;

/// Port-444 streams the agent owns.
#[derive(Debug, Default)]
pub(super) struct Handshakes {
    /// Our messages: the peer, and the message until it is written.
    outbound: BTreeMap<ConnId, (u32, TrustMessage)>,
    /// Streams from peers: the sender and the bytes so far.
    inbound: BTreeMap<ConnId, (u32, Vec<u8>)>,
    /// Written revokes: when the stream ends, the peer's tunnel is dropped.
    drop_after: BTreeMap<ConnId, u32>,
    /// Revokes waiting for a tunnel to their peer (dialled for them).
    awaiting_tunnel: BTreeMap<u32, TrustMessage>,
}

impl Agent {
    /// Opens a stream to `peer`:444 for `message`, or relays it through the registry when
    /// there is no keyed tunnel to the peer.
    pub(super) fn send_trust_direct(&mut self, now: Instant, peer: u32, message: TrustMessage) {
        let Some(node) = &mut self.node else { return };
        let addr = Addr::new(node.address().network, peer);
        let room = self.handshakes.outbound.len() < MAX_STREAMS;
        let opened = room && node.is_peer_keyed(addr);
        let keyed = node.is_peer_keyed(addr);
        match opened.then(|| node.connect(now, AddrPort::new(addr, TRUST_PORT))) {
            Some(Ok(stream)) => {
                self.handshakes.outbound.insert(stream, (peer, message));
            }
            _ if !keyed && message.kind == HandshakeType::Revoke => {
                self.dial_for_revoke(now, peer, message);
            }
            _ => self.trust.handle_direct_failure(peer, &message),
        }
    }

    /// Dials `peer` so that its revoke can go out when the tunnel is up.
    fn dial_for_revoke(&mut self, now: Instant, peer: u32, message: TrustMessage) {
        if self.handshakes.awaiting_tunnel.len() >= MAX_STREAMS {
            return debug!(peer, "too many revokes waiting for a tunnel; not delivered");
        }
        match self.start_dial(now, peer) {
            Ok(()) => drop(self.handshakes.awaiting_tunnel.insert(peer, message)),
            Err(error) => debug!(peer, %error, "revoke not delivered: no dial"),
        }
    }

    /// The tunnel to `peer` is up: a revoke waiting for it goes out now.
    pub(super) fn send_awaiting_revoke(&mut self, now: Instant, peer: u32) {
        if let Some(message) = self.handshakes.awaiting_tunnel.remove(&peer) {
            self.send_trust_direct(now, peer, message);
        }
    }

    /// `peer` cannot be reached: a revoke waiting for it is given up.
    pub(super) fn forget_awaiting_revoke(&mut self, peer: u32) {
        if self.handshakes.awaiting_tunnel.remove(&peer).is_some() {
            debug!(peer, "revoke not delivered: peer unreachable");
        }
    }

    /// Takes the node events of trust streams; returns the event back when it is not one.
    pub(super) fn trust_stream_event(
        &mut self,
        now: Instant,
        event: NodeEvent,
    ) -> Option<NodeEvent> {
        match event {
            NodeEvent::Incoming {
                stream,
                port,
                remote,
            } if port == TRUST_PORT => {
                self.accept_trust_stream(now, stream, remote.addr.node);
                None
            }
            NodeEvent::Connected { stream } if self.handshakes.outbound.contains_key(&stream) => {
                self.write_trust_message(now, stream);
                None
            }
            NodeEvent::Readable { stream } if self.handshakes.inbound.contains_key(&stream) => {
                self.read_trust_message(now, stream);
                None
            }
            NodeEvent::Writable { stream } if self.handshakes.outbound.contains_key(&stream) => {
                None
            }
            NodeEvent::Closed { stream, .. } if self.is_trust_stream(stream) => {
                self.trust_stream_closed(now, stream);
                None
            }
            other => Some(other),
        }
    }

    /// Listens on the trust port once the node exists.
    pub(super) fn listen_trust(&mut self) {
        if let Some(node) = &mut self.node
            && let Err(error) = node.listen(TRUST_PORT)
        {
            debug!(%error, "trust port unavailable");
        }
    }

    fn is_trust_stream(&self, stream: ConnId) -> bool {
        self.handshakes.outbound.contains_key(&stream)
            || self.handshakes.inbound.contains_key(&stream)
            || self.handshakes.drop_after.contains_key(&stream)
    }

    /// True when a revoke to `peer` is still on its way: its tunnel must stay up until then.
    pub(super) fn revoke_in_flight(&self, peer: u32) -> bool {
        let h = &self.handshakes;
        h.awaiting_tunnel.contains_key(&peer)
            || h.drop_after.values().any(|p| *p == peer)
            || h.outbound
                .values()
                .any(|(p, m)| *p == peer && m.kind == HandshakeType::Revoke)
    }

    fn accept_trust_stream(&mut self, now: Instant, stream: ConnId, peer: u32) {
        if self.handshakes.inbound.len() >= MAX_STREAMS {
            if let Some(node) = &mut self.node {
                node.abort(now, stream);
            }
            return;
        }
        self.handshakes.inbound.insert(stream, (peer, Vec::new()));
    }

    fn write_trust_message(&mut self, now: Instant, stream: ConnId) {
        let (Some(node), Some((peer, message))) =
            (&mut self.node, self.handshakes.outbound.get(&stream))
        else {
            return;
        };
        let bytes = message.to_json();
        let written = node
            .send(now, stream, &bytes)
            .is_ok_and(|n| n == bytes.len());
        let (peer, message) = (*peer, message.clone());
        node.close(now, stream);
        self.handshakes.outbound.remove(&stream);
        if message.kind == HandshakeType::Revoke {
            self.handshakes.drop_after.insert(stream, peer);
        }
        if !written {
            self.trust.handle_direct_failure(peer, &message);
        }
    }

    fn read_trust_message(&mut self, now: Instant, stream: ConnId) {
        let (Some(node), Some((peer, buf))) =
            (&mut self.node, self.handshakes.inbound.get_mut(&stream))
        else {
            return;
        };
        let mut chunk = [0u8; 1024];
        while let Ok(n) = node.recv(stream, &mut chunk) {
            if n == 0 || buf.len() + n > MAX_MESSAGE {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let Ok(message) = TrustMessage::parse(buf) else {
            return;
        };
        let peer = *peer;
        node.close(now, stream);
        self.handshakes.inbound.remove(&stream);
        self.deliver_trust_message(now, peer, &message);
    }

    fn deliver_trust_message(&mut self, now: Instant, peer: u32, message: &TrustMessage) {
        let receiver = self.reg.registered.map_or(0, |(a, _)| a.node);
        let registry_key = self.peers.get(&peer).and_then(|e| e.key);
        let arrival = Arrival {
            receiver,
            tunnel_peer: Some(peer),
            registry_key: registry_key.as_ref(),
            unix_now: self.unix_now(now),
        };
        self.trust.handle_message(message, &arrival);
    }

    /// A trust stream ended: an outbound one that never got written falls back to the relay;
    /// a revoke's stream, written or not, releases the tunnel it kept up.
    fn trust_stream_closed(&mut self, now: Instant, stream: ConnId) {
        self.handshakes.inbound.remove(&stream);
        let mut revoked = self.handshakes.drop_after.remove(&stream);
        if let Some((peer, message)) = self.handshakes.outbound.remove(&stream) {
            if message.kind == HandshakeType::Revoke {
                revoked = Some(peer);
            }
            self.trust.handle_direct_failure(peer, &message);
        }
        if let Some(peer) = revoked.filter(|p| !self.revoke_in_flight(*p)) {
            self.drop_peer(now, peer);
        }
    }
}
