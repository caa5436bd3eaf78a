//! Data-exchange frames (port 1001).
//!
//! A data-exchange stream carries frames of `type u32 | length u32 | body`, all big-endian.
//! Types are 1 TEXT, 2 BINARY, 3 JSON and 4 FILE; any other value is allowed and kept as
//! [`DataType::Unknown`]. A body may be at most 16 MiB (exactly 2^24 bytes is allowed). A FILE
//! body is `name_len u16 | name | contents`; when the body is too short for that prefix, v0.5
//! keeps the name empty and treats the whole body as contents, and so does [`DataFrameRepr`]
//! (its `filename` is then `None`).
//!
//! Frames travel in a byte stream, so [`frame_len`] tells a reassembler how many bytes the next
//! frame needs before it can be parsed. Nothing here allocates.

use core::fmt;

use super::{EmitError, ParseError};

/// Byte ranges of a data-exchange frame.
pub mod field {
    use core::ops::{Range, RangeFrom};

    /// Frame type (u32).
    pub const TYPE: Range<usize> = 0..4;
    /// Body length (u32).
    pub const LENGTH: Range<usize> = 4..8;
    /// The body.
    pub const BODY: RangeFrom<usize> = 8..;
    /// Filename length at the start of a FILE body (u16).
    pub const NAME_LEN: Range<usize> = 0..2;
}

/// Bytes before the body.
pub const HEADER_LEN: usize = 8;
/// Largest body a reader accepts: 16 MiB.
pub const MAX_BODY_LEN: usize = 1 << 24;

/// The frame type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// UTF-8 text.
    Text,
    /// Opaque bytes.
    Binary,
    /// A JSON document.
    Json,
    /// A named file.
    File,
    /// Any other value; carried, not interpreted.
    Unknown(u32),
}

impl From<u32> for DataType {
    fn from(v: u32) -> Self {
        match v {
            1 => Self::Text,
            2 => Self::Binary,
            3 => Self::Json,
            4 => Self::File,
            other => Self::Unknown(other),
        }
    }
}

impl From<DataType> for u32 {
    fn from(t: DataType) -> Self {
        match t {
            DataType::Text => 1,
            DataType::Binary => 2,
            DataType::Json => 3,
            DataType::File => 4,
            DataType::Unknown(other) => other,
        }
    }
}

impl fmt::Display for DataType {
    /// The names v0.5 uses in its replies: `TEXT`, `BINARY`, `JSON`, `FILE`, `UNKNOWN(n)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text => f.write_str("TEXT"),
            Self::Binary => f.write_str("BINARY"),
            Self::Json => f.write_str("JSON"),
            Self::File => f.write_str("FILE"),
            Self::Unknown(v) => write!(f, "UNKNOWN({v})"),
        }
    }
}

/// How many bytes the frame starting at `prefix` occupies, once its header is present.
///
/// Returns `Ok(None)` while fewer than 8 bytes are buffered.
///
/// # Errors
///
/// [`ParseError::TooLarge`] when the declared body exceeds [`MAX_BODY_LEN`]; a stream that
/// says so cannot be resynchronised and should be closed.
pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some(header) = prefix.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let body = body_len_of(header);
    if body > MAX_BODY_LEN {
        return Err(ParseError::TooLarge {
            len: body,
            max: MAX_BODY_LEN,
        });
    }
    Ok(Some(HEADER_LEN + body))
}

fn body_len_of(header: &[u8; HEADER_LEN]) -> usize {
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    // A u32 always fits in usize on the 32- and 64-bit targets this crate supports.
    usize::try_from(len).unwrap_or(usize::MAX)
}

/// A view of one data-exchange frame at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrame<B: AsRef<[u8]>> {
    buffer: B,
}

impl<B: AsRef<[u8]>> DataFrame<B> {
    /// Checks the header, the size cap and that the whole body is present. Bytes after the
    /// frame (the next frame of the stream) are allowed and not part of it.
    ///
    /// # Errors
    ///
    /// [`ParseError::Truncated`] for fewer than 8 bytes, [`ParseError::TooLarge`] for a body
    /// above 16 MiB, [`ParseError::BadLength`] when the body is not all present.
    pub fn new_checked(buffer: B) -> Result<Self, ParseError> {
        let bytes = buffer.as_ref();
        let Some(declared) = frame_len(bytes)? else {
            return Err(ParseError::Truncated {
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        };
        if declared > bytes.len() {
            return Err(ParseError::BadLength {
                declared,
                actual: bytes.len(),
            });
        }
        Ok(Self { buffer })
    }

    /// The frame type.
    pub fn data_type(&self) -> DataType {
        let b = self.buffer.as_ref();
        DataType::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The declared body length.
    pub fn body_len(&self) -> usize {
        self.frame_len() - HEADER_LEN
    }

    /// Header plus body.
    pub fn frame_len(&self) -> usize {
        // new_checked proved the header is present and the length valid.
        frame_len(self.buffer.as_ref())
            .ok()
            .flatten()
            .unwrap_or(HEADER_LEN)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> DataFrame<&'a T> {
    /// The body.
    pub fn body(&self) -> &'a [u8] {
        let bytes = self.buffer.as_ref();
        &bytes[HEADER_LEN..self.frame_len()]
    }
}

/// A parsed data-exchange frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataFrameRepr<'a> {
    /// The frame type.
    pub data_type: DataType,
    /// For FILE frames with a well-formed name prefix, the name bytes (v0.5 does not require
    /// UTF-8). `None` for every other frame.
    pub filename: Option<&'a [u8]>,
    /// The body, or for named FILE frames the file contents after the name.
    pub payload: &'a [u8],
}

impl<'a> DataFrameRepr<'a> {
    /// A TEXT frame.
    pub fn text(text: &'a str) -> Self {
        Self {
            data_type: DataType::Text,
            filename: None,
            payload: text.as_bytes(),
        }
    }

    /// A FILE frame with a name.
    pub fn file(name: &'a [u8], contents: &'a [u8]) -> Self {
        Self {
            data_type: DataType::File,
            filename: Some(name),
            payload: contents,
        }
    }

    /// Reads a checked view, splitting the FILE name prefix off as v0.5 does.
    ///
    /// # Errors
    ///
    /// None today; the `Result` keeps the signature uniform with the other `Repr`s.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &DataFrame<&'a T>) -> Result<Self, ParseError> {
        let data_type = frame.data_type();
        let body = frame.body();
        if data_type != DataType::File {
            return Ok(Self {
                data_type,
                filename: None,
                payload: body,
            });
        }

        let Some(&[hi, lo]) = body.first_chunk::<2>() else {
            return Ok(Self {
                data_type,
                filename: None,
                payload: body,
            });
        };
        let name_end = 2 + usize::from(u16::from_be_bytes([hi, lo]));
        match (body.get(2..name_end), body.get(name_end..)) {
            (Some(name), Some(rest)) => Ok(Self {
                data_type,
                filename: Some(name),
                payload: rest,
            }),
            _ => Ok(Self {
                data_type,
                filename: None,
                payload: body,
            }),
        }
    }

    /// Checks and parses the frame at the front of `bytes`.
    ///
    /// # Errors
    ///
    /// As [`DataFrame::new_checked`].
    pub fn decode(bytes: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse(&DataFrame::new_checked(bytes)?)
    }

    /// Body length: the payload plus, for a named file, its 2-byte length and name.
    pub fn body_len(&self) -> usize {
        self.filename.map_or(0, |n| 2 + n.len()) + self.payload.len()
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    /// Writes the frame into the front of `buf`; returns the bytes written.
    ///
    /// # Errors
    ///
    /// [`EmitError::Inconsistent`] for a filename on a non-FILE frame,
    /// [`EmitError::OutOfRange`] for a name above 65,535 bytes or a body above 16 MiB,
    /// [`EmitError::BufferTooSmall`] when `buf` is too short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        self.check()?;
        let len = self.buffer_len();
        EmitError::check_len(buf, len)?;

        let body_len = self.body_len() as u32; // check() bounded it to 2^24.
        buf[field::TYPE].copy_from_slice(&u32::from(self.data_type).to_be_bytes());
        buf[field::LENGTH].copy_from_slice(&body_len.to_be_bytes());
        let mut at = HEADER_LEN;
        if let Some(name) = self.filename {
            let name_len = name.len() as u16; // check() bounded it to u16::MAX.
            buf[at..at + 2].copy_from_slice(&name_len.to_be_bytes());
            buf[at + 2..at + 2 + name.len()].copy_from_slice(name);
            at += 2 + name.len();
        }
        buf[at..len].copy_from_slice(self.payload);
        Ok(len)
    }

    fn check(&self) -> Result<(), EmitError> {
        if self.filename.is_some() && self.data_type != DataType::File {
            return Err(EmitError::Inconsistent {
                reason: "filename on a non-FILE frame",
            });
        }
        let name_len = self.filename.map_or(0, <[u8]>::len);
        if name_len > usize::from(u16::MAX) {
            let max = usize::from(u16::MAX);
            return Err(EmitError::OutOfRange {
                field: "filename",
                value: name_len,
                max,
            });
        }
        if self.body_len() > MAX_BODY_LEN {
            let value = self.body_len();
            return Err(EmitError::OutOfRange {
                field: "body",
                value,
                max: MAX_BODY_LEN,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn text_vector() {
        let bytes = h("00000001 0000000b 68656c6c6f20776f726c64");
        let repr = DataFrameRepr::text("hello world");
        assert_eq!(DataFrameRepr::decode(&bytes), Ok(repr));
        let mut out = [0xa5; 19];
        assert_eq!(repr.emit(&mut out), Ok(19));
        assert_eq!(&out[..], &bytes[..]);
    }

    #[test]
    fn file_vector() {
        let bytes =
            h("00000004 0000001c 0008 746573742e747874 66696c6520636f6e74656e74732068657265");
        let repr = DataFrameRepr::file(b"test.txt", b"file contents here");
        assert_eq!(DataFrameRepr::decode(&bytes), Ok(repr));
        let mut out = vec![0; repr.buffer_len()];
        repr.emit(&mut out).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn file_without_valid_name_keeps_whole_body() {
        let short = h("00000004 00000001 41");
        let bad_len = h("00000004 00000004 00ff 4142");
        for bytes in [short, bad_len] {
            let repr = DataFrameRepr::decode(&bytes).unwrap();
            assert_eq!(repr.filename, None);
            assert_eq!(repr.payload, &bytes[8..]);
            let mut out = vec![0; repr.buffer_len()];
            repr.emit(&mut out).unwrap();
            assert_eq!(out, bytes);
        }
    }

    #[test]
    fn limits_and_streams() {
        let at_cap = h("00000002 01000000");
        assert_eq!(frame_len(&at_cap), Ok(Some(8 + (1 << 24))));
        let over = h("00000002 01000001");
        assert!(matches!(frame_len(&over), Err(ParseError::TooLarge { .. })));
        assert_eq!(frame_len(&over[..7]), Ok(None));
        assert_eq!(
            DataFrame::new_checked(&at_cap[..]),
            Err(ParseError::BadLength {
                declared: 8 + (1 << 24),
                actual: 8
            })
        );

        let two = h("00000001 00000001 41 00000063 00000000");
        let first = DataFrame::new_checked(&two[..]).unwrap();
        assert_eq!(first.frame_len(), 9);
        let second = DataFrameRepr::decode(&two[9..]).unwrap();
        assert_eq!(second.data_type, DataType::Unknown(99));
        assert_eq!(second.data_type.to_string(), "UNKNOWN(99)");
    }

    #[test]
    fn emit_rejects_name_on_text() {
        let bad = DataFrameRepr {
            filename: Some(b"x"),
            ..DataFrameRepr::text("t")
        };
        assert!(matches!(
            bad.emit(&mut [0; 64]),
            Err(EmitError::Inconsistent { .. })
        ));
    }
}
