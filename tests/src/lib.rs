//! Cross-crate test helpers; the tests themselves live in `tests/tests/`.
//!
//! - [`agent_host`]: a `pilot-sim` [`Machine`](pilot_sim::Machine) running a
//!   [`pilot_proto::agent::Agent`] exactly as the daemon drives it.
//! - [`rendezvous`]: a machine running the registry server (TCP) and the beacon (UDP).
//! - [`matrix`]: the NAT kinds, their expected routes, and one seeded run of a cell.
//! - [`pubsub_host`]: an agent host with a port-1002 client on top (extended or v0.5).

pub mod agent_host;
pub mod matrix;
pub mod pubsub_host;
pub mod rendezvous;
