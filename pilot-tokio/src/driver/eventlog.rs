//! The daemon's event log, `<home>/events.log`: the broker's retained events on disk, so they
//! survive a restart or a crash, and [`Command::PublishDurable`](super::commands::Command), the
//! daemon's own publishes, answered once their record is synced to disk.
//!
//! The file format is `pilot_proto::pubsub::log` (header, then length- and CRC-framed records
//! and markers). Who does what:
//!
//! - The broker runs with `persistent` on: every accepted publish becomes a
//!   `NodeEvent::LogAppend` and stays invisible (not delivered, not acknowledged) until the
//!   driver calls `Agent::handle_persisted`.
//! - The driver collects the records of one turn into a batch ([`EventLog::append`]) and, at
//!   the end of the turn, `write`s it itself ([`EventLog::flush`]; a write to the page cache
//!   takes microseconds, with no thread hand-off). The bytes are then the kernel's and survive
//!   a crash or `kill -9` of the daemon, so the driver releases the batch to the broker
//!   (`Agent::handle_persisted`), which delivers and acknowledges it. A syncer thread runs
//!   `fdatasync` for everything written so far, at most every [`SYNC_EVERY`] (one sync covers
//!   all the writes of its window: the group commit), and answers [`Done::Synced`]; only then
//!   is a `PublishDurable` answered. Delivery never waits for a disk flush.
//! - `NodeEvent::LogEvicted` marks the oldest records dead. When the dead prefix is at least
//!   [`COMPACT_MIN`] and as large as the live part, the file is rewritten (header, a marker for
//!   the last evicted sequence number, the live records) to `events.log.tmp` without stopping
//!   appends: a copier thread copies and syncs the live part as it was ([`Done::Copied`]); then
//!   the driver adds what was appended meanwhile, syncs, renames the copy over the log and
//!   syncs the directory.
//! - At start the file is read on a blocking thread, its valid prefix kept (`log::recover`: a
//!   torn or corrupt tail is cut), and the driver restores it into the broker as soon as the
//!   node exists (right after registration, before any peer can reach port 1002).
//!
//! # Limitations
//!
//! - The end of a compaction (tail copy, sync, rename) runs on the driver task.
//! - A failed write or sync stops the log for the rest of the run: later events are refused or
//!   stay undelivered (never acknowledged) until the daemon restarts, since the file's state
//!   after a failed sync is unknown.
//! - An event delivered or acknowledged to a pub/sub publisher is in the kernel but may not be
//!   on the disk yet: a power loss (not a daemon crash) can lose the last unsynced writes.
//!   `PublishDurable` (the webhook bridge's 2xx) waits for the sync.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use pilot_proto::pubsub::log::{self, FILE_HEADER, LogError, Recovery};
use pilot_proto::pubsub::{Seq, Topic};
use tokio::sync::mpsc;

use super::commands::Reply;
use super::control::error_text;
use super::{Driver, clock};

/// Dead bytes at the front of the file below which it is never compacted.
pub(super) const COMPACT_MIN: u64 = 1 << 20;

/// The shortest time between two syncs: the price of a sync is paid once per window, and a
/// `PublishDurable` waits at most this much longer.
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Bytes of one marker entry (`log::encode_marker`).
const MARKER_LEN: u64 = 18;

/// The header's length, where the first entry starts.
const HEADER_LEN: u64 = FILE_HEADER.len() as u64;

/// A compaction's copy of the live records, synced, waiting to replace the log.
#[derive(Debug)]
pub(crate) struct LiveCopy {
    file: File,
    /// Where the copy stopped in the old file: appends after it are added at the finish.
    copied_through: u64,
    len: u64,
}

/// What the log's helper threads report back to the driver.
#[derive(Debug)]
pub(crate) enum Done {
    /// Every record through this sequence number is synced to the disk.
    Synced(Seq),
    /// A compaction's copy is ready to be finished (or failed).
    Copied(Result<LiveCopy, String>),
    /// A sync failed; the syncer has stopped.
    Failed(String),
}

/// The driver's side of the log: the open file, the batch being collected, what the file
/// holds, and the daemon's own publishes waiting for their record to be synced.
#[derive(Debug)]
pub(super) struct EventLog {
    /// `None` when persistence is off (no path, the file could not be opened, or it failed).
    writer: Option<Writer>,
    /// Written batches for the syncer thread.
    syncs: Option<std_mpsc::Sender<(Arc<File>, Seq)>>,
    syncer: Option<JoinHandle<()>>,
    /// Where the helper threads report.
    done: mpsc::UnboundedSender<Done>,
    /// What the file held at start, until the node exists to take it.
    recovery: Option<Recovery>,
    batch: Vec<u8>,
    batch_through: Option<Seq>,
    waiting: VecDeque<(Seq, Reply<u64>)>,
    layout: Layout,
}

/// How the file's bytes after the header divide into dead ones (evicted records, markers) at
/// the front and live records after them.
#[derive(Debug, Default)]
struct Layout {
    live: VecDeque<(Seq, u64)>,
    live_bytes: u64,
    dead: u64,
    evicted: Option<Seq>,
    /// Bytes a running compaction drops (restored to `dead` if it fails).
    compacting: Option<u64>,
    /// Dead bytes needed before the next compaction (raised after a failed one).
    min_dead: u64,
}

impl EventLog {
    /// A log that keeps nothing (persistence off).
    fn off(done: mpsc::UnboundedSender<Done>) -> EventLog {
        EventLog {
            writer: None,
            syncs: None,
            syncer: None,
            done,
            recovery: None,
            batch: Vec::new(),
            batch_through: None,
            waiting: VecDeque::new(),
            layout: Layout::default(),
        }
    }

    /// Opens (or creates) the log at `path` (on a blocking thread) and reads back what it
    /// holds, and starts the syncer thread. Without a path, or when the file cannot be used,
    /// the log is off (see [`EventLog::is_on`]) and the error is logged.
    pub(super) async fn open(path: Option<PathBuf>) -> (EventLog, mpsc::UnboundedReceiver<Done>) {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let Some(path) = path else {
            return (EventLog::off(done_tx), done_rx);
        };

        let opened = tokio::task::spawn_blocking(move || Writer::open(&path)).await;
        let (writer, recovery) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(error)) => {
                tracing::error!(%error, "event log unusable; events are kept in memory only");
                return (EventLog::off(done_tx), done_rx);
            }
            Err(_) => return (EventLog::off(done_tx), done_rx),
        };
        let (syncs, sync_rx) = std_mpsc::channel();
        let sync_done = done_tx.clone();
        let syncer = std::thread::Builder::new()
            .name("pilot-event-sync".into())
            .spawn(move || syncer_thread(&sync_rx, &sync_done));
        let Ok(syncer) = syncer else {
            tracing::error!("event log: no syncer thread; events are kept in memory only");
            return (EventLog::off(done_tx), done_rx);
        };

        let mut log = EventLog::off(done_tx);
        log.layout = Layout::recovered(&recovery);
        log.recovery = Some(recovery);
        log.writer = Some(writer);
        log.syncs = Some(syncs);
        log.syncer = Some(syncer);
        (log, done_rx)
    }

    /// Whether events reach the disk (the broker must then run with `persistent` on).
    pub(super) fn is_on(&self) -> bool {
        self.writer.is_some()
    }

    /// Adds one record (already encoded by the broker) to this turn's batch.
    fn append(&mut self, seq: Seq, record: &[u8]) {
        if self.writer.is_none() {
            return;
        }
        self.batch.extend_from_slice(record);
        self.batch_through = Some(seq);
        self.layout.live.push_back((seq, record.len() as u64));
        self.layout.live_bytes += record.len() as u64;
    }

    /// Marks the records through `through` dead.
    fn evicted(&mut self, through: Seq) {
        let layout = &mut self.layout;
        while let Some(&(seq, len)) = layout.live.front()
            && seq <= through
        {
            layout.live.pop_front();
            layout.live_bytes -= len;
            layout.dead += len;
        }
        layout.evicted = Some(layout.evicted.map_or(through, |e| e.max(through)));
    }

    /// End of a driver turn: writes the batch collected so far (a `write`, no flush: the
    /// syncer flushes it) and, when due, starts a compaction. Returns the last sequence number
    /// written.
    fn flush(&mut self) -> Option<Seq> {
        let written = self.write_batch();
        if let Some(writer) = &self.writer
            && let Some((drop, marker)) = self.layout.compaction_due()
        {
            writer.start_copy(drop, marker, self.done.clone());
            self.layout.start_compaction(drop);
        }
        written
    }

    fn write_batch(&mut self) -> Option<Seq> {
        let writer = self.writer.as_mut()?;
        let through = self.batch_through.take()?;
        let bytes = std::mem::take(&mut self.batch);
        if let Err(e) = writer.append(&bytes) {
            self.fail(&e.to_string());
            return None;
        }
        if let Some(syncs) = &self.syncs {
            let _ = syncs.send((Arc::clone(&writer.file), through));
        }
        Some(through)
    }

    /// Ends a compaction whose copy is ready: the tail written since goes after it, and it
    /// replaces the log.
    fn finish(&mut self, copy: LiveCopy) -> Result<(), String> {
        // Limitation: the tail copy, its sync and the rename run here, on the driver task: a
        // compaction still costs one short stall (the bulk copy runs on its own thread).
        let writer = self.writer.as_mut().ok_or("the event log is off")?;
        writer.finish(copy).map_err(|e| e.to_string())
    }

    /// Stops the log for this run after a write failure; every waiting publish is refused.
    fn fail(&mut self, error: &str) {
        tracing::error!(%error, "event log write failed; events are no longer stored");
        self.writer = None;
        self.syncs = None;
        self.batch = Vec::new();
        self.batch_through = None;
        for (_, reply) in self.waiting.drain(..) {
            let _ = reply.send(Err("the event log failed; event not stored".to_owned()));
        }
    }

    /// Writes what is left and waits for the syncer's last sync (clean shutdown).
    pub(super) async fn close(mut self) {
        self.write_batch();
        self.syncs = None;
        if let Some(syncer) = self.syncer.take() {
            let _ = tokio::task::spawn_blocking(move || syncer.join()).await;
        }
    }
}

impl Layout {
    /// The layout of a file just recovered: markers and anything else that is not a record
    /// count as dead.
    fn recovered(recovery: &Recovery) -> Layout {
        let live: VecDeque<(Seq, u64)> = recovery
            .records
            .iter()
            .map(|r| (r.seq, log::encoded_len(&r.topic, r.payload.len()) as u64))
            .collect();
        let live_bytes = live.iter().map(|(_, len)| len).sum();
        let body = (recovery.valid_len as u64).saturating_sub(HEADER_LEN);
        Layout {
            live,
            live_bytes,
            dead: body.saturating_sub(live_bytes),
            min_dead: COMPACT_MIN,
            ..Layout::default()
        }
    }

    /// The bytes to drop and the marker to write, when compaction pays off.
    fn compaction_due(&self) -> Option<(u64, Seq)> {
        let worth = self.dead >= self.min_dead.max(COMPACT_MIN) && self.dead >= self.live_bytes;
        if !worth || self.compacting.is_some() {
            return None;
        }
        Some((self.dead, self.evicted?))
    }

    fn start_compaction(&mut self, drop: u64) {
        self.compacting = Some(drop);
        self.dead = MARKER_LEN;
    }

    fn end_compaction(&mut self, ok: bool) {
        let Some(drop) = self.compacting.take() else {
            return;
        };
        if !ok {
            self.dead += drop.saturating_sub(MARKER_LEN);
            self.min_dead = self.dead.saturating_mul(2);
        }
    }
}

impl Driver {
    /// Publishes `payload` on `topic` to the node's own broker and answers with its sequence
    /// number once the event's record is on disk.
    pub(super) fn publish_durable(&mut self, topic: &str, payload: &[u8], reply: Reply<u64>) {
        let topic = match Topic::parse(topic) {
            Ok(topic) => topic,
            Err(err) => {
                let _ = reply.send(Err(format!("bad topic: {err}")));
                return;
            }
        };
        if !self.log.is_on() {
            let _ = reply.send(Err("the event log is unavailable".to_owned()));
            return;
        }

        match self.agent.publish_local(clock(), &topic, payload) {
            Ok(seq) => self.log.waiting.push_back((seq, reply)),
            Err(e) => drop(reply.send(Err(error_text(&e)))),
        }
    }

    /// `NodeEvent::LogAppend`: the record joins this turn's batch.
    pub(super) fn on_log_append(&mut self, seq: Seq, record: &[u8]) {
        self.log.append(seq, record);
    }

    /// `NodeEvent::LogEvicted`: records through `through` may leave the file.
    pub(super) fn on_log_evicted(&mut self, through: Seq) {
        self.log.evicted(through);
    }

    /// End of a driver turn: restores the recovered log once the node exists, then writes
    /// what the turn appended and releases it to the broker. Returns true when it released
    /// something (the driver drains again).
    pub(super) fn log_turn(&mut self) -> bool {
        if self.log.recovery.is_some() && self.agent.node().is_some() {
            self.restore_log();
        }
        let written = self.log.flush();
        let log_restored = self.log.recovery.is_none() && self.agent.node().is_some();
        self.durables_turn(log_restored);
        let Some(through) = written else {
            return false;
        };
        self.agent.handle_persisted(clock(), through);
        true
    }

    fn restore_log(&mut self) {
        let Some(recovery) = self.log.recovery.take() else {
            return;
        };
        let (events, next) = (recovery.records.len(), recovery.next_seq.0);
        match self.agent.restore_log_from(clock(), recovery) {
            Ok(()) => tracing::info!(events, next, "event log restored into the broker"),
            Err(e) => tracing::error!(error = %e, "event log not restored"),
        }
    }

    /// A helper thread reported.
    pub(super) fn on_log_done(&mut self, done: Done) {
        match done {
            Done::Synced(through) => {
                while let Some((seq, _)) = self.log.waiting.front()
                    && *seq <= through
                {
                    if let Some((seq, reply)) = self.log.waiting.pop_front() {
                        let _ = reply.send(Ok(seq.0));
                    }
                }
            }
            Done::Copied(Ok(copy)) => {
                let result = self.log.finish(copy);
                if let Err(error) = &result {
                    tracing::warn!(%error, "event log compaction failed; the old file is kept");
                }
                self.log.layout.end_compaction(result.is_ok());
            }
            Done::Copied(Err(error)) => {
                tracing::warn!(%error, "event log compaction failed; the old file is kept");
                self.log.layout.end_compaction(false);
            }
            Done::Failed(error) => self.log.fail(&error),
        }
    }
}

/// The syncer thread: `fdatasync` for everything written so far, one sync for all the writes
/// that arrived while the previous one ran; reports how far the disk holds the log.
fn syncer_thread(syncs: &std_mpsc::Receiver<(Arc<File>, Seq)>, done: &mpsc::UnboundedSender<Done>) {
    let mut last_sync = std::time::Instant::now();
    while let Ok(mut latest) = syncs.recv() {
        // At most one sync per SYNC_EVERY: the writes of that window share it.
        let until = last_sync + SYNC_EVERY;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match syncs.recv_timeout(left) {
                Ok(newer) => latest = newer,
                Err(_) => break,
            }
        }
        last_sync = std::time::Instant::now();
        let (file, through) = latest;
        let report = match file.sync_data() {
            Ok(()) => Done::Synced(through),
            Err(e) => Done::Failed(format!("sync: {e}")),
        };
        let failed = matches!(report, Done::Failed(_));
        if done.send(report).is_err() || failed {
            return;
        }
    }
}

/// The open log file and its length.
#[derive(Debug)]
struct Writer {
    path: PathBuf,
    /// Shared with the syncer, which syncs the file the writes went to.
    file: Arc<File>,
    len: u64,
}

impl Writer {
    /// Opens the log (mode 0600), cuts what `log::recover` does not accept, and syncs.
    fn open(path: &Path) -> Result<(Writer, Recovery), String> {
        let _ = std::fs::remove_file(tmp_path(path));
        let what = |e: std::io::Error| format!("{}: {e}", path.display());

        let mut file = open_rw(path).map_err(what)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(what)?;
        let recovery = match log::recover(&bytes) {
            Ok(recovery) => recovery,
            Err(error) => {
                file = set_aside(path, error).map_err(what)?;
                log::recover(&[]).map_err(|e| e.to_string())?
            }
        };
        if recovery.discarded > 0 {
            tracing::warn!(
                bytes = recovery.discarded,
                "event log: cut a torn or damaged tail"
            );
        }

        let len = start_file(&mut file, recovery.valid_len as u64).map_err(what)?;
        sync_dir(path).map_err(what)?;
        let writer = Writer {
            path: path.to_owned(),
            file: Arc::new(file),
            len,
        };
        Ok((writer, recovery))
    }

    /// Appends `bytes` (the syncer makes them durable); on failure cuts the file back to its
    /// last good length (best effort).
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let result = (&*self.file).write_all(bytes);
        match result {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// Starts a compaction on a copier thread: the live records as the file holds them now,
    /// without the `drop` bytes after the header and with a marker for `marker` in their
    /// place, go to a synced temporary file. Appends go on meanwhile.
    fn start_copy(&self, drop: u64, marker: Seq, done: mpsc::UnboundedSender<Done>) {
        let (path, through) = (self.path.clone(), self.len);
        let report = done.clone();
        let copier = std::thread::Builder::new()
            .name("pilot-event-compact".into())
            .spawn(move || {
                let copy = write_compacted(&path, drop, marker, through);
                let _ = report.send(Done::Copied(copy.map_err(|e| e.to_string())));
            });
        if let Err(e) = copier {
            let _ = done.send(Done::Copied(Err(format!("no compaction thread: {e}"))));
        }
    }

    /// A whole compaction in this thread (copy, then finish).
    #[cfg(test)]
    fn compact(&mut self, drop: u64, marker: Seq) -> std::io::Result<()> {
        let copy = write_compacted(&self.path, drop, marker, self.len)?;
        self.finish(copy)
    }

    /// Ends a compaction: adds what was appended since the copy, syncs the copy, renames it
    /// over the log and writes to it from now on. On error the old file stays in use.
    fn finish(&mut self, mut copy: LiveCopy) -> std::io::Result<()> {
        let tmp = tmp_path(&self.path);
        let caught_up = append_range(&self.path, copy.copied_through, self.len, &mut copy.file)
            .and_then(|added| copy.file.sync_data().map(|()| added))
            .and_then(|added| std::fs::rename(&tmp, &self.path).map(|()| added));
        let added = match caught_up {
            Ok(added) => added,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };

        self.file = Arc::new(copy.file);
        self.len = copy.len + added;
        if let Err(e) = sync_dir(&self.path) {
            tracing::warn!(error = %e, "event log: directory sync after compaction failed");
        }
        Ok(())
    }
}

/// Appends bytes `from..to` of the file at `path` to `out`; returns how many.
fn append_range(path: &Path, from: u64, to: u64, out: &mut File) -> std::io::Result<u64> {
    let mut src = File::open(path)?;
    src.seek(SeekFrom::Start(from))?;
    let added = std::io::copy(&mut src.take(to.saturating_sub(from)), out)?;
    Ok(added)
}

/// Writes header, marker and the entries of the log at `path` after its first `drop` bytes of
/// entries, up to byte `through`, to a new file at the temporary path and syncs it; returns it
/// positioned at its end.
fn write_compacted(path: &Path, drop: u64, marker: Seq, through: u64) -> std::io::Result<LiveCopy> {
    let tmp = tmp_path(path);
    let mut to = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let mut head = FILE_HEADER.to_vec();
    log::encode_marker(marker, &mut head);
    to.write_all(&head)?;

    let copied = append_range(path, HEADER_LEN + drop, through, &mut to)?;
    to.sync_all()?;
    let len = head.len() as u64 + copied;
    Ok(LiveCopy {
        file: to,
        copied_through: through,
        len,
    })
}

fn open_rw(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Moves a file that is not an event log out of the way (kept for inspection) and creates a
/// fresh one.
fn set_aside(path: &Path, error: LogError) -> std::io::Result<File> {
    let aside = path.with_extension("log.bad");
    tracing::error!(%error, kept = %aside.display(), "event log unreadable; starting empty");
    std::fs::rename(path, &aside)?;
    open_rw(path)
}

/// Cuts the file to `valid` bytes (writing the header into an empty file), syncs it and leaves
/// it positioned at its end; returns its length.
fn start_file(file: &mut File, valid: u64) -> std::io::Result<u64> {
    file.set_len(valid)?;
    file.seek(SeekFrom::Start(valid))?;
    let mut len = valid;
    if valid == 0 {
        file.write_all(&FILE_HEADER)?;
        len = HEADER_LEN;
    }
    file.sync_all()?;
    Ok(len)
}

fn tmp_path(path: &Path) -> PathBuf {
    path.with_extension("log.tmp")
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    File::open(dir.unwrap_or_else(|| Path::new(".")))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, topic: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        log::encode_record(Seq(seq), &Topic::parse(topic).unwrap(), payload, &mut out);
        out
    }

    #[test]
    fn marker_len_matches_the_format() {
        let mut out = Vec::new();
        log::encode_marker(Seq(7), &mut out);
        assert_eq!(out.len() as u64, MARKER_LEN);
    }

    #[test]
    fn appends_survive_reopening_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let (mut writer, recovery) = Writer::open(&path).unwrap();
        assert_eq!((recovery.records.len(), recovery.next_seq), (0, Seq(1)));
        writer.append(&record(1, "a.b", b"one")).unwrap();
        writer.append(&record(2, "a.c", b"two")).unwrap();
        drop(writer);
        let torn = record(3, "a.d", b"three");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&torn[..torn.len() - 2]).unwrap();

        let (_, recovery) = Writer::open(&path).unwrap();
        let seqs: Vec<u64> = recovery.records.iter().map(|r| r.seq.0).collect();
        assert_eq!(seqs, [1, 2]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        assert_eq!(len, recovery.valid_len, "the torn tail is cut on open");
    }

    #[test]
    fn compaction_keeps_live_records_and_the_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let (mut writer, _) = Writer::open(&path).unwrap();
        let records: Vec<Vec<u8>> = (1..=5).map(|s| record(s, "t", &[s as u8; 40])).collect();
        for r in &records {
            writer.append(r).unwrap();
        }
        let dead: u64 = records[..3].iter().map(|r| r.len() as u64).sum();
        writer.compact(dead, Seq(3)).unwrap();
        writer.append(&record(6, "t", b"six")).unwrap();

        let (_, recovery) = Writer::open(&path).unwrap();
        let seqs: Vec<u64> = recovery.records.iter().map(|r| r.seq.0).collect();
        assert_eq!(seqs, [4, 5, 6]);
        assert_eq!(recovery.next_seq, Seq(7));
        assert!(!tmp_path(&path).exists());

        let (mut writer, _) = Writer::open(&path).unwrap();
        let all = (std::fs::metadata(&path).unwrap().len() - HEADER_LEN) as u64;
        writer.compact(all, Seq(6)).unwrap();
        let (_, recovery) = Writer::open(&path).unwrap();
        assert!(recovery.records.is_empty());
        assert_eq!(recovery.next_seq, Seq(7), "the marker keeps the numbering");
    }

    #[test]
    fn a_foreign_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        std::fs::write(&path, b"not a log at all").unwrap();
        let (_, recovery) = Writer::open(&path).unwrap();
        assert!(recovery.records.is_empty());
        assert_eq!(std::fs::read(&path).unwrap(), FILE_HEADER);
        assert_eq!(
            std::fs::read(path.with_extension("log.bad")).unwrap(),
            b"not a log at all"
        );
    }

    /// Runs the end of a driver turn and finishes the compaction it started, if any. Returns
    /// what was written and whether a compaction completed.
    async fn turn(
        log: &mut EventLog,
        done: &mut mpsc::UnboundedReceiver<Done>,
    ) -> (Option<Seq>, bool) {
        let written = log.flush();
        let mut compacted = false;
        while log.layout.compacting.is_some() {
            let wait = tokio::time::timeout(std::time::Duration::from_secs(20), done.recv());
            let report = wait.await.expect("the copier answers").expect("log alive");
            if let Done::Copied(copy) = report {
                let result = copy.and_then(|copy| log.finish(copy));
                log.layout.end_compaction(result.is_ok());
                compacted = result.is_ok();
            }
        }
        (written, compacted)
    }

    #[tokio::test]
    async fn the_driver_side_accounting_matches_the_file_through_a_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let (mut log, mut done) = EventLog::open(Some(path.clone())).await;
        assert!(log.is_on());
        let payload = vec![7u8; (COMPACT_MIN / 2) as usize];
        for seq in 1..=4 {
            log.append(Seq(seq), &record(seq, "big", &payload));
        }
        let reports = turn(&mut log, &mut done).await;
        assert_eq!(reports, (Some(Seq(4)), false), "one batch");

        log.evicted(Seq(3));
        log.append(Seq(5), &record(5, "small", b"five"));
        let reports = turn(&mut log, &mut done).await;
        assert_eq!(reports, (Some(Seq(5)), true), "append, then compaction");
        log.append(Seq(6), &record(6, "small", b"six"));
        turn(&mut log, &mut done).await;
        log.close().await;

        let (_, recovery) = Writer::open(&path).unwrap();
        let seqs: Vec<u64> = recovery.records.iter().map(|r| r.seq.0).collect();
        assert_eq!(seqs, [4, 5, 6]);
        assert_eq!(recovery.next_seq, Seq(7));
        let layout = Layout::recovered(&recovery);
        assert_eq!(
            layout.dead, MARKER_LEN,
            "only the marker is dead after compaction"
        );
    }

    #[test]
    fn appends_made_during_a_compaction_land_in_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let (mut writer, _) = Writer::open(&path).unwrap();
        for seq in 1..=3 {
            writer.append(&record(seq, "t", b"old")).unwrap();
        }
        let first = record(1, "t", b"old").len() as u64;

        let copy = write_compacted(&path, first, Seq(1), writer.len).unwrap();
        writer.append(&record(4, "t", b"during")).unwrap();
        writer.finish(copy).unwrap();
        writer.append(&record(5, "t", b"after")).unwrap();

        let (_, recovery) = Writer::open(&path).unwrap();
        let seqs: Vec<u64> = recovery.records.iter().map(|r| r.seq.0).collect();
        assert_eq!(
            seqs,
            [2, 3, 4, 5],
            "the evicted record left, nothing else did"
        );
        assert_eq!(recovery.next_seq, Seq(6));
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn layout_compacts_once_the_dead_prefix_outweighs_the_live_part() {
        let mut layout = Layout {
            min_dead: COMPACT_MIN,
            ..Layout::default()
        };
        let half = COMPACT_MIN / 2;
        for seq in 1..=4 {
            layout.live.push_back((Seq(seq), half));
            layout.live_bytes += half;
        }
        assert_eq!(layout.compaction_due(), None, "nothing is dead yet");

        for _ in 0..2 {
            let (_, len) = layout.live.pop_front().unwrap();
            layout.live_bytes -= len;
            layout.dead += len;
        }
        layout.evicted = Some(Seq(2));
        assert_eq!(layout.compaction_due(), Some((COMPACT_MIN, Seq(2))));
        layout.start_compaction(COMPACT_MIN);
        assert_eq!(layout.dead, MARKER_LEN);
        assert_eq!(layout.compaction_due(), None, "one compaction at a time");
    }
}
