//! Trust enforced across real processes: a rendezvous with its beacon and two daemons that use
//! both. A private node cannot be reached by a node it does not trust (the dial fails with a
//! clear reason); once it has asked for and received trust, the same dial connects and data
//! flows both ways.

mod daemon_support;

use std::time::{Duration, Instant};

use daemon_support::{Rendezvous, TestNode, WAIT, start_with_registry};
use pilot_tokio::{AddrPort, Client};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn start_node(node: &mut TestNode, rv: &Rendezvous, public: bool) -> String {
    let flags: &[&str] = if public { &["--public"] } else { &[] };
    let mut extra = vec!["--beacon", &rv.beacon];
    extra.extend_from_slice(flags);
    let data = start_with_registry(node, &rv.registry, &extra);
    data["address"].as_str().expect("address").to_owned()
}

/// Polls a `--json` command until `check` accepts its data (bounded by [`WAIT`]).
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_node_is_unreachable_until_it_trusts_the_dialler() {
    let rv = Rendezvous::start(&[]);
    let (mut a, mut b) = (TestNode::new(), TestNode::new());
    let addr_a = start_node(&mut a, &rv, true);
    let addr_b = start_node(&mut b, &rv, false);
    let id_a = addr_a.parse::<pilot_tokio::Addr>().expect("addr").node;
    let ca = Client::connect(a.dir().join("pilot.sock"))
        .await
        .expect("client a");
    let cb = Client::connect(b.dir().join("pilot.sock"))
        .await
        .expect("client b");
    let mut listener = cb.listen(7000).await.expect("listen");
    let remote = AddrPort {
        addr: addr_b.parse().expect("addr"),
        port: 7000,
    };

    let refused = tokio::time::timeout(WAIT, ca.dial(remote)).await;
    let error = match refused.expect("the refusal comes in time") {
        Ok(_) => panic!("an untrusted node reached a private one"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("cannot reach node"),
        "unclear error: {error}"
    );

    let asked = b.json_ok(&["handshake", &addr_a, "let me in"]);
    assert_eq!(asked["status"], "sent");
    wait_for(&a, &["pending"], |d| {
        d["pending"][0]["node_id"] == b_id(&addr_b)
    });
    a.json_ok(&["approve", &b_id(&addr_b).to_string()]);
    wait_for(&b, &["trust"], |d| d["trusted"][0]["node_id"] == id_a);

    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut got = [0u8; 5];
        conn.read_exact(&mut got).await.expect("read");
        conn.write_all(b"world").await.expect("reply");
        conn.flush().await.expect("flush");
        got
    });
    let mut conn = tokio::time::timeout(WAIT, ca.dial(remote))
        .await
        .expect("dial in time")
        .expect("a trusted node reaches the private one");
    conn.write_all(b"hello").await.expect("write");
    conn.flush().await.expect("flush");
    let mut back = [0u8; 5];
    tokio::time::timeout(WAIT, conn.read_exact(&mut back))
        .await
        .expect("reply in time")
        .expect("read reply");
    assert_eq!(&back, b"world");
    assert_eq!(&server.await.expect("server task"), b"hello");
    a.stop();
    b.stop();
}

fn b_id(addr: &str) -> u32 {
    addr.parse::<pilot_tokio::Addr>().expect("addr").node
}
