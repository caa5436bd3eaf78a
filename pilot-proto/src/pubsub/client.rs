//! The client side of an extended port-1002 connection, sans-IO: builds request frames,
//! decodes what the broker sends, and remembers enough to resume after a reconnect.
//!
//! The caller owns the stream. It writes the bytes the methods return, feeds received bytes to
//! [`ClientSession::handle_bytes`], and drains [`ClientSession::poll_message`]. After a
//! reconnect, [`ClientSession::resume`] returns the hello and one subscribe per subscription
//! with `since` set just past the last event seen, so nothing is missed or repeated.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::codec::{ClientMessage, FrameReader, ServerMessage, SubscribeRequest, VERSION};
use super::{Seq, SubscriptionId, Topic, TopicFilter};
use crate::wire::ParseError;
use crate::wire::event::MAX_PAYLOAD_LEN;

/// Why received bytes could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The stream's framing is broken; the connection must be closed.
    #[error("broken framing: {0}")]
    Framing(#[from] ParseError),
}

/// How to subscribe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Replay retained events from this sequence number on.
    pub since: Option<Seq>,
    /// Durable subscription name (deliveries must be acknowledged).
    pub durable: Option<String>,
    /// Also receive this connection's own publishes.
    pub echo: bool,
}

#[derive(Debug)]
struct Tracked {
    filter: TopicFilter,
    options: SubscribeOptions,
    last_seen: Option<Seq>,
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct ClientSession {
    reader: FrameReader,
    subscriptions: BTreeMap<SubscriptionId, Tracked>,
    next_id: u32,
    inbox: std::collections::VecDeque<ServerMessage>,
}

impl ClientSession {
    /// Creates a session for a new connection.
    pub fn new() -> Self {
        Self {
            reader: FrameReader::new(MAX_PAYLOAD_LEN),
            subscriptions: BTreeMap::new(),
            next_id: 1,
            inbox: std::collections::VecDeque::new(),
        }
    }

    /// Returns the first frame to write: the hello that selects the extended protocol.
    pub fn hello(&self) -> Vec<u8> {
        ClientMessage::Hello { version: VERSION }.encode()
    }

    /// Adds a subscription and returns its id and the frame to write.
    pub fn subscribe(
        &mut self,
        filter: TopicFilter,
        options: SubscribeOptions,
    ) -> (SubscriptionId, Vec<u8>) {
        let id = SubscriptionId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let frame = subscribe_frame(id, &filter, &options, options.since);
        self.subscriptions.insert(
            id,
            Tracked {
                filter,
                options,
                last_seen: None,
            },
        );
        (id, frame)
    }

    /// Removes a subscription and returns the frame to write.
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> Vec<u8> {
        self.subscriptions.remove(&id);
        ClientMessage::Unsubscribe { id }.encode()
    }

    /// Returns the frame acknowledging one durable delivery.
    pub fn ack(&self, id: SubscriptionId, seq: Seq) -> Vec<u8> {
        ClientMessage::Ack { id, seq }.encode()
    }

    /// Returns the frame publishing one event.
    pub fn publish(&self, topic: &Topic, payload: &[u8]) -> Vec<u8> {
        let payload = Bytes::copy_from_slice(payload);
        ClientMessage::Publish {
            topic: topic.clone(),
            payload,
        }
        .encode()
    }

    /// Feeds bytes read from the stream.
    ///
    /// # Errors
    ///
    /// [`ClientError::Framing`] when the stream cannot be decoded any further. Frames that
    /// decode but carry a malformed control payload are skipped.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.reader.push(bytes);
        while let Some(frame) = self.reader.next_frame()? {
            let Ok(message) = ServerMessage::decode(&frame) else {
                continue;
            };
            self.note(&message);
            self.inbox.push_back(message);
        }
        Ok(())
    }

    /// Returns the next message from the broker.
    #[must_use]
    pub fn poll_message(&mut self) -> Option<ServerMessage> {
        self.inbox.pop_front()
    }

    /// Returns the last sequence number seen on a subscription (events and gap ends).
    pub fn last_seen(&self, id: SubscriptionId) -> Option<Seq> {
        self.subscriptions.get(&id)?.last_seen
    }

    /// Starts over on a new connection: forgets buffered bytes and returns the frames to write,
    /// the hello and then every subscription again, resuming after the last event seen.
    pub fn resume(&mut self) -> Vec<Vec<u8>> {
        self.reader = FrameReader::new(MAX_PAYLOAD_LEN);
        self.inbox.clear();
        let mut frames = vec![self.hello()];
        for (id, tracked) in &self.subscriptions {
            let since = tracked.last_seen.map(Seq::next).or(tracked.options.since);
            frames.push(subscribe_frame(
                *id,
                &tracked.filter,
                &tracked.options,
                since,
            ));
        }
        frames
    }

    fn note(&mut self, message: &ServerMessage) {
        let (id, seq) = match message {
            ServerMessage::Event(delivery) => (delivery.id, delivery.seq),
            ServerMessage::Gap(gap) => (gap.id, gap.to),
            _ => return,
        };
        if let Some(tracked) = self.subscriptions.get_mut(&id) {
            tracked.last_seen = Some(tracked.last_seen.map_or(seq, |last| last.max(seq)));
        }
    }
}

impl Default for ClientSession {
    fn default() -> Self {
        Self::new()
    }
}

fn subscribe_frame(
    id: SubscriptionId,
    filter: &TopicFilter,
    options: &SubscribeOptions,
    since: Option<Seq>,
) -> Vec<u8> {
    let request = SubscribeRequest {
        id,
        filter: filter.clone(),
        since,
        durable: options.durable.clone(),
        echo: options.echo,
    };
    ClientMessage::Subscribe(request).encode()
}
