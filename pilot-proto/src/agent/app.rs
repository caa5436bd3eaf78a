//! Application commands (the same set the node exposes) and the node's events: the ones the
//! agent acts on itself (unknown peers, control packets, roaming, keyed tunnels) and the trust
//! admission every inbound connection and datagram passes before the application sees it.

use std::time::Instant;

use super::signal::Signal;
use super::{Agent, AgentError, AgentEvent, Dial, DialId};
use crate::node::{BrokerClient, Node, NodeEvent};
use crate::pubsub::log::{LogRecord, Recovery};
use crate::pubsub::{Seq, Topic};
use crate::transport::ConnId;
use crate::wire::addr::AddrPort;

impl Agent {
    /// Listens for streams on `port`.
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`] or the node's refusal.
    pub fn listen(&mut self, port: u16) -> Result<(), AgentError> {
        Ok(self.node_mut()?.listen(port)?)
    }

    /// Stops listening on `port`.
    pub fn unlisten(&mut self, port: u16) {
        if let Some(node) = &mut self.node {
            node.unlisten(port);
        }
    }

    /// Opens a stream to `remote`. A peer without a tunnel is resolved first and the stream
    /// opens once the tunnel is keyed ([`Dial::Pending`], answered by `DialReady` or
    /// `DialFailed`).
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`], [`AgentError::TooManyPeers`] or the node's refusal.
    pub fn connect(&mut self, now: Instant, remote: AddrPort) -> Result<Dial, AgentError> {
        let now = self.clamp(now);
        let node = self.node.as_mut().ok_or(AgentError::NotRegistered)?;
        let own = node.address().node == remote.addr.node;
        let known = self
            .peers
            .get(&remote.addr.node)
            .is_some_and(|e| e.in_tunnel);
        if own || known || remote.addr.is_broadcast() {
            let stream = node.connect(now, remote)?;
            if let Some(entry) = self.peers.get_mut(&remote.addr.node)
                && entry.route == super::PeerRoute::None
            {
                // A path that gave up earlier is tried again for the new stream.
                entry.path.start(now);
            }
            self.process(now);
            return Ok(Dial::Ready(stream));
        }
        self.start_dial(now, remote.addr.node)?;
        let dial = DialId(self.next_dial);
        self.next_dial += 1;
        if let Some(entry) = self.peers.get_mut(&remote.addr.node) {
            entry.dials.push((dial, remote.port));
        }
        self.process(now);
        Ok(Dial::Pending(dial))
    }

    /// Queues bytes on a stream; returns how many were accepted.
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`] or the node's error.
    pub fn send(&mut self, now: Instant, stream: ConnId, data: &[u8]) -> Result<usize, AgentError> {
        let now = self.clamp(now);
        let accepted = self.node_mut()?.send(now, stream, data)?;
        self.process(now);
        Ok(accepted)
    }

    /// Reads received bytes from a stream (see `Node::recv`).
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`] or the node's error.
    pub fn recv(&mut self, stream: ConnId, buf: &mut [u8]) -> Result<usize, AgentError> {
        Ok(self.node_mut()?.recv(stream, buf)?)
    }

    /// Closes a stream gracefully.
    pub fn close(&mut self, now: Instant, stream: ConnId) {
        let now = self.clamp(now);
        if let Some(node) = &mut self.node {
            node.close(now, stream);
        }
        self.process(now);
    }

    /// Switches Nagle coalescing off (`true`) or on for a stream.
    pub fn set_nodelay(&mut self, stream: ConnId, nodelay: bool) {
        if let Some(node) = &mut self.node {
            node.set_nodelay(stream, nodelay);
        }
    }

    /// Sends one datagram. To a peer without a tunnel it is queued (a few per peer) while the
    /// peer is resolved, and dropped if that fails.
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`], [`AgentError::TooManyPeers`] or the node's refusal.
    pub fn send_datagram(
        &mut self,
        now: Instant,
        src_port: u16,
        dst: AddrPort,
        data: &[u8],
    ) -> Result<(), AgentError> {
        let now = self.clamp(now);
        let node = self.node.as_mut().ok_or(AgentError::NotRegistered)?;
        let known = self.peers.get(&dst.addr.node).is_some_and(|e| e.in_tunnel);
        if known || node.address().node == dst.addr.node || dst.addr.is_broadcast() {
            node.send_datagram(now, src_port, dst, data)?;
        } else {
            self.start_dial(now, dst.addr.node)?;
            let limit = self.config.max_queued_datagrams;
            if let Some(entry) = self.peers.get_mut(&dst.addr.node)
                && entry.datagrams.len() < limit
            {
                entry
                    .datagrams
                    .push_back((src_port, dst.port, data.to_vec()));
            }
        }
        self.process(now);
        Ok(())
    }

    /// Publishes an event from the node itself to its own broker.
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`] or the node's refusal.
    pub fn publish_local(
        &mut self,
        now: Instant,
        topic: &Topic,
        payload: &[u8],
    ) -> Result<Seq, AgentError> {
        let now = self.clamp(now);
        let seq = self.node_mut()?.publish_local(now, topic, payload)?;
        self.process(now);
        Ok(seq)
    }

    /// Connects an in-process client to this node's own broker (see `Node::open_broker_client`).
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`] or the node's refusal.
    pub fn open_broker_client(&mut self, now: Instant) -> Result<BrokerClient, AgentError> {
        let now = self.clamp(now);
        let client = self.node_mut()?.open_broker_client(now)?;
        self.process(now);
        Ok(client)
    }

    /// Feeds client-protocol bytes to the own broker (see `Node::broker_client_send`).
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`] or the node's error.
    pub fn broker_client_send(
        &mut self,
        now: Instant,
        client: BrokerClient,
        bytes: &[u8],
    ) -> Result<(), AgentError> {
        let now = self.clamp(now);
        self.node_mut()?.broker_client_send(now, client, bytes)?;
        self.process(now);
        Ok(())
    }

    /// Reads the own broker's frames for a client (see `Node::broker_client_recv`).
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`] or the node's error.
    pub fn broker_client_recv(
        &mut self,
        now: Instant,
        client: BrokerClient,
        buf: &mut [u8],
    ) -> Result<usize, AgentError> {
        let now = self.clamp(now);
        let n = self.node_mut()?.broker_client_recv(now, client, buf)?;
        self.process(now);
        Ok(n)
    }

    /// Disconnects an in-process broker client.
    pub fn close_broker_client(&mut self, now: Instant, client: BrokerClient) {
        let now = self.clamp(now);
        if let Some(node) = &mut self.node {
            node.close_broker_client(now, client);
        }
        self.process(now);
    }

    /// Reports that event-log records up to `through` are durable.
    pub fn handle_persisted(&mut self, now: Instant, through: Seq) {
        let now = self.clamp(now);
        if let Some(node) = &mut self.node {
            node.handle_persisted(now, through);
        }
        self.process(now);
    }

    /// Refills the broker's history from the event log (after `Registered`, before clients).
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`].
    pub fn restore_log(&mut self, now: Instant, records: Vec<LogRecord>) -> Result<(), AgentError> {
        let now = self.clamp(now);
        self.node_mut()?.restore_log(now, records);
        Ok(())
    }

    /// Like [`Agent::restore_log`], from a whole [`Recovery`] (numbering resumes after markers).
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`].
    pub fn restore_log_from(&mut self, now: Instant, recovery: Recovery) -> Result<(), AgentError> {
        let now = self.clamp(now);
        self.node_mut()?.restore_log_from(now, recovery);
        Ok(())
    }

    /// Every durable subscription's position, for the driver to save now and then; `None`
    /// before registration or with the broker off.
    pub fn durables_snapshot(&self) -> Option<Vec<u8>> {
        self.node.as_ref()?.durables_snapshot()
    }

    /// Loads saved durable positions (after [`Self::restore_log_from`], before clients).
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`] before the node exists.
    pub fn restore_durables(
        &mut self,
        records: Vec<crate::pubsub::durable::DurableRecord>,
    ) -> Result<(), AgentError> {
        self.node_mut()?.restore_durables(records);
        Ok(())
    }

    fn node_mut(&mut self) -> Result<&mut Node, AgentError> {
        self.node.as_mut().ok_or(AgentError::NotRegistered)
    }

    pub(super) fn drain_node(&mut self, now: Instant) -> bool {
        let Some(node) = &mut self.node else {
            return false;
        };
        let mut events = Vec::new();
        while let Some(event) = node.poll_event() {
            events.push(event);
        }
        let moved = !events.is_empty();
        for event in events {
            self.on_node_event(now, event);
        }
        moved
    }

    fn on_node_event(&mut self, now: Instant, event: NodeEvent) {
        let Some(event) = self.trust_stream_event(now, event) else {
            return;
        };
        match event {
            NodeEvent::UnknownPeer { node, from } => self.on_unknown_peer(now, node, from),
            NodeEvent::NonTunnel { .. } => {}
            NodeEvent::Control {
                peer,
                from,
                payload,
            } => {
                if let Some(signal) = Signal::parse(&payload) {
                    self.on_signal(now, peer, from, signal);
                }
            }
            NodeEvent::PeerMoved { peer, .. } => self.sync_endpoint(now, peer.node),
            NodeEvent::PeerUnreachable { peer } => {
                self.forget_awaiting_revoke(peer.node);
                let error = AgentError::Dial(crate::nat::DialFailure::Timeout);
                self.fail_dials(peer.node, &error);
                self.forward(NodeEvent::PeerUnreachable { peer });
            }
            NodeEvent::PeerUp { peer, endpoint } => {
                self.on_peer_up(now, peer.node);
                self.send_awaiting_revoke(now, peer.node);
                self.forward(NodeEvent::PeerUp { peer, endpoint });
            }
            NodeEvent::Incoming {
                stream,
                port,
                remote,
            } => self.admit_stream(now, stream, port, remote),
            NodeEvent::Datagram { src, dst_port, .. }
                if self.trust.admit(src.addr.node).is_err() =>
            {
                self.events.push_back(AgentEvent::RefusedInbound {
                    peer: src.addr,
                    port: dst_port,
                });
            }
            other => self.forward(other),
        }
    }

    /// A private node resets streams from untrusted peers and tells them why.
    // Limitation: built-in service ports never raise `Incoming`, so they are not checked, and
    // the transport has already completed the handshake when this runs.
    fn admit_stream(&mut self, now: Instant, stream: ConnId, port: u16, remote: AddrPort) {
        let Err(refusal) = self.trust.admit_connection(remote.addr.node, port) else {
            self.forward(NodeEvent::Incoming {
                stream,
                port,
                remote,
            });
            return;
        };
        if let Some(node) = &mut self.node {
            let reason = Signal::Refused(refusal.to_string()).to_bytes();
            let _ = node.send_control(now, remote.addr, None, &reason);
            node.abort(now, stream);
        }
        self.events.push_back(AgentEvent::RefusedInbound {
            peer: remote.addr,
            port,
        });
    }

    fn forward(&mut self, event: NodeEvent) {
        self.events.push_back(AgentEvent::Node(event));
    }
}
