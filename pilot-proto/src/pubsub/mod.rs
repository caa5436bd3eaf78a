//! The event stream (port 1002): topic grammar, subscription index, broker state machine,
//! retained-log format and the client-side codec.
//!
//! Everything here is pure. The broker is driven by the daemon, which owns the streams and the
//! log file; see `docs/design/pubsub.md` for the protocol, including every difference from v0.5.
//!
//! - [`broker`]: [`Broker`], the sans-IO port-1002 broker.
//! - [`topic`]: [`Topic`] and [`TopicFilter`], valid by construction.
//! - [`durable`]: snapshot format for durable subscription positions.
//! - [`index`]: [`SubscriptionIndex`], a cached trie from topics to subscriptions.
//! - [`client`]: [`client::ClientSession`], the client side of an extended connection.
//! - [`codec`]: frame reassembly and the extended protocol's control messages.
//! - [`log`]: record encoding and crash recovery for the retained log.

pub mod broker;
pub mod client;
pub mod codec;
pub mod durable;
pub mod index;
pub mod log;
pub mod topic;

pub use broker::{Broker, BrokerConfig, BrokerEvent, ClientId};
pub use index::SubscriptionIndex;
pub use topic::{Topic, TopicError, TopicFilter};

/// A broker sequence number. Every stored event gets the next one, starting at 1; 0 means
/// "none yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(pub u64);

impl Seq {
    /// Returns the following sequence number.
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

/// A subscription id chosen by the client, unique within its connection. v0.5 connections
/// have one implicit subscription, id 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SubscriptionId(pub u32);
