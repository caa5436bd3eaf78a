//! The on-disk outbound queue: one file per pending delivery, written atomically.
//!
//! Layout under the queue directory:
//!
//! ```text
//! pending/<seq, 20 digits>.whq   deliveries not yet acknowledged by the receiver
//! failed/<seq>.whq               deliveries given up on (attempts exhausted or 410 Gone)
//! corrupt/<name>                 files that failed the checks below, kept for inspection
//! tmp/                           files being written
//! ```
//!
//! A file is `b"PWQ1"`, the body length (u32 LE), the CRC-32 of the body (u32 LE), then the body:
//! a JSON object `{"id","created","body"}` (webhook id, Unix seconds, exact POST body). It is
//! written to `tmp/`, fsynced, renamed into `pending/`, and the directory fsynced, so a crash
//! leaves either no file or a whole one. Delivery removes the file; a crash between the
//! receiver's 2xx and the removal redelivers with the same webhook id (receivers dedupe on it).
//! All functions here block; the caller runs them on `spawn_blocking`.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"PWQ1";
const HEADER_LEN: usize = 12;
const EXTENSION: &str = "whq";

/// One queued delivery as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Stored {
    /// The `webhook-id` sent with every attempt.
    pub(crate) id: String,
    /// When it was queued (Unix seconds).
    pub(crate) created: u64,
    /// The exact JSON body to POST.
    pub(crate) body: String,
}

/// Why a record on disk could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The file is shorter than its header says.
    #[error("record truncated")]
    Truncated,
    /// The magic bytes are wrong.
    #[error("not a queue record")]
    BadMagic,
    /// The CRC does not match the body.
    #[error("record checksum mismatch")]
    BadChecksum,
    /// The body is not the expected JSON.
    #[error("record body unreadable")]
    BadBody,
}

/// Encodes a record: magic, length, CRC, body.
pub(crate) fn encode(stored: &Stored) -> Vec<u8> {
    // Serialising a struct of strings and integers cannot fail.
    let body = serde_json::to_vec(stored).unwrap_or_default();
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a record, checking magic, exact length and CRC.
pub(crate) fn decode(bytes: &[u8]) -> Result<Stored, RecordError> {
    let header = bytes.get(..HEADER_LEN).ok_or(RecordError::Truncated)?;
    if &header[..4] != MAGIC {
        return Err(RecordError::BadMagic);
    }
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let (len, crc) = (word(4) as usize, word(8));
    let body = &bytes[HEADER_LEN..];
    if body.len() != len {
        return Err(RecordError::Truncated);
    }
    if crc32fast::hash(body) != crc {
        return Err(RecordError::BadChecksum);
    }
    serde_json::from_slice(body).map_err(|_| RecordError::BadBody)
}

/// The queue directory and its subdirectories.
#[derive(Debug, Clone)]
pub(crate) struct QueueDir {
    root: PathBuf,
}

/// What [`QueueDir::load`] found.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Pending deliveries in queue order.
    pub(crate) pending: Vec<(u64, Stored)>,
    /// Files moved to `corrupt/`.
    pub(crate) corrupt: u64,
    /// The sequence number to use next.
    pub(crate) next_seq: u64,
}

impl QueueDir {
    /// Creates the directory tree if needed.
    pub(crate) fn open(root: &Path) -> io::Result<Self> {
        for sub in ["pending", "failed", "corrupt", "tmp"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn file(&self, sub: &str, seq: u64) -> PathBuf {
        self.root.join(sub).join(format!("{seq:020}.{EXTENSION}"))
    }

    /// Durably adds a pending delivery.
    pub(crate) fn write(&self, seq: u64, stored: &Stored) -> io::Result<()> {
        let tmp = self.file("tmp", seq);
        let mut file = File::create(&tmp)?;
        file.write_all(&encode(stored))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, self.file("pending", seq))?;
        sync_dir(&self.root.join("pending"))
    }

    /// Removes a delivered entry.
    pub(crate) fn remove(&self, seq: u64) -> io::Result<()> {
        fs::remove_file(self.file("pending", seq))?;
        sync_dir(&self.root.join("pending"))
    }

    /// Moves an entry to `failed/` (kept for inspection and manual replay).
    pub(crate) fn fail(&self, seq: u64) -> io::Result<()> {
        fs::rename(self.file("pending", seq), self.file("failed", seq))?;
        sync_dir(&self.root.join("failed"))?;
        sync_dir(&self.root.join("pending"))
    }

    /// Reads every pending entry; unreadable ones are moved to `corrupt/` and counted. Files
    /// left in `tmp/` by a crash were never acknowledged to the caller and are deleted.
    pub(crate) fn load(&self) -> io::Result<Loaded> {
        for entry in fs::read_dir(self.root.join("tmp"))? {
            fs::remove_file(entry?.path())?;
        }
        let next_seq = self.max_seq("failed")?.map_or(0, |s| s + 1);
        let mut loaded = Loaded {
            next_seq,
            ..Loaded::default()
        };
        for entry in fs::read_dir(self.root.join("pending"))? {
            let path = entry?.path();
            match (seq_of(&path), fs::read(&path).ok().map(|b| decode(&b))) {
                (Some(seq), Some(Ok(stored))) => {
                    loaded.next_seq = loaded.next_seq.max(seq + 1);
                    loaded.pending.push((seq, stored));
                }
                _ => {
                    self.quarantine(&path)?;
                    loaded.corrupt += 1;
                }
            }
        }
        loaded.pending.sort_by_key(|(seq, _)| *seq);
        Ok(loaded)
    }

    fn quarantine(&self, path: &Path) -> io::Result<()> {
        let name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
        tracing::warn!(file = %path.display(), "corrupt outbound queue file moved aside");
        fs::rename(path, self.root.join("corrupt").join(name))
    }

    fn max_seq(&self, sub: &str) -> io::Result<Option<u64>> {
        let mut max = None;
        for entry in fs::read_dir(self.root.join(sub))? {
            if let Some(seq) = seq_of(&entry?.path()) {
                max = max.max(Some(seq));
            }
        }
        Ok(max)
    }
}

/// The sequence number in a `<20 digits>.whq` file name.
fn seq_of(path: &Path) -> Option<u64> {
    if path.extension()? != EXTENSION {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stored(id: &str) -> Stored {
        Stored {
            id: id.to_owned(),
            created: 7,
            body: r#"{"type":"x"}"#.to_owned(),
        }
    }

    #[test]
    fn write_load_remove_fail_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let queue = QueueDir::open(dir.path()).unwrap();
        queue.write(3, &stored("c")).unwrap();
        queue.write(1, &stored("a")).unwrap();
        queue.write(2, &stored("b")).unwrap();
        queue.remove(2).unwrap();
        queue.fail(3).unwrap();

        let loaded = QueueDir::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(loaded.pending, vec![(1, stored("a"))]);
        assert_eq!(loaded.next_seq, 4, "failed entries keep their numbers");
        assert_eq!(loaded.corrupt, 0);
    }

    #[test]
    fn torn_and_foreign_files_are_quarantined_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let queue = QueueDir::open(dir.path()).unwrap();
        queue.write(1, &stored("a")).unwrap();
        let mut torn = encode(&stored("b"));
        torn.truncate(torn.len() - 3);
        fs::write(dir.path().join("pending/00000000000000000002.whq"), torn).unwrap();
        fs::write(dir.path().join("pending/junk.txt"), b"hello").unwrap();
        fs::write(dir.path().join("tmp/00000000000000000003.whq"), b"PWQ1").unwrap();

        let loaded = queue.load().unwrap();
        assert_eq!(loaded.pending.len(), 1);
        assert_eq!(loaded.corrupt, 2);
        assert_eq!(fs::read_dir(dir.path().join("corrupt")).unwrap().count(), 2);
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "unacknowledged"
        );
    }

    #[test]
    fn checksum_catches_a_flipped_bit() {
        let mut bytes = encode(&stored("a"));
        let last = bytes.len() - 2;
        bytes[last] ^= 0x01;
        assert_eq!(decode(&bytes), Err(RecordError::BadChecksum));
        assert_eq!(decode(b"PWQ"), Err(RecordError::Truncated));
        assert_eq!(decode(b"XXXX\0\0\0\0\0\0\0\0"), Err(RecordError::BadMagic));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_inverts_encode(
            id in "[a-z_0-9]{1,30}",
            created in any::<u64>(),
            body in ".{0,100}",
        ) {
            let record = Stored { id, created, body };
            prop_assert_eq!(decode(&encode(&record)), Ok(record));
        }
    }
}
