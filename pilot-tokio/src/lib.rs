//! # pilot-tokio: the Pilot Protocol daemon, `pilotctl`, the rendezvous and the async client
//!
//! - [`Client`]: the async client library for programs that talk to the local daemon
//!   (`subscribe`, `publish`, `dial`, `listen`).
//! - `daemon`: the daemon process (IPC server, driver task, embedded rendezvous).
//! - `cli`: the `pilotctl` command line.
//!
//! See `docs/design/daemon.md` for the architecture and `docs/CLI.md` for the commands.

#![deny(unsafe_code)]

pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dataexchange;
pub mod driver;
pub mod framing;
pub mod identity_file;
pub mod logging;
pub mod rendezvous;
pub mod server;
pub mod shim;
pub mod webhook;

pub use client::{Client, ClientError, Conn, Event, Listener, Subscription};
pub use shim::addr::{Addr, AddrPort};
