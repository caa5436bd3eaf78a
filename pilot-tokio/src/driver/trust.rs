//! Trust inside the driver: the `TrustStore` (created at registration, recovered from
//! `<home>/trust.state`), the port-444 message streams in both directions, the registry relay
//! calls the store asks for, and the IPC trust commands.

use std::collections::HashMap;

use pilot_proto::node::NodeError;
use pilot_proto::rng::Rng;
use pilot_proto::transport::ConnId;
use pilot_proto::trust::{Arrival, TRUST_PORT, TrustAction, TrustMode, TrustStore};
use pilot_proto::wire::registry::PollHandshakesOk;
use pilot_proto::wire::trust::TrustMessage;
use serde_json::{Value, json};

use super::commands::{ControlOp, Reply};
use super::control::{Deferred, Waiting};
use super::{Driver, clock, unix_now};
use crate::shim::addr::{Addr, AddrPort};

/// Largest port-444 message read (v0.5 sends one segment of at most 4096 bytes).
const MAX_MESSAGE: usize = 16 * 1024;

/// A port-444 stream in progress.
#[derive(Debug)]
pub(super) enum TrustConn {
    /// We dialled to deliver a message.
    Out { peer: u32, message: TrustMessage },
    /// A peer dialled us; bytes so far.
    In { peer: u32, buf: Vec<u8> },
}

/// Trust state kept by the driver.
#[derive(Debug, Default)]
pub(super) struct Trust {
    pub(super) store: Option<TrustStore>,
    pub(super) conns: HashMap<ConnId, TrustConn>,
}

fn now_i64() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
}

impl Driver {
    /// Creates the store for `node_id` and listens on the trust port.
    pub(super) fn start_trust(&mut self, node_id: u32) {
        let key = ed25519_dalek::SigningKey::from_bytes(&self.seed_key);
        let rng = || Rng::from_seed(self.seed);
        let saved = std::fs::read(&self.trust_path).ok();
        let store = match saved {
            Some(bytes) => TrustStore::recover(node_id, key.clone(), TrustMode::Compat, rng(), &bytes)
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "trust state unreadable; starting with no trusted peers");
                    TrustStore::new(node_id, key, TrustMode::Compat, rng())
                }),
            None => TrustStore::new(node_id, key, TrustMode::Compat, rng()),
        };
        self.trust.store = Some(store);
        if let Some(Err(e)) = self.node.as_mut().map(|n| n.listen(TRUST_PORT)) {
            tracing::warn!(error = %e, "cannot listen on the trust port");
        }
    }

    /// IPC trust commands: the store answers at once and queues what must be sent.
    pub(super) fn trust_op(&mut self, op: &ControlOp, reply: Reply<Value>) {
        let Some(store) = self.trust.store.as_mut() else {
            return drop(reply.send(Err("this node is not registered yet".into())));
        };
        let now = now_i64();
        let result = match op {
            ControlOp::Handshake {
                node,
                justification,
            } => {
                store.request(now, *node, justification);
                Ok(json!({"status": "sent", "node_id": node}))
            }
            ControlOp::Approve(node) => store
                .approve(now, *node)
                .map(|()| json!({"status": "approved", "node_id": node})),
            ControlOp::Reject { node, reason } => store
                .reject(now, *node, reason)
                .map(|()| json!({"status": "rejected", "node_id": node})),
            ControlOp::Untrust(node) => store
                .revoke(now, *node)
                .map(|()| json!({"status": "revoked", "node_id": node})),
            ControlOp::Pending => Ok(json!({"pending": store.pending().map(|p| json!({
                "node_id": p.node_id, "justification": p.justification, "received_at": p.received_at,
                "relayed": p.relayed,
            })).collect::<Vec<_>>()})),
            _ => Ok(json!({"trusted": store.trusted().map(|t| json!({
                "node_id": t.node_id, "public_key": t.public_key.as_ref().map(|k| k.encode()),
                "approved_at": t.approved_at, "mutual": t.mutual, "network": 0,
            })).collect::<Vec<_>>()})),
        };
        let _ = reply.send(result.map_err(|e| e.to_string()));
    }

    /// Carries out what the store asked for.
    pub(super) fn drain_trust(&mut self) -> usize {
        let mut done = 0;
        while let Some(action) = self.trust.store.as_mut().and_then(TrustStore::poll_action) {
            done += 1;
            self.on_trust_action(action);
        }
        done
    }

    fn on_trust_action(&mut self, action: TrustAction) {
        let now = clock();
        let client = &mut self.control.client;
        let request = match action {
            TrustAction::SendDirect { peer, message } => {
                return self.run_deferred(Deferred::Trust(peer, message));
            }
            TrustAction::RelayRequest {
                peer,
                justification,
            } => client.request_handshake(now, peer, &justification),
            TrustAction::RelayResponse { peer, accept } => {
                client.respond_handshake(now, peer, accept)
            }
            TrustAction::ReportTrust { peer } => client.report_trust(now, peer),
            TrustAction::RevokeTrust { peer } => client.revoke_trust(now, peer),
            TrustAction::Persist => return self.persist_trust(),
            TrustAction::Notify(event) => return tracing::info!(?event, "trust"),
            _ => return,
        };
        self.control.track(request, Waiting::Quiet);
    }

    fn persist_trust(&mut self) {
        let Some(store) = self.trust.store.as_ref() else {
            return;
        };
        if let Err(e) = crate::identity_file::write_atomic(&self.trust_path, &store.encode()) {
            tracing::warn!(error = %e, "could not save trust state");
        }
    }

    /// A trust message could not be delivered directly: the store falls back to the relay.
    pub(super) fn trust_direct_failed(&mut self, peer: u32, message: &TrustMessage) {
        if let Some(store) = self.trust.store.as_mut() {
            store.handle_direct_failure(peer, message);
        }
    }

    /// Dials the peer's trust port for an outgoing message (resolving the peer first if the
    /// node does not know it; falling back to the relay if the dial cannot start).
    pub(super) fn dial_trust(&mut self, peer: u32, message: TrustMessage) {
        let Some(node) = self.node.as_mut() else {
            return self.trust_direct_failed(peer, &message);
        };
        match node.connect(
            clock(),
            AddrPort {
                addr: Addr::new(0, peer),
                port: TRUST_PORT,
            },
        ) {
            Ok(stream) => {
                self.trust
                    .conns
                    .insert(stream, TrustConn::Out { peer, message });
            }
            Err(NodeError::UnknownPeer(_)) => {
                self.resolve_peer(peer, Deferred::Trust(peer, message))
            }
            Err(_) => self.trust_direct_failed(peer, &message),
        }
    }

    /// Port-444 stream events; returns false when the stream is not a trust stream.
    pub(super) fn on_trust_connected(&mut self, stream: ConnId) -> bool {
        let Some(TrustConn::Out { message, .. }) = self.trust.conns.get(&stream) else {
            return false;
        };
        let bytes = message.to_json();
        if let Some(node) = self.node.as_mut() {
            let _ = node.send(clock(), stream, &bytes);
            node.close(clock(), stream);
        }
        true
    }

    pub(super) fn on_trust_incoming(&mut self, stream: ConnId, remote: AddrPort) {
        self.trust.conns.insert(
            stream,
            TrustConn::In {
                peer: remote.addr.node,
                buf: Vec::new(),
            },
        );
    }

    pub(super) fn on_trust_readable(&mut self, stream: ConnId) -> bool {
        let Some(TrustConn::In { buf, .. }) = self.trust.conns.get_mut(&stream) else {
            return self.trust.conns.contains_key(&stream);
        };
        let Some(node) = self.node.as_mut() else {
            return true;
        };
        let mut chunk = [0u8; 4096];
        loop {
            match node.recv(stream, &mut chunk) {
                Ok(0) => break,
                Ok(n) if buf.len() + n <= MAX_MESSAGE => buf.extend_from_slice(&chunk[..n]),
                Ok(_) => break,
                Err(_) => return true,
            }
        }
        node.close(clock(), stream);
        if let Some(TrustConn::In { peer, buf }) = self.trust.conns.remove(&stream) {
            self.on_trust_message(peer, &buf);
        }
        true
    }

    pub(super) fn on_trust_closed(&mut self, stream: ConnId, failed: bool) -> bool {
        match self.trust.conns.remove(&stream) {
            Some(TrustConn::Out { peer, message }) if failed => {
                self.trust_direct_failed(peer, &message)
            }
            Some(TrustConn::In { peer, buf }) if !buf.is_empty() => {
                self.on_trust_message(peer, &buf)
            }
            Some(_) => {}
            None => return false,
        }
        true
    }

    /// Looks the claimed sender's key up, then hands the message to the store.
    fn on_trust_message(&mut self, tunnel_peer: u32, bytes: &[u8]) {
        let Ok(message) = TrustMessage::parse(bytes) else {
            return tracing::debug!(peer = tunnel_peer, "malformed trust message dropped");
        };
        let r = self.control.client.lookup(clock(), message.node_id);
        self.control
            .track(r, Waiting::TrustLookup(Box::new(message), tunnel_peer));
    }

    pub(super) fn on_trust_lookup(
        &mut self,
        message: &TrustMessage,
        tunnel_peer: u32,
        lookup: Result<Value, String>,
    ) {
        let key = lookup
            .ok()
            .and_then(|v| v.get("public_key")?.as_str().map(str::to_owned));
        let key = key.and_then(|k| pilot_proto::identity::decode_public_key(&k).ok());
        let receiver = self.node.as_ref().map_or(0, |n| n.address().node);
        let arrival = Arrival {
            receiver,
            tunnel_peer: Some(tunnel_peer),
            registry_key: key.as_ref(),
            unix_now: now_i64(),
        };
        if let Some(store) = self.trust.store.as_mut() {
            store.handle_message(message, &arrival);
        }
    }

    pub(super) fn on_polled_handshakes(&mut self, result: Result<Value, String>) {
        let Ok(value) = result else { return };
        let Ok(polled) = serde_json::from_value::<PollHandshakesOk>(value) else {
            return;
        };
        if let Some(store) = self.trust.store.as_mut() {
            store.handle_relayed(now_i64(), &polled);
        }
    }

    /// Asks the registry for relayed trust requests and answers (with every heartbeat).
    pub(super) fn poll_relayed(&mut self) {
        if self.trust.store.is_some() {
            let r = self.control.client.poll_handshakes(clock());
            self.control.track(r, Waiting::PolledHandshakes);
        }
    }
}
