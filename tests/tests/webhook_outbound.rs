//! Outbound webhooks end to end on loopback: a local axum receiver that fails on purpose still
//! gets every event, in order, each signed with Standard Webhooks and verifiable; the on-disk
//! queue survives a restart; nothing is dropped without a counter saying so.
//!
//! Backoffs are a few milliseconds; every wait is on a channel or the sender's change feed,
//! bounded by a timeout.

mod webhook_support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use pilot_tokio::webhook::outbound::{self, EnqueueError};
use pilot_tokio::webhook::verify::Secret;
use pilot_tokio::webhook::{OutboundConfig, OutboundEvent, OutboundHandle, OutboundStats};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use webhook_support::{Receiver, SECRET, Seen};

const WAIT: Duration = Duration::from_secs(10);

fn secret() -> Secret {
    Secret::from_standard(SECRET).unwrap()
}

async fn start_receiver(
    fail_first: u32,
    failing_status: StatusCode,
) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let (seen, seen_rx) = mpsc::unbounded_channel();
    let receiver = Receiver::new(secret(), fail_first, failing_status, move |s| {
        let _ = seen.send(s);
    });
    (receiver.serve("/hook").await, seen_rx)
}

fn config(addr: SocketAddr, dir: &std::path::Path) -> OutboundConfig {
    let mut config = OutboundConfig::new(format!("http://{addr}/hook"), secret(), dir);
    config.initial_backoff = Duration::from_millis(5);
    config.max_backoff = Duration::from_millis(20);
    config.timeout = Duration::from_secs(5);
    config
}

fn event(i: u32) -> OutboundEvent {
    OutboundEvent::with_payload(
        "pubsub.published",
        7,
        json!({"topic": "tasks.done"}),
        format!(r#"{{"i":{i}}}"#).as_bytes(),
    )
}

async fn next_seen(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(WAIT, seen.recv())
        .await
        .expect("receiver got a request in time")
        .unwrap()
}

/// Waits (bounded) until the sender's counters satisfy `done`.
async fn wait_stats(
    handle: &OutboundHandle,
    done: impl Fn(&OutboundStats) -> bool,
) -> OutboundStats {
    let mut changes = handle.changes();
    let wait = async {
        loop {
            let stats = handle.stats();
            if done(&stats) {
                return stats;
            }
            changes.changed().await.unwrap();
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .expect("stats reached the expected state")
}

/// Collects successful deliveries until `count` distinct ids were answered 2xx.
async fn collect_delivered(seen: &mut mpsc::UnboundedReceiver<Seen>, count: usize) -> Vec<Seen> {
    let mut all = Vec::new();
    while all.iter().filter(|s: &&Seen| s.status == 200).count() < count {
        all.push(next_seen(seen).await);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_the_first_attempts_still_gets_every_event_signed() {
    let (addr, mut seen) = start_receiver(3, StatusCode::INTERNAL_SERVER_ERROR).await;
    let dir = tempfile::tempdir().unwrap();
    let handle = outbound::start(config(addr, dir.path())).await.unwrap();
    for i in 0..5 {
        handle.enqueue(&event(i)).await.unwrap();
    }
    let all = collect_delivered(&mut seen, 5).await;

    assert!(
        all.iter().all(|s| s.verified),
        "every attempt carries a valid signature"
    );
    assert_eq!(all.len(), 8, "three failed attempts, then five deliveries");
    assert!(
        all[..3].iter().all(|s| s.id == all[3].id),
        "retries keep the webhook id"
    );
    let delivered: Vec<&Seen> = all.iter().filter(|s| s.status == 200).collect();
    for (i, s) in delivered.iter().enumerate() {
        assert_eq!(
            s.body["data"]["payload"]["i"], i as u64,
            "delivered in queue order"
        );
        assert_eq!(s.body["event"], "pubsub.published");
        assert_eq!(s.body["data"]["topic"], "tasks.done");
    }
    let stats = wait_stats(&handle, |s| s.delivered == 5).await;
    assert_eq!((stats.pending, stats.retries, stats.failed), (0, 3, 0));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_events_survive_a_restart_of_the_sender() {
    let (addr, mut seen) = start_receiver(u32::MAX, StatusCode::SERVICE_UNAVAILABLE).await;
    let dir = tempfile::tempdir().unwrap();
    let mut slow = config(addr, dir.path());
    slow.initial_backoff = Duration::from_secs(3600);
    slow.max_backoff = Duration::from_secs(3600);
    let first = outbound::start(slow).await.unwrap();
    for i in 0..3 {
        first.enqueue(&event(i)).await.unwrap();
    }
    let failed_attempt = next_seen(&mut seen).await;
    assert_eq!(failed_attempt.status, 503);
    wait_stats(&first, |s| s.retrying == 1 && s.pending == 3).await;
    first.abort().await;

    let (addr, mut seen) = start_receiver(0, StatusCode::OK).await;
    let second = outbound::start(config(addr, dir.path())).await.unwrap();
    let delivered = collect_delivered(&mut seen, 3).await;
    assert_eq!(
        delivered[0].id, failed_attempt.id,
        "the same webhook id after the restart"
    );
    let order: Vec<u64> = delivered
        .iter()
        .map(|s| s.body["data"]["payload"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(order, [0, 1, 2]);
    wait_stats(&second, |s| s.delivered == 3 && s.pending == 0).await;
    let left = std::fs::read_dir(dir.path().join("pending"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "delivered entries leave the disk queue");
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_visibly_and_counts_it() {
    let (addr, mut seen) = start_receiver(u32::MAX, StatusCode::INTERNAL_SERVER_ERROR).await;
    let dir = tempfile::tempdir().unwrap();
    let mut small = config(addr, dir.path());
    small.max_pending = 2;
    small.initial_backoff = Duration::from_secs(3600);
    small.max_backoff = Duration::from_secs(3600);
    let handle = outbound::start(small).await.unwrap();
    handle.enqueue(&event(0)).await.unwrap();
    handle.enqueue(&event(1)).await.unwrap();
    let refused = handle.enqueue(&event(2)).await.unwrap_err();
    assert!(matches!(refused, EnqueueError::Full(2)), "{refused}");
    next_seen(&mut seen).await;
    let stats = wait_stats(&handle, |s| s.retrying == 1).await;
    assert_eq!(
        (stats.dropped_full, stats.pending, stats.delivered),
        (1, 2, 0)
    );
    handle.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_and_exhausted_deliveries_move_to_failed_and_are_counted() {
    let (addr, mut seen) = start_receiver(1, StatusCode::GONE).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(addr, dir.path());
    cfg.max_attempts = 2;
    let handle = outbound::start(cfg).await.unwrap();
    handle.enqueue(&event(0)).await.unwrap();
    handle.enqueue(&event(1)).await.unwrap();
    let all = collect_delivered(&mut seen, 1).await;
    assert_eq!(all.iter().map(|s| s.status).collect::<Vec<_>>(), [410, 200]);
    let stats = wait_stats(&handle, |s| s.failed == 1 && s.delivered == 1).await;
    assert_eq!(stats.pending, 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("failed"))
            .unwrap()
            .count(),
        1
    );
    handle.shutdown().await;

    // Nobody listening: every attempt fails at the transport; after two it is given up.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = closed.local_addr().unwrap();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dead_addr, dir.path());
    cfg.max_attempts = 2;
    let handle = outbound::start(cfg).await.unwrap();
    handle.enqueue(&event(0)).await.unwrap();
    let stats = wait_stats(&handle, |s| s.failed == 1).await;
    assert_eq!((stats.retries, stats.pending, stats.delivered), (1, 0, 0));
    handle.shutdown().await;
}

#[tokio::test]
async fn a_non_http_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = OutboundConfig::new("ftp://127.0.0.1/x", secret(), dir.path());
    assert!(outbound::start(cfg).await.is_err());
}

#[test]
fn the_posted_body_keeps_the_v05_fields() {
    let body: Value = serde_json::from_str(&event(3).to_body(0)).unwrap();
    assert_eq!(body["timestamp"], "1970-01-01T00:00:00.000000000Z");
    assert_eq!(
        (body["node_id"].as_u64(), body["event"].as_str()),
        (Some(7), Some("pubsub.published"))
    );
}
