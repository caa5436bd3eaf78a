//! Virtual addresses and socket addresses: binary and text forms, ports.
//!
//! An [`Addr`] is a 16-bit network ID plus a 32-bit node ID, 6 bytes on the wire (network first,
//! both big-endian). Its text form is `<net decimal>:<NNNN>.<HHHH>.<LLLL>`: the network in
//! decimal, then the *same* network again as four hex digits, then the node ID's upper and lower
//! halves as four hex digits each. [`AddrPort`] appends `:<port decimal>`.
//!
//! Parsing follows v0.5 exactly (see `docs/PROTOCOL.md`, "Addresses"): the first `:` splits
//! network from groups, every group must be exactly four characters, hex of either case is
//! accepted, and the hex copy of the network must equal the decimal one. Each way a string can
//! be wrong has its own [`AddrParseError`] variant.

use core::fmt;
use core::ops::RangeInclusive;
use core::str::FromStr;

use super::ParseError;

/// A Pilot virtual address: network ID and node ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Addr {
    /// The network (0 is the backbone).
    pub network: u16,
    /// The node within the network.
    pub node: u32,
}

impl Addr {
    /// Bytes in the binary form.
    pub const LEN: usize = 6;
    /// The node ID that means "every node of the network".
    pub const BROADCAST_NODE: u32 = 0xFFFF_FFFF;
    /// `0:0000.0000.0000`, the unset address.
    pub const ZERO: Self = Self::new(0, 0);
    /// `0:0000.0000.0001`, declared by v0.5 for the registry. The registry hands out node IDs
    /// from 1, so in practice this is an ordinary node; nothing routes by it.
    pub const REGISTRY: Self = Self::new(0, 1);
    /// `0:0000.0000.0002`, declared for the beacon; an ordinary node in practice.
    pub const BEACON: Self = Self::new(0, 2);
    /// `0:0000.0000.0003`, declared for the nameserver; an ordinary node in practice.
    pub const NAMESERVER: Self = Self::new(0, 3);

    /// Builds an address from its parts.
    pub const fn new(network: u16, node: u32) -> Self {
        Self { network, node }
    }

    /// The broadcast address of `network` (node `0xFFFF_FFFF`).
    pub const fn broadcast(network: u16) -> Self {
        Self::new(network, Self::BROADCAST_NODE)
    }

    /// True for network 0, node 0.
    pub const fn is_zero(self) -> bool {
        self.network == 0 && self.node == 0
    }

    /// True when the node is `0xFFFF_FFFF`, whatever the network.
    pub const fn is_broadcast(self) -> bool {
        self.node == Self::BROADCAST_NODE
    }

    /// Decodes the 6-byte binary form.
    pub const fn from_bytes(b: [u8; Self::LEN]) -> Self {
        Self {
            network: u16::from_be_bytes([b[0], b[1]]),
            node: u32::from_be_bytes([b[2], b[3], b[4], b[5]]),
        }
    }

    /// Encodes the 6-byte binary form.
    pub const fn to_bytes(self) -> [u8; Self::LEN] {
        let n = self.network.to_be_bytes();
        let d = self.node.to_be_bytes();
        [n[0], n[1], d[0], d[1], d[2], d[3]]
    }

    /// Decodes the binary form from the first 6 bytes of `bytes`; extra bytes are ignored.
    ///
    /// # Errors
    ///
    /// [`ParseError::Truncated`] when fewer than 6 bytes are given.
    pub fn read(bytes: &[u8]) -> Result<Self, ParseError> {
        match bytes.first_chunk::<{ Self::LEN }>() {
            Some(b) => Ok(Self::from_bytes(*b)),
            None => Err(ParseError::Truncated {
                needed: Self::LEN,
                got: bytes.len(),
            }),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hi = self.node >> 16;
        let lo = self.node & 0xFFFF;
        write!(f, "{}:{:04X}.{hi:04X}.{lo:04X}", self.network, self.network)
    }
}

/// What is wrong with an address or socket-address string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddrParseError {
    /// No `:` separates the decimal network from the hex groups.
    #[error("missing ':' between the decimal network and the hex groups")]
    MissingColon,
    /// Nothing before the first `:`.
    #[error("the decimal network before ':' is empty")]
    EmptyNetwork,
    /// The network holds something other than the digits 0-9.
    #[error("the network before ':' must be decimal digits only")]
    NetworkNotDecimal,
    /// The decimal network is above 65535.
    #[error("the decimal network does not fit in 16 bits (max 65535)")]
    NetworkTooLarge,
    /// The part after the first `:` does not have exactly three `.`-separated groups.
    #[error("expected 3 dot-separated hex groups after ':', found {found}")]
    GroupCount {
        /// Groups found.
        found: usize,
    },
    /// A group is not exactly four characters long.
    #[error("hex group {index} is {len} bytes long, expected exactly 4")]
    GroupLength {
        /// Which group, counting from 1.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// A group holds a character that is not a hex digit.
    #[error("hex group {index} contains a character that is not a hex digit")]
    GroupNotHex {
        /// Which group, counting from 1.
        index: usize,
    },
    /// The first hex group is not the decimal network written in hex.
    #[error("network mismatch: decimal {decimal} but hex group says {hex} ({hex:#06X})")]
    NetworkMismatch {
        /// The network written in decimal.
        decimal: u16,
        /// The network written in the first hex group.
        hex: u16,
    },
    /// A socket address without a `:port` suffix.
    #[error("missing ':<port>' after the address")]
    MissingPort,
    /// Nothing after the last `:`.
    #[error("the port after the last ':' is empty")]
    EmptyPort,
    /// The port holds something other than the digits 0-9.
    #[error("the port must be decimal digits only")]
    PortNotDecimal,
    /// The port is above 65535.
    #[error("the port does not fit in 16 bits (max 65535)")]
    PortTooLarge,
}

/// Why a decimal u16 failed to parse, before it is mapped to a field-specific error.
enum DecimalError {
    Empty,
    NotDigits,
    TooLarge,
}

/// Parses unsigned decimal as v0.5 does: digits only (leading zeros allowed), at most 65535.
fn parse_decimal_u16(s: &str) -> Result<u16, DecimalError> {
    if s.is_empty() {
        return Err(DecimalError::Empty);
    }

    let mut value: u16 = 0;
    for &b in s.as_bytes() {
        if !b.is_ascii_digit() {
            return Err(DecimalError::NotDigits);
        }
        let digit = u16::from(b - b'0');
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(digit))
            .ok_or(DecimalError::TooLarge)?;
    }
    Ok(value)
}

/// Parses one 4-character hex group (either case, no sign or prefix).
fn parse_hex_group(group: &str, index: usize) -> Result<u16, AddrParseError> {
    let mut value: u16 = 0;
    for &b in group.as_bytes() {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(AddrParseError::GroupNotHex { index }),
        };
        // Four digits of at most 0xF cannot overflow 16 bits.
        value = (value << 4) | u16::from(digit);
    }
    Ok(value)
}

/// Splits `s` on `.` into exactly three groups, without allocating.
fn split_groups(s: &str) -> Result<[&str; 3], AddrParseError> {
    let found = s.split('.').count();
    let mut it = s.split('.');
    match (it.next(), it.next(), it.next(), found) {
        (Some(a), Some(b), Some(c), 3) => Ok([a, b, c]),
        _ => Err(AddrParseError::GroupCount { found }),
    }
}

impl FromStr for Addr {
    type Err = AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (net_text, rest) = s.split_once(':').ok_or(AddrParseError::MissingColon)?;

        let network = parse_decimal_u16(net_text).map_err(|e| match e {
            DecimalError::Empty => AddrParseError::EmptyNetwork,
            DecimalError::NotDigits => AddrParseError::NetworkNotDecimal,
            DecimalError::TooLarge => AddrParseError::NetworkTooLarge,
        })?;

        let groups = split_groups(rest)?;
        for (i, g) in groups.iter().enumerate() {
            if g.len() != 4 {
                return Err(AddrParseError::GroupLength {
                    index: i + 1,
                    len: g.len(),
                });
            }
        }

        let [net_hex, hi, lo] = groups;
        let net_hex = parse_hex_group(net_hex, 1)?;
        let hi = parse_hex_group(hi, 2)?;
        let lo = parse_hex_group(lo, 3)?;
        if net_hex != network {
            return Err(AddrParseError::NetworkMismatch {
                decimal: network,
                hex: net_hex,
            });
        }
        Ok(Self::new(network, (u32::from(hi) << 16) | u32::from(lo)))
    }
}

/// A virtual address plus a virtual port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AddrPort {
    /// The node's address.
    pub addr: Addr,
    /// The port on that node.
    pub port: u16,
}

impl AddrPort {
    /// Bytes in the binary form (address then big-endian port), as IPC uses it.
    pub const LEN: usize = 8;

    /// Builds a socket address from its parts.
    pub const fn new(addr: Addr, port: u16) -> Self {
        Self { addr, port }
    }

    /// Decodes the 8-byte binary form.
    pub const fn from_bytes(b: [u8; Self::LEN]) -> Self {
        let addr = Addr::from_bytes([b[0], b[1], b[2], b[3], b[4], b[5]]);
        Self::new(addr, u16::from_be_bytes([b[6], b[7]]))
    }

    /// Encodes the 8-byte binary form.
    pub const fn to_bytes(self) -> [u8; Self::LEN] {
        let a = self.addr.to_bytes();
        let p = self.port.to_be_bytes();
        [a[0], a[1], a[2], a[3], a[4], a[5], p[0], p[1]]
    }

    /// Decodes the binary form from the first 8 bytes of `bytes`; extra bytes are ignored.
    ///
    /// # Errors
    ///
    /// [`ParseError::Truncated`] when fewer than 8 bytes are given.
    pub fn read(bytes: &[u8]) -> Result<Self, ParseError> {
        match bytes.first_chunk::<{ Self::LEN }>() {
            Some(b) => Ok(Self::from_bytes(*b)),
            None => Err(ParseError::Truncated {
                needed: Self::LEN,
                got: bytes.len(),
            }),
        }
    }
}

impl fmt::Display for AddrPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

impl FromStr for AddrPort {
    type Err = AddrParseError;

    /// Splits at the *last* `:`; the left part is an [`Addr`], the right a decimal port.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr_text, port_text) = s.rsplit_once(':').ok_or(AddrParseError::MissingPort)?;

        let port = parse_decimal_u16(port_text).map_err(|e| match e {
            DecimalError::Empty => AddrParseError::EmptyPort,
            DecimalError::NotDigits => AddrParseError::PortNotDecimal,
            DecimalError::TooLarge => AddrParseError::PortTooLarge,
        })?;
        Ok(Self::new(addr_text.parse()?, port))
    }
}

/// Well-known virtual ports.
pub mod port {
    /// Control-protocol ping target: a control packet to port 0 is answered with a pong.
    pub const PING: u16 = 0;
    /// Declared by v0.5, unused.
    pub const CONTROL: u16 = 1;
    /// Built-in echo service (stream).
    pub const ECHO: u16 = 7;
    /// Nameserver (a separate application).
    pub const NAMESERVER: u16 = 53;
    /// HTTP (used by gateway applications only).
    pub const HTTP: u16 = 80;
    /// Secure channel (library applications).
    pub const SECURE: u16 = 443;
    /// Trust handshake service, always bound by the daemon.
    pub const TRUST: u16 = 444;
    /// Standard I/O: raw bytes; default destination of `pilotctl connect`.
    pub const STDIO: u16 = 1000;
    /// Data exchange service.
    pub const DATA_EXCHANGE: u16 = 1001;
    /// Event stream (pub/sub broker).
    pub const EVENT_STREAM: u16 = 1002;
    /// Task submit service.
    pub const TASK_SUBMIT: u16 = 1003;
}

/// Reserved ports (well-known services).
pub const RESERVED_PORTS: RangeInclusive<u16> = 0..=1023;
/// Registered ports.
pub const REGISTERED_PORTS: RangeInclusive<u16> = 1024..=49151;
/// Ephemeral ports, handed out to dialers and datagram senders.
pub const EPHEMERAL_PORTS: RangeInclusive<u16> = 49152..=65535;
/// The first ephemeral port, where v0.5's allocator starts counting.
pub const FIRST_EPHEMERAL_PORT: u16 = 49152;

/// Which range a port falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortClass {
    /// 0-1023.
    Reserved,
    /// 1024-49151.
    Registered,
    /// 49152-65535.
    Ephemeral,
}

impl PortClass {
    /// Classifies `port`.
    pub const fn of(port: u16) -> Self {
        match port {
            0..=1023 => Self::Reserved,
            1024..=49151 => Self::Registered,
            _ => Self::Ephemeral,
        }
    }
}

/// True for ports 0-1023.
pub const fn is_reserved_port(port: u16) -> bool {
    matches!(PortClass::of(port), PortClass::Reserved)
}

/// True for ports 49152-65535.
pub const fn is_ephemeral_port(port: u16) -> bool {
    matches!(PortClass::of(port), PortClass::Ephemeral)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Result<Addr, AddrParseError> {
        s.parse()
    }

    #[test]
    fn text_forms_pinned_by_v05() {
        let cases = [
            (Addr::new(0, 0), "0:0000.0000.0000"),
            (Addr::new(0, 1), "0:0000.0000.0001"),
            (Addr::new(0, 0x2A), "0:0000.0000.002A"),
            (Addr::new(1, 0xF291_0004), "1:0001.F291.0004"),
            (Addr::new(23, 1), "23:0017.0000.0001"),
            (Addr::broadcast(0), "0:0000.FFFF.FFFF"),
            (Addr::broadcast(5), "5:0005.FFFF.FFFF"),
            (Addr::new(65535, 0xFFFF_FFFF), "65535:FFFF.FFFF.FFFF"),
        ];
        for (a, text) in cases {
            assert_eq!(a.to_string(), text);
            assert_eq!(addr(text), Ok(a), "{text}");
        }
    }

    #[test]
    fn lenient_forms_accepted() {
        assert_eq!(addr("007:0007.abcd.ef01"), Ok(Addr::new(7, 0xABCD_EF01)));
        assert_eq!(addr("1:0001.00a3.F291"), Ok(Addr::new(1, 0x00A3_F291)));
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        use AddrParseError as E;
        let cases = [
            ("", E::MissingColon),
            ("0", E::MissingColon),
            (":0000.0000.0000", E::EmptyNetwork),
            ("+1:0001.0000.0000", E::NetworkNotDecimal),
            ("0:0000", E::GroupCount { found: 1 }),
            ("0:0000.0000", E::GroupCount { found: 2 }),
            ("0:0000.0000.0000.0000", E::GroupCount { found: 4 }),
            ("0:000.0000.0000", E::GroupLength { index: 1, len: 3 }),
            ("0:0000.000.0000", E::GroupLength { index: 2, len: 3 }),
            ("99999:0000.0000.0000", E::NetworkTooLarge),
            ("0:ZZZZ.0000.0000", E::GroupNotHex { index: 1 }),
            ("0:0000.+FFF.0000", E::GroupNotHex { index: 2 }),
            (
                "1:0000.0000.0001",
                E::NetworkMismatch { decimal: 1, hex: 0 },
            ),
            (
                "1:00A3.F291.0004",
                E::NetworkMismatch {
                    decimal: 1,
                    hex: 0xA3,
                },
            ),
            ("1:0001.00A3.F291:80", E::GroupLength { index: 3, len: 7 }),
        ];
        for (text, want) in cases {
            assert_eq!(addr(text), Err(want), "{text:?}");
        }
    }

    #[test]
    fn socket_address_text() {
        let sa: AddrPort = "1:0001.00A3.F291:80".parse().unwrap();
        assert_eq!(sa, AddrPort::new(Addr::new(1, 0x00A3_F291), 80));
        assert_eq!(sa.to_string(), "1:0001.00A3.F291:80");

        use AddrParseError as E;
        let bad = [
            ("", E::MissingPort),
            ("noport", E::MissingPort),
            ("1:0001.00A3.F291:", E::EmptyPort),
            ("1:0001.00A3.F291:99999", E::PortTooLarge),
            ("1:0001.00A3.F291:-1", E::PortNotDecimal),
            ("0:0000.0000:7", E::GroupCount { found: 2 }),
        ];
        for (text, want) in bad {
            assert_eq!(text.parse::<AddrPort>(), Err(want), "{text:?}");
        }
    }

    #[test]
    fn binary_forms() {
        let a = Addr::new(0x0102, 0x0304_0506);
        assert_eq!(a.to_bytes(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(Addr::read(&[1, 2, 3, 4, 5, 6, 9]), Ok(a));
        assert_eq!(
            Addr::read(&[1, 2]),
            Err(ParseError::Truncated { needed: 6, got: 2 })
        );

        let sa = AddrPort::new(a, 0x0708);
        assert_eq!(sa.to_bytes(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(AddrPort::from_bytes(sa.to_bytes()), sa);
    }

    #[test]
    fn port_ranges() {
        assert!(is_reserved_port(port::TRUST));
        assert!(!is_reserved_port(1024));
        assert_eq!(PortClass::of(port::EVENT_STREAM), PortClass::Reserved);
        assert_eq!(PortClass::of(5000), PortClass::Registered);
        assert!(is_ephemeral_port(FIRST_EPHEMERAL_PORT));
        assert!(!is_ephemeral_port(49151));
        assert!(EPHEMERAL_PORTS.contains(&65535));
        assert!(Addr::broadcast(9).is_broadcast() && Addr::ZERO.is_zero());
    }
}
