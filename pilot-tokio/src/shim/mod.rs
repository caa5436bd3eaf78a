//! Local protocol glue: the IPC message enum (owned, decoded from and encoded to the v0.5 IPC
//! body) and address re-exports from `pilot_proto::wire::addr`.
//!
//! # Limitations
//!
//! - `ipc::Message` is this crate's own owned codec of the v0.5 IPC body; `pilot_proto::wire::ipc`
//!   (borrowed views) covers the same layout and is what the byte-level tests of the wire branch
//!   pin.

pub mod addr;
pub mod ipc;
