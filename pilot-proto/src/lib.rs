//! # pilot-proto: the sans-IO core of Pilot Protocol v0.5
//!
//! Every piece of protocol logic lives here as a pure state machine: wire formats, the encrypted
//! tunnel, the reliable stream transport, NAT traversal decisions, the registry and beacon, trust
//! and the topic-based event stream. Nothing in this crate opens a socket, spawns a thread, reads
//! a clock or asks the operating system for randomness.
//!
//! ## The contract
//!
//! - Inputs are `handle_*` methods; they take `now: Instant` as their first argument.
//! - Outputs are `poll_*` methods: `poll_transmit` (bytes to send), `poll_event` (things the
//!   application must learn) and `poll_timeout` (when to call `handle_timeout` next).
//! - After any input the driver drains `poll_transmit` until `None`, then `poll_event` until
//!   `None`, then re-arms its timer from `poll_timeout`.
//! - Randomness comes from a [`rng::Rng`] seeded by the driver (from the OS in production, from
//!   the simulation seed in `pilot-sim`).
//!
//! The drivers are `pilot-tokio` (the daemon), `pilot-mio` (blocking embedding) and `pilot-sim`
//! (the deterministic simulator). See `docs/ARCHITECTURE.md` in the repository.
//!
//! ## What this crate does not do
//!
//! Sockets, files, configuration parsing, clocks, OS entropy, logging subscribers.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod beacon;
mod byte_queue;
pub mod crypto;
pub mod identity;
pub mod nat;
pub mod node;
pub mod pubsub;
pub mod registry;
pub mod rng;
pub mod transmit;
pub mod transport;
pub mod trust;
pub mod tunnel;
pub mod wire;

pub use transmit::{Transmit, TransmitRun};
