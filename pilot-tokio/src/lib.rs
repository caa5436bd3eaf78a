//! # pilot-tokio: the Pilot Protocol daemon, `pilotctl`, the rendezvous and the async client
//!
//! - [`Client`]: the async client library for programs that talk to the local daemon
//!   (`subscribe`, `publish`, `dial`, `listen`).
//! - `agnostic::Client`: the same client for async-std, smol or any executor (feature
//!   `client-async-io`; no tokio).
//! - `daemon`: the daemon process (IPC server, driver task, embedded rendezvous).
//! - `cli`: the `pilotctl` command line.
//!
//! # Features
//!
//! - `daemon` (default): the daemon, `pilotctl`, the rendezvous and webhooks; implies
//!   `client-tokio`.
//! - `client-tokio`: only the tokio client ([`Client`]).
//! - `client-async-io`: only the runtime-agnostic client (`agnostic::Client`), built on
//!   `async-io` and `futures-io`; `--no-default-features --features client-async-io` builds
//!   without tokio.
//!
//! See `docs/design/daemon.md` for the architecture and `docs/CLI.md` for the commands.

#![deny(unsafe_code)]

#[cfg(feature = "client-async-io")]
pub mod agnostic;
#[cfg(feature = "daemon")]
pub mod cli;
#[cfg(feature = "client-tokio")]
pub mod client;
#[cfg(any(feature = "client-tokio", feature = "client-async-io"))]
pub mod client_proto;
#[cfg(feature = "daemon")]
pub mod config;
#[cfg(feature = "daemon")]
pub mod daemon;
#[cfg(feature = "daemon")]
pub mod dataexchange;
#[cfg(feature = "daemon")]
pub mod driver;
pub mod framing;
#[cfg(feature = "daemon")]
pub mod identity_file;
#[cfg(feature = "daemon")]
pub mod logging;
#[cfg(feature = "daemon")]
pub mod rendezvous;
#[cfg(feature = "daemon")]
pub mod server;
pub mod shim;
#[cfg(feature = "daemon")]
pub mod webhook;

#[cfg(feature = "client-tokio")]
pub use client::{Client, Conn, Listener, Subscription};
#[cfg(any(feature = "client-tokio", feature = "client-async-io"))]
pub use client_proto::{ClientError, Event};
pub use shim::addr::{Addr, AddrPort};
