//! Types that cross the driver boundary: what a state machine asks the driver to send.
//!
//! A `Transmit` holds only metadata; the bytes are written into a buffer the driver owns and
//! passes to `poll_transmit`, so the hot path allocates nothing.

use std::net::SocketAddr;

/// One UDP datagram the driver must send: `len` bytes at the start of the buffer it passed to
/// `poll_transmit`, to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a transmit must be sent or the protocol stalls"]
pub struct Transmit {
    /// Where to send the datagram.
    pub dst: SocketAddr,
    /// How many bytes of the caller's buffer make up the datagram.
    pub len: usize,
}
