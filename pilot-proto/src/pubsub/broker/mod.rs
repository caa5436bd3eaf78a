//! The port-1002 broker: a sans-IO state machine keyed by connection, independent of transport.
//!
//! The driver owns the streams and the log file. It reports connections, stream bytes and
//! write room (`handle_*`), then drains frames to write (`poll_send`), things to do
//! (`poll_event`: append to the log, compact it, close a stream) and the next deadline
//! (`poll_timeout`). Every subscription has a bounded queue and every client a byte credit, so
//! a slow client only ever delays itself. The protocol is in `docs/design/pubsub.md`.
//!
//! # Driving order
//!
//! After any `handle_*` or [`Broker::publish_local`] call: drain [`Broker::poll_send`] until
//! `None`, then [`Broker::poll_event`] until `None`, then re-arm the timer from
//! [`Broker::poll_timeout`]. With persistence on, append every [`BrokerEvent::Append`] record to
//! the log, make it durable, then call [`Broker::handle_persisted`]: nothing is delivered or
//! acknowledged before that.
//!
//! # Limitations
//!
//! - Durable subscription state (acknowledged positions) lives in memory: it survives a
//!   disconnect but not a daemon restart. After a restart a durable client resumes with `since`.
//! - Restored events count their age from the restart, not from their original publication,
//!   because the log stores no wall-clock time.
//! - Partially received frames are buffered whole, so the memory a set of clients can pin is up
//!   to `max_clients × max_payload`; the daemon sizes both for its host.
//! - A client whose control replies (acknowledgements, errors) pile up past
//!   `max_control_backlog` because it never lets the broker write is disconnected rather than
//!   slowed down: the broker cannot stop the driver from reading.

mod requests;
mod retained;
mod subscription;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, trace};

pub use retained::Retention;
pub use subscription::SubscriptionStats;

use self::retained::{Retained, StoredEvent};
use self::subscription::{Limits, Output, Parked, Subscription};
use super::codec::{self, FrameReader, ServerMessage};
use super::log::{self, LogRecord};
use super::{Seq, SubscriptionId, SubscriptionIndex, Topic, TopicFilter};
use crate::wire::event::MAX_PAYLOAD_LEN;

/// Identifies one connection to the broker; chosen by the driver, unique while connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u64);

/// Largest payload that still fits in a `$pilot.ev` frame under the v0.5 reader limit.
pub const MAX_EVENT_PAYLOAD: usize = MAX_PAYLOAD_LEN - 16 - super::topic::MAX_TOPIC_LEN;

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
    /// Whether events wait for [`Broker::handle_persisted`] before delivery and acknowledgement.
    pub persistent: bool,
    /// Events awaiting persistence before further publishes are refused.
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
    /// call [`Broker::handle_persisted`] with `seq`. Only with `persistent` on.
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
        /// The publishing connection, `None` for [`Broker::publish_local`].
        client: Option<ClientId>,
        /// Topic.
        topic: Topic,
        /// Payload size in bytes.
        size: usize,
        /// Sequence number assigned.
        seq: Seq,
    },
}

/// Why [`Broker::publish_local`] refused an event.
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

/// The event-stream broker. See the module docs for the driving order.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    limits: Limits,
    clients: BTreeMap<ClientId, Client>,
    index: SubscriptionIndex<(ClientId, SubscriptionId)>,
    retained: Retained,
    uncommitted: VecDeque<Uncommitted>,
    next_seq: Seq,
    parked: BTreeMap<String, Parked>,
    durables_in_use: BTreeSet<String>,
    timers: BTreeSet<(Instant, ClientId, SubscriptionId, Seq)>,
    ready: VecDeque<ClientId>,
    events: VecDeque<BrokerEvent>,
    matched: Vec<(ClientId, SubscriptionId)>,
    stats: BrokerStats,
}

#[derive(Debug)]
struct Uncommitted {
    event: Arc<StoredEvent>,
    ack: Option<(ClientId, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing received yet: the first frame decides between v0.5 and extended.
    AwaitingFirst,
    /// v0.5: one implicit subscription, plain frames only.
    Legacy,
    /// Negotiated with `$pilot.hello`.
    Extended,
}

#[derive(Debug)]
struct Client {
    mode: Mode,
    reader: FrameReader,
    credit: usize,
    control: VecDeque<Vec<u8>>,
    subs: BTreeMap<SubscriptionId, Subscription>,
    last_served: SubscriptionId,
    published: u64,
    in_ready: bool,
}

impl Broker {
    /// Creates a broker with nothing retained; sequence numbers start at 1.
    pub fn new(config: BrokerConfig) -> Self {
        let limits = Limits {
            queue_events: config.queue_events.max(1),
            queue_bytes: config.queue_bytes,
            ack_wait: config.ack_wait,
            max_deliver: config.max_deliver.max(1),
            max_ack_pending: config.max_ack_pending.max(1),
        };
        Self {
            config,
            limits,
            clients: BTreeMap::new(),
            index: SubscriptionIndex::new(),
            retained: Retained::default(),
            uncommitted: VecDeque::new(),
            next_seq: Seq(1),
            parked: BTreeMap::new(),
            durables_in_use: BTreeSet::new(),
            timers: BTreeSet::new(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
            matched: Vec::new(),
            stats: BrokerStats::default(),
        }
    }

    /// Loads events recovered from the log (see `pubsub::log::recover`). Call before the first
    /// connection; records must be in increasing sequence order (as `recover` returns them).
    pub fn restore(&mut self, now: Instant, records: Vec<LogRecord>) {
        for record in records {
            if record.seq < self.next_seq {
                debug!(seq = record.seq.0, "skipping out-of-order restored record");
                continue;
            }
            self.next_seq = record.seq.next();
            let LogRecord {
                seq,
                topic,
                payload,
            } = record;
            // Limitation: the log stores no wall-clock time, so restored events count their age
            // from the restart.
            let stored_at = now;
            let event = StoredEvent {
                seq,
                topic,
                payload,
                origin: None,
                stored_at,
            };
            self.retained.push(Arc::new(event));
        }
        self.evict(now);
    }

    /// Registers a new connection. Frames flow once its first frame arrives.
    pub fn handle_connect(&mut self, _now: Instant, client: ClientId) {
        if self.clients.contains_key(&client) {
            return;
        }
        if self.clients.len() >= self.config.max_clients {
            debug!(client = client.0, "refusing connection: too many clients");
            self.stats.closed += 1;
            let reason = CloseReason::TooManyClients;
            self.events.push_back(BrokerEvent::Close { client, reason });
            return;
        }
        let state = Client {
            mode: Mode::AwaitingFirst,
            // Limitation: a partial frame is buffered whole, so clients can pin up to
            // max_clients × max_payload bytes.
            reader: FrameReader::new(self.config.max_payload.min(MAX_EVENT_PAYLOAD)),
            credit: self.config.initial_credit,
            control: VecDeque::new(),
            subs: BTreeMap::new(),
            last_served: SubscriptionId(0),
            published: 0,
            in_ready: false,
        };
        self.clients.insert(client, state);
    }

    /// Feeds bytes read from a connection's stream (any split; frames are reassembled).
    pub fn handle_bytes(&mut self, now: Instant, client: ClientId, bytes: &[u8]) {
        let Some(state) = self.clients.get_mut(&client) else {
            debug!(client = client.0, "bytes for an unknown connection");
            return;
        };
        state.reader.push(bytes);
        loop {
            let Some(state) = self.clients.get_mut(&client) else {
                return;
            };
            match state.reader.next_frame() {
                Ok(Some(frame)) => self.on_frame(now, client, frame),
                Ok(None) => return,
                Err(error) => {
                    debug!(client = client.0, %error, "unrecoverable framing error");
                    self.close(client, CloseReason::Malformed);
                    return;
                }
            }
        }
    }

    /// Grants `budget` more bytes of [`Broker::poll_send`] output to a connection, typically
    /// the free space of its stream's send buffer.
    pub fn handle_writable(&mut self, _now: Instant, client: ClientId, budget: usize) {
        let Some(state) = self.clients.get_mut(&client) else {
            return;
        };
        state.credit = state.credit.saturating_add(budget);
        self.mark_ready(client);
    }

    /// Forgets a connection whose stream ended. Durable subscriptions are kept for later.
    pub fn handle_disconnect(&mut self, _now: Instant, client: ClientId) {
        let Some(state) = self.clients.remove(&client) else {
            return;
        };
        for (id, sub) in state.subs {
            self.retire(client, id, sub, true);
        }
    }

    /// Reports that every appended record up to and including `through` is durable: those
    /// events are delivered and their publishers acknowledged.
    pub fn handle_persisted(&mut self, now: Instant, through: Seq) {
        while self
            .uncommitted
            .front()
            .is_some_and(|u| u.event.seq <= through)
        {
            let Some(Uncommitted { event, ack }) = self.uncommitted.pop_front() else {
                break;
            };
            self.commit(now, event, ack);
        }
    }

    /// Fires due timers: retention by age and durable redeliveries.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.evict(now);
        while let Some(&(deadline, client, id, seq)) = self.timers.first() {
            if deadline > now {
                break;
            }
            self.timers.pop_first();
            let Some(state) = self.clients.get_mut(&client) else {
                continue;
            };
            let Some(sub) = state.subs.get_mut(&id) else {
                continue;
            };
            if sub.expire(seq, deadline, &self.limits) {
                self.mark_ready(client);
            }
        }
    }

    /// Publishes an event from the daemon itself (it may use `$` system topics). Returns the
    /// sequence number assigned; with persistence on, delivery waits for the log.
    ///
    /// # Errors
    ///
    /// [`PublishError::PayloadTooLarge`] over `max_payload`, [`PublishError::Backlog`] when
    /// `max_uncommitted` events already wait for the log.
    pub fn publish_local(
        &mut self,
        now: Instant,
        topic: &Topic,
        payload: &[u8],
    ) -> Result<Seq, PublishError> {
        let max = self.config.max_payload.min(MAX_EVENT_PAYLOAD);
        if payload.len() > max {
            return Err(PublishError::PayloadTooLarge {
                len: payload.len(),
                max,
            });
        }
        if self.is_backlogged() {
            return Err(PublishError::Backlog);
        }
        Ok(self.publish(now, None, topic.clone(), Bytes::copy_from_slice(payload)))
    }

    /// Returns the next frame to write, and to which connection. Connections take turns, and
    /// each stops when its credit is spent.
    #[must_use]
    pub fn poll_send(&mut self, now: Instant) -> Option<(ClientId, Vec<u8>)> {
        while let Some(client) = self.ready.pop_front() {
            let Some(frame) = self.produce(now, client) else {
                if let Some(state) = self.clients.get_mut(&client) {
                    state.in_ready = false;
                }
                continue;
            };
            let Some(state) = self.clients.get_mut(&client) else {
                continue;
            };
            state.credit = state.credit.saturating_sub(frame.len());
            if state.credit > 0 {
                self.ready.push_back(client);
            } else {
                state.in_ready = false;
            }
            trace!(client = client.0, len = frame.len(), "frame out");
            return Some((client, frame));
        }
        None
    }

    /// Returns the next piece of work for the driver.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<BrokerEvent> {
        self.events.pop_front()
    }

    /// Returns when [`Broker::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let redelivery = self.timers.first().map(|t| t.0);
        let expiry = self.retained.next_expiry(&self.config.retention);
        match (redelivery, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Returns broker-wide counters.
    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            clients: self.clients.len(),
            subscriptions: self.index.len(),
            parked_durables: self.parked.len(),
            head: Seq(self.retained.end().0.saturating_sub(1)),
            first_retained: self.retained.first_seq(),
            retained_events: self.retained.len(),
            retained_bytes: self.retained.bytes(),
            uncommitted: self.uncommitted.len(),
            ..self.stats
        }
    }

    /// Returns one subscription's counters.
    pub fn subscription_stats(
        &self,
        client: ClientId,
        id: SubscriptionId,
    ) -> Option<SubscriptionStats> {
        Some(self.clients.get(&client)?.subs.get(&id)?.stats())
    }

    /// Returns whether the log is so far behind that publishes must be refused.
    fn is_backlogged(&self) -> bool {
        self.uncommitted.len() >= self.config.max_uncommitted
    }

    /// Assigns a sequence number and stores or stages the event.
    fn publish(
        &mut self,
        now: Instant,
        origin: Option<(ClientId, Option<u64>)>,
        topic: Topic,
        payload: Bytes,
    ) -> Seq {
        let seq = self.next_seq;
        self.next_seq = seq.next();
        self.stats.published += 1;
        let client = origin.map(|(client, _)| client);
        let (size, event_topic) = (payload.len(), topic.clone());
        self.events.push_back(BrokerEvent::Published {
            client,
            topic: event_topic,
            size,
            seq,
        });

        let ack = origin.and_then(|(client, number)| Some((client, number?)));
        let event = Arc::new(StoredEvent {
            seq,
            topic,
            payload,
            origin: client,
            stored_at: now,
        });
        if !self.config.persistent {
            self.commit(now, event, ack);
            return seq;
        }
        let mut record = Vec::with_capacity(log::encoded_len(&event.topic, event.payload.len()));
        log::encode_record(seq, &event.topic, &event.payload, &mut record);
        self.events.push_back(BrokerEvent::Append { seq, record });
        self.uncommitted.push_back(Uncommitted { event, ack });
        seq
    }

    /// Makes an event visible: retain it, fan it out, acknowledge its publisher.
    fn commit(&mut self, now: Instant, event: Arc<StoredEvent>, ack: Option<(ClientId, u64)>) {
        self.retained.push(Arc::clone(&event));
        self.fan_out(&event);
        self.evict(now);
        if let Some((client, number)) = ack {
            let frame = ServerMessage::PubAck {
                number,
                seq: event.seq,
            }
            .encode();
            self.queue_control(client, frame);
        }
    }

    fn fan_out(&mut self, event: &Arc<StoredEvent>) {
        self.matched.clear();
        self.matched
            .extend_from_slice(self.index.matches(&event.topic));
        for at in 0..self.matched.len() {
            let (client, id) = self.matched[at];
            let Some(state) = self.clients.get_mut(&client) else {
                continue;
            };
            let Some(sub) = state.subs.get_mut(&id) else {
                continue;
            };
            if !sub.echo && event.origin == Some(client) {
                continue;
            }
            sub.offer(event, &self.limits);
            if !state.in_ready && state.credit > 0 {
                state.in_ready = true;
                self.ready.push_back(client);
            }
        }
    }

    fn evict(&mut self, now: Instant) {
        if let Some(through) = self.retained.evict(now, &self.config.retention) {
            self.events.push_back(BrokerEvent::Evicted { through });
        }
    }

    /// Builds the next frame for one connection, if it has anything to send.
    fn produce(&mut self, now: Instant, client: ClientId) -> Option<Vec<u8>> {
        let state = self.clients.get_mut(&client)?;
        if state.credit == 0 {
            return None;
        }
        if let Some(frame) = state.control.pop_front() {
            return Some(frame);
        }

        // Subscriptions take turns, starting after the one served last.
        let after = state.last_served;
        let (retained, limits) = (&self.retained, &self.limits);
        let next = |sub: &mut Subscription| sub.next_output(now, retained, client, limits);
        let mut found = None;
        for (id, sub) in state
            .subs
            .range_mut((Bound::Excluded(after), Bound::Unbounded))
        {
            if let Some(output) = next(sub) {
                found = Some((*id, output));
                break;
            }
        }
        if found.is_none() {
            for (id, sub) in state.subs.range_mut(..=after) {
                if let Some(output) = next(sub) {
                    found = Some((*id, output));
                    break;
                }
            }
        }

        let (id, output) = found?;
        state.last_served = id;
        let extended = state.mode == Mode::Extended;
        Some(self.encode_output(client, id, extended, output))
    }

    fn encode_output(
        &mut self,
        client: ClientId,
        id: SubscriptionId,
        extended: bool,
        output: Output,
    ) -> Vec<u8> {
        match output {
            Output::Gap(gap) => ServerMessage::Gap(gap).encode(),
            Output::Event {
                event,
                attempt,
                deadline,
            } => {
                if let Some(deadline) = deadline {
                    self.timers.insert((deadline, client, id, event.seq));
                }
                match extended {
                    true => {
                        codec::encode_event(id, event.seq, attempt, &event.topic, &event.payload)
                    }
                    false => codec::encode_plain(&event.topic, &event.payload),
                }
            }
        }
    }

    /// Queues a control reply, closing a connection that lets too many pile up.
    fn queue_control(&mut self, client: ClientId, frame: Vec<u8>) {
        let Some(state) = self.clients.get_mut(&client) else {
            return;
        };
        state.control.push_back(frame);
        // Limitation: the broker cannot pause reading from a client, so one that never lets it
        // write while it keeps publishing is closed rather than slowed down.
        if state.control.len() > self.config.max_control_backlog {
            debug!(client = client.0, "closing: control replies not being read");
            self.close(client, CloseReason::Overloaded);
            return;
        }
        self.mark_ready(client);
    }

    fn mark_ready(&mut self, client: ClientId) {
        let Some(state) = self.clients.get_mut(&client) else {
            return;
        };
        if !state.in_ready && state.credit > 0 {
            state.in_ready = true;
            self.ready.push_back(client);
        }
    }

    /// Forgets a connection and tells the driver to close its stream.
    fn close(&mut self, client: ClientId, reason: CloseReason) {
        self.stats.closed += 1;
        let Some(state) = self.clients.remove(&client) else {
            return;
        };
        for (id, sub) in state.subs {
            self.retire(client, id, sub, true);
        }
        self.events.push_back(BrokerEvent::Close { client, reason });
    }

    /// Removes a subscription from the index and timers; parks it if durable and `park`.
    fn retire(&mut self, client: ClientId, id: SubscriptionId, sub: Subscription, park: bool) {
        self.index.remove(&sub.filter, (client, id));
        for (seq, deadline) in sub.deadlines() {
            self.timers.remove(&(deadline, client, id, seq));
        }
        // Limitation: parked durable state lives in memory; it survives a disconnect but not a
        // daemon restart, after which the client resumes with `since`.
        if let Some(name) = &sub.durable {
            self.durables_in_use.remove(name);
            if park && self.parked.len() < self.config.max_parked_durables {
                self.parked.insert(name.clone(), sub.park());
            }
        }
        let filter = sub.filter;
        self.events
            .push_back(BrokerEvent::Unsubscribed { client, id, filter });
    }
}
