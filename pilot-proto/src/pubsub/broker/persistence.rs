//! What the broker exchanges with the driver's files: restoring the retained log, compacted log
//! snapshots, and durable subscription positions. The formats are in `pubsub::log` and
//! `pubsub::durable`; the driver does the I/O.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use super::Broker;
use super::retained::StoredEvent;
use super::subscription::Parked;
use crate::pubsub::Seq;
use crate::pubsub::durable::{self, DurableRecord};
use crate::pubsub::log::{self, LogRecord, Recovery};

impl Broker {
    /// Loads what [`log::recover`] found. Call before the first connection. Numbering resumes
    /// at `recovery.next_seq`, even when no record survived compaction (prefer this to
    /// [`Broker::restore`], which cannot see markers).
    pub fn restore_from(&mut self, now: Instant, recovery: Recovery) {
        self.restore(now, recovery.records);
        self.next_seq = self.next_seq.max(recovery.next_seq);
        self.retained.skip_to(self.next_seq);
    }

    /// Loads recovered records, in increasing sequence order. Call before the first connection.
    /// Numbering resumes after the last record.
    pub fn restore(&mut self, now: Instant, records: Vec<LogRecord>) {
        for record in records {
            if record.seq < self.next_seq {
                debug!(seq = record.seq.0, "skipping out-of-order restored record");
                continue;
            }
            self.next_seq = record.seq.next();
            let LogRecord {
                seq,
                topic,
                payload,
            } = record;
            // Limitation: the log stores no wall-clock time, so restored events count their age
            // from the restart.
            let stored_at = now;
            let event = StoredEvent {
                seq,
                topic,
                payload,
                origin: None,
                stored_at,
            };
            self.retained.push(Arc::new(event));
        }
        self.evict(now);
    }

    /// Returns a compacted log holding a marker for the last sequence number used and every
    /// retained event (see [`log::encode_snapshot`]), for a driver that rewrites its file after
    /// [`BrokerEvent::Evicted`](super::BrokerEvent::Evicted). Take it only while no
    /// [`BrokerEvent::Append`](super::BrokerEvent::Append) is outstanding (`stats().uncommitted ==
    /// 0`), or those records would be missing from the new file.
    pub fn snapshot_log(&self) -> Vec<u8> {
        let records: Vec<LogRecord> = self
            .retained
            .from(0)
            .map(|e| LogRecord {
                seq: e.seq,
                topic: e.topic.clone(),
                payload: e.payload.clone(),
            })
            .collect();
        log::encode_snapshot(Seq(self.next_seq.0.saturating_sub(1)), &records)
    }

    /// Returns a snapshot of every durable subscription's position, connected or parked (see
    /// `pubsub::durable`), for the driver to save now and then. Restoring an older snapshot
    /// can only cause redeliveries, never a missed event.
    pub fn durables_snapshot(&self) -> Vec<u8> {
        let mut records = BTreeMap::new();
        for (name, parked) in &self.parked {
            records.insert(name.clone(), durable_record(name, parked));
        }
        let active = self.clients.values().flat_map(|c| c.subs.values());
        for sub in active {
            if let Some(name) = &sub.durable {
                records.insert(name.clone(), durable_record(name, &sub.park()));
            }
        }
        let records: Vec<DurableRecord> = records.into_values().collect();
        durable::encode_snapshot(&records)
    }

    /// Loads durable positions from a decoded snapshot, after [`Broker::restore_from`] and before
    /// the first connection. Each is parked until a client subscribes with its name.
    pub fn restore_durables(&mut self, records: Vec<DurableRecord>) {
        for record in records {
            if self.parked.len() >= self.config.max_parked_durables {
                debug!("dropping restored durable subscriptions over the limit");
                return;
            }
            let DurableRecord {
                name,
                filter,
                next,
                unacked,
            } = record;
            self.parked.insert(
                name,
                Parked {
                    filter,
                    unacked,
                    next,
                },
            );
        }
    }
}

fn durable_record(name: &str, parked: &Parked) -> DurableRecord {
    DurableRecord {
        name: name.to_owned(),
        filter: parked.filter.clone(),
        next: parked.next,
        unacked: parked.unacked.clone(),
    }
}
