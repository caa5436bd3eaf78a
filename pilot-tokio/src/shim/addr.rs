//! Virtual addresses (`N:NNNN.HHHH.LLLL`) and `addr:port` pairs, text and binary forms.

use std::fmt;
use std::str::FromStr;

/// A 48-bit virtual address: network id and node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Addr {
    /// Network id (0 is the backbone).
    pub network: u16,
    /// Node id, assigned by the registry.
    pub node: u32,
}

/// A virtual address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrPort {
    /// The address.
    pub addr: Addr,
    /// The virtual port.
    pub port: u16,
}

/// Why an address text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("invalid address {text:?}: {reason} (expected N:NNNN.HHHH.LLLL, e.g. 0:0000.0000.0001)")]
pub struct AddrParseError {
    text: String,
    reason: &'static str,
}

impl Addr {
    /// Binary length of an address.
    pub const LEN: usize = 6;

    /// Builds an address.
    pub const fn new(network: u16, node: u32) -> Addr {
        Addr { network, node }
    }

    /// The 6-byte binary form.
    pub fn to_bytes(self) -> [u8; 6] {
        let mut out = [0u8; 6];
        out[..2].copy_from_slice(&self.network.to_be_bytes());
        out[2..].copy_from_slice(&self.node.to_be_bytes());
        out
    }

    /// Reads the 6-byte binary form.
    pub fn from_bytes(bytes: [u8; 6]) -> Addr {
        let network = u16::from_be_bytes([bytes[0], bytes[1]]);
        let node = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        Addr { network, node }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hi = self.node >> 16;
        let lo = self.node & 0xFFFF;
        write!(
            f,
            "{}:{:04X}.{:04X}.{:04X}",
            self.network, self.network, hi, lo
        )
    }
}

impl FromStr for Addr {
    type Err = AddrParseError;

    fn from_str(text: &str) -> Result<Addr, AddrParseError> {
        let fail = |reason| AddrParseError {
            text: text.to_owned(),
            reason,
        };
        let (net, rest) = text.split_once(':').ok_or_else(|| fail("missing ':'"))?;
        if net.is_empty() || !net.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail("network is not a decimal number"));
        }
        let network: u16 = net.parse().map_err(|_| fail("network out of range"))?;
        let groups: Vec<&str> = rest.split('.').collect();
        if groups.len() != 3 || groups.iter().any(|g| g.len() != 4) {
            return Err(fail("need three groups of four hex digits"));
        }
        let mut values = [0u32; 3];
        for (slot, group) in values.iter_mut().zip(&groups) {
            if !group.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(fail("group is not hexadecimal"));
            }
            *slot = u32::from_str_radix(group, 16).map_err(|_| fail("group is not hexadecimal"))?;
        }
        if values[0] != u32::from(network) {
            return Err(fail("network mismatch between decimal and hex parts"));
        }
        Ok(Addr {
            network,
            node: (values[1] << 16) | values[2],
        })
    }
}

impl fmt::Display for AddrPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

impl FromStr for AddrPort {
    type Err = AddrParseError;

    fn from_str(text: &str) -> Result<AddrPort, AddrParseError> {
        let fail = |reason| AddrParseError {
            text: text.to_owned(),
            reason,
        };
        let (addr, port) = text
            .rsplit_once(':')
            .ok_or_else(|| fail("missing ':port'"))?;
        let port = port
            .parse()
            .map_err(|_| fail("port is not a number 0-65535"))?;
        Ok(AddrPort {
            addr: addr.parse()?,
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_rejects() {
        let a = Addr::new(1, 0xF291_0004);
        assert_eq!(a.to_string(), "1:0001.F291.0004");
        assert_eq!("1:0001.F291.0004".parse::<Addr>(), Ok(a));
        assert_eq!(Addr::from_bytes(a.to_bytes()), a);
        for bad in [
            "",
            "0",
            "0:0000",
            "0:000.0000.0000",
            "99999:0000.0000.0000",
            "1:0000.0000.0001",
        ] {
            assert!(bad.parse::<Addr>().is_err(), "{bad}");
        }
        let ap: AddrPort = "0:0000.0000.0002:1002".parse().expect("valid");
        assert_eq!(ap.port, 1002);
    }
}
