//! Stand-ins for `pilot-proto` pieces that had not been merged when this crate was written.
//!
//! Each submodule mirrors the API of the module that will replace it (`wire::addr`, `wire::ipc`,
//! `identity`), so swapping is a change of `use` lines. Nothing outside this crate sees them.
//!
//! # Limitations
//!
//! - These are stand-ins: the real codecs live in `pilot_proto::wire` and `pilot_proto::identity`.

pub mod addr;
pub mod identity;
pub mod ipc;

/// One datagram to send: destination and length of the bytes written into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub dst: std::net::SocketAddr,
    /// How many bytes of the buffer to send.
    pub len: usize,
}
