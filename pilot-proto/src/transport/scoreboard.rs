//! The sender's record of segments in flight: cumulative and selective acknowledgements, and
//! loss detection.
//!
//! Losses are detected by RACK (RFC 8985, simplified): once a segment is known delivered, any
//! unacknowledged segment sent before it is lost when it has been outstanding longer than the
//! RTT of that delivery plus a reordering window; otherwise a timer is due when it would be.
//! This also catches lost retransmissions, which duplicate-ACK counting cannot. The
//! retransmission timeout remains the fallback and marks everything outstanding as lost.
//! Segments are never re-cut: a retransmission resends the same offsets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One transmitted segment, data or FIN.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// First stream offset covered.
    pub(crate) start: u64,
    /// One past the last offset covered (a FIN covers one offset).
    pub(crate) end: u64,
    /// When it was last transmitted.
    pub(crate) sent_at: Instant,
    /// How many times it has been transmitted.
    pub(crate) transmissions: u8,
    /// Covered by a SACK block.
    pub(crate) sacked: bool,
    /// Declared lost and waiting for retransmission.
    pub(crate) lost: bool,
    /// This is the FIN, not data.
    pub(crate) fin: bool,
}

impl Sent {
    fn len(&self) -> usize {
        // A segment is at most one MSS (or 1 for a FIN), far below usize::MAX.
        (self.end - self.start) as usize
    }

    fn counts_in_pipe(&self) -> bool {
        !self.sacked && !self.lost
    }

    /// RACK's order: by transmission time, then by sequence.
    fn sent_before(&self, other: &Delivered) -> bool {
        (self.sent_at, self.end) < (other.sent_at, other.end)
    }
}

/// The most recently sent segment known delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// When it was (last) transmitted.
    pub(crate) sent_at: Instant,
    /// Its end offset, breaking ties between segments sent at the same instant.
    pub(crate) end: u64,
    /// Whether it was transmitted only once (so `now - sent_at` is an RTT sample).
    pub(crate) once: bool,
}

impl Delivered {
    fn of(seg: &Sent) -> Self {
        Self {
            sent_at: seg.sent_at,
            end: seg.end,
            once: seg.transmissions == 1,
        }
    }

    /// Keeps the more recently sent of `self` and `other`.
    pub(crate) fn newest(self, other: Option<Self>) -> Self {
        match other {
            Some(o) if (o.sent_at, o.end) > (self.sent_at, self.end) => o,
            _ => self,
        }
    }
}

/// What a cumulative acknowledgement did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Acked {
    /// Bytes (sequence offsets) newly acknowledged.
    pub(crate) bytes: usize,
    /// The most recently sent segment this acknowledged (not previously SACKed).
    pub(crate) newest: Option<Delivered>,
    /// The FIN was acknowledged.
    pub(crate) fin: bool,
}

/// Segments in flight, in stream order.
#[derive(Debug, Default)]
pub(crate) struct Scoreboard {
    segs: VecDeque<Sent>,
    /// Bytes neither acknowledged, SACKed nor declared lost.
    pipe: usize,
    /// Segments declared lost that then arrived without a retransmission (reordering).
    spurious: u32,
}

impl Scoreboard {
    /// Records a first transmission of `[start, end)`.
    pub(crate) fn push(&mut self, start: u64, end: u64, now: Instant, fin: bool) {
        let seg = Sent {
            start,
            end,
            sent_at: now,
            transmissions: 1,
            sacked: false,
            lost: false,
            fin,
        };
        self.pipe += seg.len();
        self.segs.push_back(seg);
    }

    /// Whether nothing is outstanding.
    pub(crate) fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Bytes believed to be in the network.
    pub(crate) fn pipe(&self) -> usize {
        self.pipe
    }

    /// The oldest segment still outstanding.
    pub(crate) fn first(&self) -> Option<&Sent> {
        self.segs.front()
    }

    /// The oldest segment neither acknowledged nor SACKed.
    pub(crate) fn first_unsacked(&self) -> Option<&Sent> {
        self.segs.iter().find(|s| !s.sacked)
    }

    /// Applies a cumulative acknowledgement up to offset `ack`.
    pub(crate) fn on_ack(&mut self, ack: u64) -> Acked {
        let mut acked = Acked::default();
        while let Some(seg) = self.segs.front_mut() {
            if seg.start >= ack {
                break;
            }
            if seg.end > ack {
                // Partially acknowledged (the receiver trimmed it to its window).
                let trimmed = (ack - seg.start) as usize;
                if seg.counts_in_pipe() {
                    self.pipe -= trimmed;
                }
                seg.start = ack;
                acked.bytes += trimmed;
                break;
            }
            let Some(seg) = self.segs.pop_front() else {
                break;
            };
            self.account_delivered(&seg);
            acked.bytes += seg.len();
            acked.fin |= seg.fin;
            if !seg.sacked {
                acked.newest = Some(Delivered::of(&seg).newest(acked.newest));
            }
        }
        acked
    }

    /// Marks every segment lying entirely inside one of `blocks` as SACKed. Returns the most
    /// recently sent of the newly SACKed segments.
    pub(crate) fn on_sack(&mut self, blocks: &[(u64, u64)]) -> Option<Delivered> {
        let mut newest: Option<Delivered> = None;
        for &(left, right) in blocks {
            let first = self.segs.partition_point(|s| s.start < left);
            for index in first..self.segs.len() {
                let seg = &self.segs[index];
                if seg.end > right {
                    break;
                }
                if seg.sacked {
                    continue;
                }
                let seg = seg.clone();
                self.account_delivered(&seg);
                self.segs[index].sacked = true;
                self.segs[index].lost = false;
                newest = Some(Delivered::of(&seg).newest(newest));
            }
        }
        newest
    }

    /// RACK: declares lost every segment sent before `delivered` that has been outstanding
    /// longer than `wait` (the delivery's RTT plus the reordering window). Returns whether
    /// anything new was declared lost, and when the next undecided segment would be.
    pub(crate) fn detect_losses(
        &mut self,
        now: Instant,
        delivered: &Delivered,
        wait: Duration,
    ) -> (bool, Option<Instant>) {
        let mut any = false;
        let mut next: Option<Instant> = None;
        for seg in self.segs.iter_mut() {
            if !seg.counts_in_pipe() || !seg.sent_before(delivered) {
                continue;
            }
            let deadline = seg.sent_at + wait;
            if deadline <= now {
                self.pipe -= seg.len();
                seg.lost = true;
                any = true;
            } else {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        (any, next)
    }

    /// Declares the oldest outstanding segment lost (classic fast retransmit).
    pub(crate) fn mark_first_lost(&mut self) -> bool {
        let Some(seg) = self.segs.iter_mut().find(|s| !s.sacked) else {
            return false;
        };
        if !seg.counts_in_pipe() {
            return false;
        }
        seg.lost = true;
        self.pipe -= seg.len();
        true
    }

    /// Declares every outstanding un-SACKed segment lost (a retransmission timeout).
    pub(crate) fn mark_all_lost(&mut self) {
        for seg in self.segs.iter_mut() {
            if seg.counts_in_pipe() {
                seg.lost = true;
            }
        }
        self.pipe = 0;
    }

    /// The oldest segment declared lost, to be retransmitted now: marks it as in flight again.
    pub(crate) fn take_lost(&mut self, now: Instant) -> Option<Sent> {
        let seg = self.segs.iter_mut().find(|s| s.lost)?;
        seg.lost = false;
        seg.sent_at = now;
        seg.transmissions = seg.transmissions.saturating_add(1);
        let copy = seg.clone();
        self.pipe += copy.len();
        Some(copy)
    }

    /// The newest un-SACKed segment, resent as a tail loss probe: marks it in flight again.
    pub(crate) fn take_last(&mut self, now: Instant) -> Option<Sent> {
        let seg = self.segs.iter_mut().rev().find(|s| !s.sacked)?;
        if seg.lost {
            seg.lost = false;
            self.pipe += (seg.end - seg.start) as usize;
        }
        seg.sent_at = now;
        seg.transmissions = seg.transmissions.saturating_add(1);
        Some(seg.clone())
    }

    /// Whether a segment is waiting for retransmission.
    pub(crate) fn has_lost(&self) -> bool {
        self.segs.iter().any(|s| s.lost)
    }

    /// How many segments declared lost arrived anyway since the last call.
    pub(crate) fn take_spurious(&mut self) -> u32 {
        std::mem::take(&mut self.spurious)
    }

    fn account_delivered(&mut self, seg: &Sent) {
        if seg.counts_in_pipe() {
            self.pipe -= seg.len();
        }
        if seg.lost {
            self.spurious += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An arbitrary epoch; the tests only use durations after it.
    #[allow(clippy::disallowed_methods)]
    fn epoch() -> Instant {
        Instant::now()
    }

    #[test]
    fn sack_then_rack_marks_the_hole_lost() {
        let t0 = epoch();
        let ms = Duration::from_millis;
        let mut sb = Scoreboard::default();
        for i in 0..4u64 {
            sb.push(i * 10, i * 10 + 10, t0, false);
        }
        assert_eq!(sb.pipe(), 40);
        let newest = sb.on_sack(&[(10, 40)]).expect("newly sacked");
        assert_eq!((newest.sent_at, newest.end, newest.once), (t0, 40, true));
        assert_eq!(sb.pipe(), 10);
        let early = sb.detect_losses(t0 + ms(5), &newest, ms(10));
        assert_eq!(
            early,
            (false, Some(t0 + ms(10))),
            "undecided until the wait passes"
        );
        assert_eq!(sb.detect_losses(t0 + ms(10), &newest, ms(10)), (true, None));
        assert_eq!(sb.pipe(), 0);
        let again = sb
            .take_lost(t0 + ms(100))
            .map(|s| (s.start, s.transmissions));
        assert_eq!(again, Some((0, 2)));
        let acked = sb.on_ack(40);
        assert_eq!(acked.bytes, 40);
        assert_eq!(
            acked.newest.map(|d| d.once),
            Some(false),
            "retransmitted: no RTT sample"
        );
        assert!(sb.is_empty());
        assert_eq!(sb.pipe(), 0);
    }

    #[test]
    fn partial_ack_trims() {
        let t0 = epoch();
        let mut sb = Scoreboard::default();
        sb.push(0, 10, t0, false);
        let acked = sb.on_ack(4);
        assert_eq!(acked.bytes, 4);
        assert_eq!(sb.pipe(), 6);
        assert_eq!(sb.first().map(|s| s.start), Some(4));
    }
}
