//! Relay markers: how the agent routes a peer's tunnel frames through the beacon.
//!
//! The tunnel always sends a peer's frames to that peer's endpoint. For a relayed peer the
//! agent sets the endpoint to a *marker*: an address in `100::/64`, the IPv6 discard-only
//! prefix (RFC 6666), whose last 32 bits are the peer's node id. No real socket can be
//! reached there. [`super::Agent::poll_transmit`] recognises a marker destination and wraps
//! the frame in a beacon `Relay` message instead; a `RelayDeliver` from the beacon is fed to
//! the node as if it came from the sender's marker, so the tunnel authenticates it as usual
//! and a reply goes back through the relay.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The first 64 bits of every marker (`100::/64`).
const MARKER_PREFIX: [u16; 4] = [0x0100, 0, 0, 0];

/// The marker address standing for "relay to `node`".
pub fn relay_marker(node: u32) -> SocketAddr {
    let [p0, p1, p2, p3] = MARKER_PREFIX;
    let ip = Ipv6Addr::new(p0, p1, p2, p3, 0, 0, (node >> 16) as u16, node as u16);
    SocketAddr::new(IpAddr::V6(ip), 0)
}

/// The node a marker stands for, or `None` for a real endpoint.
pub fn relay_target(addr: SocketAddr) -> Option<u32> {
    let IpAddr::V6(ip) = addr.ip() else {
        return None;
    };
    let s = ip.segments();
    let is_marker = s[..4] == MARKER_PREFIX && s[4] == 0 && s[5] == 0 && addr.port() == 0;
    is_marker.then(|| (u32::from(s[6]) << 16) | u32::from(s[7]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_real_addresses_are_not_markers() {
        for node in [0, 1, 0xFFFF, 0x1_0000, u32::MAX] {
            assert_eq!(relay_target(relay_marker(node)), Some(node));
        }
        let real: SocketAddr = "203.0.113.5:4000".parse().unwrap();
        assert_eq!(relay_target(real), None);
        let v6: SocketAddr = "[2001:db8::1]:0".parse().unwrap();
        assert_eq!(relay_target(v6), None);
    }
}
