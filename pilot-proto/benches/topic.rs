//! Subscription index throughput with 10,000 subscriptions: cached and uncached matching.
//!
//! Workload: a 50-word vocabulary, topics of 2-4 tokens, filters of 2-4 tokens of which 10 % have
//! one `*` token and 10 % end in `>` (the shape of the anchors' reference measurement). Each
//! iteration matches one topic from a fixed rotation of 1,000, so the cached run always hits.
//! Throughput is reported per match.

use divan::Bencher;
use divan::counter::ItemsCount;
use pilot_proto::pubsub::{SubscriptionIndex, Topic, TopicFilter};

const SUBSCRIPTIONS: usize = 10_000;
const TOPICS: usize = 1_000;
const WORDS: usize = 50;

fn main() {
    divan::main();
}

/// A small deterministic generator (xorshift), so the workload is the same on every run.
struct Gen(u64);

impl Gen {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }

    fn word(&mut self) -> String {
        format!("w{}", self.below(WORDS))
    }
}

fn filters(generator: &mut Gen) -> Vec<TopicFilter> {
    (0..SUBSCRIPTIONS)
        .map(|_| {
            let len = 2 + generator.below(3);
            let mut tokens: Vec<String> = (0..len).map(|_| generator.word()).collect();
            match generator.below(10) {
                0 => tokens[generator.below(len)] = "*".into(),
                1 => *tokens.last_mut().unwrap() = ">".into(),
                _ => {}
            }
            TopicFilter::parse(&tokens.join(".")).unwrap()
        })
        .collect()
}

fn topics(generator: &mut Gen) -> Vec<Topic> {
    (0..TOPICS)
        .map(|_| {
            let len = 2 + generator.below(3);
            let tokens: Vec<String> = (0..len).map(|_| generator.word()).collect();
            Topic::parse(&tokens.join(".")).unwrap()
        })
        .collect()
}

fn setup() -> (SubscriptionIndex<u32>, Vec<Topic>) {
    let mut generator = Gen(0x9e37_79b9_7f4a_7c15);
    let mut index = SubscriptionIndex::with_cache_capacity(4_096);
    for (key, filter) in filters(&mut generator).iter().enumerate() {
        index.insert(filter, key as u32);
    }
    (index, topics(&mut generator))
}

#[divan::bench]
fn match_cached(bencher: Bencher<'_, '_>) {
    let (mut index, topics) = setup();
    for topic in &topics {
        let _ = index.matches(topic);
    }
    let mut next = 0;
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        next = (next + 1) % TOPICS;
        divan::black_box(index.matches(&topics[next]).len())
    });
}

#[divan::bench]
fn match_uncached(bencher: Bencher<'_, '_>) {
    let (index, topics) = setup();
    let mut out = Vec::with_capacity(64);
    let mut next = 0;
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        next = (next + 1) % TOPICS;
        out.clear();
        index.collect(&topics[next], &mut out);
        divan::black_box(out.len())
    });
}

#[divan::bench]
fn average_results_per_match(bencher: Bencher<'_, '_>) {
    let (index, topics) = setup();
    let mut out = Vec::new();
    let total: usize = topics
        .iter()
        .map(|t| {
            out.clear();
            index.collect(t, &mut out);
            out.len()
        })
        .sum();
    eprintln!(
        "average subscriptions matched per topic: {:.2}",
        total as f64 / TOPICS as f64
    );
    bencher.bench_local(|| divan::black_box(total));
}

/// Broker fan-out: one publish delivered to 100 v0.5 subscribers, frames drained. Counts
/// deliveries.
#[divan::bench]
fn broker_fan_out_100(bencher: Bencher<'_, '_>) {
    use pilot_proto::pubsub::{Broker, BrokerConfig, ClientId};

    // A base instant for the broker; benchmarks never advance it.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::Instant::now();
    let config = BrokerConfig {
        initial_credit: usize::MAX,
        ..BrokerConfig::default()
    };
    let mut broker = Broker::new(config);
    for id in 0..100 {
        broker.handle_connect(now, ClientId(id));
        broker.handle_bytes(now, ClientId(id), b"\x00\x07bench.>\x00\x00\x00\x00");
    }
    while broker.poll_event().is_some() {}
    let topic = Topic::parse("bench.topic").unwrap();
    let payload = [0x5a; 64];
    bencher.counter(ItemsCount::new(100usize)).bench_local(|| {
        broker.publish_local(now, &topic, &payload).unwrap();
        let mut frames = 0;
        while let Some((_, frame)) = broker.poll_send(now) {
            frames += frame.len();
        }
        while broker.poll_event().is_some() {}
        divan::black_box(frames)
    });
}
