//! Publishers and subscriptions on the node's own broker, which are in-process broker clients
//! (no loopback stream): events arrive in order with consecutive sequence numbers and
//! acknowledged publishes, a subscriber that falls behind is told how many it missed, and the
//! blocking calls honour their deadlines and a stop. A registry runs in a background thread
//! (`support`); every wait is bounded.

mod support;

use std::time::{Duration, Instant};

use pilot_mio::{MioConfig, MioError, MioNode};
use support::Registry;

/// Upper bound for anything these tests wait for.
const WAIT: Duration = Duration::from_secs(20);

fn registered(registry: &Registry) -> MioNode {
    let mut config = MioConfig::new(registry.addr);
    config.listen = "127.0.0.1:0".parse().expect("listen addr");
    config.public = true;
    let node = MioNode::new(config).expect("node");
    node.wait_registered(WAIT).expect("registers");
    node
}

#[test]
fn events_arrive_in_order_with_consecutive_sequence_numbers() {
    let registry = Registry::start();
    let node = registered(&registry);
    let me = node.address().expect("address");
    let mut sub = node.subscribe("t.*", WAIT).expect("subscribe");
    let mut publisher = node.publisher(me, WAIT).expect("publisher");

    let total = 3000u32;
    let mut got = Vec::new();
    for batch in 0..total / 500 {
        for i in batch * 500..(batch + 1) * 500 {
            publisher.publish("t.a", &i.to_be_bytes()).expect("publish");
        }
        publisher.flush(WAIT).expect("acknowledged");
        for _ in 0..500 {
            got.push(sub.next_event(WAIT).expect("event"));
        }
    }

    let payloads: Vec<u32> = got
        .iter()
        .map(|e| u32::from_be_bytes(e.payload[..4].try_into().expect("4 bytes")))
        .collect();
    assert_eq!(payloads, (0..total).collect::<Vec<_>>());
    let first = got[0].seq;
    assert!(first >= 1);
    for (i, event) in got.iter().enumerate() {
        assert_eq!(
            event.seq,
            first + i as u64,
            "sequence numbers are consecutive"
        );
        assert_eq!(event.topic, "t.a");
    }
    assert_eq!((sub.missed(), sub.gaps(), sub.dropped()), (0, 0, 0));
    publisher.close(WAIT).expect("close");
}

#[test]
fn a_subscriber_that_falls_behind_is_told_what_it_missed() {
    let registry = Registry::start();
    let node = registered(&registry);
    let me = node.address().expect("address");
    let mut sub = node.subscribe("t.*", WAIT).expect("subscribe");
    let mut publisher = node.publisher(me, WAIT).expect("publisher");

    // Far more than the broker queues for one subscriber, none of it read meanwhile.
    let total = 20_000u64;
    for _ in 0..total {
        publisher.publish("t.a", &[7; 100]).expect("publish");
    }
    publisher.flush(WAIT).expect("every publish acknowledged");

    let mut got = 0u64;
    let mut last_seq = 0;
    for _ in 0..total {
        if got + sub.missed() >= total {
            break;
        }
        match sub.next_event(Duration::from_secs(1)) {
            Ok(event) => {
                assert!(event.seq > last_seq, "in order");
                last_seq = event.seq;
                got += 1;
            }
            Err(MioError::TimedOut) => break,
            Err(e) => panic!("next_event: {e}"),
        }
    }
    assert!(sub.gaps() > 0, "a gap notice arrived");
    assert!(
        got > 0 && sub.missed() > 0,
        "got {got}, missed {}",
        sub.missed()
    );
    assert_eq!(
        got + sub.missed(),
        total,
        "every event delivered or reported missed"
    );
    assert_eq!(sub.dropped(), 0);
}

#[test]
fn waits_are_bounded_and_a_closed_subscription_frees_the_broker() {
    let registry = Registry::start();
    let node = registered(&registry);
    let me = node.address().expect("address");
    let mut sub = node.subscribe("t.*", WAIT).expect("subscribe");

    assert_eq!(sub.try_next_event().expect("nothing yet"), None);
    let start = Instant::now();
    let waited = sub.next_event(Duration::from_millis(50));
    assert!(matches!(waited, Err(MioError::TimedOut)), "{waited:?}");
    assert!(start.elapsed() < Duration::from_secs(5));

    // A one-shot publish to the own broker returns once the broker acknowledged it.
    node.publish_to(me, "t.b", b"one", WAIT)
        .expect("publish_to");
    let event = sub.try_next_event().expect("try").expect("already there");
    assert_eq!(
        (event.topic.as_str(), event.payload.as_slice()),
        ("t.b", &b"one"[..])
    );

    // Dropping a subscription disconnects its client; another still works afterwards.
    drop(sub);
    let mut again = node.subscribe("t.*", WAIT).expect("subscribe again");
    node.publish("t.c", b"two").expect("publish");
    let event = again.next_event(WAIT).expect("event");
    assert_eq!(event.payload, b"two");
}

#[test]
fn a_stop_ends_a_wait_on_the_own_broker() {
    let registry = Registry::start();
    let node = registered(&registry);
    let mut sub = node.subscribe("t.*", WAIT).expect("subscribe");
    let stop = node.stop_handle();
    let stopper = std::thread::spawn(move || stop.stop());
    let waited = sub.next_event(WAIT);
    stopper.join().expect("stopper");
    assert!(matches!(waited, Err(MioError::Stopped)), "{waited:?}");
}
