//! The event broker (port 1002) through `pilot-sim`, issue #7's simulator tests: real agents on
//! separate hosts (most behind NAT presets) register with a simulated rendezvous, dial the
//! broker node over encrypted tunnels and talk to it with the client codec, in virtual time.
//!
//! - A stalled subscriber costs the others nothing: two healthy subscribers get every matching
//!   event, in order, with no gap and no worse latency than in a control run where all three
//!   read; the stalled one's queue overflows, and when it reads again its gap notices count
//!   exactly the matching events they cover (non-matching events are interleaved so a count
//!   and a range width differ), in sequence with the events around them.
//! - A subscriber that goes away for a while resumes with `since` and gets every event
//!   published meanwhile, in order, exactly once.
//! - v0.5 clients (first frame = subscription, later frames = publishes) subscribe and publish.
//!
//! Seeds are printed; rerun one with `PILOT_SIM_SEED`. The lossy scenarios run with [`SEEDS`]
//! seeds each.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pilot_proto::agent::AgentConfig;
use pilot_proto::pubsub::client::SubscribeOptions;
use pilot_proto::pubsub::codec::{
    ClientMessage, Delivery, Frame, FrameReader, GapNotice, GapReason, ServerMessage,
};
use pilot_proto::pubsub::{BrokerConfig, Seq, SubscriptionId, Topic, TopicFilter};
use pilot_proto::wire::addr::{Addr, AddrPort, port};
use pilot_proto::wire::event::MAX_PAYLOAD_LEN;
use pilot_sim::{HostId, LinkConfig, NatConfig, NatId, NetId, Scenario, Sim, SimBuilder};
use pilot_tests::agent_host::AgentHost;
use pilot_tests::matrix::{RENDEZVOUS_IP, SourceMap, agent_config};
use pilot_tests::pubsub_host::PubSubHost;
use pilot_tests::rendezvous::{BEACON_PORT, BEACON_STREAM_PORT, REGISTRY_PORT, Rendezvous};

/// The broker node (the rendezvous is host 0).
const BROKER: HostId = HostId(1);

/// Payload bytes of every test event (the first 4 are its index).
const PAYLOAD_LEN: usize = 512;

/// One client host of a scenario.
struct ClientSpec {
    name: &'static str,
    nat: Option<NatConfig>,
    legacy: bool,
    config: AgentConfig,
}

impl ClientSpec {
    fn new(name: &'static str, nat: Option<NatConfig>) -> Self {
        Self {
            name,
            nat,
            legacy: false,
            config: agent_config(),
        }
    }

    fn legacy(mut self) -> Self {
        self.legacy = true;
        self
    }
}

/// Builds rendezvous (host 0), the broker node (host 1, public) and the clients (hosts 2..).
fn build(seed: u64, link: LinkConfig, broker: AgentConfig, clients: Vec<ClientSpec>) -> Sim {
    println!("seed {seed:#x} (rerun with PILOT_SIM_SEED={seed})");
    let mut builder = SimBuilder::new(seed);
    builder.default_link(link);
    let sources = SourceMap::default();
    add_rendezvous(&mut builder, sources.clone());
    let registry = SocketAddr::from((RENDEZVOUS_IP, REGISTRY_PORT));
    builder.host("broker", NetId::INTERNET, move |ctx: &_| {
        Box::new(AgentHost::new(ctx, broker.clone(), registry))
    });
    let mut nats = Vec::new();
    for (index, spec) in clients.into_iter().enumerate() {
        let nat = spec.nat.map(|c| builder.nat(spec.name, NetId::INTERNET, c));
        let net = nat.map_or(NetId::INTERNET, NatId::inside);
        let (config, legacy) = (spec.config, spec.legacy);
        builder.host(spec.name, net, move |ctx: &_| {
            Box::new(PubSubHost::new(ctx, config.clone(), registry, legacy))
        });
        nats.push((HostId(index + 2), nat));
    }
    let sim = builder.build().expect("the topology is valid");
    fill_sources(&sim, &sources, &nats);
    sim
}

fn add_rendezvous(builder: &mut SimBuilder, sources: SourceMap) {
    let host = builder.host("rendezvous", NetId::INTERNET, move |ctx: &_| {
        Box::new(Rendezvous::new(ctx, sources.clone()))
    });
    builder
        .host_mut(host)
        .addr(RENDEZVOUS_IP.into())
        .udp_ports(&[BEACON_PORT])
        .listen(REGISTRY_PORT)
        .listen(BEACON_STREAM_PORT);
}

/// Tells the rendezvous which public address each NAT'd host's streams come from.
fn fill_sources(sim: &Sim, sources: &SourceMap, nats: &[(HostId, Option<NatId>)]) {
    let mut map = sources.borrow_mut();
    for (host, nat) in nats {
        let (Some(nat), Some(SocketAddr::V4(addr))) = (nat, sim.host_addr(*host)) else {
            continue;
        };
        if let Some(public) = sim.nat(*nat).map(|n| n.public_ip()) {
            map.insert(*addr.ip(), public);
        }
    }
}

/// A link with 10 ms latency, 1 ms jitter and 50 Mbit/s each way.
fn link() -> LinkConfig {
    LinkConfig::with_latency(Duration::from_millis(10))
        .jitter(Duration::from_millis(1))
        .bandwidth(50_000_000, 256 * 1024)
}

fn client(sim: &Sim, id: HostId) -> &PubSubHost {
    sim.machine::<PubSubHost>(id)
        .expect("client host is running")
}

/// Runs until `done` holds, failing with `what` after `within` of virtual time.
fn wait(sim: &mut Sim, within: Duration, what: &str, done: impl FnMut(&Sim) -> bool) {
    let deadline = sim.now() + within;
    let ok = sim
        .run_until_true(deadline, done)
        .expect("within the event budget");
    assert!(ok, "{what} within {within:?} (at {:?})", sim.elapsed());
}

/// Waits for every host to register and returns the broker's address.
fn register_all(sim: &mut Sim, clients: usize) -> Addr {
    // Machines start once the simulation runs, so this looks them up without panicking.
    let registered = move |sim: &Sim| {
        let broker = sim.machine::<AgentHost>(BROKER).and_then(|h| h.address);
        let all = (0..clients).all(|i| {
            let host = sim.machine::<PubSubHost>(HostId(i + 2));
            host.is_some_and(|h| h.host.address.is_some())
        });
        broker.is_some() && all
    };
    wait(
        sim,
        Duration::from_secs(30),
        "every node registers",
        registered,
    );
    let broker = sim.machine::<AgentHost>(BROKER).and_then(|h| h.address);
    broker.expect("registered above")
}

/// Dials the broker from `id` and writes `frames` once the stream is up.
fn connect(sim: &mut Sim, id: HostId, broker: Addr, frames: &[Vec<u8>]) {
    sim.act::<PubSubHost, _>(id, |h, now| {
        h.dial(now, AddrPort::new(broker, port::EVENT_STREAM));
        for frame in frames {
            h.write(now, frame);
        }
    });
}

/// Connects an extended client from `id` and subscribes it to `filter`; waits for the SubAck.
fn subscribe(sim: &mut Sim, id: HostId, broker: Addr, filter: &str) -> SubscriptionId {
    let filter = TopicFilter::parse(filter).expect("valid filter");
    let frames = sim
        .act::<PubSubHost, _>(id, |h, _| {
            let session = h.session().expect("extended client");
            let (sub, frame) = session.subscribe(filter, SubscribeOptions::default());
            (sub, vec![session.hello(), frame])
        })
        .expect("client host is running");
    connect(sim, id, broker, &frames.1);
    let acked = move |sim: &Sim| suback(client(sim, id), frames.0);
    wait(
        sim,
        Duration::from_secs(30),
        "the subscription is acknowledged",
        acked,
    );
    frames.0
}

fn suback(host: &PubSubHost, sub: SubscriptionId) -> bool {
    host.received
        .iter()
        .any(|(_, m)| matches!(m, ServerMessage::SubAck { id, .. } if *id == sub))
}

/// Connects an extended publisher (hello only) from `id`; waits for the welcome.
fn connect_publisher(sim: &mut Sim, id: HostId, broker: Addr) {
    let hello = sim
        .act::<PubSubHost, _>(id, |h, _| h.session().expect("extended").hello())
        .expect("client host is running");
    connect(sim, id, broker, &[hello]);
    let welcomed = move |sim: &Sim| {
        let received = &client(sim, id).received;
        received
            .iter()
            .any(|(_, m)| matches!(m, ServerMessage::Welcome { .. }))
    };
    wait(
        sim,
        Duration::from_secs(30),
        "the publisher is welcomed",
        welcomed,
    );
}

/// An event payload carrying its index.
fn payload(index: u32) -> Vec<u8> {
    let mut bytes = vec![0x5a; PAYLOAD_LEN];
    bytes[..4].copy_from_slice(&index.to_be_bytes());
    bytes
}

fn index_of(payload: &[u8]) -> u32 {
    let head: [u8; 4] = payload[..4].try_into().expect("payload carries an index");
    u32::from_be_bytes(head)
}

/// Publishes events `range` from `id`, event `i` on `topic(i)`, `burst` at a time every
/// `every`; returns when each was handed to the publisher's stream.
fn publish(
    sim: &mut Sim,
    id: HostId,
    topic: impl Fn(u32) -> &'static str,
    range: std::ops::Range<u32>,
    (burst, every): (u32, Duration),
) -> Vec<Instant> {
    let mut sent = Vec::new();
    let mut next = range.start;
    while next < range.end {
        let end = (next + burst).min(range.end);
        let at = sim
            .act::<PubSubHost, _>(id, |h, now| {
                for index in next..end {
                    let topic = Topic::parse(topic(index)).expect("valid topic");
                    let frame = h
                        .session()
                        .expect("extended")
                        .publish(&topic, &payload(index));
                    h.write(now, &frame);
                }
                now
            })
            .expect("publisher is running");
        sent.extend((next..end).map(|_| at));
        next = end;
        sim.run_for(every).expect("within the event budget");
    }
    sent
}

/// The events a client received on `sub`, with arrival times.
fn deliveries(host: &PubSubHost, sub: SubscriptionId) -> Vec<(Instant, &Delivery)> {
    let events = host.received.iter().filter_map(|(at, m)| match m {
        ServerMessage::Event(d) if d.id == sub => Some((*at, d)),
        _ => None,
    });
    events.collect()
}

fn gaps(host: &PubSubHost, sub: SubscriptionId) -> Vec<GapNotice> {
    let gaps = host.received.iter().filter_map(|(_, m)| match m {
        ServerMessage::Gap(g) if g.id == sub => Some(*g),
        _ => None,
    });
    gaps.collect()
}

/// Event indices delivered on `sub`, in arrival order.
fn indices(host: &PubSubHost, sub: SubscriptionId) -> Vec<u32> {
    let delivered = deliveries(host, sub);
    delivered
        .iter()
        .map(|(_, d)| index_of(&d.payload))
        .collect()
}

const PUBLISHER: HostId = HostId(2);

/// Seeds each lossy scenario runs with (only `PILOT_SIM_SEED` when it is set).
const SEEDS: u64 = 4;

#[test]
fn stalled_subscriber_gets_a_gap_and_costs_the_others_nothing() {
    const NAME: &str = "stalled_subscriber_gets_a_gap_and_costs_the_others_nothing";
    let scenario = Scenario::new(NAME);

    // The control run is the same network and seed with the third subscriber reading: it sets
    // the latency the healthy subscribers must still meet when the third one stalls.
    let control = Scenario::new(&format!("{NAME}_control")).seed(scenario.current_seed());
    let mut baseline = Duration::ZERO;
    control.run(build_stalled, |sim| baseline = stalled_scenario(sim, false));
    scenario.run(build_stalled, |sim| {
        let worst = stalled_scenario(sim, true);
        let allowed = baseline + STALL_SLACK;
        println!("healthy worst latency {worst:?} with a stalled peer, {baseline:?} without");
        assert!(
            worst <= allowed,
            "the stall delayed others: {worst:?} > {allowed:?}"
        );
    });
}

/// Rendezvous, a broker whose subscription queues hold 128 events, a publisher and three
/// subscribers with 128 KiB receive buffers (ample for the rate, small enough that a stall
/// reaches the broker within a few hundred events).
fn build_stalled(seed: u64) -> Sim {
    let mut broker = agent_config();
    broker.node.broker = Some(BrokerConfig {
        queue_events: 128,
        initial_credit: 32 * 1024,
        ..BrokerConfig::default()
    });
    broker.node.transport.send_buffer = 64 * 1024;
    let subscriber = |name, nat| {
        let mut spec = ClientSpec::new(name, Some(nat));
        spec.config.node.transport.recv_buffer = 128 * 1024;
        spec
    };
    let clients = vec![
        ClientSpec::new("publisher", Some(NatConfig::full_cone())),
        subscriber("sub-a", NatConfig::port_restricted_cone()),
        subscriber("sub-b", NatConfig::symmetric()),
        subscriber("third", NatConfig::restricted_cone()),
    ];
    build(seed, link(), broker, clients)
}

/// Events published in the stalled-subscriber scenario (1,000 per second).
const STALL_EVENTS: u32 = 2_000;

/// Longest a healthy subscriber may wait for an event after its publish: two 10 ms hops each
/// way with jitter, the publisher's Nagle and the broker's delayed ACK, with room to spare, and
/// far below the 2 s for which the stalled subscriber reads nothing.
const LATENCY_BOUND: Duration = Duration::from_millis(250);

/// How much worse than the control run a healthy subscriber's worst latency may be with the
/// third subscriber stalled (jitter draws differ between the runs).
const STALL_SLACK: Duration = Duration::from_millis(15);

/// Topic of event `index`: every fourth event does not match the subscriptions, so sequence
/// numbers have holes and a gap's missed count differs from the width of its range.
fn stall_topic(index: u32) -> &'static str {
    if index % 4 == 3 {
        "logs.debug"
    } else {
        "metrics.cpu"
    }
}

/// Whether the event with broker sequence number `seq` matches `metrics.>` (the broker is
/// fresh and the publisher alone, so event `i` gets sequence number `i + 1`).
fn matches_seq(seq: u64) -> bool {
    let index = seq.checked_sub(1).and_then(|i| u32::try_from(i).ok());
    index.is_some_and(|i| i < STALL_EVENTS && stall_topic(i) != "logs.debug")
}

/// The indices of the events the subscribers should get, in publish order.
fn matching() -> Vec<u32> {
    (0..STALL_EVENTS)
        .filter(|i| matches_seq(u64::from(*i) + 1))
        .collect()
}

/// Runs the scenario with the third subscriber stalled (`stall`) or reading; returns the worst
/// publish-to-delivery latency of the two healthy subscribers.
fn stalled_scenario(sim: &mut Sim, stall: bool) -> Duration {
    let (healthy, third) = ([HostId(3), HostId(4)], HostId(5));
    let broker = register_all(sim, 4);
    connect_publisher(sim, PUBLISHER, broker);
    let subs = healthy.map(|id| subscribe(sim, id, broker, "metrics.>"));
    let third_sub = subscribe(sim, third, broker, "metrics.>");
    sim.act::<PubSubHost, _>(third, |h, _| h.paused = stall);

    let pace = (5, Duration::from_millis(5));
    let sent = publish(sim, PUBLISHER, stall_topic, 0..STALL_EVENTS, pace);
    let want = matching().len();
    let all_in = move |sim: &Sim| {
        let count = |(id, sub): (HostId, SubscriptionId)| deliveries(client(sim, id), sub).len();
        healthy.into_iter().zip(subs).all(|p| count(p) >= want)
    };
    wait(
        sim,
        Duration::from_secs(5),
        "healthy subscribers get everything",
        all_in,
    );
    let worst = healthy
        .into_iter()
        .zip(subs)
        .map(|(id, sub)| assert_full_rate(client(sim, id), sub, &sent))
        .max()
        .unwrap_or_default();

    if stall {
        check_stalled(sim, third, third_sub);
    } else {
        let done = move |sim: &Sim| deliveries(client(sim, third), third_sub).len() >= want;
        wait(
            sim,
            Duration::from_secs(5),
            "the third subscriber gets everything",
            done,
        );
        assert_full_rate(client(sim, third), third_sub, &sent);
    }
    worst
}

/// The stalled subscriber read nothing; once it reads again it accounts for every event.
fn check_stalled(sim: &mut Sim, stalled: HostId, sub: SubscriptionId) {
    let host = client(sim, stalled);
    let seen = deliveries(host, sub).len() + gaps(host, sub).len();
    assert_eq!(seen, 0, "the stalled subscriber read nothing so far");

    sim.act::<PubSubHost, _>(stalled, |h, now| {
        h.paused = false;
        h.pump(now);
    });
    let want = matching().len() as u64;
    let settled = move |sim: &Sim| accounted(client(sim, stalled), sub) >= want;
    wait(
        sim,
        Duration::from_secs(10),
        "the stalled subscriber catches up",
        settled,
    );
    sim.run_for(Duration::from_secs(1))
        .expect("within the event budget");
    assert_gap_accounts(client(sim, stalled), sub);
}

/// Every matching event, in order, with its sequence number, no gap; returns the worst
/// publish-to-delivery latency, which must be within [`LATENCY_BOUND`].
fn assert_full_rate(host: &PubSubHost, sub: SubscriptionId, sent: &[Instant]) -> Duration {
    assert!(!host.framing_error, "the stream decodes");
    assert!(
        gaps(host, sub).is_empty(),
        "a healthy subscriber has no gap"
    );
    let got = deliveries(host, sub);
    let order: Vec<u32> = got.iter().map(|(_, d)| index_of(&d.payload)).collect();
    assert_eq!(order, matching(), "every matching event, in order, once");
    let numbered = got
        .iter()
        .all(|(_, d)| d.seq.0 == u64::from(index_of(&d.payload)) + 1);
    assert!(numbered, "event i carries sequence number i + 1");

    let mut latencies: Vec<Duration> = got
        .iter()
        .map(|(at, d)| at.saturating_duration_since(sent[index_of(&d.payload) as usize]))
        .collect();
    latencies.sort_unstable();
    let (median, worst) = (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );
    println!("subscriber: publish-to-delivery latency median {median:?}, worst {worst:?}");
    assert!(
        worst <= LATENCY_BOUND,
        "latency {worst:?} over {LATENCY_BOUND:?}"
    );
    worst
}

/// Events delivered plus events the gap notices say were missed.
fn accounted(host: &PubSubHost, sub: SubscriptionId) -> u64 {
    let delivered = deliveries(host, sub).len() as u64;
    let missed: u64 = gaps(host, sub).iter().map(|g| g.missed).sum();
    delivered + missed
}

/// The stalled subscriber overflowed and was told: its stream is in sequence order, each
/// overflow notice counts exactly the matching events in its range, and every matching event
/// is either delivered once or inside a notice.
fn assert_gap_accounts(host: &PubSubHost, sub: SubscriptionId) {
    assert!(!host.framing_error, "the stream decodes");
    let notices = gaps(host, sub);
    assert!(
        !notices.is_empty(),
        "the stalled subscriber got a gap notice"
    );
    let mut covered = BTreeSet::new();
    for gap in &notices {
        assert_eq!(gap.reason, GapReason::Overflow);
        let range = gap.from.0..=gap.to.0;
        let matched = range.clone().filter(|s| matches_seq(*s)).count() as u64;
        assert_eq!(gap.missed, matched, "missed count of {gap:?}");
        covered.extend(range.filter(|s| matches_seq(*s)));
    }
    assert_in_sequence(host, sub);

    let delivered: BTreeSet<u64> = deliveries(host, sub).iter().map(|(_, d)| d.seq.0).collect();
    assert!(
        delivered.iter().all(|s| matches_seq(*s)),
        "only matching events"
    );
    assert!(
        delivered.is_disjoint(&covered),
        "no event is both delivered and missed"
    );
    let all: BTreeSet<u64> = covered.union(&delivered).copied().collect();
    let want: BTreeSet<u64> = matching().iter().map(|i| u64::from(*i) + 1).collect();
    assert_eq!(all, want, "nothing missed silently");
    println!(
        "stalled subscriber: {} delivered, {} missed in {} gap notice(s)",
        delivered.len(),
        covered.len(),
        notices.len()
    );
}

/// Events and gap notices arrive in increasing sequence order, none overlapping another.
fn assert_in_sequence(host: &PubSubHost, sub: SubscriptionId) {
    let mut last = 0;
    for (_, message) in &host.received {
        let (from, to) = match message {
            ServerMessage::Event(d) if d.id == sub => (d.seq.0, d.seq.0),
            ServerMessage::Gap(g) if g.id == sub => (g.from.0, g.to.0),
            _ => continue,
        };
        assert!(
            from > last && to >= from,
            "{message:?} after sequence number {last}"
        );
        last = to;
    }
}

#[test]
fn disconnected_subscriber_resumes_with_since_exactly_once() {
    Scenario::new("disconnected_subscriber_resumes_with_since_exactly_once").run_many(
        SEEDS,
        |seed| {
            let clients = vec![
                ClientSpec::new("publisher", Some(NatConfig::symmetric())),
                ClientSpec::new("roamer", Some(NatConfig::port_restricted_cone())),
            ];
            build(seed, link().loss(0.01), agent_config(), clients)
        },
        resume_scenario,
    );
}

fn resume_scenario(sim: &mut Sim) {
    let roamer = HostId(3);
    let broker = register_all(sim, 2);
    connect_publisher(sim, PUBLISHER, broker);
    let sub = subscribe(sim, roamer, broker, "orders.*");
    let pace = (5, Duration::from_millis(50));
    publish(sim, PUBLISHER, |_| "orders.new", 0..50, pace);
    let got = move |n: usize| move |sim: &Sim| deliveries(client(sim, roamer), sub).len() >= n;
    wait(
        sim,
        Duration::from_secs(10),
        "the first 50 events arrive",
        got(50),
    );

    sim.act::<PubSubHost, _>(roamer, |h, now| h.disconnect(now));
    sim.partition(roamer, BROKER);
    publish(sim, PUBLISHER, |_| "orders.new", 50..150, pace);
    sim.run_for(Duration::from_secs(20))
        .expect("within the event budget");
    sim.heal_all();

    let frames = sim
        .act::<PubSubHost, _>(roamer, |h, _| h.session().expect("extended").resume())
        .expect("roamer is running");
    let since = resumed_since(&frames[1]);
    assert_eq!(
        since,
        Some(Seq(51)),
        "resumes just past the last event seen"
    );
    connect(sim, roamer, broker, &frames);
    publish(sim, PUBLISHER, |_| "orders.new", 150..200, pace);
    wait(
        sim,
        Duration::from_secs(60),
        "every event arrives",
        got(200),
    );
    sim.run_for(Duration::from_secs(2))
        .expect("within the event budget");

    let host = client(sim, roamer);
    assert!(!host.framing_error, "the stream decodes");
    assert_eq!(
        indices(host, sub),
        (0..200).collect::<Vec<_>>(),
        "in order, exactly once"
    );
    assert!(gaps(host, sub).is_empty(), "nothing was lost");
    let seqs: Vec<u64> = deliveries(host, sub).iter().map(|(_, d)| d.seq.0).collect();
    assert_eq!(
        seqs,
        (1..=200).collect::<Vec<_>>(),
        "every sequence number once"
    );
}

/// The `since` of an encoded subscribe frame, decoded as the broker decodes it.
fn resumed_since(frame: &[u8]) -> Option<Seq> {
    let mut reader = FrameReader::new(MAX_PAYLOAD_LEN);
    reader.push(frame);
    let frame = reader.next_frame().ok()??;
    match ClientMessage::decode(&frame).ok()? {
        ClientMessage::Subscribe(request) => request.since,
        _ => None,
    }
}

#[test]
fn v05_clients_subscribe_with_their_first_frame_and_publish() {
    Scenario::new("v05_clients_subscribe_with_their_first_frame_and_publish").run_many(
        SEEDS,
        |seed| {
            let clients = vec![
                ClientSpec::new("publisher", Some(NatConfig::full_cone())),
                ClientSpec::new("watcher", Some(NatConfig::restricted_cone())),
                ClientSpec::new("legacy", Some(NatConfig::port_restricted_cone())).legacy(),
                ClientSpec::new("legacy-all", None).legacy(),
            ];
            build(seed, link().loss(0.01), agent_config(), clients)
        },
        legacy_scenario,
    );
}

fn legacy_scenario(sim: &mut Sim) {
    let (watcher, legacy, legacy_all) = (HostId(3), HostId(4), HostId(5));
    let broker = register_all(sim, 4);
    connect_publisher(sim, PUBLISHER, broker);
    let sub = subscribe(sim, watcher, broker, "tasks.*");

    // A v0.5 client writes its subscription, then publishes on the same connection: once the
    // watcher sees the publish, the broker has registered the subscription before it.
    let plain = |topic: &str, payload: &[u8]| Frame::encode(topic.as_bytes(), payload).unwrap();
    let frames = [plain("*", b""), plain("tasks.ready", b"all")];
    connect(sim, legacy_all, broker, &frames);
    wait_for_task(sim, watcher, sub, "tasks.ready");
    let frames = [plain("alerts", b""), plain("tasks.done", b"job 7")];
    connect(sim, legacy, broker, &frames);
    wait_for_task(sim, watcher, sub, "tasks.done");
    let alert = b"disk full".to_vec();
    sim.act::<PubSubHost, _>(PUBLISHER, |h, now| {
        let topic = Topic::parse("alerts").expect("valid topic");
        let frame = h.session().expect("extended").publish(&topic, &alert);
        h.write(now, &frame);
    });
    let has = |id: HostId, n: usize| move |sim: &Sim| client(sim, id).received.len() >= n;
    wait(
        sim,
        Duration::from_secs(10),
        "the v0.5 subscriber gets its event",
        has(legacy, 1),
    );
    wait(
        sim,
        Duration::from_secs(10),
        "the `*` subscriber gets all",
        has(legacy_all, 2),
    );
    sim.run_for(Duration::from_secs(2))
        .expect("within the event budget");

    assert_eq!(
        plain_frames(client(sim, legacy)),
        [("alerts".into(), alert.clone())]
    );
    let everything = [
        ("tasks.done".into(), b"job 7".to_vec()),
        ("alerts".into(), alert),
    ];
    assert_eq!(plain_frames(client(sim, legacy_all)), everything);
    let watched: Vec<String> = deliveries(client(sim, watcher), sub)
        .iter()
        .map(|(_, d)| d.topic.as_str().to_owned())
        .collect();
    assert_eq!(
        watched,
        ["tasks.ready", "tasks.done"],
        "v0.5 publishes reach `tasks.*`"
    );
}

fn wait_for_task(sim: &mut Sim, watcher: HostId, sub: SubscriptionId, topic: &'static str) {
    let seen = move |sim: &Sim| {
        let delivered = deliveries(client(sim, watcher), sub);
        delivered.iter().any(|(_, d)| d.topic.as_str() == topic)
    };
    wait(
        sim,
        Duration::from_secs(30),
        "a v0.5 publish reaches a subscriber",
        seen,
    );
}

/// Everything a v0.5 client received: only plain frames, as (topic, payload).
fn plain_frames(host: &PubSubHost) -> Vec<(String, Vec<u8>)> {
    assert!(!host.framing_error, "the stream decodes");
    let frames = host.received.iter().map(|(_, m)| match m {
        ServerMessage::Plain { topic, payload } => (
            String::from_utf8_lossy(topic).into_owned(),
            payload.to_vec(),
        ),
        other => panic!("a v0.5 client received an extended message: {other:?}"),
    });
    frames.collect()
}
