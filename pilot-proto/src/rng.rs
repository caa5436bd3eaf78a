//! The seeded random generator every state machine in the core draws from.
//!
//! The driver supplies a 32-byte seed (from the OS in production, from the simulation seed in
//! `pilot-sim`); nothing here touches OS entropy. ChaCha20 is used because the stream also
//! produces key material (X25519 secrets, initial sequence numbers) and must be unpredictable to
//! peers, not only statistically random.

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng as _, SeedableRng};

/// A deterministic, cryptographically strong generator seeded by the driver.
pub struct Rng {
    inner: ChaCha20Rng,
}

impl Rng {
    /// Creates a generator from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            inner: ChaCha20Rng::from_seed(seed),
        }
    }

    /// Derives an independent child generator, so that subsystems do not perturb each other's
    /// streams when one of them draws more values.
    pub fn fork(&mut self) -> Self {
        Self::from_seed(self.bytes())
    }

    /// Returns the next uniformly distributed `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Returns the next uniformly distributed `u32`.
    pub fn next_u32(&mut self) -> u32 {
        self.inner.next_u32()
    }

    /// Fills `dst` with random bytes.
    pub fn fill(&mut self, dst: &mut [u8]) {
        self.inner.fill_bytes(dst);
    }

    /// Returns `N` random bytes.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }

    /// Returns a value uniformly distributed in `0..bound` (`bound` must be non-zero; zero
    /// yields zero). Uses rejection sampling, so there is no modulo bias.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let value = self.next_u64();
            if value < zone {
                return value % bound;
            }
        }
    }

    /// Returns a float uniformly distributed in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The state is secret: it predicts future keys and sequence numbers.
        f.write_str("Rng { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::from_seed([7; 32]);
        let mut b = Rng::from_seed([7; 32]);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_eq!(a.fork().next_u64(), b.fork().next_u64());
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = Rng::from_seed([1; 32]);
        for bound in 1..200 {
            assert!(rng.below(bound) < bound);
        }
        assert_eq!(rng.below(0), 0);
    }
}
