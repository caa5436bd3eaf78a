//! Durable subscription positions across restarts: the broker's snapshot of every durable
//! subscription (filter, next position, unacknowledged events) saved to
//! `<home>/durables.snapshot` (atomically, mode 0600) every [`SAVE_EVERY`] when it changed and
//! at shutdown, and loaded into the broker right after the event log is restored.
//!
//! Restoring an older snapshot can only cause redeliveries, never a missed event: a durable
//! subscriber sees at least once what it had not acknowledged when the snapshot was taken.
//!
//! # Limitations
//!
//! - Acknowledgements newer than the last save are redelivered after a crash (up to
//!   [`SAVE_EVERY`] of them); a clean stop saves first.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pilot_proto::pubsub::durable;

use super::{Driver, clock};

/// How often a changed snapshot is written.
pub(super) const SAVE_EVERY: Duration = Duration::from_secs(2);

/// The snapshot file and what was last written to it.
#[derive(Debug)]
pub(super) struct Durables {
    path: Option<PathBuf>,
    restored: bool,
    saved: Vec<u8>,
    next_save: Option<Instant>,
}

impl Durables {
    /// Snapshots beside the event log at `log`; `None` keeps them in memory only.
    pub(super) fn new(log: Option<&std::path::Path>) -> Durables {
        let path = log.map(|l| l.with_file_name("durables.snapshot"));
        Durables {
            path,
            restored: false,
            saved: Vec::new(),
            next_save: None,
        }
    }

    pub(super) fn next_timer(&self) -> Option<Instant> {
        self.next_save.filter(|_| self.restored)
    }
}

impl Driver {
    /// Once per driver turn: restores the saved positions once the log is in the broker, then
    /// saves the snapshot when it is due.
    pub(super) fn durables_turn(&mut self, log_restored: bool) {
        if !self.durables.restored && log_restored {
            self.restore_durables();
        }
        let now = clock();
        // Limitation: saved every SAVE_EVERY, so a crash redelivers the newest acknowledgements.
        if self.durables.restored && self.durables.next_save.is_none_or(|at| at <= now) {
            self.save_durables();
            self.durables.next_save = Some(now + SAVE_EVERY);
        }
    }

    fn restore_durables(&mut self) {
        self.durables.restored = true;
        let Some(path) = &self.durables.path else {
            return;
        };
        let Ok(bytes) = std::fs::read(path) else {
            return;
        };
        let records = match durable::decode_snapshot(&bytes) {
            Ok(records) => records,
            Err(e) => return tracing::error!(error = %e, "durable positions unreadable; ignored"),
        };
        let count = records.len();
        match self.agent.restore_durables(records) {
            Ok(()) => tracing::info!(count, "durable subscriptions restored"),
            Err(e) => tracing::error!(error = %e, "durable positions not restored"),
        }
        self.durables.saved = bytes;
    }

    /// Writes the snapshot if it changed since the last write.
    pub(super) fn save_durables(&mut self) {
        let (Some(path), Some(bytes)) = (&self.durables.path, self.agent.durables_snapshot())
        else {
            return;
        };
        if !self.durables.restored || bytes == self.durables.saved {
            return;
        }
        match crate::identity_file::write_atomic(path, &bytes) {
            Ok(()) => self.durables.saved = bytes,
            Err(e) => tracing::warn!(error = %e, "could not save durable positions"),
        }
    }
}
