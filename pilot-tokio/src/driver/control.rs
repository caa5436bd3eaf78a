//! Control requests (registry and trust) mapped onto node calls, and their replies shaped as the
//! v0.5 daemon shapes them.

use std::time::Instant;

use serde_json::{Value, json};

use super::commands::ControlOp;
use super::node::{Node, RequestId};

/// Starts a control request on the node; the answer arrives as `NodeEvent::Reply`.
pub(super) fn start(node: &mut Node, now: Instant, op: &ControlOp) -> RequestId {
    match op {
        ControlOp::Resolve(name) => node.resolve(now, name),
        ControlOp::SetHostname(name) => node.set_hostname(now, name),
        ControlOp::Handshake { .. } => node.unsupported("handshake"),
        ControlOp::Approve(_) => node.unsupported("approve"),
        ControlOp::Reject { .. } => node.unsupported("reject"),
        ControlOp::Pending => node.unsupported("pending"),
        ControlOp::Trusted => node.unsupported("trust"),
        ControlOp::Untrust(_) => node.unsupported("untrust"),
        ControlOp::Info | ControlOp::Unsupported(_) => node.unsupported("request"),
    }
}

/// Shapes a successful reply the way v0.5 clients expect it.
pub(super) fn shape(op: &ControlOp, reply: Value) -> Value {
    match op {
        ControlOp::Handshake { node, .. } => json!({"status": "sent", "node_id": node}),
        ControlOp::Approve(node) => json!({"status": "approved", "node_id": node}),
        ControlOp::Reject { node, .. } => json!({"status": "rejected", "node_id": node}),
        ControlOp::Untrust(node) => json!({"status": "revoked", "node_id": node}),
        _ => reply,
    }
}
