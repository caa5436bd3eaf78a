//! Topic pub/sub over a node's event broker (virtual port 1002): [`Subscription`] is a `Stream`
//! of [`Event`]s; [`Client::publish`] sends one event.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::io::{AsyncRead, ReadBuf};

use super::{Client, ClientError, Conn, Event, PORT_EVENTS};
use crate::client_proto::{encode_event, take_event};
use crate::shim::addr::{Addr, AddrPort};

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
