//! Sequence-number arithmetic: the mapping between 32-bit wire sequence numbers and 64-bit
//! stream offsets.
//!
//! Everything inside the transport works on `u64` stream offsets, which never wrap. A wire
//! sequence number is turned into an offset by taking the signed 32-bit distance from a
//! reference point whose offset is known (RFC 1982 serial arithmetic), so a connection may carry
//! more than 4 GiB and sequence numbers may start anywhere.

/// Maps one direction's sequence space: `seq = isn + 1 + offset` (the SYN consumes `isn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqSpace {
    isn: u32,
}

impl SeqSpace {
    /// A space whose SYN carried `isn`.
    pub(crate) fn new(isn: u32) -> Self {
        Self { isn }
    }

    /// The initial sequence number (the SYN's).
    pub(crate) fn isn(self) -> u32 {
        self.isn
    }

    /// The wire sequence number of stream offset `offset`.
    pub(crate) fn seq(self, offset: u64) -> u32 {
        // Truncation is the point: the wire carries offsets modulo 2^32.
        self.isn.wrapping_add(1).wrapping_add(offset as u32)
    }

    /// The stream offset of `seq`, interpreted as the offset nearest to `reference`.
    /// Returns `None` when the result would lie before the start of the stream (the SYN itself
    /// or older), which no valid segment can name.
    pub(crate) fn offset(self, seq: u32, reference: u64) -> Option<u64> {
        let distance = i64::from(seq.wrapping_sub(self.seq(reference)) as i32);
        reference.checked_add_signed(distance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_across_the_wrap() {
        let space = SeqSpace::new(u32::MAX - 10);
        for offset in [0u64, 5, 9, 10, 11, 1 << 32, (1 << 33) + 77] {
            let seq = space.seq(offset);
            assert_eq!(space.offset(seq, offset), Some(offset));
            assert_eq!(space.offset(seq, offset.saturating_sub(1000)), Some(offset));
            assert_eq!(space.offset(seq, offset + 1000), Some(offset));
        }
    }

    #[test]
    fn before_the_stream_is_none() {
        let space = SeqSpace::new(100);
        assert_eq!(space.offset(100, 0), None);
        assert_eq!(space.offset(101, 0), Some(0));
    }
}
