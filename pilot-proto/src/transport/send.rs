//! The bounded send buffer and segmentation.
//!
//! The buffer holds every byte from the oldest unacknowledged one to the newest the application
//! wrote; acknowledged bytes are released from the front. Segments are cut from it on demand, so
//! a retransmission reads the same bytes again.
//!
//! # The "SACK" prefix rule
//!
//! A v0.5 receiver treats any payload that begins with `SACK`, a count byte 1–4 and enough block
//! bytes as selective-acknowledgement information and never delivers it. [`SendBuffer::cut`]
//! therefore never starts a segment of more than four bytes with `SACK` followed by 1–4: such a
//! segment is cut to the four bytes `SACK`, which no decoder accepts, and the next segment then
//! starts with the count byte. The stream carries the same bytes; only one boundary moves.

use std::collections::VecDeque;

/// ASCII `SACK`, the magic of a v0.5 SACK blob.
pub(crate) const SACK_MAGIC: [u8; 4] = *b"SACK";

/// Bytes written by the application and not yet acknowledged.
pub(crate) struct SendBuffer {
    bytes: VecDeque<u8>,
    /// Stream offset of `bytes[0]` (the oldest unacknowledged byte).
    base: u64,
    capacity: usize,
}

impl std::fmt::Debug for SendBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the bytes: they are application payload.
        f.debug_struct("SendBuffer")
            .field("len", &self.bytes.len())
            .field("base", &self.base)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl SendBuffer {
    /// An empty buffer that holds at most `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            bytes: VecDeque::new(),
            base: 0,
            capacity,
        }
    }

    /// Appends as much of `data` as fits within the capacity and `limit`; returns the count.
    pub(crate) fn write(&mut self, data: &[u8], limit: usize) -> usize {
        let room = self.capacity.saturating_sub(self.bytes.len()).min(limit);
        let take = data.len().min(room);
        self.bytes.extend(&data[..take]);
        take
    }

    /// Bytes held (unacknowledged plus unsent).
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Free space left.
    pub(crate) fn room(&self) -> usize {
        self.capacity.saturating_sub(self.bytes.len())
    }

    /// Stream offset one past the newest byte written.
    pub(crate) fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    /// Releases every byte before `offset` (an acknowledgement reached it).
    pub(crate) fn release_to(&mut self, offset: u64) {
        let count = offset
            .saturating_sub(self.base)
            .min(self.bytes.len() as u64);
        // `count` is at most `bytes.len()`, so it fits in usize.
        self.bytes.drain(..count as usize);
        self.base += count;
    }

    /// The length of the segment starting at `offset` when at most `max` bytes may go, after
    /// the SACK-prefix rule. Zero when nothing is buffered there.
    pub(crate) fn cut(&self, offset: u64, max: usize) -> usize {
        let Some(start) = self.index(offset) else {
            return 0;
        };
        let len = (self.bytes.len() - start).min(max);
        if len > SACK_MAGIC.len() && self.looks_like_sack(start) {
            return SACK_MAGIC.len();
        }
        len
    }

    /// Appends `len` bytes starting at stream offset `offset` to `out`.
    /// Returns false (and appends nothing) when the range is not buffered.
    pub(crate) fn copy_to(&self, offset: u64, len: usize, out: &mut Vec<u8>) -> bool {
        let Some(start) = self.index(offset) else {
            return false;
        };
        if start + len > self.bytes.len() {
            return false;
        }
        let (front, back) = self.bytes.as_slices();
        let end = start + len;
        if start < front.len() {
            out.extend_from_slice(&front[start..end.min(front.len())]);
        }
        if end > front.len() {
            out.extend_from_slice(&back[start.saturating_sub(front.len())..end - front.len()]);
        }
        true
    }

    fn index(&self, offset: u64) -> Option<usize> {
        let index = usize::try_from(offset.checked_sub(self.base)?).ok()?;
        (index < self.bytes.len()).then_some(index)
    }

    fn looks_like_sack(&self, start: usize) -> bool {
        let magic = (0..4).all(|i| self.bytes.get(start + i) == Some(&SACK_MAGIC[i]));
        magic && matches!(self.bytes.get(start + 4), Some(1..=4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_is_bounded() {
        let mut buf = SendBuffer::new(10);
        assert_eq!(buf.write(&[1; 8], usize::MAX), 8);
        assert_eq!(buf.write(&[2; 8], usize::MAX), 2);
        assert_eq!(buf.write(&[3; 8], usize::MAX), 0);
        buf.release_to(4);
        assert_eq!(buf.write(&[4; 8], 3), 3);
        assert_eq!(buf.end(), 13);
    }

    #[test]
    fn copies_across_the_ring_seam() {
        let mut buf = SendBuffer::new(8);
        buf.write(&[0, 1, 2, 3, 4, 5], usize::MAX);
        buf.release_to(4);
        buf.write(&[6, 7, 8, 9, 10], usize::MAX);
        let mut out = Vec::new();
        assert!(buf.copy_to(5, 5, &mut out));
        assert_eq!(out, [5, 6, 7, 8, 9]);
        assert!(!buf.copy_to(3, 1, &mut out));
        assert!(!buf.copy_to(10, 2, &mut out));
    }

    #[test]
    fn never_starts_a_segment_with_a_sack_blob() {
        let mut buf = SendBuffer::new(100);
        buf.write(b"SACK\x01\x00\x00\x00\x05\x00\x00\x00\x09tail", usize::MAX);
        assert_eq!(buf.cut(0, 50), 4);
        assert_eq!(buf.cut(4, 50), 13);
        assert_eq!(buf.cut(0, 3), 3);
        let mut plain = SendBuffer::new(100);
        plain.write(b"SACK\x05 is fine", usize::MAX);
        assert_eq!(plain.cut(0, 50), 13);
    }
}
