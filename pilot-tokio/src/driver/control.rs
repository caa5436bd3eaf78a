//! The control plane inside the driver: registration (which creates the node), heartbeats,
//! hostname requests, and peer resolution (registry `lookup` for the key, `resolve` for the
//! endpoint) before the first stream or datagram to a node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pilot_proto::node::Node;
use pilot_proto::registry::{ClientEvent, RegistryClient, RegistryError, RequestId};
use serde_json::{Value, json};

use super::commands::{ControlOp, Reply, SessionId};
use super::registry_io::RegistryLink;
use super::{Driver, clock};
use crate::shim::addr::{Addr, AddrPort};

/// Registry heartbeat period (v0.5 default keepalive).
const HEARTBEAT: Duration = Duration::from_secs(30);
/// Peers being resolved at once.
const MAX_RESOLVING: usize = 256;
/// Commands waiting for one peer's resolution.
const MAX_WAITERS: usize = 64;

/// A command waiting until its destination node is known.
#[derive(Debug)]
pub(super) enum Deferred {
    Dial(SessionId, AddrPort, Reply<u32>),
    SendTo(AddrPort, Vec<u8>, Reply<()>),
}

#[derive(Debug)]
enum Waiting {
    Register,
    Quiet,
    Op(ControlOp, Reply<Value>),
    Lookup(u32),
    Resolve(u32),
}

#[derive(Debug, Default)]
struct Resolving {
    key: Option<Option<ed25519_dalek::VerifyingKey>>,
    endpoint: Option<SocketAddr>,
    waiters: Vec<Deferred>,
}

/// Control-plane state kept by the driver.
#[derive(Debug)]
pub(super) struct Control {
    pub(super) client: RegistryClient,
    hostname: Option<String>,
    public: bool,
    waiting: HashMap<RequestId, Waiting>,
    resolving: HashMap<u32, Resolving>,
    heartbeat_at: Option<Instant>,
    started: Instant,
}

impl Control {
    pub(super) fn new(client: RegistryClient, hostname: Option<String>, public: bool) -> Control {
        Control {
            client,
            hostname,
            public,
            waiting: HashMap::new(),
            resolving: HashMap::new(),
            heartbeat_at: None,
            started: clock(),
        }
    }

    pub(super) fn next_timer(&self) -> Option<Instant> {
        self.heartbeat_at
    }

    /// The registry stream opened: (re-)register so the endpoint is current.
    pub(super) fn on_connected(&mut self, now: Instant, local: Option<SocketAddr>) {
        self.client.handle_connected(now);
        let listen = local.map(|l| l.to_string());
        match self
            .client
            .register(now, listen, self.hostname.clone(), None)
        {
            Ok(id) => {
                self.waiting.insert(id, Waiting::Register);
            }
            Err(e) => tracing::warn!(error = %e, "could not send register"),
        }
    }

    pub(super) fn on_timeout(&mut self, now: Instant) {
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        if self.heartbeat_at.is_some_and(|t| t <= now) {
            self.heartbeat_at = Some(now + HEARTBEAT);
            if let Ok(id) = self.client.heartbeat(now) {
                self.waiting.insert(id, Waiting::Quiet);
            }
        }
    }

    fn send(&mut self, result: Result<RequestId, RegistryError>, waiting: Waiting) {
        match result {
            Ok(id) => {
                self.waiting.insert(id, waiting);
            }
            Err(e) => fail(waiting, &e.to_string()),
        }
    }
}

fn fail(waiting: Waiting, text: &str) {
    if let Waiting::Op(_, reply) = waiting {
        let _ = reply.send(Err(text.to_owned()));
    }
}

impl Driver {
    pub(super) fn on_registry_event(&mut self, link: &mut RegistryLink, event: ClientEvent) {
        match event {
            ClientEvent::Response { id, result, .. } => {
                let Some(waiting) = self.control.waiting.remove(&id) else {
                    return;
                };
                let result = result.map(|r| r.to_value()).map_err(|e| e.to_string());
                self.on_response(waiting, result);
            }
            ClientEvent::Reconnect => {
                tracing::info!("registry asked for a new connection");
                link.on_closed(clock());
                self.control.client.handle_disconnected(clock());
            }
            _ => {}
        }
    }

    fn on_response(&mut self, waiting: Waiting, result: Result<Value, String>) {
        match waiting {
            Waiting::Register => self.on_registered(result),
            Waiting::Quiet => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "registry heartbeat failed");
                }
            }
            Waiting::Op(op, reply) => {
                if let (ControlOp::SetHostname(name), Ok(_)) = (&op, &result) {
                    self.control.hostname = Some(name.clone()).filter(|n| !n.is_empty());
                }
                let _ = reply.send(result.map(|v| shape(&op, v)));
            }
            Waiting::Lookup(peer) => self.on_lookup(peer, result),
            Waiting::Resolve(peer) => self.on_resolve(peer, result),
        }
    }

    fn on_registered(&mut self, result: Result<Value, String>) {
        let reply = match result {
            Ok(v) => v,
            Err(e) => return tracing::warn!(error = %e, "registration refused"),
        };
        let node_id = reply
            .get("node_id")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok());
        let Some(node_id) = node_id.filter(|n| *n != 0) else {
            return tracing::warn!("registration reply without a node id");
        };
        let addr = Addr::new(0, node_id);
        let now = clock();
        match &self.node {
            Some(node) if node.address() != addr => {
                tracing::warn!(old = %node.address(), new = %addr, "registry assigned a different address; keeping the old one until restart");
            }
            Some(_) => tracing::info!(%addr, "re-registered with the registry"),
            None => {
                let node = Node::new(
                    self.node_config.clone(),
                    self.identity.clone(),
                    addr,
                    self.seed,
                    now,
                );
                self.node = Some(node);
                tracing::info!(%addr, "registered with the registry");
                if self.control.public {
                    let r = self.control.client.set_visibility(now, true);
                    self.control.send(r, Waiting::Quiet);
                }
            }
        }
        self.control.heartbeat_at = Some(now + HEARTBEAT);
    }

    /// Starts a control request; the reply goes to `reply` when the registry answers.
    pub(super) fn control_op(&mut self, op: ControlOp, reply: Reply<Value>) {
        let now = clock();
        let client = &mut self.control.client;
        let result = match &op {
            ControlOp::Info => return drop(reply.send(Ok(self.info()))),
            ControlOp::Resolve(name) => client.resolve_hostname(now, name),
            ControlOp::SetHostname(name) => client.set_hostname(now, name),
            ControlOp::Unsupported(what) => {
                return drop(
                    reply.send(Err(format!("{what} is not supported by this daemon yet"))),
                );
            }
            _ => {
                return drop(reply.send(Err(
                    "trust commands are not supported by this daemon yet".into(),
                )));
            }
        };
        self.control.send(result, Waiting::Op(op, reply));
    }

    /// Queues `deferred` until `peer` is resolved and added to the node.
    pub(super) fn resolve_peer(&mut self, peer: u32, deferred: Deferred) {
        let now = clock();
        if !self.control.resolving.contains_key(&peer) {
            if self.control.resolving.len() >= MAX_RESOLVING {
                return fail_deferred(deferred, "too many peers being resolved; try again");
            }
            self.control.resolving.insert(peer, Resolving::default());
            let r = self.control.client.lookup(now, peer);
            self.control.send(r, Waiting::Lookup(peer));
            let r = self.control.client.resolve(now, peer);
            self.control.send(r, Waiting::Resolve(peer));
        }
        if let Some(entry) = self.control.resolving.get_mut(&peer) {
            if entry.waiters.len() >= MAX_WAITERS {
                return fail_deferred(deferred, "too many requests waiting for this peer");
            }
            entry.waiters.push(deferred);
        }
    }

    /// A tunnel frame came from a node we do not know: learn its key, use the sender's address.
    pub(super) fn on_unknown_peer(&mut self, node: u32, from: SocketAddr) {
        if let Some(entry) = self.control.resolving.get_mut(&node) {
            entry.endpoint.get_or_insert(from);
            return;
        }
        if self.control.resolving.len() >= MAX_RESOLVING {
            return;
        }
        let entry = Resolving {
            endpoint: Some(from),
            ..Resolving::default()
        };
        self.control.resolving.insert(node, entry);
        let r = self.control.client.lookup(clock(), node);
        self.control.send(r, Waiting::Lookup(node));
    }

    fn on_lookup(&mut self, peer: u32, result: Result<Value, String>) {
        let key = result
            .as_ref()
            .ok()
            .and_then(|v| v.get("public_key")?.as_str().map(str::to_owned));
        let key = key.and_then(|k| pilot_proto::identity::decode_public_key(&k).ok());
        match (result, self.control.resolving.get_mut(&peer)) {
            (Err(e), Some(_)) => self.finish_peer(peer, Err(format!("lookup of node {peer}: {e}"))),
            (Ok(_), Some(entry)) => {
                entry.key = Some(key);
                self.try_add_peer(peer);
            }
            _ => {}
        }
    }

    fn on_resolve(&mut self, peer: u32, result: Result<Value, String>) {
        let endpoint = result
            .as_ref()
            .ok()
            .and_then(|v| v.get("real_addr")?.as_str()?.parse().ok());
        let Some(entry) = self.control.resolving.get_mut(&peer) else {
            return;
        };
        match (endpoint, result) {
            (Some(ep), _) => entry.endpoint = Some(ep),
            (None, Err(e)) if entry.endpoint.is_none() => {
                let text = format!(
                    "cannot reach node {peer}: the registry will not resolve it ({e}); it must be public or trust this node"
                );
                return self.finish_peer(peer, Err(text));
            }
            _ => {}
        }
        self.try_add_peer(peer);
    }

    fn try_add_peer(&mut self, peer: u32) {
        let Some(entry) = self.control.resolving.get(&peer) else {
            return;
        };
        let (Some(key), Some(endpoint)) = (entry.key, entry.endpoint) else {
            return;
        };
        let Some(node) = self.node.as_mut() else {
            return;
        };
        let result = node
            .add_peer(clock(), Addr::new(0, peer), endpoint, key)
            .map_err(|e| e.to_string());
        tracing::info!(peer, %endpoint, "peer added");
        self.finish_peer(peer, result);
    }

    fn finish_peer(&mut self, peer: u32, result: Result<(), String>) {
        let Some(entry) = self.control.resolving.remove(&peer) else {
            return;
        };
        for deferred in entry.waiters {
            match &result {
                Ok(()) => self.run_deferred(deferred),
                Err(e) => fail_deferred(deferred, e),
            }
        }
    }

    fn info(&self) -> Value {
        let stats = self.node.as_ref().map(Node::stats).unwrap_or_default();
        let addr = self.node.as_ref().map(Node::address);
        let conn_list = self.sessions.conn_list();
        json!({
            "node_id": addr.map_or(0, |a| a.node),
            "address": addr.map(|a| a.to_string()).unwrap_or_default(),
            "hostname": self.control.hostname.clone().unwrap_or_default(),
            "uptime_secs": self.control.started.elapsed().as_secs_f64(),
            "connections": conn_list.len(),
            "ports": self.sessions.port_count(),
            "peers": 0, "encrypted_peers": 0, "authenticated_peers": 0,
            "encrypt": self.node_config.tunnel.encrypt,
            "identity": true,
            "public_key": self.identity.public_key_base64(),
            "owner": "",
            "bytes_sent": stats.transport.stream_bytes_sent,
            "bytes_recv": stats.transport.stream_bytes_received,
            "pkts_sent": stats.transport.packets_sent,
            "pkts_recv": stats.transport.packets_received,
            "peer_list": [],
            "conn_list": conn_list,
        })
    }
}

pub(super) fn fail_deferred(deferred: Deferred, text: &str) {
    match deferred {
        Deferred::Dial(_, _, reply) => drop(reply.send(Err(text.to_owned()))),
        Deferred::SendTo(_, _, reply) => drop(reply.send(Err(text.to_owned()))),
    }
}

/// Shapes a successful reply the way v0.5 clients expect it.
fn shape(op: &ControlOp, reply: Value) -> Value {
    match op {
        ControlOp::SetHostname(name) => json!({"hostname": name, "node_id": reply.get("node_id")}),
        _ => reply,
    }
}
