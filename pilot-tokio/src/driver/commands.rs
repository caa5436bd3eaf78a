//! What IPC sessions ask of the driver task, and what the driver pushes back to them.

use pilot_proto::agent::NetworkRequest;
use pilot_proto::registry::NetworkTokens;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::shim::addr::AddrPort;

/// Identifies one IPC session (one connected local client).
pub type SessionId = u64;

/// A result whose error is the text sent to the client in an IPC `Error`.
pub type Reply<T> = oneshot::Sender<Result<T, String>>;

/// A request from an IPC session to the driver task.
#[derive(Debug)]
pub enum Command {
    /// A session connected; pushes for it go to `push`.
    SessionOpened {
        session: SessionId,
        push: mpsc::Sender<Push>,
    },
    /// A session ended: close its connections and unbind its ports.
    SessionClosed { session: SessionId },
    /// Bind a virtual port for this session.
    Bind {
        session: SessionId,
        port: u16,
        reply: Reply<()>,
    },
    /// Open a stream; the reply is the connection id.
    Dial {
        session: SessionId,
        remote: AddrPort,
        reply: Reply<u32>,
    },
    /// Queue bytes on a connection; the reply comes once the node accepted all of them.
    Send {
        session: SessionId,
        conn: u32,
        data: Vec<u8>,
        reply: Reply<()>,
    },
    /// Close a connection.
    Close {
        session: SessionId,
        conn: u32,
        reply: Reply<()>,
    },
    /// Send one datagram.
    SendTo {
        dst: AddrPort,
        data: Vec<u8>,
        reply: Reply<()>,
    },
    /// A control request answered with JSON.
    Control { op: ControlOp, reply: Reply<Value> },
    /// Publish an event from the daemon itself (bridges such as the inbound webhook receiver)
    /// to its own broker. The reply is the event's sequence number, sent once the event is as
    /// durable as the daemon's event log makes it (see `driver::eventlog`).
    PublishDurable {
        topic: String,
        payload: Vec<u8>,
        reply: Reply<u64>,
    },
    /// Stop the daemon.
    Shutdown,
}

/// Control requests (info, registry and trust operations).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum ControlOp {
    /// The daemon info object.
    Info,
    /// Resolve a hostname through the registry.
    Resolve(String),
    /// Set ("" clears) the hostname.
    SetHostname(String),
    /// Ask a peer for trust.
    Handshake { node: u32, justification: String },
    /// Approve a pending trust request.
    Approve(u32),
    /// Reject a pending trust request.
    Reject { node: u32, reason: String },
    /// List pending trust requests.
    Pending,
    /// List trusted peers.
    Trusted,
    /// Revoke trust.
    Untrust(u32),
    /// Make the node public (true) or private at the registry.
    SetVisibility(bool),
    /// Remove this node's registry entry.
    Deregister,
    /// Replace this node's tags at the registry.
    SetTags(Vec<String>),
    /// A network operation at the registry (an IPC extension).
    Network {
        request: NetworkRequest,
        tokens: NetworkTokens,
    },
    /// A v0.5 command this daemon does not support yet (name for the error text).
    Unsupported(&'static str),
}

/// Unsolicited messages from the driver to one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// A connection arrived on a port the session bound.
    Accept {
        local_port: u16,
        conn: u32,
        remote: AddrPort,
    },
    /// Bytes arrived on a connection.
    Recv { conn: u32, data: Vec<u8> },
    /// A connection ended.
    CloseOk { conn: u32 },
    /// A datagram arrived.
    RecvFrom {
        src: AddrPort,
        dst_port: u16,
        data: Vec<u8>,
    },
}
