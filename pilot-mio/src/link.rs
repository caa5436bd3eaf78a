//! A TCP byte stream the core asks for (the registry stream, and the optional beacon stream)
//! over mio: a non-blocking connect with a deadline, reads until `WouldBlock`, and an output
//! buffer flushed whenever the socket is writable. Reconnection is the core's decision
//! (`AgentEvent::ConnectRegistry` / `ConnectBeaconStream`, with its own back-off); this module
//! only carries bytes and reports what happened as [`LinkIo`].
//!
//! # Limitations
//!
//! - At most 1 MiB is read per readiness event; more waits for the next event of the socket.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

/// How long a connect attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes read per readiness event before yielding (the socket stays readable).
const MAX_READ_PER_EVENT: usize = 1 << 20;

/// Tokens from this value up name registry connection attempts (one per attempt).
pub(crate) const REGISTRY_TOKENS: usize = 16;
/// Tokens from this value up name beacon-stream connection attempts.
pub(crate) const BEACON_TOKENS: usize = usize::MAX / 2;

/// What happened on the stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LinkIo {
    /// The connect completed.
    Connected,
    /// Bytes arrived.
    Bytes(Vec<u8>),
    /// The stream closed, broke or could not be opened.
    Closed,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    token: Token,
    connected: bool,
    connect_deadline: Instant,
    out: Vec<u8>,
}

/// One stream to a fixed target, if one is open or opening.
#[derive(Debug)]
pub(crate) struct ByteLink {
    name: &'static str,
    target: SocketAddr,
    conn: Option<Conn>,
    first_token: usize,
    attempts: usize,
}

impl ByteLink {
    /// A link named `name` (for logs) whose attempts use tokens from `first_token` up.
    pub(crate) fn new(name: &'static str, target: SocketAddr, first_token: usize) -> Self {
        Self {
            name,
            target,
            conn: None,
            first_token,
            attempts: 0,
        }
    }

    /// What it connects to, for logs.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Closes any open stream and starts a new connect. `Err` means it failed at once.
    pub(crate) fn connect(&mut self, registry: &Registry, now: Instant) -> std::io::Result<()> {
        self.close(registry);
        self.attempts += 1;
        let token = Token(self.first_token.wrapping_add(self.attempts));
        let mut stream = TcpStream::connect(self.target)?;
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        tracing::debug!(link = self.name, target = %self.target, "connecting");
        self.conn = Some(Conn {
            stream,
            token,
            connected: false,
            connect_deadline: now + CONNECT_TIMEOUT,
            out: Vec::new(),
        });
        Ok(())
    }

    /// Drops the stream (nothing is reported).
    pub(crate) fn close(&mut self, registry: &Registry) {
        if let Some(mut conn) = self.conn.take() {
            let _ = registry.deregister(&mut conn.stream);
        }
    }

    /// When a pending connect gives up.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.conn
            .as_ref()
            .filter(|c| !c.connected)
            .map(|c| c.connect_deadline)
    }

    /// Whether the stream is open (connected, not yet closed).
    pub(crate) fn is_connected(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.connected)
    }

    /// Whether `token` belongs to the current attempt.
    pub(crate) fn owns(&self, token: Token) -> bool {
        self.conn.as_ref().is_some_and(|c| c.token == token)
    }

    /// A pending connect whose deadline passed is closed.
    pub(crate) fn check_deadline(&mut self, registry: &Registry, now: Instant) -> Option<LinkIo> {
        if self.deadline().is_some_and(|at| now >= at) {
            tracing::debug!(link = self.name, "connect timed out");
            self.close(registry);
            return Some(LinkIo::Closed);
        }
        None
    }

    /// Handles readiness of the current stream; returns what happened, in order.
    pub(crate) fn on_ready(&mut self, registry: &Registry, buf: &mut [u8]) -> Vec<LinkIo> {
        let mut out = Vec::new();
        let Some(conn) = self.conn.as_mut() else {
            return out;
        };
        if !conn.connected {
            match connect_state(&conn.stream) {
                Some(true) => {
                    conn.connected = true;
                    out.push(LinkIo::Connected);
                }
                Some(false) => return out,
                None => {
                    self.close(registry);
                    out.push(LinkIo::Closed);
                    return out;
                }
            }
        }
        let broken = read_all(conn, buf, &mut out) || flush(conn).is_err();
        if broken {
            self.close(registry);
            out.push(LinkIo::Closed);
        }
        out
    }

    /// Queues bytes for the peer and writes what the socket takes. Bytes offered while no
    /// stream is connected are dropped (the core re-sends after the next connect).
    pub(crate) fn send(&mut self, registry: &Registry, bytes: &[u8]) -> Option<LinkIo> {
        let conn = self.conn.as_mut().filter(|c| c.connected)?;
        conn.out.extend_from_slice(bytes);
        if flush(conn).is_err() {
            self.close(registry);
            return Some(LinkIo::Closed);
        }
        None
    }
}

/// `Some(true)` connected, `Some(false)` still connecting, `None` failed.
fn connect_state(stream: &TcpStream) -> Option<bool> {
    if let Ok(Some(_)) | Err(_) = stream.take_error() {
        return None;
    }
    match stream.peer_addr() {
        Ok(_) => Some(true),
        Err(e) if e.kind() == ErrorKind::NotConnected => Some(false),
        Err(_) => None,
    }
}

/// Reads until `WouldBlock` (or the per-event cap); true when the stream ended or broke.
// Limitation: a peer that sends more than the per-event cap in one burst is read further only
// at its next readiness event (edge-triggered); registry answers are far smaller.
fn read_all(conn: &mut Conn, buf: &mut [u8], out: &mut Vec<LinkIo>) -> bool {
    let mut total = 0;
    while total < MAX_READ_PER_EVENT {
        match conn.stream.read(buf) {
            Ok(0) => return true,
            Ok(n) => {
                total += n;
                out.push(LinkIo::Bytes(buf[..n].to_vec()));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
    false
}

/// Writes queued bytes until the socket would block.
fn flush(conn: &mut Conn) -> std::io::Result<()> {
    while !conn.out.is_empty() {
        match conn.stream.write(&conn.out) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.out.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
