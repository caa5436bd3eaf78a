//! Servicing a connection's expired timers.

use std::time::Instant;

use super::{Conn, Events};
use crate::transport::config::TransportConfig;
use crate::transport::timer::TimerKind;
use crate::transport::types::{CloseReason, ConnState};

impl Conn {
    /// Handles every timer that expired at `now`.
    pub(crate) fn timeout(&mut self, now: Instant, config: &TransportConfig, events: &mut Events) {
        for kind in TimerKind::ALL {
            if self.state == ConnState::Closed {
                return;
            }
            if self.timers.take_expired(kind, now) {
                self.fire(kind, now, config, events);
            }
        }
    }

    fn fire(
        &mut self,
        kind: TimerKind,
        now: Instant,
        config: &TransportConfig,
        events: &mut Events,
    ) {
        match kind {
            TimerKind::Retransmit => self.on_retransmit_timeout(now, config, events),
            TimerKind::Rack => self.detect_losses(now),
            TimerKind::TailProbe => self.pending.tail_probe = !self.scoreboard.is_empty(),
            TimerKind::Persist => {
                self.pending.probe = true;
                let next = self.backoff_persist();
                self.timers.set(TimerKind::Persist, now + next);
            }
            TimerKind::DelayedAck => self.pending.ack = true,
            TimerKind::Nagle => self.pending.nagle_expired = true,
            TimerKind::Keepalive => self.pending.keepalive = true,
            TimerKind::Idle => {
                self.pending.rst = true;
                self.finish(CloseReason::IdleTimeout, events);
            }
            TimerKind::Linger => match self.state {
                ConnState::FinWait2 => self.finish(CloseReason::IdleTimeout, events),
                _ => self.finish(CloseReason::Normal, events),
            },
        }
    }

    fn on_retransmit_timeout(
        &mut self,
        now: Instant,
        config: &TransportConfig,
        events: &mut Events,
    ) {
        match self.state {
            ConnState::SynSent | ConnState::SynReceived => {
                if self.syn_transmissions >= config.max_syn_transmissions {
                    let reason = CloseReason::ConnectTimeout;
                    self.finish(reason, events);
                } else if self.state == ConnState::SynSent {
                    // Limitation: v0.5 switches the peer to the beacon relay after the third
                    // unanswered SYN; the transport only retransmits, the node owns the path.
                    self.pending.syn = true;
                } else {
                    self.pending.syn_ack = true;
                }
            }
            _ => self.on_data_timeout(now, config, events),
        }
    }

    /// RFC 6298 §5.4–5.6: back off, collapse the window, resend from the oldest hole; give up
    /// with a reset once a segment has used all its transmissions.
    fn on_data_timeout(&mut self, now: Instant, config: &TransportConfig, events: &mut Events) {
        let Some(oldest) = self
            .scoreboard
            .first_unsacked()
            .or_else(|| self.scoreboard.first())
        else {
            return;
        };
        if oldest.transmissions >= config.max_transmissions {
            self.pending = Default::default();
            self.pending.rst = true;
            self.finish(CloseReason::RetransmitLimit, events);
            return;
        }
        self.cc.on_timeout(self.scoreboard.pipe(), self.snd_nxt);
        self.scoreboard.mark_all_lost();
        self.rtt.on_timeout();
        self.timers.set(TimerKind::Retransmit, now + self.rtt.rto());
    }
}
