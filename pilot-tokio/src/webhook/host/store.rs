//! What the webhook host keeps under the daemon home (`<home>/webhook/`, mode 0700):
//!
//! - `config.json` (0600): the inbound receiver and the outbound target as set by `pilotctl`,
//!   secrets included, written atomically so a restart restores both.
//! - `deliveries.log`: one JSON line `{"r":route,"i":delivery id,"s":seq,"t":unix secs}` per
//!   inbound event made durable, appended and fsynced before the provider gets its 2xx; read
//!   back at start into `InboundConfig::remembered` so provider retries stay duplicates.
//! - `outbound.cursor`: the last broker sequence number handed to the outbound queue.
//!
//! # Limitations
//!
//! - A crash between the event log's fsync and the journal's fsync forgets that one delivery
//!   id: a provider retry after the restart is published a second time (never lost).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity_file;

/// Journal entries kept at most (the inbound dedupe table's default capacity).
const JOURNAL_MAX: usize = 100_000;

/// How an inbound route authenticates requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Standard Webhooks (`whsec_` secrets).
    #[default]
    Standard,
    /// Stripe `Stripe-Signature` (secret bytes verbatim).
    Stripe,
    /// GitHub `X-Hub-Signature-256` (secret bytes verbatim).
    Github,
    /// No signature (loopback only).
    Unsigned,
}

/// The inbound receiver as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundSpec {
    /// `http://<ip or localhost>:<port>/<path>`.
    pub url: String,
    /// Signature format.
    #[serde(default)]
    pub provider: Provider,
    /// Active secrets (several during a rotation).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Topic prefix instead of the one derived from the path.
    #[serde(default)]
    pub topic: Option<String>,
    /// Header whose value is appended to the topic instead of sub-path segments.
    #[serde(default)]
    pub topic_header: Option<String>,
    /// Allow a non-loopback bind address.
    #[serde(default)]
    pub allow_non_loopback: bool,
}

/// The outbound target as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundSpec {
    /// Where events are POSTed.
    pub url: String,
    /// Standard Webhooks signing secret (`whsec_...`). Empty in a `pilotctl` request: keep
    /// the current one or generate one.
    #[serde(default)]
    pub secret: String,
    /// First retry delay in milliseconds (default 5 s).
    #[serde(default)]
    pub retry_initial_ms: Option<u64>,
    /// Attempts before an event is given up on (default 10).
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

/// Everything `config.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredConfig {
    /// The inbound receiver, if set.
    #[serde(default)]
    pub inbound: Option<InboundSpec>,
    /// The outbound target, if set.
    #[serde(default)]
    pub outbound: Option<OutboundSpec>,
}

/// The host's files under `<home>/webhook/`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store under `home`.
    pub fn new(home: &Path) -> Self {
        Self {
            dir: home.join("webhook"),
        }
    }

    /// Whether the daemon keeps its broker log on disk (`<home>/events.log`), so that broker
    /// sequence numbers (and the outbound cursor) carry over a restart.
    pub fn event_log_persists(&self) -> bool {
        self.dir
            .parent()
            .is_some_and(|home| home.join("events.log").exists())
    }

    /// The outbound queue directory.
    pub fn queue_dir(&self) -> PathBuf {
        self.dir.join("outbound-queue")
    }

    /// Reads `config.json`; a missing file is an empty config.
    pub fn load_config(&self) -> Result<StoredConfig, String> {
        let path = self.dir.join("config.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not valid: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoredConfig::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes `config.json` atomically (mode 0600).
    pub fn save_config(&self, config: &StoredConfig) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(config).map_err(|e| e.to_string())?;
        identity_file::write_atomic(&self.dir.join("config.json"), &bytes)
            .map_err(|e| e.to_string())
    }

    /// The outbound cursor, if one was saved.
    pub fn load_cursor(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.dir.join("outbound.cursor")).ok()?;
        text.trim().parse().ok()
    }

    /// Saves the outbound cursor atomically.
    pub fn save_cursor(&self, seq: u64) -> Result<(), String> {
        let path = self.dir.join("outbound.cursor");
        identity_file::write_atomic(&path, format!("{seq}\n").as_bytes()).map_err(|e| e.to_string())
    }

    /// Forgets the outbound cursor (a new target starts from "now").
    pub fn clear_cursor(&self) {
        let _ = std::fs::remove_file(self.dir.join("outbound.cursor"));
    }

    /// Opens the delivery journal: reads the remembered ids (younger than `max_age`, newest
    /// `JOURNAL_MAX`), rewrites the file compacted, and keeps it open for appends.
    pub fn open_journal(&self, now_unix: u64, max_age: Duration) -> Result<Journal, String> {
        let path = self.dir.join("deliveries.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let cutoff = now_unix.saturating_sub(max_age.as_secs());
        let mut kept: Vec<JournalEntry> = text
            .lines()
            .filter_map(|line| serde_json::from_str::<JournalEntry>(line).ok())
            .filter(|e| e.t >= cutoff)
            .collect();
        let excess = kept.len().saturating_sub(JOURNAL_MAX);
        kept.drain(..excess);

        let mut compacted = Vec::new();
        for entry in &kept {
            compacted.extend_from_slice(&entry.line());
        }
        identity_file::write_atomic(&path, &compacted).map_err(|e| e.to_string())?;
        let file = OpenOptions::new()
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let remembered = kept.into_iter().map(|e| (e.r, e.i)).collect();
        Ok(Journal {
            file: Mutex::new(file),
            remembered,
        })
    }
}

/// One line of `deliveries.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct JournalEntry {
    /// Route name.
    r: String,
    /// Delivery id.
    i: String,
    /// Broker sequence number the event got.
    s: u64,
    /// Unix seconds when it was made durable.
    t: u64,
}

impl JournalEntry {
    fn line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// The append side of `deliveries.log`.
#[derive(Debug)]
pub struct Journal {
    file: Mutex<File>,
    /// `(route, delivery id)` pairs read at open, oldest first.
    pub remembered: Vec<(String, String)>,
}

impl Journal {
    /// Appends one delivery and fsyncs it (blocking; call from `spawn_blocking`).
    pub fn append(&self, route: &str, id: &str, seq: u64, now_unix: u64) -> std::io::Result<()> {
        let entry = JournalEntry {
            r: route.to_owned(),
            i: id.to_owned(),
            s: seq,
            t: now_unix,
        };
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(&entry.line())?;
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn journal_survives_reopen_and_drops_old_and_torn_lines() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::new(home.path());
        let journal = store.open_journal(1_000_000, DAY).unwrap();
        assert!(journal.remembered.is_empty());
        journal
            .append("events", "old", 1, 1_000_000 - 2 * 86_400)
            .unwrap();
        journal.append("events", "msg_1", 2, 1_000_000).unwrap();
        journal.append("github", "msg_1", 3, 1_000_000).unwrap();
        drop(journal);
        let path = home.path().join("webhook/deliveries.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"r\":\"events\",\"i\":\"torn");
        std::fs::write(&path, bytes).unwrap();

        let journal = store.open_journal(1_000_000, DAY).unwrap();
        let expected = vec![
            ("events".to_owned(), "msg_1".to_owned()),
            ("github".to_owned(), "msg_1".to_owned()),
        ];
        assert_eq!(journal.remembered, expected);
        journal.append("events", "msg_2", 4, 1_000_000).unwrap();
        drop(journal);
        let journal = store.open_journal(1_000_000, DAY).unwrap();
        assert_eq!(journal.remembered.len(), 3);
    }

    #[test]
    fn config_round_trips_and_missing_is_empty() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::new(home.path());
        assert_eq!(store.load_config().unwrap(), StoredConfig::default());
        let config = StoredConfig {
            inbound: Some(InboundSpec {
                url: "http://127.0.0.1:9000/events".into(),
                provider: Provider::Github,
                secrets: vec!["s".into()],
                topic: None,
                topic_header: Some("x-github-event".into()),
                allow_non_loopback: false,
            }),
            outbound: None,
        };
        store.save_config(&config).unwrap();
        assert_eq!(store.load_config().unwrap(), config);
        assert_eq!(store.load_cursor(), None);
        store.save_cursor(42).unwrap();
        assert_eq!(store.load_cursor(), Some(42));
    }
}
