//! In-process clients of the node's own event broker: the same extended protocol as a
//! connection to port 1002 (frames in, frames out, through `pubsub::client`), without the
//! stream. A driver that publishes and subscribes on its own node skips the transport's
//! packets, acknowledgements and loopback copies, and keeps every broker guarantee: sequence
//! numbers, bounded per-subscription queues with gap notices, acknowledged publishes.
//!
//! Flow control is the broker's own byte credit: the broker writes into a client's outbox only
//! as much as the application read out of it (plus the initial credit), so an outbox never holds
//! more than `BrokerConfig::initial_credit` and one frame. A subscriber that stops reading
//! falls behind at the broker, which drops events for it and sends a gap notice, exactly as for
//! a stream client.

use std::time::Instant;

use super::{Node, NodeError};
use crate::pubsub::ClientId;
use crate::transport::StreamError;

/// Marks in-process client ids, so they never collide with connection ids (which count up
/// from 1).
const LOCAL_CLIENT_BIT: u64 = 1 << 63;

/// One in-process client of this node's own broker, from [`Node::open_broker_client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BrokerClient(u64);

impl Node {
    /// Connects an in-process client to this node's own broker. Write the client protocol's
    /// frames with [`Node::broker_client_send`], read the broker's with
    /// [`Node::broker_client_recv`], and close it with [`Node::close_broker_client`].
    ///
    /// # Errors
    /// [`NodeError::NoBroker`] when the broker is off.
    pub fn open_broker_client(&mut self, now: Instant) -> Result<BrokerClient, NodeError> {
        let now = self.clamp(now);
        let services = &mut self.services;
        let broker = services.broker.as_mut().ok_or(NodeError::NoBroker)?;
        let client = ClientId(LOCAL_CLIENT_BIT | services.next_local);
        services.next_local += 1;
        services
            .local
            .insert(client, super::services::LocalConn::default());
        broker.handle_connect(now, client);
        self.pump(now);
        Ok(BrokerClient(client.0))
    }

    /// Feeds client-protocol bytes (any split) to the broker, as if read from a connection.
    ///
    /// # Errors
    /// [`StreamError::UnknownConnection`] for a client closed or never opened,
    /// [`StreamError::Closed`] once the broker closed it, [`StreamError::WouldBlock`] while
    /// the broker's event log lags (nothing was taken; retry after `handle_persisted`).
    pub fn broker_client_send(
        &mut self,
        now: Instant,
        client: BrokerClient,
        bytes: &[u8],
    ) -> Result<(), NodeError> {
        let now = self.clamp(now);
        let id = ClientId(client.0);
        let local = self.services.local.get(&id);
        let local = local.ok_or(StreamError::UnknownConnection)?;
        if local.closed {
            return Err(StreamError::Closed.into());
        }
        let broker = self.services.broker.as_mut().ok_or(NodeError::NoBroker)?;
        if broker.is_backlogged() {
            return Err(StreamError::WouldBlock.into());
        }
        broker.handle_bytes(now, id, bytes);
        self.pump(now);
        Ok(())
    }

    /// Reads broker frames into `buf` and grants the broker that much more credit. `Ok(0)`
    /// with a non-empty `buf` means the broker closed the client and everything was read (the
    /// client is then forgotten).
    ///
    /// # Errors
    /// [`StreamError::WouldBlock`] when nothing is waiting, [`StreamError::UnknownConnection`]
    /// for a client closed or never opened.
    pub fn broker_client_recv(
        &mut self,
        now: Instant,
        client: BrokerClient,
        buf: &mut [u8],
    ) -> Result<usize, NodeError> {
        let now = self.clamp(now);
        let id = ClientId(client.0);
        let local = self.services.local.get_mut(&id);
        let local = local.ok_or(StreamError::UnknownConnection)?;
        let n = crate::byte_queue::take_front(&mut local.outbox, buf);
        if n == 0 && !buf.is_empty() {
            if local.closed {
                self.services.local.remove(&id);
                return Ok(0);
            }
            return Err(StreamError::WouldBlock.into());
        }
        if let Some(broker) = &mut self.services.broker {
            broker.handle_writable(now, id, n);
        }
        self.pump(now);
        Ok(n)
    }

    /// Bytes waiting in a client's outbox (0 for an unknown client).
    pub fn broker_client_pending(&self, client: BrokerClient) -> usize {
        let id = ClientId(client.0);
        self.services.local.get(&id).map_or(0, |l| l.outbox.len())
    }

    /// Disconnects an in-process client; its subscriptions end (durable ones are parked).
    pub fn close_broker_client(&mut self, now: Instant, client: BrokerClient) {
        let now = self.clamp(now);
        let id = ClientId(client.0);
        if self.services.local.remove(&id).is_none() {
            return;
        }
        if let Some(broker) = &mut self.services.broker {
            broker.handle_disconnect(now, id);
        }
        self.pump(now);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)]

    use super::*;
    use crate::identity::Identity;
    use crate::node::NodeConfig;
    use crate::pubsub::client::{ClientSession, SubscribeOptions};
    use crate::pubsub::codec::ServerMessage;
    use crate::pubsub::{BrokerConfig, Seq, Topic, TopicFilter};
    use crate::wire::addr::Addr;

    fn node(broker: BrokerConfig) -> Node {
        let config = NodeConfig {
            broker: Some(broker),
            ..NodeConfig::default()
        };
        let identity = Identity::from_seed(&[1; 32]);
        Node::new(config, identity, Addr::new(0, 10), [2; 32], Instant::now())
    }

    /// Reads everything waiting for `client` into `session`; returns the messages.
    fn read_all(
        n: &mut Node,
        client: BrokerClient,
        session: &mut ClientSession,
    ) -> Vec<ServerMessage> {
        let mut buf = [0u8; 700];
        for _ in 0..10_000 {
            match n.broker_client_recv(Instant::now(), client, &mut buf) {
                Ok(0) | Err(NodeError::Stream(StreamError::WouldBlock)) => break,
                Ok(len) => session.handle_bytes(&buf[..len]).expect("framing"),
                Err(e) => panic!("recv: {e}"),
            }
        }
        std::iter::from_fn(|| session.poll_message()).collect()
    }

    fn subscribe(n: &mut Node, filter: &str) -> (BrokerClient, ClientSession) {
        let now = Instant::now();
        let client = n.open_broker_client(now).expect("open");
        let mut session = ClientSession::new();
        let filter = TopicFilter::parse(filter).expect("filter");
        let (_, frame) = session.subscribe(filter, SubscribeOptions::default());
        let hello = session.hello();
        n.broker_client_send(now, client, &hello).expect("hello");
        n.broker_client_send(now, client, &frame)
            .expect("subscribe");
        let replies = read_all(n, client, &mut session);
        assert!(
            replies
                .iter()
                .any(|m| matches!(m, ServerMessage::SubAck { .. }))
        );
        (client, session)
    }

    #[test]
    fn publishes_are_acknowledged_and_delivered_in_sequence() {
        let mut n = node(BrokerConfig::default());
        let (sub, mut sub_session) = subscribe(&mut n, "t.*");
        let now = Instant::now();
        let publisher = n.open_broker_client(now).expect("open");
        let session = ClientSession::new();
        let topic = Topic::parse("t.a").expect("topic");
        let mut frames = session.hello();
        for i in 0..50u8 {
            frames.extend(session.publish(&topic, &[i; 100]));
        }
        n.broker_client_send(now, publisher, &frames)
            .expect("publish");

        let mut pub_session = ClientSession::new();
        let acks = read_all(&mut n, publisher, &mut pub_session);
        let last = acks.iter().filter_map(|m| match m {
            ServerMessage::PubAck { number, .. } => Some(*number),
            _ => None,
        });
        assert_eq!(last.max(), Some(50));
        let events: Vec<_> = read_all(&mut n, sub, &mut sub_session)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::Event(d) => Some((d.seq, d.payload[0])),
                _ => None,
            })
            .collect();
        let expected: Vec<_> = (0..50u8).map(|i| (Seq(u64::from(i) + 1), i)).collect();
        assert_eq!(events, expected);
    }

    #[test]
    fn an_unread_subscriber_is_bounded_and_told_of_the_gap() {
        let config = BrokerConfig {
            queue_events: 8,
            initial_credit: 1024,
            ..BrokerConfig::default()
        };
        let mut n = node(config);
        let (sub, mut session) = subscribe(&mut n, "t.*");
        let topic = Topic::parse("t.a").expect("topic");
        for _ in 0..200 {
            n.publish_local(Instant::now(), &topic, &[7; 100])
                .expect("publish");
        }
        // The broker wrote only its credit (and at most one frame more) into the outbox.
        assert!(
            n.broker_client_pending(sub) <= 1024 + 200,
            "{}",
            n.broker_client_pending(sub)
        );

        let messages = read_all(&mut n, sub, &mut session);
        let events = messages
            .iter()
            .filter(|m| matches!(m, ServerMessage::Event(_)))
            .count() as u64;
        let missed: u64 = messages
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Gap(g) => Some(g.missed),
                _ => None,
            })
            .sum();
        assert!(missed > 0, "no gap notice");
        assert_eq!(
            events + missed,
            200,
            "every event delivered or reported missed"
        );
    }

    #[test]
    fn a_closed_client_is_refused_and_its_subscription_ends() {
        let mut n = node(BrokerConfig::default());
        let (sub, _) = subscribe(&mut n, "t.*");
        let now = Instant::now();
        n.close_broker_client(now, sub);
        let mut buf = [0u8; 16];
        let recv = n.broker_client_recv(now, sub, &mut buf);
        assert_eq!(recv, Err(StreamError::UnknownConnection.into()));
        let send = n.broker_client_send(now, sub, b"x");
        assert_eq!(send, Err(StreamError::UnknownConnection.into()));
        let topic = Topic::parse("t.a").expect("topic");
        n.publish_local(now, &topic, b"x").expect("publish");
        assert_eq!(n.broker_client_pending(sub), 0);
    }

    #[test]
    fn malformed_input_closes_the_client_with_end_of_stream() {
        let mut n = node(BrokerConfig::default());
        let now = Instant::now();
        let client = n.open_broker_client(now).expect("open");
        let garbage = [0xffu8; 64];
        n.broker_client_send(now, client, &garbage).expect("taken");
        let mut buf = [0u8; 4096];
        let mut ended = false;
        for _ in 0..100 {
            match n.broker_client_recv(now, client, &mut buf) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert!(ended, "the broker closed the client");
        let send = n.broker_client_send(now, client, b"x");
        assert_eq!(send, Err(StreamError::UnknownConnection.into()));
    }
}
