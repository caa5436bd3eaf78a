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

    /// Whether a frame from `peer` decrypted under the current session (so the peer holds our
    /// key and our frames will open there).
    pub fn is_peer_confirmed(&self, peer: Addr) -> bool {
        self.tunnel.peer_state(peer.node) == Some(crate::tunnel::PeerState::Confirmed)
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

#[cfg(test)]
mod tests {
    // The test takes one real instant as the epoch of its virtual clock.
    #![allow(clippy::disallowed_methods)]

    use super::*;
    use crate::identity::Identity;
    use crate::node::NodeConfig;

    const A: Addr = Addr::new(0, 10);
    const B: Addr = Addr::new(0, 20);

    /// Delivers every queued datagram from `from` (at `from_addr`) to `to`; returns what the
    /// receiving node reported as authenticated.
    fn deliver(
        now: Instant,
        from: &mut Node,
        from_addr: SocketAddr,
        to: &mut Node,
    ) -> Vec<Option<u32>> {
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        while let Some(transmit) = from.poll_transmit(now, &mut buf) {
            seen.push(to.handle_datagram(now, from_addr, &mut buf[..transmit.len]));
        }
        seen
    }

    #[test]
    fn control_packets_go_via_the_chosen_endpoint_and_authenticate() {
        let now = Instant::now();
        let (ida, idb) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32]));
        let (ka, kb) = (ida.verifying_key(), idb.verifying_key());
        let ea: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        let eb: SocketAddr = "127.0.0.1:4002".parse().unwrap();
        let mut a = Node::new(NodeConfig::default(), ida, A, [3; 32], now);
        let mut b = Node::new(NodeConfig::default(), idb, B, [4; 32], now);
        a.add_peer(now, B, eb, Some(kb)).unwrap();
        b.add_peer(now, A, ea, Some(ka)).unwrap();
        for _ in 0..3 {
            deliver(now, &mut a, ea, &mut b);
            deliver(now, &mut b, eb, &mut a);
        }
        assert!(a.is_peer_keyed(B) && b.is_peer_keyed(A));

        let other: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(a.send_control(now, B, Some(other), b"hello"), Ok(true));
        let mut buf = Vec::new();
        let transmit = a.poll_transmit(now, &mut buf).unwrap();
        assert_eq!(transmit.dst, other, "the probe goes where it was aimed");
        assert_eq!(
            a.peer_endpoint(B),
            Some(eb),
            "the peer's endpoint is unchanged"
        );

        let seen = b.handle_datagram(now, other, &mut buf[..transmit.len]);
        assert_eq!(
            seen,
            Some(A.node),
            "a sealed frame authenticates its sender"
        );
        let event =
            std::iter::from_fn(|| b.poll_event()).find(|e| matches!(e, NodeEvent::Control { .. }));
        let expected = NodeEvent::Control {
            peer: A,
            from: other,
            payload: b"hello".to_vec(),
        };
        assert_eq!(event, Some(expected));
        assert!(b.is_peer_confirmed(A));
    }

    #[test]
    fn probes_to_unkeyed_peers_and_oversized_payloads_are_not_sent() {
        let now = Instant::now();
        let mut a = Node::new(
            NodeConfig::default(),
            Identity::from_seed(&[1; 32]),
            A,
            [3; 32],
            now,
        );
        let eb: SocketAddr = "127.0.0.1:4002".parse().unwrap();
        a.add_peer(now, B, eb, None).unwrap();
        assert_eq!(a.send_control(now, B, Some(eb), b"x"), Ok(false));
        let big = vec![0; MAX_CONTROL_PAYLOAD + 1];
        assert_eq!(a.send_control(now, B, None, &big), Ok(false));
        let unknown = Addr::new(0, 99);
        assert_eq!(
            a.send_control(now, unknown, None, b"x"),
            Err(NodeError::UnknownPeer(unknown))
        );
    }
}
