//! The driver boundary: the [`Machine`] trait a simulated host runs, and the reliable-stream
//! types it uses.
//!
//! A machine is the sans-IO state machine of one host (a pilot node, a beacon, a registry),
//! wrapped so that the simulator can make exactly the calls the tokio and mio drivers make. This
//! module owns only types; it never touches the event queue.
//!
//! # The driving contract
//!
//! After every input (`handle_datagram`, `handle_timeout`, `handle_stream`) and once after the
//! machine is created, the simulator:
//!
//! 1. calls `poll_transmit` until it returns `None`, sending each datagram from the host's
//!    primary UDP port;
//! 2. calls `poll_stream` until it returns `None`, carrying out each stream command;
//! 3. calls `poll_timeout` and arms the host's single timer; `handle_timeout` is called once
//!    virtual time reaches that instant.
//!
//! Each drain is bounded (see [`DRAIN_LIMIT`]) so that a machine that never returns `None`
//! cannot hang a test.
//!
//! A `pilot-proto` state machine's `poll_event` output is the application's business: the
//! wrapper implementing [`Machine`] drains it itself after each call (as the daemon's
//! application layer does) and keeps whatever a test wants to inspect through
//! [`crate::Sim::machine`].

use std::any::Any;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use pilot_proto::Transmit;

use crate::HostId;

/// The most outputs drained from one machine after a single input before the simulator gives up
/// on that drain (and records it in the trace).
pub const DRAIN_LIMIT: usize = 100_000;

/// A host's protocol state machine, driven by the simulator through sans-IO calls.
///
/// Implementations wrap `pilot-proto` state machines. Everything the machine learns arrives
/// through `handle_*` calls and everything it does leaves through `poll_*` calls. After every
/// input the simulator drains `poll_transmit`, then `poll_stream`, then re-arms the host's timer
/// from `poll_timeout`, exactly as the tokio and mio drivers do. A machine must draw randomness
/// only from the seed in its [`HostContext`] so that runs are reproducible.
pub trait Machine: Any {
    /// Handles one UDP datagram that arrived on the socket bound at `local` (the host's own,
    /// possibly private, address) from `from` (the source as rewritten by any NATs on the way).
    fn handle_datagram(&mut self, now: Instant, local: SocketAddr, from: SocketAddr, bytes: &[u8]);

    /// Handles the expiry of the deadline last returned by [`Machine::poll_timeout`].
    fn handle_timeout(&mut self, now: Instant);

    /// Writes the next datagram to send into `buf` (which the simulator passes empty) and
    /// returns its destination and length, or `None` when nothing is queued.
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit>;

    /// Returns when [`Machine::handle_timeout`] must next be called, if ever.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Handles an event on one of the host's reliable byte streams.
    ///
    /// The default ignores stream events, for machines that only speak UDP.
    fn handle_stream(&mut self, now: Instant, event: StreamEvent<'_>) {
        let _ = (now, event);
    }

    /// Returns the next stream command. For [`StreamCommand::Send`] the bytes to send are
    /// written into `buf` (passed empty). The default issues none.
    fn poll_stream(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<StreamCommand> {
        let _ = (now, buf);
        None
    }
}

/// What a machine factory learns about the host it is building a machine for.
#[derive(Debug, Clone)]
pub struct HostContext {
    /// The host's id in the simulation.
    pub id: HostId,
    /// The host's name, as given to the builder.
    pub name: String,
    /// The host's own IPv4 address (private when the host sits behind a NAT).
    pub addr: Ipv4Addr,
    /// The UDP ports bound on the host; the first one is the primary (sending) port.
    pub udp_ports: Vec<u16>,
    /// The 32-byte seed for the machine's `pilot_proto::rng::Rng`, derived from the master seed.
    pub seed: [u8; 32],
    /// The virtual time at which the machine is (re)started.
    pub now: Instant,
    /// How many times the host has been started before (0 for the first boot).
    pub boot: u32,
}

/// A factory building a fresh machine for a host, at first boot and at every restart.
pub type MachineFactory = Box<dyn FnMut(&HostContext) -> Box<dyn Machine>>;

/// Identifies one reliable byte stream on one host.
///
/// Ids of streams the machine opens are chosen by the machine and must be below
/// [`StreamId::ACCEPTED_BASE`]; ids of accepted streams are chosen by the simulator and are at or
/// above it, so the two never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

impl StreamId {
    /// The first id the simulator hands out for accepted streams.
    pub const ACCEPTED_BASE: u64 = 1 << 63;

    /// Returns true for ids of streams accepted from a listener.
    pub fn is_accepted(self) -> bool {
        self.0 >= Self::ACCEPTED_BASE
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_accepted() {
            write!(f, "a{}", self.0 - Self::ACCEPTED_BASE)
        } else {
            write!(f, "s{}", self.0)
        }
    }
}

/// Something that happened on a reliable stream, delivered to [`Machine::handle_stream`].
///
/// Chunk boundaries of [`StreamEvent::Data`] carry no meaning, as with TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// An outbound stream opened with [`StreamCommand::Connect`] was accepted by its peer.
    Connected {
        /// The id the machine chose.
        id: StreamId,
    },
    /// A peer opened a stream to one of the host's listening ports.
    Accepted {
        /// The id the simulator chose for the new stream.
        id: StreamId,
        /// The listening address the stream arrived on.
        local: SocketAddr,
        /// The peer's address.
        peer: SocketAddr,
    },
    /// Bytes arrived, in order.
    Data {
        /// The stream.
        id: StreamId,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// The peer closed the stream; nothing more will arrive.
    Closed {
        /// The stream.
        id: StreamId,
    },
    /// A connect failed: nothing listens there, the host is down or unreachable.
    Refused {
        /// The id the machine chose.
        id: StreamId,
    },
    /// The stream broke (peer crashed, or a partition cut it).
    Reset {
        /// The stream.
        id: StreamId,
    },
}

/// A stream operation requested by a machine through [`Machine::poll_stream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCommand {
    /// Opens a stream to `dst`; answered by `Connected` or `Refused` with the same id.
    Connect {
        /// The machine's id for the stream (below [`StreamId::ACCEPTED_BASE`]).
        id: StreamId,
        /// The listening address to connect to.
        dst: SocketAddr,
    },
    /// Sends the first `len` bytes of the buffer passed to `poll_stream`.
    Send {
        /// The stream.
        id: StreamId,
        /// How many bytes of the buffer to send.
        len: usize,
    },
    /// Closes the stream; the peer sees `Closed` after any bytes already sent.
    Close {
        /// The stream.
        id: StreamId,
    },
}
