//! IPC sessions inside the driver: bound ports, connections and their owners, pending dials and
//! sends, and how session commands and the agent's stream events move between them.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use pilot_proto::agent::{AgentError, Dial, DialId};
use pilot_proto::node::{NodeError, NodeEvent};
use pilot_proto::transport::{CloseReason, ConnId, StreamError};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::commands::{Command, Push, Reply, SessionId};
use super::control::error_text;
use super::{Driver, clock};
use crate::shim::addr::{Addr, AddrPort};

/// Largest `Recv` push (bytes).
const RECV_CHUNK: usize = 64 * 1024;
/// Reads per stream per wake before yielding to other work.
const READS_PER_WAKE: usize = 64;

#[derive(Debug)]
struct Conn {
    stream: ConnId,
    session: SessionId,
    local_port: u16,
    remote: AddrPort,
    sends: VecDeque<PendingSend>,
    /// The node reported the stream closed; `CloseOk` goes out after the data already read.
    closing: bool,
}

#[derive(Debug)]
struct PendingSend {
    data: Vec<u8>,
    sent: usize,
    reply: Reply<()>,
}

/// Session-side tables.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    sessions: HashMap<SessionId, mpsc::Sender<Push>>,
    ports: HashMap<u16, SessionId>,
    conns: HashMap<u32, Conn>,
    by_stream: HashMap<ConnId, u32>,
    next_conn: u32,
    next_ephemeral: u16,
    dials: HashMap<ConnId, (SessionId, AddrPort, Reply<u32>)>,
    /// Dials waiting for the agent to reach the peer.
    resolving: HashMap<DialId, (SessionId, AddrPort, Reply<u32>)>,
    discarding: HashSet<ConnId>,
    stalled: BTreeSet<ConnId>,
}

impl Sessions {
    pub(super) fn has_stalled(&self) -> bool {
        !self.stalled.is_empty()
    }

    pub(super) fn port_count(&self) -> usize {
        self.ports.len()
    }

    pub(super) fn conn_list(&self) -> Vec<Value> {
        let mut ids: Vec<&u32> = self.conns.keys().collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| self.conns.get(id).map(|c| (id, c)))
            .map(|(id, c)| {
                json!({
                    "id": id,
                    "local_port": c.local_port,
                    "remote_addr": c.remote.addr.to_string(),
                    "remote_port": c.remote.port,
                    "state": "ESTABLISHED",
                })
            })
            .collect()
    }

    fn add_conn(
        &mut self,
        stream: ConnId,
        session: SessionId,
        local_port: u16,
        remote: AddrPort,
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

    fn forget(&mut self, conn: u32) -> Option<Conn> {
        let c = self.conns.remove(&conn)?;
        self.by_stream.remove(&c.stream);
        self.stalled.remove(&c.stream);
        Some(c)
    }
}

impl Driver {
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::SessionOpened { session, push } => {
                self.sessions.sessions.insert(session, push);
            }
            Command::SessionClosed { session } => self.close_session(session),
            Command::Bind {
                session,
                port,
                reply,
            } => {
                let result = self.agent.listen(port).map_err(|e| error_text(&e));
                if result.is_ok() {
                    self.sessions.ports.insert(port, session);
                }
                let _ = reply.send(result);
            }
            Command::Dial {
                session,
                remote,
                reply,
            } => self.dial(session, remote, reply),
            Command::Send {
                session,
                conn,
                data,
                reply,
            } => self.send(session, conn, data, reply),
            Command::Close {
                session,
                conn,
                reply,
            } => {
                if self
                    .sessions
                    .conns
                    .get(&conn)
                    .is_some_and(|c| c.session == session)
                    && let Some(c) = self.sessions.forget(conn)
                {
                    self.close_stream(c.stream);
                }
                let _ = reply.send(Ok(()));
            }
            Command::SendTo { dst, data, reply } => {
                let s = &mut self.sessions;
                s.next_ephemeral = s.next_ephemeral.checked_add(1).unwrap_or(49152).max(49152);
                let result = self
                    .agent
                    .send_datagram(clock(), s.next_ephemeral, dst, &data);
                let _ = reply.send(result.map_err(|e| error_text(&e)));
            }
            Command::Control { op, reply } => self.control_op(op, reply),
            Command::PublishDurable {
                topic,
                payload,
                reply,
            } => self.publish_durable(&topic, &payload, reply),
            Command::Shutdown => {}
        }
    }

    /// Opens a stream; a peer without a tunnel is reached first (resolve, punch, relay).
    fn dial(&mut self, session: SessionId, remote: AddrPort, reply: Reply<u32>) {
        match self.agent.connect(clock(), remote) {
            Ok(Dial::Ready(stream)) => {
                self.sessions.dials.insert(stream, (session, remote, reply));
            }
            Ok(Dial::Pending(dial)) => {
                self.sessions
                    .resolving
                    .insert(dial, (session, remote, reply));
            }
            Err(e) => drop(reply.send(Err(error_text(&e)))),
        }
    }

    pub(super) fn on_dial_ready(&mut self, dial: DialId, stream: ConnId) {
        if let Some(waiting) = self.sessions.resolving.remove(&dial) {
            self.sessions.dials.insert(stream, waiting);
        }
    }

    pub(super) fn on_dial_failed(&mut self, dial: DialId, error: &AgentError) {
        if let Some((_, remote, reply)) = self.sessions.resolving.remove(&dial) {
            let text = format!("cannot reach node {}: {}", remote.addr, error_text(error));
            let _ = reply.send(Err(text));
        }
    }

    /// A private peer refused us: dials still waiting for it fail with its reason.
    pub(super) fn on_refused(&mut self, peer: Addr, reason: &str) {
        tracing::warn!(%peer, reason, "peer refused our connection");
        let refused: Vec<ConnId> = self
            .sessions
            .dials
            .iter()
            .filter(|(_, (_, remote, _))| remote.addr.node == peer.node)
            .map(|(stream, _)| *stream)
            .collect();
        for stream in refused {
            if let Some((_, _, reply)) = self.sessions.dials.remove(&stream) {
                let _ = reply.send(Err(format!("refused by {peer}: {reason}")));
            }
        }
    }

    fn send(&mut self, session: SessionId, conn: u32, data: Vec<u8>, reply: Reply<()>) {
        let Some(c) = self
            .sessions
            .conns
            .get_mut(&conn)
            .filter(|c| c.session == session)
        else {
            let _ = reply.send(Err(format!("connection {conn} not found")));
            return;
        };
        c.sends.push_back(PendingSend {
            data,
            sent: 0,
            reply,
        });
        self.flush(conn);
    }

    fn flush(&mut self, conn: u32) {
        let Some(c) = self.sessions.conns.get_mut(&conn) else {
            return;
        };
        let now = clock();
        while let Some(front) = c.sends.front_mut() {
            match self.agent.send(now, c.stream, &front.data[front.sent..]) {
                Ok(n) => front.sent += n,
                Err(AgentError::Node(NodeError::Stream(StreamError::WouldBlock))) => return,
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

    fn close_stream(&mut self, stream: ConnId) {
        self.agent.close(clock(), stream);
        self.sessions.discarding.insert(stream);
    }

    fn close_session(&mut self, session: SessionId) {
        self.sessions.sessions.remove(&session);
        let owned: Vec<u32> = self
            .sessions
            .conns
            .iter()
            .filter(|(_, c)| c.session == session)
            .map(|(id, _)| *id)
            .collect();
        for id in owned {
            if let Some(c) = self.sessions.forget(id) {
                self.close_stream(c.stream);
            }
        }
        let ports: Vec<u16> = self
            .sessions
            .ports
            .iter()
            .filter(|(_, s)| **s == session)
            .map(|(p, _)| *p)
            .collect();
        for port in ports {
            self.sessions.ports.remove(&port);
            self.agent.unlisten(port);
        }
    }

    pub(super) fn on_node_event(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::Connected { stream } => {
                let Some((session, remote, reply)) = self.sessions.dials.remove(&stream) else {
                    return;
                };
                let conn = self.sessions.add_conn(stream, session, 0, remote);
                let _ = reply.send(Ok(conn));
            }
            NodeEvent::Incoming {
                stream,
                port,
                remote,
            } => self.on_incoming(stream, port, remote),
            NodeEvent::Readable { stream } => self.pump(stream),
            NodeEvent::Writable { stream } => {
                if let Some(&conn) = self.sessions.by_stream.get(&stream) {
                    self.flush(conn);
                }
            }
            NodeEvent::Closed { stream, reason } => self.on_closed(stream, &reason),
            NodeEvent::Datagram {
                src,
                dst_port,
                data,
            } => {
                for push in self.sessions.sessions.values() {
                    let _ = push.try_send(Push::RecvFrom {
                        src,
                        dst_port,
                        data: data.clone(),
                    });
                }
            }
            NodeEvent::PeerUp { peer, endpoint } => {
                tracing::info!(%peer, ?endpoint, "tunnel up");
                self.on_peer_up(peer.node);
            }
            NodeEvent::PeerUnreachable { peer } => tracing::info!(%peer, "peer unreachable"),
            other => tracing::debug!(event = ?std::mem::discriminant(&other), "node event ignored"),
        }
    }

    fn on_incoming(&mut self, stream: ConnId, port: u16, remote: AddrPort) {
        let Some(&session) = self.sessions.ports.get(&port) else {
            return self.close_stream(stream);
        };
        let conn = self.sessions.add_conn(stream, session, port, remote);
        let push = self.sessions.sessions.get(&session).map(|p| {
            p.try_send(Push::Accept {
                local_port: port,
                conn,
                remote,
            })
        });
        if !matches!(push, Some(Ok(()))) {
            self.sessions.forget(conn);
            self.close_stream(stream);
        }
    }

    fn on_closed(&mut self, stream: ConnId, reason: &CloseReason) {
        self.sessions.discarding.remove(&stream);
        if let Some((_, remote, reply)) = self.sessions.dials.remove(&stream) {
            let text = match reason {
                CloseReason::Refused => "connection refused".to_owned(),
                CloseReason::ConnectTimeout => {
                    format!("dial timeout: node {} did not answer", remote.addr)
                }
                other => format!("connection failed: {other:?}"),
            };
            let _ = reply.send(Err(text));
            return;
        }
        let Some(&conn) = self.sessions.by_stream.get(&stream) else {
            return;
        };
        if let Some(c) = self.sessions.conns.get_mut(&conn) {
            c.closing = true;
            for p in c.sends.drain(..) {
                let _ = p.reply.send(Err("send: connection closed".into()));
            }
        }
        self.pump(stream);
    }

    /// Retries streams whose session queue was full.
    pub(super) fn retry_stalled(&mut self) {
        for stream in std::mem::take(&mut self.sessions.stalled) {
            self.pump(stream);
        }
    }

    /// Moves received bytes from the node to the owning session, bounded per wake.
    fn pump(&mut self, stream: ConnId) {
        let mut buf = vec![0u8; RECV_CHUNK];
        if self.sessions.discarding.contains(&stream) {
            return self.discard(stream, &mut buf);
        }
        let Some(&conn) = self.sessions.by_stream.get(&stream) else {
            return;
        };
        let session = self.sessions.conns.get(&conn).map(|c| c.session);
        let Some(push) = session
            .and_then(|s| self.sessions.sessions.get(&s))
            .cloned()
        else {
            return;
        };
        for _ in 0..READS_PER_WAKE {
            let Ok(permit) = push.try_reserve() else {
                self.sessions.stalled.insert(stream);
                return;
            };
            match self.agent.recv(stream, &mut buf) {
                Ok(0) => {
                    permit.send(Push::CloseOk { conn });
                    self.sessions.forget(conn);
                    return self.close_stream(stream);
                }
                Ok(n) => permit.send(Push::Recv {
                    conn,
                    data: buf[..n].to_vec(),
                }),
                Err(_) => {
                    if self.sessions.conns.get(&conn).is_some_and(|c| c.closing) {
                        permit.send(Push::CloseOk { conn });
                        self.sessions.forget(conn);
                    }
                    return;
                }
            }
        }
        self.sessions.stalled.insert(stream);
    }

    /// Reads and drops data on a stream the client closed, so the peer is not stalled.
    fn discard(&mut self, stream: ConnId, buf: &mut [u8]) {
        for _ in 0..READS_PER_WAKE {
            match self.agent.recv(stream, buf) {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        }
        self.sessions.stalled.insert(stream);
    }
}
