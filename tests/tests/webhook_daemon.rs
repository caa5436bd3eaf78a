//! The webhook bridge hosted by a real daemon, driven through `pilotctl` on loopback:
//! `set-webhook` starts the inbound receiver; signed POSTs (ureq) reach a `pilotctl subscribe`
//! exactly once, provider retries included; a bad signature is 401; `--outbound` delivers every
//! event to a local axum receiver that fails the first attempts, each signed (verified here);
//! the configuration and the delivery-id memory survive a daemon restart; the v0.5
//! `SetWebhook` (IPC 0x1B) sets the outbound URL only; malformed `0x84` requests get an error.
//!
//! Needs `cargo build -p pilot-tokio --bin pilotctl` first. Every wait is bounded; nothing
//! sleeps to synchronise.

mod daemon_support;
mod webhook_support;

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use daemon_support::{Streamed, TestNode, WAIT};
use pilot_tokio::webhook::verify::Secret;
use serde_json::Value;
use webhook_support::{Receiver, SECRET, Seen, post_standard};

const OUT_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// A loopback port that was free a moment ago (the daemon binds it by number).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One signed (or deliberately mis-signed) Standard Webhooks POST; returns status and body.
fn post(url: &str, id: &str, body: &str, secret: &str) -> (u16, String) {
    try_post(url, id, body, secret).expect("the receiver answers")
}

/// [`post`], with a transport error (daemon gone) as `None`.
fn try_post(url: &str, id: &str, body: &str, secret: &str) -> Option<(u16, String)> {
    let secret = Secret::from_standard(secret).unwrap();
    post_standard(url, id, body, &secret, WAIT).ok()
}

/// `set-webhook <url>` with the Standard Webhooks secret; returns the daemon's status.
fn set_inbound(node: &TestNode, url: &str) -> Value {
    node.json_ok(&["set-webhook", url, "--secret", SECRET])
}

/// Publishes probes until the subscriber prints one, so it is known to be registered.
fn wait_subscribed(node: &TestNode, sub: &Streamed) {
    let deadline = Instant::now() + WAIT;
    loop {
        node.json_ok(&["publish", "hooks.probe", "probe"]);
        if let Ok(line) = sub.stdout.recv_timeout(Duration::from_millis(200)) {
            assert_eq!(line, "[hooks.probe] probe");
            // Later probes may still be on their way; the marker below skips them.
            return;
        }
        assert!(Instant::now() < deadline, "subscriber never registered");
    }
}

/// Lines the subscriber prints up to (not including) the marker event, probes skipped.
fn lines_until_marker(node: &TestNode, sub: &Streamed) -> Vec<String> {
    node.json_ok(&["publish", "hooks.marker", "end"]);
    let mut lines = Vec::new();
    for _ in 0..1000 {
        let line = sub.next_stdout();
        if line == "[hooks.marker] end" {
            return lines;
        }
        if line != "[hooks.probe] probe" {
            lines.push(line);
        }
    }
    panic!("no marker after 1000 lines");
}

fn inbound_stats(node: &TestNode) -> Value {
    node.json_ok(&["webhook-status"])["inbound"]["stats"].clone()
}

#[test]
fn signed_posts_reach_a_subscriber_once_and_forgeries_are_refused() {
    let mut node = TestNode::new();
    node.start();
    let url = format!("http://127.0.0.1:{}/hooks", free_port());
    let status = set_inbound(&node, &url);
    assert_eq!(status["inbound"]["running"], true, "{status}");
    assert_eq!(status["inbound"]["secrets"], 1);
    assert!(
        !status.to_string().contains(SECRET),
        "status never shows secrets"
    );

    let sub = node.spawn(&["subscribe", "hooks.>"]);
    sub.wait_stderr("waiting for events");
    wait_subscribed(&node, &sub);
    for i in 0..3 {
        let body = format!(r#"{{"order":{i}}}"#);
        let (code, text) = post(&format!("{url}/orders"), &format!("msg_{i}"), &body, SECRET);
        assert_eq!(code, 200, "{text}");
    }
    // A provider retry of msg_1 (new timestamp and signature) is answered 200, not published.
    let (code, text) = post(&format!("{url}/orders"), "msg_1", r#"{"order":1}"#, SECRET);
    assert_eq!(
        (code, text.as_str()),
        (200, "duplicate delivery; already accepted\n")
    );
    let forged = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (code, _) = post(&format!("{url}/orders"), "msg_9", r#"{"order":9}"#, forged);
    assert_eq!(code, 401);

    let lines = lines_until_marker(&node, &sub);
    let expected: Vec<String> = (0..3)
        .map(|i| format!(r#"[hooks.orders] {{"order":{i}}}"#))
        .collect();
    assert_eq!(lines, expected);
    let stats = inbound_stats(&node);
    assert_eq!(stats["accepted"], 3, "{stats}");
    assert_eq!(stats["duplicate"], 1, "{stats}");
    assert_eq!(stats["unauthorized"], 1, "{stats}");
    node.stop();
}

fn start_receiver(
    rt: &tokio::runtime::Runtime,
    fail_first: u32,
    secret: &str,
) -> (SocketAddr, mpsc::Receiver<Seen>) {
    let (seen, seen_rx) = mpsc::channel();
    let secret = Secret::from_standard(secret).unwrap();
    let status = StatusCode::INTERNAL_SERVER_ERROR;
    let receiver = Receiver::new(secret, fail_first, status, move |s| drop(seen.send(s)));
    (rt.block_on(receiver.serve("/out")), seen_rx)
}

/// Collects requests until `count` distinct event ids were answered 2xx; returns the 2xx ones
/// (checking every request on the way was signed correctly).
fn delivered(seen: &mpsc::Receiver<Seen>, count: usize) -> Vec<Seen> {
    let deadline = Instant::now() + WAIT;
    let mut ok: Vec<Seen> = Vec::new();
    while ok.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let one = seen
            .recv_timeout(left)
            .expect("a delivery before the deadline");
        assert!(one.verified, "every attempt is signed: {one:?}");
        if one.status == 200 && !ok.iter().any(|s| s.id == one.id) {
            ok.push(one);
        }
    }
    ok
}

fn payloads(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| {
            assert_eq!(s.body["event"], "pubsub.published");
            let topic = s.body["data"]["topic"].as_str().unwrap_or_default();
            format!("{topic}={}", s.body["data"]["payload"])
        })
        .collect()
}

/// Polls `webhook-status` until the outbound counters satisfy `done` (bounded by [`WAIT`]).
fn outbound_stats_when(node: &TestNode, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = node.json_ok(&["webhook-status"])["outbound"]["stats"].clone();
        if done(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "outbound counters stuck at {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn set_outbound(node: &TestNode, addr: SocketAddr) -> Value {
    let url = format!("http://{addr}/out");
    node.json_ok(&[
        "set-webhook",
        "--outbound",
        &url,
        "--outbound-secret",
        OUT_SECRET,
        "--retry-initial",
        "20ms",
    ])
}

#[test]
fn outbound_delivers_every_event_signed_despite_failures() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, seen) = start_receiver(&rt, 2, OUT_SECRET);
    let mut node = TestNode::new();
    node.start();
    let status = set_outbound(&node, addr);
    assert_eq!(status["outbound"]["running"], true, "{status}");
    assert_eq!(status["outbound"]["feed"]["connected"], true, "{status}");

    for i in 0..3 {
        node.json_ok(&["publish", "jobs.done", &format!(r#"{{"job":{i}}}"#)]);
    }
    let got = delivered(&seen, 3);
    let expected: Vec<String> = (0..3)
        .map(|i| format!(r#"jobs.done={{"job":{i}}}"#))
        .collect();
    assert_eq!(payloads(&got), expected, "in order, each once");

    // The receiver answers before the sender counts; wait (bounded) for the count.
    let out = outbound_stats_when(&node, |s| s["delivered"] == 3);
    assert!(out["retries"].as_u64() >= Some(2), "{out}");
    assert_eq!(out["failed"], 0, "{out}");
    node.stop();
}

#[test]
fn configuration_and_delivery_ids_survive_a_restart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, seen) = start_receiver(&rt, 0, OUT_SECRET);
    let mut node = TestNode::new();
    node.start();
    let url = format!("http://127.0.0.1:{}/hooks", free_port());
    set_inbound(&node, &url);
    set_outbound(&node, addr);
    let (code, text) = post(&url, "msg_before", r#"{"n":1}"#, SECRET);
    assert_eq!(code, 200, "{text}");
    let before = delivered(&seen, 1);
    assert_eq!(payloads(&before), [r#"hooks={"n":1}"#]);

    node.stop();
    node.start();
    let status = node.json_ok(&["webhook-status"]);
    assert_eq!(status["inbound"]["url"], url.as_str(), "{status}");
    assert_eq!(status["inbound"]["running"], true, "{status}");
    assert_eq!(status["outbound"]["running"], true, "{status}");

    // The retry of a delivery accepted before the restart is still a duplicate.
    let (code, text) = post(&url, "msg_before", r#"{"n":1}"#, SECRET);
    assert_eq!(
        (code, text.as_str()),
        (200, "duplicate delivery; already accepted\n")
    );
    let (code, text) = post(&url, "msg_after", r#"{"n":2}"#, SECRET);
    assert_eq!(code, 200, "{text}");
    let after = delivered(&seen, 1);
    assert_eq!(payloads(&after), [r#"hooks={"n":2}"#]);

    let cleared = node.json_ok(&["clear-webhook"]);
    assert!(cleared["inbound"].is_null() && cleared["outbound"].is_null());
    node.stop();
    node.start();
    let status = node.json_ok(&["webhook-status"]);
    assert!(
        status["inbound"].is_null() && status["outbound"].is_null(),
        "{status}"
    );
    node.stop();
}

#[test]
fn v05_set_webhook_sets_only_the_outbound_url_with_a_generated_secret() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut node = TestNode::new();
    node.start();
    let socket = node.dir().join("pilot.sock");
    let client = rt.block_on(pilot_tokio::Client::connect(&socket)).unwrap();
    let reply = rt
        .block_on(client.set_webhook("http://127.0.0.1:9/unused"))
        .unwrap();
    let secret = reply["generated_secret"]
        .as_str()
        .expect("a generated secret")
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{reply}");

    // The receiver comes later (its port is only known now); the secret is kept.
    let (addr, seen) = start_receiver(&rt, 0, &secret);
    let url = format!("http://{addr}/out");
    let reply = rt.block_on(client.set_webhook(&url)).unwrap();
    assert_eq!(reply["webhook"], url.as_str());
    assert!(reply.get("generated_secret").is_none(), "{reply}");
    let status = node.json_ok(&["webhook-status"]);
    assert!(status["inbound"].is_null(), "{status}");
    assert_eq!(status["outbound"]["url"], url.as_str());

    node.json_ok(&["publish", "v05.event", "{\"ok\":true}"]);
    let got = delivered(&seen, 1);
    assert_eq!(payloads(&got), [r#"v05.event={"ok":true}"#]);

    let reply = rt.block_on(client.set_webhook("")).unwrap();
    assert_eq!(reply["webhook"], "");
    assert!(node.json_ok(&["webhook-status"])["outbound"].is_null());
    drop(client);
    node.stop();
}

#[test]
fn malformed_webhook_requests_get_an_error_and_the_session_carries_on() {
    use pilot_tokio::shim::ipc::Message;
    use pilot_tokio::webhook::host::ipc::{WEBHOOK, WEBHOOK_OK};

    let request = |json: &[u8]| [&[WEBHOOK][..], json].concat();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut node = TestNode::new();
    node.start();
    let socket = node.dir().join("pilot.sock");
    let client = rt.block_on(pilot_tokio::Client::connect(&socket)).unwrap();
    let bad: [&[u8]; 5] = [
        b"",
        &[0xff, 0x00],
        br#"{"op":"explode"}"#,
        br#"{"op":"set"}"#,
        br#"{"op":"set","inbound":{"url":"http://127.0.0.1:1/x","secrets":["not base64!"]}}"#,
    ];
    for json in bad {
        let reply = rt.block_on(client.request(request(json))).unwrap();
        assert!(
            matches!(Message::decode(&reply), Ok(Message::Error { .. })),
            "{json:?} answered {reply:?}"
        );
    }

    let reply = rt
        .block_on(client.request(request(br#"{"op":"status"}"#)))
        .unwrap();
    assert_eq!(
        reply.first(),
        Some(&WEBHOOK_OK),
        "the session still answers"
    );
    let status: Value = serde_json::from_slice(&reply[1..]).unwrap();
    assert!(status["inbound"].is_null() && status["outbound"].is_null());
    drop(client);
    node.stop();
}

/// Every retained event from sequence 1 up to the broker's head at connect time, read over the
/// extended event protocol, as `topic payload` lines.
fn replay_from_start(rt: &tokio::runtime::Runtime, node: &TestNode) -> Vec<String> {
    use pilot_proto::pubsub::client::{ClientSession, SubscribeOptions};
    use pilot_proto::pubsub::codec::ServerMessage;
    use pilot_proto::pubsub::{Seq, TopicFilter};
    use pilot_tokio::shim::addr::AddrPort;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let socket = node.dir().join("pilot.sock");
    let filter = TopicFilter::parse(">").unwrap();
    let read_all = async {
        let client = pilot_tokio::Client::connect(&socket).await.unwrap();
        let addr = client.address().await.unwrap();
        let remote = AddrPort { addr, port: 1002 };
        let mut conn = client.dial(remote).await.unwrap();
        let mut session = ClientSession::new();
        let options = SubscribeOptions {
            since: Some(Seq(1)),
            ..SubscribeOptions::default()
        };
        let (_, subscribe) = session.subscribe(filter, options);
        for frame in [session.hello(), subscribe] {
            conn.write_all(&frame).await.unwrap();
        }
        conn.flush().await.unwrap();
        let (mut head, mut lines, mut buf) = (None, Vec::new(), vec![0u8; 65536]);
        loop {
            while let Some(message) = session.poll_message() {
                match message {
                    ServerMessage::Welcome { head: h, .. } => head = Some(h.0),
                    ServerMessage::Event(d) => {
                        let text = String::from_utf8_lossy(&d.payload).into_owned();
                        lines.push(format!("{} {text}", d.topic.as_str()));
                        if head.is_some_and(|h| d.seq.0 >= h) {
                            return lines;
                        }
                    }
                    ServerMessage::SubAck { next, .. } if head.is_some_and(|h| next.0 > h) => {
                        return lines;
                    }
                    _ => {}
                }
            }
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the broker closed the stream");
            session.handle_bytes(&buf[..n]).unwrap();
        }
    };
    rt.block_on(async { tokio::time::timeout(WAIT, read_all).await })
        .expect("replay finished in time")
}

#[test]
fn a_daemon_killed_mid_stream_loses_no_event_it_answered_200() {
    const POSTS: usize = 60;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut node = TestNode::new();
    node.start();
    let url = format!("http://127.0.0.1:{}/hooks", free_port());
    set_inbound(&node, &url);

    // A provider posting in a loop; the daemon is killed once some deliveries were answered.
    let (answered_tx, answered) = mpsc::channel::<usize>();
    let poster_url = url.clone();
    let poster = std::thread::spawn(move || {
        for i in 0..POSTS {
            let body = format!(r#"{{"n":{i}}}"#);
            match try_post(&poster_url, &format!("m{i}"), &body, SECRET) {
                Some((200, _)) => answered_tx.send(i).unwrap(),
                _ => return,
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < 10 {
        acked.push(
            answered
                .recv_timeout(WAIT)
                .expect("deliveries answered 200"),
        );
    }
    let pid = node.pid.take().expect("daemon pid");
    daemon_support::kill(pid, "KILL");
    daemon_support::wait_gone(pid);
    poster.join().unwrap();
    acked.extend(answered.try_iter());

    node.start();
    // The provider retries everything; what was answered 200 before is a duplicate now.
    for i in 0..POSTS {
        let (code, text) = post(&url, &format!("m{i}"), &format!(r#"{{"n":{i}}}"#), SECRET);
        assert_eq!(code, 200, "m{i}: {text}");
        let duplicate = text.starts_with("duplicate");
        assert!(
            !acked.contains(&i) || duplicate,
            "m{i} was answered 200 before the kill"
        );
    }
    let lines = replay_from_start(&rt, &node);
    for i in 0..POSTS {
        let line = format!(r#"hooks {{"n":{i}}}"#);
        let count = lines.iter().filter(|l| **l == line).count();
        if acked.contains(&i) {
            assert_eq!(count, 1, "m{i}, answered 200, is in the log exactly once");
        } else {
            // In flight at the kill: durable but not yet journalled may be published twice.
            assert!(count >= 1, "m{i} is in the log");
        }
    }
    node.stop();
}

#[test]
fn the_v05_webhook_flag_sets_the_outbound_url_at_start() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, seen) = start_receiver(&rt, 0, OUT_SECRET);
    let bad = TestNode::new().run(&["daemon", "start", "--webhook", "ftp://127.0.0.1/x"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a non-http URL is a usage error"
    );

    let mut node = TestNode::new();
    let url = format!("http://{addr}/out");
    let data = node.json_ok(&["daemon", "start", "--wait", "20s", "--webhook", &url]);
    node.pid = data["pid"].as_u64().map(|p| p as u32);
    let deadline = Instant::now() + WAIT;
    while node.json_ok(&["webhook-status"])["outbound"]["feed"]["connected"] != true {
        assert!(
            Instant::now() < deadline,
            "the --webhook feed never connected"
        );
        std::thread::yield_now();
    }

    node.json_ok(&["publish", "jobs.done", r#"{"job":1}"#]);
    // The secret was generated at start (as v0.5's flag has none), so only the payload counts.
    let deadline = Instant::now() + WAIT;
    let got = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let one = seen
            .recv_timeout(left)
            .expect("a delivery before the deadline");
        if one.status == 200 {
            break one;
        }
    };
    assert_eq!(payloads(&[got]), [r#"jobs.done={"job":1}"#]);
    node.stop();
}
