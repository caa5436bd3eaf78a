//! The one thing the inbound bridge needs from its host: a durable publish with confirmation.
//!
//! Owns [`InboundEvent`], the [`EventSink`] trait and [`PublishRequest`], the channel form of
//! the same contract. The receiver answers 2xx only after the sink has sent `Ok(())` on the
//! `done` channel, which the sink must do only once the event is in its durable log. If `done`
//! is dropped, answered with an error, or not answered within the configured publish timeout,
//! the provider gets 503 and the delivery id is released, so its retry is published afresh.

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// A verified inbound webhook, ready to be appended to the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundEvent {
    /// Topic the event is published on (dot-separated tokens).
    pub topic: String,
    /// The request body exactly as received and verified.
    pub payload: Bytes,
    /// Name of the route (source) that accepted it.
    pub source: String,
    /// The provider's delivery id, if its format carries one. A host that persists this next to
    /// the event can pass it back through `InboundConfig::remembered` after a restart.
    pub delivery_id: Option<String>,
}

/// Why the host could not make an event durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The host's publish queue is full; the provider should retry.
    #[error("event log busy")]
    Busy,
    /// The host is shutting down or its log is gone.
    #[error("event log unavailable")]
    Closed,
    /// Writing the event failed.
    #[error("event log write failed: {0}")]
    Write(String),
}

/// The confirmation channel a sink answers on.
pub type PublishDone = oneshot::Sender<Result<(), PublishError>>;

/// A durable event log the bridge publishes into.
///
/// `publish` must not block: it hands the event to the host and returns. The host sends
/// `Ok(())` on `done` only after the event is durable (for example, appended and fsynced).
pub trait EventSink: Send + Sync + 'static {
    /// Hands one event to the log; answer on `done` once it is durable.
    fn publish(&self, event: InboundEvent, done: PublishDone);
}

/// One publish, as sent over a channel by the [`EventSink`] impl for `mpsc::Sender`.
#[derive(Debug)]
pub struct PublishRequest {
    /// The event to append.
    pub event: InboundEvent,
    /// Where to confirm durability.
    pub done: PublishDone,
}

impl EventSink for mpsc::Sender<PublishRequest> {
    fn publish(&self, event: InboundEvent, done: PublishDone) {
        if let Err(err) = self.try_send(PublishRequest { event, done }) {
            let (reason, request) = match err {
                mpsc::error::TrySendError::Full(request) => (PublishError::Busy, request),
                mpsc::error::TrySendError::Closed(request) => (PublishError::Closed, request),
            };
            // The receiver side of `done` may be gone already; nothing else to tell.
            let _ = request.done.send(Err(reason));
        }
    }
}

impl<F> EventSink for F
where
    F: Fn(InboundEvent, PublishDone) + Send + Sync + 'static,
{
    fn publish(&self, event: InboundEvent, done: PublishDone) {
        self(event, done);
    }
}
