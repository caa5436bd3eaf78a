//! Snapshot format for durable subscription positions, as pure functions.
//!
//! The broker keeps durable positions in memory; the driver saves a snapshot
//! ([`crate::pubsub::Broker::durables_snapshot`]) now and then (atomically: new file, sync,
//! rename) and feeds the decoded snapshot back after a restart. Restoring an older snapshot is
//! safe for at-least-once delivery: it can only make the broker redeliver events, never skip
//! one. Layout, big-endian: `"PDUR" 01 00 00 00 ‖ count u32 ‖ entries ‖ crc32 u32` where the
//! CRC covers everything before it, and each entry is `name_len u8 ‖ name ‖ filter_len u16 ‖
//! filter ‖ next u64 ‖ unacked_count u32 ‖ (seq u64 ‖ attempt u16) × unacked_count`.

use bytes::{Buf, BufMut};

use super::codec::durable_name;
use super::{Seq, TopicFilter};

/// The first bytes of a snapshot.
pub const SNAPSHOT_HEADER: [u8; 8] = [b'P', b'D', b'U', b'R', 1, 0, 0, 0];

/// Why a snapshot was refused as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Wrong header, bad checksum, or entries that do not decode.
    #[error("durable snapshot is damaged or not a snapshot")]
    Damaged,
}

/// One durable subscription's saved position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableRecord {
    /// Subscription name.
    pub name: String,
    /// Its filter.
    pub filter: TopicFilter,
    /// First sequence number never delivered.
    pub next: Seq,
    /// Delivered but unacknowledged events, with their delivery counts.
    pub unacked: Vec<(Seq, u16)>,
}

/// Encodes a snapshot of `records`.
pub fn encode_snapshot(records: &[DurableRecord]) -> Vec<u8> {
    let mut out = SNAPSHOT_HEADER.to_vec();
    // Counts are bounded by the broker's limits (parked durables, unacknowledged deliveries),
    // far below u32::MAX; names are at most 64 bytes and filters at most 1,024.
    out.put_u32(records.len() as u32);
    for record in records {
        out.put_u8(record.name.len() as u8);
        out.extend_from_slice(record.name.as_bytes());
        out.put_u16(record.filter.as_str().len() as u16);
        out.extend_from_slice(record.filter.as_str().as_bytes());
        out.put_u64(record.next.0);
        out.put_u32(record.unacked.len() as u32);
        for (seq, attempt) in &record.unacked {
            out.put_u64(seq.0);
            out.put_u16(*attempt);
        }
    }
    let crc = crc32fast::hash(&out);
    out.put_u32(crc);
    out
}

/// Decodes a snapshot; a damaged one is refused whole (the broker then starts without durable
/// positions, and clients resume with `since`).
///
/// # Errors
///
/// [`SnapshotError::Damaged`] for a wrong header, checksum or entry.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Vec<DurableRecord>, SnapshotError> {
    let body_len = bytes.len().checked_sub(4).ok_or(SnapshotError::Damaged)?;
    let (body, mut crc) = bytes.split_at(body_len);
    if !body.starts_with(&SNAPSHOT_HEADER) || crc.get_u32() != crc32fast::hash(body) {
        return Err(SnapshotError::Damaged);
    }

    let mut rest = &body[SNAPSHOT_HEADER.len()..];
    let count = take_u32(&mut rest)?;
    let mut records = Vec::new();
    for _ in 0..count {
        records.push(decode_entry(&mut rest)?);
    }
    if !rest.is_empty() {
        return Err(SnapshotError::Damaged);
    }
    Ok(records)
}

fn decode_entry(rest: &mut &[u8]) -> Result<DurableRecord, SnapshotError> {
    let name_len = usize::from(take(rest, 1)?[0]);
    let name = durable_name(take(rest, name_len)?).map_err(|_| SnapshotError::Damaged)?;
    let filter_len = usize::from(take_u16(rest)?);
    let filter = TopicFilter::from_bytes(take(rest, filter_len)?);
    let filter = filter.map_err(|_| SnapshotError::Damaged)?;
    let next = Seq(take_u64(rest)?);

    let count = take_u32(rest)? as usize;
    // Each unacknowledged entry is 10 bytes; refuse counts the bytes cannot hold before
    // reserving anything.
    if count > rest.len() / 10 {
        return Err(SnapshotError::Damaged);
    }
    let mut unacked = Vec::with_capacity(count);
    for _ in 0..count {
        unacked.push((Seq(take_u64(rest)?), take_u16(rest)?));
    }
    Ok(DurableRecord {
        name,
        filter,
        next,
        unacked,
    })
}

fn take<'a>(rest: &mut &'a [u8], len: usize) -> Result<&'a [u8], SnapshotError> {
    if rest.len() < len {
        return Err(SnapshotError::Damaged);
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Ok(head)
}

fn take_u16(rest: &mut &[u8]) -> Result<u16, SnapshotError> {
    Ok(take(rest, 2)?.get_u16())
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, SnapshotError> {
    Ok(take(rest, 4)?.get_u32())
}

fn take_u64(rest: &mut &[u8]) -> Result<u64, SnapshotError> {
    Ok(take(rest, 8)?.get_u64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(name: &str, next: u64, unacked: &[(u64, u16)]) -> DurableRecord {
        DurableRecord {
            name: name.into(),
            filter: TopicFilter::parse("jobs.>").unwrap(),
            next: Seq(next),
            unacked: unacked.iter().map(|(s, a)| (Seq(*s), *a)).collect(),
        }
    }

    #[test]
    fn snapshots_round_trip_and_detect_damage() {
        let records = vec![
            record("a", 10, &[(3, 1), (7, 4)]),
            record("worker-2", 1, &[]),
        ];
        let bytes = encode_snapshot(&records);
        assert_eq!(decode_snapshot(&bytes), Ok(records));
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert_eq!(
                decode_snapshot(&damaged),
                Err(SnapshotError::Damaged),
                "byte {at}"
            );
        }
        assert_eq!(
            decode_snapshot(&bytes[..bytes.len() - 1]),
            Err(SnapshotError::Damaged)
        );
        assert_eq!(decode_snapshot(&encode_snapshot(&[])), Ok(Vec::new()));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut bytes = [&SNAPSHOT_HEADER[..], &tail].concat();
            let _ = decode_snapshot(&bytes);
            // With a valid checksum the entry decoder itself is exercised.
            let crc = crc32fast::hash(&bytes);
            bytes.extend_from_slice(&crc.to_be_bytes());
            let _ = decode_snapshot(&bytes);
        }
    }
}
