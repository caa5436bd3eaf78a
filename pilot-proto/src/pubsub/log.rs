//! The retained log's on-disk format, as pure functions: encode records, recover after a crash.
//!
//! A log is an 8-byte header (`PLOG`, version 1, three zero bytes) followed by records:
//! `body_len u32 ‖ crc32 u32 ‖ body`, where the CRC-32 covers the four length bytes and the body,
//! and the body is `seq u64 ‖ topic_len u16 ‖ topic ‖ payload` (all big-endian). A body with
//! topic length 0 and nothing after it is a marker: it records that sequence numbers up to its
//! `seq` are used, so a compacted log keeps the numbering when no event is left. The driver
//! appends records and fsyncs before it reports them persisted; after a crash it calls
//! [`recover`] on the file's bytes and truncates the file to [`Recovery::valid_len`]. Nothing
//! here touches a file.
//!
//! # Limitations
//!
//! - Recovery stops at the first damaged record, so a bit flip in the middle of the file (as
//!   opposed to a torn write at its end) also discards the intact records after it.

use bytes::Bytes;

use super::Seq;
use super::topic::{MAX_TOPIC_LEN, Topic};
use crate::wire::event::MAX_PAYLOAD_LEN;

/// The first bytes of every log file.
pub const FILE_HEADER: [u8; 8] = [b'P', b'L', b'O', b'G', 1, 0, 0, 0];

/// Bytes before each record body: length and CRC.
pub const RECORD_OVERHEAD: usize = 8;

/// Fixed bytes at the start of a body: sequence number and topic length.
const BODY_FIXED: usize = 10;

/// Largest body a valid record can have.
pub const MAX_BODY_LEN: usize = BODY_FIXED + MAX_TOPIC_LEN + MAX_PAYLOAD_LEN;

/// Why a log could not be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The file does not start with [`FILE_HEADER`]: it is not a log of this version.
    #[error("not a pilot event log (bad header)")]
    BadHeader,
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Broker sequence number.
    pub seq: Seq,
    /// Topic it was published on.
    pub topic: Topic,
    /// Payload.
    pub payload: Bytes,
}

/// What [`recover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The intact records, in order, with strictly increasing sequence numbers.
    pub records: Vec<LogRecord>,
    /// The first sequence number never used by this log (1 for an empty one): markers keep it
    /// after compaction dropped every record.
    pub next_seq: Seq,
    /// Length of the valid prefix (header included); the driver truncates the file to this.
    pub valid_len: usize,
    /// Bytes after the valid prefix (a torn or damaged tail); 0 after a clean shutdown.
    pub discarded: usize,
}

/// Returns the bytes [`encode_record`] appends for this topic and payload length.
pub fn encoded_len(topic: &Topic, payload_len: usize) -> usize {
    RECORD_OVERHEAD + BODY_FIXED + topic.as_str().len() + payload_len
}

/// Appends one record to `out`.
pub fn encode_record(seq: Seq, topic: &Topic, payload: &[u8], out: &mut Vec<u8>) {
    let topic = topic.as_str().as_bytes();
    let body_len = BODY_FIXED + topic.len() + payload.len();
    let start = out.len();
    // Payloads are bounded by the broker well below 4 GiB, so the length fits in a u32.
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.0.to_be_bytes());
    // Topics are at most MAX_TOPIC_LEN (1,024) bytes.
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic);
    out.extend_from_slice(payload);

    let crc = checksum(&out[start..start + 4], &out[start + RECORD_OVERHEAD..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Appends a marker: an entry with no topic or payload recording that sequence numbers up to
/// `seq` are used, so that numbering continues after a restart even if no record is left.
pub fn encode_marker(seq: Seq, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&(BODY_FIXED as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.0.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    let crc = checksum(&out[start..start + 4], &out[start + RECORD_OVERHEAD..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Returns a whole log holding `records`.
pub fn encode_log(records: &[LogRecord]) -> Vec<u8> {
    let mut out = FILE_HEADER.to_vec();
    for record in records {
        encode_record(record.seq, &record.topic, &record.payload, &mut out);
    }
    out
}

/// Returns a compacted log: a marker for `head` (the last sequence number used), then
/// `records`. A driver writes it to a new file, syncs it and renames it over the old one.
pub fn encode_snapshot(head: Seq, records: &[LogRecord]) -> Vec<u8> {
    let mut out = FILE_HEADER.to_vec();
    encode_marker(head, &mut out);
    for record in records {
        encode_record(record.seq, &record.topic, &record.payload, &mut out);
    }
    out
}

/// Reads the intact prefix of a log after a restart or crash.
///
/// An empty file, or a file holding only part of the header (a crash while creating it), is an
/// empty log with `valid_len` 0: the driver writes the header again.
///
/// # Errors
///
/// [`LogError::BadHeader`] when the file starts with something other than a log header.
pub fn recover(bytes: &[u8]) -> Result<Recovery, LogError> {
    if bytes.len() < FILE_HEADER.len() {
        if FILE_HEADER.starts_with(bytes) {
            let (records, next_seq, discarded) = (Vec::new(), Seq(1), bytes.len());
            return Ok(Recovery {
                records,
                next_seq,
                valid_len: 0,
                discarded,
            });
        }
        return Err(LogError::BadHeader);
    }
    if bytes[..FILE_HEADER.len()] != FILE_HEADER {
        return Err(LogError::BadHeader);
    }

    let shared = Bytes::copy_from_slice(bytes);
    let mut records: Vec<LogRecord> = Vec::new();
    let mut next_seq = Seq(1);
    let mut at = FILE_HEADER.len();
    // Limitation: recovery stops at the first damaged record, so damage mid-file also drops the
    // intact records after it (records carry no resynchronisation marker).
    while let Some((entry, len)) = read_entry(&shared, at) {
        match entry {
            Entry::Marker(seq) => next_seq = next_seq.max(seq.next()),
            Entry::Record(record) => {
                if records.last().is_some_and(|last| last.seq >= record.seq) {
                    break;
                }
                next_seq = next_seq.max(record.seq.next());
                records.push(record);
            }
        }
        at += len;
    }
    let discarded = bytes.len() - at;
    Ok(Recovery {
        records,
        next_seq,
        valid_len: at,
        discarded,
    })
}

enum Entry {
    Record(LogRecord),
    Marker(Seq),
}

/// Reads the entry at `at`, or `None` when it is incomplete, damaged or malformed.
fn read_entry(bytes: &Bytes, at: usize) -> Option<(Entry, usize)> {
    let header = bytes.get(at..at.checked_add(RECORD_OVERHEAD)?)?;
    let body_len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if !(BODY_FIXED..=MAX_BODY_LEN).contains(&body_len) {
        return None;
    }
    let body_start = at + RECORD_OVERHEAD;
    let body = bytes.get(body_start..body_start.checked_add(body_len)?)?;
    if checksum(&header[..4], body) != crc {
        return None;
    }

    let seq = Seq(u64::from_be_bytes(body[..8].try_into().ok()?));
    let topic_len = usize::from(u16::from_be_bytes([body[8], body[9]]));
    let len = RECORD_OVERHEAD + body_len;
    if topic_len == 0 {
        // A marker has no topic and no payload.
        return (body_len == BODY_FIXED).then_some((Entry::Marker(seq), len));
    }
    let topic = body.get(BODY_FIXED..BODY_FIXED.checked_add(topic_len)?)?;
    let topic = Topic::from_bytes(topic).ok()?;
    let payload = bytes.slice(body_start + BODY_FIXED + topic_len..body_start + body_len);
    Some((
        Entry::Record(LogRecord {
            seq,
            topic,
            payload,
        }),
        len,
    ))
}

fn checksum(len_bytes: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len_bytes);
    hasher.update(body);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(seq: u64, topic: &str, payload: &[u8]) -> LogRecord {
        LogRecord {
            seq: Seq(seq),
            topic: Topic::parse(topic).unwrap(),
            payload: payload.to_vec().into(),
        }
    }

    #[test]
    fn known_record_bytes() {
        let mut out = Vec::new();
        encode_record(Seq(1), &Topic::parse("a").unwrap(), b"hi", &mut out);
        let expected_head = [0, 0, 0, 13];
        assert_eq!(out[..4], expected_head);
        assert_eq!(out[8..], [0, 0, 0, 0, 0, 0, 0, 1, 0, 1, b'a', b'h', b'i']);
        let crc = crc32fast::hash(&[&out[..4], &out[8..]].concat());
        assert_eq!(out[4..8], crc.to_be_bytes());
        assert_eq!(out.len(), encoded_len(&Topic::parse("a").unwrap(), 2));
    }

    #[test]
    fn empty_and_partial_headers_are_empty_logs() {
        for cut in 0..FILE_HEADER.len() {
            let recovery = recover(&FILE_HEADER[..cut]).unwrap();
            assert_eq!((recovery.records.len(), recovery.valid_len), (0, 0));
        }
        assert_eq!(recover(b"PLOX\x01\0\0\0"), Err(LogError::BadHeader));
        assert_eq!(recover(b"x"), Err(LogError::BadHeader));
    }

    #[test]
    fn markers_carry_the_numbering_through_compaction() {
        let empty = recover(&encode_snapshot(Seq(41), &[])).unwrap();
        assert_eq!((empty.records.len(), empty.next_seq), (0, Seq(42)));

        let log = encode_snapshot(Seq(50), &[record(49, "a", b"x"), record(50, "a", b"y")]);
        let recovery = recover(&log).unwrap();
        assert_eq!((recovery.records.len(), recovery.next_seq), (2, Seq(51)));
        assert_eq!(recovery.discarded, 0);
        assert_eq!(recover(&encode_log(&[])).unwrap().next_seq, Seq(1));
    }

    #[test]
    fn out_of_order_sequence_stops_recovery() {
        let log = encode_log(&[record(5, "a", b"1"), record(5, "a", b"2")]);
        let recovery = recover(&log).unwrap();
        assert_eq!(recovery.records, vec![record(5, "a", b"1")]);
        assert!(recovery.discarded > 0);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let bytes = [&FILE_HEADER[..], &tail].concat();
            let recovery = recover(&bytes).unwrap();
            prop_assert_eq!(recovery.valid_len + recovery.discarded, bytes.len());
        }

        #[test]
        fn encode_recover_round_trips(
            payloads in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..64),
                0..20,
            ),
        ) {
            let records: Vec<LogRecord> = payloads
                .iter()
                .enumerate()
                .map(|(i, p)| record(i as u64 * 3 + 1, "t.x", p))
                .collect();
            let log = encode_log(&records);
            let recovery = recover(&log).unwrap();
            prop_assert_eq!(recovery.valid_len, log.len());
            prop_assert_eq!(recovery.records, records);
        }
    }
}
