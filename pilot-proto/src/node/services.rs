//! Built-in services that run inside the node, and the split between their connections and
//! the application's.
//!
//! The event broker (port 1002) is [`crate::pubsub::Broker`]: each connection to the port is one
//! broker client, identified by its connection id. Frames the broker produces go through the
//! connection's outbox, and the broker is granted more credit as the outbox drains, so one slow
//! subscriber never holds up the others.
//!
//! While the broker's event log lags (`Broker::is_backlogged`), broker connections are not
//! read: their bytes wait in the transport's receive buffer, whose window then holds the
//! publisher back, instead of publishes being refused. [`Services::resume`] reads them again
//! once the log caught up.
//!
//! Each service connection has a bounded outbox: bytes the service produced that the
//! transport's send buffer could not take yet. A peer that never reads cannot make it grow
//! past the configured limit; the connection is reset instead.
//!
//! In-process broker clients (see `local`) have no stream: their outbox is read by the
//! application directly, and the broker is granted credit as it is read, so the outbox never
//! holds more than the broker's initial credit and one frame.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use super::{NodeConfig, NodeEvent};
use crate::pubsub::{Broker, BrokerEvent, ClientId};
use crate::transport::{ConnId, StreamError, Transport, TransportEvent};
use crate::wire::addr::port;

/// Bytes read from a service connection per `recv` call.
const READ_CHUNK: usize = 16 * 1024;

fn client_id(conn: ConnId) -> ClientId {
    ClientId(conn.0)
}

/// Which built-in service a connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServiceKind {
    /// Port 7: every byte received is sent back.
    Echo,
    /// Port 1002: the event broker.
    Broker,
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
    pub(super) broker: Option<Broker>,
    /// Broker connections left unread while the event log lagged.
    paused: BTreeSet<ConnId>,
    /// In-process broker clients: their outboxes, and whether the broker closed them.
    pub(super) local: BTreeMap<ClientId, LocalConn>,
    /// The next in-process client's number (ids are `LOCAL_CLIENT_BIT | number`).
    pub(super) next_local: u64,
}

/// One in-process broker client: frames the broker produced for it, not read yet.
#[derive(Debug, Default)]
pub(super) struct LocalConn {
    pub(super) outbox: VecDeque<u8>,
    pub(super) closed: bool,
}

impl Services {
    pub(super) fn new(config: &NodeConfig) -> Self {
        Self {
            app_ports: BTreeSet::new(),
            conns: BTreeMap::new(),
            outbox_limit: config.service_outbox,
            read_buf: vec![0; READ_CHUNK],
            broker: config.broker.clone().map(Broker::new),
            paused: BTreeSet::new(),
            local: BTreeMap::new(),
            next_local: 1,
        }
    }

    /// The ports the built-in services listen on under `config`.
    pub(super) fn ports(&self, config: &NodeConfig) -> Vec<u16> {
        let mut ports = Vec::new();
        if config.echo {
            ports.push(port::ECHO);
        }
        if config.broker.is_some() {
            ports.push(port::EVENT_STREAM);
        }
        ports
    }

    pub(super) fn owns_port(&self, local_port: u16) -> bool {
        self.kind_for(local_port).is_some()
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
            TransportEvent::Incoming { conn, port, remote } => self
                .on_incoming(now, transport, conn, port)
                .then_some(NodeEvent::Incoming {
                    stream: conn,
                    port,
                    remote,
                }),
            TransportEvent::Readable { conn } if self.conns.contains_key(&conn) => {
                self.on_readable(now, transport, conn);
                None
            }
            TransportEvent::Writable { conn } if self.conns.contains_key(&conn) => {
                self.flush(now, transport, conn);
                None
            }
            TransportEvent::Closed { conn, .. } if self.conns.remove(&conn).is_some() => {
                if let Some(broker) = &mut self.broker {
                    broker.handle_disconnect(now, client_id(conn));
                }
                None
            }
            other => Self::app_event(other),
        }
    }

    /// Moves broker output to its connections' outboxes and returns the broker's work for the
    /// driver (log appends and evictions) as node events.
    pub(super) fn pump_broker(
        &mut self,
        now: Instant,
        transport: &mut Transport,
        events: &mut Vec<NodeEvent>,
    ) -> bool {
        let Some(broker) = &mut self.broker else {
            return false;
        };
        let mut moved = false;
        let mut touched = BTreeSet::new();
        while let Some((client, frame)) = broker.poll_send(now) {
            moved = true;
            let conn = ConnId(client.0);
            if let Some(service) = self.conns.get_mut(&conn) {
                service.outbox.extend(frame);
                touched.insert(conn);
            } else if let Some(local) = self.local.get_mut(&client) {
                local.outbox.extend(frame);
            }
        }
        while let Some(event) = broker.poll_event() {
            moved = true;
            match event {
                BrokerEvent::Close { client, .. } => match self.local.get_mut(&client) {
                    Some(local) => local.closed = true,
                    None => transport.close(now, ConnId(client.0)),
                },
                BrokerEvent::Append { seq, record } => {
                    events.push(NodeEvent::LogAppend { seq, record })
                }
                BrokerEvent::Evicted { through } => events.push(NodeEvent::LogEvicted { through }),
                _ => {}
            }
        }
        for conn in touched {
            self.flush(now, transport, conn);
        }
        moved
    }

    /// Returns whether an incoming connection belongs to the application.
    fn on_incoming(
        &mut self,
        now: Instant,
        transport: &mut Transport,
        conn: ConnId,
        local_port: u16,
    ) -> bool {
        let Some(kind) = self.kind_for(local_port) else {
            return true;
        };
        let outbox = VecDeque::new();
        self.conns.insert(conn, ServiceConn { kind, outbox });

        // Services answer in whole frames already; Nagle would only hold events back.
        transport.set_nodelay(conn, true);
        if let (ServiceKind::Broker, Some(broker)) = (kind, &mut self.broker) {
            broker.handle_connect(now, client_id(conn));
        }
        false
    }

    fn on_readable(&mut self, now: Instant, transport: &mut Transport, conn: ConnId) {
        // Bounded: each successful read drains the receive buffer, which is itself bounded.
        loop {
            if self.broker_lags(conn) {
                self.paused.insert(conn);
                break;
            }
            match transport.recv(conn, &mut self.read_buf) {
                Ok(0) => {
                    transport.close(now, conn);
                    break;
                }
                Ok(read) => self.serve(now, conn, read),
                Err(StreamError::WouldBlock) => break,
                Err(_) => {
                    self.conns.remove(&conn);
                    return;
                }
            }
        }
        self.flush(now, transport, conn);
    }

    /// Whether `conn` is a broker connection and the event log is too far behind to read it.
    fn broker_lags(&self, conn: ConnId) -> bool {
        let is_broker = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.kind == ServiceKind::Broker);
        is_broker && self.broker.as_ref().is_some_and(Broker::is_backlogged)
    }

    /// Reads the broker connections paused while the log lagged, once it caught up.
    pub(super) fn resume(&mut self, now: Instant, transport: &mut Transport) {
        if self.broker.as_ref().is_some_and(Broker::is_backlogged) {
            return;
        }
        for conn in std::mem::take(&mut self.paused) {
            if self.conns.contains_key(&conn) {
                self.on_readable(now, transport, conn);
            }
        }
    }

    fn serve(&mut self, now: Instant, conn: ConnId, read: usize) {
        let Some(service) = self.conns.get_mut(&conn) else {
            return;
        };
        let bytes = &self.read_buf[..read];
        match (service.kind, &mut self.broker) {
            (ServiceKind::Echo, _) => service.outbox.extend(bytes),
            (ServiceKind::Broker, Some(broker)) => broker.handle_bytes(now, client_id(conn), bytes),
            (ServiceKind::Broker, None) => {}
        }
    }

    /// Offers the outbox to the transport; resets a connection whose outbox overflowed.
    fn flush(&mut self, now: Instant, transport: &mut Transport, conn: ConnId) {
        let Some(service) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut sent_total = 0;
        while !service.outbox.is_empty() {
            let (front, _) = service.outbox.as_slices();
            match transport.send(now, conn, front) {
                Ok(0) | Err(_) => break,
                Ok(sent) => {
                    sent_total += sent;
                    drop(service.outbox.drain(..sent));
                }
            }
        }

        // The broker may write as much again as the transport just took off the outbox, so the
        // outbox never holds more than the broker's initial credit.
        if let (ServiceKind::Broker, Some(broker), true) =
            (service.kind, &mut self.broker, sent_total > 0)
        {
            broker.handle_writable(now, client_id(conn), sent_total);
        }
        if service.outbox.len() > self.outbox_limit {
            tracing::debug!(?conn, "service peer is not reading; resetting");
            transport.abort(now, conn);
            self.conns.remove(&conn);
        }
    }

    fn kind_for(&self, local_port: u16) -> Option<ServiceKind> {
        match local_port {
            port::ECHO => Some(ServiceKind::Echo),
            port::EVENT_STREAM if self.broker.is_some() => Some(ServiceKind::Broker),
            _ => None,
        }
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
