//! The inbound receiver crashes mid-stream and restarts: nothing answered 2xx is lost and the
//! provider's retries do not duplicate anything.
//!
//! The receiver runs in its own tokio runtime; shutting that runtime down drops the server and
//! every open connection at once, as a process crash would. The "event log" is a file the sink
//! appends to and fsyncs before confirming; it outlives the crash, and the restarted receiver
//! reloads its delivery ids from it (`InboundConfig::remembered`). The crash is placed exactly
//! while one delivery is durable but not yet answered: the sink holds that confirmation until
//! the receiver is gone.

mod webhook_support;

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pilot_tokio::webhook::inbound;
use pilot_tokio::webhook::verify::Secret;
use pilot_tokio::webhook::{InboundConfig, InboundHandle, PublishRequest, Route, Verifier};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};
use webhook_support::{SECRET, post_standard};

const WAIT: Duration = Duration::from_secs(10);
const DELIVERIES: usize = 30;
const HELD: usize = 10;

fn secret() -> Secret {
    Secret::from_standard(SECRET).unwrap()
}

fn id(i: usize) -> String {
    format!("msg_{i}")
}

/// The durable sink: append `source\tid\tbody` and fsync, report the id, then confirm (holding
/// the confirmation of `held` until `release` fires).
async fn disk_sink(
    path: PathBuf,
    mut requests: mpsc::Receiver<PublishRequest>,
    written: mpsc::UnboundedSender<String>,
    held: String,
    release: oneshot::Receiver<()>,
) {
    let mut release = Some(release);
    while let Some(PublishRequest { event, done }) = requests.recv().await {
        let delivery = event.delivery_id.clone().unwrap_or_default();
        let line = format!(
            "{}\t{delivery}\t{}\n",
            event.source,
            String::from_utf8_lossy(&event.payload)
        );
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(line.as_bytes()).unwrap();
        file.sync_data().unwrap();
        written.send(delivery.clone()).unwrap();
        let hold = if delivery == held {
            release.take()
        } else {
            None
        };
        if let Some(hold) = hold {
            tokio::time::timeout(WAIT, hold).await.unwrap().unwrap();
        }
        let _ = done.send(Ok(()));
    }
}

/// `(source, delivery id)` of every event in the log file.
fn read_log(path: &Path) -> Vec<(String, String)> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let fields = |line: &str| {
        let mut parts = line.split('\t');
        (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
        )
    };
    text.lines().map(fields).collect()
}

fn server_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

async fn start_on(
    runtime: &Runtime,
    listen: SocketAddr,
    sink: mpsc::Sender<PublishRequest>,
    log: &Path,
) -> InboundHandle {
    let route = Route::new("/events", Verifier::StandardWebhooks(vec![secret()]));
    let mut config = InboundConfig::new(listen, vec![route]);
    config.remembered = read_log(log);
    runtime
        .spawn(inbound::start(config, Arc::new(sink)))
        .await
        .unwrap()
        .unwrap()
}

/// Drops the runtime's tasks and sockets at once (run off the async context, as required).
async fn crash(runtime: Runtime) {
    let stop = tokio::task::spawn_blocking(move || runtime.shutdown_timeout(WAIT));
    tokio::time::timeout(WAIT, stop).await.unwrap().unwrap();
}

fn post_once(url: &str, i: usize) -> Result<u16, String> {
    let body = format!(r#"{{"n":{i}}}"#);
    post_standard(url, &id(i), &body, &secret(), WAIT).map(|(status, _)| status)
}

/// A provider: posts each delivery until it gets a 2xx; after a transport error it waits (bounded)
/// for the restart signal. Returns the ids answered 2xx, in order.
fn provider(url: String, restarted: std::sync::mpsc::Receiver<()>) -> Vec<String> {
    let mut acked = Vec::new();
    for i in 0..DELIVERIES {
        for attempt in 0.. {
            assert!(attempt < 3, "delivery {i} never answered 2xx");
            match post_once(&url, i) {
                Ok(200) => {
                    acked.push(id(i));
                    break;
                }
                Ok(status) => panic!("delivery {i}: unexpected status {status}"),
                Err(_) => restarted.recv_timeout(WAIT).expect("the receiver restarts"),
            }
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_stream_loses_nothing_answered_2xx_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let (sink, requests) = mpsc::channel(16);
    let (written_tx, mut written) = mpsc::unbounded_channel();
    let (release, released) = oneshot::channel();
    tokio::spawn(disk_sink(
        log.clone(),
        requests,
        written_tx,
        id(HELD),
        released,
    ));

    let first = server_runtime();
    let handle = start_on(&first, "127.0.0.1:0".parse().unwrap(), sink.clone(), &log).await;
    let listen = handle.local_addr();
    let (restarted_tx, restarted) = std::sync::mpsc::channel();
    let url = format!("http://{listen}/events");
    let client = tokio::task::spawn_blocking(move || provider(url, restarted));

    // Crash exactly while delivery HELD is durable but unanswered.
    loop {
        let next = tokio::time::timeout(WAIT, written.recv())
            .await
            .unwrap()
            .unwrap();
        if next == id(HELD) {
            break;
        }
    }
    crash(first).await;
    release.send(()).unwrap();

    let second = server_runtime();
    let handle = start_on(&second, listen, sink, &log).await;
    restarted_tx.send(()).unwrap();
    let acked = tokio::time::timeout(WAIT * 3, client)
        .await
        .unwrap()
        .unwrap();

    let logged: Vec<String> = read_log(&log).into_iter().map(|(_, id)| id).collect();
    let expected: Vec<String> = (0..DELIVERIES).map(id).collect();
    assert_eq!(
        acked, expected,
        "every delivery was eventually answered 2xx"
    );
    assert_eq!(
        logged, expected,
        "each delivery is in the log exactly once, in order"
    );
    let stats = handle.stats();
    assert_eq!(
        stats.duplicate, 1,
        "the held delivery's retry was recognised after restart"
    );
    assert_eq!(stats.accepted as usize, DELIVERIES - HELD - 1);
    crash(second).await;
}
