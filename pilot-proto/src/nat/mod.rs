//! NAT traversal decisions: direct, punched or relayed paths, and when to switch.
//!
//! Owns the decisions, never the packets: [`PeerPath`] runs the dial plan for one peer
//! (resolve, probe directly, ask the beacon to punch, fall back to relay, keep punching while
//! relayed and move to a direct path as soon as one answers), holds NAT mappings open with
//! keepalives, and recovers when the path goes quiet or our address changes.
//! [`registration_endpoint`] picks the endpoint to register. The node carries out the
//! [`PathAction`]s with the tunnel and the beacon client. Design notes:
//! `docs/design/nat-traversal.md`.
//!
//! # Timing
//!
//! [`DialTiming::V05`] reproduces v0.5: probes at 0, 1 and 3 s, relay from 7 s, give up at
//! 29 s without a beacon. [`DialTiming::Fast`] (the default) probes six times in the first
//! 2.5 s and relays from 3 s. Both keep punching after relaying (first retry after 2 s, then
//! doubling to 30 s), which v0.5 never does.
//!
//! # Limitations
//!
//! - There are no host (LAN) candidates: the v0.5 registry stores one endpoint per node, so
//!   two nodes behind one NAT without hairpinning end up relayed. A candidate learned by other
//!   means can be added with [`PeerPath::handle_punch_command`].
//! - No port prediction for symmetric NATs: pairs of endpoint-dependent NATs stay relayed.

mod path;

use std::net::SocketAddr;
use std::time::Duration;

pub use path::{MAX_CANDIDATES, PathAction, PeerPath};

/// How fast a dial gives up on direct and relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DialTiming {
    /// v0.5's schedule: probes at 0, 1, 3 s; relay at 7 s.
    V05,
    /// Probes at 0, 0.2, 0.5, 1, 1.5, 2.5 s; relay at 3 s.
    #[default]
    Fast,
}

/// Timers of NAT traversal. Defaults keep mappings alive behind 30-second NATs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatConfig {
    /// Dial schedule.
    pub timing: DialTiming,
    /// A beacon is configured, so punching and relay are available.
    pub beacon_available: bool,
    /// Keepalive period on a direct path; at most 25 s (v0.5: 30 s, only with open streams).
    pub keepalive: Duration,
    /// No authenticated frame on the direct path for this long: revalidate it.
    pub stale_after: Duration,
    /// How long a revalidation waits for an answer before relaying.
    pub revalidate_timeout: Duration,
    /// First upgrade attempt after relaying.
    pub upgrade_first: Duration,
    /// Longest gap between upgrade attempts.
    pub upgrade_max: Duration,
}

impl Default for NatConfig {
    fn default() -> Self {
        Self {
            timing: DialTiming::Fast,
            beacon_available: true,
            keepalive: Duration::from_secs(25),
            stale_after: Duration::from_secs(40),
            revalidate_timeout: Duration::from_secs(3),
            upgrade_first: Duration::from_secs(2),
            upgrade_max: Duration::from_secs(30),
        }
    }
}

impl NatConfig {
    /// The config with the keepalive clamped to at most 25 s.
    pub fn clamped(mut self) -> Self {
        self.keepalive = self.keepalive.min(Duration::from_secs(25));
        self
    }
}

/// Where traffic to a peer goes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Nowhere yet.
    None,
    /// Straight to this endpoint.
    Direct(SocketAddr),
    /// Through the beacon.
    Relay,
}

/// Why a dial failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialFailure {
    /// The registry refused to resolve the peer (private and untrusted, or unknown).
    #[error("peer endpoint could not be resolved")]
    Unresolvable,
    /// Nothing answered and no relay is available.
    #[error("dial timeout")]
    Timeout,
}

/// The `listen_addr` to offer the registry: the endpoint the beacon observed for the tunnel
/// socket itself (v0.5 probes from a different socket and registers the wrong port when
/// listening on port 0), else a fixed configured endpoint, else the local address.
///
/// Loopback and unspecified observations are ignored, as v0.5 does.
pub fn registration_endpoint(
    configured: Option<SocketAddr>,
    observed: Option<SocketAddr>,
    local: SocketAddr,
) -> SocketAddr {
    if let Some(configured) = configured {
        return configured;
    }
    let usable = |addr: &SocketAddr| !addr.ip().is_loopback() && !addr.ip().is_unspecified();
    observed.filter(usable).unwrap_or(local)
}

/// True when a newly observed endpoint means the registry's copy is stale.
pub fn needs_reregistration(registered: Option<SocketAddr>, observed: SocketAddr) -> bool {
    let usable = !observed.ip().is_loopback() && !observed.ip().is_unspecified();
    usable && registered != Some(observed)
}
