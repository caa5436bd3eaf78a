//! Trust glue inside the driver: the IPC trust commands mapped onto the agent, the trust store
//! persisted to `<home>/trust.state` (`AgentEvent::PersistTrust`, written atomically), and
//! dial-first delivery of handshake requests.
//!
//! The agent sends a trust message over a port-444 stream only when the tunnel to the peer is
//! keyed already, and otherwise through the registry relay (delivered at the peer's next
//! heartbeat poll, up to 30 s later). v0.5 dials first; so does this glue: a handshake to a
//! peer without a keyed tunnel starts the agent's dial plan (`dial_peer`) and is handed to the
//! agent when the tunnel comes up ([`NodeEvent::PeerUp`]), or after [`DIAL_FIRST_WAIT`] at
//! the latest (then the agent relays it).
//!
//! [`NodeEvent::PeerUp`]: pilot_proto::node::NodeEvent::PeerUp

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::commands::{ControlOp, Reply};
use super::control::error_text;
use super::{Driver, clock};
use crate::shim::addr::Addr;

/// How long a handshake waits for the tunnel before the agent relays it.
const DIAL_FIRST_WAIT: Duration = Duration::from_secs(5);
/// Handshakes waiting for their tunnel at most.
const MAX_WAITING: usize = 256;

/// Handshake requests waiting for a tunnel.
#[derive(Debug)]
pub(super) struct Trust {
    /// Peer → (justification, deadline).
    waiting: BTreeMap<u32, (String, Instant)>,
}

impl Trust {
    pub(super) fn new() -> Trust {
        Trust {
            waiting: BTreeMap::new(),
        }
    }

    pub(super) fn next_timer(&self) -> Option<Instant> {
        self.waiting.values().map(|(_, at)| *at).min()
    }
}

impl Driver {
    /// IPC trust commands: the agent's store answers at once and sends what it must.
    pub(super) fn trust_op(&mut self, op: &ControlOp, reply: Reply<Value>) {
        let now = clock();
        let result = match op {
            ControlOp::Handshake {
                node,
                justification,
            } => self
                .handshake(now, *node, justification)
                .map(|()| json!({"status": "sent", "node_id": node})),
            ControlOp::Approve(node) => self
                .agent
                .approve(now, peer(*node))
                .map(|()| json!({"status": "approved", "node_id": node})),
            ControlOp::Reject { node, reason } => self
                .agent
                .reject(now, peer(*node), reason)
                .map(|()| json!({"status": "rejected", "node_id": node})),
            ControlOp::Untrust(node) => self
                .agent
                .revoke(now, peer(*node))
                .map(|()| json!({"status": "revoked", "node_id": node})),
            ControlOp::Pending => Ok(self.pending_json()),
            _ => Ok(self.trusted_json()),
        };
        let _ = reply.send(result.map_err(|e| error_text(&e)));
    }

    fn pending_json(&self) -> Value {
        let store = self.agent.trust();
        json!({"pending": store.pending().map(|p| json!({
            "node_id": p.node_id, "justification": p.justification,
            "received_at": p.received_at, "relayed": p.relayed,
        })).collect::<Vec<_>>()})
    }

    fn trusted_json(&self) -> Value {
        let store = self.agent.trust();
        json!({"trusted": store.trusted().map(|t| json!({
            "node_id": t.node_id, "public_key": t.public_key.as_ref().map(|k| k.encode()),
            "approved_at": t.approved_at, "mutual": t.mutual, "network": 0,
        })).collect::<Vec<_>>()})
    }

    /// Sends a handshake request now when the tunnel is keyed, else dials first.
    fn handshake(
        &mut self,
        now: Instant,
        node: u32,
        justification: &str,
    ) -> Result<(), pilot_proto::agent::AgentError> {
        let keyed = self
            .agent
            .node()
            .is_some_and(|n| n.is_peer_keyed(peer(node)));
        if keyed || self.trust.waiting.len() >= MAX_WAITING {
            return self.agent.handshake(now, peer(node), justification);
        }
        if self.agent.dial_peer(now, peer(node)).is_err() {
            return self.agent.handshake(now, peer(node), justification);
        }
        let deadline = now + DIAL_FIRST_WAIT;
        self.trust
            .waiting
            .insert(node, (justification.to_owned(), deadline));
        Ok(())
    }

    /// The tunnel to `node` is up: a waiting handshake goes out over port 444.
    pub(super) fn on_peer_up(&mut self, node: u32) {
        if let Some((justification, _)) = self.trust.waiting.remove(&node) {
            self.send_handshake(node, &justification);
        }
    }

    /// Handshakes whose tunnel did not come up in time go out anyway (the agent relays them).
    pub(super) fn trust_timers(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .trust
            .waiting
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(node, _)| *node)
            .collect();
        for node in due {
            if let Some((justification, _)) = self.trust.waiting.remove(&node) {
                self.send_handshake(node, &justification);
            }
        }
    }

    fn send_handshake(&mut self, node: u32, justification: &str) {
        if let Err(e) = self.agent.handshake(clock(), peer(node), justification) {
            tracing::warn!(peer = node, error = %e, "handshake request not sent");
        }
    }

    pub(super) fn persist_trust(&mut self, bytes: &[u8]) {
        if let Err(e) = crate::identity_file::write_atomic(&self.trust_path, bytes) {
            tracing::warn!(error = %e, "could not save trust state");
        }
    }
}

fn peer(node: u32) -> Addr {
    Addr::new(0, node)
}
