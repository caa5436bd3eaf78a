//! The loop without a rendezvous: the registry stream is reopened after it breaks (never
//! sooner than the core's back-off), and a stop from another thread ends `run`.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use pilot_mio::{MioConfig, MioError, MioNode};

/// Upper bound for anything these tests wait for.
const WAIT: Duration = Duration::from_secs(20);

fn config(registry: std::net::SocketAddr) -> MioConfig {
    let mut config = MioConfig::new(registry);
    config.listen = "127.0.0.1:0".parse().expect("listen addr");
    config.agent.reconnect_first = Duration::from_millis(100);
    config
}

#[test]
fn broken_registry_stream_is_reopened_after_the_backoff() {
    let registry = TcpListener::bind("127.0.0.1:0").expect("bind");
    registry.set_nonblocking(true).expect("nonblocking");
    let node = MioNode::new(config(registry.local_addr().expect("addr"))).expect("node");

    // Accept and drop every connection at once: the node must come back, each time no sooner
    // than the first back-off step.
    let deadline = Instant::now() + WAIT;
    let mut accepted = Vec::new();
    while accepted.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "only {} connects",
            accepted.len()
        );
        node.turn(Duration::from_millis(20)).expect("turn");
        if let Ok((stream, _)) = registry.accept() {
            accepted.push(Instant::now());
            drop(stream);
        }
    }
    for pair in accepted.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(90),
            "reconnected after {gap:?}"
        );
    }
    assert_eq!(node.address(), None, "nothing registered");
}

#[test]
fn stop_from_another_thread_ends_run() {
    // A registry port nobody listens on: the node keeps retrying until stopped.
    let unused = TcpListener::bind("127.0.0.1:0").expect("bind");
    let registry = unused.local_addr().expect("addr");
    drop(unused);
    let node = MioNode::new(config(registry)).expect("node");
    let stop = node.stop_handle();
    let stopper = std::thread::spawn(move || stop.stop());

    node.run().expect("run ends with the stop");
    stopper.join().expect("stopper");
    assert!(matches!(node.turn(Duration::ZERO), Err(MioError::Stopped)));
    let waited = node.wait_registered(Duration::from_secs(1));
    assert!(matches!(waited, Err(MioError::Stopped)));
}
