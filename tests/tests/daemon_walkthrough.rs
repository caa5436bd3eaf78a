//! The seed's walkthrough typed as a new user would: `daemon start`, `subscribe "tasks.*"`,
//! `publish tasks.complete '{...}'`, and the event printed by the subscriber. Also the v0.5
//! forms with a target node and `--json` NDJSON output.

mod daemon_support;

use daemon_support::TestNode;
use serde_json::Value;

const PAYLOAD: &str = r#"{"task_id":"abc123","status":"done"}"#;

#[test]
fn seed_walkthrough_prints_the_event() {
    let mut node = TestNode::new();
    let started = node.start();
    assert!(
        started["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("0:0000.")),
        "{started}"
    );

    let sub = node.spawn(&["subscribe", "tasks.*"]);
    sub.wait_stderr("waiting for events");
    let line = publish_until_seen(&node, &sub, &["publish", "tasks.complete", PAYLOAD]);
    assert_eq!(line, format!("[tasks.complete] {PAYLOAD}"));
    node.stop();
}

#[test]
fn v05_forms_with_a_target_and_json_lines() {
    let mut node = TestNode::new();
    let addr = node.start()["address"]
        .as_str()
        .expect("address")
        .to_owned();

    let sub = node.spawn(&["--json", "subscribe", &addr, "alerts"]);
    // In JSON mode nothing is printed before events, and a subscription registers
    // asynchronously: publish until the subscriber sees one (bounded), as the v0.5 tests do.
    let first = publish_until_seen(
        &node,
        &sub,
        &["publish", &addr, "alerts", "--data", "server is down"],
    );
    let event: Value = serde_json::from_str(&first).expect("one JSON object per line");
    assert_eq!(event["topic"], "alerts");
    assert_eq!(event["data"], "server is down");
    assert_eq!(event["bytes"], 14);

    let data = node.json_ok(&["publish", &addr, "alerts", "--data", "second"]);
    assert_eq!(data["topic"], "alerts");
    let second: Value = serde_json::from_str(&sub.next_stdout()).expect("json");
    assert_eq!(second["data"], "second");
    node.stop();
}

/// Publishes (the exact command given) until the subscriber prints a line; bounded.
fn publish_until_seen(node: &TestNode, sub: &daemon_support::Streamed, publish: &[&str]) -> String {
    let deadline = std::time::Instant::now() + daemon_support::WAIT;
    loop {
        let out = node.run(publish);
        assert!(
            out.status.success(),
            "publish: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Ok(line) = sub
            .stdout
            .recv_timeout(std::time::Duration::from_millis(200))
        {
            return line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "subscriber never saw an event"
        );
    }
}

#[test]
fn subscribe_with_count_prints_one_envelope_and_exits() {
    let mut node = TestNode::new();
    node.start();
    let mut sub = node.spawn(&[
        "--json",
        "subscribe",
        "orders.*",
        "--count",
        "2",
        "--timeout",
        "20s",
    ]);
    let deadline = std::time::Instant::now() + daemon_support::WAIT;
    // Publish until the subscriber has its two events and exits (bounded).
    while sub.child.try_wait().expect("try_wait").is_none() {
        node.json_ok(&["publish", "orders.new", "--data", "x"]);
        assert!(
            std::time::Instant::now() < deadline,
            "subscriber did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = sub.wait_exit();
    assert!(status.success());
    let envelope: Value = serde_json::from_str(&sub.next_stdout()).expect("envelope");
    assert_eq!(envelope["status"], "ok");
    assert_eq!(envelope["data"]["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(envelope["data"]["timeout"], false);
    node.stop();
}
