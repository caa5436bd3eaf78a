//! Beacon over a byte stream: the fallback for a node whose UDP is blocked (a pilot-rs
//! extension; v0.5 beacons speak UDP only).
//!
//! When the beacon stays silent over UDP and a TCP endpoint for it is configured, the agent
//! asks the driver for a second stream ([`AgentEvent::ConnectBeaconStream`]) and from then on
//! carries every beacon datagram on it, each framed as a 2-byte big-endian length and the
//! datagram. Relay traffic, Discover and punch requests all follow, so a UDP-blocked node is
//! reachable through the relay. The beacon end maps each stream to a source address of its
//! own choosing; the endpoint it reports for us is ignored for registration.

use std::time::Instant;

use tracing::debug;

use super::{Agent, AgentEvent};
use crate::Transmit;
use crate::wire::beacon_stream::{pop_frame, push_frame};

/// Largest framed datagram; anything longer breaks the stream.
const MAX_FRAME: usize = 65_535;

/// Bytes buffered towards the beacon at most; further datagrams are dropped.
const MAX_OUTBOX: usize = 1 << 20;

/// Where the beacon stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum StreamState {
    /// Not used: beacon traffic goes over UDP.
    #[default]
    Off,
    /// The driver was asked to connect.
    Connecting,
    /// Beacon traffic goes over the stream.
    Open,
}

/// The beacon stream's buffers.
#[derive(Debug, Default)]
pub(super) struct BeaconStream {
    pub state: StreamState,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
}

impl BeaconStream {
    /// Frames one datagram for the stream (dropped when the outbox is full).
    fn push(&mut self, datagram: &[u8]) {
        if self.outbox.len() + datagram.len() + 2 <= MAX_OUTBOX {
            push_frame(&mut self.outbox, datagram);
        }
    }

    /// The next complete datagram received, if any.
    fn pop(&mut self) -> Option<Vec<u8>> {
        pop_frame(&mut self.inbox)
    }
}

impl Agent {
    /// The driver opened the beacon stream.
    pub fn handle_beacon_stream_connected(&mut self, now: Instant) {
        let now = self.clamp(now);
        self.beacon_stream.state = StreamState::Open;
        self.beacon_stream.inbox.clear();
        if let Some(beacon) = &mut self.beacon {
            beacon.discover(now);
        }
        self.process(now);
    }

    /// Bytes arrived on the beacon stream.
    pub fn handle_beacon_stream_bytes(&mut self, now: Instant, bytes: &[u8]) {
        let now = self.clamp(now);
        if self.beacon_stream.inbox.len() + bytes.len() > MAX_FRAME * 4 {
            debug!("beacon stream backlog too large; dropped");
            self.beacon_stream.inbox.clear();
            return;
        }
        self.beacon_stream.inbox.extend_from_slice(bytes);
        while let Some(datagram) = self.beacon_stream.pop() {
            if let Some(beacon) = &mut self.beacon {
                let from = beacon.beacon();
                beacon.handle_datagram(now, from, &datagram);
            }
        }
        self.process(now);
    }

    /// The beacon stream closed or could not be opened: back to UDP until the beacon is
    /// silent again.
    // Limitation: while the stream is open the agent never tries UDP to the beacon again.
    pub fn handle_beacon_stream_closed(&mut self, now: Instant) {
        let now = self.clamp(now);
        self.beacon_stream = BeaconStream::default();
        self.process(now);
    }

    /// Bytes to write to the beacon stream, in a cleared `buf`; returns their length.
    #[must_use]
    pub fn poll_beacon_stream_bytes(&mut self, buf: &mut Vec<u8>) -> Option<usize> {
        if self.beacon_stream.outbox.is_empty() {
            return None;
        }
        buf.clear();
        std::mem::swap(buf, &mut self.beacon_stream.outbox);
        Some(buf.len())
    }

    /// Whether beacon traffic currently goes over the stream.
    pub fn beacon_over_stream(&self) -> bool {
        self.beacon_stream.state == StreamState::Open
    }

    /// UDP to the beacon seems blocked: ask for the stream if one is configured.
    pub(super) fn beacon_unreachable(&mut self) {
        if self.config.beacon_tcp.is_none() || self.beacon_stream.state != StreamState::Off {
            return;
        }
        debug!("beacon silent over UDP; asking for a beacon stream");
        self.beacon_stream.state = StreamState::Connecting;
        self.events.push_back(AgentEvent::ConnectBeaconStream);
    }

    /// The beacon client's next datagram for UDP; datagrams for the beacon are framed onto
    /// the stream instead while it is open.
    pub(super) fn beacon_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let beacon = self.beacon.as_mut()?;
        let addr = beacon.beacon();
        for _ in 0..super::MAX_WRAPS_PER_POLL {
            let transmit = beacon.poll_transmit(now, buf)?;
            if transmit.dst != addr || self.beacon_stream.state != StreamState::Open {
                return Some(transmit);
            }
            self.beacon_stream.push(&buf[..transmit.len]);
        }
        None
    }
}
