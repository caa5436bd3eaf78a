//! What the broker does with each frame a client sends: the v0.5/extended decision on the first
//! frame, then subscriptions, acknowledgements and publishes.

use std::time::Instant;

use tracing::debug;

use super::subscription::Subscription;
use super::{Broker, BrokerEvent, ClientId, CloseReason, Mode};
use crate::pubsub::codec::{
    self, ClientMessage, CodecError, ErrorCode, Frame, ServerMessage, SubscribeRequest,
};
use crate::pubsub::{Seq, SubscriptionId, Topic, TopicFilter};

impl Broker {
    pub(super) fn on_frame(&mut self, now: Instant, client: ClientId, frame: Frame) {
        let Some(state) = self.clients.get(&client) else {
            return;
        };
        match state.mode {
            Mode::AwaitingFirst => self.on_first_frame(client, frame),
            Mode::Legacy => self.on_legacy_publish(now, client, frame),
            Mode::Extended => self.on_extended(now, client, frame),
        }
    }

    /// A hello with the right magic selects the extended protocol; anything else is a v0.5
    /// subscription. A v0.5 client always sends an empty payload with its subscription, so it
    /// can never produce a valid hello.
    fn on_first_frame(&mut self, client: ClientId, frame: Frame) {
        if frame.topic == codec::topics::HELLO.as_bytes()
            && let Ok(ClientMessage::Hello { .. }) = ClientMessage::decode(&frame)
        {
            self.set_mode(client, Mode::Extended);
            let head = Seq(self.retained.end().0.saturating_sub(1));
            let first = self.retained.first_seq();
            let welcome = ServerMessage::Welcome {
                version: codec::VERSION,
                head,
                first,
            };
            self.queue_control(client, welcome.encode());
            return;
        }

        let Ok(filter) = TopicFilter::from_bytes(&frame.topic) else {
            debug!(
                client = client.0,
                "closing: first frame is not a valid subscription"
            );
            self.close(client, CloseReason::InvalidSubscription);
            return;
        };
        self.set_mode(client, Mode::Legacy);
        let id = SubscriptionId(0);
        let mut sub = Subscription::new(id, filter, false, self.retained.end());
        sub.start_live(self.retained.end());
        self.add_subscription(client, sub);
    }

    fn on_legacy_publish(&mut self, now: Instant, client: ClientId, frame: Frame) {
        match Topic::from_bytes(&frame.topic) {
            Ok(topic) if !topic.is_system() && !self.is_backlogged() => {
                self.publish(now, Some((client, None)), topic, frame.payload);
            }
            _ => {
                // v0.5 has no error channel: the frame is dropped and counted.
                debug!(
                    client = client.0,
                    "dropping publish on an invalid or system topic"
                );
                self.stats.rejected += 1;
            }
        }
    }

    fn on_extended(&mut self, now: Instant, client: ClientId, frame: Frame) {
        let message = match ClientMessage::decode(&frame) {
            Ok(message) => message,
            Err(error) => return self.refuse(client, SubscriptionId(0), error),
        };
        match message {
            ClientMessage::Publish { topic, payload } => {
                self.on_extended_publish(now, client, topic, payload);
            }
            ClientMessage::Subscribe(request) => self.on_subscribe(client, request),
            ClientMessage::Unsubscribe { id } => self.on_unsubscribe(client, id),
            ClientMessage::Ack { id, seq } => self.on_ack(client, id, seq),
            ClientMessage::Hello { .. } => {
                let message = "hello after start";
                self.error(client, ErrorCode::Malformed, SubscriptionId(0), message);
            }
        }
    }

    fn on_extended_publish(
        &mut self,
        now: Instant,
        client: ClientId,
        topic: Topic,
        payload: bytes::Bytes,
    ) {
        if topic.is_system() {
            let message = "system topics are reserved to the daemon";
            return self.error(client, ErrorCode::Forbidden, SubscriptionId(0), message);
        }
        if self.is_backlogged() {
            let message = "too many events are waiting for persistence";
            return self.error(client, ErrorCode::Limit, SubscriptionId(0), message);
        }
        let Some(state) = self.clients.get_mut(&client) else {
            return;
        };
        state.published += 1;
        let number = state.published;
        self.publish(now, Some((client, Some(number))), topic, payload);
    }

    fn on_subscribe(&mut self, client: ClientId, request: SubscribeRequest) {
        let Some(state) = self.clients.get(&client) else {
            return;
        };
        let id = request.id;
        if state.subs.contains_key(&id) {
            return self.error(
                client,
                ErrorCode::UnknownSubscription,
                id,
                "id already in use",
            );
        }
        if state.subs.len() >= self.config.max_subscriptions {
            return self.error(client, ErrorCode::Limit, id, "too many subscriptions");
        }
        if let Some(name) = &request.durable
            && self.durables_in_use.contains(name)
        {
            return self.error(client, ErrorCode::Limit, id, "durable name in use");
        }

        let sub = self.build_subscription(request);
        let next = sub_next(&sub, self.retained.end());
        self.queue_control(client, ServerMessage::SubAck { id, next }.encode());
        self.add_subscription(client, sub);
    }

    /// Creates the subscription, resuming a parked durable of the same name if there is one.
    fn build_subscription(&mut self, request: SubscribeRequest) -> Subscription {
        let end = self.retained.end();
        let next = request
            .since
            .map_or(end, |since| since.min(end).max(Seq(1)));
        let mut sub = Subscription::new(request.id, request.filter, true, next);
        sub.echo = request.echo;
        if next == end {
            sub.start_live(end);
        }

        let Some(name) = request.durable else {
            return sub;
        };
        // Limitation: durable names are not bound to a peer, so any connection that knows a
        // name takes over its parked state; access to port 1002 is the daemon's decision.
        if let Some(parked) = self.parked.remove(&name) {
            // The stored filter wins: a durable is one stream of events, whatever is asked.
            sub.filter = parked.filter.clone();
            sub.resume(parked, &self.retained);
        }
        self.durables_in_use.insert(name.clone());
        sub.durable = Some(name);
        sub
    }

    fn add_subscription(&mut self, client: ClientId, sub: Subscription) {
        let Some(state) = self.clients.get_mut(&client) else {
            return;
        };
        let (id, filter) = (sub.id, sub.filter.clone());
        self.index.insert(&filter, (client, id));
        state.subs.insert(id, sub);
        self.events
            .push_back(BrokerEvent::Subscribed { client, id, filter });
        self.mark_ready(client);
    }

    fn on_unsubscribe(&mut self, client: ClientId, id: SubscriptionId) {
        let Some(state) = self.clients.get_mut(&client) else {
            return;
        };
        let Some(sub) = state.subs.remove(&id) else {
            return self.error(
                client,
                ErrorCode::UnknownSubscription,
                id,
                "no such subscription",
            );
        };
        // An explicit unsubscribe ends a durable subscription for good.
        self.retire(client, id, sub, false);
    }

    fn on_ack(&mut self, client: ClientId, id: SubscriptionId, seq: Seq) {
        let Some(state) = self.clients.get_mut(&client) else {
            return;
        };
        let Some(sub) = state.subs.get_mut(&id) else {
            return self.error(
                client,
                ErrorCode::UnknownSubscription,
                id,
                "no such subscription",
            );
        };
        if let Some(Some(deadline)) = sub.ack(seq) {
            self.timers.remove(&(deadline, client, id, seq));
        }
        // An acknowledgement may reopen a full in-flight window.
        self.mark_ready(client);
    }

    fn refuse(&mut self, client: ClientId, id: SubscriptionId, error: CodecError) {
        let code = match error {
            CodecError::Topic(_) => ErrorCode::InvalidTopic,
            _ => ErrorCode::Malformed,
        };
        self.error(client, code, id, &error.to_string());
    }

    fn error(&mut self, client: ClientId, code: ErrorCode, id: SubscriptionId, message: &str) {
        debug!(client = client.0, ?code, "refusing request");
        self.stats.rejected += 1;
        let message = message.to_owned();
        self.queue_control(client, ServerMessage::Error { code, id, message }.encode());
    }

    fn set_mode(&mut self, client: ClientId, mode: Mode) {
        if let Some(state) = self.clients.get_mut(&client) {
            state.mode = mode;
        }
    }
}

/// Returns where a new subscription's delivery starts, for its `suback`.
fn sub_next(sub: &Subscription, end: Seq) -> Seq {
    sub.replay_cursor().unwrap_or(end)
}
