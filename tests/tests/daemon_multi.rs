//! A rendezvous and three daemons as separate processes on loopback: cross-node pub/sub and
//! port messages, a 50 MB transfer byte-exact, and a restart of the rendezvous and a daemon
//! that keeps every node's address.

mod daemon_support;

use std::time::{Duration, Instant};

use daemon_support::{Rendezvous, TestNode, WAIT, start_with_registry};
use pilot_tokio::{AddrPort, Client};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn start_node(node: &mut TestNode, registry: &str) -> String {
    let data = start_with_registry(node, registry, &["--public"]);
    data["address"].as_str().expect("address").to_owned()
}

#[test]
fn three_daemons_pubsub_messages_and_restart() {
    let rv = Rendezvous::start(&[]);
    let (mut a, mut b, mut c) = (TestNode::new(), TestNode::new(), TestNode::new());
    let addr_a = start_node(&mut a, &rv.registry);
    let addr_b = start_node(&mut b, &rv.registry);
    let addr_c = start_node(&mut c, &rv.registry);
    assert!(addr_a != addr_b && addr_b != addr_c);

    // B subscribes on A's broker; C publishes there (retry until the subscription is live).
    let sub = b.spawn(&["--json", "subscribe", &addr_a, "tasks.*"]);
    let deadline = Instant::now() + WAIT;
    let line = loop {
        let out = c.run(&[
            "publish",
            &addr_a,
            "tasks.complete",
            "--data",
            r#"{"task_id":"abc123"}"#,
        ]);
        assert!(
            out.status.success(),
            "publish: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Ok(line) = sub.stdout.recv_timeout(Duration::from_millis(300)) {
            break line;
        }
        assert!(Instant::now() < deadline, "no event crossed nodes");
    };
    let event: Value = serde_json::from_str(&line).expect("json event");
    assert_eq!(event["topic"], "tasks.complete");
    drop(sub);

    // A message to a port on another node.
    let recv = c.spawn(&["--json", "recv", "2000", "--count", "1", "--timeout", "20s"]);
    let deadline = Instant::now() + WAIT;
    while !a
        .run(&[
            "send",
            &addr_c,
            "2000",
            "--data",
            "hi from a",
            "--timeout",
            "3s",
        ])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "send across nodes never connected"
        );
    }
    let got: Value = serde_json::from_str(&recv.next_stdout()).expect("recv envelope");
    assert_eq!(got["data"]["messages"][0]["data"], "hi from a");
    assert!(a.json_ok(&["ping", &addr_b, "--count", "1"])["results"][0]["rtt_ms"].is_number());

    // Restart the daemon B: same address.
    b.stop();
    assert_eq!(start_node(&mut b, &rv.registry), addr_b);
    a.stop();
    b.stop();
    c.stop();
}

#[test]
fn restarted_rendezvous_keeps_every_address() {
    let state = tempfile::tempdir().expect("tempdir");
    let keep = state.path().to_owned();
    let rv = Rendezvous::start_at(state, "127.0.0.1:0", "127.0.0.1:0", &[]);
    let (mut a, mut b) = (TestNode::new(), TestNode::new());
    let addr_a = start_node(&mut a, &rv.registry);
    let addr_b = start_node(&mut b, &rv.registry);
    a.stop();
    b.stop();
    let registry = rv.registry.clone();
    let Rendezvous { proc, dir, .. } = rv;
    drop(proc);
    let rv = Rendezvous::start_at(dir, &registry, "127.0.0.1:0", &[]);
    assert!(keep.join("registry.state").exists());
    // B first: with the state lost it would get id 1.
    assert_eq!(start_node(&mut b, &rv.registry), addr_b);
    assert_eq!(start_node(&mut a, &rv.registry), addr_a);
    a.stop();
    b.stop();
}

/// Two daemons at one rendezvous and a client on each.
struct TwoClients {
    _rv: Rendezvous,
    a: TestNode,
    b: TestNode,
    ca: Client,
    cb: Client,
    addr_b: String,
}

async fn two_clients() -> TwoClients {
    let rv = Rendezvous::start(&[]);
    let (mut a, mut b) = (TestNode::new(), TestNode::new());
    start_node(&mut a, &rv.registry);
    let addr_b = start_node(&mut b, &rv.registry);
    let ca = Client::connect(a.dir().join("pilot.sock"))
        .await
        .expect("client a");
    let cb = Client::connect(b.dir().join("pilot.sock"))
        .await
        .expect("client b");
    TwoClients {
        _rv: rv,
        a,
        b,
        ca,
        cb,
        addr_b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_cross_node_byte_exact() {
    let TwoClients {
        _rv,
        mut a,
        mut b,
        ca,
        cb,
        addr_b,
    } = two_clients().await;
    let mut listener = cb.listen(5000).await.expect("listen");
    let size = 50 << 20;
    let data: Vec<u8> = (0..size as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let expected_len = data.len();
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut got = Vec::with_capacity(expected_len);
        conn.read_to_end(&mut got).await.expect("read");
        got
    });
    let remote = AddrPort {
        addr: addr_b.parse().expect("addr"),
        port: 5000,
    };
    let send = async {
        let mut conn = ca.dial(remote).await.expect("dial across nodes");
        conn.write_all(&data).await.expect("write");
        conn.shutdown().await.expect("close");
    };
    tokio::time::timeout(Duration::from_secs(120), send)
        .await
        .expect("sent in time");
    let got = tokio::time::timeout(Duration::from_secs(120), server)
        .await
        .expect("received in time")
        .expect("task");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "50 MB arrived with different bytes");
    a.stop();
    b.stop();
}

/// Polls a `--json` command until `check` accepts its data (bounded).
fn wait_for(node: &TestNode, args: &[&str], check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let data = node.json_ok(args);
        if check(&data) {
            return data;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} never satisfied: last {data}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn trust_between_two_nodes() {
    let rv = Rendezvous::start(&[]);
    let (mut a, mut b) = (TestNode::new(), TestNode::new());
    let addr_a = start_node(&mut a, &rv.registry);
    let addr_b = start_node(&mut b, &rv.registry);
    let id_a = addr_a.parse::<pilot_tokio::Addr>().expect("addr").node;
    let id_b = addr_b.parse::<pilot_tokio::Addr>().expect("addr").node;

    let sent = a.json_ok(&["handshake", &addr_b, "please", "trust", "me"]);
    assert_eq!(sent["status"], "sent");
    let pending = wait_for(&b, &["pending"], |d| {
        d["pending"].as_array().is_some_and(|p| !p.is_empty())
    });
    assert_eq!(pending["pending"][0]["node_id"], id_a);
    assert_eq!(pending["pending"][0]["justification"], "please trust me");

    let approved = b.json_ok(&["approve", &id_a.to_string()]);
    assert_eq!(approved["status"], "approved");
    let trusted = wait_for(&a, &["trust"], |d| {
        d["trusted"].as_array().is_some_and(|t| !t.is_empty())
    });
    assert_eq!(trusted["trusted"][0]["node_id"], id_b);
    assert_eq!(b.json_ok(&["trust"])["trusted"][0]["node_id"], id_a);

    // Trust survives a restart (the store is persisted atomically).
    b.stop();
    start_node(&mut b, &rv.registry);
    assert_eq!(b.json_ok(&["trust"])["trusted"][0]["node_id"], id_a);

    let revoked = a.json_ok(&["untrust", &id_b.to_string()]);
    assert_eq!(revoked["node_id"], id_b);
    wait_for(&b, &["trust"], |d| {
        d["trusted"].as_array().is_some_and(Vec::is_empty)
    });
    a.stop();
    b.stop();
}

#[test]
fn send_file_of_twenty_megabytes_arrives_whole() {
    let rv = Rendezvous::start(&[]);
    let (mut a, mut b) = (TestNode::new(), TestNode::new());
    start_node(&mut a, &rv.registry);
    let addr_b = start_node(&mut b, &rv.registry);
    let data: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    let src = a.dir().join("big.bin");
    std::fs::write(&src, &data).expect("write source");
    // The receiver binds port 1001 just after registering: retry while it is refused (bounded).
    let deadline = Instant::now() + WAIT;
    let sent = loop {
        let out = a.run(&["--json", "send-file", &addr_b, src.to_str().expect("utf-8")]);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).expect("envelope");
            break v["data"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "send-file: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(sent["bytes"], data.len());
    assert!(
        sent["ack"]
            .as_str()
            .is_some_and(|ack| ack.starts_with("ACK FILE")),
        "{sent}"
    );
    let dst = b.dir().join("received").join("big.bin");
    let deadline = Instant::now() + WAIT;
    while !dst.exists() {
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(b.dir().join("pilot.log")).unwrap_or_default();
            let listing: Vec<_> = std::fs::read_dir(b.dir().join("received"))
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            panic!("file never completed at the receiver: {listing:?}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::fs::read(&dst).expect("received") == data,
        "received file differs"
    );
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_dial_does_not_hold_up_other_requests() {
    let rv = Rendezvous::start(&[]);
    let (mut a, mut b) = (TestNode::new(), TestNode::new());
    start_node(&mut a, &rv.registry);
    let addr_b = start_node(&mut b, &rv.registry);
    // B goes away but stays registered: a dial to it can only end by timing out.
    b.stop();
    let client = Client::connect(a.dir().join("pilot.sock"))
        .await
        .expect("client");
    let remote = AddrPort {
        addr: addr_b.parse().expect("addr"),
        port: 7,
    };
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { client.dial(remote).await.map(|_| ()) })
    };
    // While that dial waits, other requests on the same client and session are answered.
    for _ in 0..5 {
        let info = tokio::time::timeout(Duration::from_secs(5), client.info()).await;
        assert!(
            matches!(info, Ok(Ok(_))),
            "info answered while a dial is pending"
        );
    }
    let me = client.address().await.expect("address");
    let mut echo = client
        .dial(AddrPort { addr: me, port: 7 })
        .await
        .expect("dial self");
    echo.write_all(b"still-here").await.expect("write");
    echo.flush().await.expect("flush");
    let mut back = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(5), echo.read_exact(&mut back))
        .await
        .expect("in time")
        .expect("echo");
    assert_eq!(&back, b"still-here");
    assert!(
        !slow.is_finished(),
        "the dial to a vanished node is still pending (it can only time out)"
    );
    slow.abort();
    a.stop();
}

/// A receiver that stops reading fills every queue back to the sender (client, IPC socket, the
/// daemon's push queue, the stream window); once it reads again, the daemon must resume the
/// stalled stream by itself (its push queue wakes the driver) and every byte arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_pauses_gets_every_byte_after_the_stall() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let TwoClients {
        _rv,
        mut a,
        mut b,
        ca,
        cb,
        addr_b,
    } = two_clients().await;
    let mut listener = cb.listen(5001).await.expect("listen");
    let remote = AddrPort {
        addr: addr_b.parse().expect("addr"),
        port: 5001,
    };
    let mut conn = ca.dial(remote).await.expect("dial");
    let (mut inbound, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("accepted in time")
        .expect("accept");

    // More than every queue between the two clients holds (about 60 MiB: each of the
    // client's, the session writer's and the push queues takes 256 pushes of up to 64 KiB).
    let size = 160usize << 20;
    let written = Arc::new(AtomicUsize::new(0));
    let progress = written.clone();
    let sender = tokio::spawn(async move {
        let chunk: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
        for _ in 0..size / chunk.len() {
            conn.write_all(&chunk).await.expect("write");
            progress.fetch_add(chunk.len(), Ordering::Relaxed);
        }
        conn.shutdown().await.expect("close");
    });

    // Wait (bounded) until the sender is blocked: no progress for 300 ms, short of the end.
    let deadline = Instant::now() + WAIT;
    let mut last = (0, Instant::now());
    loop {
        let now = written.load(Ordering::Relaxed);
        assert!(
            now < size,
            "everything was written with nobody reading; no stall happened"
        );
        assert!(Instant::now() < deadline, "the sender never blocked");
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let check = async {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0usize;
        loop {
            let n = inbound.read(&mut buf).await.expect("read");
            if n == 0 {
                return got;
            }
            let pattern = (got..got + n).map(|i| ((i % (64 * 1024)) % 251) as u8);
            assert!(
                buf[..n].iter().copied().eq(pattern),
                "bytes changed near {got}"
            );
            got += n;
        }
    };
    let got = tokio::time::timeout(Duration::from_secs(90), check)
        .await
        .expect("every byte after the stall, in time");
    sender.await.expect("sender task");
    assert_eq!(got, size);
    a.stop();
    b.stop();
}
