//! The stand-in's streams and datagrams between clients of the same node, and its services.

use std::time::Instant;

use super::broker::{self, Parsed};
use super::{
    CloseReason, Node, NodeError, NodeEvent, PORT_ECHO, PORT_EVENTS, STREAM_BUFFER, Stream,
    StreamId,
};
use crate::shim::addr::AddrPort;

impl Node {
    /// Accept streams on `port`.
    pub fn listen(&mut self, port: u16) -> Result<(), NodeError> {
        if port == PORT_ECHO || port == PORT_EVENTS || !self.listeners.insert(port) {
            return Err(NodeError::PortInUse(port));
        }
        Ok(())
    }

    /// Stop accepting streams on `port`.
    pub fn unlisten(&mut self, port: u16) {
        self.listeners.remove(&port);
    }

    /// Opens a stream; `Connected` or `Closed` follows as an event.
    pub fn connect(&mut self, _now: Instant, remote: AddrPort) -> Result<StreamId, NodeError> {
        let me = self.addr.ok_or(NodeError::NoAddress)?;
        if remote.addr != me {
            return Err(NodeError::Unreachable(remote.addr));
        }
        let service = [PORT_ECHO, PORT_EVENTS]
            .contains(&remote.port)
            .then_some(remote.port);
        if service.is_none() && !self.listeners.contains(&remote.port) {
            return Err(NodeError::Refused);
        }
        let (client, server) = (StreamId(self.next()), StreamId(self.next()));
        let local_port = 49152 + (client.0 % 16384) as u16;
        self.streams.insert(client, new_stream(server, None));
        self.streams.insert(server, new_stream(client, service));
        self.events
            .push_back(NodeEvent::Connected { stream: client });
        match service {
            Some(PORT_EVENTS) => self.broker.open(server),
            Some(_) => {}
            None => {
                let from = AddrPort {
                    addr: me,
                    port: local_port,
                };
                let (stream, local_port) = (server, remote.port);
                self.events.push_back(NodeEvent::Incoming {
                    stream,
                    local_port,
                    remote: from,
                });
            }
        }
        Ok(client)
    }

    /// Queues bytes; may accept fewer than offered (then `Writable` follows).
    pub fn send(
        &mut self,
        _now: Instant,
        stream: StreamId,
        data: &[u8],
    ) -> Result<usize, NodeError> {
        let peer = self
            .streams
            .get(&stream)
            .ok_or(NodeError::UnknownStream)?
            .peer;
        let Some(p) = self.streams.get_mut(&peer) else {
            return Err(NodeError::Closed);
        };
        let n = data.len().min(STREAM_BUFFER.saturating_sub(p.rx.len()));
        p.rx.extend_from_slice(&data[..n]);
        let service = p.service;
        if n < data.len()
            && let Some(s) = self.streams.get_mut(&stream)
        {
            s.blocked = true;
        }
        match service {
            Some(port) => self.run_service(peer, port),
            None if n > 0 => self.events.push_back(NodeEvent::Readable { stream: peer }),
            None => {}
        }
        Ok(n)
    }

    /// Reads buffered bytes; `Ok(0)` when none are buffered.
    pub fn recv(&mut self, stream: StreamId, buf: &mut [u8]) -> Result<usize, NodeError> {
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(NodeError::UnknownStream)?;
        let n = buf.len().min(s.rx.len());
        buf[..n].copy_from_slice(&s.rx[..n]);
        s.rx.drain(..n);
        let peer = s.peer;
        if n > 0 {
            self.wake_writer(peer);
        }
        Ok(n)
    }

    /// Closes a stream; the other side sees `Closed`.
    pub fn close(&mut self, _now: Instant, stream: StreamId) {
        self.close_stream(stream);
    }

    fn close_stream(&mut self, stream: StreamId) {
        let Some(s) = self.streams.remove(&stream) else {
            return;
        };
        self.broker.close(stream);
        let Some(p) = self.streams.get_mut(&s.peer) else {
            return;
        };
        p.peer_closed = true;
        if p.service.is_some() {
            self.broker.close(s.peer);
            self.streams.remove(&s.peer);
            return;
        }
        let reason = CloseReason::Remote;
        self.events.push_back(NodeEvent::Closed {
            stream: s.peer,
            reason,
        });
    }

    /// Sends a datagram; only to this node in the stand-in.
    pub fn send_datagram(
        &mut self,
        _now: Instant,
        src_port: u16,
        dst: AddrPort,
        data: &[u8],
    ) -> Result<(), NodeError> {
        let me = self.addr.ok_or(NodeError::NoAddress)?;
        if dst.addr != me {
            return Err(NodeError::Unreachable(dst.addr));
        }
        let src = AddrPort {
            addr: me,
            port: src_port,
        };
        let data = data.to_vec();
        self.events.push_back(NodeEvent::Datagram {
            src,
            dst_port: dst.port,
            data,
        });
        Ok(())
    }

    fn wake_writer(&mut self, writer: StreamId) {
        let Some(w) = self.streams.get_mut(&writer) else {
            return;
        };
        if let Some(port) = w.service {
            self.run_service(writer, port);
        } else if w.blocked {
            w.blocked = false;
            self.events
                .push_back(NodeEvent::Writable { stream: writer });
        }
    }

    fn run_service(&mut self, server: StreamId, port: u16) {
        if port == PORT_ECHO {
            self.run_echo(server);
        } else {
            self.run_broker(server);
        }
    }

    fn run_echo(&mut self, server: StreamId) {
        let Some(s) = self.streams.get_mut(&server) else {
            return;
        };
        let data = std::mem::take(&mut s.rx);
        let peer = s.peer;
        let Some(c) = self.streams.get_mut(&peer) else {
            return;
        };
        let n = data.len().min(STREAM_BUFFER.saturating_sub(c.rx.len()));
        c.rx.extend_from_slice(&data[..n]);
        if let Some(s) = self.streams.get_mut(&server) {
            s.rx = data[n..].to_vec();
        }
        if n > 0 {
            self.events.push_back(NodeEvent::Readable { stream: peer });
        }
    }

    fn run_broker(&mut self, server: StreamId) {
        for _ in 0..1024 {
            let Some(s) = self.streams.get_mut(&server) else {
                return;
            };
            let event = match broker::parse(&s.rx) {
                Parsed::NeedMore => return,
                Parsed::Invalid => {
                    return self.close_stream(server);
                }
                Parsed::Frame(event, used) => {
                    s.rx.drain(..used);
                    event
                }
            };
            let frame = broker::encode(&event.topic, &event.payload);
            for target in self.broker.on_frame(server, &event) {
                self.deliver(target, &frame);
            }
        }
    }

    fn deliver(&mut self, server: StreamId, frame: &[u8]) {
        let Some(peer) = self.streams.get(&server).map(|s| s.peer) else {
            return;
        };
        let Some(c) = self.streams.get_mut(&peer) else {
            return;
        };
        // Limitation: a subscriber that does not read loses events once its buffer is full.
        if c.rx.len() + frame.len() <= STREAM_BUFFER * 16 {
            c.rx.extend_from_slice(frame);
            self.events.push_back(NodeEvent::Readable { stream: peer });
        }
    }
}

fn new_stream(peer: StreamId, service: Option<u16>) -> Stream {
    Stream {
        peer,
        rx: Vec::new(),
        peer_closed: false,
        blocked: false,
        service,
    }
}
