//! The TCP connection to the registry (and, with the same code, the beacon stream): connect with a
//! timeout, a reader and a writer task. The agent decides when to (re)connect
//! (`AgentEvent::ConnectRegistry`, with its own back-off); the driver sees only [`RegistryIo`]
//! events.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What happened on the registry connection (tagged with the attempt it belongs to).
#[derive(Debug)]
pub(super) enum RegistryIo {
    Connected(u64, mpsc::UnboundedSender<Vec<u8>>),
    Bytes(u64, Vec<u8>),
    Closed(u64),
}

/// The driver's handle on the registry connection.
#[derive(Debug)]
pub(super) struct RegistryLink {
    target: Option<SocketAddr>,
    writer: Option<mpsc::UnboundedSender<Vec<u8>>>,
    events_tx: mpsc::Sender<RegistryIo>,
    pub(super) events: mpsc::Receiver<RegistryIo>,
    generation: u64,
    pub(super) reconnect_at: Option<Instant>,
}

impl RegistryLink {
    pub(super) fn new(target: Option<SocketAddr>) -> RegistryLink {
        let (events_tx, events) = mpsc::channel(256);
        RegistryLink {
            target,
            writer: None,
            events_tx,
            events,
            generation: 0,
            reconnect_at: None,
        }
    }

    /// Drops the current connection (if any) and connects again at the next turn.
    pub(super) fn request_connect(&mut self, now: Instant) {
        self.writer = None;
        self.generation += 1;
        self.reconnect_at = Some(now);
    }

    /// Starts a connection attempt if one is due.
    pub(super) fn maybe_connect(&mut self, now: Instant) {
        let (Some(target), Some(at)) = (self.target, self.reconnect_at) else {
            return;
        };
        if now < at {
            return;
        }
        self.reconnect_at = None;
        self.generation += 1;
        tokio::spawn(connect(target, self.generation, self.events_tx.clone()));
    }

    /// Whether there is an address to connect to.
    pub(super) fn has_target(&self) -> bool {
        self.target.is_some()
    }

    /// Takes the event receiver, for a `select!` outside the driver (a closed one is left).
    pub(super) fn take_events(&mut self) -> mpsc::Receiver<RegistryIo> {
        std::mem::replace(&mut self.events, mpsc::channel(1).1)
    }

    /// Whether an event belongs to the current attempt.
    pub(super) fn is_current(&self, generation: u64) -> bool {
        generation == self.generation
    }

    pub(super) fn on_connected(&mut self, writer: mpsc::UnboundedSender<Vec<u8>>) {
        self.writer = Some(writer);
    }

    /// The connection ended or failed; the agent asks again when it wants a new one.
    pub(super) fn on_closed(&mut self) {
        self.writer = None;
    }

    /// Queues bytes for the registry; dropped when not connected (the agent re-sends).
    pub(super) fn send(&mut self, bytes: Vec<u8>) {
        if let Some(w) = &self.writer {
            let _ = w.send(bytes);
        }
    }
}

async fn connect(target: SocketAddr, generation: u64, events: mpsc::Sender<RegistryIo>) {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(s)) => {
            // Replies are small request/response frames: Nagle would hold them for an ACK.
            let _ = s.set_nodelay(true);
            s
        }
        Ok(Err(e)) => {
            tracing::debug!(%target, error = %e, "connect failed");
            let _ = events.send(RegistryIo::Closed(generation)).await;
            return;
        }
        Err(_) => {
            tracing::debug!(%target, "connect timed out");
            let _ = events.send(RegistryIo::Closed(generation)).await;
            return;
        }
    };
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    if events
        .send(RegistryIo::Connected(generation, tx))
        .await
        .is_err()
    {
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if events
                    .send(RegistryIo::Bytes(generation, buf[..n].to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = events.send(RegistryIo::Closed(generation)).await;
}
