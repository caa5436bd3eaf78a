//! Round-trip time estimation and the retransmission timeout (RFC 6298), with the v0.5 bounds.

use std::time::Duration;

/// RTO before any sample (RFC 6298 §2.1, v0.5's value).
pub(crate) const INITIAL_RTO: Duration = Duration::from_secs(1);
/// Lower bound of the RTO (v0.5).
pub(crate) const MIN_RTO: Duration = Duration::from_millis(200);
/// Upper bound of the RTO, backoff included (v0.5).
pub(crate) const MAX_RTO: Duration = Duration::from_secs(10);
/// Clock granularity G of RFC 6298 (v0.5).
const GRANULARITY: Duration = Duration::from_millis(10);

/// Smoothed RTT, variance, minimum, and the exponential backoff applied on timeouts.
#[derive(Debug, Clone)]
pub(crate) struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rtt: Option<Duration>,
    backoff: u32,
}

impl RttEstimator {
    /// An estimator with no samples yet.
    pub(crate) fn new() -> Self {
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            min_rtt: None,
            backoff: 0,
        }
    }

    /// Feeds one measurement from a segment that was transmitted exactly once (Karn).
    pub(crate) fn on_sample(&mut self, sample: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(sample, |min| min.min(sample)));
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                let error = srtt.abs_diff(sample);
                self.rttvar = (self.rttvar * 3 + error) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
    }

    /// Doubles the timeout after a retransmission timer fired (RFC 6298 §5.5).
    pub(crate) fn on_timeout(&mut self) {
        if self.rto() < MAX_RTO {
            self.backoff = self.backoff.saturating_add(1);
        }
    }

    /// Drops the backoff once an acknowledgement shows the path works again.
    pub(crate) fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// The un-backed-off timeout: SRTT + max(G, 4·RTTVAR), clamped to [200 ms, 10 s].
    pub(crate) fn base_rto(&self) -> Duration {
        let Some(srtt) = self.srtt else {
            return INITIAL_RTO;
        };
        (srtt + GRANULARITY.max(self.rttvar * 4)).clamp(MIN_RTO, MAX_RTO)
    }

    /// The current timeout, backoff included, never above [`MAX_RTO`].
    pub(crate) fn rto(&self) -> Duration {
        let factor = 1u32.checked_shl(self.backoff).unwrap_or(u32::MAX);
        self.base_rto().saturating_mul(factor).min(MAX_RTO)
    }

    /// Whether at least one sample was taken.
    pub(crate) fn has_sample(&self) -> bool {
        self.srtt.is_some()
    }

    /// The smoothed RTT, or the initial RTO before any sample.
    pub(crate) fn srtt(&self) -> Duration {
        self.srtt.unwrap_or(INITIAL_RTO)
    }

    /// The smallest sample seen, or the smoothed RTT before any sample.
    pub(crate) fn min_rtt(&self) -> Duration {
        self.min_rtt.unwrap_or_else(|| self.srtt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_sets_srtt_and_half_variance() {
        let mut rtt = RttEstimator::new();
        assert_eq!(rtt.rto(), INITIAL_RTO);
        rtt.on_sample(Duration::from_millis(100));
        // 100 + max(10, 4 * 50) = 300 ms.
        assert_eq!(rtt.rto(), Duration::from_millis(300));
    }

    #[test]
    fn bounds_hold() {
        let mut rtt = RttEstimator::new();
        for _ in 0..50 {
            rtt.on_sample(Duration::from_millis(1));
        }
        assert_eq!(rtt.rto(), MIN_RTO);
        for _ in 0..40 {
            rtt.on_timeout();
        }
        assert_eq!(rtt.rto(), MAX_RTO);
        rtt.reset_backoff();
        assert_eq!(rtt.rto(), MIN_RTO);
    }
}
