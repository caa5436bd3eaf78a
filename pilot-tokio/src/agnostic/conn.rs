//! Streams on virtual ports for the runtime-agnostic client: [`Conn`] (futures-io `AsyncRead`
//! + `AsyncWrite`) and [`Listener`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_channel::Receiver;
use futures_core::Stream as _;
use futures_io::{AsyncRead, AsyncWrite};

use super::{Accepted, Client, ConnEvent, Waiter};
use crate::client_proto::routes::RecvBuf;
use crate::client_proto::{CHUNK, ClientError, decode_error, encode, expect_send_ok, to_io};
use crate::shim::addr::AddrPort;
use crate::shim::ipc::Message;

type Pending = Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>>;

/// A stream to or from a virtual port. Dropping it closes the stream.
pub struct Conn {
    id: u32,
    remote: AddrPort,
    client: Client,
    /// Boxed because an `async_channel::Receiver` is not `Unpin`.
    rx: Pin<Box<Receiver<ConnEvent>>>,
    read: RecvBuf,
    writing: Option<Pending>,
    closed: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// Accepts streams on a bound port.
#[derive(Debug)]
pub struct Listener {
    port: u16,
    client: Client,
    rx: Receiver<Accepted>,
}

impl Client {
    /// Opens a stream to `remote`.
    pub async fn dial(&self, remote: AddrPort) -> Result<Conn, ClientError> {
        let (tx, rx) = async_channel::bounded(1);
        self.send_tagged(encode(&Message::Dial { remote }), Waiter::Dial(tx))
            .await?;
        let (id, crx) = rx
            .recv()
            .await
            .map_err(|_| ClientError::Disconnected)?
            .map_err(ClientError::Daemon)?;
        Ok(Conn::new(id, remote, self.clone(), crx))
    }

    /// Binds `port` and returns a listener for streams arriving on it.
    pub async fn listen(&self, port: u16) -> Result<Listener, ClientError> {
        let (tx, rx) = async_channel::bounded(64);
        if let Ok(mut t) = self.inner.tables.lock() {
            t.bind(port, tx);
        }
        let body = self.request(encode(&Message::Bind { port })).await?;
        match Message::decode(&body) {
            Ok(Message::BindOk { .. }) => Ok(Listener {
                port,
                client: self.clone(),
                rx,
            }),
            _ => {
                if let Ok(mut t) = self.inner.tables.lock() {
                    t.unbind(port);
                }
                Err(decode_error(&body))
            }
        }
    }
}

impl Listener {
    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the next stream; `None` when the client's connection to the daemon ended.
    pub async fn accept(&mut self) -> Option<(Conn, AddrPort)> {
        let (id, remote, rx) = self.rx.recv().await.ok()?;
        Some((Conn::new(id, remote, self.client.clone(), rx), remote))
    }
}

impl Conn {
    fn new(id: u32, remote: AddrPort, client: Client, rx: Receiver<ConnEvent>) -> Conn {
        Conn {
            id,
            remote,
            client,
            rx: Box::pin(rx),
            read: RecvBuf::default(),
            writing: None,
            closed: false,
        }
    }

    /// The daemon's connection id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The other end.
    pub fn remote(&self) -> AddrPort {
        self.remote
    }

    /// Sends all of `data`, waiting until the daemon has accepted it.
    pub async fn send_all(&self, data: &[u8]) -> Result<(), ClientError> {
        for chunk in data.chunks(CHUNK) {
            send_chunk(self.client.clone(), self.id, chunk.to_vec()).await?;
        }
        Ok(())
    }

    /// Closes the stream and waits for the daemon to confirm.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.closed = true;
        let body = self
            .client
            .request(encode(&Message::Close { conn: self.id }))
            .await?;
        match Message::decode(&body) {
            Ok(Message::CloseOk { .. }) => Ok(()),
            _ => Err(decode_error(&body)),
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.read.wants_data() {
            match ready!(self.rx.as_mut().poll_next(cx)) {
                Some(ConnEvent::Data(data)) => self.read.fill(data),
                Some(ConnEvent::Closed) | None => self.read.finish(),
            }
        }
        Poll::Ready(())
    }

    fn poll_pending_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(pending) = self.writing.as_mut() {
            let result = ready!(pending.as_mut().poll(cx));
            self.writing = None;
            result.map_err(to_io)?;
        }
        Poll::Ready(Ok(()))
    }

    /// Queues an untagged `Close` once (its `CloseOk` is ignored by the reader).
    fn close_best_effort(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self
                .client
                .inner
                .out
                .try_send(encode(&Message::Close { conn: self.id }));
        }
    }
}

async fn send_chunk(client: Client, conn: u32, data: Vec<u8>) -> Result<(), ClientError> {
    let body = client
        .request(encode(&Message::Send { conn, data }))
        .await?;
    expect_send_ok(&body)
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_fill(cx));
        Poll::Ready(Ok(self.read.read_into(out)))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending_write(cx))?;
        let n = data.len().min(CHUNK);
        let mut fut: Pending =
            Box::pin(send_chunk(self.client.clone(), self.id, data[..n].to_vec()));
        match fut.as_mut().poll(cx) {
            Poll::Ready(result) => result.map_err(to_io)?,
            Poll::Pending => self.writing = Some(fut),
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_pending_write(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending_write(cx))?;
        self.close_best_effort();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Ok(mut t) = self.client.inner.tables.lock() {
            t.remove_conn(self.id);
        }
        self.close_best_effort();
    }
}
