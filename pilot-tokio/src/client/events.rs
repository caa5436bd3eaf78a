//! Topic pub/sub over a node's event broker (virtual port 1002): [`Subscription`] is a `Stream`
//! of [`Event`]s; [`Client::publish`] sends one event. Both speak v0.5 (any daemon).
//!
//! [`EventSession`] speaks the extended protocol instead (`docs/design/pubsub.md`): numbered
//! events, resume from a sequence number ([`Client::subscribe_since`]), gap notices when the
//! requested events are gone, and publishes acknowledged with their sequence number once the
//! broker stored them. Only brokers of this implementation answer it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use pilot_proto::pubsub::client::{ClientSession, SubscribeOptions};
use pilot_proto::pubsub::codec::{GapReason, ServerMessage};
use pilot_proto::pubsub::{Seq, SubscriptionId, Topic, TopicFilter};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};

use super::{Client, ClientError, Conn, Event, PORT_EVENTS};
use crate::client_proto::{encode_event, take_event};
use crate::shim::addr::{Addr, AddrPort};

/// Bytes read from the stream at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A subscription: a `Stream` of events matching its topic pattern.
#[derive(Debug)]
pub struct Subscription {
    conn: Conn,
    buf: Vec<u8>,
}

impl Client {
    /// Subscribes to `pattern` on this node's broker.
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription, ClientError> {
        let node = self.address().await?;
        self.subscribe_at(node, pattern).await
    }

    /// Subscribes to `pattern` on `node`'s broker.
    pub async fn subscribe_at(
        &self,
        node: Addr,
        pattern: &str,
    ) -> Result<Subscription, ClientError> {
        let frame = encode_event(pattern, &[])?;
        let conn = self
            .dial(AddrPort {
                addr: node,
                port: PORT_EVENTS,
            })
            .await?;
        conn.send_all(&frame).await?;
        Ok(Subscription {
            conn,
            buf: Vec::new(),
        })
    }

    /// Publishes one event on this node's broker.
    pub async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), ClientError> {
        let node = self.address().await?;
        self.publish_at(node, topic, payload).await
    }

    /// Publishes one event on `node`'s broker (subscribe to the topic, publish, close).
    pub async fn publish_at(
        &self,
        node: Addr,
        topic: &str,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let sub = self.subscribe_at(node, topic).await?;
        sub.publish(topic, payload).await?;
        sub.conn.close().await
    }
}

impl Client {
    /// Opens an extended event session with `node`'s broker (hello answered by welcome).
    pub async fn event_session_at(&self, node: Addr) -> Result<EventSession, ClientError> {
        let remote = AddrPort {
            addr: node,
            port: PORT_EVENTS,
        };
        let conn = self.dial(remote).await?;
        let session = ClientSession::new();
        let hello = session.hello();
        let mut events = EventSession {
            conn,
            session,
            head: 0,
            first: 1,
            published: 0,
            items: VecDeque::new(),
            buf: vec![0; READ_CHUNK],
        };
        events.send(&hello).await?;
        events.welcome().await?;
        Ok(events)
    }

    /// Subscribes to `pattern` on this node's broker, replaying retained events from `since`
    /// on (see [`EventSession::subscribe`]).
    pub async fn subscribe_since(
        &self,
        pattern: &str,
        since: u64,
    ) -> Result<EventSession, ClientError> {
        let node = self.address().await?;
        self.subscribe_since_at(node, pattern, since).await
    }

    /// Subscribes to `pattern` on `node`'s broker, replaying retained events from `since` on.
    pub async fn subscribe_since_at(
        &self,
        node: Addr,
        pattern: &str,
        since: u64,
    ) -> Result<EventSession, ClientError> {
        let mut events = self.event_session_at(node).await?;
        events.subscribe(pattern, Some(since)).await?;
        Ok(events)
    }
}

/// What an [`EventSession`] receives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventItem {
    /// One event.
    Event {
        /// The subscription it matched.
        subscription: u32,
        /// The broker's sequence number.
        seq: u64,
        /// The topic it was published on.
        topic: String,
        /// The payload.
        payload: Vec<u8>,
    },
    /// Events `from..=to` will not come.
    Gap {
        /// The subscription concerned.
        subscription: u32,
        /// First missing sequence number.
        from: u64,
        /// Last missing sequence number.
        to: u64,
        /// Matching events missed (for `expired`, the width of the range: an upper bound).
        missed: u64,
        /// `expired` (retention dropped them), `overflow` (this client was too slow) or
        /// `max-deliver`.
        reason: &'static str,
    },
}

/// An extended connection to a broker: subscriptions with `since`, numbered events, gap
/// notices and acknowledged publishes. Read it with [`EventSession::next_item`].
#[derive(Debug)]
pub struct EventSession {
    conn: Conn,
    session: ClientSession,
    head: u64,
    first: u64,
    published: u64,
    items: VecDeque<EventItem>,
    buf: Vec<u8>,
}

impl EventSession {
    /// The last stored sequence number when the session opened (0 when none).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The oldest retained sequence number when the session opened.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Subscribes to `pattern`; with `since`, retained events from that sequence number on
    /// come first (after a gap notice if some are gone), then live ones. Returns the
    /// subscription's id once the broker confirmed it.
    pub async fn subscribe(
        &mut self,
        pattern: &str,
        since: Option<u64>,
    ) -> Result<u32, ClientError> {
        let options = SubscribeOptions {
            since: since.map(Seq),
            ..SubscribeOptions::default()
        };
        self.subscribe_with(pattern, options).await
    }

    /// Subscribes durably under `name`: the broker keeps the subscription's position while
    /// this client is away (and, on a daemon with an event log, across restarts) and
    /// redelivers every event not acknowledged with [`EventSession::ack`]. Subscribing again
    /// under the same name resumes it; `since` applies only when the name is new.
    pub async fn subscribe_durable(
        &mut self,
        pattern: &str,
        name: &str,
        since: Option<u64>,
    ) -> Result<u32, ClientError> {
        let options = SubscribeOptions {
            since: since.map(Seq),
            durable: Some(name.to_owned()),
            ..SubscribeOptions::default()
        };
        self.subscribe_with(pattern, options).await
    }

    /// Acknowledges one delivery of a durable subscription.
    pub async fn ack(&mut self, subscription: u32, seq: u64) -> Result<(), ClientError> {
        let frame = self.session.ack(SubscriptionId(subscription), Seq(seq));
        self.send(&frame).await
    }

    async fn subscribe_with(
        &mut self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<u32, ClientError> {
        let filter = TopicFilter::parse(pattern)
            .map_err(|e| ClientError::Daemon(format!("bad topic pattern {pattern:?}: {e}")))?;
        let (id, frame) = self.session.subscribe(filter, options);
        self.send(&frame).await?;

        loop {
            match self.next_message().await? {
                ServerMessage::SubAck { id: acked, .. } if acked == id => return Ok(id.0),
                ServerMessage::Error {
                    id: failed,
                    message,
                    ..
                } if failed == id => {
                    return Err(ClientError::Daemon(format!("subscribe refused: {message}")));
                }
                other => self.keep(other),
            }
        }
    }

    /// Publishes one event and returns its sequence number once the broker stored it (on a
    /// daemon with an event log: once it is on disk).
    pub async fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<u64, ClientError> {
        let parsed = Topic::parse(topic)
            .map_err(|e| ClientError::Daemon(format!("bad topic {topic:?}: {e}")))?;
        let frame = self.session.publish(&parsed, payload);
        self.send(&frame).await?;

        loop {
            match self.next_message().await? {
                ServerMessage::PubAck { number, seq } if number == self.published + 1 => {
                    self.published = number;
                    return Ok(seq.0);
                }
                ServerMessage::Error {
                    id: SubscriptionId(0),
                    message,
                    ..
                } => {
                    return Err(ClientError::Daemon(format!("publish refused: {message}")));
                }
                other => self.keep(other),
            }
        }
    }

    /// The next event or gap notice; `None` when the broker closed the stream.
    pub async fn next_item(&mut self) -> Option<Result<EventItem, ClientError>> {
        loop {
            if let Some(item) = self.items.pop_front() {
                return Some(Ok(item));
            }
            match self.next_message().await {
                Ok(message) => self.keep(message),
                Err(ClientError::Disconnected) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Closes the connection.
    pub async fn close(self) -> Result<(), ClientError> {
        self.conn.close().await
    }

    /// Writes one frame through `&mut` (so the session's futures stay `Send`).
    async fn send(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        self.conn.write_all(frame).await?;
        self.conn.flush().await?;
        Ok(())
    }

    async fn welcome(&mut self) -> Result<(), ClientError> {
        match self.next_message().await? {
            ServerMessage::Welcome { head, first, .. } => {
                (self.head, self.first) = (head.0, first.0);
                Ok(())
            }
            other => Err(ClientError::Protocol(format!(
                "the broker does not speak the extended protocol (got {other:?})"
            ))),
        }
    }

    /// Queues what a caller of [`EventSession::next_item`] wants; drops the rest.
    fn keep(&mut self, message: ServerMessage) {
        let item = match message {
            ServerMessage::Event(d) => EventItem::Event {
                subscription: d.id.0,
                seq: d.seq.0,
                topic: d.topic.as_str().to_owned(),
                payload: d.payload.to_vec(),
            },
            ServerMessage::Gap(g) => EventItem::Gap {
                subscription: g.id.0,
                from: g.from.0,
                to: g.to.0,
                missed: g.missed,
                reason: gap_label(g.reason),
            },
            _ => return,
        };
        self.items.push_back(item);
    }

    /// The next message from the broker; [`ClientError::Disconnected`] at the end of stream.
    async fn next_message(&mut self) -> Result<ServerMessage, ClientError> {
        loop {
            if let Some(message) = self.session.poll_message() {
                return Ok(message);
            }
            let n = self.conn.read(&mut self.buf).await?;
            if n == 0 {
                return Err(ClientError::Disconnected);
            }
            self.session
                .handle_bytes(&self.buf[..n])
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
        }
    }
}

fn gap_label(reason: GapReason) -> &'static str {
    match reason {
        GapReason::Expired => "expired",
        GapReason::Overflow => "overflow",
        GapReason::MaxDeliver => "max-deliver",
        _ => "other",
    }
}

impl Subscription {
    /// Publishes on this subscription's connection (the broker never echoes it back here).
    pub async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), ClientError> {
        self.conn.send_all(&encode_event(topic, payload)?).await
    }

    /// The next event; `None` when the broker closed the stream.
    pub async fn next_event(&mut self) -> Option<Result<Event, ClientError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for Subscription {
    type Item = Result<Event, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match take_event(&mut this.buf) {
                Ok(Some(event)) => return Poll::Ready(Some(Ok(event))),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.conn).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(ClientError::Io(e)))),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(None),
                Poll::Ready(Ok(())) => this.buf.extend_from_slice(rb.filled()),
            }
        }
    }
}
