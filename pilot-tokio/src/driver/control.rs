//! IPC control operations inside the driver: `info` (from the agent's snapshot and the node's
//! counters), hostname resolve and set (registry requests answered by
//! `AgentEvent::ControlResult`), visibility, tags, deregistration and networks (the same),
//! and their v0.5-shaped JSON replies. Trust operations are in `trust`.

use std::collections::HashMap;
use std::time::Instant;

use pilot_proto::agent::{AgentError, ControlId};
use pilot_proto::registry::RegistryError;
use pilot_proto::wire::registry::Response;
use serde_json::{Value, json};

use super::commands::{ControlOp, Reply};
use super::{Driver, clock};

/// Control-plane state kept by the driver.
#[derive(Debug)]
pub(super) struct Control {
    hostname: Option<String>,
    waiting: HashMap<ControlId, (ControlOp, Reply<Value>)>,
    started: Instant,
}

impl Control {
    pub(super) fn new(hostname: Option<String>) -> Control {
        Control {
            hostname,
            waiting: HashMap::new(),
            started: clock(),
        }
    }
}

impl Driver {
    /// Starts a control request; the reply goes to `reply` when the registry answers.
    pub(super) fn control_op(&mut self, op: ControlOp, reply: Reply<Value>) {
        let now = clock();
        let result = match &op {
            ControlOp::Info => return drop(reply.send(Ok(self.info()))),
            ControlOp::Resolve(name) => self.agent.resolve_hostname(now, name),
            ControlOp::SetHostname(name) => self.agent.set_hostname(now, name),
            ControlOp::SetVisibility(public) => self.agent.set_visibility(now, *public),
            ControlOp::Deregister => self.agent.deregister(now),
            ControlOp::SetTags(tags) => self.agent.set_tags(now, tags.clone()),
            ControlOp::Network { request, tokens } => {
                self.agent.network(now, request.clone(), tokens.clone())
            }
            ControlOp::Unsupported(what) => {
                return drop(
                    reply.send(Err(format!("{what} is not supported by this daemon yet"))),
                );
            }
            _ => return self.trust_op(&op, reply),
        };
        match result {
            Ok(id) => {
                self.control.waiting.insert(id, (op, reply));
            }
            Err(e) => drop(reply.send(Err(error_text(&e)))),
        }
    }

    pub(super) fn on_control_result(
        &mut self,
        id: ControlId,
        result: Result<Response, RegistryError>,
    ) {
        let Some((op, reply)) = self.control.waiting.remove(&id) else {
            return;
        };
        let result = result.map(|r| r.to_value()).map_err(|e| e.to_string());
        if let (ControlOp::SetHostname(name), Ok(_)) = (&op, &result) {
            self.control.hostname = Some(name.clone()).filter(|n| !n.is_empty());
        }
        let _ = reply.send(result.map(|v| shape(&op, v)));
    }

    fn info(&self) -> Value {
        let node = self.agent.node();
        let stats = node.map(|n| n.stats()).unwrap_or_default();
        let addr = node.map(|n| n.address());
        let info = self.agent.info();
        let peers = self.agent.peers();
        let keyed = peers.iter().filter(|p| p.keyed).count();
        let conn_list = self.sessions.conn_list();
        json!({
            "node_id": addr.map_or(0, |a| a.node),
            "address": addr.map(|a| a.to_string()).unwrap_or_default(),
            "hostname": self.control.hostname.clone().unwrap_or_default(),
            "uptime_secs": self.control.started.elapsed().as_secs_f64(),
            "connections": conn_list.len(),
            "ports": self.sessions.port_count(),
            "peers": peers.len(), "encrypted_peers": keyed, "authenticated_peers": keyed,
            "encrypt": self.encrypt,
            "identity": true,
            "public_key": self.identity.public_key_base64(),
            "owner": "",
            "public": info.public,
            "registered_endpoint": info.registered_endpoint.map(|e| e.to_string()),
            "observed_endpoint": info.observed_endpoint.map(|e| e.to_string()),
            "bytes_sent": stats.transport.stream_bytes_sent,
            "bytes_recv": stats.transport.stream_bytes_received,
            "pkts_sent": stats.transport.packets_sent,
            "pkts_recv": stats.transport.packets_received,
            "peer_list": peers.iter().map(|p| json!({
                "node_id": p.peer.node, "route": p.route.label(), "encrypted": p.keyed,
                "trusted": p.trusted,
            })).collect::<Vec<_>>(),
            "conn_list": conn_list,
        })
    }
}

/// The text an IPC client sees for an agent error.
pub(super) fn error_text(error: &AgentError) -> String {
    match error {
        AgentError::NotRegistered => {
            "this node is not registered yet (no address); try again shortly".to_owned()
        }
        other => other.to_string(),
    }
}

/// Shapes a successful reply the way v0.5 clients expect it.
fn shape(op: &ControlOp, reply: Value) -> Value {
    match op {
        ControlOp::SetHostname(name) => json!({"hostname": name, "node_id": reply.get("node_id")}),
        _ => reply,
    }
}
