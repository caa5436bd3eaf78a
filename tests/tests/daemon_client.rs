//! The async client library against a real daemon process: subscribe/publish as a `Stream`,
//! streams on virtual ports with `AsyncRead`/`AsyncWrite` (a byte-exact bulk transfer), and
//! errors that reach the call that caused them while other calls proceed.

mod daemon_support;

use daemon_support::TestNode;
use pilot_tokio::{AddrPort, Client, ClientError};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn client(node: &TestNode) -> Client {
    Client::connect(node.dir().join("pilot.sock"))
        .await
        .expect("connect")
}

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(daemon_support::WAIT, fut)
        .await
        .expect("finished before the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_stream_receives_matching_events_only() {
    let mut node = TestNode::new();
    node.start();
    let c = client(&node).await;
    let mut payments = bounded(c.subscribe("payments.*")).await.expect("subscribe");
    bounded(c.publish("orders.new", b"ignored"))
        .await
        .expect("publish");
    bounded(c.publish("payments.settled", br#"{"id":1}"#))
        .await
        .expect("publish");
    let event = bounded(payments.next_event())
        .await
        .expect("an event")
        .expect("ok");
    assert_eq!(event.topic, "payments.settled");
    assert_eq!(event.payload, br#"{"id":1}"#);
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_and_dial_move_eight_megabytes_byte_exact() {
    let mut node = TestNode::new();
    node.start();
    let c = client(&node).await;
    let me = bounded(c.address()).await.expect("address");
    let mut listener = bounded(c.listen(4000)).await.expect("bind");
    let data: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let expected = data.clone();
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.expect("read");
        got
    });
    let mut conn = bounded(c.dial(AddrPort {
        addr: me,
        port: 4000,
    }))
    .await
    .expect("dial");
    bounded(async {
        conn.write_all(&data).await.expect("write");
        conn.shutdown().await.expect("close");
    })
    .await;
    let got = bounded(server).await.expect("server task");
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "bytes differ");
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_reach_their_own_request() {
    let mut node = TestNode::new();
    node.start();
    let c = client(&node).await;
    let me = bounded(c.address()).await.expect("address");
    let refused = c.dial(AddrPort {
        addr: me,
        port: 4999,
    });
    let info = c.info();
    let (refused, info) = bounded(async { tokio::join!(refused, info) }).await;
    assert!(
        matches!(refused, Err(ClientError::Daemon(ref m)) if m == "connection refused"),
        "{refused:?}"
    );
    assert!(info.expect("info").get("node_id").is_some());
    let dup = bounded(c.listen(7)).await;
    assert!(
        matches!(dup, Err(ClientError::Daemon(ref m)) if m.contains("port 7")),
        "{dup:?}"
    );
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_and_datagrams_to_self() {
    let mut node = TestNode::new();
    node.start();
    let c = client(&node).await;
    let me = bounded(c.address()).await.expect("address");
    let mut echo = bounded(c.dial(AddrPort { addr: me, port: 7 }))
        .await
        .expect("dial echo");
    bounded(echo.write_all(b"ping-0")).await.expect("write");
    bounded(echo.flush()).await.expect("flush");
    let mut back = [0u8; 6];
    bounded(echo.read_exact(&mut back)).await.expect("echo");
    assert_eq!(&back, b"ping-0");

    let mut datagrams = c.datagrams();
    bounded(c.send_to(
        AddrPort {
            addr: me,
            port: 5353,
        },
        b"hello",
    ))
    .await
    .expect("send_to");
    let (src, dst_port, data) = bounded(datagrams.recv()).await.expect("datagram");
    assert_eq!((src.addr, dst_port, &data[..]), (me, 5353, &b"hello"[..]));
    node.stop();
}
