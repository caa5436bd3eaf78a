//! SACK blocks carried in ACK payloads.
//!
//! v0.5 puts selective acknowledgments in the payload of an ACK segment:
//!
//! ```text
//! "SACK" (4 bytes) | count n (1 byte, 1..=4) | n x (left u32, right u32)
//! ```
//!
//! `left` is the first sequence number held, `right` the first one after the block. A payload
//! is SACK only if it is at least `5 + 8n` bytes, starts with the magic and has `1 <= n <= 4`;
//! bytes after the blocks are ignored. An encoder writes nothing for zero blocks and keeps at
//! most the first four.
//!
//! The format is in-band: a data segment whose payload happens to start with `SACK` and a byte
//! 1-4 is read as SACK by v0.5. [`is_sack`] lets a sender avoid cutting such a segment.
//! Nothing here allocates.

use super::{EmitError, ParseError};

/// Byte ranges of the SACK payload.
pub mod field {
    use core::ops::Range;

    /// The ASCII magic `SACK`.
    pub const MAGIC: Range<usize> = 0..4;
    /// The block count.
    pub const COUNT: usize = 4;
    /// Where the blocks start.
    pub const BLOCKS: usize = 5;
}

/// The magic that starts a SACK payload.
pub const MAGIC: [u8; 4] = *b"SACK";
/// The most blocks one payload carries.
pub const MAX_BLOCKS: usize = 4;
/// Bytes of one block.
pub const BLOCK_LEN: usize = 8;
/// Bytes before the first block.
pub const HEADER_LEN: usize = field::BLOCKS;

/// One received range: `[left, right)` in sequence space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SackBlock {
    /// First sequence number held.
    pub left: u32,
    /// First sequence number after the block.
    pub right: u32,
}

impl SackBlock {
    /// Builds a block.
    pub const fn new(left: u32, right: u32) -> Self {
        Self { left, right }
    }

    fn read(b: [u8; BLOCK_LEN]) -> Self {
        Self {
            left: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            right: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// True when v0.5 would read `payload` as SACK rather than data.
pub fn is_sack(payload: &[u8]) -> bool {
    Sack::new_checked(payload).is_ok()
}

/// A view of a SACK payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sack<B: AsRef<[u8]>> {
    buffer: B,
}

impl<B: AsRef<[u8]>> Sack<B> {
    /// Checks the magic, the count and that every block is present.
    ///
    /// # Errors
    ///
    /// - [`ParseError::Truncated`] for fewer than 5 bytes, or fewer than `5 + 8n`;
    /// - [`ParseError::BadMagic`] when the payload does not start with `SACK`;
    /// - [`ParseError::UnknownValue`] for a count of 0 or above 4.
    pub fn new_checked(buffer: B) -> Result<Self, ParseError> {
        let bytes = buffer.as_ref();
        ParseError::check_len(bytes, HEADER_LEN)?;
        if bytes[field::MAGIC] != MAGIC {
            return Err(ParseError::BadMagic);
        }

        let count = bytes[field::COUNT];
        if count == 0 || usize::from(count) > MAX_BLOCKS {
            return Err(ParseError::UnknownValue {
                field: "sack block count",
                value: count.into(),
            });
        }
        ParseError::check_len(bytes, HEADER_LEN + BLOCK_LEN * usize::from(count))?;
        Ok(Self { buffer })
    }

    /// Number of blocks (1..=4).
    pub fn count(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::COUNT])
    }

    /// Bytes the SACK occupies; anything after is ignored.
    pub fn len(&self) -> usize {
        HEADER_LEN + BLOCK_LEN * self.count()
    }

    /// Never true: a valid SACK has at least one block. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The blocks, in wire order.
    pub fn blocks(&self) -> SackBlocks<'_> {
        let bytes = self.buffer.as_ref();
        SackBlocks {
            chunks: bytes[field::BLOCKS..self.len()].chunks_exact(BLOCK_LEN),
        }
    }
}

/// Iterator over the blocks of a [`Sack`].
#[derive(Debug, Clone)]
pub struct SackBlocks<'a> {
    chunks: core::slice::ChunksExact<'a, u8>,
}

impl Iterator for SackBlocks<'_> {
    type Item = SackBlock;

    fn next(&mut self) -> Option<SackBlock> {
        let chunk = self.chunks.next()?;
        let b: [u8; BLOCK_LEN] = chunk.try_into().ok()?;
        Some(SackBlock::read(b))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for SackBlocks<'_> {}

/// Up to four SACK blocks, stored inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SackRepr {
    blocks: [SackBlock; MAX_BLOCKS],
    len: u8,
}

impl SackRepr {
    /// Keeps the first four of `blocks`, as the v0.5 encoder does.
    pub fn new(blocks: &[SackBlock]) -> Self {
        let mut repr = Self::default();
        for b in blocks.iter().take(MAX_BLOCKS) {
            repr.push(*b);
        }
        repr
    }

    /// Adds a block; returns false (and keeps nothing) when four are already held.
    pub fn push(&mut self, block: SackBlock) -> bool {
        let Some(slot) = self.blocks.get_mut(usize::from(self.len)) else {
            return false;
        };
        *slot = block;
        self.len += 1;
        true
    }

    /// The blocks held.
    pub fn blocks(&self) -> &[SackBlock] {
        &self.blocks[..usize::from(self.len)]
    }

    /// True when no block is held (then [`emit`](Self::emit) writes nothing).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads a checked view.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(sack: &Sack<&T>) -> Self {
        let mut repr = Self::default();
        for b in sack.blocks() {
            repr.push(b);
        }
        repr
    }

    /// Checks and parses a payload.
    ///
    /// # Errors
    ///
    /// As [`Sack::new_checked`].
    pub fn decode(payload: &[u8]) -> Result<Self, ParseError> {
        Ok(Self::parse(&Sack::new_checked(payload)?))
    }

    /// Bytes [`emit`](Self::emit) writes: 0 for no blocks, else `5 + 8n`.
    pub fn buffer_len(&self) -> usize {
        if self.is_empty() {
            return 0;
        }
        HEADER_LEN + BLOCK_LEN * usize::from(self.len)
    }

    /// Writes the payload into the front of `buf`; returns the bytes written.
    ///
    /// # Errors
    ///
    /// [`EmitError::BufferTooSmall`] when `buf` is shorter than
    /// [`buffer_len`](Self::buffer_len).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let len = self.buffer_len();
        EmitError::check_len(buf, len)?;
        if len == 0 {
            return Ok(0);
        }

        buf[field::MAGIC].copy_from_slice(&MAGIC);
        buf[field::COUNT] = self.len;
        let out = buf[field::BLOCKS..len].chunks_exact_mut(BLOCK_LEN);
        for (chunk, block) in out.zip(self.blocks()) {
            chunk[..4].copy_from_slice(&block.left.to_be_bytes());
            chunk[4..].copy_from_slice(&block.right.to_be_bytes());
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn three_block_vector() {
        let bytes = h("5341434b 03 00001000 00002000 00003000 00004000 00005000 00007000");
        let want = SackRepr::new(&[
            SackBlock::new(0x1000, 0x2000),
            SackBlock::new(0x3000, 0x4000),
            SackBlock::new(0x5000, 0x7000),
        ]);
        assert_eq!(SackRepr::decode(&bytes), Ok(want));

        let mut out = [0xa5; 32];
        assert_eq!(want.emit(&mut out), Ok(29));
        assert_eq!(&out[..29], &bytes[..]);
        assert_eq!(&out[29..], &[0xa5; 3]);
    }

    #[test]
    fn observed_single_block() {
        let bytes = h("5341434b 01 00000005 00000009");
        let view = Sack::new_checked(&bytes[..]).unwrap();
        assert_eq!(view.blocks().collect::<Vec<_>>(), [SackBlock::new(5, 9)]);
    }

    #[test]
    fn not_sack() {
        assert_eq!(
            SackRepr::decode(b"SACK"),
            Err(ParseError::Truncated { needed: 5, got: 4 })
        );
        assert_eq!(SackRepr::decode(b"SOCK\x01"), Err(ParseError::BadMagic));
        assert!(matches!(
            SackRepr::decode(b"SACK\x00"),
            Err(ParseError::UnknownValue { .. })
        ));
        assert!(matches!(
            SackRepr::decode(b"SACK\x05"),
            Err(ParseError::UnknownValue { .. })
        ));
        assert_eq!(
            SackRepr::decode(b"SACK\x01\0\0\0\x05"),
            Err(ParseError::Truncated { needed: 13, got: 9 })
        );
        assert!(!is_sack(b"hello"));
        assert!(is_sack(&h("5341434b 01 00000005 00000009 ffff")));
    }

    #[test]
    fn encoder_truncates_and_skips_empty() {
        let many = [SackBlock::new(1, 2); 6];
        assert_eq!(SackRepr::new(&many).blocks().len(), 4);
        assert_eq!(SackRepr::new(&[]).emit(&mut []), Ok(0));
        let mut r = SackRepr::new(&many);
        assert!(!r.push(SackBlock::new(9, 10)));
    }
}
