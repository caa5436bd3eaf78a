//! Per-connection timers: a closed set of kinds stored in a fixed table.

use std::time::Instant;

/// Every timer a connection can arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// Retransmission of the SYN, SYN-ACK, data or FIN (RFC 6298).
    Retransmit,
    /// RACK: an outstanding segment becomes lost unless acknowledged by then.
    Rack,
    /// Tail loss probe: no acknowledgement for two RTTs while data is out.
    TailProbe,
    /// Zero-window probe (persist timer).
    Persist,
    /// Delayed acknowledgement.
    DelayedAck,
    /// Nagle coalescing: send a small tail after this long even if data is outstanding.
    Nagle,
    /// Send a keepalive when the connection has been quiet.
    Keepalive,
    /// Give up on a peer that has been silent too long.
    Idle,
    /// End of TIME_WAIT (or of FIN_WAIT_2): the connection is forgotten.
    Linger,
}

impl TimerKind {
    /// All kinds, in the order `handle_timeout` services them.
    pub(crate) const ALL: [Self; 9] = [
        Self::Retransmit,
        Self::Rack,
        Self::TailProbe,
        Self::Persist,
        Self::DelayedAck,
        Self::Nagle,
        Self::Keepalive,
        Self::Idle,
        Self::Linger,
    ];
}

/// One optional deadline per [`TimerKind`].
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; 9],
}

impl TimerTable {
    /// Arms `kind` to fire at `at`, replacing any earlier deadline.
    pub(crate) fn set(&mut self, kind: TimerKind, at: Instant) {
        self.deadlines[kind as usize] = Some(at);
    }

    /// Disarms `kind`.
    pub(crate) fn stop(&mut self, kind: TimerKind) {
        self.deadlines[kind as usize] = None;
    }

    /// The deadline of `kind`, if armed.
    pub(crate) fn get(&self, kind: TimerKind) -> Option<Instant> {
        self.deadlines[kind as usize]
    }

    /// Whether `kind` is armed.
    pub(crate) fn is_set(&self, kind: TimerKind) -> bool {
        self.get(kind).is_some()
    }

    /// Disarms `kind` and reports whether it had expired at `now`.
    pub(crate) fn take_expired(&mut self, kind: TimerKind, now: Instant) -> bool {
        match self.get(kind) {
            Some(at) if at <= now => {
                self.stop(kind);
                true
            }
            _ => false,
        }
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms everything.
    pub(crate) fn clear(&mut self) {
        self.deadlines = [None; 9];
    }
}
