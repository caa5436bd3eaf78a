//! Control-protocol packets between nodes: sealed, addressed to port 0, carrying a payload the
//! node does not interpret (path probes, candidate lists, refusals). The node only sends them
//! (optionally through a chosen endpoint) and surfaces authenticated ones as
//! [`NodeEvent::Control`]; their meaning belongs to the agent.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Node, NodeError, NodeEvent};
use crate::wire::addr::Addr;
use crate::wire::packet::{Flags, Packet, PacketRepr, Protocol, VERSION};

/// Largest control payload sent or surfaced, in bytes.
pub const MAX_CONTROL_PAYLOAD: usize = 1024;

/// True when `packet` is a well-formed control packet to port 0 the node should surface.
pub(super) fn is_control(packet: &[u8]) -> bool {
    let Ok(view) = Packet::new_checked(packet) else {
        return false;
    };
    view.protocol() == Protocol::Control
        && view.dst_port() == 0
        && usize::from(view.payload_len()) <= MAX_CONTROL_PAYLOAD
}

impl Node {
    /// Sends a sealed control packet to `peer`. With `via`, the frame goes to that endpoint
    /// instead of the peer's current one (a path probe), and only if the tunnel to the peer is
    /// keyed already; returns whether it was sealed and queued.
    ///
    /// # Errors
    /// [`NodeError::UnknownPeer`] when `peer` is not in the tunnel.
    pub fn send_control(
        &mut self,
        now: Instant,
        peer: Addr,
        via: Option<SocketAddr>,
        payload: &[u8],
    ) -> Result<bool, NodeError> {
        let now = self.clamp(now);
        let current = self
            .tunnel
            .endpoint(peer.node)
            .ok_or(NodeError::UnknownPeer(peer))?;
        if via.is_some() && !self.is_peer_keyed(peer) {
            return Ok(false);
        }
        let Some(packet) = self.control_packet(peer, payload) else {
            return Ok(false);
        };
        let target = via.unwrap_or(current);
        self.tunnel.set_endpoint(now, peer.node, target)?;
        let sent = self.tunnel.send(now, peer.node, &packet).is_ok();
        self.tunnel.set_endpoint(now, peer.node, current)?;
        Ok(sent)
    }

    /// Resets a stream at once (queued data is discarded); the peer sees a reset.
    pub fn abort(&mut self, now: Instant, stream: crate::transport::ConnId) {
        let now = self.clamp(now);
        self.transport.abort(now, stream);
        self.pump(now);
    }

    /// Forgets a peer: its keys, endpoint and queued packets. Returns whether it was known.
    pub fn remove_peer(&mut self, now: Instant, peer: Addr) -> bool {
        let now = self.clamp(now);
        self.tunnel.remove_peer(now, peer.node).is_some()
    }

    /// Where the tunnel currently sends `peer`'s frames.
    pub fn peer_endpoint(&self, peer: Addr) -> Option<SocketAddr> {
        self.tunnel.endpoint(peer.node)
    }

    /// Handles an authenticated control packet from `node`, received from `from`.
    pub(super) fn on_control(&mut self, from: SocketAddr, node: u32, packet: &[u8]) {
        let Ok(view) = Packet::new_checked(packet) else {
            return;
        };
        let peer = Addr::new(self.address.network, node);
        let payload = view.payload().to_vec();
        self.push_event(NodeEvent::Control {
            peer,
            from,
            payload,
        });
    }

    fn control_packet(&self, peer: Addr, payload: &[u8]) -> Option<Vec<u8>> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return None;
        }
        let repr = PacketRepr {
            version: VERSION,
            flags: Flags::EMPTY,
            protocol: Protocol::Control,
            src: self.address,
            dst: peer,
            src_port: 0,
            dst_port: 0,
            seq: 0,
            ack: 0,
            window: 0,
            payload,
        };
        let mut buf = vec![0; repr.buffer_len()];
        repr.emit(&mut buf).ok()?;
        Some(buf)
    }
}
