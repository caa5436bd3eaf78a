//! Pub/sub over the event broker (virtual port 1002), speaking the extended protocol through
//! `pilot_proto::pubsub::client`: [`Subscription`] receives events from this node's own broker
//! or another node's; [`Publisher`] keeps one connection to a broker for many publishes.
//!
//! A connection to another node's broker is a virtual stream. One to this node's own broker is
//! an in-process broker client (`Agent::open_broker_client`): the same frames and guarantees
//! (sequence numbers, acknowledged publishes, bounded queues, gap notices) without a loopback
//! stream's packets, acknowledgements and copies.
//!
//! Events the broker could not deliver are not silent: a subscriber that falls behind makes
//! the broker drop events for it and send a gap notice instead, and
//! [`Subscription::missed`] adds those notices up ([`Subscription::dropped`] counts the events
//! this side dropped because nobody took them).
//!
//! # Limitations
//!
//! - A broken broker connection is not resumed: the call returns [`MioError::Broker`] and the
//!   caller subscribes (or connects) again; events in between are missed.
//! - A gap notice gives a count, not the events: they are gone unless the subscription was
//!   durable or asked for replay.

use std::collections::VecDeque;
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use pilot_proto::agent::AgentError;
use pilot_proto::node::{BrokerClient, NodeError};
use pilot_proto::pubsub::client::{ClientSession, SubscribeOptions};
use pilot_proto::pubsub::codec::ServerMessage;
use pilot_proto::pubsub::{SubscriptionId, Topic, TopicFilter};
use pilot_proto::transport::StreamError;
use pilot_proto::wire::addr::{Addr, AddrPort, port};

use crate::error::{MioError, Result};
use crate::node::MioNode;
use crate::stream::Stream;

/// Longest single turn while waiting on the own broker, so that a stop is seen promptly.
const SLICE: Duration = Duration::from_millis(250);

/// Publishes between two looks at the acknowledgements that already arrived.
const READ_ACKS_EVERY: u64 = 128;

/// Events received before the caller asks for them, kept at most (older ones are dropped and
/// counted in [`Subscription::dropped`]).
const MAX_PENDING: usize = 4096;

/// One event from a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// The topic it was published on.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The broker's sequence number (0 for a plain v0.5 delivery).
    pub seq: u64,
}

/// One connection to a broker: the link and the client protocol state.
#[derive(Debug)]
struct BrokerConn {
    link: Link,
    session: ClientSession,
    buf: Vec<u8>,
}

/// How the client protocol's bytes reach the broker.
#[derive(Debug)]
enum Link {
    /// A virtual stream to port 1002 of another node.
    Stream(Stream),
    /// An in-process client of this node's own broker: no stream, same protocol.
    Local(LocalLink),
}

impl BrokerConn {
    /// Connects to `broker` (in-process when it is this node) and sends the hello.
    fn open(node: &MioNode, broker: Addr, deadline: Instant) -> Result<Self> {
        let link = if node.address() == Some(broker) {
            Link::Local(LocalLink::open(node)?)
        } else {
            let left = deadline.saturating_duration_since(Instant::now());
            Link::Stream(node.dial(AddrPort::new(broker, port::EVENT_STREAM), left)?)
        };
        let mut conn = Self {
            link,
            session: ClientSession::new(),
            buf: vec![0u8; 16 * 1024],
        };
        let hello = conn.session.hello();
        conn.write(&hello, deadline)?;
        Ok(conn)
    }

    fn write(&mut self, frame: &[u8], deadline: Instant) -> Result<()> {
        match &mut self.link {
            Link::Local(local) => local.write(frame, deadline),
            Link::Stream(stream) => {
                let left = deadline.saturating_duration_since(Instant::now());
                stream.set_write_timeout(Some(left));
                stream.write_all(frame).map_err(io_to_mio)
            }
        }
    }

    /// The next decoded broker message, reading (and turning the loop) until the deadline.
    fn next_message(&mut self, deadline: Instant) -> Result<ServerMessage> {
        loop {
            if let Some(message) = self.session.poll_message() {
                return Ok(message);
            }
            let n = match &mut self.link {
                Link::Local(local) => local.read(&mut self.buf, deadline)?,
                Link::Stream(stream) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
                    stream.read(&mut self.buf).map_err(io_to_mio)?
                }
            };
            self.feed(n)?;
        }
    }

    /// Hands the `n` bytes just read into `buf` to the client session; 0 means the broker
    /// closed the connection.
    fn feed(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(MioError::Broker("the broker closed the connection".into()));
        }
        self.session
            .handle_bytes(&self.buf[..n])
            .map_err(|e| MioError::Broker(e.to_string()))
    }

    /// Takes the broker's bytes that already arrived, without waiting or turning the loop.
    fn take_available(&mut self) -> Result<()> {
        let n = match &mut self.link {
            Link::Local(local) => local.try_read(&mut self.buf)?,
            Link::Stream(stream) => {
                stream.set_read_timeout(Some(Duration::ZERO));
                match stream.read(&mut self.buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => None,
                    read => Some(read.map_err(io_to_mio)?),
                }
            }
        };
        n.map_or(Ok(()), |n| self.feed(n))
    }

    /// Closes the link; a stream is finished (every byte acknowledged) within `timeout`.
    fn close(self, timeout: Duration) -> Result<()> {
        match self.link {
            Link::Stream(stream) => stream.finish(timeout),
            // Dropping the link disconnects the in-process client.
            Link::Local(_) => Ok(()),
        }
    }
}

/// An in-process client of the node's own broker (`Agent::open_broker_client`). Dropping it
/// disconnects the client.
#[derive(Debug)]
struct LocalLink {
    node: MioNode,
    client: BrokerClient,
}

impl LocalLink {
    fn open(node: &MioNode) -> Result<Self> {
        let client = node.command(|agent, now| agent.open_broker_client(now))?;
        Ok(Self {
            node: node.clone(),
            client,
        })
    }

    /// Hands client-protocol bytes to the broker, turning the loop while it cannot take them.
    fn write(&mut self, frame: &[u8], deadline: Instant) -> Result<()> {
        let client = self.client;
        self.until(deadline, |link| {
            let sent = link
                .node
                .command(|agent, now| agent.broker_client_send(now, client, frame));
            settled(sent)
        })
    }

    /// Reads the broker's frames that already wait, if any, without turning the loop.
    fn try_read(&mut self, buf: &mut [u8]) -> Result<Option<usize>> {
        let client = self.client;
        let read = self
            .node
            .command(|agent, now| agent.broker_client_recv(now, client, buf));
        settled(read)
    }

    /// Reads the broker's frames into `buf`, turning the loop until some arrive; `Ok(0)` when
    /// the broker closed the client.
    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize> {
        self.until(deadline, |link| link.try_read(buf))
    }

    /// Repeats `attempt`, turning the loop between tries, until it gives a value or the
    /// deadline passes.
    fn until<T>(
        &mut self,
        deadline: Instant,
        mut attempt: impl FnMut(&mut Self) -> Result<Option<T>>,
    ) -> Result<T> {
        let mut last = false;
        loop {
            if let Some(value) = attempt(self)? {
                return Ok(value);
            }
            if last {
                return Err(MioError::TimedOut);
            }
            last = self.turn(deadline)?;
        }
    }

    /// One turn of the loop bounded by `deadline` (a zero-length one once it passed); returns
    /// whether it was the last before the deadline.
    fn turn(&self, deadline: Instant) -> Result<bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.node.turn(left.min(SLICE))?;
        Ok(left.is_zero())
    }
}

impl Drop for LocalLink {
    // Limitation: dropped while the driver is borrowed (inside another call of this crate), the
    // client is not disconnected; its subscriptions stay, bounded by the broker's queues.
    fn drop(&mut self) {
        let client = self.client;
        self.node
            .try_with(|d, now| d.agent.close_broker_client(now, client));
    }
}

/// A broker-client call's outcome: its value, `None` while the broker cannot take or give
/// more yet, or the error.
fn settled<T>(outcome: Result<T>) -> Result<Option<T>> {
    match outcome {
        Ok(value) => Ok(Some(value)),
        Err(MioError::Agent(e)) if would_block(&e) => Ok(None),
        Err(MioError::Agent(e)) => Err(MioError::Broker(e.to_string())),
        Err(e) => Err(e),
    }
}

fn would_block(error: &AgentError) -> bool {
    matches!(
        error,
        AgentError::Node(NodeError::Stream(StreamError::WouldBlock))
    )
}

/// What one subscription received and has not handed out yet, and what it lost.
#[derive(Debug, Default)]
struct Inbox {
    pending: VecDeque<Event>,
    /// Events dropped here because [`MAX_PENDING`] were waiting.
    dropped: u64,
    /// Events the broker reported missed in gap notices.
    missed: u64,
    /// Gap notices received.
    gaps: u64,
}

impl Inbox {
    /// Takes one broker message for subscription `id`: queues an event, counts a gap, or
    /// returns the broker's refusal. Other messages are ignored.
    // Limitation: a `Broker` error here ends the subscription; it is not resumed.
    fn accept(&mut self, id: SubscriptionId, message: ServerMessage) -> Result<()> {
        let event = match message {
            ServerMessage::Event(d) if d.id == id => Event {
                topic: d.topic.as_str().to_owned(),
                payload: d.payload.to_vec(),
                seq: d.seq.0,
            },
            ServerMessage::Plain { topic, payload } => Event {
                topic: String::from_utf8_lossy(&topic).into_owned(),
                payload: payload.to_vec(),
                seq: 0,
            },
            ServerMessage::Gap(gap) if gap.id == id => {
                tracing::debug!(reason = ?gap.reason, missed = gap.missed, "broker gap notice");
                self.gaps += 1;
                self.missed = self.missed.saturating_add(gap.missed);
                return Ok(());
            }
            ServerMessage::Error { message, .. } => return Err(MioError::Broker(message)),
            _ => return Ok(()),
        };
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            self.dropped += 1;
        }
        self.pending.push_back(event);
        Ok(())
    }
}

/// A live subscription on one broker. Dropping it closes the broker connection.
#[derive(Debug)]
pub struct Subscription {
    conn: BrokerConn,
    id: SubscriptionId,
    filter: String,
    inbox: Inbox,
}

/// A connection for publishing on one broker. Dropping it closes the connection.
#[derive(Debug)]
pub struct Publisher {
    conn: BrokerConn,
    broker: Addr,
    sent: u64,
    acked: u64,
}

impl MioNode {
    /// Subscribes on this node's own broker (`own address:1002`) and waits for the broker to
    /// confirm, so that events published afterwards are delivered.
    ///
    /// # Errors
    /// [`MioError::NotRegistered`], [`MioError::Topic`], [`MioError::TimedOut`],
    /// [`MioError::Broker`] when the broker refuses.
    pub fn subscribe(&self, filter: &str, timeout: Duration) -> Result<Subscription> {
        let own = self.address().ok_or(MioError::NotRegistered)?;
        self.subscribe_at(own, filter, timeout)
    }

    /// Subscribes on the broker of `node` (which may be this node).
    ///
    /// # Errors
    /// As [`Self::subscribe`], and [`MioError::Dial`] when `node` cannot be reached.
    pub fn subscribe_at(
        &self,
        node: Addr,
        filter: &str,
        timeout: Duration,
    ) -> Result<Subscription> {
        let parsed = TopicFilter::parse(filter).map_err(|e| MioError::Topic(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        let mut conn = BrokerConn::open(self, node, deadline)?;
        let (id, frame) = conn.session.subscribe(parsed, SubscribeOptions::default());
        conn.write(&frame, deadline)?;
        let mut sub = Subscription {
            conn,
            id,
            filter: filter.to_owned(),
            inbox: Inbox::default(),
        };
        sub.wait_suback(deadline)?;
        tracing::info!(%node, filter, "subscribed");
        Ok(sub)
    }

    /// Opens a publishing connection to the broker of `node`.
    ///
    /// # Errors
    /// [`MioError::Dial`], [`MioError::TimedOut`], [`MioError::Stopped`].
    pub fn publisher(&self, node: Addr, timeout: Duration) -> Result<Publisher> {
        let conn = BrokerConn::open(self, node, Instant::now() + timeout)?;
        Ok(Publisher {
            conn,
            broker: node,
            sent: 0,
            acked: 0,
        })
    }

    /// Publishes one event on the broker of `node` and waits until the broker stored it (one
    /// connection per call: use [`Self::publisher`] for many).
    ///
    /// # Errors
    /// [`MioError::Topic`], [`MioError::Dial`], [`MioError::TimedOut`], [`MioError::Broker`].
    pub fn publish_to(
        &self,
        node: Addr,
        topic: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut publisher = self.publisher(node, timeout)?;
        publisher.publish(topic, payload)?;
        publisher.flush(deadline.saturating_duration_since(Instant::now()))?;
        publisher.close(deadline.saturating_duration_since(Instant::now()))
    }
}

impl Publisher {
    /// The broker's node.
    pub fn broker(&self) -> Addr {
        self.broker
    }

    /// Sends one event (blocking only while the stream's send buffer is full).
    ///
    /// # Errors
    /// [`MioError::Topic`], [`MioError::TimedOut`] (the send buffer stayed full for 30 s),
    /// [`MioError::Io`] when the connection broke.
    pub fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<()> {
        let topic = Topic::parse(topic).map_err(|e| MioError::Topic(e.to_string()))?;
        let frame = self.conn.session.publish(&topic, payload);
        self.conn
            .write(&frame, Instant::now() + Duration::from_secs(30))?;
        self.sent += 1;
        if self.sent.is_multiple_of(READ_ACKS_EVERY) {
            // Take the acknowledgements that already arrived: the broker closes a publisher
            // that lets too many pile up unread.
            self.conn.take_available()?;
            while let Some(message) = self.conn.session.poll_message() {
                self.on_reply(message)?;
            }
        }
        Ok(())
    }

    /// Waits until the broker stored every event sent so far.
    ///
    /// # Errors
    /// [`MioError::TimedOut`], [`MioError::Broker`] when it refused one or the connection
    /// broke.
    pub fn flush(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.acked < self.sent {
            let message = self.conn.next_message(deadline)?;
            self.on_reply(message)?;
        }
        Ok(())
    }

    fn on_reply(&mut self, message: ServerMessage) -> Result<()> {
        match message {
            ServerMessage::PubAck { number, .. } => self.acked = self.acked.max(number),
            ServerMessage::Error { message, .. } => return Err(MioError::Broker(message)),
            _ => {}
        }
        Ok(())
    }

    /// Closes the connection and waits until it has fully closed.
    ///
    /// # Errors
    /// As [`Stream::finish`].
    pub fn close(self, timeout: Duration) -> Result<()> {
        self.conn.close(timeout)
    }
}

impl Subscription {
    /// The filter subscribed to.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Events dropped here because more than 4096 were waiting to be taken.
    pub fn dropped(&self) -> u64 {
        self.inbox.dropped
    }

    /// Events the broker reported it could not deliver (gap notices: this subscriber fell
    /// behind and its queue at the broker overflowed, or retained events expired before a
    /// replay reached them). Grows as the notices arrive, in order with the events.
    pub fn missed(&self) -> u64 {
        self.inbox.missed
    }

    /// Gap notices received (each covers one or more missed events).
    pub fn gaps(&self) -> u64 {
        self.inbox.gaps
    }

    /// Turns the node's loop until an event arrives.
    ///
    /// # Errors
    /// [`MioError::TimedOut`], [`MioError::Broker`] when the connection broke,
    /// [`MioError::Stopped`].
    pub fn next_event(&mut self, timeout: Duration) -> Result<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.inbox.pending.pop_front() {
                return Ok(event);
            }
            let message = self.conn.next_message(deadline)?;
            self.inbox.accept(self.id, message)?;
        }
    }

    /// An event that already arrived, without waiting for the network (one zero-length turn).
    ///
    /// # Errors
    /// As [`Self::next_event`], except that nothing ready is `Ok(None)`.
    pub fn try_next_event(&mut self) -> Result<Option<Event>> {
        match self.next_event(Duration::ZERO) {
            Ok(event) => Ok(Some(event)),
            Err(MioError::TimedOut) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn wait_suback(&mut self, deadline: Instant) -> Result<()> {
        loop {
            match self.conn.next_message(deadline)? {
                ServerMessage::SubAck { id, .. } if id == self.id => return Ok(()),
                ServerMessage::Error { message, .. } => return Err(MioError::Broker(message)),
                other => self.inbox.accept(self.id, other)?,
            }
        }
    }
}

fn io_to_mio(error: std::io::Error) -> MioError {
    match error.kind() {
        std::io::ErrorKind::TimedOut => MioError::TimedOut,
        std::io::ErrorKind::Interrupted => MioError::Stopped,
        _ => MioError::Io(error),
    }
}

#[cfg(test)]
mod tests {
    use pilot_proto::pubsub::Seq;
    use pilot_proto::pubsub::codec::{GapNotice, GapReason};

    use super::*;

    fn gap(id: u32, missed: u64) -> ServerMessage {
        ServerMessage::Gap(GapNotice {
            id: SubscriptionId(id),
            reason: GapReason::Overflow,
            from: Seq(10),
            to: Seq(10 + missed - 1),
            missed,
        })
    }

    #[test]
    fn gap_notices_for_this_subscription_add_up_as_missed() {
        let mut inbox = Inbox::default();
        let id = SubscriptionId(3);

        inbox.accept(id, gap(3, 5)).expect("a gap is not an error");
        inbox.accept(id, gap(3, 2)).expect("a gap is not an error");
        inbox
            .accept(id, gap(4, 100))
            .expect("another subscription's gap");

        assert_eq!((inbox.missed, inbox.gaps), (7, 2));
        assert!(inbox.pending.is_empty());
        assert_eq!(inbox.dropped, 0);
    }

    #[test]
    fn plain_events_queue_and_the_oldest_is_dropped_past_the_bound() {
        let mut inbox = Inbox::default();
        let id = SubscriptionId(1);
        for i in 0..MAX_PENDING + 3 {
            let message = ServerMessage::Plain {
                topic: b"t.a".to_vec().into(),
                payload: i.to_string().into_bytes().into(),
            };
            inbox.accept(id, message).expect("event");
        }

        assert_eq!(inbox.pending.len(), MAX_PENDING);
        assert_eq!(inbox.dropped, 3);
        assert_eq!(
            inbox.pending.front().map(|e| e.payload.clone()),
            Some(b"3".to_vec())
        );
        assert_eq!(inbox.missed, 0);
    }

    #[test]
    fn a_broker_error_is_returned() {
        let mut inbox = Inbox::default();
        let message = ServerMessage::Error {
            code: pilot_proto::pubsub::codec::ErrorCode::Limit,
            id: SubscriptionId(1),
            message: "no".into(),
        };
        let result = inbox.accept(SubscriptionId(1), message);
        assert!(matches!(result, Err(MioError::Broker(m)) if m == "no"));
    }
}
