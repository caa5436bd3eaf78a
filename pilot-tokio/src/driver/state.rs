//! The driver's tables: sessions, bound ports, connections, pending dials, sends and requests,
//! and how node events and session commands move between them.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::clock;
use super::commands::{Command, ControlOp, Push, Reply, SessionId};
use super::node::{self, Node, NodeEvent, RequestId, StreamId};
use crate::shim::addr::AddrPort;

/// Largest `Recv` push (bytes).
const RECV_CHUNK: usize = 64 * 1024;
/// Reads per stream per wake before yielding to other work.
const READS_PER_WAKE: usize = 64;

#[derive(Debug)]
struct Conn {
    stream: StreamId,
    session: SessionId,
    local_port: u16,
    remote: Option<AddrPort>,
    sends: VecDeque<PendingSend>,
    closing: bool,
}

#[derive(Debug)]
struct PendingSend {
    data: Vec<u8>,
    sent: usize,
    reply: Reply<()>,
}

#[derive(Debug)]
enum Waiting {
    Dial(SessionId, AddrPort, Reply<u32>),
}

/// Everything the driver task keeps besides the node and sockets.
#[derive(Debug)]
pub(super) struct State {
    sessions: HashMap<SessionId, mpsc::Sender<Push>>,
    ports: HashMap<u16, SessionId>,
    conns: HashMap<u32, Conn>,
    by_stream: HashMap<StreamId, u32>,
    next_conn: u32,
    next_ephemeral: u16,
    waiting: HashMap<StreamId, Waiting>,
    requests: HashMap<RequestId, (ControlOp, Reply<Value>)>,
    stalled: BTreeSet<StreamId>,
    started: Instant,
    hostname: String,
    identity_path: bool,
}

impl State {
    pub(super) fn new(hostname: Option<String>, identity_path: bool) -> State {
        State {
            sessions: HashMap::new(),
            ports: HashMap::new(),
            conns: HashMap::new(),
            by_stream: HashMap::new(),
            next_conn: 0,
            next_ephemeral: 49151,
            waiting: HashMap::new(),
            requests: HashMap::new(),
            stalled: BTreeSet::new(),
            started: clock(),
            hostname: hostname.unwrap_or_default(),
            identity_path,
        }
    }

    /// Whether some stream waits for a session to drain its push queue.
    pub(super) fn has_stalled(&self) -> bool {
        !self.stalled.is_empty()
    }

    /// Retries streams whose session queue was full.
    pub(super) fn retry_stalled(&mut self, node: &mut Node) {
        for stream in std::mem::take(&mut self.stalled) {
            self.pump(node, stream);
        }
    }

    pub(super) fn on_command(&mut self, node: &mut Node, command: Command) {
        let now = clock();
        match command {
            Command::SessionOpened { session, push } => {
                self.sessions.insert(session, push);
            }
            Command::SessionClosed { session } => self.close_session(node, session),
            Command::Bind {
                session,
                port,
                reply,
            } => {
                let result = node.listen(port).map_err(|e| e.to_string());
                if result.is_ok() {
                    self.ports.insert(port, session);
                }
                let _ = reply.send(result);
            }
            Command::Dial {
                session,
                remote,
                reply,
            } => match node.connect(now, remote) {
                Ok(stream) => {
                    self.waiting
                        .insert(stream, Waiting::Dial(session, remote, reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            },
            Command::Send {
                session,
                conn,
                data,
                reply,
            } => self.send(node, session, conn, data, reply),
            Command::Close {
                session,
                conn,
                reply,
            } => {
                if self.conns.get(&conn).is_some_and(|c| c.session == session)
                    && let Some(c) = self.forget(conn)
                {
                    node.close(now, c.stream)
                }
                let _ = reply.send(Ok(()));
            }
            Command::SendTo { dst, data, reply } => {
                self.next_ephemeral = self
                    .next_ephemeral
                    .checked_add(1)
                    .unwrap_or(49152)
                    .max(49152);
                let result = node.send_datagram(now, self.next_ephemeral, dst, &data);
                let _ = reply.send(result.map_err(|e| e.to_string()));
            }
            Command::Control { op, reply } => self.control(node, now, op, reply),
            Command::Shutdown => {}
        }
    }

    fn send(
        &mut self,
        node: &mut Node,
        session: SessionId,
        conn: u32,
        data: Vec<u8>,
        reply: Reply<()>,
    ) {
        let Some(c) = self.conns.get_mut(&conn).filter(|c| c.session == session) else {
            let _ = reply.send(Err(format!("connection {conn} not found")));
            return;
        };
        c.sends.push_back(PendingSend {
            data,
            sent: 0,
            reply,
        });
        self.flush(node, conn);
    }

    fn flush(&mut self, node: &mut Node, conn: u32) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let now = clock();
        while let Some(front) = c.sends.front_mut() {
            match node.send(now, c.stream, &front.data[front.sent..]) {
                Ok(n) => front.sent += n,
                Err(e) => {
                    for p in c.sends.drain(..) {
                        let _ = p.reply.send(Err(format!("send: {e}")));
                    }
                    return;
                }
            }
            if front.sent < front.data.len() {
                return;
            }
            if let Some(done) = c.sends.pop_front() {
                let _ = done.reply.send(Ok(()));
            }
        }
    }

    fn close_session(&mut self, node: &mut Node, session: SessionId) {
        self.sessions.remove(&session);
        let owned: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| c.session == session)
            .map(|(id, _)| *id)
            .collect();
        for id in owned {
            if let Some(c) = self.forget(id) {
                node.close(clock(), c.stream)
            }
        }
        let ports: Vec<u16> = self
            .ports
            .iter()
            .filter(|(_, s)| **s == session)
            .map(|(p, _)| *p)
            .collect();
        for port in ports {
            self.ports.remove(&port);
            node.unlisten(port);
        }
    }

    fn forget(&mut self, conn: u32) -> Option<Conn> {
        let c = self.conns.remove(&conn)?;
        self.by_stream.remove(&c.stream);
        self.stalled.remove(&c.stream);
        Some(c)
    }

    fn add_conn(
        &mut self,
        stream: StreamId,
        session: SessionId,
        local_port: u16,
        remote: Option<AddrPort>,
    ) -> u32 {
        self.next_conn = self.next_conn.wrapping_add(1).max(1);
        let id = self.next_conn;
        let conn = Conn {
            stream,
            session,
            local_port,
            remote,
            sends: VecDeque::new(),
            closing: false,
        };
        self.conns.insert(id, conn);
        self.by_stream.insert(stream, id);
        id
    }

    pub(super) fn on_event(&mut self, node: &mut Node, event: NodeEvent) {
        match event {
            NodeEvent::Registered { addr, .. } => {
                tracing::info!(%addr, "registered with the registry")
            }
            NodeEvent::RegistryLost => tracing::warn!("registry connection lost"),
            NodeEvent::Connected { stream } => self.on_connected(stream),
            NodeEvent::Incoming {
                stream,
                local_port,
                remote,
            } => self.on_incoming(node, stream, local_port, remote),
            NodeEvent::Readable { stream } => self.pump(node, stream),
            NodeEvent::Writable { stream } => {
                if let Some(&conn) = self.by_stream.get(&stream) {
                    self.flush(node, conn);
                }
            }
            NodeEvent::Closed { stream, reason } => self.on_closed(node, stream, reason),
            NodeEvent::Datagram {
                src,
                dst_port,
                data,
            } => {
                for push in self.sessions.values() {
                    let _ = push.try_send(Push::RecvFrom {
                        src,
                        dst_port,
                        data: data.clone(),
                    });
                }
            }
            NodeEvent::Reply { request, result } => self.on_reply(request, result),
        }
    }

    fn on_connected(&mut self, stream: StreamId) {
        let Some(Waiting::Dial(session, remote, reply)) = self.waiting.remove(&stream) else {
            return;
        };
        let conn = self.add_conn(stream, session, 0, Some(remote));
        let _ = reply.send(Ok(conn));
    }

    fn on_incoming(
        &mut self,
        node: &mut Node,
        stream: StreamId,
        local_port: u16,
        remote: AddrPort,
    ) {
        let Some(&session) = self.ports.get(&local_port) else {
            return node.close(clock(), stream);
        };
        let conn = self.add_conn(stream, session, local_port, Some(remote));
        let pushed = self.sessions.get(&session).map(|p| {
            p.try_send(Push::Accept {
                local_port,
                conn,
                remote,
            })
        });
        if !matches!(pushed, Some(Ok(()))) {
            self.forget(conn);
            node.close(clock(), stream);
        }
    }

    fn on_closed(&mut self, node: &mut Node, stream: StreamId, reason: node::CloseReason) {
        if let Some(Waiting::Dial(_, _, reply)) = self.waiting.remove(&stream) {
            let _ = reply.send(Err(close_text(&reason)));
            return;
        }
        let Some(&conn) = self.by_stream.get(&stream) else {
            return;
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closing = true;
        }
        self.pump(node, stream);
    }

    /// Moves received bytes from the node to the owning session, bounded per wake.
    fn pump(&mut self, node: &mut Node, stream: StreamId) {
        let Some(&conn) = self.by_stream.get(&stream) else {
            return;
        };
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let Some(push) = self.sessions.get(&c.session).cloned() else {
            return;
        };
        let mut buf = vec![0u8; RECV_CHUNK];
        let mut drained = false;
        for _ in 0..READS_PER_WAKE {
            let Ok(permit) = push.try_reserve() else {
                self.stalled.insert(stream);
                return;
            };
            match node.recv(stream, &mut buf) {
                Ok(0) | Err(_) => {
                    drained = true;
                    break;
                }
                Ok(n) => permit.send(Push::Recv {
                    conn,
                    data: buf[..n].to_vec(),
                }),
            }
        }
        if !drained {
            self.stalled.insert(stream);
            return;
        }
        self.finish_if_closing(node, stream, conn, &push);
    }

    fn finish_if_closing(
        &mut self,
        node: &mut Node,
        stream: StreamId,
        conn: u32,
        push: &mpsc::Sender<Push>,
    ) {
        if !self.conns.get(&conn).is_some_and(|c| c.closing) {
            return;
        }
        if push.try_send(Push::CloseOk { conn }).is_ok() {
            self.forget(conn);
            node.close(clock(), stream);
        } else {
            self.stalled.insert(stream);
        }
    }

    fn control(&mut self, node: &mut Node, now: Instant, op: ControlOp, reply: Reply<Value>) {
        let request = match &op {
            ControlOp::Info => return drop(reply.send(Ok(self.info(node)))),
            ControlOp::Unsupported(what) => {
                return drop(
                    reply.send(Err(format!("{what} is not supported by this daemon yet"))),
                );
            }
            other => super::control::start(node, now, other),
        };
        self.requests.insert(request, (op, reply));
    }

    fn on_reply(&mut self, request: RequestId, result: Result<Value, String>) {
        let Some((op, reply)) = self.requests.remove(&request) else {
            return;
        };
        let result = result.map(|v| super::control::shape(&op, v));
        if let (ControlOp::SetHostname(name), Ok(_)) = (&op, &result) {
            self.hostname = name.clone();
        }
        let _ = reply.send(result);
    }

    fn info(&self, node: &Node) -> Value {
        let addr = node.address();
        let stats = node.stats();
        let conn_list: Vec<Value> = self.conns.iter().map(|(id, c)| conn_json(*id, c)).collect();
        json!({
            "node_id": addr.map_or(0, |a| a.node),
            "address": addr.map(|a| a.to_string()).unwrap_or_default(),
            "hostname": self.hostname,
            "uptime_secs": self.started.elapsed().as_secs_f64(),
            "connections": self.conns.len(),
            "ports": stats.ports,
            "peers": 0, "encrypted_peers": 0, "authenticated_peers": 0,
            "encrypt": true,
            "identity": self.identity_path,
            "public_key": node.public_key_b64(),
            "owner": "",
            "bytes_sent": 0, "bytes_recv": 0, "pkts_sent": 0, "pkts_recv": 0,
            "peer_list": [],
            "conn_list": conn_list,
        })
    }
}

fn conn_json(id: u32, c: &Conn) -> Value {
    json!({
        "id": id,
        "local_port": c.local_port,
        "remote_addr": c.remote.map(|r| r.addr.to_string()).unwrap_or_default(),
        "remote_port": c.remote.map_or(0, |r| r.port),
        "state": if c.closing { "CLOSE_WAIT" } else { "ESTABLISHED" },
    })
}

fn close_text(reason: &node::CloseReason) -> String {
    match reason {
        node::CloseReason::Remote => "connection closed by peer".to_owned(),
        node::CloseReason::Refused(text) => text.clone(),
    }
}
