//! Built-in services that run inside the node, and the split between their connections and
//! the application's.
//!
//! Each service connection has a bounded outbox: bytes the service produced that the
//! transport's send buffer could not take yet. A peer that never reads cannot make it grow
//! past the configured limit; the connection is reset instead.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use super::{NodeConfig, NodeEvent};
use crate::transport::{ConnId, StreamError, Transport, TransportEvent};
use crate::wire::addr::port;

/// Bytes read from a service connection per `recv` call.
const READ_CHUNK: usize = 16 * 1024;

/// Which built-in service a connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServiceKind {
    /// Port 7: every byte received is sent back.
    Echo,
}

#[derive(Debug)]
struct ServiceConn {
    kind: ServiceKind,
    outbox: VecDeque<u8>,
}

/// The built-in services' connections and the ports the application listens on.
#[derive(Debug)]
pub(super) struct Services {
    pub(super) app_ports: BTreeSet<u16>,
    conns: BTreeMap<ConnId, ServiceConn>,
    outbox_limit: usize,
    read_buf: Vec<u8>,
}

impl Services {
    pub(super) fn new(outbox_limit: usize) -> Self {
        Self {
            app_ports: BTreeSet::new(),
            conns: BTreeMap::new(),
            outbox_limit,
            read_buf: vec![0; READ_CHUNK],
        }
    }

    /// The ports the built-in services listen on under `config`.
    pub(super) fn ports(&self, config: &NodeConfig) -> Vec<u16> {
        let mut ports = Vec::new();
        if config.echo {
            ports.push(port::ECHO);
        }
        ports
    }

    pub(super) fn owns_port(&self, local_port: u16) -> bool {
        Self::kind_for(local_port).is_some()
    }

    /// Handles a transport event: consumes it when it concerns a service connection, and
    /// returns the application event otherwise.
    pub(super) fn on_event(
        &mut self,
        now: Instant,
        transport: &mut Transport,
        event: TransportEvent,
    ) -> Option<NodeEvent> {
        match event {
            TransportEvent::Incoming { conn, port, remote } => {
                self.on_incoming(conn, port).then_some(NodeEvent::Incoming {
                    stream: conn,
                    port,
                    remote,
                })
            }
            TransportEvent::Readable { conn } if self.conns.contains_key(&conn) => {
                self.on_readable(now, transport, conn);
                None
            }
            TransportEvent::Writable { conn } if self.conns.contains_key(&conn) => {
                self.flush(now, transport, conn);
                None
            }
            TransportEvent::Closed { conn, .. } if self.conns.remove(&conn).is_some() => None,
            other => Self::app_event(other),
        }
    }

    /// Returns whether an incoming connection belongs to the application.
    fn on_incoming(&mut self, conn: ConnId, local_port: u16) -> bool {
        let Some(kind) = Self::kind_for(local_port) else {
            return true;
        };
        let outbox = VecDeque::new();
        self.conns.insert(conn, ServiceConn { kind, outbox });
        false
    }

    fn on_readable(&mut self, now: Instant, transport: &mut Transport, conn: ConnId) {
        // Bounded: each successful read drains the receive buffer, which is itself bounded.
        loop {
            match transport.recv(conn, &mut self.read_buf) {
                Ok(0) => {
                    transport.close(now, conn);
                    break;
                }
                Ok(read) => self.serve(conn, read),
                Err(StreamError::WouldBlock) => break,
                Err(_) => {
                    self.conns.remove(&conn);
                    return;
                }
            }
        }
        self.flush(now, transport, conn);
    }

    fn serve(&mut self, conn: ConnId, read: usize) {
        let Some(service) = self.conns.get_mut(&conn) else {
            return;
        };
        match service.kind {
            ServiceKind::Echo => service.outbox.extend(&self.read_buf[..read]),
        }
    }

    /// Offers the outbox to the transport; resets a connection whose outbox overflowed.
    fn flush(&mut self, now: Instant, transport: &mut Transport, conn: ConnId) {
        let Some(service) = self.conns.get_mut(&conn) else {
            return;
        };
        while !service.outbox.is_empty() {
            let (front, _) = service.outbox.as_slices();
            match transport.send(now, conn, front) {
                Ok(0) | Err(_) => break,
                Ok(sent) => drop(service.outbox.drain(..sent)),
            }
        }
        if service.outbox.len() > self.outbox_limit {
            tracing::debug!(?conn, "service peer is not reading; resetting");
            transport.abort(now, conn);
            self.conns.remove(&conn);
        }
    }

    fn kind_for(local_port: u16) -> Option<ServiceKind> {
        (local_port == port::ECHO).then_some(ServiceKind::Echo)
    }

    fn app_event(event: TransportEvent) -> Option<NodeEvent> {
        Some(match event {
            TransportEvent::Incoming { conn, port, remote } => NodeEvent::Incoming {
                stream: conn,
                port,
                remote,
            },
            TransportEvent::Connected { conn } => NodeEvent::Connected { stream: conn },
            TransportEvent::Readable { conn } => NodeEvent::Readable { stream: conn },
            TransportEvent::Writable { conn } => NodeEvent::Writable { stream: conn },
            TransportEvent::Closed { conn, reason } => NodeEvent::Closed {
                stream: conn,
                reason,
            },
            TransportEvent::Datagram {
                src,
                dst_port,
                data,
            } => NodeEvent::Datagram {
                src,
                dst_port,
                data,
            },
        })
    }
}
