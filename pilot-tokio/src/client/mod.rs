//! The async client library: talk to the local daemon over its IPC socket.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pilot_tokio::ClientError> {
//! use futures_core::Stream as _;
//! let client = pilot_tokio::Client::connect("/home/me/.pilot/pilot.sock").await?;
//! let mut events = client.subscribe("payments.*").await?;
//! client.publish("payments.settled", br#"{"id":1}"#).await?;
//! while let Some(event) = events.next_event().await {
//!     let event = event?;
//!     println!("[{}] {}", event.topic, String::from_utf8_lossy(&event.payload));
//! }
//! # Ok(()) }
//! ```
//!
//! Every request is sent tagged (the `0x80` extension in `framing`), so replies are matched by
//! tag, not by arrival order, and an error always reaches the call that caused it.
//!
//! # Limitations
//!
//! - Data for a connection is queued (256 messages) until the application reads it; when that
//!   queue is full the whole client waits, so one stalled reader delays the client's other
//!   connections (not other clients).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

pub(crate) use crate::client_proto::{CHUNK, decode_error, encode, expect_send_ok};
use crate::client_proto::{address_from_info, connect_error, json_reply, shutdown_pid};
use crate::framing::{self, SHUTDOWN};
use crate::shim::addr::{Addr, AddrPort};
use crate::shim::extension::Extension;
use crate::shim::ipc::Message;

mod conn;
mod events;
mod reader;

pub use crate::client_proto::{
    ClientError, Event, MAX_PAYLOAD, MAX_TOPIC, PORT_ECHO, PORT_EVENTS, encode_event,
};
pub use conn::{Conn, Listener};
pub use events::{EventItem, EventSession, Subscription};

pub(crate) enum Waiter {
    Plain(oneshot::Sender<Vec<u8>>),
    Dial(oneshot::Sender<Result<(u32, mpsc::Receiver<ConnEvent>), String>>),
}

/// What the reader delivers to one connection.
#[derive(Debug)]
pub(crate) enum ConnEvent {
    Data(Vec<u8>),
    Closed,
}

/// An accepted connection as the reader hands it to a listener.
pub(crate) type Accepted = (u32, AddrPort, mpsc::Receiver<ConnEvent>);

#[derive(Default)]
pub(crate) struct Tables {
    pub(crate) pending: HashMap<u32, Waiter>,
    pub(crate) conns: HashMap<u32, mpsc::Sender<ConnEvent>>,
    pub(crate) listeners: HashMap<u16, mpsc::Sender<Accepted>>,
    pub(crate) datagrams: Option<mpsc::Sender<(AddrPort, u16, Vec<u8>)>>,
    pub(crate) closed: bool,
}

pub(crate) struct Inner {
    out: mpsc::Sender<Vec<u8>>,
    next_tag: AtomicU32,
    pub(crate) tables: Mutex<Tables>,
}

/// A connection to the local daemon. Cheap to clone; all clones share one socket.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the daemon's IPC socket.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| connect_error(path, e))?;
        let (rd, mut wr) = stream.into_split();
        let (out, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
        tokio::spawn(async move {
            while let Some(body) = out_rx.recv().await {
                if framing::write_frame(&mut wr, &body).await.is_err() {
                    break;
                }
            }
        });
        let inner = Arc::new(Inner {
            out,
            next_tag: AtomicU32::new(1),
            tables: Mutex::default(),
        });
        tokio::spawn(reader::run(rd, inner.clone()));
        Ok(Client { inner })
    }

    /// The daemon's `info` object.
    pub async fn info(&self) -> Result<Value, ClientError> {
        self.json(Message::Info).await
    }

    /// This node's virtual address.
    pub async fn address(&self) -> Result<Addr, ClientError> {
        address_from_info(&self.info().await?)
    }

    /// Resolves a hostname through the registry.
    pub async fn resolve_hostname(&self, name: &str) -> Result<Value, ClientError> {
        self.json(Message::ResolveHostname {
            name: name.to_owned(),
        })
        .await
    }

    /// Sets ("" clears) this node's hostname.
    pub async fn set_hostname(&self, name: &str) -> Result<Value, ClientError> {
        self.json(Message::SetHostname {
            name: name.to_owned(),
        })
        .await
    }

    /// A trust request: `sub` is the v0.5 handshake sub-command, `node` and `text` its arguments.
    pub async fn handshake(
        &self,
        sub: u8,
        node: Option<u32>,
        text: &str,
    ) -> Result<Value, ClientError> {
        let mut args = node.map(|n| n.to_be_bytes().to_vec()).unwrap_or_default();
        args.extend_from_slice(text.as_bytes());
        self.json(Message::Handshake { sub, args }).await
    }

    /// Makes this node public (its endpoint resolvable by anyone) or private.
    pub async fn set_visibility(&self, public: bool) -> Result<Value, ClientError> {
        self.json(Message::SetVisibility { public }).await
    }

    /// Replaces this node's tags at the registry (at most 3; empty clears).
    pub async fn set_tags(&self, tags: &[String]) -> Result<Value, ClientError> {
        let json = serde_json::to_vec(tags).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.json(Message::SetTags { json }).await
    }

    /// Removes this node's entry from the registry until the daemon registers again.
    pub async fn deregister(&self) -> Result<Value, ClientError> {
        self.json(Message::Deregister).await
    }

    /// Sends one of this daemon's extension requests (networks) and returns its JSON reply.
    pub async fn extension(&self, request: &Extension) -> Result<Value, ClientError> {
        let json = serde_json::to_vec(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.json(Message::Extension { json }).await
    }

    /// Sets the webhook URL ("" clears).
    pub async fn set_webhook(&self, url: &str) -> Result<Value, ClientError> {
        self.json(Message::SetWebhook {
            url: url.to_owned(),
        })
        .await
    }

    /// Sends one datagram.
    pub async fn send_to(&self, dst: AddrPort, data: &[u8]) -> Result<(), ClientError> {
        let body = self
            .request(encode(&Message::SendTo {
                dst,
                data: data.to_vec(),
            }))
            .await?;
        expect_send_ok(&body)
    }

    /// Receives datagrams arriving at this node: `(source, destination port, data)`.
    pub fn datagrams(&self) -> mpsc::Receiver<(AddrPort, u16, Vec<u8>)> {
        let (tx, rx) = mpsc::channel(256);
        if let Ok(mut t) = self.inner.tables.lock() {
            t.datagrams = Some(tx);
        }
        rx
    }

    /// Asks the daemon to exit; returns its PID.
    pub async fn shutdown(&self) -> Result<u32, ClientError> {
        shutdown_pid(&self.request(vec![SHUTDOWN]).await?)
    }

    /// Sends one tagged request body and waits for its reply body.
    pub async fn request(&self, body: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.send_tagged(body, Waiter::Plain(tx)).await?;
        rx.await.map_err(|_| ClientError::Disconnected)
    }

    pub(crate) async fn send_tagged(
        &self,
        body: Vec<u8>,
        waiter: Waiter,
    ) -> Result<(), ClientError> {
        let tag = self.inner.next_tag.fetch_add(1, Ordering::Relaxed);
        {
            let mut t = self
                .inner
                .tables
                .lock()
                .map_err(|_| ClientError::Disconnected)?;
            if t.closed {
                return Err(ClientError::Disconnected);
            }
            t.pending.insert(tag, waiter);
        }
        self.inner
            .out
            .send(framing::with_tag(Some(tag), body))
            .await
            .map_err(|_| ClientError::Disconnected)
    }

    async fn json(&self, message: Message) -> Result<Value, ClientError> {
        json_reply(&self.request(encode(&message)).await?)
    }
}
