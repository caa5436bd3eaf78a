//! Pub/sub over the event broker (virtual port 1002): [`Subscription`] is one broker
//! connection speaking the extended protocol through `pilot_proto::pubsub::client`, on this
//! node's own broker or on another node's; [`MioNode::publish_to`] publishes on another node's
//! broker.
//!
//! # Limitations
//!
//! - A broken broker connection is not resumed: `next_event` returns [`MioError::Broker`] and
//!   the caller subscribes again (events in between are missed unless it asks for replay).
//! - `publish_to` opens one broker connection per event and waits for its acknowledgement:
//!   fine for occasional events, slow for a high rate (publish on the own broker instead, or
//!   keep a [`Subscription`]-style connection).

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

/// A live subscription on one broker. Dropping it closes the broker connection.
#[derive(Debug)]
pub struct Subscription {
    stream: Stream,
    session: ClientSession,
    id: SubscriptionId,
    filter: String,
    pending: VecDeque<Event>,
    dropped: u64,
    buf: Vec<u8>,
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
        let stream = self.dial(AddrPort::new(node, port::EVENT_STREAM), timeout)?;
        let mut session = ClientSession::new();
        let hello = session.hello();
        let (id, frame) = session.subscribe(parsed, SubscribeOptions::default());
        let mut sub = Subscription {
            stream,
            session,
            id,
            filter: filter.to_owned(),
            pending: VecDeque::new(),
            dropped: 0,
            buf: vec![0u8; 16 * 1024],
        };
        sub.write_frames(&[hello, frame], deadline)?;
        sub.wait_suback(deadline)?;
        tracing::info!(%node, filter, "subscribed");
        Ok(sub)
    }

    // Limitation: one broker connection per call (dial, publish, acknowledgement, close).
    /// Publishes on the broker of `node` and waits until the broker stored the event.
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
        let topic = Topic::parse(topic).map_err(|e| MioError::Topic(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        let stream = self.dial(AddrPort::new(node, port::EVENT_STREAM), timeout)?;
        let mut client = Subscription {
            stream,
            session: ClientSession::new(),
            id: SubscriptionId(0),
            filter: String::new(),
            pending: VecDeque::new(),
            dropped: 0,
            buf: vec![0u8; 4096],
        };
        let frames = [
            client.session.hello(),
            client.session.publish(&topic, payload),
        ];
        client.write_frames(&frames, deadline)?;
        loop {
            match client.next_message(deadline)? {
                ServerMessage::PubAck { .. } => break,
                ServerMessage::Error { message, .. } => return Err(MioError::Broker(message)),
                _ => {}
            }
        }
        client
            .stream
            .finish(deadline.saturating_duration_since(Instant::now()))
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
            let message = self.next_message(deadline)?;
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
            match self.next_message(deadline)? {
                ServerMessage::SubAck { id, .. } if id == self.id => return Ok(()),
                ServerMessage::Error { message, .. } => return Err(MioError::Broker(message)),
                other => self.accept(other)?,
            }
        }
    }

    fn write_frames(&mut self, frames: &[Vec<u8>], deadline: Instant) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.stream.set_write_timeout(Some(left));
        for frame in frames {
            self.stream.write_all(frame).map_err(io_to_mio)?;
        }
        Ok(())
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

fn io_to_mio(error: std::io::Error) -> MioError {
    match error.kind() {
        std::io::ErrorKind::TimedOut => MioError::TimedOut,
        std::io::ErrorKind::Interrupted => MioError::Stopped,
        _ => MioError::Io(error),
    }
}
