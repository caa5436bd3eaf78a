//! Outbound webhooks: events POSTed to one URL, signed with Standard Webhooks, retried with
//! exponential backoff from a bounded on-disk queue that survives restarts.
//!
//! Owns [`OutboundConfig`], [`start`] and [`OutboundHandle`]. The host calls
//! [`OutboundHandle::enqueue`] (or hands a channel to [`OutboundHandle::forward`]); an event is
//! accepted only once its queue file is durable, and a full queue is an error the caller sees
//! and a counter `pilotctl` shows. One worker delivers in queue order: each attempt gets a
//! fresh `webhook-timestamp` and signature under the same `webhook-id`; 2xx removes the entry,
//! 410 or `max_attempts` failures move it to `failed/`, anything else waits (honouring a
//! `Retry-After` in seconds) and tries again.
//!
//! # Limitations
//! - Delivery is strictly in order, so one slow or failing receiver delays every later event
//!   (as v0.5's single worker did) until the head is delivered or given up.
//! - Failure counts live in memory: after a restart each pending entry gets `max_attempts` again.
//! - Entries in `failed/` are kept but not replayed automatically; moving a file back into
//!   `pending/` and restarting replays it.

mod payload;
mod queue;
mod send;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom as _, SystemRandom};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

pub use payload::{OutboundEvent, rfc3339_nanos};
pub use queue::RecordError;

use self::queue::{QueueDir, Stored};
use self::send::Outcome;
use super::verify::Secret;

/// Settings of the outbound sender.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// Standard Webhooks signing secret.
    pub secret: Secret,
    /// Queue directory (created if missing).
    pub queue_dir: PathBuf,
    /// Most pending deliveries; enqueue beyond fails with [`EnqueueError::Full`].
    pub max_pending: usize,
    /// Largest body accepted for queueing.
    pub max_body: usize,
    /// First retry delay.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Attempts before an entry moves to `failed/`.
    pub max_attempts: u32,
    /// Timeout of one attempt, connection to response.
    pub timeout: Duration,
}

impl OutboundConfig {
    /// Defaults: 10,000 pending, 1 MiB bodies, backoff 5 s doubling to 1 h, 10 attempts, 15 s
    /// per attempt.
    pub fn new(url: impl Into<String>, secret: Secret, queue_dir: impl Into<PathBuf>) -> Self {
        Self {
            url: url.into(),
            secret,
            queue_dir: queue_dir.into(),
            max_pending: 10_000,
            max_body: 1 << 20,
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
            max_attempts: 10,
            timeout: Duration::from_secs(15),
        }
    }
}

/// Why the sender could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// The URL is not `http://` or `https://`.
    #[error("webhook url must start with http:// or https://")]
    BadUrl,
    /// The queue directory could not be created or read.
    #[error("outbound queue directory: {0}")]
    Queue(#[source] std::io::Error),
}

/// Why an event was not queued. Every case is also counted in [`OutboundStats`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    /// The queue holds `max_pending` entries already.
    #[error("outbound queue full ({0} pending)")]
    Full(usize),
    /// The body exceeds `max_body`.
    #[error("event body of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Writing the queue file failed.
    #[error("outbound queue write failed: {0}")]
    Io(#[source] std::io::Error),
}

/// Counters and gauges of the outbound sender, for `pilotctl`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboundStats {
    /// Entries waiting (gauge).
    pub pending: u64,
    /// Pending entries that have failed at least once (gauge).
    pub retrying: u64,
    /// Delivered with a 2xx (total).
    pub delivered: u64,
    /// Failed attempts that were scheduled for retry (total).
    pub retries: u64,
    /// Entries given up on and moved to `failed/` (total).
    pub failed: u64,
    /// Events refused because the queue was full (total).
    pub dropped_full: u64,
    /// Events refused for size or a queue write error (total).
    pub refused: u64,
    /// Queue files found unreadable at start and moved to `corrupt/` (total).
    pub corrupt: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    retries: AtomicU64,
    failed: AtomicU64,
    dropped_full: AtomicU64,
    refused: AtomicU64,
    corrupt: AtomicU64,
}

#[derive(Debug, Clone)]
struct Entry {
    stored: Stored,
    failures: u32,
}

#[derive(Debug)]
struct Shared {
    config: OutboundConfig,
    queue: QueueDir,
    pending: Mutex<BTreeMap<u64, Entry>>,
    /// Entries pending plus writes in progress; what `max_pending` bounds.
    reserved: AtomicUsize,
    next_seq: AtomicU64,
    wake: Notify,
    counters: Counters,
    rng: SystemRandom,
    /// Bumped whenever a counter or gauge changes.
    changes: watch::Sender<u64>,
}

/// A running sender. Dropping it stops the worker (pending entries stay on disk).
#[derive(Debug)]
pub struct OutboundHandle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Opens (or creates) the queue, reloads pending entries and starts the delivery worker.
pub async fn start(config: OutboundConfig) -> Result<OutboundHandle, OutboundError> {
    if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
        return Err(OutboundError::BadUrl);
    }
    let (loaded, queue) = open_queue(config.queue_dir.clone()).await?;

    let pending: BTreeMap<u64, Entry> = loaded
        .pending
        .into_iter()
        .map(|(seq, stored)| (seq, Entry::new(stored)))
        .collect();
    let counters = Counters {
        corrupt: AtomicU64::new(loaded.corrupt),
        ..Counters::default()
    };
    let shared = Arc::new(Shared {
        reserved: AtomicUsize::new(pending.len()),
        next_seq: AtomicU64::new(loaded.next_seq),
        pending: Mutex::new(pending),
        config,
        queue,
        wake: Notify::new(),
        counters,
        rng: SystemRandom::new(),
        changes: watch::Sender::new(0),
    });
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(worker(shared.clone(), stopped));
    Ok(OutboundHandle { shared, stop, task })
}

async fn open_queue(dir: PathBuf) -> Result<(queue::Loaded, QueueDir), OutboundError> {
    let opened = tokio::task::spawn_blocking(move || {
        let queue = QueueDir::open(&dir)?;
        Ok((queue.load()?, queue))
    });
    let joined = opened.await.map_err(std::io::Error::other);
    joined
        .and_then(|result| result)
        .map_err(OutboundError::Queue)
}

impl Entry {
    // Limitation: failure counts are not persisted; a restart starts them at zero.
    fn new(stored: Stored) -> Self {
        Self {
            stored,
            failures: 0,
        }
    }
}

impl OutboundHandle {
    /// Queues one event durably; returns its sequence number once the queue file is fsynced.
    pub async fn enqueue(&self, event: &OutboundEvent) -> Result<u64, EnqueueError> {
        let shared = &self.shared;
        let body = event.to_body(unix_nanos());
        if body.len() > shared.config.max_body {
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            shared.changed();
            return Err(EnqueueError::TooLarge(body.len()));
        }
        let max = shared.config.max_pending;
        if shared.reserved.fetch_add(1, Ordering::SeqCst) >= max {
            shared.reserved.fetch_sub(1, Ordering::SeqCst);
            shared.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
            shared.changed();
            tracing::warn!(max, "outbound webhook queue full; event refused");
            return Err(EnqueueError::Full(max));
        }
        let seq = shared.next_seq.fetch_add(1, Ordering::SeqCst);
        let stored = Stored {
            id: shared.new_id(),
            created: unix_secs(),
            body,
        };
        self.write(seq, stored).await
    }

    async fn write(&self, seq: u64, stored: Stored) -> Result<u64, EnqueueError> {
        let shared = self.shared.clone();
        let record = stored.clone();
        let written = tokio::task::spawn_blocking(move || shared.queue.write(seq, &record)).await;
        let shared = &self.shared;
        match written.map_err(std::io::Error::other).and_then(|r| r) {
            Ok(()) => {
                shared.lock().insert(seq, Entry::new(stored));
                shared.wake.notify_one();
                shared.changed();
                Ok(seq)
            }
            Err(err) => {
                shared.reserved.fetch_sub(1, Ordering::SeqCst);
                shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                shared.changed();
                Err(EnqueueError::Io(err))
            }
        }
    }

    /// Enqueues every event from `events` until the channel closes. Refusals are logged and
    /// counted (see [`OutboundStats`]); the loop does not stop on them.
    pub async fn forward(&self, mut events: mpsc::Receiver<OutboundEvent>) {
        while let Some(event) = events.recv().await {
            if let Err(err) = self.enqueue(&event).await {
                tracing::warn!(%err, event = %event.event_type, "outbound webhook not queued");
            }
        }
    }

    /// A receiver that sees a new value whenever [`OutboundHandle::stats`] may have changed,
    /// for a `pilotctl` watch or a test waiting for a delivery.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Counters so far.
    pub fn stats(&self) -> OutboundStats {
        let shared = &self.shared;
        let (pending, retrying) = {
            let map = shared.lock();
            (
                map.len() as u64,
                map.values().filter(|e| e.failures > 0).count() as u64,
            )
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &shared.counters;
        OutboundStats {
            pending,
            retrying,
            delivered: get(&c.delivered),
            retries: get(&c.retries),
            failed: get(&c.failed),
            dropped_full: get(&c.dropped_full),
            refused: get(&c.refused),
            corrupt: get(&c.corrupt),
        }
    }

    /// Stops the worker after its current attempt; pending entries stay on disk.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops the worker at once, as a crash would (an attempt in progress may still reach the
    /// receiver; its entry stays pending and is redelivered under the same id).
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        // The map holds plain data; a panic elsewhere cannot leave it half-updated.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh `msg_<32 hex>` id, unique across restarts.
    fn new_id(&self) -> String {
        let mut bytes = [0u8; 16];
        if self.rng.fill(&mut bytes).is_err() {
            // Limitation: if the OS RNG fails, ids fall back to time and sequence, still unique
            // on this host but guessable.
            let fallback = unix_nanos() ^ u128::from(self.next_seq.load(Ordering::SeqCst));
            bytes = fallback.to_le_bytes();
        }
        format!("msg_{}", hex::encode(bytes))
    }

    fn jitter(&self) -> f64 {
        let mut byte = [0u8; 1];
        let _ = self.rng.fill(&mut byte);
        f64::from(byte[0]) / 255.0
    }

    fn changed(&self) {
        self.changes
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    fn head(&self) -> Option<(u64, Entry)> {
        self.lock()
            .first_key_value()
            .map(|(seq, entry)| (*seq, entry.clone()))
    }
}

/// The delivery loop: one entry at a time, in sequence order.
// Limitation: strict order means a failing head entry delays every later one.
async fn worker(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let agent = send::agent(shared.config.timeout);
    loop {
        let Some((seq, entry)) = shared.head() else {
            tokio::select! {
                _ = shared.wake.notified() => continue,
                _ = stop.changed() => return,
            }
        };
        let outcome = deliver_once(&shared, &agent, &entry).await;
        let Some(delay) = settle(&shared, seq, outcome).await else {
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

async fn deliver_once(shared: &Arc<Shared>, agent: &ureq::Agent, entry: &Entry) -> Outcome {
    let (shared, agent, entry) = (shared.clone(), agent.clone(), entry.clone());
    let attempt = tokio::task::spawn_blocking(move || {
        let (url, secret) = (&shared.config.url, &shared.config.secret);
        send::attempt(
            &agent,
            url,
            secret,
            &entry.stored.id,
            &entry.stored.body,
            unix_secs(),
        )
    });
    attempt.await.unwrap_or_else(|err| Outcome::Retry {
        after: None,
        reason: format!("worker: {err}"),
    })
}

/// Applies an attempt's outcome; returns the delay before the next attempt when it must wait.
async fn settle(shared: &Arc<Shared>, seq: u64, outcome: Outcome) -> Option<Duration> {
    let max_attempts = shared.config.max_attempts;
    match outcome {
        Outcome::Delivered => {
            finish(shared, seq, false).await;
            None
        }
        Outcome::Gone => {
            tracing::warn!(
                seq,
                "outbound webhook receiver answered 410; entry moved to failed"
            );
            finish(shared, seq, true).await;
            None
        }
        Outcome::Retry { after, reason } => {
            let failures = bump_failures(shared, seq);
            if failures >= max_attempts {
                tracing::warn!(seq, %reason, failures, "outbound webhook abandoned");
                finish(shared, seq, true).await;
                return None;
            }
            shared.counters.retries.fetch_add(1, Ordering::Relaxed);
            shared.changed();
            let (initial, max) = (shared.config.initial_backoff, shared.config.max_backoff);
            let delay = send::backoff(initial, max, failures, shared.jitter());
            tracing::debug!(seq, %reason, failures, ?delay, "outbound webhook will retry");
            Some(after.map_or(delay, |after| after.max(delay)))
        }
    }
}

fn bump_failures(shared: &Shared, seq: u64) -> u32 {
    let mut map = shared.lock();
    map.get_mut(&seq).map_or(u32::MAX, |entry| {
        entry.failures = entry.failures.saturating_add(1);
        entry.failures
    })
}

/// Removes a settled entry from disk (or moves it to `failed/`) and from memory.
async fn finish(shared: &Arc<Shared>, seq: u64, failed: bool) {
    let disk = shared.clone();
    let io = tokio::task::spawn_blocking(move || {
        if failed {
            disk.queue.fail(seq)
        } else {
            disk.queue.remove(seq)
        }
    });
    if let Ok(Err(err)) | Err(err) = io.await.map_err(std::io::Error::other) {
        // The entry is settled; if its file could not be updated it is redelivered after a
        // restart under the same id, which receivers dedupe.
        tracing::warn!(seq, %err, "outbound queue file update failed");
    }
    shared.lock().remove(&seq);
    shared.reserved.fetch_sub(1, Ordering::SeqCst);
    let counter = if failed {
        &shared.counters.failed
    } else {
        &shared.counters.delivered
    };
    counter.fetch_add(1, Ordering::Relaxed);
    shared.changed();
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
