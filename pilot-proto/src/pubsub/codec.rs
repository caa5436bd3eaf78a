//! Port-1002 stream codec shared by the broker and clients: frame reassembly and the extended
//! protocol's control messages.
//!
//! Every message, v0.5 or extended, travels in a `wire::event` frame. Extended control messages
//! use reserved topics under `$pilot.` with a big-endian binary payload; a frame with any other
//! topic is a plain v0.5 event (a publish from a client, a delivery to a v0.5 subscriber). See
//! `docs/design/pubsub.md#negotiation` for the exchange.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::topic::{Topic, TopicError, TopicFilter};
use super::{Seq, SubscriptionId};
use crate::wire::event::{self, EventRepr};
use crate::wire::{EmitError, ParseError};

/// Magic that opens a hello and a welcome payload: "Pilot EVents, protocol 1".
pub const MAGIC: [u8; 4] = *b"PEV1";

/// The extended protocol version this implementation speaks.
pub const VERSION: u8 = 1;

/// Longest durable subscription name, in bytes.
pub const MAX_DURABLE_NAME: usize = 64;

/// Reserved topics of the extended protocol.
pub mod topics {
    /// Client → broker, first frame only: asks for the extended protocol.
    pub const HELLO: &str = "$pilot.hello";
    /// Broker → client: the answer to a hello.
    pub const WELCOME: &str = "$pilot.welcome";
    /// Client → broker: add a subscription.
    pub const SUBSCRIBE: &str = "$pilot.sub";
    /// Client → broker: remove a subscription.
    pub const UNSUBSCRIBE: &str = "$pilot.unsub";
    /// Client → broker: acknowledge a delivery of a durable subscription.
    pub const ACK: &str = "$pilot.ack";
    /// Broker → client: a subscription is active.
    pub const SUBACK: &str = "$pilot.suback";
    /// Broker → client: a publish is stored (and durable, when persistence is on).
    pub const PUBACK: &str = "$pilot.puback";
    /// Broker → client: one event for one subscription.
    pub const EVENT: &str = "$pilot.ev";
    /// Broker → client: events a subscription will never receive.
    pub const GAP: &str = "$pilot.gap";
    /// Broker → client: a request was refused.
    pub const ERROR: &str = "$pilot.error";
}

/// Why a control message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The frame itself is malformed.
    #[error("bad frame: {0}")]
    Frame(#[from] ParseError),
    /// A topic or filter inside the message is invalid.
    #[error("bad topic: {0}")]
    Topic(#[from] TopicError),
    /// A `$pilot.` topic this version does not know.
    #[error("unknown control topic")]
    UnknownControl,
    /// A control payload is too short or has bytes left over.
    #[error("malformed {0} payload")]
    Malformed(&'static str),
}

/// One frame taken off the stream, sharing the reader's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Topic bytes as sent (not yet validated).
    pub topic: Bytes,
    /// Payload bytes.
    pub payload: Bytes,
}

impl Frame {
    /// Encodes a frame with this topic and payload.
    ///
    /// # Errors
    ///
    /// [`EmitError::OutOfRange`] when the topic or payload is over the v0.5 reader limits.
    pub fn encode(topic: &[u8], payload: &[u8]) -> Result<Vec<u8>, EmitError> {
        Ok(EventRepr::new(topic, payload)?.to_vec())
    }

    /// Returns whether the topic is one of the extended protocol's reserved topics.
    pub fn is_control(&self) -> bool {
        self.topic.starts_with(b"$pilot.")
    }
}

/// Reassembles frames from stream bytes that arrive in arbitrary pieces.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    max_payload: usize,
}

impl FrameReader {
    /// Creates a reader refusing payloads over `max_payload` bytes (and always over the v0.5
    /// limit of 16 MiB).
    pub fn new(max_payload: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_payload: max_payload.min(event::MAX_PAYLOAD_LEN),
        }
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the next complete frame, if one has arrived.
    ///
    /// # Errors
    ///
    /// [`ParseError::TooLarge`] when the next frame is over a limit; the stream cannot be
    /// resynchronised after that and should be closed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ParseError> {
        let Some(len) = event::frame_len(&self.buf)? else {
            return Ok(None);
        };
        // frame_len returned a length, so the u16 topic length is present.
        let topic_len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        let payload_len = len - event::OVERHEAD - topic_len;
        if payload_len > self.max_payload {
            return Err(ParseError::TooLarge {
                len: payload_len,
                max: self.max_payload,
            });
        }
        if self.buf.len() < len {
            return Ok(None);
        }

        let frame = self.buf.split_to(len).freeze();
        let topic = frame.slice(2..2 + topic_len);
        let payload = frame.slice(event::OVERHEAD + topic_len..);
        Ok(Some(Frame { topic, payload }))
    }

    /// Returns how many bytes are buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Options of a subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// Client-chosen id, echoed on every event and gap notice of this subscription.
    pub id: SubscriptionId,
    /// What to receive.
    pub filter: TopicFilter,
    /// Replay retained events from this sequence number on, before live ones.
    pub since: Option<Seq>,
    /// Name of a durable subscription: deliveries must be acknowledged and unacknowledged ones
    /// are redelivered; the state outlives the connection.
    pub durable: Option<String>,
    /// Also deliver events this connection published itself (v0.5 never does).
    pub echo: bool,
}

/// A message from a client of the extended protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientMessage {
    /// First frame: switch this connection to the extended protocol.
    Hello {
        /// Highest version the client speaks.
        version: u8,
    },
    /// Add a subscription.
    Subscribe(SubscribeRequest),
    /// Remove a subscription.
    Unsubscribe {
        /// The subscription.
        id: SubscriptionId,
    },
    /// Acknowledge one delivery of a durable subscription.
    Ack {
        /// The subscription.
        id: SubscriptionId,
        /// The event's sequence number.
        seq: Seq,
    },
    /// Publish an event (a plain frame with a non-reserved topic).
    Publish {
        /// Where.
        topic: Topic,
        /// What.
        payload: Bytes,
    },
}

/// Why a subscription misses events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GapReason {
    /// The events were evicted by retention before they could be replayed.
    Expired,
    /// The subscription's bounded queue overflowed while its client was slow.
    Overflow,
    /// A durable delivery reached the redelivery cap without an acknowledgement.
    MaxDeliver,
}

/// Events a subscription will never receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapNotice {
    /// The subscription.
    pub id: SubscriptionId,
    /// Why.
    pub reason: GapReason,
    /// First sequence number of the gap.
    pub from: Seq,
    /// Last sequence number of the gap (inclusive).
    pub to: Seq,
    /// Matching events known to be missed; for [`GapReason::Expired`] this is the width of the
    /// range, an upper bound (evicted events are not checked against the filter).
    pub missed: u64,
}

/// One event delivered to an extended subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The subscription it is for.
    pub id: SubscriptionId,
    /// The broker's sequence number of the event.
    pub seq: Seq,
    /// 1 on first delivery, higher on redelivery of a durable subscription.
    pub attempt: u16,
    /// Topic it was published on.
    pub topic: Topic,
    /// Payload.
    pub payload: Bytes,
}

/// Error codes in a `$pilot.error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request could not be decoded.
    Malformed,
    /// A topic or filter is invalid.
    InvalidTopic,
    /// A per-connection or per-broker limit was hit.
    Limit,
    /// The subscription id is unknown or already in use.
    UnknownSubscription,
    /// Publishing on a system (`$`) topic is reserved to the daemon.
    Forbidden,
    /// A code this version does not know.
    Other(u16),
}

/// A message from the broker to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerMessage {
    /// Answer to a hello.
    Welcome {
        /// Version the broker will speak.
        version: u8,
        /// Sequence number of the last stored event (0 when none).
        head: Seq,
        /// Oldest retained sequence number (head + 1 when nothing is retained).
        first: Seq,
    },
    /// A subscription is active; its first event will be `next` or later.
    SubAck {
        /// The subscription.
        id: SubscriptionId,
        /// Where delivery starts.
        next: Seq,
    },
    /// The `number`-th publish of this connection (from 1) was stored as `seq`.
    PubAck {
        /// Count of this connection's publishes, from 1.
        number: u64,
        /// Sequence number assigned.
        seq: Seq,
    },
    /// An event for a subscription.
    Event(Delivery),
    /// A gap notice.
    Gap(GapNotice),
    /// A refused request.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// The subscription concerned, or 0.
        id: SubscriptionId,
        /// Human-readable detail, lowercase.
        message: String,
    },
    /// A plain v0.5 frame (a client that never sent hello sees only these).
    Plain {
        /// Topic bytes.
        topic: Bytes,
        /// Payload bytes.
        payload: Bytes,
    },
}

impl ClientMessage {
    /// Decodes a frame a client sent on an extended connection.
    ///
    /// # Errors
    ///
    /// [`CodecError`] when the payload or topic is malformed.
    pub fn decode(frame: &Frame) -> Result<Self, CodecError> {
        if !frame.is_control() {
            let topic = Topic::from_bytes(&frame.topic)?;
            return Ok(Self::Publish {
                topic,
                payload: frame.payload.clone(),
            });
        }
        let mut body = frame.payload.clone();
        let message = match &frame.topic[..] {
            t if t == topics::HELLO.as_bytes() => decode_hello(&mut body)?,
            t if t == topics::SUBSCRIBE.as_bytes() => decode_subscribe(&mut body)?,
            t if t == topics::UNSUBSCRIBE.as_bytes() => Self::Unsubscribe {
                id: SubscriptionId(take_u32(&mut body, "unsub")?),
            },
            t if t == topics::ACK.as_bytes() => Self::Ack {
                id: SubscriptionId(take_u32(&mut body, "ack")?),
                seq: Seq(take_u64(&mut body, "ack")?),
            },
            _ => return Err(CodecError::UnknownControl),
        };
        finish(body, message, "control")
    }

    /// Encodes the message as one frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let topic = match self {
            Self::Hello { version } => {
                body.extend_from_slice(&MAGIC);
                body.extend_from_slice(&[*version, 0]);
                topics::HELLO
            }
            Self::Subscribe(request) => {
                encode_subscribe(request, &mut body);
                topics::SUBSCRIBE
            }
            Self::Unsubscribe { id } => {
                body.put_u32(id.0);
                topics::UNSUBSCRIBE
            }
            Self::Ack { id, seq } => {
                body.put_u32(id.0);
                body.put_u64(seq.0);
                topics::ACK
            }
            Self::Publish { topic, payload } => return frame(topic.as_str(), payload),
        };
        frame(topic, &body)
    }
}

impl ServerMessage {
    /// Decodes a frame received from the broker.
    ///
    /// # Errors
    ///
    /// [`CodecError`] when a control payload is malformed.
    pub fn decode(frame: &Frame) -> Result<Self, CodecError> {
        if !frame.is_control() {
            let (topic, payload) = (frame.topic.clone(), frame.payload.clone());
            return Ok(Self::Plain { topic, payload });
        }
        let mut body = frame.payload.clone();
        let message = match &frame.topic[..] {
            t if t == topics::WELCOME.as_bytes() => decode_welcome(&mut body)?,
            t if t == topics::SUBACK.as_bytes() => Self::SubAck {
                id: SubscriptionId(take_u32(&mut body, "suback")?),
                next: Seq(take_u64(&mut body, "suback")?),
            },
            t if t == topics::PUBACK.as_bytes() => Self::PubAck {
                number: take_u64(&mut body, "puback")?,
                seq: Seq(take_u64(&mut body, "puback")?),
            },
            t if t == topics::EVENT.as_bytes() => return decode_event(body),
            t if t == topics::GAP.as_bytes() => decode_gap(&mut body)?,
            t if t == topics::ERROR.as_bytes() => return decode_error(body),
            _ => return Err(CodecError::UnknownControl),
        };
        finish(body, message, "control")
    }

    /// Encodes the message as one frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let topic = match self {
            Self::Welcome {
                version,
                head,
                first,
            } => {
                body.extend_from_slice(&MAGIC);
                body.extend_from_slice(&[*version, 0]);
                body.put_u64(head.0);
                body.put_u64(first.0);
                topics::WELCOME
            }
            Self::SubAck { id, next } => {
                body.put_u32(id.0);
                body.put_u64(next.0);
                topics::SUBACK
            }
            Self::PubAck { number, seq } => {
                body.put_u64(*number);
                body.put_u64(seq.0);
                topics::PUBACK
            }
            Self::Event(delivery) => return encode_delivery(delivery),
            Self::Gap(gap) => {
                encode_gap(gap, &mut body);
                topics::GAP
            }
            Self::Error { code, id, message } => {
                body.put_u16(code.to_u16());
                body.put_u32(id.0);
                body.extend_from_slice(message.as_bytes());
                topics::ERROR
            }
            Self::Plain { topic, payload } => return frame_bytes(topic, payload),
        };
        frame(topic, &body)
    }
}

/// Encodes one event delivery frame without building a [`ServerMessage`] first.
pub fn encode_delivery(delivery: &Delivery) -> Vec<u8> {
    let Delivery {
        id,
        seq,
        attempt,
        topic,
        payload,
    } = delivery;
    encode_event(*id, *seq, *attempt, topic, payload)
}

/// Encodes a `$pilot.ev` frame from its parts: `id u32 ‖ seq u64 ‖ attempt u16 ‖ topic_len u16
/// ‖ topic ‖ payload`.
pub fn encode_event(
    id: SubscriptionId,
    seq: Seq,
    attempt: u16,
    topic: &Topic,
    payload: &[u8],
) -> Vec<u8> {
    let topic = topic.as_str().as_bytes();
    let mut body = Vec::with_capacity(16 + topic.len() + payload.len());
    body.put_u32(id.0);
    body.put_u64(seq.0);
    body.put_u16(attempt);
    // Topics are at most MAX_TOPIC_LEN (1,024) bytes, so the length fits in a u16.
    body.put_u16(topic.len() as u16);
    body.extend_from_slice(topic);
    body.extend_from_slice(payload);
    frame(topics::EVENT, &body)
}

/// Encodes a plain v0.5 frame (what v0.5 subscribers receive).
pub fn encode_plain(topic: &Topic, payload: &[u8]) -> Vec<u8> {
    frame(topic.as_str(), payload)
}

fn decode_hello(body: &mut Bytes) -> Result<ClientMessage, CodecError> {
    let magic = take(body, 4, "hello")?;
    if magic[..] != MAGIC {
        return Err(CodecError::Malformed("hello"));
    }
    let version = take(body, 2, "hello")?[0];
    Ok(ClientMessage::Hello { version })
}

fn decode_welcome(body: &mut Bytes) -> Result<ServerMessage, CodecError> {
    if take(body, 4, "welcome")?[..] != MAGIC {
        return Err(CodecError::Malformed("welcome"));
    }
    let version = take(body, 2, "welcome")?[0];
    let head = Seq(take_u64(body, "welcome")?);
    let first = Seq(take_u64(body, "welcome")?);
    Ok(ServerMessage::Welcome {
        version,
        head,
        first,
    })
}

/// `sub`: `id u32 ‖ flags u8 ‖ since u64 ‖ name_len u8 ‖ name ‖ filter`.
fn encode_subscribe(request: &SubscribeRequest, body: &mut Vec<u8>) {
    let name = request.durable.as_deref().unwrap_or("");
    let flags = u8::from(request.durable.is_some())
        | (u8::from(request.echo) << 1)
        | (u8::from(request.since.is_some()) << 2);
    body.put_u32(request.id.0);
    body.put_u8(flags);
    body.put_u64(request.since.map_or(0, |s| s.0));
    // Names are checked against MAX_DURABLE_NAME (64) when decoded; a longer one is cut here
    // and then refused by the broker.
    body.put_u8(name.len().min(255) as u8);
    body.extend_from_slice(&name.as_bytes()[..name.len().min(255)]);
    body.extend_from_slice(request.filter.as_str().as_bytes());
}

fn decode_subscribe(body: &mut Bytes) -> Result<ClientMessage, CodecError> {
    let id = SubscriptionId(take_u32(body, "sub")?);
    let flags = take(body, 1, "sub")?[0];
    let since = take_u64(body, "sub")?;
    let name_len = usize::from(take(body, 1, "sub")?[0]);
    let name = take(body, name_len, "sub")?;
    let filter = TopicFilter::from_bytes(&std::mem::take(body))?;

    let durable = match flags & 1 {
        0 => None,
        _ => Some(durable_name(&name)?),
    };
    let since = (flags & 4 != 0).then_some(Seq(since));
    let echo = flags & 2 != 0;
    Ok(ClientMessage::Subscribe(SubscribeRequest {
        id,
        filter,
        since,
        durable,
        echo,
    }))
}

/// Checks a durable subscription name: 1-64 bytes of `[A-Za-z0-9._-]`.
pub(crate) fn durable_name(bytes: &[u8]) -> Result<String, CodecError> {
    let valid = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if bytes.is_empty() || bytes.len() > MAX_DURABLE_NAME || !bytes.iter().all(valid) {
        return Err(CodecError::Malformed("durable name"));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn decode_event(mut body: Bytes) -> Result<ServerMessage, CodecError> {
    let id = SubscriptionId(take_u32(&mut body, "event")?);
    let seq = Seq(take_u64(&mut body, "event")?);
    let attempt = take_u16(&mut body, "event")?;
    let topic_len = usize::from(take_u16(&mut body, "event")?);
    let topic = Topic::from_bytes(&take(&mut body, topic_len, "event")?)?;
    Ok(ServerMessage::Event(Delivery {
        id,
        seq,
        attempt,
        topic,
        payload: body,
    }))
}

fn encode_gap(gap: &GapNotice, body: &mut Vec<u8>) {
    body.put_u32(gap.id.0);
    body.put_u8(match gap.reason {
        GapReason::Expired => 1,
        GapReason::Overflow => 2,
        GapReason::MaxDeliver => 3,
    });
    body.put_u64(gap.from.0);
    body.put_u64(gap.to.0);
    body.put_u64(gap.missed);
}

fn decode_gap(body: &mut Bytes) -> Result<ServerMessage, CodecError> {
    let id = SubscriptionId(take_u32(body, "gap")?);
    let reason = match take(body, 1, "gap")?[0] {
        1 => GapReason::Expired,
        2 => GapReason::Overflow,
        3 => GapReason::MaxDeliver,
        _ => return Err(CodecError::Malformed("gap")),
    };
    let from = Seq(take_u64(body, "gap")?);
    let to = Seq(take_u64(body, "gap")?);
    let missed = take_u64(body, "gap")?;
    Ok(ServerMessage::Gap(GapNotice {
        id,
        reason,
        from,
        to,
        missed,
    }))
}

fn decode_error(mut body: Bytes) -> Result<ServerMessage, CodecError> {
    let code = ErrorCode::from_u16(take_u16(&mut body, "error")?);
    let id = SubscriptionId(take_u32(&mut body, "error")?);
    let message = std::str::from_utf8(&body).map_err(|_| CodecError::Malformed("error"))?;
    Ok(ServerMessage::Error {
        code,
        id,
        message: message.to_owned(),
    })
}

impl ErrorCode {
    fn to_u16(self) -> u16 {
        match self {
            Self::Malformed => 1,
            Self::InvalidTopic => 2,
            Self::Limit => 3,
            Self::UnknownSubscription => 4,
            Self::Forbidden => 5,
            Self::Other(code) => code,
        }
    }

    fn from_u16(code: u16) -> Self {
        match code {
            1 => Self::Malformed,
            2 => Self::InvalidTopic,
            3 => Self::Limit,
            4 => Self::UnknownSubscription,
            5 => Self::Forbidden,
            other => Self::Other(other),
        }
    }
}

fn frame(topic: &str, body: &[u8]) -> Vec<u8> {
    frame_bytes(topic.as_bytes(), body)
}

fn frame_bytes(topic: &[u8], body: &[u8]) -> Vec<u8> {
    // Control topics are short constants and validated topics are at most 1,024 bytes; bodies
    // carry at most one event payload plus a small header, which the broker keeps under the
    // reader limit (`MAX_EVENT_PAYLOAD`). A frame whose lengths cannot be encoded at all comes
    // out empty rather than with truncated length fields.
    EventRepr {
        topic,
        payload: body,
    }
    .to_vec()
}

fn finish<T>(body: Bytes, message: T, what: &'static str) -> Result<T, CodecError> {
    if body.is_empty() {
        Ok(message)
    } else {
        Err(CodecError::Malformed(what))
    }
}

fn take(body: &mut Bytes, len: usize, what: &'static str) -> Result<Bytes, CodecError> {
    if body.len() < len {
        return Err(CodecError::Malformed(what));
    }
    Ok(body.split_to(len))
}

fn take_u16(body: &mut Bytes, what: &'static str) -> Result<u16, CodecError> {
    Ok(take(body, 2, what)?.get_u16())
}

fn take_u32(body: &mut Bytes, what: &'static str) -> Result<u32, CodecError> {
    Ok(take(body, 4, what)?.get_u32())
}

fn take_u64(body: &mut Bytes, what: &'static str) -> Result<u64, CodecError> {
    Ok(take(body, 8, what)?.get_u64())
}
