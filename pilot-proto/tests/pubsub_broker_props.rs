//! Property test of the broker's delivery accounting under random publishing and random reading
//! speeds: every matching event is either delivered once, in sequence order, or reported in an
//! overflow gap notice; never both, never neither.

use std::collections::BTreeMap;
use std::time::Instant;

use pilot_proto::pubsub::codec::{
    ClientMessage, FrameReader, GapReason, ServerMessage, SubscribeRequest,
};
use pilot_proto::pubsub::{
    Broker, BrokerConfig, ClientId, Seq, SubscriptionId, Topic, TopicFilter,
};
use proptest::prelude::*;

const FILTERS: [&str; 4] = ["a.*", "a.>", "*", "b.c"];
const TOPICS: [&str; 4] = ["a.b", "a.b.c", "b.c", "d"];

#[derive(Debug, Clone)]
enum Op {
    Publish(usize),
    Grant { client: usize, bytes: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..TOPICS.len()).prop_map(Op::Publish),
        1 => (0..4usize, 0..400usize).prop_map(|(client, bytes)| Op::Grant { client, bytes }),
    ]
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Seen {
    delivered: Vec<u64>,
    gaps: Vec<(u64, u64, u64)>,
}

fn drain(broker: &mut Broker, now: Instant, readers: &mut [FrameReader], seen: &mut [Seen]) {
    while let Some((client, frame)) = broker.poll_send(now) {
        let index = client.0 as usize;
        readers[index].push(&frame);
        while let Some(frame) = readers[index].next_frame().unwrap() {
            match ServerMessage::decode(&frame).unwrap() {
                ServerMessage::Event(delivery) => seen[index].delivered.push(delivery.seq.0),
                ServerMessage::Gap(gap) => {
                    assert_eq!(gap.reason, GapReason::Overflow);
                    seen[index].gaps.push((gap.from.0, gap.to.0, gap.missed));
                }
                _ => {}
            }
        }
    }
    while broker.poll_event().is_some() {}
}

/// The one clock read in this file: a base instant; time never advances here.
#[allow(clippy::disallowed_methods)]
fn start_instant() -> Instant {
    Instant::now()
}

proptest! {
    #[test]
    fn every_matching_event_is_delivered_or_reported(
        filters in proptest::collection::vec(0..FILTERS.len(), 4),
        queue in 1..6usize,
        ops in proptest::collection::vec(op(), 0..120),
    ) {
        let now = start_instant();
        let config = BrokerConfig { queue_events: queue, initial_credit: 0, ..Default::default() };
        let mut broker = Broker::new(config);
        let mut readers: Vec<FrameReader> = (0..4).map(|_| FrameReader::new(1 << 20)).collect();
        let mut seen: Vec<Seen> = (0..4).map(|_| Seen::default()).collect();
        for (index, filter) in filters.iter().enumerate() {
            let client = ClientId(index as u64);
            broker.handle_connect(now, client);
            broker.handle_bytes(now, client, &ClientMessage::Hello { version: 1 }.encode());
            let request = SubscribeRequest {
                id: SubscriptionId(1),
                filter: TopicFilter::parse(FILTERS[*filter]).unwrap(),
                since: None,
                durable: None,
                echo: false,
            };
            broker.handle_bytes(now, client, &ClientMessage::Subscribe(request).encode());
        }

        let mut published: BTreeMap<u64, &str> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Publish(topic) => {
                    let seq = broker
                        .publish_local(now, &Topic::parse(TOPICS[topic]).unwrap(), b"x")
                        .unwrap();
                    published.insert(seq.0, TOPICS[topic]);
                }
                Op::Grant { client, bytes } => {
                    broker.handle_writable(now, ClientId(client as u64), bytes);
                }
            }
            drain(&mut broker, now, &mut readers, &mut seen);
        }
        for client in 0..4 {
            broker.handle_writable(now, ClientId(client), usize::MAX / 8);
        }
        drain(&mut broker, now, &mut readers, &mut seen);

        for (index, filter) in filters.iter().enumerate() {
            let filter = TopicFilter::parse(FILTERS[*filter]).unwrap();
            let matching: Vec<u64> = published
                .iter()
                .filter(|(_, t)| filter.matches(&Topic::parse(t).unwrap()))
                .map(|(seq, _)| *seq)
                .collect();
            let seen = &seen[index];
            prop_assert!(seen.delivered.windows(2).all(|w| w[0] < w[1]), "in order, once");
            let missed: u64 = seen.gaps.iter().map(|g| g.2).sum();
            prop_assert_eq!(seen.delivered.len() as u64 + missed, matching.len() as u64);
            for seq in &seen.delivered {
                prop_assert!(matching.contains(seq), "delivered {} does not match", seq);
                let in_gap = seen.gaps.iter().any(|(from, to, _)| from <= seq && seq <= to);
                prop_assert!(!in_gap, "{} both delivered and reported missing", seq);
            }
            let stats = broker.subscription_stats(ClientId(index as u64), SubscriptionId(1));
            prop_assert_eq!(stats.map(|s| s.overflowed), Some(missed));
        }
        prop_assert_eq!(broker.stats().head, Seq(published.len() as u64));
    }
}
