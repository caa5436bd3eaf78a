//! The in-memory retained log: committed events in sequence order, bounded by count, bytes and
//! age. Subscriptions replay from it; the durable copy on disk is the driver's, in the format
//! of `pubsub::log`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::ClientId;
use crate::pubsub::{Seq, Topic};

/// How much history the broker keeps for replay; whichever bound is hit first evicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most events kept.
    pub max_events: usize,
    /// Most payload and topic bytes kept.
    pub max_bytes: usize,
    /// Oldest event kept, measured from when the broker stored it.
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_events: 10_000,
            max_bytes: 64 * 1024 * 1024,
            max_age: ONE_DAY,
        }
    }
}

const ONE_DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// One stored event, shared by the retained log and every queue that holds it.
#[derive(Debug)]
pub(super) struct StoredEvent {
    pub(super) seq: Seq,
    pub(super) topic: Topic,
    pub(super) payload: Bytes,
    /// The connection that published it (`None` for the daemon or a restored record); used to
    /// keep a publisher from receiving its own events.
    pub(super) origin: Option<ClientId>,
    pub(super) stored_at: Instant,
}

impl StoredEvent {
    /// Bytes the event counts against retention and queue limits.
    pub(super) fn size(&self) -> usize {
        self.topic.as_str().len() + self.payload.len()
    }
}

#[derive(Debug)]
pub(super) struct Retained {
    events: VecDeque<Arc<StoredEvent>>,
    bytes: usize,
    /// Sequence number after the newest event ever committed.
    end: Seq,
}

impl Default for Retained {
    fn default() -> Self {
        // Sequence numbers start at 1.
        Self {
            events: VecDeque::new(),
            bytes: 0,
            end: Seq(1),
        }
    }
}

impl Retained {
    /// Appends a committed event; sequence numbers must increase.
    pub(super) fn push(&mut self, event: Arc<StoredEvent>) {
        self.bytes += event.size();
        self.end = event.seq.next();
        self.events.push_back(event);
    }

    /// Moves the end past sequence numbers used before a restart (no event may follow here with
    /// a lower one).
    pub(super) fn skip_to(&mut self, next: Seq) {
        self.end = self.end.max(next);
    }

    /// Drops events beyond the limits, returning the last evicted sequence number.
    pub(super) fn evict(&mut self, now: Instant, limits: &Retention) -> Option<Seq> {
        let mut last = None;
        while let Some(oldest) = self.events.front() {
            let too_old = now.saturating_duration_since(oldest.stored_at) >= limits.max_age;
            let too_many = self.events.len() > limits.max_events;
            let too_big = self.bytes > limits.max_bytes;
            if !(too_old || too_many || too_big) {
                break;
            }
            self.bytes -= oldest.size();
            last = Some(oldest.seq);
            self.events.pop_front();
        }
        last
    }

    /// Returns when the oldest event will be too old.
    pub(super) fn next_expiry(&self, limits: &Retention) -> Option<Instant> {
        let oldest = self.events.front()?;
        oldest.stored_at.checked_add(limits.max_age)
    }

    /// Returns the oldest retained sequence number, or [`Retained::end`] when none is.
    pub(super) fn first_seq(&self) -> Seq {
        self.events.front().map_or(self.end, |e| e.seq)
    }

    /// Returns the sequence number after the newest committed event.
    pub(super) fn end(&self) -> Seq {
        self.end
    }

    /// Returns the position of the first event with a sequence number at or after `seq`.
    pub(super) fn position(&self, seq: Seq) -> usize {
        self.events.partition_point(|e| e.seq < seq)
    }

    /// Returns the events from position `at` on.
    pub(super) fn from(&self, at: usize) -> impl Iterator<Item = &Arc<StoredEvent>> {
        self.events.range(at.min(self.events.len())..)
    }

    /// Returns the event with sequence number `seq`, if retained.
    pub(super) fn get(&self, seq: Seq) -> Option<&Arc<StoredEvent>> {
        self.events.get(self.position(seq)).filter(|e| e.seq == seq)
    }

    pub(super) fn len(&self) -> usize {
        self.events.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}
