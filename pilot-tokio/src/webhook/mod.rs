//! The webhook bridge: provider webhooks in, pilot events out, with nothing lost silently.
//!
//! This module is a library the daemon hosts; it owns no process state of its own.
//!
//! - [`inbound`]: an axum receiver bound to exactly the `set-webhook` address. It verifies each
//!   request ([`verify`]: Standard Webhooks, Stripe, GitHub), drops provider retries
//!   ([`dedupe`]), rate-limits per source ([`ratelimit`]), and answers 2xx only after the host's
//!   [`EventSink`] confirms the event is durable.
//! - [`outbound`]: events POSTed to a URL, signed with Standard Webhooks, retried with backoff
//!   from a bounded on-disk queue; every event is delivered, given up on visibly, or refused
//!   with an error and a counter.
//! - [`host`]: the daemon's host of both, configured by `pilotctl set-webhook` over an IPC
//!   extension, persisted under the daemon home, fed by a subscriber to the local broker.
//!
//! Hosting it takes two calls: [`inbound::start`] with an [`InboundConfig`] and an
//! `Arc<dyn EventSink>`, and [`outbound::start`] with an [`OutboundConfig`], then
//! [`OutboundHandle::enqueue`] (or [`OutboundHandle::forward`]) for each event to send. Both
//! handles expose `stats()` for `pilotctl`. The design note is `docs/design/webhooks.md`.
//!
//! # Limitations
//! - Delivery-id memory is in RAM; across restarts it holds what the host passes back in
//!   [`InboundConfig::remembered`] (see [`dedupe`]).
//! - Outbound delivery is strictly ordered, and failure counts restart at zero after a restart
//!   (see [`outbound`]).
//! - Standard Webhooks asymmetric `v1a` signatures are not verified (see [`verify`]).
//! - The receiver serves plain HTTP only (see [`inbound`]).

pub mod dedupe;
pub mod host;
pub mod inbound;
pub mod outbound;
pub mod ratelimit;
pub mod sink;
pub mod verify;

pub use inbound::{InboundConfig, InboundHandle, InboundStats, Route, TopicRule, Verifier};
pub use outbound::{OutboundConfig, OutboundEvent, OutboundHandle, OutboundStats};
pub use sink::{EventSink, InboundEvent, PublishDone, PublishError, PublishRequest};
pub use verify::Secret;
