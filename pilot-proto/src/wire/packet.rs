//! The 34-byte packet header with its CRC-32 checksum.
//!
//! Every virtual packet (stream segment, datagram, control message) is this header followed by
//! `payload_len` payload bytes. [`Packet`] is a zero-copy view over received bytes;
//! [`PacketRepr`] is the parsed value and writes itself back with [`PacketRepr::emit`].
//!
//! ```text
//!  0      1      2-3          4-9        10-15      16-17    18-19    20-23  24-27  28-29  30-33
//! +------+------+------------+----------+----------+--------+--------+------+------+------+-----+
//! |ver|fl| prot | payload len| src addr | dst addr | s.port | d.port | seq  | ack  | win  | crc |
//! +------+------+------------+----------+----------+--------+--------+------+------+------+-----+
//! ```
//!
//! The checksum is CRC-32/IEEE over the header with bytes 30..34 zeroed, then the payload.
//! As in v0.5, bytes after `34 + payload_len` are accepted and ignored (they are outside the
//! checksum), the version nibble is not checked, and unknown protocols are kept as
//! [`Protocol::Unknown`]. Nothing here allocates.

use core::fmt;
use core::ops::{BitOr, BitOrAssign};

use super::addr::{Addr, AddrPort};
use super::{EmitError, ParseError};

/// Byte ranges of the header fields.
pub mod field {
    use core::ops::{Range, RangeFrom};

    /// High nibble version, low nibble flags.
    pub const VER_FLAGS: usize = 0;
    /// Protocol type.
    pub const PROTOCOL: usize = 1;
    /// Payload length (u16).
    pub const PAYLOAD_LEN: Range<usize> = 2..4;
    /// Source address (network u16, node u32).
    pub const SRC_ADDR: Range<usize> = 4..10;
    /// Destination address.
    pub const DST_ADDR: Range<usize> = 10..16;
    /// Source port.
    pub const SRC_PORT: Range<usize> = 16..18;
    /// Destination port.
    pub const DST_PORT: Range<usize> = 18..20;
    /// Sequence number.
    pub const SEQ: Range<usize> = 20..24;
    /// Acknowledgment number.
    pub const ACK: Range<usize> = 24..28;
    /// Receive window in segments.
    pub const WINDOW: Range<usize> = 28..30;
    /// CRC-32 checksum.
    pub const CHECKSUM: Range<usize> = 30..34;
    /// The payload.
    pub const PAYLOAD: RangeFrom<usize> = 34..;
}

/// Bytes in the header.
pub const HEADER_LEN: usize = 34;
/// Largest payload the u16 length field can declare.
pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize;
/// The version v0.5 writes.
pub const VERSION: u8 = 1;

/// The four header flags (low nibble of byte 0).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// No flag set.
    pub const EMPTY: Self = Self(0);
    /// Open a connection.
    pub const SYN: Self = Self(0x1);
    /// The acknowledgment number is valid.
    pub const ACK: Self = Self(0x2);
    /// Close a connection.
    pub const FIN: Self = Self(0x4);
    /// Reset a connection.
    pub const RST: Self = Self(0x8);

    /// Keeps the low four bits of `bits`, the only ones the header has room for.
    pub const fn from_bits_truncate(bits: u8) -> Self {
        Self(bits & 0x0F)
    }

    /// The flag bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True when every flag of `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Flags {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for Flags {
    /// `SYN|ACK` style; `-` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let names = [
            (Self::SYN, "SYN"),
            (Self::ACK, "ACK"),
            (Self::FIN, "FIN"),
            (Self::RST, "RST"),
        ];
        let mut first = true;
        for (flag, name) in names {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({self})")
    }
}

/// The protocol byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Reliable stream transport.
    Stream,
    /// Unreliable datagrams.
    Datagram,
    /// Control messages (ping to port 0).
    Control,
    /// Any other value: decoded, kept, ignored by the daemon.
    Unknown(u8),
}

impl From<u8> for Protocol {
    fn from(v: u8) -> Self {
        match v {
            1 => Self::Stream,
            2 => Self::Datagram,
            3 => Self::Control,
            other => Self::Unknown(other),
        }
    }
}

impl From<Protocol> for u8 {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Stream => 1,
            Protocol::Datagram => 2,
            Protocol::Control => 3,
            Protocol::Unknown(other) => other,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stream => f.write_str("stream"),
            Self::Datagram => f.write_str("datagram"),
            Self::Control => f.write_str("control"),
            Self::Unknown(v) => write!(f, "unknown({v})"),
        }
    }
}

/// A view of a packet: header accessors over any byte buffer of at least 34 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<B: AsRef<[u8]>> {
    buffer: B,
}

/// Reads a big-endian u16 at `range`. Callers pass header ranges, which lie inside the
/// 34 bytes every constructor guarantees, so the indexing cannot fail.
fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// Reads a big-endian u32 at `at` (inside the guaranteed header, as for [`be16`]).
fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads an address at `at` (inside the guaranteed header, as for [`be16`]).
fn addr_at(bytes: &[u8], at: usize) -> Addr {
    Addr::new(be16(bytes, at), be32(bytes, at + 2))
}

impl<B: AsRef<[u8]>> Packet<B> {
    /// Wraps received bytes after checking the header length, the declared payload length and
    /// the checksum.
    ///
    /// # Errors
    ///
    /// - [`ParseError::Truncated`] when fewer than 34 bytes are given;
    /// - [`ParseError::BadLength`] when `34 + payload_len` exceeds the bytes present;
    /// - [`ParseError::BadChecksum`] when the CRC does not match.
    pub fn new_checked(buffer: B) -> Result<Self, ParseError> {
        let packet = Self::new_unverified(buffer)?;
        packet.check_len()?;
        packet.verify_checksum()?;
        Ok(packet)
    }

    /// Wraps bytes checking only that the 34-byte header is present. Use it to build a packet
    /// in place, or to inspect one whose length or checksum is wrong; the payload accessor
    /// clamps to the bytes present.
    ///
    /// # Errors
    ///
    /// [`ParseError::Truncated`] when fewer than 34 bytes are given.
    pub fn new_unverified(buffer: B) -> Result<Self, ParseError> {
        ParseError::check_len(buffer.as_ref(), HEADER_LEN)?;
        Ok(Self { buffer })
    }

    /// Checks that the declared payload is present.
    ///
    /// # Errors
    ///
    /// [`ParseError::BadLength`] when `34 + payload_len` exceeds the bytes present.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let actual = self.buffer.as_ref().len();
        let declared = self.total_len();
        if declared > actual {
            return Err(ParseError::BadLength { declared, actual });
        }
        Ok(())
    }

    /// Checks the CRC-32 carried in the header against the computed one.
    ///
    /// # Errors
    ///
    /// [`ParseError::BadChecksum`] on mismatch.
    pub fn verify_checksum(&self) -> Result<(), ParseError> {
        let declared = self.checksum();
        let computed = self.compute_checksum();
        if declared != computed {
            return Err(ParseError::BadChecksum { declared, computed });
        }
        Ok(())
    }

    /// CRC-32 over the header with the checksum field zeroed, then the declared payload
    /// (clamped to the bytes present).
    pub fn compute_checksum(&self) -> u32 {
        let bytes = self.buffer.as_ref();
        let end = self.total_len().min(bytes.len());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&bytes[..field::CHECKSUM.start]);
        hasher.update(&[0; 4]);
        hasher.update(&bytes[HEADER_LEN..end]);
        hasher.finalize()
    }

    /// Releases the buffer.
    pub fn into_inner(self) -> B {
        self.buffer
    }

    /// Header plus declared payload: the bytes the checksum covers.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// The version nibble (v0.5 writes 1 and never checks it).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_FLAGS] >> 4
    }

    /// The flags nibble.
    pub fn flags(&self) -> Flags {
        Flags::from_bits_truncate(self.buffer.as_ref()[field::VER_FLAGS])
    }

    /// The protocol byte.
    pub fn protocol(&self) -> Protocol {
        Protocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// The declared payload length.
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN.start)
    }

    /// The source address.
    pub fn src_addr(&self) -> Addr {
        addr_at(self.buffer.as_ref(), field::SRC_ADDR.start)
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Addr {
        addr_at(self.buffer.as_ref(), field::DST_ADDR.start)
    }

    /// The source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// The sequence number.
    pub fn seq(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ.start)
    }

    /// The acknowledgment number.
    pub fn ack(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK.start)
    }

    /// The receive window, in segments.
    pub fn window(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW.start)
    }

    /// The checksum carried in the header.
    pub fn checksum(&self) -> u32 {
        be32(self.buffer.as_ref(), field::CHECKSUM.start)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The declared payload, clamped to the bytes present; trailing bytes are not included.
    pub fn payload(&self) -> &'a [u8] {
        let bytes = self.buffer.as_ref();
        let end = self.total_len().min(bytes.len());
        &bytes[HEADER_LEN..end]
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Packet<B> {
    /// Writes version and flags into byte 0 (only the low nibble of `version` fits).
    pub fn set_version_flags(&mut self, version: u8, flags: Flags) {
        self.buffer.as_mut()[field::VER_FLAGS] = (version << 4) | flags.bits();
    }

    /// Writes the protocol byte.
    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.into();
    }

    /// Writes the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&len.to_be_bytes());
    }

    /// Writes the source address.
    pub fn set_src_addr(&mut self, addr: Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.to_bytes());
    }

    /// Writes the destination address.
    pub fn set_dst_addr(&mut self, addr: Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.to_bytes());
    }

    /// Writes the source port.
    pub fn set_src_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&port.to_be_bytes());
    }

    /// Writes the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&port.to_be_bytes());
    }

    /// Writes the sequence number.
    pub fn set_seq(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    /// Writes the acknowledgment number.
    pub fn set_ack(&mut self, ack: u32) {
        self.buffer.as_mut()[field::ACK].copy_from_slice(&ack.to_be_bytes());
    }

    /// Writes the window.
    pub fn set_window(&mut self, window: u16) {
        self.buffer.as_mut()[field::WINDOW].copy_from_slice(&window.to_be_bytes());
    }

    /// Writes a checksum value as is.
    pub fn set_checksum(&mut self, checksum: u32) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    /// Computes the checksum over header and declared payload and writes it.
    pub fn fill_checksum(&mut self) {
        let checksum = self.compute_checksum();
        self.set_checksum(checksum);
    }

    /// The declared payload, mutable, clamped to the bytes present.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len().min(self.buffer.as_ref().len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// A parsed packet: every header field plus the borrowed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketRepr<'a> {
    /// Version nibble (0-15); v0.5 writes [`VERSION`].
    pub version: u8,
    /// Flags nibble.
    pub flags: Flags,
    /// Protocol type.
    pub protocol: Protocol,
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Receive window in segments.
    pub window: u16,
    /// Payload bytes.
    pub payload: &'a [u8],
}

impl<'a> PacketRepr<'a> {
    /// Reads every field of a checked view. v0.5 accepts any version and protocol, so this
    /// does too; unknown protocols come out as [`Protocol::Unknown`].
    ///
    /// # Errors
    ///
    /// [`ParseError::BadLength`] if the view was built with [`Packet::new_unverified`] and
    /// the declared payload is not all present.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Self, ParseError> {
        packet.check_len()?;
        Ok(Self {
            version: packet.version(),
            flags: packet.flags(),
            protocol: packet.protocol(),
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq: packet.seq(),
            ack: packet.ack(),
            window: packet.window(),
            payload: packet.payload(),
        })
    }

    /// Checks `bytes` (length and checksum) and parses them.
    ///
    /// # Errors
    ///
    /// As [`Packet::new_checked`].
    pub fn decode(bytes: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse(&Packet::new_checked(bytes)?)
    }

    /// The source as a socket address.
    pub fn src_addr_port(&self) -> AddrPort {
        AddrPort::new(self.src, self.src_port)
    }

    /// The destination as a socket address.
    pub fn dst_addr_port(&self) -> AddrPort {
        AddrPort::new(self.dst, self.dst_port)
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes header and payload into the front of `buf`, fills in the checksum, and returns
    /// the number of bytes written.
    ///
    /// # Errors
    ///
    /// - [`EmitError::OutOfRange`] for a version above 15 or a payload above 65,535 bytes;
    /// - [`EmitError::BufferTooSmall`] when `buf` is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        self.check_ranges()?;
        let len = self.buffer_len();
        EmitError::check_len(buf, len)?;

        let out = &mut buf[..len];
        out[HEADER_LEN..].copy_from_slice(self.payload);
        let mut packet = Packet { buffer: out };
        packet.set_version_flags(self.version, self.flags);
        packet.set_protocol(self.protocol);
        // check_ranges bounded the payload to u16::MAX.
        packet.set_payload_len(self.payload.len() as u16);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq(self.seq);
        packet.set_ack(self.ack);
        packet.set_window(self.window);
        packet.fill_checksum();
        Ok(len)
    }

    fn check_ranges(&self) -> Result<(), EmitError> {
        if self.version > 0x0F {
            let value = usize::from(self.version);
            return Err(EmitError::OutOfRange {
                field: "version",
                value,
                max: 0x0F,
            });
        }
        if self.payload.len() > MAX_PAYLOAD_LEN {
            let value = self.payload.len();
            return Err(EmitError::OutOfRange {
                field: "payload",
                value,
                max: MAX_PAYLOAD_LEN,
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

    fn a(node: u32) -> Addr {
        Addr::new(0, node)
    }

    /// dataplane.md §9.2 P1: SYN 0:..1:49152 -> 0:..2:1000, seq 0, ack 0, win 512.
    const P1: &str = "11 01 0000 0000 00000001 0000 00000002 c000 03e8 00000000 00000000 0200 \
                      145ed874";
    /// P4: data `hello`, seq 1, ack 1, win 502.
    const P4: &str = "12 01 0005 0000 00000001 0000 00000002 c000 03e8 00000001 00000001 01f6 \
                      5ee872c8 68656c6c6f";

    fn syn() -> PacketRepr<'static> {
        PacketRepr {
            version: VERSION,
            flags: Flags::SYN,
            protocol: Protocol::Stream,
            src: a(1),
            dst: a(2),
            src_port: 49152,
            dst_port: 1000,
            seq: 0,
            ack: 0,
            window: 512,
            payload: &[],
        }
    }

    #[test]
    fn syn_vector() {
        let bytes = h(P1);
        assert_eq!(PacketRepr::decode(&bytes), Ok(syn()));
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap().checksum(),
            0x145e_d874
        );

        let mut out = [0xa5; 40];
        assert_eq!(syn().emit(&mut out), Ok(34));
        assert_eq!(&out[..34], &bytes[..]);
        assert_eq!(&out[34..], &[0xa5; 6]);
    }

    #[test]
    fn data_vector() {
        let bytes = h(P4);
        let want = PacketRepr {
            flags: Flags::ACK,
            seq: 1,
            ack: 1,
            window: 502,
            payload: b"hello",
            ..syn()
        };
        assert_eq!(PacketRepr::decode(&bytes), Ok(want));

        let mut out = vec![0xa5; want.buffer_len()];
        want.emit(&mut out).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn more_section_9_vectors_verify() {
        let vectors = [
            "13 01 0000 0000 00000002 0000 00000001 03e8 c000 00000000 00000001 0200 24f40f8e",
            "14 01 0000 0000 00000001 0000 00000002 c000 03e8 00000006 00000000 0000 07a8a6d2",
            "18 01 0000 0000 00000002 0000 00000001 270f c000 00000000 00000000 0000 e2bb5601",
            "10 02 000d 0000 00000001 0000 00000002 c001 1388 00000000 00000000 0000 aecc370b \
             756e696361737420 68656c6c6f",
            "11 00 0000 0102 03040506 0708 090a0b0c 0d0e 0f10 11121314 15161718 191a f3733e8d",
            "10 03 0004 0000 00000001 0000 00000002 c000 0000 00000007 00000000 0000 6b128122 \
             70696e67",
        ];
        for v in vectors {
            let bytes = h(v);
            let repr = PacketRepr::decode(&bytes).unwrap();
            let mut out = vec![0; repr.buffer_len()];
            repr.emit(&mut out).unwrap();
            assert_eq!(out, bytes, "{v}");
        }

        let p10_bytes = h(vectors[4]);
        let p10 = PacketRepr::decode(&p10_bytes).unwrap();
        assert_eq!(p10.protocol, Protocol::Unknown(0));
        assert_eq!(p10.src, Addr::new(0x0102, 0x0304_0506));
        assert_eq!(p10.window, 0x191a);
    }

    #[test]
    fn rejects_with_reasons() {
        let bytes = h(P4);
        assert_eq!(
            PacketRepr::decode(&bytes[..20]),
            Err(ParseError::Truncated {
                needed: 34,
                got: 20
            })
        );
        assert_eq!(
            PacketRepr::decode(&bytes[..37]),
            Err(ParseError::BadLength {
                declared: 39,
                actual: 37
            })
        );

        let mut flipped = bytes.clone();
        flipped[38] ^= 1;
        assert!(matches!(
            PacketRepr::decode(&flipped),
            Err(ParseError::BadChecksum {
                declared: 0x5ee8_72c8,
                ..
            })
        ));
    }

    #[test]
    fn trailing_bytes_ignored() {
        let mut bytes = h(P4);
        bytes.extend_from_slice(b"junk");
        assert_eq!(PacketRepr::decode(&bytes).unwrap().payload, b"hello");
    }

    #[test]
    fn emit_refuses_what_does_not_fit() {
        let mut out = [0u8; 33];
        assert_eq!(
            syn().emit(&mut out),
            Err(EmitError::BufferTooSmall {
                needed: 34,
                got: 33
            })
        );
        let bad = PacketRepr {
            version: 16,
            ..syn()
        };
        assert!(matches!(
            bad.emit(&mut [0; 64]),
            Err(EmitError::OutOfRange { .. })
        ));
    }

    #[test]
    fn flags_display() {
        assert_eq!((Flags::SYN | Flags::ACK).to_string(), "SYN|ACK");
        assert_eq!(Flags::EMPTY.to_string(), "-");
        assert_eq!(Flags::from_bits_truncate(0xF6), Flags::ACK | Flags::FIN);
    }
}
