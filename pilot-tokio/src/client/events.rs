//! Topic pub/sub over a node's event broker (virtual port 1002): [`Subscription`] is a `Stream`
//! of [`Event`]s; [`Client::publish`] sends one event.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::io::{AsyncRead, ReadBuf};

use super::{Client, ClientError, Conn, PORT_EVENTS};
use crate::shim::addr::{Addr, AddrPort};

/// Largest topic the broker accepts.
pub const MAX_TOPIC: usize = 1024;
/// Largest payload the broker accepts.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// One published event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The topic it was published on.
    pub topic: String,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

/// A subscription: a `Stream` of events matching its topic pattern.
#[derive(Debug)]
pub struct Subscription {
    conn: Conn,
    buf: Vec<u8>,
}

/// Encodes one v0.5 event frame.
pub fn encode_event(topic: &str, payload: &[u8]) -> Result<Vec<u8>, ClientError> {
    if topic.len() > MAX_TOPIC || payload.len() > MAX_PAYLOAD {
        return Err(ClientError::Daemon(format!(
            "event too large: topic {} bytes (max {MAX_TOPIC}), payload {} bytes (max {MAX_PAYLOAD})",
            topic.len(),
            payload.len()
        )));
    }
    let mut out = Vec::with_capacity(6 + topic.len() + payload.len());
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decodes one frame from the front of `buf`: `Ok(None)` needs more bytes.
fn decode_event(buf: &[u8]) -> Result<Option<(Event, usize)>, ClientError> {
    let bad = || ClientError::Protocol("malformed event frame from the broker".into());
    let Some(t) = buf
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    else {
        return Ok(None);
    };
    if t > MAX_TOPIC {
        return Err(bad());
    }
    let Some(p) = buf.get(2 + t..6 + t) else {
        return Ok(None);
    };
    let p = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
    if p > MAX_PAYLOAD {
        return Err(bad());
    }
    let Some(payload) = buf.get(6 + t..6 + t + p) else {
        return Ok(None);
    };
    let topic = String::from_utf8_lossy(&buf[2..2 + t]).into_owned();
    Ok(Some((
        Event {
            topic,
            payload: payload.to_vec(),
        },
        6 + t + p,
    )))
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
            match decode_event(&this.buf) {
                Ok(Some((event, used))) => {
                    this.buf.drain(..used);
                    return Poll::Ready(Some(Ok(event)));
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_frames_round_trip_and_reject_huge_topics() {
        let frame = encode_event("tasks.complete", b"{}").expect("encode");
        let (event, used) = decode_event(&frame).expect("ok").expect("whole");
        assert_eq!(
            (event.topic.as_str(), used),
            ("tasks.complete", frame.len())
        );
        assert!(decode_event(&frame[..5]).expect("ok").is_none());
        assert!(encode_event(&"x".repeat(2000), b"").is_err());
        assert!(decode_event(&[0xff, 0xff]).is_err());
    }
}
