//! Seeds: one master seed, split into independent random streams per subsystem.
//!
//! Every source of randomness in a simulation (each link, each NAT, the fault rules, each host's
//! node seed) draws from its own stream derived from the master seed and a label, so adding a
//! draw in one subsystem never shifts the numbers another one sees. The master seed can be
//! overridden with the `PILOT_SIM_SEED` environment variable (decimal or `0x` hex).

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// The environment variable that overrides a test's seed.
pub const SEED_ENV: &str = "PILOT_SIM_SEED";

/// Returns the seed from `PILOT_SIM_SEED` if it is set and parses, else `default`.
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var(SEED_ENV)
        .ok()
        .and_then(|text| parse_seed(&text))
        .unwrap_or(default)
}

/// Parses a seed written in decimal or as `0x`-prefixed hexadecimal.
pub fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Derives a 32-byte seed for the stream `(domain, index)` of the master seed.
pub fn derive_seed(master: u64, domain: &str, index: u64) -> [u8; 32] {
    let mut state = splitmix(master ^ fnv1a(domain.as_bytes()));
    state = splitmix(state ^ index.rotate_left(17));
    let mut out = [0u8; 32];
    for chunk in out.chunks_exact_mut(8) {
        state = splitmix(state);
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    out
}

/// A fast deterministic random stream for one simulator subsystem.
#[derive(Debug, Clone)]
pub(crate) struct SimRng {
    inner: ChaCha8Rng,
}

impl SimRng {
    /// Creates the stream `(domain, index)` of `master`.
    pub(crate) fn new(master: u64, domain: &str, index: u64) -> Self {
        Self {
            inner: ChaCha8Rng::from_seed(derive_seed(master, domain, index)),
        }
    }

    /// Returns a float uniformly distributed in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.inner.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Returns true with probability `p` (and draws nothing when `p` is 0 or 1).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        self.unit() < p
    }

    /// Returns a value uniformly distributed in `0..bound` (0 when `bound` is 0).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Multiply-shift keeps the bias below 2^-64 per draw, which no test can observe.
        ((u128::from(self.inner.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a over `bytes`; stable across platforms and releases.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_and_hex() {
        assert_eq!(parse_seed("42"), Some(42));
        assert_eq!(parse_seed(" 0x2a "), Some(42));
        assert_eq!(parse_seed("nope"), None);
    }

    #[test]
    fn streams_differ_by_domain_and_index() {
        assert_ne!(derive_seed(1, "link", 0), derive_seed(1, "nat", 0));
        assert_ne!(derive_seed(1, "link", 0), derive_seed(1, "link", 1));
        assert_ne!(derive_seed(1, "link", 0), derive_seed(2, "link", 0));
        assert_eq!(derive_seed(9, "host", 3), derive_seed(9, "host", 3));
    }
}
