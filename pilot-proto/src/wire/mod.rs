//! Every Pilot Protocol v0.5 wire format, as zero-copy views and parse/emit representations.
//!
//! Views (`new_checked` + accessors) never panic on any input once constructed; `Repr`s
//! validate semantics in `parse` and write bytes in `emit`. No policy lives here.

pub mod addr;
pub mod beacon;
pub mod beacon_stream;
pub mod dataexchange;
pub mod event;
pub mod ipc;
pub mod packet;
pub mod registry;
pub mod sack;
pub mod trust;
pub mod tunnel;

/// Why bytes could not be decoded. Small and `Copy`, with enough detail to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Fewer bytes than the format needs.
    #[error("truncated: need {needed} bytes, got {got}")]
    Truncated {
        /// Bytes the format needs at this point.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// A length field disagrees with the bytes present.
    #[error("bad length: declared {declared} bytes, {actual} present")]
    BadLength {
        /// Length the frame declares.
        declared: usize,
        /// Length actually present.
        actual: usize,
    },
    /// The checksum in the frame does not match the computed one.
    #[error("checksum mismatch: frame says {declared:#010x}, computed {computed:#010x}")]
    BadChecksum {
        /// Checksum carried in the frame.
        declared: u32,
        /// Checksum computed over the bytes.
        computed: u32,
    },
    /// A version this implementation does not speak.
    #[error("unknown version {0}")]
    UnknownVersion(u8),
    /// An enumerated field holds a value with no meaning.
    #[error("unknown {field} value {value:#x}")]
    UnknownValue {
        /// Which field.
        field: &'static str,
        /// The value found.
        value: u32,
    },
    /// The frame's magic bytes are not the expected ones.
    #[error("bad magic bytes")]
    BadMagic,
    /// The frame is larger than the format allows.
    #[error("too large: {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Size found.
        len: usize,
        /// Largest size allowed.
        max: usize,
    },
    /// Structurally wrong in a way the other variants do not name.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why a `Repr` could not be written into a buffer. These are caller mistakes (a buffer sized
/// without `buffer_len`, a value the format cannot carry), never a property of received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The output buffer is shorter than `buffer_len()`.
    #[error("buffer too small: need {needed} bytes, got {got}")]
    BufferTooSmall {
        /// Bytes the encoding needs.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
    /// A field holds a value its wire encoding has no room for.
    #[error("{field} value {value} does not fit (max {max})")]
    OutOfRange {
        /// Which field.
        field: &'static str,
        /// The value given.
        value: usize,
        /// The largest value the field can carry.
        max: usize,
    },
    /// The fields contradict each other, so the bytes would not parse back to the same value.
    #[error("inconsistent fields: {reason}")]
    Inconsistent {
        /// Which fields clash, and how.
        reason: &'static str,
    },
}

impl EmitError {
    /// Checks that `buf` has at least `needed` bytes.
    ///
    /// # Errors
    ///
    /// [`EmitError::BufferTooSmall`] otherwise.
    pub fn check_len(buf: &[u8], needed: usize) -> Result<(), Self> {
        if buf.len() < needed {
            return Err(Self::BufferTooSmall {
                needed,
                got: buf.len(),
            });
        }
        Ok(())
    }
}

impl ParseError {
    /// Checks that `bytes` has at least `needed` bytes.
    ///
    /// # Errors
    ///
    /// [`ParseError::Truncated`] otherwise.
    pub fn check_len(bytes: &[u8], needed: usize) -> Result<(), Self> {
        if bytes.len() < needed {
            return Err(Self::Truncated {
                needed,
                got: bytes.len(),
            });
        }
        Ok(())
    }
}
