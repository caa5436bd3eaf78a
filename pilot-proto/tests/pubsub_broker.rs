//! The broker on virtual time: v0.5 clients, slow subscribers, resume with `since`, durable
//! acknowledgements, persistence and untrusted input.
//!
//! A small driver stands in for the daemon: it moves frames between the broker and scripted
//! clients, hands write credit back as a fast client reads (a stalled client gets none), and
//! plays the log by appending records and reporting them persisted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pilot_proto::pubsub::broker::{BrokerStats, CloseReason, PublishError, Retention};
use pilot_proto::pubsub::client::{ClientSession, SubscribeOptions};
use pilot_proto::pubsub::codec::{
    ClientMessage, Delivery, FrameReader, GapNotice, GapReason, ServerMessage, SubscribeRequest,
};
use pilot_proto::pubsub::{
    Broker, BrokerConfig, BrokerEvent, ClientId, Seq, SubscriptionId, Topic, TopicFilter,
};
use pilot_proto::pubsub::{durable, log};
use proptest::prelude::*;

const FAST_WINDOW: usize = 64 * 1024;

struct Driver {
    broker: Broker,
    now: Instant,
    readers: BTreeMap<ClientId, FrameReader>,
    received: BTreeMap<ClientId, Vec<ServerMessage>>,
    raw: BTreeMap<ClientId, Vec<u8>>,
    fast: BTreeSet<ClientId>,
    closed: Vec<(ClientId, CloseReason)>,
    log: Vec<u8>,
    auto_persist: bool,
}

impl Driver {
    fn new(config: BrokerConfig) -> Self {
        Self {
            broker: Broker::new(BrokerConfig {
                initial_credit: 0,
                ..config
            }),
            now: start_instant(),
            readers: BTreeMap::new(),
            received: BTreeMap::new(),
            raw: BTreeMap::new(),
            fast: BTreeSet::new(),
            closed: Vec::new(),
            log: log::FILE_HEADER.to_vec(),
            auto_persist: true,
        }
    }

    /// Connects a client; a fast one reads everything at once, a stalled one reads nothing.
    fn connect(&mut self, id: u64, fast: bool) -> ClientId {
        let client = ClientId(id);
        self.broker.handle_connect(self.now, client);
        self.readers.insert(client, FrameReader::new(usize::MAX));
        if fast {
            self.fast.insert(client);
            self.broker.handle_writable(self.now, client, FAST_WINDOW);
        }
        self.drain();
        client
    }

    /// Connects an extended client and completes the hello.
    fn connect_extended(&mut self, id: u64, fast: bool) -> ClientId {
        let client = self.connect(id, fast);
        self.send(client, &ClientMessage::Hello { version: 1 }.encode());
        client
    }

    fn send(&mut self, client: ClientId, bytes: &[u8]) {
        self.broker.handle_bytes(self.now, client, bytes);
        self.drain();
    }

    fn subscribe(&mut self, client: ClientId, id: u32, filter: &str, since: Option<u64>) {
        let request = SubscribeRequest {
            id: SubscriptionId(id),
            filter: TopicFilter::parse(filter).unwrap(),
            since: since.map(Seq),
            durable: None,
            echo: false,
        };
        self.send(client, &ClientMessage::Subscribe(request).encode());
    }

    fn subscribe_durable(&mut self, client: ClientId, id: u32, filter: &str, name: &str) {
        let request = SubscribeRequest {
            id: SubscriptionId(id),
            filter: TopicFilter::parse(filter).unwrap(),
            since: None,
            durable: Some(name.into()),
            echo: false,
        };
        self.send(client, &ClientMessage::Subscribe(request).encode());
    }

    fn publish(&mut self, client: ClientId, topic: &str, payload: &str) {
        let topic = Topic::parse(topic).unwrap();
        let message = ClientMessage::Publish {
            topic,
            payload: Bytes::from(payload.to_owned()),
        };
        self.send(client, &message.encode());
    }

    fn publish_local(&mut self, topic: &str, payload: &str) -> Seq {
        let topic = Topic::parse(topic).unwrap();
        let seq = self
            .broker
            .publish_local(self.now, &topic, payload.as_bytes())
            .unwrap();
        self.drain();
        seq
    }

    fn grant(&mut self, client: ClientId, budget: usize) {
        self.broker.handle_writable(self.now, client, budget);
        self.drain();
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.broker.handle_timeout(self.now);
        self.drain();
    }

    /// Runs the driver loop until the broker has nothing more to say (bounded).
    fn drain(&mut self) {
        for _ in 0..100_000 {
            let mut progress = false;
            while let Some((client, frame)) = self.broker.poll_send(self.now) {
                progress = true;
                self.deliver(client, &frame);
            }
            while let Some(event) = self.broker.poll_event() {
                progress = true;
                self.on_event(event);
            }
            if !progress {
                return;
            }
        }
        panic!("the broker never went idle");
    }

    fn deliver(&mut self, client: ClientId, frame: &[u8]) {
        self.raw.entry(client).or_default().extend_from_slice(frame);
        let reader = self
            .readers
            .get_mut(&client)
            .expect("frame for a connected client");
        reader.push(frame);
        while let Some(frame) = reader.next_frame().unwrap() {
            let message = ServerMessage::decode(&frame).unwrap();
            self.received.entry(client).or_default().push(message);
        }
        if self.fast.contains(&client) {
            // A fast reader frees its window as soon as the bytes arrive.
            self.broker.handle_writable(self.now, client, frame.len());
        }
    }

    fn on_event(&mut self, event: BrokerEvent) {
        match event {
            BrokerEvent::Append { seq, record } => {
                self.log.extend_from_slice(&record);
                if self.auto_persist {
                    self.broker.handle_persisted(self.now, seq);
                }
            }
            BrokerEvent::Close { client, reason } => self.closed.push((client, reason)),
            _ => {}
        }
    }

    fn take(&mut self, client: ClientId) -> Vec<ServerMessage> {
        self.received.remove(&client).unwrap_or_default()
    }

    fn deliveries(&mut self, client: ClientId) -> Vec<Delivery> {
        self.take(client)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::Event(delivery) => Some(delivery),
                _ => None,
            })
            .collect()
    }

    fn stats(&self) -> BrokerStats {
        self.broker.stats()
    }
}

/// The one clock read in this file: a base instant. Time then only moves by `advance`.
#[allow(clippy::disallowed_methods)]
fn start_instant() -> Instant {
    Instant::now()
}

fn seqs(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.seq.0).collect()
}

fn legacy_frame(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut frame = (topic.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(topic.as_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

#[test]
fn v05_client_subscribes_and_publishes() {
    let mut driver = Driver::new(BrokerConfig::default());
    let subscriber = driver.connect(1, true);
    let everything = driver.connect(2, true);
    let other = driver.connect(3, true);
    let publisher = driver.connect(4, true);

    // The exact bytes of dataplane.md section 6.4: subscribe to `alerts`, publish on it.
    driver.send(
        subscriber,
        &hex::decode("0006616c6572747300000000").unwrap(),
    );
    driver.send(everything, &legacy_frame("*", b""));
    driver.send(other, &legacy_frame("tasks.*", b""));
    driver.send(publisher, &legacy_frame("alerts", b""));
    let publish = "0006616c657274730000000e7365727665722069732064 6f776e".replace(' ', "");
    driver.send(publisher, &hex::decode(publish).unwrap());

    let expected = legacy_frame("alerts", b"server is down");
    assert_eq!(
        driver.raw.get(&subscriber),
        Some(&expected),
        "subscriber gets the same 26 bytes"
    );
    assert_eq!(
        driver.raw.get(&everything),
        Some(&expected),
        "`*` gets every topic"
    );
    assert_eq!(
        driver.raw.get(&other),
        None,
        "`tasks.*` does not match `alerts`"
    );
    assert_eq!(
        driver.raw.get(&publisher),
        None,
        "the publisher never gets its own event"
    );

    // Now the subscriber publishes and the publisher (also subscribed to alerts) receives it.
    driver.send(subscriber, &legacy_frame("alerts", b"ack"));
    assert_eq!(
        driver.raw.get(&publisher),
        Some(&legacy_frame("alerts", b"ack"))
    );
    assert_eq!(driver.stats().published, 2);
}

#[test]
fn batched_sends_match_single_sends() {
    let run = |batched: bool| {
        let config = BrokerConfig {
            initial_credit: 300,
            ..BrokerConfig::default()
        };
        let mut broker = Broker::new(config);
        let now = start_instant();
        let mut out: BTreeMap<ClientId, Vec<u8>> = BTreeMap::new();
        for id in 0..3 {
            broker.handle_connect(now, ClientId(id));
            broker.handle_bytes(now, ClientId(id), &legacy_frame("t.>", b""));
        }
        for n in 0..40u8 {
            broker
                .publish_local(now, &Topic::parse("t.x").unwrap(), &[n; 20])
                .unwrap();
        }
        for _ in 0..1_000 {
            let mut buf = Vec::new();
            let client = if batched {
                broker.poll_send_into(now, &mut buf)
            } else {
                broker.poll_send(now).map(|(client, frame)| {
                    buf = frame;
                    client
                })
            };
            let Some(client) = client else { break };
            out.entry(client).or_default().extend_from_slice(&buf);
        }
        out
    };
    let (single, batched) = (run(false), run(true));
    assert_eq!(single, batched);
    assert!(
        single.values().all(|bytes| bytes.len() >= 300),
        "credit was used"
    );
}

#[test]
fn webhook_events_match_v05_names() {
    let mut broker = Broker::new(BrokerConfig::default());
    let now = start_instant();
    let (subscriber, publisher) = (ClientId(1), ClientId(2));
    broker.handle_connect(now, subscriber);
    broker.handle_connect(now, publisher);
    broker.handle_bytes(now, subscriber, &legacy_frame("alerts", b""));
    broker.handle_bytes(now, publisher, &legacy_frame("alerts", b""));
    broker.handle_bytes(now, publisher, &legacy_frame("alerts", b"server is down"));
    broker.handle_disconnect(now, subscriber);

    let events: Vec<BrokerEvent> = std::iter::from_fn(|| broker.poll_event()).collect();
    let alerts = TopicFilter::parse("alerts").unwrap();
    let id = SubscriptionId(0);
    let expected = vec![
        BrokerEvent::Subscribed {
            client: subscriber,
            id,
            filter: alerts.clone(),
        },
        BrokerEvent::Subscribed {
            client: publisher,
            id,
            filter: alerts.clone(),
        },
        BrokerEvent::Published {
            client: Some(publisher),
            topic: Topic::parse("alerts").unwrap(),
            size: 14,
            seq: Seq(1),
        },
        BrokerEvent::Unsubscribed {
            client: subscriber,
            id,
            filter: alerts,
        },
    ];
    assert_eq!(events, expected);
}

#[test]
fn v05_client_with_an_invalid_subscription_is_closed() {
    let mut driver = Driver::new(BrokerConfig::default());
    let client = driver.connect(1, true);
    driver.send(client, &legacy_frame("bad topic", b""));
    assert_eq!(
        driver.closed,
        vec![(client, CloseReason::InvalidSubscription)]
    );

    // An over-long topic breaks the framing, as in v0.5.
    let client = driver.connect(2, true);
    let mut frame = 2_000u16.to_be_bytes().to_vec();
    frame.extend_from_slice(&[b'a'; 2_000]);
    driver.send(client, &frame);
    assert_eq!(
        driver.closed.last(),
        Some(&(client, CloseReason::Malformed))
    );
    assert_eq!(driver.stats().clients, 0);
}

#[test]
fn stalled_subscriber_gets_a_gap_and_never_delays_the_others() {
    let config = BrokerConfig {
        queue_events: 16,
        ..BrokerConfig::default()
    };
    let mut driver = Driver::new(config);
    let fast = [
        driver.connect_extended(1, true),
        driver.connect_extended(2, true),
    ];
    let stalled = driver.connect_extended(3, false);
    for client in fast.into_iter().chain([stalled]) {
        driver.subscribe(client, 7, "sensors.>", None);
        driver.take(client);
    }
    let publisher = driver.connect_extended(4, true);

    // Every event reaches both fast subscribers before the next one is published.
    for n in 1..=100u64 {
        driver.publish(publisher, "sensors.temp", &format!("reading {n}"));
        for client in fast {
            let got = driver.deliveries(client);
            assert_eq!(
                seqs(&got),
                vec![n],
                "fast subscriber {client:?} at event {n}"
            );
        }
    }
    assert!(
        !driver.received.contains_key(&stalled),
        "a stalled client is sent nothing"
    );
    let stats = driver
        .broker
        .subscription_stats(stalled, SubscriptionId(7))
        .unwrap();
    assert_eq!((stats.overflowed, stats.queued), (84, 16));

    // Once it reads again: its subscribe reply, one gap notice, then the 16 newest events.
    driver.grant(stalled, 1 << 20);
    let messages = driver.take(stalled);
    let welcome = ServerMessage::Welcome {
        version: 1,
        head: Seq(0),
        first: Seq(1),
    };
    assert_eq!(messages[0], welcome);
    assert!(matches!(
        messages[1],
        ServerMessage::SubAck { next: Seq(1), .. }
    ));
    let gap = GapNotice {
        id: SubscriptionId(7),
        reason: GapReason::Overflow,
        from: Seq(1),
        to: Seq(84),
        missed: 84,
    };
    assert_eq!(messages[2], ServerMessage::Gap(gap));
    let rest: Vec<u64> = messages[3..]
        .iter()
        .map(|m| match m {
            ServerMessage::Event(d) => d.seq.0,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(rest, (85..=100).collect::<Vec<_>>());
}

#[test]
fn resume_with_since_gets_every_missed_event_once_in_order() {
    let mut driver = Driver::new(BrokerConfig::default());
    let publisher = driver.connect_extended(1, true);
    let first = driver.connect_extended(2, true);
    driver.subscribe(first, 1, "tasks.*", None);
    for n in 0..10 {
        driver.publish(publisher, "tasks.done", &n.to_string());
        driver.publish(publisher, "other.topic", "noise");
    }
    let before = driver.deliveries(first);
    assert_eq!(before.len(), 10);
    let last_seen = before.last().unwrap().seq;
    driver.broker.handle_disconnect(driver.now, first);

    // While it is away, 20 more matching events (and noise).
    for n in 10..30 {
        driver.publish(publisher, "tasks.done", &n.to_string());
        driver.publish(publisher, "other.topic", "noise");
    }

    // It comes back slowly: replay is still running when new events arrive.
    let again = driver.connect_extended(3, false);
    driver.grant(again, 1_000);
    driver.subscribe(again, 1, "tasks.*", Some(last_seen.0 + 1));
    let mut got = driver.deliveries(again);
    for n in 30..35 {
        driver.publish(publisher, "tasks.done", &n.to_string());
        driver.grant(again, 200);
        got.extend(driver.deliveries(again));
    }
    driver.grant(again, 1 << 20);
    got.extend(driver.deliveries(again));

    let payloads: Vec<String> = got
        .iter()
        .map(|d| String::from_utf8(d.payload.to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = (10..35).map(|n: i32| n.to_string()).collect();
    assert_eq!(
        payloads, expected,
        "every missed event, in order, exactly once"
    );
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[test]
fn resume_past_retention_gets_an_expired_gap() {
    let retention = Retention {
        max_events: 10,
        ..Retention::default()
    };
    let mut driver = Driver::new(BrokerConfig {
        retention,
        ..BrokerConfig::default()
    });
    for n in 0..30 {
        driver.publish_local("a.b", &n.to_string());
    }
    let client = driver.connect_extended(1, true);
    driver.subscribe(client, 2, ">", Some(1));
    let messages = driver.take(client);
    let gap = GapNotice {
        id: SubscriptionId(2),
        reason: GapReason::Expired,
        from: Seq(1),
        to: Seq(20),
        missed: 20,
    };
    assert_eq!(messages[2], ServerMessage::Gap(gap));
    assert_eq!(messages.len(), 3 + 10);
    assert!(matches!(&messages[3], ServerMessage::Event(d) if d.seq == Seq(21)));
}

#[test]
fn retention_by_age_and_bytes() {
    let retention = Retention {
        max_events: 1_000,
        max_bytes: 100,
        max_age: Duration::from_secs(60),
    };
    let mut driver = Driver::new(BrokerConfig {
        retention,
        ..BrokerConfig::default()
    });
    for _ in 0..10 {
        driver.publish_local("t", &"x".repeat(19)); // 20 bytes each with the topic
    }
    assert_eq!(driver.stats().retained_events, 5);
    assert_eq!(driver.stats().first_retained, Seq(6));

    assert_eq!(
        driver.broker.poll_timeout(),
        Some(driver.now + Duration::from_secs(60))
    );
    driver.advance(Duration::from_secs(61));
    assert_eq!(driver.stats().retained_events, 0);
    assert_eq!(driver.stats().head, Seq(10));
}

#[test]
fn extended_publisher_gets_acks_and_no_echo_unless_asked() {
    let mut driver = Driver::new(BrokerConfig::default());
    let client = driver.connect_extended(1, true);
    driver.subscribe(client, 1, "a.*", None);
    let request = SubscribeRequest {
        id: SubscriptionId(2),
        filter: TopicFilter::parse("a.>").unwrap(),
        since: None,
        durable: None,
        echo: true,
    };
    driver.send(client, &ClientMessage::Subscribe(request).encode());
    driver.take(client);

    driver.publish(client, "a.b", "mine");
    let messages = driver.take(client);
    assert!(messages.contains(&ServerMessage::PubAck {
        number: 1,
        seq: Seq(1)
    }));
    let events: Vec<SubscriptionId> = messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Event(d) => Some(d.id),
            _ => None,
        })
        .collect();
    assert_eq!(
        events,
        vec![SubscriptionId(2)],
        "only the echo subscription sees its own event"
    );
}

#[test]
fn unsubscribe_and_refusals() {
    let mut driver = Driver::new(BrokerConfig::default());
    let client = driver.connect_extended(1, true);
    driver.subscribe(client, 1, "a", None);
    driver.subscribe(client, 1, "b", None);
    driver.publish(client, "$sys.x", "no");
    driver.send(client, &legacy_frame("$pilot.sub", b"\x00"));
    let errors = driver
        .take(client)
        .into_iter()
        .filter(|m| matches!(m, ServerMessage::Error { .. }));
    assert_eq!(
        errors.count(),
        3,
        "duplicate id, system topic, malformed request"
    );

    driver.send(
        client,
        &ClientMessage::Unsubscribe {
            id: SubscriptionId(1),
        }
        .encode(),
    );
    driver.publish_local("a", "after");
    assert!(driver.deliveries(client).is_empty());
    assert_eq!(driver.stats().subscriptions, 0);
}

#[test]
fn several_subscriptions_on_one_connection() {
    let mut driver = Driver::new(BrokerConfig::default());
    let client = driver.connect_extended(1, true);
    driver.subscribe(client, 1, "a.*", None);
    driver.subscribe(client, 2, "*.b", None);
    driver.subscribe(client, 3, "$sys.>", None);
    driver.publish_local("a.b", "both");
    driver.publish_local("a.c", "first");
    driver.publish_local("$sys.up", "system");
    let got: Vec<(u32, u64)> = driver
        .deliveries(client)
        .iter()
        .map(|d| (d.id.0, d.seq.0))
        .collect();
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![(1, 1), (1, 2), (2, 1), (3, 3)]);
}

#[test]
fn durable_deliveries_are_redelivered_until_acked_then_capped() {
    let config = BrokerConfig {
        ack_wait: Duration::from_secs(5),
        max_deliver: 3,
        ..BrokerConfig::default()
    };
    let mut driver = Driver::new(config);
    let client = driver.connect_extended(1, true);
    driver.subscribe_durable(client, 1, "jobs.>", "worker");
    driver.take(client);
    driver.publish_local("jobs.a", "one");
    driver.publish_local("jobs.b", "two");
    assert_eq!(seqs(&driver.deliveries(client)), vec![1, 2]);

    driver.send(
        client,
        &ClientMessage::Ack {
            id: SubscriptionId(1),
            seq: Seq(1),
        }
        .encode(),
    );
    for attempt in 2..=3 {
        driver.advance(Duration::from_secs(5));
        let again = driver.deliveries(client);
        assert_eq!(seqs(&again), vec![2]);
        assert_eq!(again[0].attempt, attempt);
    }
    driver.advance(Duration::from_secs(5));
    let gap = GapNotice {
        id: SubscriptionId(1),
        reason: GapReason::MaxDeliver,
        from: Seq(2),
        to: Seq(2),
        missed: 1,
    };
    assert_eq!(driver.take(client), vec![ServerMessage::Gap(gap)]);
    let stats = driver
        .broker
        .subscription_stats(client, SubscriptionId(1))
        .unwrap();
    assert_eq!((stats.dead_lettered, stats.unacked), (1, 0));
    assert_eq!(
        driver.broker.poll_timeout(),
        Some(driver.now + Duration::from_secs(86_385))
    );
}

#[test]
fn durable_subscription_survives_a_disconnect() {
    let mut driver = Driver::new(BrokerConfig::default());
    let client = driver.connect_extended(1, true);
    driver.subscribe_durable(client, 1, "jobs.>", "worker");
    driver.publish_local("jobs.a", "one");
    assert_eq!(seqs(&driver.deliveries(client)), vec![1]);
    driver.broker.handle_disconnect(driver.now, client);
    assert_eq!(driver.stats().parked_durables, 1);

    driver.publish_local("jobs.b", "two");
    driver.publish_local("jobs.c", "three");
    let back = driver.connect_extended(2, true);
    driver.subscribe_durable(back, 9, "ignored", "worker");
    let got = driver.deliveries(back);
    assert_eq!(
        seqs(&got),
        vec![1, 2, 3],
        "unacknowledged first, then what it missed"
    );
    assert_eq!(got[0].attempt, 2);
    for seq in 1..=3 {
        driver.send(
            back,
            &ClientMessage::Ack {
                id: SubscriptionId(9),
                seq: Seq(seq),
            }
            .encode(),
        );
    }
    driver.advance(Duration::from_secs(60));
    assert!(driver.deliveries(back).is_empty());
}

#[test]
fn durable_positions_survive_a_restart_through_a_snapshot() {
    let config = BrokerConfig {
        persistent: true,
        ..BrokerConfig::default()
    };
    let mut driver = Driver::new(config.clone());
    let client = driver.connect_extended(1, true);
    driver.subscribe_durable(client, 1, "jobs.>", "worker");
    for n in 0..3 {
        driver.publish_local("jobs.x", &n.to_string());
    }
    assert_eq!(seqs(&driver.deliveries(client)), vec![1, 2, 3]);
    driver.send(
        client,
        &ClientMessage::Ack {
            id: SubscriptionId(1),
            seq: Seq(1),
        }
        .encode(),
    );
    let snapshot = driver.broker.durables_snapshot();

    // Restart: the log and the snapshot are read back; one more event arrives meanwhile.
    let mut restarted = Driver::new(config);
    restarted
        .broker
        .restore_from(restarted.now, log::recover(&driver.log).unwrap());
    let durables = durable::decode_snapshot(&snapshot).unwrap();
    restarted.broker.restore_durables(durables);
    restarted.publish_local("jobs.x", "3");
    let back = restarted.connect_extended(2, true);
    restarted.subscribe_durable(back, 4, "jobs.>", "worker");
    let got = restarted.deliveries(back);
    assert_eq!(
        seqs(&got),
        vec![2, 3, 4],
        "unacknowledged events again, then the new one"
    );
    assert_eq!(got[0].attempt, 2);
}

#[test]
fn durable_in_flight_window_holds_back_then_resumes() {
    let config = BrokerConfig {
        max_ack_pending: 2,
        ..BrokerConfig::default()
    };
    let mut driver = Driver::new(config);
    let client = driver.connect_extended(1, true);
    driver.subscribe_durable(client, 1, ">", "w");
    for n in 0..5 {
        driver.publish_local("x", &n.to_string());
    }
    assert_eq!(seqs(&driver.deliveries(client)), vec![1, 2]);
    driver.send(
        client,
        &ClientMessage::Ack {
            id: SubscriptionId(1),
            seq: Seq(1),
        }
        .encode(),
    );
    assert_eq!(seqs(&driver.deliveries(client)), vec![3]);
}

#[test]
fn durable_overflow_falls_back_to_replay_instead_of_dropping() {
    let config = BrokerConfig {
        queue_events: 4,
        ..BrokerConfig::default()
    };
    let mut driver = Driver::new(config);
    let client = driver.connect_extended(1, false);
    driver.subscribe_durable(client, 1, ">", "slow");
    for n in 0..20 {
        driver.publish_local("x", &n.to_string());
    }
    let stats = driver
        .broker
        .subscription_stats(client, SubscriptionId(1))
        .unwrap();
    assert_eq!(stats.overflowed, 0);

    driver.grant(client, 1 << 20);
    let messages = driver.take(client);
    assert!(!messages.iter().any(|m| matches!(m, ServerMessage::Gap(_))));
    let got: Vec<u64> = messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Event(d) => Some(d.seq.0),
            _ => None,
        })
        .collect();
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
}

#[test]
fn each_publishers_events_arrive_in_publish_order() {
    let mut driver = Driver::new(BrokerConfig::default());
    let subscriber = driver.connect_extended(1, false);
    driver.subscribe(subscriber, 1, "p.*", None);
    let publishers = [
        driver.connect_extended(2, true),
        driver.connect_extended(3, true),
    ];
    for n in 0..30 {
        let who = publishers[n % 2];
        driver.publish(who, &format!("p.{}", who.0), &n.to_string());
        if n % 7 == 0 {
            driver.grant(subscriber, 100);
        }
    }
    driver.grant(subscriber, 1 << 20);
    let got = driver.deliveries(subscriber);
    assert_eq!(got.len(), 30);
    for publisher in publishers {
        let topic = format!("p.{}", publisher.0);
        let numbers: Vec<usize> = got
            .iter()
            .filter(|d| d.topic.as_str() == topic)
            .map(|d| std::str::from_utf8(&d.payload).unwrap().parse().unwrap())
            .collect();
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "{topic}: {numbers:?}"
        );
        assert_eq!(numbers.len(), 15);
    }
}

#[test]
fn client_session_resumes_exactly_once_across_reconnects() {
    let mut driver = Driver::new(BrokerConfig::default());
    let mut session = ClientSession::new();
    let filter = TopicFilter::parse("orders.>").unwrap();
    let (id, subscribe) = session.subscribe(filter, SubscribeOptions::default());

    let mut seen = Vec::new();
    for round in 0..4u64 {
        let client = driver.connect(10 + round, true);
        let frames = if round == 0 {
            vec![session.hello(), subscribe.clone()]
        } else {
            session.resume()
        };
        for frame in frames {
            driver.send(client, &frame);
        }
        for n in 0..5 {
            driver.publish_local("orders.new", &format!("{round}-{n}"));
        }
        session
            .handle_bytes(&driver.raw.remove(&client).unwrap_or_default())
            .unwrap();
        while let Some(message) = session.poll_message() {
            if let ServerMessage::Event(delivery) = message {
                seen.push(delivery.seq.0);
            }
        }
        driver.received.remove(&client);
        driver.broker.handle_disconnect(driver.now, client);

        // Published while nobody is connected.
        driver.publish_local("orders.new", "offline");
    }
    assert_eq!(
        seen,
        (1..=23).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert_eq!(session.last_seen(id), Some(Seq(23)));
}

#[test]
fn v05_and_extended_clients_interoperate() {
    let mut driver = Driver::new(BrokerConfig::default());
    let legacy = driver.connect(1, true);
    driver.send(legacy, &legacy_frame("chat.*", b""));
    let extended = driver.connect_extended(2, true);
    driver.subscribe(extended, 1, "chat.>", None);
    driver.take(extended);

    driver.publish(extended, "chat.room", "from new");
    driver.send(legacy, &legacy_frame("chat.room", b"from old"));
    assert_eq!(
        driver.raw.get(&legacy),
        Some(&legacy_frame("chat.room", b"from new"))
    );
    let got = driver.deliveries(extended);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"from old");
}

#[test]
fn persistence_gates_delivery_and_acks_and_survives_restart() {
    let config = BrokerConfig {
        persistent: true,
        ..BrokerConfig::default()
    };
    let mut driver = Driver::new(config.clone());
    driver.auto_persist = false;
    let subscriber = driver.connect_extended(1, true);
    driver.subscribe(subscriber, 1, ">", None);
    let publisher = driver.connect_extended(2, true);
    driver.take(publisher);
    driver.take(subscriber);

    driver.publish(publisher, "a", "one");
    driver.publish(publisher, "a", "two");
    assert!(
        driver.take(publisher).is_empty(),
        "no ack before the log is durable"
    );
    assert!(
        driver.take(subscriber).is_empty(),
        "no delivery before the log is durable"
    );
    assert_eq!(driver.stats().uncommitted, 2);

    driver.broker.handle_persisted(driver.now, Seq(2));
    driver.drain();
    assert_eq!(driver.take(publisher).len(), 2);
    assert_eq!(seqs(&driver.deliveries(subscriber)), vec![1, 2]);

    // A restart: a new broker reads the log and continues the numbering.
    let recovered = log::recover(&driver.log).unwrap();
    assert_eq!(recovered.discarded, 0);
    let mut restarted = Driver::new(config.clone());
    restarted.broker.restore_from(restarted.now, recovered);
    assert_eq!(restarted.publish_local("a", "three"), Seq(3));
    let client = restarted.connect_extended(3, true);
    restarted.subscribe(client, 1, ">", Some(1));
    assert_eq!(seqs(&restarted.deliveries(client)), vec![1, 2, 3]);

    // Everything ages out and the driver compacts: numbering still continues after a restart.
    restarted.advance(Duration::from_secs(2 * 24 * 60 * 60));
    assert_eq!(restarted.stats().retained_events, 0);
    let compacted = log::recover(&restarted.broker.snapshot_log()).unwrap();
    assert!(compacted.records.is_empty());
    let mut again = Driver::new(config);
    again.broker.restore_from(again.now, compacted);
    assert_eq!(again.stats().head, Seq(3));
    assert_eq!(again.publish_local("a", "four"), Seq(4));
}

#[test]
fn a_reused_client_id_is_not_sent_its_predecessors_acks() {
    let config = BrokerConfig {
        persistent: true,
        ..BrokerConfig::default()
    };
    let mut driver = Driver::new(config);
    driver.auto_persist = false;
    let client = driver.connect_extended(5, true);
    driver.publish(client, "a", "1");
    driver.broker.handle_disconnect(driver.now, client);
    driver.take(client);

    let again = driver.connect_extended(5, true);
    driver.take(again);
    driver.broker.handle_persisted(driver.now, Seq(1));
    driver.drain();
    assert!(driver.take(again).is_empty());
}

#[test]
fn too_many_clients_and_control_backlog_close() {
    let config = BrokerConfig {
        max_clients: 1,
        max_control_backlog: 4,
        ..BrokerConfig::default()
    };
    let mut driver = Driver::new(config);
    let client = driver.connect_extended(1, false);
    let refused = driver.connect(2, true);
    assert_eq!(driver.closed, vec![(refused, CloseReason::TooManyClients)]);

    // The stalled client publishes without ever reading its acknowledgements.
    for _ in 0..5 {
        driver.publish(client, "a", "x");
    }
    assert_eq!(
        driver.closed.last(),
        Some(&(client, CloseReason::Overloaded))
    );
}

#[test]
fn publishes_wait_while_the_log_is_behind() {
    let config = BrokerConfig {
        persistent: true,
        max_uncommitted: 2,
        ..BrokerConfig::default()
    };
    let mut driver = Driver::new(config);
    driver.auto_persist = false;
    let client = driver.connect_extended(1, true);
    driver.take(client);
    driver.publish(client, "a", "1");
    driver.publish(client, "a", "2");
    driver.publish(client, "a", "3");
    assert!(
        driver.take(client).is_empty(),
        "the third publish is held, not refused"
    );
    let topic = Topic::parse("a").unwrap();
    let local = driver.broker.publish_local(driver.now, &topic, b"4");
    assert_eq!(
        local,
        Err(PublishError::Backlog),
        "the daemon's own publish is refused"
    );

    driver.broker.handle_persisted(driver.now, Seq(2));
    driver.drain();
    assert_eq!(
        driver.take(client).len(),
        2,
        "both stored publishes are acknowledged"
    );
    driver.broker.handle_persisted(driver.now, Seq(3));
    driver.drain();
    assert_eq!(
        driver.take(client).len(),
        1,
        "the held publish was stored as seq 3"
    );
    assert_eq!(
        driver.publish_local("a", "5"),
        Seq(4),
        "no sequence number was burnt"
    );
}

proptest! {
    #[test]
    fn arbitrary_client_bytes_never_panic(
        hello in any::<bool>(),
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
        control in proptest::collection::vec(
            (prop::sample::select(vec!["$pilot.sub", "$pilot.ack", "$pilot.unsub", "a.b"]),
             proptest::collection::vec(any::<u8>(), 0..30)),
            0..8),
    ) {
        let mut driver = Driver::new(BrokerConfig::default());
        let client = if hello { driver.connect_extended(1, true) } else { driver.connect(1, true) };
        for (topic, payload) in control {
            driver.send(client, &legacy_frame(topic, &payload));
        }
        for chunk in chunks {
            driver.send(client, &chunk);
        }
        driver.advance(Duration::from_secs(3_600));
        prop_assert!(driver.stats().clients <= 1);
    }
}
