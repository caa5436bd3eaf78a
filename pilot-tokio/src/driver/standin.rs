//! A loopback-only stand-in for `pilot_proto::node::Node`, with the same method names and
//! signatures as `/work/team/NODE_API.md`, so the driver loop is written once against that API.
//!
//! It registers with a registry over the byte-stream interface (v0.5 `register`, `heartbeat`,
//! `set_hostname`, `resolve_hostname`), and serves streams and datagrams between local clients
//! of the same node, with the built-in echo (port 7) and event broker (port 1002).
//!
//! # Limitations
//!
//! - No tunnel: streams and datagrams to any other node fail with `NodeError::Unreachable`.
//! - No trust state: handshake, approve, reject and untrust reply with an error.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::shim::addr::{Addr, AddrPort};
use crate::shim::identity::Identity;
use broker::Broker;

/// Bytes buffered per stream direction before `send` accepts fewer bytes.
const STREAM_BUFFER: usize = 1 << 20;
/// Registry heartbeat period.
const HEARTBEAT: Duration = Duration::from_secs(30);
const PORT_ECHO: u16 = 7;
const PORT_EVENTS: u16 = 1002;

/// Node configuration (the subset the daemon sets).
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    /// Hostname to claim at registration.
    pub hostname: Option<String>,
    /// Beacon address (unused by the stand-in).
    pub beacon: Option<SocketAddr>,
    /// Tunnel encryption.
    pub encrypt: bool,
}

/// A stream handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// A control request handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Why a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The other side closed.
    Remote,
    /// Refused or unreachable.
    Refused(String),
}

/// Node-level errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Port already bound.
    #[error("port {0} already bound")]
    PortInUse(u16),
    /// No such stream.
    #[error("connection not found")]
    UnknownStream,
    /// The stream is closed.
    #[error("connection closed")]
    Closed,
    /// The peer cannot be reached.
    #[error("node {0} unreachable: this daemon only reaches itself until pilot_proto::node lands")]
    Unreachable(Addr),
    /// No listener on that port.
    #[error("connection refused")]
    Refused,
    /// Not registered yet.
    #[error("not registered with the registry yet")]
    NoAddress,
}

/// Node counters for `info`.
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    /// Open streams.
    pub streams: usize,
    /// Bound ports (application and built-in).
    pub ports: usize,
}

/// What the node tells its driver.
#[derive(Debug)]
#[allow(dead_code)]
pub enum NodeEvent {
    /// Registered with the registry.
    Registered {
        addr: Addr,
        observed: Option<SocketAddr>,
    },
    /// The registry connection was lost.
    RegistryLost,
    /// A stream arrived on a listened port.
    Incoming {
        stream: StreamId,
        local_port: u16,
        remote: AddrPort,
    },
    /// A dialled stream is established.
    Connected { stream: StreamId },
    /// Bytes are ready for `recv`.
    Readable { stream: StreamId },
    /// `send` accepts bytes again.
    Writable { stream: StreamId },
    /// The stream ended.
    Closed {
        stream: StreamId,
        reason: CloseReason,
    },
    /// A datagram arrived.
    Datagram {
        src: AddrPort,
        dst_port: u16,
        data: Vec<u8>,
    },
    /// A control request finished.
    Reply {
        request: RequestId,
        result: Result<Value, String>,
    },
}

#[derive(Debug)]
struct Stream {
    peer: StreamId,
    rx: Vec<u8>,
    peer_closed: bool,
    blocked: bool,
    service: Option<u16>,
}

#[derive(Debug)]
enum Pending {
    Register,
    Heartbeat,
    App(RequestId),
}

/// The loopback stand-in node.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    identity: Identity,
    addr: Option<Addr>,
    streams: BTreeMap<StreamId, Stream>,
    listeners: BTreeSet<u16>,
    broker: Broker,
    events: VecDeque<NodeEvent>,
    registry_out: VecDeque<Vec<u8>>,
    registry_in: Vec<u8>,
    pending: VecDeque<Pending>,
    heartbeat_at: Option<Instant>,
    next_id: u64,
}

impl Node {
    /// Creates a node. The seed is unused by the stand-in (it has no randomness).
    pub fn new(config: NodeConfig, identity: Identity, _seed: [u8; 32], _now: Instant) -> Node {
        Node {
            config,
            identity,
            addr: None,
            streams: BTreeMap::new(),
            listeners: BTreeSet::new(),
            broker: Broker::default(),
            events: VecDeque::new(),
            registry_out: VecDeque::new(),
            registry_in: Vec::new(),
            pending: VecDeque::new(),
            heartbeat_at: None,
            next_id: 1,
        }
    }

    /// The address, once registered.
    pub fn address(&self) -> Option<Addr> {
        self.addr
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        NodeStats {
            streams: self.streams.len(),
            ports: self.listeners.len() + 2,
        }
    }

    /// The public key in base64 (for `info`).
    pub fn public_key_b64(&self) -> String {
        self.identity.public_key_b64()
    }

    /// UDP input: the stand-in has no tunnel and drops it.
    pub fn handle_datagram(&mut self, _now: Instant, _from: SocketAddr, _bytes: &mut [u8]) {}

    /// UDP output: the stand-in never transmits.
    pub fn poll_transmit(
        &mut self,
        _now: Instant,
        _buf: &mut Vec<u8>,
    ) -> Option<crate::shim::Transmit> {
        None
    }

    /// The bound UDP address (unused by the stand-in).
    pub fn set_local_endpoint(&mut self, _local: SocketAddr) {}

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

mod broker;
mod registry;
mod streams;
