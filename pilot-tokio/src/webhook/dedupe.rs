//! Delivery-id memory: turns a provider's retries of one delivery into one event.
//!
//! Owns [`DeliveryDedupe`], a table of recently seen delivery keys bounded both by count and by
//! age. A key is *claimed* when a request starts publishing, *confirmed* once the event is
//! durable, and *released* if publishing failed (so the provider's retry is not swallowed).
//! A retry that arrives while the first attempt is still publishing sees [`Claim::InFlight`].
//!
//! Time is an argument (`now: Instant`), so the window is tested without sleeping.
//!
//! # Limitations
//! - The memory lives in RAM. Across a restart it holds only what the host passes back through
//!   [`DeliveryDedupe::remember`] (the inbound server does this from
//!   `InboundConfig::remembered`); ids the host does not supply are forgotten.
//! - When the count bound is reached the oldest key is forgotten before its age runs out
//!   (counted in [`DeliveryDedupe::evicted_early`]); a retry of that delivery becomes a new event.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Default number of remembered delivery keys.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Default age after which a key is forgotten: 72 hours, the retry horizon of Stripe and of the
/// Standard Webhooks example schedule.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(72 * 3600);

/// The answer to [`DeliveryDedupe::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen in the window: the caller now owns publishing it.
    Fresh,
    /// Already published and confirmed: answer success without publishing again.
    Duplicate,
    /// Another request with this key is still publishing: ask the provider to retry later.
    InFlight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Done,
}

#[derive(Debug)]
struct Slot {
    generation: u64,
    at: Instant,
    state: State,
}

/// A bounded (count and age) memory of delivery keys.
#[derive(Debug)]
pub struct DeliveryDedupe {
    slots: HashMap<String, Slot>,
    order: VecDeque<(u64, String)>,
    capacity: usize,
    max_age: Duration,
    next_generation: u64,
    evicted_early: u64,
}

impl Default for DeliveryDedupe {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_MAX_AGE)
    }
}

impl DeliveryDedupe {
    /// A memory of at most `capacity` keys (at least 1), each kept for `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            slots: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            max_age,
            next_generation: 0,
            evicted_early: 0,
        }
    }

    /// Number of keys currently remembered.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Keys forgotten because of the count bound before their age ran out.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }

    /// Looks `key` up and, if it is fresh, marks it in flight.
    pub fn claim(&mut self, now: Instant, key: &str) -> Claim {
        self.expire(now);
        match self.slots.get(key).map(|slot| slot.state) {
            Some(State::Done) => Claim::Duplicate,
            Some(State::InFlight) => Claim::InFlight,
            None => {
                self.insert(now, key, State::InFlight);
                Claim::Fresh
            }
        }
    }

    /// Marks a claimed key as durably published.
    pub fn confirm(&mut self, now: Instant, key: &str) {
        match self.slots.get_mut(key) {
            Some(slot) => slot.state = State::Done,
            None => self.insert(now, key, State::Done),
        }
    }

    /// Forgets a claimed key whose publish failed, so a retry is treated as new.
    pub fn release(&mut self, key: &str) {
        if self
            .slots
            .get(key)
            .is_some_and(|slot| slot.state == State::InFlight)
        {
            self.slots.remove(key);
        }
    }

    /// Records a key known to be published already (for example, reloaded after a restart).
    pub fn remember(&mut self, now: Instant, key: &str) {
        self.expire(now);
        if !self.slots.contains_key(key) {
            self.insert(now, key, State::Done);
        }
    }

    fn insert(&mut self, now: Instant, key: &str, state: State) {
        while self.slots.len() >= self.capacity {
            if !self.pop_oldest() {
                break;
            }
            self.evicted_early += 1;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.slots.insert(
            key.to_owned(),
            Slot {
                generation,
                at: now,
                state,
            },
        );
        self.order.push_back((generation, key.to_owned()));
        self.compact_if_sparse();
    }

    /// Drops keys older than the window (in insertion order; stale queue entries are skipped).
    fn expire(&mut self, now: Instant) {
        while let Some((generation, key)) = self.order.front() {
            let Some(slot) = self.slots.get(key) else {
                self.order.pop_front();
                continue;
            };
            if slot.generation != *generation {
                self.order.pop_front();
                continue;
            }
            if now.saturating_duration_since(slot.at) < self.max_age {
                break;
            }
            self.pop_oldest();
        }
    }

    /// Removes the oldest live key. Returns false when there is none.
    fn pop_oldest(&mut self) -> bool {
        while let Some((generation, key)) = self.order.pop_front() {
            if self
                .slots
                .get(&key)
                .is_some_and(|slot| slot.generation == generation)
            {
                self.slots.remove(&key);
                return true;
            }
        }
        false
    }

    /// Released keys leave stale queue entries; rebuild the queue when they dominate, which
    /// keeps the queue within twice the capacity.
    fn compact_if_sparse(&mut self) {
        if self.order.len() <= self.capacity.saturating_mul(2) {
            return;
        }
        let slots = &self.slots;
        self.order.retain(|(generation, key)| {
            slots
                .get(key)
                .is_some_and(|slot| slot.generation == *generation)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_of_a_confirmed_delivery_is_a_duplicate() {
        let t0 = Instant::now();
        let mut dedupe = DeliveryDedupe::new(10, Duration::from_secs(60));
        assert_eq!(dedupe.claim(t0, "a"), Claim::Fresh);
        assert_eq!(dedupe.claim(t0, "a"), Claim::InFlight);
        dedupe.confirm(t0, "a");
        assert_eq!(
            dedupe.claim(t0 + Duration::from_secs(59), "a"),
            Claim::Duplicate
        );
        assert_eq!(dedupe.claim(t0, "b"), Claim::Fresh);
    }

    #[test]
    fn released_key_can_be_claimed_again() {
        let t0 = Instant::now();
        let mut dedupe = DeliveryDedupe::new(10, Duration::from_secs(60));
        assert_eq!(dedupe.claim(t0, "a"), Claim::Fresh);
        dedupe.release("a");
        assert_eq!(dedupe.claim(t0, "a"), Claim::Fresh);
        dedupe.confirm(t0, "a");
        dedupe.release("a");
        assert_eq!(
            dedupe.claim(t0, "a"),
            Claim::Duplicate,
            "release never forgets a done key"
        );
    }

    #[test]
    fn keys_expire_after_max_age() {
        let t0 = Instant::now();
        let mut dedupe = DeliveryDedupe::new(10, Duration::from_secs(60));
        dedupe.remember(t0, "a");
        dedupe.remember(t0 + Duration::from_secs(30), "b");
        assert_eq!(
            dedupe.claim(t0 + Duration::from_secs(60), "a"),
            Claim::Fresh
        );
        assert_eq!(
            dedupe.claim(t0 + Duration::from_secs(60), "b"),
            Claim::Duplicate
        );
        assert_eq!(dedupe.evicted_early(), 0);
    }

    #[test]
    fn count_bound_evicts_oldest_and_counts_it() {
        let t0 = Instant::now();
        let mut dedupe = DeliveryDedupe::new(3, Duration::from_secs(60));
        for key in ["a", "b", "c", "d"] {
            dedupe.remember(t0, key);
        }
        assert_eq!(dedupe.len(), 3);
        assert_eq!(dedupe.evicted_early(), 1);
        assert_eq!(dedupe.claim(t0, "d"), Claim::Duplicate);
        assert_eq!(dedupe.claim(t0, "a"), Claim::Fresh);
    }

    #[test]
    fn queue_stays_bounded_under_claim_release_churn() {
        let t0 = Instant::now();
        let mut dedupe = DeliveryDedupe::new(4, Duration::from_secs(60));
        for i in 0..1_000 {
            let key = format!("k{i}");
            assert_eq!(dedupe.claim(t0, &key), Claim::Fresh);
            dedupe.release(&key);
        }
        assert!(
            dedupe.order.len() <= 9,
            "queue grew to {}",
            dedupe.order.len()
        );
        assert!(dedupe.is_empty());
    }
}
