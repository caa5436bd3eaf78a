//! The broker's public vocabulary: configuration, the work it hands the driver, errors and
//! counters.

use std::time::Duration;

use super::ClientId;
use super::retained::Retention;
use crate::pubsub::{Seq, SubscriptionId, Topic, TopicFilter};
use crate::wire::event::MAX_PAYLOAD_LEN;

/// Largest payload that still fits in a `$pilot.ev` frame under the v0.5 reader limit.
pub const MAX_EVENT_PAYLOAD: usize = MAX_PAYLOAD_LEN - 16 - crate::pubsub::topic::MAX_TOPIC_LEN;

/// Broker limits and behaviour.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// History kept for replay.
    pub retention: Retention,
    /// Events one subscription may have queued before it overflows.
    pub queue_events: usize,
    /// Bytes one subscription may have queued before it overflows.
    pub queue_bytes: usize,
    /// Time a durable delivery waits for its acknowledgement before redelivery.
    pub ack_wait: Duration,
    /// Deliveries of one event to a durable subscription before it is abandoned.
    pub max_deliver: u16,
    /// Unacknowledged deliveries a durable subscription may have outstanding.
    pub max_ack_pending: usize,
    /// Connections accepted at once.
    pub max_clients: usize,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Durable subscriptions kept while disconnected.
    pub max_parked_durables: usize,
    /// Largest payload accepted from a client (at most [`MAX_EVENT_PAYLOAD`]).
    pub max_payload: usize,
    /// Bytes a new connection may be sent before the driver grants more.
    pub initial_credit: usize,
    /// Control replies queued for one connection before it is closed.
    pub max_control_backlog: usize,
    /// Whether events wait for [`Broker::handle_persisted`](super::Broker::handle_persisted) before
    /// delivery and acknowledgement.
    pub persistent: bool,
    /// Events awaiting persistence before client input is held (and local publishes refused).
    pub max_uncommitted: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            retention: Retention::default(),
            queue_events: 1_024,
            queue_bytes: 4 * 1024 * 1024,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 256,
            max_clients: 4_096,
            max_subscriptions: 64,
            max_parked_durables: 1_024,
            max_payload: MAX_EVENT_PAYLOAD,
            initial_credit: 256 * 1024,
            max_control_backlog: 1_024,
            persistent: false,
            max_uncommitted: 65_536,
        }
    }
}

/// Why the broker asks the driver to close a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// A frame broke the framing (over-long topic or payload); the stream cannot recover.
    Malformed,
    /// A v0.5 client's first frame is not a valid subscription.
    InvalidSubscription,
    /// The client let its control replies pile up past the limit.
    Overloaded,
    /// The broker already has `max_clients` connections.
    TooManyClients,
}

/// Work for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerEvent {
    /// Append `record` (already encoded, see `pubsub::log`) to the log, make it durable, then
    /// call [`Broker::handle_persisted`](super::Broker::handle_persisted) with `seq`. Only with
    /// `persistent` on.
    Append {
        /// Sequence number of the record.
        seq: Seq,
        /// Bytes to append.
        record: Vec<u8>,
    },
    /// Records up to and including `through` left retention; the log may drop them.
    Evicted {
        /// Last evicted sequence number.
        through: Seq,
    },
    /// Close this connection's stream; the broker has already forgotten it.
    Close {
        /// The connection.
        client: ClientId,
        /// Why.
        reason: CloseReason,
    },
    /// A subscription was added (v0.5 webhook `pubsub.subscribed`).
    Subscribed {
        /// The connection.
        client: ClientId,
        /// The subscription.
        id: SubscriptionId,
        /// Its filter.
        filter: TopicFilter,
    },
    /// A subscription ended (v0.5 webhook `pubsub.unsubscribed`).
    Unsubscribed {
        /// The connection.
        client: ClientId,
        /// The subscription.
        id: SubscriptionId,
        /// Its filter.
        filter: TopicFilter,
    },
    /// An event was accepted (v0.5 webhook `pubsub.published`).
    Published {
        /// The publishing connection, `None` for
        /// [`Broker::publish_local`](super::Broker::publish_local).
        client: Option<ClientId>,
        /// Topic.
        topic: Topic,
        /// Payload size in bytes.
        size: usize,
        /// Sequence number assigned.
        seq: Seq,
    },
}

/// Why [`Broker::publish_local`](super::Broker::publish_local) refused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The payload is over `max_payload`.
    #[error("payload of {len} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge {
        /// Payload size.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// `max_uncommitted` events are already waiting for the log.
    #[error("too many events are waiting for persistence")]
    Backlog,
}

/// Broker-wide counters and gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStats {
    /// Connections now.
    pub clients: usize,
    /// Active subscriptions now.
    pub subscriptions: usize,
    /// Durable subscriptions waiting for their client.
    pub parked_durables: usize,
    /// Last committed sequence number (0 when none).
    pub head: Seq,
    /// Oldest retained sequence number.
    pub first_retained: Seq,
    /// Retained events now.
    pub retained_events: usize,
    /// Retained bytes now.
    pub retained_bytes: usize,
    /// Events waiting for persistence.
    pub uncommitted: usize,
    /// Events accepted since start.
    pub published: u64,
    /// Client frames refused (bad topic, forbidden topic, malformed control message).
    pub rejected: u64,
    /// Connections the broker closed.
    pub closed: u64,
}
