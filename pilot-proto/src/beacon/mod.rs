//! Beacon client and server state machines (discovery, punch coordination, relay).
//!
//! Owns both ends of the v0.5 beacon protocol over UDP as sans-IO machines: the
//! [`BeaconServer`] (observed endpoints, punch commands, relay, gossip between beacons) and the
//! [`BeaconClient`] that runs on a node's tunnel socket. Byte layouts live in
//! [`crate::wire::beacon`]; the decisions about *when* to punch or relay live in
//! [`crate::nat`]. Design notes: `docs/design/nat-traversal.md`.
//!
//! # Beyond v0.5
//!
//! - Relay is honoured only from the source address a node registered with Discover (or from a
//!   peer beacon), per-sender rate-limited, and never forwarded twice (no gossip loops).
//! - PunchRequest must come from the requester's registered address; it binds only an id
//!   nobody holds yet (v0.5 let any datagram redirect a node's punches and relay).
//! - Sync is accepted only from configured peer beacons.
//! - Entries expire after 3 minutes without a Discover; tables and queues are bounded.
//! - A Discover may carry a signed proof; once a node proved its key, unproven Discovers can no
//!   longer move it. In hardened mode only proven Discovers bind ids at all.
//!
//! # Limitations
//!
//! - A registered node can still learn any other node's observed endpoint with PunchRequest:
//!   the beacon has no trust information. Private nodes that need more should not publish
//!   through a shared beacon.
//! - Proofs are checked only for nodes whose key the driver installed with
//!   [`BeaconServer::set_node_key`]; a standalone beacon treats every Discover as unproven.
//! - Gossip lists at most 16,000 node ids per Sync (one datagram).

mod client;
mod server;

pub use client::{BeaconClient, BeaconClientConfig, BeaconEvent, PROBES_PER_PUNCH, PUNCH_PROBE};
pub use server::{BeaconConfig, BeaconServer, BeaconStats, MAX_GOSSIP_IDS};
