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
//! After any `handle_*` or [`Broker::publish_local`] call: drain [`Broker::poll_send`] (or
//! [`Broker::poll_send_into`]) until `None`, then [`Broker::poll_event`] until `None`, then re-arm
//! the timer from [`Broker::poll_timeout`]. With persistence on, append every
//! [`BrokerEvent::Append`] record to the log, make it durable, then call
//! [`Broker::handle_persisted`]: nothing is delivered or acknowledged before that.
//!
//! # Limitations
//!
//! - Durable positions survive a restart only as of the driver's last
//!   [`Broker::durables_snapshot`]; anything acknowledged after it is delivered again.
//! - Restored events count their age from the restart, not from their original publication,
//!   because the log stores no wall-clock time.
//! - Partially received frames are buffered whole, so the memory a set of clients can pin is up
//!   to `max_clients × max_payload`; the daemon sizes both for its host.
//! - Durable names are not bound to a peer: any connection that knows a name can take over its
//!   parked state.
//! - A client whose control replies (acknowledgements, errors) pile up past
//!   `max_control_backlog` because it never lets the broker write is disconnected rather than
//!   slowed down: the broker cannot stop the driver from reading.

mod config;
mod persistence;
mod requests;
mod retained;
mod subscription;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, trace};

pub use config::{
    BrokerConfig, BrokerEvent, BrokerStats, CloseReason, MAX_EVENT_PAYLOAD, PublishError,
};
pub use retained::Retention;
pub use subscription::SubscriptionStats;

use self::retained::{Retained, StoredEvent};
use self::subscription::{Limits, Output, Parked, Subscription};
use super::codec::{self, FrameReader, ServerMessage};
use super::log;
use super::{Seq, SubscriptionId, SubscriptionIndex, Topic};

/// Identifies one connection to the broker; chosen by the driver, unique while connected (an id
/// may be reused after [`Broker::handle_disconnect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u64);

/// The event-stream broker. See the module docs for the driving order.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    limits: Limits,
    clients: BTreeMap<ClientId, Client>,
    index: SubscriptionIndex<(ClientId, SubscriptionId)>,
    retained: Retained,
    uncommitted: VecDeque<Uncommitted>,
    /// Clients whose buffered input waits for the log to catch up (see `handle_bytes`).
    held_input: BTreeSet<ClientId>,
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
            held_input: BTreeSet::new(),
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
            // A lagging log holds the client's frames (publishes would be refused); they are
            // read on once `handle_persisted` catches up. The driver stops feeding bytes.
            if self.is_backlogged() {
                self.held_input.insert(client);
                return;
            }
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
    /// the free space of its stream's send buffer. A frame goes out whenever some credit is
    /// left, so a connection can exceed its budget by at most one frame.
    pub fn handle_writable(&mut self, _now: Instant, client: ClientId, budget: usize) {
        let Some(state) = self.clients.get_mut(&client) else {
            return;
        };
        state.credit = state.credit.saturating_add(budget);
        self.mark_ready(client);
    }

    /// Forgets a connection whose stream ended. Durable subscriptions are kept for later.
    pub fn handle_disconnect(&mut self, _now: Instant, client: ClientId) {
        self.drop_client(client);
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
        if !self.is_backlogged() {
            for client in std::mem::take(&mut self.held_input) {
                self.handle_bytes(now, client, &[]);
            }
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

    /// Appends to `buf` as many frames for one connection as its credit allows and returns
    /// that connection, or `None` when nobody has anything to send. The same frames, in the same
    /// order, as repeated [`Broker::poll_send`] calls, batched for one write.
    #[must_use]
    pub fn poll_send_into(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<ClientId> {
        let (client, frame) = self.poll_send(now)?;
        buf.extend_from_slice(&frame);

        // Keep serving the same connection while it has credit and output.
        while self
            .clients
            .get(&client)
            .is_some_and(|state| state.credit > 0)
        {
            let Some(frame) = self.produce(now, client) else {
                break;
            };
            if let Some(state) = self.clients.get_mut(&client) {
                state.credit = state.credit.saturating_sub(frame.len());
            }
            buf.extend_from_slice(&frame);
        }
        Some(client)
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

    /// Returns whether the log is so far behind that publishes would be refused: a driver
    /// should stop reading client input until [`Broker::handle_persisted`] catches up.
    pub fn is_backlogged(&self) -> bool {
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
        if self.drop_client(client) {
            self.stats.closed += 1;
            self.events.push_back(BrokerEvent::Close { client, reason });
        }
    }

    /// Removes a connection's state, returning whether it existed. Its subscriptions are
    /// retired (durables parked) and its pending publish acknowledgements dropped, so that a
    /// new connection reusing the id is not sent them.
    fn drop_client(&mut self, client: ClientId) -> bool {
        let Some(state) = self.clients.remove(&client) else {
            return false;
        };
        for (id, sub) in state.subs {
            self.retire(client, id, sub, true);
        }
        for pending in &mut self.uncommitted {
            if pending.ack.is_some_and(|(owner, _)| owner == client) {
                pending.ack = None;
            }
        }
        true
    }

    /// Removes a subscription from the index and timers; parks it if durable and `park`.
    fn retire(&mut self, client: ClientId, id: SubscriptionId, sub: Subscription, park: bool) {
        self.index.remove(&sub.filter, (client, id));
        for (seq, deadline) in sub.deadlines() {
            self.timers.remove(&(deadline, client, id, seq));
        }
        // Limitation: parked durable state is in memory; it reaches disk only through the
        // driver's periodic durables_snapshot, so a restart redelivers what was acknowledged
        // after the last one.
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
