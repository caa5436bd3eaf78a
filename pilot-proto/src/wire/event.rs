//! Event-stream frames (port 1002): `u16 topic length ‖ topic ‖ u32 payload length ‖ payload`.
//!
//! This module owns the byte layout only: a zero-copy view ([`EventFrame`]) that checks lengths
//! once and then never panics, and a [`EventRepr`] that parses and emits. The topic is opaque
//! bytes here, as in v0.5; the topic grammar lives in `pubsub::topic`. Frames arrive on a byte
//! stream, so [`frame_len`] says how long the next frame is before it has fully arrived.

use super::{EmitError, ParseError};

/// Byte ranges of the fixed fields.
mod field {
    use std::ops::Range;

    /// Big-endian `u16` topic length.
    pub(super) const TOPIC_LEN: Range<usize> = 0..2;
    /// Size of the payload-length field that follows the topic.
    pub(super) const PAYLOAD_LEN_SIZE: usize = 4;
}

/// Bytes of framing around the topic and payload: the two length fields.
pub const OVERHEAD: usize = 6;

/// Longest topic a v0.5 reader accepts, in bytes.
pub const MAX_TOPIC_LEN: usize = 1_024;

/// Longest payload a v0.5 reader accepts, in bytes (exactly 16 MiB is allowed).
pub const MAX_PAYLOAD_LEN: usize = 16 * 1_024 * 1_024;

/// Returns the length of the frame at the start of `buf`, `Ok(None)` while too few bytes have
/// arrived to know, or an error when the declared lengths exceed the v0.5 reader limits.
///
/// The returned length may exceed `buf.len()`: the caller keeps reading until it has that many.
///
/// # Errors
///
/// [`ParseError::TooLarge`] when the topic or payload length is over its limit.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some(topic_len) = read_u16(buf, 0) else {
        return Ok(None);
    };
    let topic_len = usize::from(topic_len);
    if topic_len > MAX_TOPIC_LEN {
        return Err(ParseError::TooLarge {
            len: topic_len,
            max: MAX_TOPIC_LEN,
        });
    }

    let Some(payload_len) = read_u32(buf, field::TOPIC_LEN.end + topic_len) else {
        return Ok(None);
    };
    let payload_len = usize::try_from(payload_len).unwrap_or(usize::MAX);
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(ParseError::TooLarge {
            len: payload_len,
            max: MAX_PAYLOAD_LEN,
        });
    }
    Ok(Some(OVERHEAD + topic_len + payload_len))
}

/// A view of one event frame at the start of a buffer.
///
/// Once [`EventFrame::new_checked`] has succeeded every accessor is infallible; bytes after the
/// frame (the start of the next one on a stream) are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFrame<B: AsRef<[u8]>> {
    bytes: B,
    topic_len: usize,
    payload_len: usize,
}

impl<B: AsRef<[u8]>> EventFrame<B> {
    /// Checks that `bytes` starts with one complete frame within the v0.5 limits.
    ///
    /// # Errors
    ///
    /// [`ParseError::Truncated`] when the frame is incomplete and [`ParseError::TooLarge`] when
    /// a length is over its limit.
    pub fn new_checked(bytes: B) -> Result<Self, ParseError> {
        let buf = bytes.as_ref();
        let got = buf.len();
        let Some(total) = frame_len(buf)? else {
            let needed = match read_u16(buf, 0) {
                Some(topic_len) => OVERHEAD + usize::from(topic_len),
                None => field::TOPIC_LEN.end,
            };
            return Err(ParseError::Truncated { needed, got });
        };
        if got < total {
            return Err(ParseError::Truncated { needed: total, got });
        }

        // frame_len returned Some, so both length fields are present.
        let topic_len = usize::from(read_u16(buf, 0).unwrap_or(0));
        let payload_len = total - OVERHEAD - topic_len;
        Ok(Self {
            bytes,
            topic_len,
            payload_len,
        })
    }

    /// Returns the topic bytes (opaque: v0.5 does not check UTF-8).
    pub fn topic(&self) -> &[u8] {
        let start = field::TOPIC_LEN.end;
        &self.bytes.as_ref()[start..start + self.topic_len]
    }

    /// Returns the payload bytes.
    pub fn payload(&self) -> &[u8] {
        let start = field::TOPIC_LEN.end + self.topic_len + field::PAYLOAD_LEN_SIZE;
        &self.bytes.as_ref()[start..start + self.payload_len]
    }

    /// Returns the length of the whole frame, headers included.
    pub fn frame_len(&self) -> usize {
        OVERHEAD + self.topic_len + self.payload_len
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> B {
        self.bytes
    }
}

/// The decoded content of an event frame, borrowing from the buffer it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRepr<'a> {
    /// Topic bytes, at most [`MAX_TOPIC_LEN`].
    pub topic: &'a [u8],
    /// Payload bytes, at most [`MAX_PAYLOAD_LEN`].
    pub payload: &'a [u8],
}

impl<'a> EventRepr<'a> {
    /// Builds a frame to send, checking the v0.5 reader limits (the Go writer checks nothing).
    ///
    /// # Errors
    ///
    /// [`EmitError::OutOfRange`] when the topic or payload would be refused by a reader.
    pub fn new(topic: &'a [u8], payload: &'a [u8]) -> Result<Self, EmitError> {
        if topic.len() > MAX_TOPIC_LEN {
            let (value, max) = (topic.len(), MAX_TOPIC_LEN);
            return Err(EmitError::OutOfRange {
                field: "topic length",
                value,
                max,
            });
        }
        if payload.len() > MAX_PAYLOAD_LEN {
            let (value, max) = (payload.len(), MAX_PAYLOAD_LEN);
            return Err(EmitError::OutOfRange {
                field: "payload length",
                value,
                max,
            });
        }
        Ok(Self { topic, payload })
    }

    /// Reads the fields of a checked frame.
    pub fn parse<B: AsRef<[u8]>>(frame: &'a EventFrame<B>) -> Self {
        Self {
            topic: frame.topic(),
            payload: frame.payload(),
        }
    }

    /// Returns the number of bytes [`EventRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        OVERHEAD + self.topic.len() + self.payload.len()
    }

    /// Writes the frame into the first [`EventRepr::buffer_len`] bytes of `buf`.
    ///
    /// # Errors
    ///
    /// [`EmitError::BufferTooSmall`] when `buf` is too short (nothing is written then), and
    /// [`EmitError::OutOfRange`] when a length does not fit its field.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let total = self.buffer_len();
        EmitError::check_len(buf, total)?;
        let Ok(topic_len) = u16::try_from(self.topic.len()) else {
            let (value, max) = (self.topic.len(), usize::from(u16::MAX));
            return Err(EmitError::OutOfRange {
                field: "topic length",
                value,
                max,
            });
        };
        let Ok(payload_len) = u32::try_from(self.payload.len()) else {
            let (value, max) = (self.payload.len(), u32::MAX as usize);
            return Err(EmitError::OutOfRange {
                field: "payload length",
                value,
                max,
            });
        };

        let topic_end = field::TOPIC_LEN.end + self.topic.len();
        buf[field::TOPIC_LEN].copy_from_slice(&topic_len.to_be_bytes());
        buf[field::TOPIC_LEN.end..topic_end].copy_from_slice(self.topic);
        buf[topic_end..topic_end + 4].copy_from_slice(&payload_len.to_be_bytes());
        buf[topic_end + 4..total].copy_from_slice(self.payload);
        Ok(total)
    }

    /// Appends the frame to `out`.
    pub fn emit_to_vec(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.buffer_len(), 0);
        // The buffer was just sized to fit, so only an over-long field can fail; such a frame
        // is not written at all.
        if self.emit(&mut out[start..]).is_err() {
            out.truncate(start);
        }
    }

    /// Returns the frame as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        self.emit_to_vec(&mut out);
        out
    }
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    let bytes = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_whole(bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>, usize), ParseError> {
        let frame = EventFrame::new_checked(bytes)?;
        let repr = EventRepr::parse(&frame);
        Ok((
            repr.topic.to_vec(),
            repr.payload.to_vec(),
            frame.frame_len(),
        ))
    }

    #[test]
    fn spec_vector_subscribe_alerts() {
        let bytes = hex::decode("0006616c65727473 00000000".replace(' ', "")).unwrap();
        let (topic, payload, len) = parse_whole(&bytes).unwrap();
        assert_eq!(
            (topic.as_slice(), payload.as_slice(), len),
            (&b"alerts"[..], &b""[..], 12)
        );
        assert_eq!(EventRepr::new(b"alerts", b"").unwrap().to_vec(), bytes);
    }

    #[test]
    fn spec_vector_publish_server_is_down() {
        let hex = "0006616c657274730000000e7365727665722069732064 6f776e".replace(' ', "");
        let bytes = hex::decode(hex).unwrap();
        let repr = EventRepr::new(b"alerts", b"server is down").unwrap();
        assert_eq!(repr.to_vec(), bytes);
        assert_eq!(bytes.len(), 26);
    }

    #[test]
    fn spec_vector_sensor_data() {
        let hex = "000b73656e736f722d646174610000001074656d70657261747572653d32322e35";
        let bytes = hex::decode(hex).unwrap();
        let (topic, payload, _) = parse_whole(&bytes).unwrap();
        assert_eq!(topic, b"sensor-data");
        assert_eq!(payload, b"temperature=22.5");
    }

    #[test]
    fn limits_match_the_go_reader() {
        let mut long_topic = vec![0x07, 0xd0]; // 2,000-byte topic
        long_topic.extend_from_slice(&[b'a'; 2_000]);
        assert_eq!(
            frame_len(&long_topic),
            Err(ParseError::TooLarge {
                len: 2_000,
                max: 1_024
            })
        );

        let big_payload = hex::decode("0001610200000000").unwrap(); // 32 MiB
        assert!(matches!(
            frame_len(&big_payload),
            Err(ParseError::TooLarge { .. })
        ));

        let exact = [&[0x00, 0x00, 0x01, 0x00, 0x00, 0x00][..]].concat(); // exactly 16 MiB
        assert_eq!(frame_len(&exact), Ok(Some(OVERHEAD + MAX_PAYLOAD_LEN)));
    }

    #[test]
    fn truncated_frames_report_what_they_need() {
        let bytes = EventRepr::new(b"abc", b"xyz").unwrap().to_vec();
        for cut in 0..bytes.len() {
            let err = EventFrame::new_checked(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, ParseError::Truncated { got, .. } if got == cut),
                "{cut}"
            );
        }
    }

    #[test]
    fn three_frames_back_to_back_decode_in_order() {
        let mut stream = Vec::new();
        for (topic, payload) in [(&b"a"[..], &b"1"[..]), (b"bb", b""), (b"*", b"333")] {
            EventRepr::new(topic, payload)
                .unwrap()
                .emit_to_vec(&mut stream);
        }
        let mut rest = stream.as_slice();
        let mut seen = Vec::new();
        while !rest.is_empty() {
            let (topic, payload, len) = parse_whole(rest).unwrap();
            seen.push((topic, payload));
            rest = &rest[len..];
        }
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2], (b"*".to_vec(), b"333".to_vec()));
    }

    #[test]
    fn emit_refuses_short_buffers_and_fills_exactly() {
        let repr = EventRepr::new(b"t", b"p").unwrap();
        let mut buf = [0xa5; 9];
        assert!(repr.emit(&mut buf[..7]).is_err());
        assert_eq!(repr.emit(&mut buf), Ok(8));
        assert_eq!(buf, [0, 1, b't', 0, 0, 0, 1, b'p', 0xa5]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = frame_len(&bytes);
            if let Ok(frame) = EventFrame::new_checked(&bytes[..]) {
                let repr = EventRepr::parse(&frame);
                prop_assert!(repr.buffer_len() <= bytes.len());
            }
        }

        #[test]
        fn parse_emit_round_trips(
            topic in proptest::collection::vec(any::<u8>(), 0..=MAX_TOPIC_LEN),
            payload in proptest::collection::vec(any::<u8>(), 0..512),
            trailing in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut bytes = EventRepr::new(&topic, &payload).unwrap().to_vec();
            let len = bytes.len();
            bytes.extend_from_slice(&trailing);
            prop_assert_eq!(frame_len(&bytes), Ok(Some(len)));
            let (t, p, parsed_len) = parse_whole(&bytes).unwrap();
            prop_assert_eq!((t, p, parsed_len), (topic, payload, len));
        }
    }
}
