//! A rendezvous and three daemons as separate processes on loopback: cross-node pub/sub and
//! port messages, a 50 MB transfer byte-exact, and a restart of the rendezvous and a daemon
//! that keeps every node's address.

mod daemon_support;

use std::time::{Duration, Instant};

use daemon_support::{Streamed, TestNode, WAIT};
use pilot_tokio::{AddrPort, Client};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A standalone rendezvous on ephemeral loopback ports.
struct Rendezvous {
    proc: Streamed,
    registry: String,
    _dir: tempfile::TempDir,
}

impl Rendezvous {
    fn start(dir: tempfile::TempDir, registry: &str) -> Rendezvous {
        let helper = TestNode::new();
        let state = dir.path().to_str().expect("utf-8 path").to_owned();
        let proc = helper.spawn(&[
            "--json",
            "rendezvous",
            "--registry-listen",
            registry,
            "--beacon-listen",
            "127.0.0.1:0",
            "--state-dir",
            &state,
        ]);
        let line: Value =
            serde_json::from_str(&proc.next_stdout()).expect("rendezvous prints its addresses");
        let registry = line["data"]["registry"]
            .as_str()
            .expect("registry addr")
            .to_owned();
        Rendezvous {
            proc,
            registry,
            _dir: dir,
        }
    }
}

fn start_node(node: &mut TestNode, registry: &str) -> String {
    let data = node.json_ok(&[
        "daemon",
        "start",
        "--registry",
        registry,
        "--listen",
        "127.0.0.1:0",
        "--public",
        "--wait",
        "20s",
    ]);
    node.pid = data["pid"].as_u64().map(|p| p as u32);
    data["address"].as_str().expect("address").to_owned()
}

#[test]
fn three_daemons_pubsub_messages_and_restart() {
    let rv = Rendezvous::start(tempfile::tempdir().expect("tempdir"), "127.0.0.1:0");
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
    let rv = Rendezvous::start(state, "127.0.0.1:0");
    let (mut a, mut b) = (TestNode::new(), TestNode::new());
    let addr_a = start_node(&mut a, &rv.registry);
    let addr_b = start_node(&mut b, &rv.registry);
    a.stop();
    b.stop();
    let registry = rv.registry.clone();
    let Rendezvous { proc, _dir, .. } = rv;
    drop(proc);
    let rv = Rendezvous::start(_dir, &registry);
    assert!(keep.join("registry.state").exists());
    // B first: with the state lost it would get id 1.
    assert_eq!(start_node(&mut b, &rv.registry), addr_b);
    assert_eq!(start_node(&mut a, &rv.registry), addr_a);
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_cross_node_byte_exact() {
    let rv = Rendezvous::start(tempfile::tempdir().expect("tempdir"), "127.0.0.1:0");
    let (mut a, mut b) = (TestNode::new(), TestNode::new());
    start_node(&mut a, &rv.registry);
    let addr_b = start_node(&mut b, &rv.registry);
    let ca = Client::connect(a.dir().join("pilot.sock"))
        .await
        .expect("client a");
    let cb = Client::connect(b.dir().join("pilot.sock"))
        .await
        .expect("client b");
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
