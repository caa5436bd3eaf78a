//! The virtual clock and the event queue.
//!
//! Virtual time is an `Instant` computed as `epoch + elapsed`, where the epoch is captured once
//! when a simulation is built; only differences between instants are ever used, so runs do not
//! depend on the wall clock. Internally the queue keys events by nanoseconds since the epoch.
//! Events are ordered by `(time, sequence number)`: two events due at the same instant run in
//! the order they were scheduled, which makes ties deterministic.
//!
//! # Limitations
//!
//! - Limitation: at most 2^32 events can be pending at once (slab indices are `u32`).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

/// A deterministic priority queue of events keyed by virtual time in nanoseconds since the
/// epoch. Events live in a slab so the heap moves only small keys.
#[derive(Debug)]
pub(crate) struct EventQueue<E> {
    heap: BinaryHeap<Key>,
    slots: Vec<Option<E>>,
    free: Vec<u32>,
    next_seq: u64,
}

impl<E> EventQueue<E> {
    /// Creates an empty queue.
    pub(crate) fn new() -> Self {
        Self {
            heap: BinaryHeap::with_capacity(1024),
            slots: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
        }
    }

    /// Schedules `event` at `at` nanoseconds; among equal times, earlier calls run first.
    pub(crate) fn push(&mut self, at: u64, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                // Limitation: more than 2^32 simultaneously pending events are not supported;
                // memory runs out long before.
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.heap.push(Key { at, seq, slot });
    }

    /// Returns the time of the earliest event.
    pub(crate) fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|key| key.at)
    }

    /// Removes and returns the earliest event.
    pub(crate) fn pop(&mut self) -> Option<(u64, E)> {
        loop {
            let key = self.heap.pop()?;
            let event = self.slots.get_mut(key.slot as usize).and_then(Option::take);
            self.free.push(key.slot);
            if let Some(event) = event {
                return Some((key.at, event));
            }
        }
    }

    /// Returns how many events are pending.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    at: u64,
    seq: u64,
    slot: u32,
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    // Reversed, so that the max-heap pops the earliest (time, seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Converts a duration to whole nanoseconds, saturating (584 years of virtual time).
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Formats a virtual duration since the epoch as seconds with microsecond precision.
pub(crate) fn format_elapsed(elapsed: Duration) -> String {
    format!("{:>4}.{:06}s", elapsed.as_secs(), elapsed.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_then_insertion_order() {
        let mut queue = EventQueue::new();
        queue.push(5, "late");
        queue.push(1, "first");
        queue.push(1, "second");
        queue.push(0, "zero");
        let order: Vec<_> = std::iter::from_fn(|| queue.pop())
            .map(|(_, event)| event)
            .collect();
        assert_eq!(order, ["zero", "first", "second", "late"]);
    }
}
