//! The beacon client, living on the node's tunnel socket.
//!
//! Owns the node's side of the beacon protocol: periodic Discover (which both learns the
//! endpoint the beacon observes and holds the NAT mapping towards the beacon open), punch
//! requests, executing punch commands (three `PILP` probes), wrapping frames for relay and
//! unwrapping relay deliveries. Datagrams are accepted only from the configured beacon.
//! Which peer to punch or relay to is decided in `crate::nat`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use tracing::{debug, trace};

use crate::registry::WallClock;
use crate::transmit::Transmit;
use crate::wire::beacon::{BeaconRepr, DiscoverProof};

/// The 4-byte punch probe (`PILP`); tunnels ignore it.
pub const PUNCH_PROBE: [u8; 4] = *b"PILP";

/// Probes sent per punch command, back to back (v0.5: 3).
pub const PROBES_PER_PUNCH: usize = 3;

/// Beacon client timers.
#[derive(Debug, Clone)]
pub struct BeaconClientConfig {
    /// The beacon's UDP address.
    pub beacon: SocketAddr,
    /// Discover period once answered: keeps the beacon's mapping and the NAT binding fresh.
    /// At most 25 s so common 30 s NAT timeouts never expire it (v0.5: 30 s).
    pub keepalive: Duration,
    /// First retry delay while a Discover is unanswered; doubles up to `keepalive`.
    pub retry: Duration,
    /// Attach a signed proof to Discover (the v0.5 beacon ignores it).
    pub prove_discover: bool,
}

impl BeaconClientConfig {
    /// Defaults for a beacon at `beacon`.
    pub fn new(beacon: SocketAddr) -> Self {
        Self {
            beacon,
            keepalive: Duration::from_secs(25),
            retry: Duration::from_secs(1),
            prove_discover: true,
        }
    }
}

/// What the node learns from the beacon.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BeaconEvent {
    /// The beacon sees us at `observed`; `previous` differs or is `None` (first answer, NAT
    /// rebinding, address change). The node should register this endpoint.
    ObservedEndpoint {
        /// The endpoint now observed.
        observed: SocketAddr,
        /// What it was before.
        previous: Option<SocketAddr>,
    },
    /// The beacon asked us to punch towards `peer`; probes are already queued.
    PunchCommand {
        /// The peer's observed endpoint.
        peer: SocketAddr,
    },
    /// A relayed tunnel frame from `sender`.
    Relayed {
        /// Sender named in the relay (authenticated only by the tunnel inside).
        sender: u32,
        /// The whole inner tunnel frame.
        frame: Vec<u8>,
    },
    /// Discover has gone unanswered for several attempts.
    BeaconSilent {
        /// Unanswered attempts so far.
        attempts: u32,
    },
}

/// The beacon client state machine.
///
/// Drain order after any input: [`Self::poll_transmit`] until `None`, [`Self::poll_event`]
/// until `None`, then [`Self::poll_timeout`].
#[derive(Debug)]
pub struct BeaconClient {
    config: BeaconClientConfig,
    key: Option<SigningKey>,
    clock: WallClock,
    node_id: u32,
    observed: Option<SocketAddr>,
    unanswered: u32,
    next_discover: Instant,
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<BeaconEvent>,
}

/// Datagrams waiting to be sent at most; relay traffic beyond this is dropped.
const MAX_QUEUE: usize = 1024;

impl BeaconClient {
    /// Creates a client; the first Discover (node id 0 until [`Self::set_node_id`]) is due
    /// at once.
    pub fn new(
        config: BeaconClientConfig,
        now: Instant,
        unix_now: u64,
        key: Option<SigningKey>,
    ) -> Self {
        Self {
            config,
            key,
            clock: WallClock::new(now, unix_now),
            node_id: 0,
            observed: None,
            unanswered: 0,
            next_discover: now,
            queue: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Our node id (after registering); a Discover with it is sent at once.
    pub fn set_node_id(&mut self, now: Instant, node_id: u32) {
        self.node_id = node_id;
        self.discover(now);
    }

    /// The endpoint the beacon last observed.
    pub fn observed(&self) -> Option<SocketAddr> {
        self.observed
    }

    /// The beacon address.
    pub fn beacon(&self) -> SocketAddr {
        self.config.beacon
    }

    /// True when `src` is the beacon and `bytes` is beacon traffic this client consumed.
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, bytes: &[u8]) -> bool {
        if !crate::wire::beacon::is_beacon_datagram(bytes) {
            return false;
        }
        if src != self.config.beacon {
            trace!("beacon message from a non-beacon source dropped");
            return true;
        }
        match BeaconRepr::parse_bytes(bytes) {
            Ok(BeaconRepr::DiscoverReply { observed }) => self.on_reply(now, observed),
            Ok(BeaconRepr::PunchCommand { peer }) => self.on_punch_command(peer),
            Ok(BeaconRepr::RelayDeliver { sender_id, payload }) => {
                self.events.push_back(BeaconEvent::Relayed {
                    sender: sender_id,
                    frame: payload.to_vec(),
                });
            }
            _ => trace!("unexpected beacon message dropped"),
        }
        true
    }

    /// Sends a Discover now (for example after a suspected address change).
    pub fn discover(&mut self, now: Instant) {
        let proof = self.proof(now);
        self.send(
            self.config.beacon,
            &BeaconRepr::Discover {
                node_id: self.node_id,
                proof,
            },
        );
        self.unanswered += 1;
        let backoff = self
            .config
            .retry
            .saturating_mul(1 << self.unanswered.min(5))
            .min(self.config.keepalive);
        self.next_discover = now + backoff;
        if self.unanswered > 3 {
            self.events.push_back(BeaconEvent::BeaconSilent {
                attempts: self.unanswered,
            });
        }
    }

    /// Asks the beacon to coordinate a punch with `target`.
    pub fn request_punch(&mut self, _now: Instant, target: u32) {
        self.send(
            self.config.beacon,
            &BeaconRepr::PunchRequest {
                requester_id: self.node_id,
                target_id: target,
            },
        );
    }

    /// Sends `PILP` probes straight to `peer` (the node may punch on its own schedule too).
    pub fn send_probes(&mut self, peer: SocketAddr, count: usize) {
        for _ in 0..count {
            self.enqueue(peer, PUNCH_PROBE.to_vec());
        }
    }

    /// Wraps a tunnel frame for `dest` and sends it to the beacon.
    pub fn send_relay(&mut self, _now: Instant, dest: u32, frame: &[u8]) {
        self.send(
            self.config.beacon,
            &BeaconRepr::Relay {
                sender_id: self.node_id,
                dest_id: dest,
                payload: frame,
            },
        );
    }

    /// Runs the Discover timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_discover {
            self.discover(now);
        }
    }

    /// Next datagram, written into a cleared `buf`.
    #[must_use]
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let (dst, bytes) = self.queue.pop_front()?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Some(Transmit {
            dst,
            len: bytes.len(),
        })
    }

    /// Next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<BeaconEvent> {
        self.events.pop_front()
    }

    /// When to call [`Self::handle_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_discover)
    }

    fn on_reply(&mut self, now: Instant, observed: SocketAddr) {
        self.unanswered = 0;
        self.next_discover = now + self.config.keepalive;
        let previous = self.observed.replace(observed);
        if previous != Some(observed) {
            debug!(
                changed = previous.is_some(),
                "beacon observed a new endpoint"
            );
            self.events
                .push_back(BeaconEvent::ObservedEndpoint { observed, previous });
        }
    }

    fn on_punch_command(&mut self, peer: SocketAddr) {
        self.send_probes(peer, PROBES_PER_PUNCH);
        self.events.push_back(BeaconEvent::PunchCommand { peer });
    }

    fn proof(&self, now: Instant) -> Option<DiscoverProof> {
        let key = self
            .key
            .as_ref()
            .filter(|_| self.config.prove_discover && self.node_id != 0)?;
        let unix_time = self.clock.unix_at(now);
        let signature = key
            .sign(&DiscoverProof::signed_bytes(self.node_id, unix_time))
            .to_bytes();
        Some(DiscoverProof {
            unix_time,
            signature,
        })
    }

    fn send(&mut self, dst: SocketAddr, repr: &BeaconRepr<'_>) {
        self.enqueue(dst, repr.to_vec());
    }

    fn enqueue(&mut self, dst: SocketAddr, bytes: Vec<u8>) {
        if self.queue.len() >= MAX_QUEUE {
            trace!("beacon client queue full; datagram dropped");
            return;
        }
        self.queue.push_back((dst, bytes));
    }
}
