//! Receive-side reassembly: in-order bytes waiting for the application, plus out-of-order ranges
//! held inside the advertised window.
//!
//! Memory is bounded three ways: in-order plus out-of-order bytes never exceed the buffer
//! capacity (out-of-order data must lie inside the window, which is the capacity minus unread
//! bytes), the number of separate out-of-order ranges is capped, and the caller passes the
//! node-wide byte budget left for each insertion.

use std::collections::{BTreeMap, VecDeque};

/// What happened to an inbound data segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Stored; `advanced` bytes became readable in order.
    Accepted {
        /// How far the in-order point moved.
        advanced: usize,
    },
    /// Every byte was already held or delivered.
    Duplicate,
    /// The segment lies entirely beyond the window.
    OutOfWindow,
    /// Dropped for lack of memory (range cap or node budget); the peer will retransmit.
    Dropped,
}

/// The reassembly buffer of one connection.
pub(crate) struct RecvBuffer {
    ready: VecDeque<u8>,
    /// Stream offset of the next byte expected in order.
    next: u64,
    ooo: BTreeMap<u64, Vec<u8>>,
    ooo_bytes: usize,
    capacity: usize,
    max_ranges: usize,
    /// Start of the out-of-order range that last received data (reported first in SACK).
    latest: Option<u64>,
}

impl std::fmt::Debug for RecvBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the bytes: they are application payload.
        f.debug_struct("RecvBuffer")
            .field("next", &self.next)
            .field("readable", &self.ready.len())
            .field("ooo_ranges", &self.ooo.len())
            .field("ooo_bytes", &self.ooo_bytes)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl RecvBuffer {
    /// An empty buffer of `capacity` bytes holding at most `max_ranges` out-of-order ranges.
    pub(crate) fn new(capacity: usize, max_ranges: usize) -> Self {
        Self {
            ready: VecDeque::new(),
            next: 0,
            ooo: BTreeMap::new(),
            ooo_bytes: 0,
            capacity,
            max_ranges: max_ranges.max(1),
            latest: None,
        }
    }

    /// Stream offset of the next in-order byte expected.
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    /// Bytes beyond [`Self::next`] the buffer may hold: the receive window.
    pub(crate) fn window(&self) -> usize {
        self.capacity.saturating_sub(self.ready.len())
    }

    /// Bytes held in memory (readable plus out-of-order).
    pub(crate) fn buffered(&self) -> usize {
        self.ready.len() + self.ooo_bytes
    }

    /// Readable bytes.
    pub(crate) fn readable(&self) -> usize {
        self.ready.len()
    }

    /// Whether out-of-order data is held (a hole exists).
    pub(crate) fn has_gaps(&self) -> bool {
        !self.ooo.is_empty()
    }

    /// Marks one sequence number after the data as consumed (the peer's FIN).
    pub(crate) fn consume_fin(&mut self) {
        self.next += 1;
    }

    /// Stores `data` found at stream offset `offset`; `budget` is how many new bytes the node
    /// still allows this connection to hold.
    pub(crate) fn insert(&mut self, offset: u64, data: &[u8], budget: usize) -> Insert {
        let end = offset + data.len() as u64;
        if end <= self.next {
            return Insert::Duplicate;
        }
        let right = self.next + self.window() as u64;
        if offset >= right {
            return Insert::OutOfWindow;
        }
        let skip = self.next.saturating_sub(offset);
        let start = offset.max(self.next);
        let keep = end.min(right) - start;
        // Both values are bounded by `data.len()`.
        let data = &data[skip as usize..(skip + keep) as usize];
        if start == self.next {
            self.append_in_order(data, budget)
        } else {
            self.store_out_of_order(start, data, budget)
        }
    }

    /// Moves up to `out.len()` readable bytes into `out`; returns the count.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        crate::byte_queue::take_front(&mut self.ready, out)
    }

    /// Up to four out-of-order ranges as `(start, end)` offsets: the most recently extended
    /// range first (RFC 2018 §4), then the lowest ones.
    pub(crate) fn sack_ranges(&self) -> Vec<(u64, u64)> {
        let mut ranges = Vec::with_capacity(4);
        let latest = self
            .latest
            .and_then(|s| self.ooo.get(&s).map(|v| (s, v.len())));
        if let Some((start, len)) = latest {
            ranges.push((start, start + len as u64));
        }
        for (&start, bytes) in &self.ooo {
            if ranges.len() == 4 {
                break;
            }
            if Some(start) != latest.map(|(s, _)| s) {
                ranges.push((start, start + bytes.len() as u64));
            }
        }
        ranges
    }

    fn append_in_order(&mut self, data: &[u8], budget: usize) -> Insert {
        let fresh = data.len();
        if fresh > budget {
            return Insert::Dropped;
        }
        let before = self.next;
        self.ready.extend(data);
        self.next += fresh as u64;
        self.absorb_ooo();
        Insert::Accepted {
            advanced: (self.next - before) as usize,
        }
    }

    /// Moves out-of-order ranges that the in-order point reached into `ready`.
    fn absorb_ooo(&mut self) {
        while let Some(entry) = self.ooo.first_entry() {
            let start = *entry.key();
            if start > self.next {
                break;
            }
            let bytes = entry.remove();
            self.ooo_bytes -= bytes.len();
            let end = start + bytes.len() as u64;
            if end > self.next {
                // `next - start` is below `bytes.len()` here.
                self.ready.extend(&bytes[(self.next - start) as usize..]);
                self.next = end;
            }
            if self.latest == Some(start) {
                self.latest = None;
            }
        }
    }

    fn store_out_of_order(&mut self, start: u64, data: &[u8], budget: usize) -> Insert {
        let end = start + data.len() as u64;
        let fresh = data.len() as u64 - self.covered(start, end);
        if fresh == 0 {
            return Insert::Duplicate;
        }
        if fresh > budget as u64 {
            return Insert::Dropped;
        }
        if self.ooo.len() >= self.max_ranges && !self.touches(start, end) {
            return Insert::Dropped;
        }
        let (merged_start, merged) = self.merge(start, data);
        self.ooo_bytes += merged.len();
        self.ooo.insert(merged_start, merged);
        self.latest = Some(merged_start);
        Insert::Accepted { advanced: 0 }
    }

    /// Whether `[start, end)` overlaps or abuts a held range (so storing it adds no range).
    fn touches(&self, start: u64, end: u64) -> bool {
        let before = self.ooo.range(..=start).next_back();
        before.is_some_and(|(&s, v)| s + v.len() as u64 >= start)
            || self.ooo.range(start..=end).next().is_some()
    }

    /// Bytes of `[start, end)` already held out of order.
    fn covered(&self, start: u64, end: u64) -> u64 {
        let first = self
            .ooo
            .range(..=start)
            .next_back()
            .map(|(&s, _)| s)
            .unwrap_or(start);
        self.ooo
            .range(first..end)
            .map(|(&s, v)| {
                let e = s + v.len() as u64;
                e.min(end).saturating_sub(s.max(start))
            })
            .sum()
    }

    /// Removes every range touching `[start, start + data.len())` and returns their union with
    /// `data` as one contiguous range.
    fn merge(&mut self, start: u64, data: &[u8]) -> (u64, Vec<u8>) {
        let mut merged_start = start;
        let mut merged = Vec::new();
        if let Some((&s, v)) = self.ooo.range(..=start).next_back()
            && s + v.len() as u64 >= start
        {
            merged_start = s;
        }
        let end = start + data.len() as u64;
        let touching: Vec<u64> = self
            .ooo
            .range(merged_start..=end)
            .map(|(&s, _)| s)
            .collect();
        let mut pieces = Vec::with_capacity(touching.len());
        for s in touching {
            let Some(bytes) = self.ooo.remove(&s) else {
                continue;
            };
            self.ooo_bytes -= bytes.len();
            if self.latest == Some(s) {
                self.latest = None;
            }
            pieces.push((s, bytes));
        }
        // Splice in offset order so every piece starts inside or at the end of the merge.
        let at = pieces.partition_point(|(s, _)| *s <= start);
        for (s, bytes) in &pieces[..at] {
            splice(&mut merged, merged_start, *s, bytes);
        }
        splice(&mut merged, merged_start, start, data);
        for (s, bytes) in &pieces[at..] {
            splice(&mut merged, merged_start, *s, bytes);
        }
        (merged_start, merged)
    }
}

/// Writes `bytes` (found at offset `at`) into `buf` (which starts at `base`), extending it.
/// Overlapping bytes are identical copies of the same stream, so either version may win.
fn splice(buf: &mut Vec<u8>, base: u64, at: u64, bytes: &[u8]) {
    // `at >= base` and the distance is bounded by the window, which fits in usize.
    let index = (at - base) as usize;
    if index > buf.len() {
        // Unreachable by construction (ranges merged here touch each other); keep the data
        // contiguous anyway by refusing the gap.
        return;
    }
    let overlap = (buf.len() - index).min(bytes.len());
    buf.extend_from_slice(&bytes[overlap..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(buf: &mut RecvBuffer) -> Vec<u8> {
        let mut out = vec![0; buf.readable()];
        let n = buf.read(&mut out);
        out.truncate(n);
        out
    }

    #[test]
    fn reorders_and_deduplicates() {
        let mut buf = RecvBuffer::new(100, 8);
        assert_eq!(
            buf.insert(5, b"fghij", 100),
            Insert::Accepted { advanced: 0 }
        );
        assert_eq!(buf.insert(5, b"fghij", 100), Insert::Duplicate);
        assert_eq!(buf.sack_ranges(), vec![(5, 10)]);
        assert_eq!(
            buf.insert(3, b"defg", 100),
            Insert::Accepted { advanced: 0 }
        );
        assert_eq!(buf.sack_ranges(), vec![(3, 10)]);
        assert_eq!(
            buf.insert(0, b"abc", 100),
            Insert::Accepted { advanced: 10 }
        );
        assert_eq!(read_all(&mut buf), b"abcdefghij");
        assert_eq!(buf.insert(2, b"cd", 100), Insert::Duplicate);
        assert_eq!(buf.buffered(), 0);
    }

    #[test]
    fn window_and_range_caps() {
        let mut buf = RecvBuffer::new(10, 1);
        assert_eq!(buf.insert(10, b"x", 100), Insert::OutOfWindow);
        assert_eq!(buf.insert(2, b"c", 100), Insert::Accepted { advanced: 0 });
        assert_eq!(buf.insert(6, b"g", 100), Insert::Dropped);
        assert_eq!(buf.insert(3, b"d", 100), Insert::Accepted { advanced: 0 });
        assert_eq!(buf.insert(8, b"ijklmn", 100), Insert::Dropped);
        assert_eq!(buf.insert(0, b"ab", 1), Insert::Dropped);
        assert_eq!(
            buf.insert(0, b"abcdxxxxxxxxxx", 100),
            Insert::Accepted { advanced: 10 }
        );
        assert_eq!(buf.window(), 0);
        assert_eq!(read_all(&mut buf), b"abcdxxxxxx");
    }

    proptest::proptest! {
        /// In-order data read back in pieces of any size (the ring buffer wraps) comes out
        /// whole and in order.
        #[test]
        fn reads_of_any_size_return_the_stream_in_order(
            chunks in proptest::collection::vec(1usize..40, 1..60),
            reads in proptest::collection::vec(1usize..50, 1..80),
        ) {
            let mut buf = RecvBuffer::new(64, 4);
            let (mut offset, mut sent, mut got) = (0u64, Vec::new(), Vec::new());
            let mut reads = reads.iter().cycle();
            for len in chunks {
                let data: Vec<u8> = (offset..offset + len as u64).map(|b| b as u8).collect();
                if let Insert::Accepted { .. } = buf.insert(offset, &data, 1 << 20) {
                    let taken = len.min((buf.next - offset) as usize);
                    sent.extend_from_slice(&data[..taken]);
                    offset += taken as u64;
                }
                let mut out = vec![0u8; *reads.next().unwrap_or(&1)];
                let n = buf.read(&mut out);
                got.extend_from_slice(&out[..n]);
            }
            got.extend(read_all(&mut buf));
            proptest::prop_assert_eq!(got, sent);
        }
    }
}
