//! The seed's subscriber and publisher, written against the runtime-agnostic client
//! (`pilot_tokio::agnostic::Client`, feature `client-async-io`) and run on async-std, against a
//! real daemon process. async-std is a dev-dependency of this test only.

mod daemon_support;

use std::time::{Duration, Instant};

use async_std::future::timeout;
use daemon_support::{TestNode, WAIT};
use pilot_tokio::agnostic::Client;

const PAYLOAD: &[u8] = br#"{"task_id":"abc123","status":"done"}"#;

#[test]
fn seed_subscriber_and_publisher_on_async_std() {
    let mut node = TestNode::new();
    node.start();
    let socket = node.dir().join("pilot.sock");

    let event = async_std::task::block_on(async {
        let subscriber = Client::connect(&socket).await.expect("subscriber connects");
        let mut events = subscriber.subscribe("tasks.*").await.expect("subscribe");
        let publisher = Client::connect(&socket).await.expect("publisher connects");

        // A subscription registers asynchronously in the broker: publish until the subscriber
        // sees an event, bounded by WAIT (as the CLI walkthrough test does).
        let deadline = Instant::now() + WAIT;
        loop {
            publisher
                .publish("tasks.complete", PAYLOAD)
                .await
                .expect("publish");
            if let Ok(next) = timeout(Duration::from_millis(200), events.next_event()).await {
                break next.expect("stream open").expect("event decodes");
            }
            assert!(Instant::now() < deadline, "subscriber never saw an event");
        }
    });

    assert_eq!(event.topic, "tasks.complete");
    assert_eq!(event.payload, PAYLOAD);
    node.stop();
}

#[test]
fn dial_echo_round_trip_on_async_std() {
    use futures_lite_shim::{read_exact, write_all};

    let mut node = TestNode::new();
    node.start();
    let socket = node.dir().join("pilot.sock");

    let echoed = async_std::task::block_on(timeout(WAIT, async {
        let client = Client::connect(&socket).await.expect("connect");
        let addr = client.address().await.expect("address");
        let remote = pilot_tokio::AddrPort {
            addr,
            port: pilot_tokio::agnostic::PORT_ECHO,
        };
        let mut conn = client.dial(remote).await.expect("dial echo");
        write_all(&mut conn, b"ping over async-io").await;
        let mut back = vec![0u8; 18];
        read_exact(&mut conn, &mut back).await;
        back
    }))
    .expect("echo within the deadline");

    assert_eq!(echoed, b"ping over async-io");
    node.stop();
}

/// `write_all` / `read_exact` over futures-io through async-std's re-exported extension traits.
mod futures_lite_shim {
    use async_std::io::{ReadExt as _, WriteExt as _};
    use pilot_tokio::agnostic::Conn;

    pub(super) async fn write_all(conn: &mut Conn, data: &[u8]) {
        conn.write_all(data).await.expect("write");
        conn.flush().await.expect("flush");
    }

    pub(super) async fn read_exact(conn: &mut Conn, buf: &mut [u8]) {
        conn.read_exact(buf).await.expect("read");
    }
}
