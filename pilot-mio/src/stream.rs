//! Virtual-port streams as `std::io::Read`/`Write`, and listeners that accept them.
//!
//! A [`Stream`] holds a reference to its node. `read` returns whatever the transport has
//! buffered; when nothing is there it turns the node's loop until bytes, end of stream, the
//! read timeout or a stop. `write` queues what the transport's send buffer takes and turns the
//! loop while it is full. Bytes written leave only while the loop turns: keep calling into the
//! node (or [`Stream::finish`]) after the last write.
//!
//! # Limitations
//!
//! - Dropping a `Stream` closes it gracefully (FIN after the queued bytes), but those bytes and
//!   the FIN are sent only while the node keeps turning.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use pilot_proto::agent::AgentError;
use pilot_proto::node::NodeError;
use pilot_proto::transport::{CloseReason, ConnId, StreamError};
use pilot_proto::wire::addr::AddrPort;

use crate::error::{MioError, Result};
use crate::node::MioNode;

/// Longest single turn inside a blocking read or write without a timeout.
const SLICE: Duration = Duration::from_millis(250);

/// One virtual-port byte stream. `Read` and `Write` block by turning the node's loop.
#[derive(Debug)]
pub struct Stream {
    node: MioNode,
    id: ConnId,
    remote: AddrPort,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    closed_by_us: bool,
}

impl Stream {
    pub(crate) fn new(node: MioNode, id: ConnId, remote: AddrPort) -> Self {
        Self {
            node,
            id,
            remote,
            read_timeout: None,
            write_timeout: None,
            closed_by_us: false,
        }
    }

    /// The peer's address and port.
    pub fn remote(&self) -> AddrPort {
        self.remote
    }

    /// How long `read` may block (`None`: until data, end of stream or a stop).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// How long `write` may block while the send buffer is full.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    /// Closes our sending side: the FIN follows the queued bytes. Reading stays possible.
    pub fn shutdown(&mut self) {
        if !self.closed_by_us {
            self.closed_by_us = true;
            let id = self.id;
            self.node.with(|d, now| d.agent.close(now, id));
        }
    }

    /// Closes our side and turns the loop until the stream has fully closed (every byte
    /// acknowledged and the peer closed too).
    ///
    /// # Errors
    /// [`MioError::TimedOut`], [`MioError::StreamClosed`] when it ended abnormally,
    /// [`MioError::Stopped`].
    pub fn finish(mut self, timeout: Duration) -> Result<()> {
        self.shutdown();
        let id = self.id;
        let done = |n: &MioNode| n.stream_state(id).is_none_or(|s| s.closed.is_some());
        self.node.run_until(done, Instant::now() + timeout)?;
        match self.node.stream_state(id).and_then(|s| s.closed) {
            None | Some(CloseReason::Normal) => Ok(()),
            Some(reason) => Err(MioError::StreamClosed(reason)),
        }
    }

    fn closed_reason(&self) -> Option<CloseReason> {
        self.node.stream_state(self.id).and_then(|s| s.closed)
    }

    /// One turn of the loop, bounded by the deadline; `TimedOut` once it passed.
    fn wait(&self, deadline: Option<Instant>) -> io::Result<()> {
        let slice = match deadline {
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                left.min(SLICE)
            }
            None => SLICE,
        };
        self.node.turn(slice).map_err(to_io)
    }
}

impl io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = self.read_timeout.map(|t| Instant::now() + t);
        let id = self.id;
        loop {
            match self.node.with(|d, _| d.agent.recv(id, buf)) {
                Ok(n) => return Ok(n),
                Err(e) if would_block(&e) => {}
                Err(AgentError::Node(NodeError::Stream(StreamError::UnknownConnection))) => {
                    return match self.closed_reason() {
                        None | Some(CloseReason::Normal) => Ok(0),
                        Some(reason) => Err(closed(reason)),
                    };
                }
                Err(e) => return Err(io::Error::other(e)),
            }
            self.wait(deadline)?;
        }
    }
}

impl io::Write for Stream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let deadline = self.write_timeout.map(|t| Instant::now() + t);
        let id = self.id;
        loop {
            match self.node.command(|agent, now| agent.send(now, id, data)) {
                Ok(0) => {}
                Ok(n) => return Ok(n),
                Err(MioError::Agent(e)) if would_block(&e) => {}
                Err(MioError::Agent(AgentError::Node(NodeError::Stream(StreamError::Ended(
                    reason,
                ))))) => return Err(closed(reason)),
                Err(e) => return Err(to_io(e)),
            }
            if let Some(reason) = self.closed_reason() {
                return Err(closed(reason));
            }
            self.wait(deadline)?;
        }
    }

    /// Bytes are handed to the transport by `write`; they leave as the loop turns.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Stream {
    // Limitation: the FIN queued here leaves only while the node keeps turning.
    fn drop(&mut self) {
        let id = self.id;
        let close = !self.closed_by_us;
        self.node.try_with(|d, now| {
            if close {
                d.agent.close(now, id);
            }
            d.state.streams.remove(&id);
        });
    }
}

fn would_block(error: &AgentError) -> bool {
    matches!(
        error,
        AgentError::Node(NodeError::Stream(StreamError::WouldBlock))
    )
}

fn closed(reason: CloseReason) -> io::Error {
    let kind = match reason {
        CloseReason::Refused => io::ErrorKind::ConnectionRefused,
        CloseReason::ConnectTimeout | CloseReason::IdleTimeout => io::ErrorKind::TimedOut,
        CloseReason::Aborted => io::ErrorKind::ConnectionAborted,
        _ => io::ErrorKind::ConnectionReset,
    };
    io::Error::new(kind, MioError::StreamClosed(reason))
}

/// Maps crate errors into `io::Error` for the `Read`/`Write` impls (kind `Interrupted` for a
/// stop, `TimedOut` for a deadline).
pub(crate) fn to_io(error: MioError) -> io::Error {
    match error {
        MioError::Io(e) => e,
        MioError::TimedOut => io::ErrorKind::TimedOut.into(),
        MioError::Stopped => io::Error::new(io::ErrorKind::Interrupted, MioError::Stopped),
        other => io::Error::other(other),
    }
}

/// Accepts streams on one virtual port. Dropping it stops listening.
#[derive(Debug)]
pub struct Listener {
    node: MioNode,
    port: u16,
}

impl Listener {
    pub(crate) fn new(node: MioNode, port: u16) -> Self {
        Self { node, port }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Turns the loop until a peer connects.
    ///
    /// # Errors
    /// [`MioError::TimedOut`], [`MioError::Stopped`].
    pub fn accept(&self, timeout: Duration) -> Result<Stream> {
        let port = self.port;
        let pop = |n: &MioNode| {
            n.with(|d, _| {
                d.state
                    .incoming
                    .get_mut(&port)
                    .and_then(VecDeque::pop_front)
            })
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((id, remote)) = pop(&self.node) {
                return Ok(Stream::new(self.node.clone(), id, remote));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(MioError::TimedOut);
            }
            self.node.turn(left.min(SLICE))?;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let port = self.port;
        self.node.try_with(|d, now| {
            d.agent.unlisten(port);
            for (id, _) in d.state.incoming.remove(&port).unwrap_or_default() {
                d.agent.close(now, id);
                d.state.streams.remove(&id);
            }
        });
    }
}
