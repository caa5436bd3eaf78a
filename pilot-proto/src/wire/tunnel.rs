//! Tunnel frames PILT, PILS, PILK, PILA and PILP: the first bytes of every UDP datagram on the
//! tunnel socket (`docs/design/tunnel.md#frames`).
//!
//! This module owns the byte layouts only: zero-copy views (`*Frame`, constructed with
//! `new_checked`) and owned or borrowed representations (`*Repr`, with `parse`, `buffer_len` and
//! `emit`). It performs no cryptography and holds no policy; sealing and key exchange live in
//! `crate::crypto` and `crate::tunnel`. All integers are big-endian.

use super::{EmitError, ParseError};

/// Byte ranges of the tunnel frames, shared by the views and the reprs.
pub mod field {
    use core::ops::{Range, RangeFrom};

    /// The 4-byte magic that starts every tunnel frame.
    pub const MAGIC: Range<usize> = 0..4;
    /// PILT: the marshalled packet.
    pub const PLAIN_PACKET: RangeFrom<usize> = 4..;
    /// PILS, PILK, PILA: the sender's node id.
    pub const SENDER: Range<usize> = 4..8;
    /// PILS: the 12-byte AES-GCM nonce.
    pub const NONCE: Range<usize> = 8..20;
    /// PILS: the nonce's 4-byte prefix.
    pub const NONCE_PREFIX: Range<usize> = 8..12;
    /// PILS: the nonce's 64-bit counter.
    pub const NONCE_COUNTER: Range<usize> = 12..20;
    /// PILS: ciphertext followed by the 16-byte tag.
    pub const SEALED: RangeFrom<usize> = 20..;
    /// PILK, PILA: the sender's X25519 public key.
    pub const X25519_KEY: Range<usize> = 8..40;
    /// PILA: the sender's Ed25519 public key.
    pub const ED25519_KEY: Range<usize> = 40..72;
    /// PILA: the Ed25519 signature over [`super::auth_signed_message`].
    pub const SIGNATURE: Range<usize> = 72..136;
}

/// Length of the magic.
pub const MAGIC_LEN: usize = 4;
/// Length of a marshalled packet header (the smallest packet a PILT may carry).
pub const PACKET_HEADER_LEN: usize = 34;
/// Length of the AES-GCM tag at the end of a PILS frame.
pub const TAG_LEN: usize = 16;
/// Bytes a PILS frame adds in front of the ciphertext (magic, sender, nonce).
pub const SEALED_HEADER_LEN: usize = 20;
/// Smallest PILS frame v0.5 accepts: header and tag around an empty ciphertext.
pub const SEALED_MIN_LEN: usize = SEALED_HEADER_LEN + TAG_LEN;
/// Smallest PILT frame: magic and a packet header.
pub const PLAIN_MIN_LEN: usize = MAGIC_LEN + PACKET_HEADER_LEN;
/// Length of a PILK frame (receivers ignore anything after it).
pub const KEY_EXCHANGE_LEN: usize = 40;
/// Length of a PILA frame (receivers ignore anything after it).
pub const AUTH_KEY_EXCHANGE_LEN: usize = 136;
/// Length of the message a PILA signs.
pub const AUTH_SIGNED_LEN: usize = 40;

/// The three bytes every tunnel magic starts with.
const MAGIC_STEM: [u8; 3] = *b"PIL";

/// Which tunnel frame a datagram is, from its magic. Total: unknown magics are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// `PILT`: a plaintext packet.
    Plain,
    /// `PILS`: an AES-256-GCM sealed packet.
    Sealed,
    /// `PILK`: an anonymous X25519 key exchange.
    KeyExchange,
    /// `PILA`: an Ed25519-authenticated X25519 key exchange.
    AuthKeyExchange,
    /// `PILP`: a NAT punch probe.
    Punch,
    /// Any other magic.
    Unknown([u8; 4]),
}

impl FrameKind {
    /// Classifies a datagram. Returns `None` when it is not a tunnel frame at all (shorter than
    /// a magic, or not starting with `PIL`); such datagrams belong to the beacon client.
    pub fn classify(datagram: &[u8]) -> Option<Self> {
        let magic: [u8; MAGIC_LEN] = datagram.get(field::MAGIC)?.try_into().ok()?;
        if magic[..3] != MAGIC_STEM {
            return None;
        }
        Some(Self::from(magic))
    }

    /// The frame's 4-byte magic.
    pub fn magic(self) -> [u8; 4] {
        match self {
            Self::Plain => *b"PILT",
            Self::Sealed => *b"PILS",
            Self::KeyExchange => *b"PILK",
            Self::AuthKeyExchange => *b"PILA",
            Self::Punch => *b"PILP",
            Self::Unknown(magic) => magic,
        }
    }
}

impl From<[u8; 4]> for FrameKind {
    fn from(magic: [u8; 4]) -> Self {
        match &magic {
            b"PILT" => Self::Plain,
            b"PILS" => Self::Sealed,
            b"PILK" => Self::KeyExchange,
            b"PILA" => Self::AuthKeyExchange,
            b"PILP" => Self::Punch,
            _ => Self::Unknown(magic),
        }
    }
}

/// The message a PILA signs: ASCII `auth` (no colon) ‖ sender node id ‖ X25519 public key.
pub fn auth_signed_message(sender: u32, public_key: &[u8; 32]) -> [u8; AUTH_SIGNED_LEN] {
    let mut message = [0u8; AUTH_SIGNED_LEN];
    message[..4].copy_from_slice(b"auth");
    message[4..8].copy_from_slice(&sender.to_be_bytes());
    message[8..].copy_from_slice(public_key);
    message
}

/// The 20 bytes in front of a PILS ciphertext: magic, sender, nonce.
pub fn sealed_header(sender: u32, nonce: Nonce) -> [u8; SEALED_HEADER_LEN] {
    let mut header = [0u8; SEALED_HEADER_LEN];
    header[field::MAGIC].copy_from_slice(&FrameKind::Sealed.magic());
    header[field::SENDER].copy_from_slice(&sender.to_be_bytes());
    header[field::NONCE].copy_from_slice(&nonce.to_bytes());
    header
}

/// The 12-byte AES-GCM nonce of a PILS frame: a 4-byte sender-chosen prefix and a 64-bit
/// counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce {
    /// Random per-session prefix chosen by the sender.
    pub prefix: [u8; 4],
    /// Per-session counter; v0.5 senders start at 1.
    pub counter: u64,
}

impl Nonce {
    /// The nonce as it appears on the wire.
    pub fn to_bytes(self) -> [u8; 12] {
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&self.prefix);
        bytes[4..].copy_from_slice(&self.counter.to_be_bytes());
        bytes
    }

    /// Reads a nonce from its wire form.
    pub fn from_bytes(bytes: [u8; 12]) -> Self {
        let (prefix, counter) = bytes.split_at(4);
        Self {
            prefix: to_array(prefix),
            counter: u64::from_be_bytes(to_array(counter)),
        }
    }
}

/// A view of a PILT frame.
#[derive(Debug, Clone)]
pub struct PlainFrame<B: AsRef<[u8]>> {
    bytes: B,
}

impl<B: AsRef<[u8]>> PlainFrame<B> {
    /// Checks the magic and that a whole packet header follows it.
    ///
    /// # Errors
    /// [`ParseError::BadMagic`] or [`ParseError::Truncated`].
    pub fn new_checked(bytes: B) -> Result<Self, ParseError> {
        check(bytes.as_ref(), FrameKind::Plain, PLAIN_MIN_LEN)?;
        Ok(Self { bytes })
    }

    /// The marshalled packet (not decoded or checksum-checked here).
    pub fn packet(&self) -> &[u8] {
        &self.bytes.as_ref()[field::PLAIN_PACKET]
    }

    /// The inner packet's source node id (header bytes 6..10), used to tell who a plaintext
    /// frame claims to come from.
    pub fn packet_src_node(&self) -> u32 {
        read_u32(self.packet(), 6)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> B {
        self.bytes
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> PlainFrame<B> {
    /// The marshalled packet, mutably.
    pub fn packet_mut(&mut self) -> &mut [u8] {
        &mut self.bytes.as_mut()[field::PLAIN_PACKET]
    }
}

/// A view of a PILS frame.
#[derive(Debug, Clone)]
pub struct SealedFrame<B: AsRef<[u8]>> {
    bytes: B,
}

impl<B: AsRef<[u8]>> SealedFrame<B> {
    /// Checks the magic and that header and tag are present.
    ///
    /// # Errors
    /// [`ParseError::BadMagic`] or [`ParseError::Truncated`].
    pub fn new_checked(bytes: B) -> Result<Self, ParseError> {
        check(bytes.as_ref(), FrameKind::Sealed, SEALED_MIN_LEN)?;
        Ok(Self { bytes })
    }

    /// The sender's node id (not covered by the AEAD).
    pub fn sender(&self) -> u32 {
        read_u32(self.bytes.as_ref(), field::SENDER.start)
    }

    /// The nonce.
    pub fn nonce(&self) -> Nonce {
        Nonce::from_bytes(to_array(&self.bytes.as_ref()[field::NONCE]))
    }

    /// Ciphertext with the tag appended.
    pub fn sealed(&self) -> &[u8] {
        &self.bytes.as_ref()[field::SEALED]
    }

    /// Length of the plaintext packet inside.
    pub fn plaintext_len(&self) -> usize {
        self.sealed().len() - TAG_LEN
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> B {
        self.bytes
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> SealedFrame<B> {
    /// Writes the magic, sender and nonce.
    pub fn set_header(&mut self, sender: u32, nonce: Nonce) {
        let bytes = self.bytes.as_mut();
        bytes[field::MAGIC].copy_from_slice(&FrameKind::Sealed.magic());
        bytes[field::SENDER].copy_from_slice(&sender.to_be_bytes());
        bytes[field::NONCE].copy_from_slice(&nonce.to_bytes());
    }

    /// Ciphertext and tag, mutably (for opening in place).
    pub fn sealed_mut(&mut self) -> &mut [u8] {
        &mut self.bytes.as_mut()[field::SEALED]
    }
}

/// A view of a PILK frame.
#[derive(Debug, Clone)]
pub struct KeyExchangeFrame<B: AsRef<[u8]>> {
    bytes: B,
}

impl<B: AsRef<[u8]>> KeyExchangeFrame<B> {
    /// Checks the magic and the length (longer frames are accepted; the excess is ignored).
    ///
    /// # Errors
    /// [`ParseError::BadMagic`] or [`ParseError::Truncated`].
    pub fn new_checked(bytes: B) -> Result<Self, ParseError> {
        check(bytes.as_ref(), FrameKind::KeyExchange, KEY_EXCHANGE_LEN)?;
        Ok(Self { bytes })
    }

    /// The sender's node id.
    pub fn sender(&self) -> u32 {
        read_u32(self.bytes.as_ref(), field::SENDER.start)
    }

    /// The sender's X25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        to_array(&self.bytes.as_ref()[field::X25519_KEY])
    }
}

/// A view of a PILA frame.
#[derive(Debug, Clone)]
pub struct AuthKeyExchangeFrame<B: AsRef<[u8]>> {
    bytes: B,
}

impl<B: AsRef<[u8]>> AuthKeyExchangeFrame<B> {
    /// Checks the magic and the length (longer frames are accepted; the excess is ignored).
    ///
    /// # Errors
    /// [`ParseError::BadMagic`] or [`ParseError::Truncated`].
    pub fn new_checked(bytes: B) -> Result<Self, ParseError> {
        check(
            bytes.as_ref(),
            FrameKind::AuthKeyExchange,
            AUTH_KEY_EXCHANGE_LEN,
        )?;
        Ok(Self { bytes })
    }

    /// The sender's node id.
    pub fn sender(&self) -> u32 {
        read_u32(self.bytes.as_ref(), field::SENDER.start)
    }

    /// The sender's X25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        to_array(&self.bytes.as_ref()[field::X25519_KEY])
    }

    /// The sender's Ed25519 public key as the frame claims it.
    pub fn signing_key(&self) -> [u8; 32] {
        to_array(&self.bytes.as_ref()[field::ED25519_KEY])
    }

    /// The Ed25519 signature over [`auth_signed_message`].
    pub fn signature(&self) -> [u8; 64] {
        to_array(&self.bytes.as_ref()[field::SIGNATURE])
    }
}

/// A PILT frame: a marshalled packet sent in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainRepr<'a> {
    /// The marshalled packet, header included.
    pub packet: &'a [u8],
}

/// A PILS frame with its sealed body borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedRepr<'a> {
    /// The sender's node id.
    pub sender: u32,
    /// The AES-GCM nonce.
    pub nonce: Nonce,
    /// Ciphertext with the 16-byte tag appended (at least 16 bytes).
    pub sealed: &'a [u8],
}

/// A PILK frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyExchangeRepr {
    /// The sender's node id.
    pub sender: u32,
    /// The sender's X25519 public key.
    pub public_key: [u8; 32],
}

/// A PILA frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthKeyExchangeRepr {
    /// The sender's node id.
    pub sender: u32,
    /// The sender's X25519 public key.
    pub public_key: [u8; 32],
    /// The sender's Ed25519 public key.
    pub signing_key: [u8; 32],
    /// Ed25519 signature over [`auth_signed_message`] of `sender` and `public_key`.
    pub signature: [u8; 64],
}

impl AuthKeyExchangeRepr {
    /// The 40 bytes the signature must cover.
    pub fn signed_message(&self) -> [u8; AUTH_SIGNED_LEN] {
        auth_signed_message(self.sender, &self.public_key)
    }
}

/// Any tunnel frame, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelRepr<'a> {
    /// `PILT`.
    Plain(PlainRepr<'a>),
    /// `PILS`.
    Sealed(SealedRepr<'a>),
    /// `PILK`.
    KeyExchange(KeyExchangeRepr),
    /// `PILA`.
    AuthKeyExchange(AuthKeyExchangeRepr),
    /// `PILP`.
    Punch,
}

impl<'a> TunnelRepr<'a> {
    /// Parses a whole datagram.
    ///
    /// # Errors
    /// [`ParseError::BadMagic`] for a datagram that is not a known tunnel frame,
    /// [`ParseError::Truncated`] when the frame is shorter than its kind requires.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, ParseError> {
        match FrameKind::classify(datagram) {
            Some(FrameKind::Plain) => {
                PlainFrame::new_checked(datagram)?;
                Ok(Self::Plain(PlainRepr {
                    packet: &datagram[field::PLAIN_PACKET],
                }))
            }
            Some(FrameKind::Sealed) => {
                let frame = SealedFrame::new_checked(datagram)?;
                let (sender, nonce) = (frame.sender(), frame.nonce());
                Ok(Self::Sealed(SealedRepr {
                    sender,
                    nonce,
                    sealed: &datagram[field::SEALED],
                }))
            }
            Some(FrameKind::KeyExchange) => {
                let frame = KeyExchangeFrame::new_checked(datagram)?;
                let (sender, public_key) = (frame.sender(), frame.public_key());
                Ok(Self::KeyExchange(KeyExchangeRepr { sender, public_key }))
            }
            Some(FrameKind::AuthKeyExchange) => {
                let frame = AuthKeyExchangeFrame::new_checked(datagram)?;
                Ok(Self::AuthKeyExchange(AuthKeyExchangeRepr {
                    sender: frame.sender(),
                    public_key: frame.public_key(),
                    signing_key: frame.signing_key(),
                    signature: frame.signature(),
                }))
            }
            Some(FrameKind::Punch) => Ok(Self::Punch),
            Some(FrameKind::Unknown(_)) | None => Err(ParseError::BadMagic),
        }
    }

    /// The frame's kind.
    pub fn kind(&self) -> FrameKind {
        match self {
            Self::Plain(_) => FrameKind::Plain,
            Self::Sealed(_) => FrameKind::Sealed,
            Self::KeyExchange(_) => FrameKind::KeyExchange,
            Self::AuthKeyExchange(_) => FrameKind::AuthKeyExchange,
            Self::Punch => FrameKind::Punch,
        }
    }

    /// Bytes [`Self::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Self::Plain(plain) => MAGIC_LEN + plain.packet.len(),
            Self::Sealed(sealed) => SEALED_HEADER_LEN + sealed.sealed.len(),
            Self::KeyExchange(_) => KEY_EXCHANGE_LEN,
            Self::AuthKeyExchange(_) => AUTH_KEY_EXCHANGE_LEN,
            Self::Punch => MAGIC_LEN,
        }
    }

    /// Writes the frame at the start of `buf` and returns its length.
    ///
    /// # Errors
    /// [`EmitError::BufferTooSmall`] when `buf` is shorter than [`Self::buffer_len`]; nothing
    /// is written then.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let len = self.buffer_len();
        EmitError::check_len(buf, len)?;
        let out = &mut buf[..len];
        out[field::MAGIC].copy_from_slice(&self.kind().magic());
        match self {
            Self::Plain(plain) => out[field::PLAIN_PACKET].copy_from_slice(plain.packet),
            Self::Sealed(sealed) => {
                out[field::SENDER].copy_from_slice(&sealed.sender.to_be_bytes());
                out[field::NONCE].copy_from_slice(&sealed.nonce.to_bytes());
                out[field::SEALED].copy_from_slice(sealed.sealed);
            }
            Self::KeyExchange(key) => {
                out[field::SENDER].copy_from_slice(&key.sender.to_be_bytes());
                out[field::X25519_KEY].copy_from_slice(&key.public_key);
            }
            Self::AuthKeyExchange(auth) => {
                out[field::SENDER].copy_from_slice(&auth.sender.to_be_bytes());
                out[field::X25519_KEY].copy_from_slice(&auth.public_key);
                out[field::ED25519_KEY].copy_from_slice(&auth.signing_key);
                out[field::SIGNATURE].copy_from_slice(&auth.signature);
            }
            Self::Punch => {}
        }
        Ok(len)
    }
}

/// Shared `new_checked` logic: right magic, at least `min_len` bytes.
fn check(bytes: &[u8], kind: FrameKind, min_len: usize) -> Result<(), ParseError> {
    if bytes.len() < MAGIC_LEN {
        return Err(ParseError::Truncated {
            needed: MAGIC_LEN,
            got: bytes.len(),
        });
    }
    if bytes[field::MAGIC] != kind.magic() {
        return Err(ParseError::BadMagic);
    }
    if bytes.len() < min_len {
        return Err(ParseError::Truncated {
            needed: min_len,
            got: bytes.len(),
        });
    }
    Ok(())
}

/// Reads a big-endian `u32` at `at`. Callers have checked the length in `new_checked`.
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(to_array(&bytes[at..at + 4]))
}

/// Copies a slice whose length the caller has fixed into an array.
fn to_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const PILK_NODE1: &str =
        "50494c4b000000018520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    const PILS_P1: &str = concat!(
        "50494c5300000001a1a2a3a40000000000000001d52fce1fb819d552c48b1e34f59bd67010a58a5287c2",
        "bdf7f21e7fad6efe0761f75ac91446eec564eaee12fac147950aa682"
    );

    #[test]
    fn classify_splits_tunnel_from_beacon() {
        assert_eq!(FrameKind::classify(b"PILT\0"), Some(FrameKind::Plain));
        assert_eq!(FrameKind::classify(b"PILP"), Some(FrameKind::Punch));
        assert_eq!(
            FrameKind::classify(b"PILX"),
            Some(FrameKind::Unknown(*b"PILX"))
        );
        assert_eq!(FrameKind::classify(b"PIL"), None);
        assert_eq!(FrameKind::classify(&[0x01, 0, 0, 0, 5]), None);
        for kind in [FrameKind::Plain, FrameKind::Sealed, FrameKind::KeyExchange] {
            assert_eq!(FrameKind::from(kind.magic()), kind);
        }
    }

    #[test]
    fn spec_pilk_vector_parses() {
        let bytes = hex::decode(PILK_NODE1).unwrap();
        let Ok(TunnelRepr::KeyExchange(key)) = TunnelRepr::parse(&bytes) else {
            panic!("not a PILK");
        };
        assert_eq!(key.sender, 1);
        assert_eq!(key.public_key[..2], [0x85, 0x20]);
        let mut out = [0xa5u8; 40];
        assert_eq!(TunnelRepr::KeyExchange(key).emit(&mut out), Ok(40));
        assert_eq!(out[..], bytes[..]);
    }

    #[test]
    fn spec_pils_vector_fields() {
        let bytes = hex::decode(PILS_P1).unwrap();
        let frame = SealedFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.sender(), 1);
        assert_eq!(
            frame.nonce(),
            Nonce {
                prefix: [0xa1, 0xa2, 0xa3, 0xa4],
                counter: 1
            }
        );
        assert_eq!(frame.plaintext_len(), 34);
        assert_eq!(bytes.len(), 70);
    }

    #[test]
    fn short_frames_are_truncated_errors() {
        let needed = |bytes: &[u8]| match TunnelRepr::parse(bytes) {
            Err(ParseError::Truncated { needed, .. }) => needed,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(needed(&[b'P', b'I', b'L', b'S', 0, 0]), SEALED_MIN_LEN);
        assert_eq!(needed(b"PILK1234"), KEY_EXCHANGE_LEN);
        assert_eq!(
            needed(&[b"PILA".as_slice(), &[0; 131]].concat()),
            AUTH_KEY_EXCHANGE_LEN
        );
        assert_eq!(
            needed(&[b"PILT".as_slice(), &[0; 33]].concat()),
            PLAIN_MIN_LEN
        );
        assert_eq!(TunnelRepr::parse(b"PILQ1234"), Err(ParseError::BadMagic));
        assert_eq!(TunnelRepr::parse(b"\x01abc"), Err(ParseError::BadMagic));
    }

    #[test]
    fn key_exchange_excess_is_ignored() {
        let mut bytes = hex::decode(PILK_NODE1).unwrap();
        bytes.extend_from_slice(b"trailing");
        assert!(matches!(
            TunnelRepr::parse(&bytes),
            Ok(TunnelRepr::KeyExchange(_))
        ));
    }

    #[test]
    fn emit_refuses_short_buffer() {
        let mut out = [0u8; 3];
        assert_eq!(
            TunnelRepr::Punch.emit(&mut out),
            Err(EmitError::BufferTooSmall { needed: 4, got: 3 })
        );
    }

    #[test]
    fn signed_message_layout() {
        let message = auth_signed_message(1, &[7; 32]);
        assert_eq!(&message[..8], b"auth\0\0\0\x01");
        assert_eq!(message[8..], [7; 32]);
    }

    /// Owned inputs from which a borrowed `TunnelRepr` is built.
    #[derive(Debug, Clone)]
    enum Owned {
        Plain(Vec<u8>),
        Sealed(u32, [u8; 4], u64, Vec<u8>),
        Key(u32, [u8; 32]),
        Auth(u32, [u8; 32], [u8; 32], Vec<u8>),
        Punch,
    }

    impl Owned {
        fn repr(&self) -> TunnelRepr<'_> {
            match self {
                Self::Plain(packet) => TunnelRepr::Plain(PlainRepr { packet }),
                Self::Sealed(sender, prefix, counter, sealed) => TunnelRepr::Sealed(SealedRepr {
                    sender: *sender,
                    nonce: Nonce {
                        prefix: *prefix,
                        counter: *counter,
                    },
                    sealed,
                }),
                Self::Key(sender, public_key) => TunnelRepr::KeyExchange(KeyExchangeRepr {
                    sender: *sender,
                    public_key: *public_key,
                }),
                Self::Auth(sender, public_key, signing_key, signature) => {
                    TunnelRepr::AuthKeyExchange(AuthKeyExchangeRepr {
                        sender: *sender,
                        public_key: *public_key,
                        signing_key: *signing_key,
                        signature: to_array(signature),
                    })
                }
                Self::Punch => TunnelRepr::Punch,
            }
        }
    }

    fn owned() -> impl Strategy<Value = Owned> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), PACKET_HEADER_LEN..200).prop_map(Owned::Plain),
            (
                any::<u32>(),
                any::<[u8; 4]>(),
                any::<u64>(),
                prop::collection::vec(any::<u8>(), 16..200)
            )
                .prop_map(|(s, p, c, b)| Owned::Sealed(s, p, c, b)),
            (any::<u32>(), any::<[u8; 32]>()).prop_map(|(s, k)| Owned::Key(s, k)),
            (
                any::<u32>(),
                any::<[u8; 32]>(),
                any::<[u8; 32]>(),
                prop::collection::vec(any::<u8>(), 64)
            )
                .prop_map(|(s, k, e, sig)| Owned::Auth(s, k, e, sig)),
            Just(Owned::Punch),
        ]
    }

    proptest! {
        #[test]
        fn parse_emit_round_trip(owned in owned()) {
            let repr = owned.repr();
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            prop_assert_eq!(repr.emit(&mut buf), Ok(buf.len()));
            prop_assert_eq!(TunnelRepr::parse(&buf), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            magic in prop::sample::select(vec![*b"PILT", *b"PILS", *b"PILK", *b"PILA", *b"PILP"]),
            body in prop::collection::vec(any::<u8>(), 0..200),
            raw in prop::collection::vec(any::<u8>(), 0..16),
        ) {
            let bytes = [magic.as_slice(), &body].concat();
            if let Ok(repr) = TunnelRepr::parse(&bytes) {
                let mut out = vec![0u8; repr.buffer_len()];
                prop_assert!(repr.emit(&mut out).is_ok());
                prop_assert_eq!(TunnelRepr::parse(&out), Ok(repr));
            }
            let _ = TunnelRepr::parse(&raw);
            let _ = FrameKind::classify(&raw);
        }
    }
}
