//! Pub/sub over the event broker (virtual port 1002), speaking the extended protocol through
//! `pilot_proto::pubsub::client`: [`Subscription`] receives events from this node's own broker
//! or another node's; [`Publisher`] keeps one connection to a broker for many publishes.
//!
//! # Limitations
//!
//! - A broken broker connection is not resumed: the call returns [`MioError::Broker`] and the
//!   caller subscribes (or connects) again; events in between are missed.

use std::collections::VecDeque;
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use pilot_proto::pubsub::client::{ClientSession, SubscribeOptions};
use pilot_proto::pubsub::codec::ServerMessage;
use pilot_proto::pubsub::{SubscriptionId, Topic, TopicFilter};
use pilot_proto::wire::addr::{Addr, AddrPort, port};

use crate::error::{MioError, Result};
use crate::node::MioNode;
use crate::stream::Stream;

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

/// One connection to a broker: the stream and the client protocol state.
#[derive(Debug)]
struct BrokerConn {
    stream: Stream,
    session: ClientSession,
    buf: Vec<u8>,
}

impl BrokerConn {
    /// Dials `node`'s broker and sends the hello.
    fn open(node: &MioNode, broker: Addr, deadline: Instant) -> Result<Self> {
        let left = deadline.saturating_duration_since(Instant::now());
        let stream = node.dial(AddrPort::new(broker, port::EVENT_STREAM), left)?;
        let mut conn = Self {
            stream,
            session: ClientSession::new(),
            buf: vec![0u8; 16 * 1024],
        };
        let hello = conn.session.hello();
        conn.write(&hello, deadline)?;
        Ok(conn)
    }

    fn write(&mut self, frame: &[u8], deadline: Instant) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.stream.set_write_timeout(Some(left));
        self.stream.write_all(frame).map_err(io_to_mio)
    }

    /// The next decoded broker message, reading (and turning the loop) until the deadline.
    fn next_message(&mut self, deadline: Instant) -> Result<ServerMessage> {
        loop {
            if let Some(message) = self.session.poll_message() {
                return Ok(message);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let n = self.stream.read(&mut self.buf).map_err(io_to_mio)?;
            if n == 0 {
                return Err(MioError::Broker("the broker closed the connection".into()));
            }
            self.session
                .handle_bytes(&self.buf[..n])
                .map_err(|e| MioError::Broker(e.to_string()))?;
        }
    }
}

/// A live subscription on one broker. Dropping it closes the broker connection.
#[derive(Debug)]
pub struct Subscription {
    conn: BrokerConn,
    id: SubscriptionId,
    filter: String,
    pending: VecDeque<Event>,
    dropped: u64,
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
            pending: VecDeque::new(),
            dropped: 0,
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
            match self.conn.next_message(deadline)? {
                ServerMessage::PubAck { number, .. } => self.acked = self.acked.max(number),
                ServerMessage::Error { message, .. } => return Err(MioError::Broker(message)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Closes the connection and waits until it has fully closed.
    ///
    /// # Errors
    /// As [`Stream::finish`].
    pub fn close(self, timeout: Duration) -> Result<()> {
        self.conn.stream.finish(timeout)
    }
}

impl Subscription {
    /// The filter subscribed to.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Events dropped because more than 4096 were waiting to be taken.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Turns the node's loop until an event arrives.
    ///
    /// # Errors
    /// [`MioError::TimedOut`], [`MioError::Broker`] when the connection broke,
    /// [`MioError::Stopped`].
    pub fn next_event(&mut self, timeout: Duration) -> Result<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            let message = self.conn.next_message(deadline)?;
            self.accept(message)?;
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

    // Limitation: a `Broker` error here ends the subscription; it is not resumed.
    fn accept(&mut self, message: ServerMessage) -> Result<()> {
        let event = match message {
            ServerMessage::Event(d) if d.id == self.id => Event {
                topic: d.topic.as_str().to_owned(),
                payload: d.payload.to_vec(),
                seq: d.seq.0,
            },
            ServerMessage::Plain { topic, payload } => Event {
                topic: String::from_utf8_lossy(&topic).into_owned(),
                payload: payload.to_vec(),
                seq: 0,
            },
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

    fn wait_suback(&mut self, deadline: Instant) -> Result<()> {
        loop {
            match self.conn.next_message(deadline)? {
                ServerMessage::SubAck { id, .. } if id == self.id => return Ok(()),
                ServerMessage::Error { message, .. } => return Err(MioError::Broker(message)),
                other => self.accept(other)?,
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
