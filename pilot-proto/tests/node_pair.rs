//! Two nodes wired together in memory (no sockets, virtual time): key exchange, a stream to the
//! echo service, an application stream, and a node dialling itself.

// Tests take one real instant as the epoch of their virtual clock.
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pilot_proto::identity::Identity;
use pilot_proto::node::{Node, NodeConfig, NodeEvent};
use pilot_proto::transport::ConnId;
use pilot_proto::wire::addr::{Addr, AddrPort, port};

const A: Addr = Addr::new(0, 10);
const B: Addr = Addr::new(0, 20);

struct Pair {
    now: Instant,
    nodes: [Node; 2],
    endpoints: [SocketAddr; 2],
    events: [Vec<NodeEvent>; 2],
}

impl Pair {
    fn new() -> Self {
        Self::with_config(NodeConfig::default())
    }

    /// A pair whose node B (index 1) runs with `b_config`.
    fn with_config(b_config: NodeConfig) -> Self {
        let now = Instant::now();
        let ids = [Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32])];
        let keys = [ids[0].verifying_key(), ids[1].verifying_key()];
        let endpoints: [SocketAddr; 2] = [
            "127.0.0.1:4001".parse().unwrap(),
            "127.0.0.1:4002".parse().unwrap(),
        ];
        let [id_a, id_b] = ids;
        let mut a = Node::new(NodeConfig::default(), id_a, A, [3; 32], now);
        let mut b = Node::new(b_config, id_b, B, [4; 32], now);
        a.add_peer(now, B, endpoints[1], Some(keys[1])).unwrap();
        b.add_peer(now, A, endpoints[0], Some(keys[0])).unwrap();
        Self {
            now,
            nodes: [a, b],
            endpoints,
            events: [Vec::new(), Vec::new()],
        }
    }

    /// Moves every datagram and event until both nodes are quiet; advances time to the next
    /// timer when nothing is in flight. Bounded by `max_steps`.
    fn run_until(&mut self, max_steps: usize, mut done: impl FnMut(&mut Self) -> bool) {
        for _ in 0..max_steps {
            if done(self) {
                return;
            }
            if !self.exchange() {
                let next = self.nodes.iter().filter_map(Node::poll_timeout).min();
                let Some(next) = next else { continue };
                self.now = self.now.max(next);
                for node in &mut self.nodes {
                    node.handle_timeout(self.now);
                }
            }
        }
        panic!("condition not reached within {max_steps} steps");
    }

    fn exchange(&mut self) -> bool {
        let mut in_flight: VecDeque<(usize, SocketAddr, Vec<u8>)> = VecDeque::new();
        for (index, node) in self.nodes.iter_mut().enumerate() {
            let mut buf = Vec::new();
            while let Some(transmit) = node.poll_transmit(self.now, &mut buf) {
                let to = self
                    .endpoints
                    .iter()
                    .position(|e| *e == transmit.dst)
                    .unwrap();
                in_flight.push_back((to, self.endpoints[index], buf[..transmit.len].to_vec()));
            }
            while let Some(event) = node.poll_event() {
                self.events[index].push(event);
            }
        }
        let moved = !in_flight.is_empty();
        self.now += Duration::from_millis(1);
        for (to, from, mut bytes) in in_flight {
            self.nodes[to].handle_datagram(self.now, from, &mut bytes);
        }
        moved
    }

    fn read_all(&mut self, index: usize, stream: ConnId) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(read) = self.nodes[index].recv(stream, &mut buf) {
            if read == 0 {
                break;
            }
            out.extend_from_slice(&buf[..read]);
        }
        out
    }
}

#[test]
fn peers_key_and_echo_round_trips() {
    let mut pair = Pair::new();
    pair.run_until(200, |p| {
        p.nodes[0].is_peer_keyed(B) && p.nodes[1].is_peer_keyed(A)
    });
    pair.exchange();
    assert!(
        pair.events[0]
            .iter()
            .any(|e| matches!(e, NodeEvent::PeerUp { peer, .. } if *peer == B))
    );

    let now = pair.now;
    let stream = pair.nodes[0]
        .connect(now, AddrPort::new(B, port::ECHO))
        .unwrap();
    pair.run_until(500, |p| {
        p.events[0].contains(&NodeEvent::Connected { stream })
    });
    let message = b"hello through the tunnel";
    assert_eq!(
        pair.nodes[0].send(pair.now, stream, message).unwrap(),
        message.len()
    );

    let mut echoed = Vec::new();
    pair.run_until(2_000, |p| {
        echoed.extend(p.read_all(0, stream));
        echoed.len() >= message.len()
    });
    assert_eq!(echoed, message);
    assert!(
        pair.nodes[1].stats().tunnel.packets_opened > 0,
        "traffic must be sealed"
    );
}

#[test]
fn application_stream_carries_bytes_both_ways() {
    let mut pair = Pair::new();
    pair.nodes[1].listen(5000).unwrap();
    let now = pair.now;
    let stream = pair.nodes[0].connect(now, AddrPort::new(B, 5000)).unwrap();
    pair.run_until(1_000, |p| {
        p.events[1]
            .iter()
            .any(|e| matches!(e, NodeEvent::Incoming { .. }))
    });
    let Some(NodeEvent::Incoming {
        stream: accepted,
        remote,
        ..
    }) = pair.events[1]
        .iter()
        .find(|e| matches!(e, NodeEvent::Incoming { .. }))
        .cloned()
    else {
        unreachable!()
    };
    assert_eq!(remote.addr, A);

    let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let mut offset = 0;
    let mut received = Vec::new();
    pair.run_until(20_000, |p| {
        if offset < payload.len() {
            offset += p.nodes[0]
                .send(p.now, stream, &payload[offset..])
                .unwrap_or(0);
        }
        received.extend(p.read_all(1, accepted));
        received.len() >= payload.len()
    });
    assert_eq!(received, payload);
}

#[test]
fn node_dials_itself_without_the_network() {
    let mut pair = Pair::new();
    let now = pair.now;
    let stream = pair.nodes[0]
        .connect(now, AddrPort::new(A, port::ECHO))
        .unwrap();
    pair.run_until(100, |p| {
        p.events[0].contains(&NodeEvent::Connected { stream })
    });
    pair.nodes[0].send(pair.now, stream, b"me").unwrap();
    let mut echoed = Vec::new();
    pair.run_until(100, |p| {
        echoed.extend(p.read_all(0, stream));
        echoed.len() >= 2
    });
    assert_eq!(echoed, b"me");
    assert!(pair.nodes[0].stats().loopback_packets > 0);
}

#[test]
fn unknown_peer_is_a_clear_error() {
    let mut pair = Pair::new();
    let now = pair.now;
    let error = pair.nodes[0]
        .connect(now, AddrPort::new(Addr::new(0, 99), 7))
        .unwrap_err();
    assert!(error.to_string().contains("no tunnel"), "{error}");
}

/// Reads whole v0.5 event frames (`u16 topic len, topic, u32 payload len, payload`) from `bytes`.
fn event_frames(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    use pilot_proto::wire::event::{EventFrame, EventRepr, frame_len};
    let mut frames = Vec::new();
    let mut rest = bytes;
    while let Ok(Some(len)) = frame_len(rest) {
        if len > rest.len() {
            break;
        }
        let view = EventFrame::new_checked(&rest[..len]).unwrap();
        let repr = EventRepr::parse(&view);
        frames.push((
            String::from_utf8_lossy(repr.topic).into_owned(),
            repr.payload.to_vec(),
        ));
        rest = &rest[len..];
    }
    frames
}

#[test]
fn v05_subscriber_receives_remote_publish_through_the_broker() {
    use pilot_proto::wire::event::EventRepr;
    let mut pair = Pair::new();
    let now = pair.now;

    // A v0.5 client on A subscribes at B's broker: its first frame is the subscription.
    let sub = pair.nodes[0]
        .connect(now, AddrPort::new(B, port::EVENT_STREAM))
        .unwrap();
    pair.run_until(500, |p| {
        p.events[0].contains(&NodeEvent::Connected { stream: sub })
    });
    let subscribe = EventRepr::new(b"tasks.*", b"").unwrap().to_vec();
    pair.nodes[0].send(pair.now, sub, &subscribe).unwrap();

    // B's own client publishes through its local broker (dialling itself).
    let publisher = pair.nodes[1]
        .connect(pair.now, AddrPort::new(B, port::EVENT_STREAM))
        .unwrap();
    pair.run_until(500, |p| {
        p.events[1].contains(&NodeEvent::Connected { stream: publisher })
    });
    let subscribe_none = EventRepr::new(b"unused.topic", b"").unwrap().to_vec();
    pair.nodes[1]
        .send(pair.now, publisher, &subscribe_none)
        .unwrap();
    // Let both subscriptions reach the broker before publishing.
    pair.run_until(200, |p| {
        p.exchange();
        p.now > now + Duration::from_millis(100)
    });
    let event = EventRepr::new(b"tasks.complete", br#"{"task_id":"abc123"}"#)
        .unwrap()
        .to_vec();
    pair.nodes[1].send(pair.now, publisher, &event).unwrap();

    let mut received = Vec::new();
    pair.run_until(2_000, |p| {
        received.extend(p.read_all(0, sub));
        !event_frames(&received).is_empty()
    });
    let frames = event_frames(&received);
    assert_eq!(frames[0].0, "tasks.complete");
    assert_eq!(frames[0].1, br#"{"task_id":"abc123"}"#);
}

#[test]
fn a_lagging_event_log_holds_v05_publishers_back_instead_of_dropping_their_events() {
    use pilot_proto::wire::event::EventRepr;
    let mut config = NodeConfig::default();
    let broker = config.broker.as_mut().expect("broker on by default");
    broker.persistent = true;
    broker.max_uncommitted = 4;
    let mut pair = Pair::with_config(config);

    // A v0.5 subscriber and a v0.5 publisher, both on A, at B's broker.
    let open = |pair: &mut Pair, filter: &[u8]| {
        let stream = pair.nodes[0].connect(pair.now, AddrPort::new(B, port::EVENT_STREAM));
        let stream = stream.unwrap();
        pair.run_until(500, |p| {
            p.events[0].contains(&NodeEvent::Connected { stream })
        });
        let first = EventRepr::new(filter, b"").unwrap().to_vec();
        pair.nodes[0].send(pair.now, stream, &first).unwrap();
        stream
    };
    let sub = open(&mut pair, b"jobs.*");
    let publisher = open(&mut pair, b"unused.topic");
    // Let both first frames reach the broker.
    let opened = pair.now;
    pair.run_until(200, |p| {
        p.exchange();
        p.now > opened + Duration::from_millis(100)
    });

    const EVENTS: usize = 40;
    let mut burst = Vec::new();
    for i in 0..EVENTS {
        burst.extend(
            EventRepr::new(b"jobs.done", format!("{i}").as_bytes())
                .unwrap()
                .to_vec(),
        );
    }
    pair.nodes[0].send(pair.now, publisher, &burst).unwrap();

    // The test is B's driver: it persists two records per round, so the log always lags.
    let mut received = Vec::new();
    pair.run_until(20_000, |p| {
        let appended: Vec<_> = p.events[1]
            .iter()
            .filter_map(|e| match e {
                NodeEvent::LogAppend { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        p.events[1].retain(|e| !matches!(e, NodeEvent::LogAppend { .. }));
        for seq in appended.chunks(2).map(|c| c[c.len() - 1]) {
            p.nodes[1].handle_persisted(p.now, seq);
        }
        received.extend(p.read_all(0, sub));
        event_frames(&received).len() == EVENTS
    });
    let payloads: Vec<String> = event_frames(&received)
        .into_iter()
        .map(|(_, payload)| String::from_utf8(payload).unwrap())
        .collect();
    let expected: Vec<String> = (0..EVENTS).map(|i| i.to_string()).collect();
    assert_eq!(payloads, expected, "every event, in order, none refused");
}
