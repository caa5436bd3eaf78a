//! The runtime-agnostic client: the same daemon IPC client as [`crate::client`], for programs
//! on async-std, smol or any other executor. Built on `async-io` (the reactor async-std and smol
//! share) and `futures-io`; it never touches tokio.
//!
//! ```no_run
//! # fn demo() -> Result<(), pilot_tokio::ClientError> {
//! futures_lite::future::block_on(async {
//!     let client = pilot_tokio::agnostic::Client::connect("/home/me/.pilot/pilot.sock").await?;
//!     let mut events = client.subscribe("tasks.*").await?;
//!     client.publish("tasks.complete", br#"{"id":1}"#).await?;
//!     while let Some(event) = events.next_event().await {
//!         println!("[{}] {:?}", event?.topic, "…");
//!     }
//!     Ok(())
//! })
//! # }
//! ```
//!
//! Requests are tagged exactly as in the tokio client, and the codecs are shared
//! ([`crate::client_proto`], [`crate::framing`], [`crate::shim::ipc`]).
//!
//! # Limitations
//!
//! - Without a runtime to spawn on, each [`Client`] runs its socket reader and writer on one
//!   dedicated OS thread (driven by `async_io::block_on`); the thread ends when the last clone
//!   of the client (and every `Conn`/`Subscription` made from it) is dropped or the daemon
//!   closes the socket.
//! - Data for a connection is queued (256 messages) until the application reads it; when that
//!   queue is full the whole client waits, as in the tokio client.
//! - Datagrams, hostnames, trust and webhook requests are not wrapped here; use
//!   [`Client::request`] with an encoded `crate::shim::ipc::Message` for those.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_channel::{Receiver, Sender};
use async_io::Async;
use serde_json::Value;

use crate::client_proto::routes::Routes;
use crate::client_proto::{
    ClientError, address_from_info, connect_error, encode, json_reply, shutdown_pid,
};
use crate::framing::{self, SHUTDOWN};
use crate::shim::addr::{Addr, AddrPort};
use crate::shim::ipc::Message;

mod conn;
mod events;
mod io;

pub use crate::client_proto::{Event, PORT_ECHO, PORT_EVENTS};
pub use conn::{Conn, Listener};
pub use events::Subscription;

/// Requests queued for the writer before callers wait.
const OUT_QUEUE: usize = 64;

/// Who waits for the reply to one tagged request.
enum Waiter {
    Plain(Sender<Vec<u8>>),
    Dial(Sender<Result<(u32, Receiver<ConnEvent>), String>>),
}

/// What the reader delivers to one connection.
#[derive(Debug)]
enum ConnEvent {
    Data(Vec<u8>),
    Closed,
}

/// An accepted connection as the reader hands it to a listener.
type Accepted = (u32, AddrPort, Receiver<ConnEvent>);

/// The reader's routing tables (shared bookkeeping, this client's channels).
type Tables = Routes<Waiter, Sender<ConnEvent>, Sender<Accepted>>;

struct Inner {
    out: Sender<Vec<u8>>,
    next_tag: AtomicU32,
    tables: Mutex<Tables>,
}

/// A connection to the local daemon, usable from any executor. Cheap to clone; all clones
/// share one socket.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("agnostic::Client").finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the daemon's IPC socket and starts the client's I/O thread.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let stream = Async::<UnixStream>::connect(path)
            .await
            .map_err(|e| connect_error(path, e))?;
        let (out, out_rx) = async_channel::bounded(OUT_QUEUE);
        let inner = Arc::new(Inner {
            out,
            next_tag: AtomicU32::new(1),
            tables: Mutex::default(),
        });
        io::start(stream, out_rx, Arc::downgrade(&inner))?;
        Ok(Client { inner })
    }

    /// The daemon's `info` object.
    pub async fn info(&self) -> Result<Value, ClientError> {
        json_reply(&self.request(encode(&Message::Info)).await?)
    }

    /// This node's virtual address.
    pub async fn address(&self) -> Result<Addr, ClientError> {
        address_from_info(&self.info().await?)
    }

    /// Asks the daemon to exit; returns its PID.
    pub async fn shutdown(&self) -> Result<u32, ClientError> {
        shutdown_pid(&self.request(vec![SHUTDOWN]).await?)
    }

    /// Sends one tagged request body and waits for its reply body.
    pub async fn request(&self, body: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let (tx, rx) = async_channel::bounded(1);
        self.send_tagged(body, Waiter::Plain(tx)).await?;
        rx.recv().await.map_err(|_| ClientError::Disconnected)
    }

    async fn send_tagged(&self, body: Vec<u8>, waiter: Waiter) -> Result<(), ClientError> {
        let tag = self.inner.next_tag.fetch_add(1, Ordering::Relaxed);
        let tables = self.inner.tables.lock();
        tables
            .map_err(|_| ClientError::Disconnected)?
            .expect_reply(tag, waiter)?;
        self.inner
            .out
            .send(framing::with_tag(Some(tag), body))
            .await
            .map_err(|_| ClientError::Disconnected)
    }
}
