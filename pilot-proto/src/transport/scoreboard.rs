//! The sender's record of segments in flight: cumulative and selective acknowledgements, and
//! loss detection.
//!
//! Losses are detected two ways. RACK (RFC 8985, simplified): once a segment is acknowledged,
//! any unacknowledged segment sent more than a reordering window before it is lost. This also
//! catches lost retransmissions, which duplicate-ACK counting cannot. And, as a fallback, the
//! retransmission timeout marks everything outstanding as lost. Segments are never re-cut: a
//! retransmission resends the same offsets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// SACKed segments above a hole that prove it lost (RFC 6675).
const DUP_THRESH: usize = 3;

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
}

/// What a cumulative acknowledgement did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Acked {
    /// Bytes (sequence offsets) newly acknowledged.
    pub(crate) bytes: usize,
    /// RTT measured from the newest segment acknowledged that was sent once (Karn).
    pub(crate) rtt: Option<Duration>,
    /// Transmission time of the most recently sent segment acknowledged (for RACK).
    pub(crate) newest_sent: Option<Instant>,
    /// The FIN was acknowledged.
    pub(crate) fin: bool,
}

/// Segments in flight, in stream order.
#[derive(Debug, Default)]
pub(crate) struct Scoreboard {
    segs: VecDeque<Sent>,
    /// Bytes neither acknowledged, SACKed nor declared lost.
    pipe: usize,
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
    pub(crate) fn on_ack(&mut self, ack: u64, now: Instant) -> Acked {
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
            self.account_delivered(&seg, now, &mut acked);
            acked.bytes += seg.len();
            acked.fin |= seg.fin;
        }
        acked
    }

    /// Marks every segment lying entirely inside one of `blocks` as SACKed. Returns the newest
    /// transmission time among newly SACKed segments.
    pub(crate) fn on_sack(&mut self, blocks: &[(u64, u64)]) -> Option<Instant> {
        let mut newest: Option<Instant> = None;
        for &(left, right) in blocks {
            let first = self.segs.partition_point(|s| s.start < left);
            for index in first..self.segs.len() {
                let seg = &mut self.segs[index];
                if seg.end > right {
                    break;
                }
                if seg.sacked {
                    continue;
                }
                if seg.counts_in_pipe() {
                    self.pipe -= seg.len();
                }
                seg.sacked = true;
                seg.lost = false;
                newest = Some(newest.map_or(seg.sent_at, |n| n.max(seg.sent_at)));
            }
        }
        newest
    }

    /// Declares lost every outstanding segment that RACK or the duplicate threshold condemns:
    /// sent more than `reorder` before `delivered_sent` (the send time of the newest segment
    /// known delivered), or with at least three SACKed segments above it (RFC 6675 DupThresh).
    /// Returns whether anything new was declared lost.
    pub(crate) fn detect_losses(
        &mut self,
        delivered_sent: Option<Instant>,
        reorder: Duration,
    ) -> bool {
        let mut any = false;
        let mut sacked_above = 0usize;
        for seg in self.segs.iter_mut().rev() {
            if seg.sacked {
                sacked_above += 1;
                continue;
            }
            let late = delivered_sent.is_some_and(|d| seg.sent_at + reorder < d);
            if seg.counts_in_pipe() && (late || sacked_above >= DUP_THRESH) {
                self.pipe -= seg.len();
                seg.lost = true;
                any = true;
            }
        }
        any
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

    /// Whether a segment is waiting for retransmission.
    pub(crate) fn has_lost(&self) -> bool {
        self.segs.iter().any(|s| s.lost)
    }

    fn account_delivered(&mut self, seg: &Sent, now: Instant, acked: &mut Acked) {
        if seg.counts_in_pipe() {
            self.pipe -= seg.len();
        }
        if seg.sacked {
            return;
        }
        if seg.transmissions == 1 {
            acked.rtt = Some(now.saturating_duration_since(seg.sent_at));
        }
        acked.newest_sent = Some(
            acked
                .newest_sent
                .map_or(seg.sent_at, |n| n.max(seg.sent_at)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sack_then_rack_marks_the_hole_lost() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut sb = Scoreboard::default();
        for i in 0..4u64 {
            sb.push(i * 10, i * 10 + 10, t0 + ms(i), false);
        }
        assert_eq!(sb.pipe(), 40);
        let newest = sb.on_sack(&[(10, 40)]);
        assert_eq!(newest, Some(t0 + ms(3)));
        assert_eq!(sb.pipe(), 10);
        assert!(sb.detect_losses(Some(t0 + ms(3)), ms(1)));
        assert_eq!(sb.pipe(), 0);
        let again = sb
            .take_lost(t0 + ms(100))
            .map(|s| (s.start, s.transmissions));
        assert_eq!(again, Some((0, 2)));
        let acked = sb.on_ack(40, t0 + ms(150));
        assert_eq!(acked.bytes, 40);
        assert_eq!(acked.rtt, None, "retransmitted segments give no RTT sample");
        assert!(sb.is_empty());
        assert_eq!(sb.pipe(), 0);
    }

    #[test]
    fn partial_ack_trims() {
        let t0 = Instant::now();
        let mut sb = Scoreboard::default();
        sb.push(0, 10, t0, false);
        let acked = sb.on_ack(4, t0);
        assert_eq!(acked.bytes, 4);
        assert_eq!(sb.pipe(), 6);
        assert_eq!(sb.first().map(|s| s.start), Some(4));
    }
}
