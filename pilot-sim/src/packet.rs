//! Real IPv4/UDP packets: built, parsed and rewritten with `smoltcp::wire`.
//!
//! Everything the simulator moves between hosts is a complete IPv4 packet with a UDP header and
//! valid checksums, so captures open in Wireshark and NAT rewrites are the ones a real box does.
//! Parsing never panics: a packet that does not parse is reported as `None` and dropped by the
//! caller.

use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};

/// Bytes of IPv4 plus UDP header in front of every payload.
pub const HEADER_LEN: usize = 20 + 8;

/// The time-to-live of packets the simulator builds.
const TTL: u8 = 64;

/// The addressing of one UDP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Endpoints {
    pub(crate) src: SocketAddrV4,
    pub(crate) dst: SocketAddrV4,
}

/// Writes an IPv4/UDP packet carrying `payload` into `out` (cleared first).
pub(crate) fn build(out: &mut Vec<u8>, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
    let udp_len = 8 + payload.len();
    out.clear();
    out.resize(20 + udp_len, 0);
    let caps = ChecksumCapabilities::default();

    let ip_repr = Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        next_header: IpProtocol::Udp,
        payload_len: udp_len,
        hop_limit: TTL,
    };
    let mut ip = Ipv4Packet::new_unchecked(&mut out[..]);
    ip_repr.emit(&mut ip, &caps);

    let udp_repr = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
    udp_repr.emit(
        &mut udp,
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &caps,
    );
}

/// Reads the addresses of a packet without verifying checksums (for routing and NAT).
pub(crate) fn endpoints(bytes: &[u8]) -> Option<Endpoints> {
    let ip = Ipv4Packet::new_checked(bytes).ok()?;
    if ip.next_header() != IpProtocol::Udp {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    Some(Endpoints {
        src: SocketAddrV4::new(ip.src_addr(), udp.src_port()),
        dst: SocketAddrV4::new(ip.dst_addr(), udp.dst_port()),
    })
}

/// Parses and fully verifies a packet, returning its endpoints and UDP payload.
pub(crate) fn parse(bytes: &[u8]) -> Option<(Endpoints, &[u8])> {
    let ip = Ipv4Packet::new_checked(bytes).ok()?;
    let ip_repr = Ipv4Repr::parse(&ip, &ChecksumCapabilities::default()).ok()?;
    if ip_repr.next_header != IpProtocol::Udp {
        return None;
    }
    let payload = ip.payload();
    let udp = UdpPacket::new_checked(payload).ok()?;
    let (src_ip, dst_ip) = (
        IpAddress::Ipv4(ip_repr.src_addr),
        IpAddress::Ipv4(ip_repr.dst_addr),
    );
    UdpRepr::parse(&udp, &src_ip, &dst_ip, &ChecksumCapabilities::default()).ok()?;

    let endpoints = Endpoints {
        src: SocketAddrV4::new(ip_repr.src_addr, udp.src_port()),
        dst: SocketAddrV4::new(ip_repr.dst_addr, udp.dst_port()),
    };
    let udp_len = usize::from(udp.len()).min(payload.len());
    Some((endpoints, payload.get(8..udp_len)?))
}

/// Returns the UDP payload of a packet without verifying it (for classification).
pub(crate) fn payload(bytes: &[u8]) -> &[u8] {
    bytes.get(HEADER_LEN..).unwrap_or(&[])
}

/// Rewrites the source of a packet and refreshes both checksums. Returns false (leaving the
/// packet untouched) if it does not parse.
pub(crate) fn rewrite_src(bytes: &mut [u8], src: SocketAddrV4) -> bool {
    rewrite(bytes, |ip_addrs, ports| {
        ip_addrs.0 = *src.ip();
        ports.0 = src.port();
    })
}

/// Rewrites the destination of a packet and refreshes both checksums. Returns false (leaving
/// the packet untouched) if it does not parse.
pub(crate) fn rewrite_dst(bytes: &mut [u8], dst: SocketAddrV4) -> bool {
    rewrite(bytes, |ip_addrs, ports| {
        ip_addrs.1 = *dst.ip();
        ports.1 = dst.port();
    })
}

fn rewrite(
    bytes: &mut [u8],
    change: impl FnOnce(&mut (Ipv4Addr, Ipv4Addr), &mut (u16, u16)),
) -> bool {
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut bytes[..]) else {
        return false;
    };
    let mut addrs = (ip.src_addr(), ip.dst_addr());
    let Ok(udp) = UdpPacket::new_checked(ip.payload_mut()) else {
        return false;
    };
    let mut ports = (udp.src_port(), udp.dst_port());
    change(&mut addrs, &mut ports);

    ip.set_src_addr(addrs.0);
    ip.set_dst_addr(addrs.1);
    ip.fill_checksum();
    let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
    udp.set_src_port(ports.0);
    udp.set_dst_port(ports.1);
    udp.fill_checksum(&IpAddress::Ipv4(addrs.0), &IpAddress::Ipv4(addrs.1));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddrV4 {
        text.parse().unwrap()
    }

    #[test]
    fn build_parse_round_trip() {
        let mut buf = vec![0xa5; 7];
        build(
            &mut buf,
            addr("10.0.0.2:4000"),
            addr("203.0.113.9:5000"),
            b"hello",
        );
        assert_eq!(buf.len(), HEADER_LEN + 5);
        let (endpoints, payload) = parse(&buf).unwrap();
        assert_eq!(endpoints.src, addr("10.0.0.2:4000"));
        assert_eq!(endpoints.dst, addr("203.0.113.9:5000"));
        assert_eq!(payload, b"hello");
    }

    #[test]
    fn rewrite_keeps_checksums_valid() {
        let mut buf = Vec::new();
        build(
            &mut buf,
            addr("10.0.0.2:4000"),
            addr("203.0.113.9:5000"),
            b"data",
        );
        assert!(rewrite_src(&mut buf, addr("198.51.100.1:61000")));
        assert!(rewrite_dst(&mut buf, addr("198.51.100.7:7")));
        let (endpoints, payload) = parse(&buf).unwrap();
        assert_eq!(endpoints.src, addr("198.51.100.1:61000"));
        assert_eq!(endpoints.dst, addr("198.51.100.7:7"));
        assert_eq!(payload, b"data");
    }

    #[test]
    fn corrupted_bytes_are_rejected_without_panic() {
        let mut buf = Vec::new();
        build(
            &mut buf,
            addr("10.0.0.2:4000"),
            addr("203.0.113.9:5000"),
            b"data",
        );
        buf[30] ^= 0xff;
        assert!(parse(&buf).is_none());
        for len in 0..buf.len() {
            let _ = parse(&buf[..len]);
            let _ = endpoints(&buf[..len]);
            let _ = rewrite_src(&mut buf.clone()[..len], addr("1.2.3.4:5"));
        }
    }
}
