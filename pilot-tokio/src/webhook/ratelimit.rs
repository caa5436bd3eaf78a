//! Per-source token buckets for the inbound receiver (answers 429 when empty).
//!
//! Owns [`RateLimiter`]: one bucket per source IP address, refilled continuously at `per_second`
//! up to `burst`. The table is bounded; when it is full, the bucket idle longest is dropped
//! (a dropped bucket comes back full, which only ever errs towards admitting). Time is an
//! argument (`now: Instant`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Token bucket parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests a source may send at once.
    pub burst: u32,
    /// Sustained requests per second per source.
    pub per_second: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: 100,
            per_second: 50.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A bounded table of token buckets keyed by source address.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: HashMap<IpAddr, Bucket>,
    max_sources: usize,
}

impl RateLimiter {
    /// A limiter tracking at most `max_sources` sources (at least 1).
    pub fn new(limit: RateLimit, max_sources: usize) -> Self {
        Self {
            limit,
            buckets: HashMap::new(),
            max_sources: max_sources.max(1),
        }
    }

    /// Takes one token for `source`; false means "rate-limited".
    pub fn allow(&mut self, now: Instant, source: IpAddr) -> bool {
        if !self.buckets.contains_key(&source) && self.buckets.len() >= self.max_sources {
            self.drop_most_idle();
        }
        let burst = f64::from(self.limit.burst);
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: burst,
            last: now,
        });

        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.limit.per_second).min(burst);
        bucket.last = bucket.last.max(now);

        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn drop_most_idle(&mut self) {
        let idle = self
            .buckets
            .iter()
            .min_by_key(|(_, bucket)| bucket.last)
            .map(|(ip, _)| *ip);
        if let Some(ip) = idle {
            self.buckets.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(
            RateLimit {
                burst: 3,
                per_second: 2.0,
            },
            8,
        );
        assert!((0..3).all(|_| limiter.allow(t0, A)));
        assert!(!limiter.allow(t0, A));
        assert!(limiter.allow(t0, B), "sources are independent");
        assert!(limiter.allow(t0 + Duration::from_millis(500), A));
        assert!(!limiter.allow(t0 + Duration::from_millis(500), A));
    }

    #[test]
    fn table_is_bounded() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(
            RateLimit {
                burst: 1,
                per_second: 0.0,
            },
            2,
        );
        for i in 0..50u8 {
            limiter.allow(
                t0 + Duration::from_secs(u64::from(i)),
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)),
            );
        }
        assert_eq!(limiter.buckets.len(), 2);
    }
}
