//! The stand-in's registry client (v0.5 JSON-over-TCP frames) and control requests.

use std::time::Instant;

use base64::Engine as _;
use serde_json::{Value, json};

use super::{HEARTBEAT, Node, NodeEvent, Pending, RequestId};
use crate::shim::addr::Addr;

impl Node {
    /// The driver connected the registry TCP stream.
    pub fn handle_registry_connected(&mut self, now: Instant) {
        self.registry_in.clear();
        self.pending.clear();
        let mut req = json!({"type": "register", "public_key": self.identity.public_key_b64()});
        if let Some(name) = &self.config.hostname {
            req["hostname"] = name.clone().into();
        }
        self.request(req, Pending::Register);
        self.heartbeat_at = Some(now + HEARTBEAT);
    }

    /// Bytes from the registry TCP stream.
    pub fn handle_registry_bytes(&mut self, _now: Instant, bytes: &[u8]) {
        self.registry_in.extend_from_slice(bytes);
        while self.registry_in.len() >= 4 {
            let len = u32::from_be_bytes([
                self.registry_in[0],
                self.registry_in[1],
                self.registry_in[2],
                self.registry_in[3],
            ]) as usize;
            if self.registry_in.len() < 4 + len {
                break;
            }
            let body: Vec<u8> = self.registry_in.drain(..4 + len).skip(4).collect();
            let reply = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
            self.on_registry_reply(reply);
        }
    }

    /// The registry TCP stream closed.
    pub fn handle_registry_closed(&mut self, _now: Instant) {
        for pending in std::mem::take(&mut self.pending) {
            if let Pending::App(request) = pending {
                let result = Err("registry: connection lost".to_owned());
                self.events.push_back(NodeEvent::Reply { request, result });
            }
        }
        self.heartbeat_at = None;
        self.events.push_back(NodeEvent::RegistryLost);
    }

    /// Bytes to write to the registry TCP stream.
    pub fn poll_registry_bytes(&mut self) -> Option<Vec<u8>> {
        self.registry_out.pop_front()
    }

    /// Timer expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        let (Some(at), Some(addr)) = (self.heartbeat_at, self.addr) else {
            return;
        };
        if now >= at {
            let sig = self.sign(&format!("heartbeat:{}", addr.node));
            self.request(
                json!({"type": "heartbeat", "node_id": addr.node, "signature": sig}),
                Pending::Heartbeat,
            );
            self.heartbeat_at = Some(now + HEARTBEAT);
        }
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heartbeat_at
    }

    /// Next event for the driver.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// Resolves a hostname (or address text) to a node.
    pub fn resolve(&mut self, _now: Instant, name: &str) -> RequestId {
        let request = RequestId(self.next());
        if let Ok(addr) = name.parse::<Addr>() {
            let result = Ok(json!({"node_id": addr.node, "address": addr.to_string()}));
            self.events.push_back(NodeEvent::Reply { request, result });
            return request;
        }
        self.request(
            json!({"type": "resolve_hostname", "hostname": name}),
            Pending::App(request),
        );
        request
    }

    /// Sets ("" clears) the hostname at the registry.
    pub fn set_hostname(&mut self, _now: Instant, name: &str) -> RequestId {
        let request = RequestId(self.next());
        let Some(addr) = self.addr else {
            self.fail(request, "set_hostname: not registered yet");
            return request;
        };
        let sig = self.sign(&format!("set_hostname:{}", addr.node));
        let req = json!({"type": "set_hostname", "node_id": addr.node, "hostname": name, "signature": sig});
        self.request(req, Pending::App(request));
        request
    }

    /// Trust and ping requests: the stand-in answers only for itself.
    pub fn unsupported(&mut self, what: &str) -> RequestId {
        let request = RequestId(self.next());
        self.fail(
            request,
            &format!("{what}: needs the full node (not merged into this build yet)"),
        );
        request
    }

    /// Ping a node; only the node itself answers in the stand-in.
    pub fn ping(&mut self, _now: Instant, peer: Addr) -> RequestId {
        if Some(peer) != self.addr {
            return self.unsupported("ping of another node");
        }
        let request = RequestId(self.next());
        self.events.push_back(NodeEvent::Reply {
            request,
            result: Ok(json!({"rtt_ms": 0.0})),
        });
        request
    }

    fn fail(&mut self, request: RequestId, text: &str) {
        self.events.push_back(NodeEvent::Reply {
            request,
            result: Err(text.to_owned()),
        });
    }

    fn sign(&self, challenge: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.identity.sign(challenge.as_bytes()))
    }

    fn request(&mut self, req: Value, pending: Pending) {
        let body = serde_json::to_vec(&req).unwrap_or_default();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        self.registry_out.push_back(frame);
        self.pending.push_back(pending);
    }

    fn on_registry_reply(&mut self, reply: Value) {
        let Some(pending) = self.pending.pop_front() else {
            return;
        };
        let error = reply
            .get("error")
            .and_then(Value::as_str)
            .map(|e| format!("registry: {e}"));
        match pending {
            Pending::Register => self.on_registered(&reply, error),
            Pending::Heartbeat => {}
            Pending::App(request) => {
                let result = match error {
                    Some(e) => Err(e),
                    None => Ok(reply),
                };
                self.events.push_back(NodeEvent::Reply { request, result });
            }
        }
    }

    fn on_registered(&mut self, reply: &Value, error: Option<String>) {
        if let Some(e) = error {
            tracing::warn!(error = %e, "registration refused");
            return;
        }
        let node = reply.get("node_id").and_then(Value::as_u64).unwrap_or(0);
        let Ok(node) = u32::try_from(node) else {
            return;
        };
        let addr = Addr::new(0, node);
        self.addr = Some(addr);
        self.events.push_back(NodeEvent::Registered {
            addr,
            observed: None,
        });
    }
}
