//! Token buckets keyed by an untrusted source (an IP address or a claimed node id).
//!
//! Owns only counting: a bucket refills continuously, a table of buckets is bounded and drops
//! idle entries. Used by the registry server (per source IP) and the beacon server (per
//! source and per node). Takes `now` and never reads a clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A bucket's shape: `capacity` tokens, refilled at `capacity` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Largest burst.
    pub capacity: u32,
    /// Time to refill from empty to full.
    pub period: Duration,
}

impl RateLimit {
    /// v0.5's registration limit: 10 per 60 s per source IP.
    pub const V05_REGISTER: Self = Self {
        capacity: 10,
        period: Duration::from_secs(60),
    };
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets keyed by source, at most `max_entries` of them.
#[derive(Debug)]
pub struct RateLimiter<K> {
    limit: RateLimit,
    max_entries: usize,
    idle_after: Duration,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// Creates a table; buckets unused for `idle_after` are forgotten by [`Self::prune`].
    pub fn new(limit: RateLimit, max_entries: usize, idle_after: Duration) -> Self {
        Self {
            limit,
            max_entries,
            idle_after,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `key`; false when the bucket is empty or the table is full of
    /// active sources (new sources are then refused rather than tracked without bound).
    pub fn allow(&mut self, now: Instant, key: &K) -> bool {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_entries {
            self.prune(now);
            if self.buckets.len() >= self.max_entries {
                return false;
            }
        }
        let limit = self.limit;
        let bucket = self.buckets.entry(key.clone()).or_insert_with(|| Bucket {
            tokens: f64::from(limit.capacity),
            updated: now,
        });
        refill(bucket, limit, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets buckets unused for the idle period.
    pub fn prune(&mut self, now: Instant) {
        let idle_after = self.idle_after;
        self.buckets
            .retain(|_, bucket| now.saturating_duration_since(bucket.updated) < idle_after);
    }

    /// Number of tracked sources.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

fn refill(bucket: &mut Bucket, limit: RateLimit, now: Instant) {
    let elapsed = now.saturating_duration_since(bucket.updated);
    let capacity = f64::from(limit.capacity);
    let per_second = capacity / limit.period.as_secs_f64().max(f64::MIN_POSITIVE);
    bucket.tokens = (bucket.tokens + elapsed.as_secs_f64() * per_second).min(capacity);
    bucket.updated = bucket.updated.max(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only offsets from this instant matter; its absolute value never reaches an assertion.
    #[allow(clippy::disallowed_methods)]
    fn epoch() -> Instant {
        Instant::now()
    }

    #[test]
    fn burst_then_refill() {
        let start = epoch();
        let mut limiter = RateLimiter::new(RateLimit::V05_REGISTER, 4, Duration::from_secs(120));
        for _ in 0..10 {
            assert!(limiter.allow(start, &1u32));
        }
        assert!(!limiter.allow(start, &1u32));
        assert!(limiter.allow(start + Duration::from_secs(6), &1u32));
        assert!(!limiter.allow(start + Duration::from_secs(6), &1u32));
    }

    #[test]
    fn table_is_bounded() {
        let start = epoch();
        let mut limiter = RateLimiter::new(RateLimit::V05_REGISTER, 2, Duration::from_secs(120));
        assert!(limiter.allow(start, &1u32));
        assert!(limiter.allow(start, &2u32));
        assert!(!limiter.allow(start, &3u32));
        assert!(limiter.allow(start + Duration::from_secs(121), &3u32));
        assert_eq!(limiter.len(), 1);
    }
}
