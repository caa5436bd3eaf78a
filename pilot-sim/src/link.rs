//! Links: what happens to a packet between an interface and the network it is attached to.
//!
//! Every host and every NAT's outside interface is attached to one network by a link with two
//! directions (up, towards the network, and down, towards the interface), each with its own
//! [`LinkConfig`] and its own transmit queue. A link decides, from its configuration and its
//! random stream, whether a packet is lost, when each copy arrives, and whether it fits the MTU.
//!
//! # Limitations
//!
//! - Limitation: jitter is drawn uniformly in `[0, jitter]` per packet, like netem without a
//!   correlation knob; bursty loss (Gilbert-Elliott) is not modelled.

use std::time::Duration;

use crate::queue::nanos;

use crate::seed::SimRng;

/// How a link treats the packets crossing it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Fixed one-way delay.
    pub latency: Duration,
    /// Extra delay drawn uniformly in `[0, jitter]` per packet (lets packets overtake).
    pub jitter: Duration,
    /// Bits per second; `None` serializes instantly and never queues.
    pub bandwidth: Option<u64>,
    /// The most bytes waiting in the transmit queue before new packets are dropped.
    pub queue_bytes: usize,
    /// Probability in `[0, 1]` that a packet is lost.
    pub loss: f64,
    /// Probability in `[0, 1]` that a packet is delivered twice.
    pub duplicate: f64,
    /// Probability in `[0, 1]` that a packet is held back by `reorder_delay` so later ones
    /// overtake it.
    pub reorder: f64,
    /// The extra delay applied to reordered packets.
    pub reorder_delay: Duration,
    /// The largest IPv4 packet (header included) the link carries; larger ones are dropped.
    pub mtu: usize,
}

impl LinkConfig {
    /// A perfect link: no delay, no loss, MTU 1500.
    pub const IDEAL: Self = Self {
        latency: Duration::ZERO,
        jitter: Duration::ZERO,
        bandwidth: None,
        queue_bytes: 256 * 1024,
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_delay: Duration::ZERO,
        mtu: 1500,
    };

    /// A perfect link with a fixed one-way `latency`.
    pub fn with_latency(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::IDEAL
        }
    }

    /// Returns a copy with the given loss probability.
    pub fn loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    /// Returns a copy with the given jitter.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Returns a copy with the given duplication probability.
    pub fn duplicate(mut self, duplicate: f64) -> Self {
        self.duplicate = duplicate;
        self
    }

    /// Returns a copy that reorders with probability `p` by holding packets back for `delay`.
    pub fn reorder(mut self, p: f64, delay: Duration) -> Self {
        self.reorder = p;
        self.reorder_delay = delay;
        self
    }

    /// Returns a copy limited to `bits_per_second` with a queue of `queue_bytes`.
    pub fn bandwidth(mut self, bits_per_second: u64, queue_bytes: usize) -> Self {
        self.bandwidth = Some(bits_per_second);
        self.queue_bytes = queue_bytes;
        self
    }

    /// Returns a copy with the given MTU.
    pub fn mtu(mut self, mtu: usize) -> Self {
        self.mtu = mtu;
        self
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self::IDEAL
    }
}

/// Which way a packet crosses an attachment's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// From the interface towards its network.
    Up,
    /// From the network towards the interface.
    Down,
}

/// What a link did with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkVerdict {
    /// Lost at random.
    Lost,
    /// Larger than the MTU.
    TooBig,
    /// The transmit queue was full.
    QueueFull,
    /// Arrives at `first`, and a duplicate at `second` if set (nanoseconds since the epoch).
    Arrives { first: u64, second: Option<u64> },
}

/// One direction of a link: its configuration, queue state and random stream.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) config: LinkConfig,
    busy_until: u64,
    rng: SimRng,
}

impl Link {
    /// Creates an idle link.
    pub(crate) fn new(config: LinkConfig, rng: SimRng) -> Self {
        Self {
            config,
            busy_until: 0,
            rng,
        }
    }

    /// Decides the fate of a packet of `len` bytes entering the link at `now` (nanoseconds
    /// since the epoch).
    pub(crate) fn transmit(&mut self, now: u64, len: usize) -> LinkVerdict {
        let config = self.config;
        if len > config.mtu {
            return LinkVerdict::TooBig;
        }
        let Some(sent) = self.serialize(now, len) else {
            return LinkVerdict::QueueFull;
        };
        if self.rng.chance(config.loss) {
            return LinkVerdict::Lost;
        }

        let first = sent + self.flight_time();
        let second = self
            .rng
            .chance(config.duplicate)
            .then(|| sent + self.flight_time());
        LinkVerdict::Arrives { first, second }
    }

    /// Puts the packet on the wire behind those already queued; `None` if the queue is full.
    fn serialize(&mut self, now: u64, len: usize) -> Option<u64> {
        let Some(bits_per_second) = self.config.bandwidth.filter(|bps| *bps > 0) else {
            return Some(now);
        };
        let start = self.busy_until.max(now);
        let backlog = u128::from(start - now);
        let queued_bytes = backlog * u128::from(bits_per_second) / 8_000_000_000;
        if queued_bytes > self.config.queue_bytes as u128 {
            return None;
        }

        let nanos = (len as u128 * 8 * 1_000_000_000).div_ceil(u128::from(bits_per_second));
        let done = start.saturating_add(u64::try_from(nanos).unwrap_or(u64::MAX));
        self.busy_until = done;
        Some(done)
    }

    /// The propagation delay of one copy in nanoseconds: latency, jitter and a possible
    /// reordering hold.
    fn flight_time(&mut self) -> u64 {
        let config = self.config;
        let mut delay = nanos(config.latency);
        // Limitation: jitter is uniform and uncorrelated between packets.
        if !config.jitter.is_zero() {
            delay += self.rng.below(nanos(config.jitter).saturating_add(1));
        }
        if self.rng.chance(config.reorder) {
            delay += nanos(config.reorder_delay);
        }
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(config: LinkConfig) -> Link {
        Link::new(config, SimRng::new(7, "test", 0))
    }

    #[test]
    fn bandwidth_serializes_back_to_back_packets() {
        // 8 Mbit/s: 1000 bytes take exactly 1 ms.
        let mut link =
            link(LinkConfig::with_latency(Duration::from_millis(10)).bandwidth(8_000_000, 10_000));
        let now = 5;
        let arrivals: Vec<_> = (0..3)
            .map(|_| match link.transmit(now, 1000) {
                LinkVerdict::Arrives { first, .. } => first - now,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(arrivals, [11_000_000, 12_000_000, 13_000_000]);
    }

    #[test]
    fn full_queue_drops() {
        let mut link = link(LinkConfig::IDEAL.bandwidth(8_000, 1500));
        let now = 0;
        let verdicts: Vec<_> = (0..4).map(|_| link.transmit(now, 1000)).collect();
        assert!(matches!(verdicts[0], LinkVerdict::Arrives { .. }));
        assert!(matches!(verdicts[1], LinkVerdict::Arrives { .. }));
        assert_eq!(verdicts[3], LinkVerdict::QueueFull);
    }

    #[test]
    fn oversize_is_dropped() {
        let mut link = link(LinkConfig::IDEAL.mtu(576));
        assert_eq!(link.transmit(0, 577), LinkVerdict::TooBig);
    }
}
