//! The virtual clock and the event queue.
//!
//! Virtual time is an `Instant` computed as `epoch + elapsed`, where the epoch is captured once
//! when a simulation is built; only differences between instants are ever used, so runs do not
//! depend on the wall clock. Events are ordered by `(time, sequence number)`: two events due at
//! the same instant run in the order they were scheduled, which makes ties deterministic.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A deterministic priority queue of events keyed by virtual time.
#[derive(Debug)]
pub(crate) struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    next_seq: u64,
}

impl<E> EventQueue<E> {
    /// Creates an empty queue.
    pub(crate) fn new() -> Self {
        Self {
            heap: BinaryHeap::with_capacity(1024),
            next_seq: 0,
        }
    }

    /// Schedules `event` at `at`; among equal times, earlier calls run first.
    pub(crate) fn push(&mut self, at: Instant, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { at, seq, event });
    }

    /// Returns the time of the earliest event.
    pub(crate) fn peek_time(&self) -> Option<Instant> {
        self.heap.peek().map(|entry| entry.at)
    }

    /// Removes and returns the earliest event.
    pub(crate) fn pop(&mut self) -> Option<(Instant, E)> {
        self.heap.pop().map(|entry| (entry.at, entry.event))
    }

    /// Returns how many events are pending.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[derive(Debug)]
struct Entry<E> {
    at: Instant,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    // Reversed, so that the max-heap pops the earliest (time, seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
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
        let epoch = Instant::now();
        let mut queue = EventQueue::new();
        queue.push(epoch + Duration::from_millis(5), "late");
        queue.push(epoch + Duration::from_millis(1), "first");
        queue.push(epoch + Duration::from_millis(1), "second");
        queue.push(epoch, "zero");
        let order: Vec<_> = std::iter::from_fn(|| queue.pop())
            .map(|(_, event)| event)
            .collect();
        assert_eq!(order, ["zero", "first", "second", "late"]);
    }
}
