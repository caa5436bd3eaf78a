//! The receive replay window: a 256-wide bitmap of counters behind the highest one accepted
//! (`docs/design/tunnel.md#replay`).
//!
//! Checking and marking are separate steps on purpose: the caller checks, then decrypts, and
//! marks only a frame that authenticated. A forged frame therefore cannot move the window
//! (v0.5 raised its maximum before decrypting; dataplane.md §11, item 5).

/// How many counters behind the highest accepted one are still tracked.
pub const WINDOW: u64 = 256;

const WORDS: usize = (WINDOW / 64) as usize;

/// Why a counter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The counter was already accepted.
    #[error("counter already seen")]
    Replayed,
    /// The counter is 256 or more behind the highest accepted one.
    #[error("counter is older than the replay window")]
    TooOld,
}

/// A sliding bitmap window over 64-bit counters. Bit `counter % 256` records whether that
/// counter was accepted; `highest` is the largest counter marked so far (0 when empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: u64,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// An empty window: every counter is acceptable once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks whether `counter` may be accepted, without changing anything.
    ///
    /// # Errors
    /// [`ReplayError::Replayed`] or [`ReplayError::TooOld`].
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if counter > self.highest {
            return Ok(());
        }
        if self.highest - counter >= WINDOW {
            return Err(ReplayError::TooOld);
        }
        if self.is_set(counter) {
            return Err(ReplayError::Replayed);
        }
        Ok(())
    }

    /// Records `counter` as accepted. Call only after the frame authenticated and after
    /// [`Self::check`] passed; a counter outside the window is ignored.
    pub fn mark(&mut self, counter: u64) {
        if counter > self.highest {
            self.advance(counter);
        } else if self.highest - counter >= WINDOW {
            return;
        }
        let (word, bit) = position(counter);
        self.bits[word] |= bit;
    }

    /// The highest counter marked so far (0 when nothing was marked).
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Slides the window so that `counter` becomes the highest, forgetting positions that now
    /// stand for counters not yet seen.
    fn advance(&mut self, counter: u64) {
        let distance = counter - self.highest;
        if distance >= WINDOW {
            self.bits = [0; WORDS];
        } else {
            // At most 255 steps: each newly covered counter's bit is cleared.
            for skipped in self.highest + 1..=counter {
                let (word, bit) = position(skipped);
                self.bits[word] &= !bit;
            }
        }
        self.highest = counter;
    }

    fn is_set(&self, counter: u64) -> bool {
        let (word, bit) = position(counter);
        self.bits[word] & bit != 0
    }
}

/// Word index and bit mask of a counter's slot.
fn position(counter: u64) -> (usize, u64) {
    let slot = counter % WINDOW;
    ((slot / 64) as usize, 1u64 << (slot % 64))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn accept(window: &mut ReplayWindow, counter: u64) -> Result<(), ReplayError> {
        window.check(counter)?;
        window.mark(counter);
        Ok(())
    }

    #[test]
    fn edges_of_the_window() {
        let mut window = ReplayWindow::new();
        assert_eq!(accept(&mut window, 1), Ok(()));
        assert_eq!(accept(&mut window, 1), Err(ReplayError::Replayed));
        assert_eq!(accept(&mut window, 300), Ok(()));
        // 300 - 44 = 256: just outside; 300 - 45 = 255: the oldest slot still inside.
        assert_eq!(window.check(44), Err(ReplayError::TooOld));
        assert_eq!(accept(&mut window, 45), Ok(()));
        assert_eq!(accept(&mut window, 45), Err(ReplayError::Replayed));
        assert_eq!(accept(&mut window, 299), Ok(()));
        // 301 reuses slot 45's neighbour 301 % 256 = 45: the advance must clear it.
        assert_eq!(accept(&mut window, 301), Ok(()));
        assert_eq!(window.check(45), Err(ReplayError::TooOld));
    }

    #[test]
    fn check_does_not_mark() {
        let mut window = ReplayWindow::new();
        assert_eq!(window.check(1_000_000), Ok(()));
        assert_eq!(window.highest(), 0);
        assert_eq!(accept(&mut window, 5), Ok(()));
    }

    #[test]
    fn counter_zero_and_max() {
        let mut window = ReplayWindow::new();
        assert_eq!(accept(&mut window, 0), Ok(()));
        assert_eq!(accept(&mut window, 0), Err(ReplayError::Replayed));
        assert_eq!(accept(&mut window, u64::MAX), Ok(()));
        assert_eq!(accept(&mut window, u64::MAX), Err(ReplayError::Replayed));
        assert_eq!(window.check(u64::MAX - 255), Ok(()));
        assert_eq!(window.check(u64::MAX - 256), Err(ReplayError::TooOld));
    }

    /// The reference: a set of accepted counters and the rule the window approximates.
    fn model_accepts(seen: &BTreeSet<u64>, counter: u64) -> Result<(), ReplayError> {
        let highest = seen.last().copied().unwrap_or(0);
        if counter <= highest && highest - counter >= WINDOW {
            return Err(ReplayError::TooOld);
        }
        if seen.contains(&counter) {
            return Err(ReplayError::Replayed);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn matches_set_model(
            base in any::<u64>(),
            steps in prop::collection::vec(0u64..700, 1..300),
        ) {
            let mut window = ReplayWindow::new();
            let mut seen = BTreeSet::new();
            for step in steps {
                let counter = base.saturating_add(step);
                let expected = model_accepts(&seen, counter);
                prop_assert_eq!(accept(&mut window, counter), expected);
                if expected.is_ok() {
                    seen.insert(counter);
                }
            }
        }
    }
}
