//! Congestion control: slow start, congestion avoidance and one window reduction per loss
//! episode (NewReno with SACK-driven recovery, RFC 5681 and RFC 6675 in spirit).
//!
//! v0.5 runs AIMD with a 10-MSS restart after a timeout and almost never fast-retransmits. Here a
//! loss detected from SACK information halves the window once per episode without waiting for a
//! timeout; a timeout restarts slow start from [`LOSS_WINDOW_SEGMENTS`] segments.

/// Initial window in segments (RFC 6928; v0.5 also starts at 10 segments).
pub(crate) const INITIAL_WINDOW_SEGMENTS: usize = 10;
/// Window after a retransmission timeout, in segments.
pub(crate) const LOSS_WINDOW_SEGMENTS: usize = 2;

// Limitation: window growth is Reno-like (one segment per RTT in congestion avoidance), so under
// random loss goodput follows about 1.22·MSS/(RTT·√p); there is no CUBIC or BBR.

/// Congestion window state, in bytes.
#[derive(Debug, Clone)]
pub(crate) struct Congestion {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    max_cwnd: usize,
    /// Bytes acknowledged in congestion avoidance since the window last grew by one MSS.
    avoidance_credit: usize,
    /// While in recovery: the stream offset whose acknowledgement ends the episode.
    recovery_end: Option<u64>,
    /// Window and threshold before the current episode, while it may still be undone.
    undo: Option<(usize, usize)>,
}

impl Congestion {
    /// A fresh window for segments of `mss` bytes, never above `max_cwnd`.
    pub(crate) fn new(mss: usize, max_cwnd: usize) -> Self {
        let mss = mss.max(1);
        let max_cwnd = max_cwnd.max(2 * mss);
        Self {
            mss,
            cwnd: (INITIAL_WINDOW_SEGMENTS * mss).min(max_cwnd),
            ssthresh: max_cwnd,
            max_cwnd,
            avoidance_credit: 0,
            recovery_end: None,
            undo: None,
        }
    }

    /// The window in bytes.
    pub(crate) fn window(&self) -> usize {
        self.cwnd
    }

    /// Whether a loss episode is in progress.
    pub(crate) fn in_recovery(&self) -> bool {
        self.recovery_end.is_some()
    }

    /// New cumulative acknowledgement of `acked` bytes, the cumulative point now `snd_una`.
    pub(crate) fn on_ack(&mut self, acked: usize, snd_una: u64) {
        if let Some(end) = self.recovery_end {
            if snd_una < end {
                return;
            }
            self.recovery_end = None;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd = self.cwnd.saturating_add(acked.min(2 * self.mss));
        } else {
            self.avoidance_credit += acked;
            if self.avoidance_credit >= self.cwnd {
                self.avoidance_credit -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(self.mss);
            }
        }
        self.cwnd = self.cwnd.min(self.max_cwnd);
    }

    /// A loss detected from acknowledgements. `flight` is the bytes outstanding, `snd_nxt` the
    /// offset after the newest byte sent. Only the first loss of an episode reduces the window.
    pub(crate) fn on_loss(&mut self, flight: usize, snd_nxt: u64) {
        if self.in_recovery() {
            return;
        }
        self.undo = Some((self.cwnd, self.ssthresh));
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh;
        self.avoidance_credit = 0;
        self.recovery_end = Some(snd_nxt);
    }

    /// A retransmission went out: the current episode can no longer be undone.
    pub(crate) fn on_retransmit(&mut self) {
        self.undo = None;
    }

    /// The loss that started this episode was reordering, and nothing was retransmitted:
    /// restore the window (in the spirit of RFC 4015, Eifel response).
    pub(crate) fn undo(&mut self) {
        if let Some((cwnd, ssthresh)) = self.undo.take() {
            self.cwnd = cwnd;
            self.ssthresh = ssthresh;
            self.recovery_end = None;
        }
    }

    /// A retransmission timeout: collapse to the loss window and slow-start again.
    pub(crate) fn on_timeout(&mut self, flight: usize, snd_nxt: u64) {
        if !self.in_recovery() {
            self.ssthresh = (flight / 2).max(2 * self.mss);
        }
        self.cwnd = LOSS_WINDOW_SEGMENTS * self.mss;
        self.undo = None;
        self.avoidance_credit = 0;
        self.recovery_end = Some(snd_nxt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_then_halving_once_per_episode() {
        let mut cc = Congestion::new(1000, 1 << 20);
        assert_eq!(cc.window(), 10_000);
        cc.on_ack(1000, 1000);
        assert_eq!(cc.window(), 11_000);
        cc.on_loss(20_000, 50_000);
        assert_eq!(cc.window(), 10_000);
        cc.on_loss(10_000, 60_000);
        assert_eq!(
            cc.window(),
            10_000,
            "second loss in the same episode is ignored"
        );
        cc.on_ack(1000, 10_000);
        assert_eq!(cc.window(), 10_000, "no growth during recovery");
        cc.on_ack(1000, 50_000);
        assert!(!cc.in_recovery());
    }

    #[test]
    fn avoidance_grows_one_segment_per_window() {
        let mut cc = Congestion::new(1000, 1 << 20);
        cc.on_loss(8000, 0);
        cc.on_ack(0, 1);
        let start = cc.window();
        for _ in 0..start / 1000 {
            cc.on_ack(1000, 2);
        }
        assert_eq!(cc.window(), start + 1000);
    }

    #[test]
    fn timeout_restarts_small() {
        let mut cc = Congestion::new(1000, 1 << 20);
        cc.on_timeout(30_000, 30_000);
        assert_eq!(cc.window(), 2000);
        assert!(cc.in_recovery());
    }
}
