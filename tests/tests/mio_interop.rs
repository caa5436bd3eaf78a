//! A blocking mio node (`pilot_mio::MioNode`, in the test thread) and a tokio daemon
//! (`pilotctl daemon run`, a real process) registered at one rendezvous process, on loopback:
//! events both ways through each side's broker, 1 MB byte-exact streams both ways, and the
//! registry stream reopened after the rendezvous restarts.
//!
//! Every wait is bounded (`WAIT`); the daemon and rendezvous are stopped by the PIDs this test
//! started (see `daemon_support`). Run `cargo build -p pilot-tokio` first when running
//! `-p pilot-tests` alone.

mod daemon_support;

use std::io::{Read as _, Write as _};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use daemon_support::{Rendezvous, Streamed, TestNode, WAIT, start_with_registry};
use pilot_mio::{Addr, AddrPort, MioConfig, MioNode};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A public daemon registered at the rendezvous; returns its address.
fn start_daemon(node: &mut TestNode, rv: &Rendezvous) -> Addr {
    let data = start_with_registry(node, &rv.registry, &["--public"]);
    let address = data["address"].as_str().expect("address");
    address.parse().expect("address parses")
}

/// A public mio node on loopback with its identity in `dir`, registered.
fn start_mio(rv: &Rendezvous, dir: &std::path::Path) -> (MioNode, Addr) {
    let mut config = MioConfig::new(rv.registry.parse().expect("registry addr"));
    config.beacon = Some(rv.beacon.parse().expect("beacon addr"));
    config.listen = "127.0.0.1:0".parse().expect("listen addr");
    config.public = true;
    config.identity = Some(dir.join("identity.json"));
    let node = MioNode::new(config).expect("mio node");
    let address = node.wait_registered(WAIT).expect("mio node registers");
    (node, address)
}

/// Turns the mio node until `child` prints a stdout line, re-running `poke` every 300 ms
/// (a publish that may precede the subscription).
fn turn_until_line(node: &MioNode, child: &Streamed, mut poke: impl FnMut()) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        poke();
        let slice = Instant::now() + Duration::from_millis(300);
        while Instant::now() < slice {
            if let Ok(line) = child.stdout.try_recv() {
                return line;
            }
            node.turn(Duration::from_millis(20)).expect("turn");
        }
        assert!(
            Instant::now() < deadline,
            "no line from {:?}",
            child.child.id()
        );
    }
}

/// Turns the mio node until `child` printed `n` JSON events on `topic`; returns their data.
fn turn_collect(node: &MioNode, child: &Streamed, n: usize, topic: &str) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} events",
            got.len()
        );
        let Ok(line) = child.stdout.try_recv() else {
            node.turn(Duration::from_millis(20)).expect("turn");
            continue;
        };
        let event: Value = serde_json::from_str(&line).expect("json event");
        if event["topic"] == topic {
            got.push(event["data"].as_str().unwrap_or_default().to_owned());
        }
    }
    got
}

/// Turns the mio node until `child` exits; returns whether it succeeded.
fn turn_until_exit(node: &MioNode, child: &mut Streamed) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.child.try_wait().expect("try_wait") {
            return status.success();
        }
        assert!(Instant::now() < deadline, "child did not exit");
        node.turn(Duration::from_millis(20)).expect("turn");
    }
}

/// Events from the daemon's side reach subscriptions of the mio node, on the daemon's broker
/// and on the mio node's own.
fn daemon_to_mio_events(node: &MioNode, daemon: &TestNode, addr_d: Addr, addr_m: Addr) {
    // Daemon → mio: the mio node subscribes on the daemon's broker; the daemon publishes there.
    let mut sub = node
        .subscribe_at(addr_d, "tasks.*", WAIT)
        .expect("subscribe at the daemon's broker");
    let out = daemon.run(&[
        "publish",
        "tasks.complete",
        "--data",
        r#"{"task_id":"abc123"}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let event = sub
        .next_event(WAIT)
        .expect("event from the daemon's broker");
    assert_eq!(event.topic, "tasks.complete");
    assert_eq!(event.payload, br#"{"task_id":"abc123"}"#);

    // Daemon → mio's broker: `pilotctl publish <mio node>` while the mio node subscribes locally.
    let mut local = node.subscribe("jobs.>", WAIT).expect("local subscribe");
    let mut publish = daemon.spawn(&["publish", &addr_m.to_string(), "jobs.a.b", "--data", "x1"]);
    assert!(
        turn_until_exit(node, &mut publish),
        "publish to the mio node failed"
    );
    let event = local
        .next_event(WAIT)
        .expect("event the daemon published on mio's broker");
    assert_eq!(
        (event.topic.as_str(), &event.payload[..]),
        ("jobs.a.b", &b"x1"[..])
    );
}

/// Events the mio node publishes reach `pilotctl subscribe` on its broker and the daemon's.
fn mio_to_daemon_events(node: &MioNode, daemon: &TestNode, addr_d: Addr, addr_m: Addr) {
    // Mio → daemon: the daemon subscribes on the mio node's broker; the mio node publishes.
    let remote_sub = daemon.spawn(&["--json", "subscribe", &addr_m.to_string(), "alerts.*"]);
    let line = turn_until_line(node, &remote_sub, || {
        node.publish("alerts.disk", b"{\"free\":1}")
            .expect("publish");
    });
    let event: Value = serde_json::from_str(&line).expect("json event");
    assert_eq!(event["topic"], "alerts.disk");
    drop(remote_sub);

    // Mio → the daemon's own broker, where a local `pilotctl subscribe` listens.
    let daemon_sub = daemon.spawn(&["--json", "subscribe", "metrics.*"]);
    let line = turn_until_line(node, &daemon_sub, || {
        node.publish_to(addr_d, "metrics.cpu", b"42", WAIT)
            .expect("publish on the daemon's broker");
    });
    let event: Value = serde_json::from_str(&line).expect("json event");
    assert_eq!(event["topic"], "metrics.cpu");

    // A burst through one publishing connection arrives whole and in order.
    let mut publisher = node.publisher(addr_d, WAIT).expect("publisher");
    for i in 0..20 {
        publisher
            .publish("metrics.burst", i.to_string().as_bytes())
            .expect("publish");
    }
    publisher.flush(WAIT).expect("every publish acknowledged");
    let burst = turn_collect(node, &daemon_sub, 20, "metrics.burst");
    let expected: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(burst, expected);
    publisher.close(WAIT).expect("publisher closes");
    drop(daemon_sub);
}

#[test]
fn mio_node_and_daemon_exchange_events_both_ways() {
    let rv = Rendezvous::start(&[]);
    let mut daemon = TestNode::new();
    let addr_d = start_daemon(&mut daemon, &rv);
    let home = tempfile::tempdir().expect("tempdir");
    let (node, addr_m) = start_mio(&rv, home.path());
    assert_ne!(addr_d, addr_m);

    daemon_to_mio_events(&node, &daemon, addr_d, addr_m);
    mio_to_daemon_events(&node, &daemon, addr_d, addr_m);

    // A restart with the same identity file keeps the address.
    drop(node);
    let (_again, addr_again) = start_mio(&rv, home.path());
    assert_eq!(addr_again, addr_m, "same identity, same address");
    daemon.stop();
}

/// 1 MB of a pattern that does not repeat on any short period.
fn pattern(len: usize, salt: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(salt).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// The daemon's application side: accepts one stream on port 5000 and reports what it read,
/// then dials the mio node's port 6000 and writes `send_back`. Signals once it listens.
fn spawn_daemon_side(
    socket: std::path::PathBuf,
    addr_m: Addr,
    send_back: Vec<u8>,
) -> (
    mpsc::Receiver<()>,
    mpsc::Receiver<Vec<u8>>,
    std::thread::JoinHandle<()>,
) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (got_tx, got_rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let client = pilot_tokio::Client::connect(socket).await.expect("client");
            let mut listener = client.listen(5000).await.expect("listen 5000");
            ready_tx.send(()).expect("ready");
            let accepted = tokio::time::timeout(WAIT, listener.accept()).await;
            let (mut conn, _) = accepted.expect("accept in time").expect("accept");
            let mut got = Vec::new();
            let read = tokio::time::timeout(WAIT * 3, conn.read_to_end(&mut got)).await;
            read.expect("read in time").expect("read");
            drop(conn);
            got_tx.send(got).expect("send result");

            let remote = AddrPort::new(addr_m, 6000);
            let mut conn = tokio::time::timeout(WAIT, client.dial(remote))
                .await
                .expect("dial in time")
                .expect("dial the mio node");
            conn.write_all(&send_back).await.expect("write");
            conn.shutdown().await.expect("shutdown");
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(WAIT, conn.read_to_end(&mut rest)).await;
        });
    });
    (ready_rx, got_rx, handle)
}

#[test]
fn mio_node_and_daemon_stream_one_megabyte_both_ways() {
    let rv = Rendezvous::start(&[]);
    let mut daemon = TestNode::new();
    let addr_d = start_daemon(&mut daemon, &rv);
    let home = tempfile::tempdir().expect("tempdir");
    let (node, addr_m) = start_mio(&rv, home.path());
    let to_daemon = pattern(1 << 20, 1);
    let to_mio = pattern(1 << 20, 7);

    // The daemon's side runs on a tokio runtime in another thread, through the daemon's socket.
    let (ready_rx, got_rx, daemon_side) =
        spawn_daemon_side(daemon.dir().join("pilot.sock"), addr_m, to_mio.clone());
    ready_rx.recv_timeout(WAIT).expect("daemon side listening");

    // Mio → daemon.
    let listener = node.listen(6000).expect("listen 6000");
    let mut stream = node
        .dial(AddrPort::new(addr_d, 5000), WAIT)
        .expect("dial the daemon");
    stream.set_write_timeout(Some(WAIT * 3));
    stream.write_all(&to_daemon).expect("write 1 MB");
    stream.finish(WAIT * 3).expect("stream closes cleanly");
    let got = got_rx.recv_timeout(WAIT).expect("daemon side read");
    assert_eq!(got.len(), to_daemon.len());
    assert!(
        got == to_daemon,
        "1 MB arrived at the daemon with different bytes"
    );

    // Daemon → mio.
    let mut inbound = listener.accept(WAIT).expect("accept from the daemon");
    assert_eq!(inbound.remote().addr, addr_d);
    inbound.set_read_timeout(Some(WAIT * 3));
    let mut got = Vec::new();
    inbound.read_to_end(&mut got).expect("read 1 MB");
    assert_eq!(got.len(), to_mio.len());
    assert!(
        got == to_mio,
        "1 MB arrived at the mio node with different bytes"
    );
    drop(inbound);
    let _ = node.run_until(|_| daemon_side.is_finished(), Instant::now() + WAIT);
    daemon_side.join().expect("daemon side");
    daemon.stop();
}

#[test]
fn mio_node_reconnects_after_the_rendezvous_restarts() {
    let rv = Rendezvous::start(&[]);
    let home = tempfile::tempdir().expect("tempdir");
    let (node, addr_m) = start_mio(&rv, home.path());
    assert!(node.registry_connected());

    // Kill the rendezvous (the child this test spawned): the node sees its stream break.
    let (registry, beacon) = (rv.registry.clone(), rv.beacon.clone());
    let Rendezvous { proc, dir, .. } = rv;
    drop(proc);
    let broken = |n: &MioNode| !n.registry_connected();
    node.run_until(broken, Instant::now() + WAIT)
        .expect("the node notices the broken registry stream");

    // Restarted on the same addresses and state: the node reconnects by itself.
    let rv = Rendezvous::start_at(dir, &registry, &beacon, &[]);
    let connected = |n: &MioNode| n.registry_connected();
    node.run_until(connected, Instant::now() + WAIT)
        .expect("the node reconnects to the restarted registry");
    assert_eq!(node.address(), Some(addr_m));

    // A daemon that starts only now reaches the mio node through the restarted rendezvous.
    let mut daemon = TestNode::new();
    start_daemon(&mut daemon, &rv);
    let mut local = node.subscribe("jobs.*", WAIT).expect("local subscribe");
    let mut publish = daemon.spawn(&["publish", &addr_m.to_string(), "jobs.x", "--data", "y"]);
    assert!(
        turn_until_exit(&node, &mut publish),
        "publish to the mio node failed"
    );
    let event = local.next_event(WAIT).expect("event after the restart");
    assert_eq!(event.payload, b"y");
    daemon.stop();
}

/// A subscriber that stops reading makes its broker drop events and say so: on the mio node's
/// own broker, every event published is either received or counted in a gap notice.
#[test]
fn mio_subscriber_that_falls_behind_sees_gap_notices() {
    let rv = Rendezvous::start(&[]);
    let home = tempfile::tempdir().expect("tempdir");
    let (node, addr_m) = start_mio(&rv, home.path());
    let mut sub = node.subscribe("flood.*", WAIT).expect("subscribe");
    let mut publisher = node.publisher(addr_m, WAIT).expect("publisher");

    // Far more than the subscriber's stream window, the broker's credit and its 1024-event
    // queue hold while nobody reads the subscription.
    let published = 20_000u64;
    for i in 0..published {
        publisher.publish("flood.e", &[7u8; 100]).expect("publish");
        if i % 500 == 499 {
            publisher.flush(WAIT).expect("acknowledged");
        }
    }
    publisher.flush(WAIT).expect("acknowledged");

    let mut received = 0u64;
    let deadline = Instant::now() + WAIT;
    while received + sub.missed() < published && Instant::now() < deadline {
        match sub.next_event(Duration::from_secs(2)) {
            Ok(_) => received += 1,
            Err(e) => panic!("{received} received, {} missed: {e}", sub.missed()),
        }
    }
    assert!(sub.gaps() > 0, "the broker sent no gap notice");
    assert_eq!(sub.dropped(), 0, "nothing was dropped on this side");
    assert_eq!(
        received + sub.missed(),
        published,
        "every event received or reported"
    );
}
