//! Choosing the next segment a connection sends: reset, handshake, retransmission, new data,
//! FIN, zero-window probe, then a pure ACK (with SACK blocks when there is a hole).

use std::time::{Duration, Instant};

use super::{Conn, SYN_RTO_INITIAL, SYN_RTO_MAX};
use crate::transport::config::TransportConfig;
use crate::transport::timer::TimerKind;
use crate::transport::types::ConnState;
use crate::wire::packet::Flags;
use crate::wire::sack::{SackBlock, SackRepr};

/// Header fields of an outbound segment; the payload was appended to the caller's buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutHeader {
    pub(crate) flags: Flags,
    pub(crate) seq: u32,
    pub(crate) ack: u32,
    pub(crate) window: u16,
    /// What the segment carries, for statistics.
    pub(crate) kind: OutKind,
}

/// What an outbound segment carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutKind {
    /// Handshake, ACK, FIN, probe or keepalive.
    Control,
    /// A reset.
    Reset,
    /// Stream data, first transmission.
    Data,
    /// Stream data, retransmitted.
    Retransmit,
}

impl Conn {
    /// Appends the next segment's payload to `buf` and returns its header, or `None` when
    /// nothing is due.
    pub(crate) fn output(
        &mut self,
        now: Instant,
        config: &TransportConfig,
        buf: &mut Vec<u8>,
    ) -> Option<OutHeader> {
        if self.pending.rst {
            self.pending.rst = false;
            return Some(self.control(Flags::RST, self.snd.seq(self.snd_nxt), OutKind::Reset));
        }
        if self.state == ConnState::Closed {
            return None;
        }
        if self.pending.syn || self.pending.syn_ack {
            let header = self.handshake(now);
            self.spoke(now, config);
            return Some(header);
        }
        if matches!(self.state, ConnState::SynSent | ConnState::SynReceived) {
            return None;
        }
        let header = self
            .retransmission(now, buf)
            .or_else(|| self.tail_probe(now, buf))
            .or_else(|| self.new_data(now, config, buf))
            .or_else(|| self.fin(now))
            .or_else(|| self.probe(buf))
            .or_else(|| self.pure_ack(buf))?;
        self.spoke(now, config);
        if matches!(header.kind, OutKind::Data | OutKind::Retransmit) {
            self.arm_tail_probe(now, config);
        }
        Some(header)
    }

    /// A header with no ACK information (SYN, RST).
    fn control(&self, flags: Flags, seq: u32, kind: OutKind) -> OutHeader {
        OutHeader {
            flags,
            seq,
            ack: 0,
            window: 0,
            kind,
        }
    }

    /// A header carrying our acknowledgement and window; clears pending ACK state.
    fn acking(&mut self, flags: Flags, seq: u32, kind: OutKind) -> OutHeader {
        let ack = self.rcv.map_or(0, |rcv| rcv.seq(self.recv.next()));
        let window = self.window_units();
        self.advertised_units = window;
        self.pending.ack = false;
        self.pending.keepalive = false;
        self.unacked_segments = 0;
        self.timers.stop(TimerKind::DelayedAck);
        OutHeader {
            flags: flags | Flags::ACK,
            seq,
            ack,
            window,
            kind,
        }
    }

    /// SYN or SYN-ACK, with the v0.5 backoff (1 s doubling to 8 s).
    fn handshake(&mut self, now: Instant) -> OutHeader {
        if matches!(self.state, ConnState::SynSent | ConnState::SynReceived) {
            // Only the handshake itself is timed; a SYN-ACK repeated later (the peer lost
            // ours) leaves the data retransmission timer alone.
            self.syn_transmissions = self.syn_transmissions.saturating_add(1);
            self.handshake_sent = (self.syn_transmissions == 1).then_some(now);
            let shift = u32::from(self.syn_transmissions - 1).min(3);
            let rto = (SYN_RTO_INITIAL * (1 << shift)).min(SYN_RTO_MAX);
            self.timers.set(TimerKind::Retransmit, now + rto);
        }
        let isn = self.snd.isn();
        if self.pending.syn {
            self.pending.syn = false;
            let mut header = self.control(Flags::SYN, isn, OutKind::Control);
            header.window = self.window_units();
            return header;
        }
        self.pending.syn_ack = false;
        self.acking(Flags::SYN, isn, OutKind::Control)
    }

    fn retransmission(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<OutHeader> {
        if !self.scoreboard.has_lost() {
            return None;
        }
        let pipe = self.scoreboard.pipe();
        if pipe > 0 && pipe + self.mss > self.cc.window() {
            return None;
        }
        let seg = self.scoreboard.take_lost(now)?;
        self.cc.on_retransmit();
        self.arm_retransmit(now);
        let seq = self.snd.seq(seg.start);
        if seg.fin {
            return Some(self.acking(Flags::FIN, seq, OutKind::Control));
        }
        // Segments never exceed one MSS, so the length fits in usize.
        let len = (seg.end - seg.start) as usize;
        if !self.send.copy_to(seg.start, len, buf) {
            return None;
        }
        Some(self.acking(Flags::EMPTY, seq, OutKind::Retransmit))
    }

    fn new_data(
        &mut self,
        now: Instant,
        config: &TransportConfig,
        buf: &mut Vec<u8>,
    ) -> Option<OutHeader> {
        if self.fin_sent || self.send.end() <= self.snd_nxt {
            return None;
        }
        let available = (self.send.end() - self.snd_nxt) as usize;
        let peer_room = (self.snd_una + self.peer_window).saturating_sub(self.snd_nxt) as usize;
        if peer_room == 0 {
            self.arm_persist(now);
            return None;
        }
        let max = self.mss.min(available).min(peer_room);
        let pipe = self.scoreboard.pipe();
        if pipe > 0 && pipe + max > self.cc.window() {
            return None;
        }
        if self.nagle_holds(max, available) {
            if !self.timers.is_set(TimerKind::Nagle) {
                self.timers.set(TimerKind::Nagle, now + config.nagle_delay);
            }
            return None;
        }
        let len = self.send.cut(self.snd_nxt, max);
        if len == 0 || !self.send.copy_to(self.snd_nxt, len, buf) {
            return None;
        }
        let start = self.snd_nxt;
        self.snd_nxt += len as u64;
        self.scoreboard.push(start, self.snd_nxt, now, false);
        self.pending.nagle_expired = false;
        self.timers.stop(TimerKind::Nagle);
        self.arm_retransmit(now);
        Some(self.acking(Flags::EMPTY, self.snd.seq(start), OutKind::Data))
    }

    /// Nagle: hold a small, data-limited segment while earlier data is unacknowledged.
    fn nagle_holds(&self, len: usize, available: usize) -> bool {
        len < self.mss
            && len == available
            && !self.nodelay
            && !self.fin_queued
            && !self.scoreboard.is_empty()
            && !self.pending.nagle_expired
    }

    /// The FIN goes once every byte before it is acknowledged, so a v0.5 peer (which discards
    /// anything arriving after a FIN) has received the whole stream.
    fn fin(&mut self, now: Instant) -> Option<OutHeader> {
        let all_acked = self.snd_una == self.send.end() && self.snd_nxt == self.send.end();
        if !self.fin_queued || self.fin_sent || !all_acked {
            return None;
        }
        self.fin_sent = true;
        let start = self.snd_nxt;
        self.snd_nxt += 1;
        self.scoreboard.push(start, self.snd_nxt, now, true);
        self.arm_retransmit(now);
        Some(self.acking(Flags::FIN, self.snd.seq(start), OutKind::Control))
    }

    /// A zero-window probe: the next byte, sent outside the window and not recorded as in
    /// flight. The receiver either takes it or answers with its current window.
    fn probe(&mut self, buf: &mut Vec<u8>) -> Option<OutHeader> {
        if !self.pending.probe {
            return None;
        }
        self.pending.probe = false;
        if self.fin_sent || !self.send.copy_to(self.snd_nxt, 1, buf) {
            return None;
        }
        Some(self.acking(Flags::EMPTY, self.snd.seq(self.snd_nxt), OutKind::Control))
    }

    fn pure_ack(&mut self, buf: &mut Vec<u8>) -> Option<OutHeader> {
        if !self.pending.ack && !self.pending.keepalive {
            return None;
        }
        if self.state == ConnState::TimeWait && !self.pending.ack {
            return None;
        }
        self.append_sack(buf);
        Some(self.acking(Flags::EMPTY, self.snd.seq(self.snd_nxt), OutKind::Control))
    }

    /// Appends the v0.5 SACK blob for the current holes, if any.
    fn append_sack(&self, buf: &mut Vec<u8>) {
        let Some(rcv) = self.rcv else { return };
        let blocks: Vec<SackBlock> = self
            .recv
            .sack_ranges()
            .into_iter()
            .map(|(left, right)| SackBlock::new(rcv.seq(left), rcv.seq(right)))
            .collect();
        let repr = SackRepr::new(&blocks);
        let at = buf.len();
        buf.resize(at + repr.buffer_len(), 0);
        if repr.emit(&mut buf[at..]).is_err() {
            // Unreachable: the buffer was sized from `buffer_len`. Send a plain ACK instead.
            buf.truncate(at);
        }
    }

    /// Tail loss probe (RFC 8985 §7): when nothing has been acknowledged for about two RTTs,
    /// send one segment (new data if the peer's window allows, else the newest outstanding
    /// one) outside the congestion window, so that the ACK it provokes lets RACK find the
    /// losses instead of waiting for the retransmission timeout.
    fn tail_probe(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<OutHeader> {
        if !self.pending.tail_probe {
            return None;
        }
        self.pending.tail_probe = false;
        if self.scoreboard.has_lost() {
            // Retransmissions are pending: they provoke the ACK a probe would.
            return None;
        }
        self.tail_probe_out = true;
        let peer_room = (self.snd_una + self.peer_window).saturating_sub(self.snd_nxt) as usize;
        let available = self.send.end().saturating_sub(self.snd_nxt) as usize;
        if !self.fin_sent && available > 0 && peer_room > 0 {
            let len = self
                .send
                .cut(self.snd_nxt, self.mss.min(available).min(peer_room));
            if len > 0 && self.send.copy_to(self.snd_nxt, len, buf) {
                let start = self.snd_nxt;
                self.snd_nxt += len as u64;
                self.scoreboard.push(start, self.snd_nxt, now, false);
                return Some(self.acking(Flags::EMPTY, self.snd.seq(start), OutKind::Data));
            }
        }
        let seg = self.scoreboard.take_last(now)?;
        let seq = self.snd.seq(seg.start);
        if seg.fin {
            return Some(self.acking(Flags::FIN, seq, OutKind::Control));
        }
        let len = (seg.end - seg.start) as usize;
        if !self.send.copy_to(seg.start, len, buf) {
            return None;
        }
        Some(self.acking(Flags::EMPTY, seq, OutKind::Retransmit))
    }

    /// Arms the tail-loss-probe timer two smoothed RTTs out (plus the peer's delayed-ACK time
    /// when a single segment is out), unless a probe is already unanswered, nothing is in
    /// flight, there is no RTT sample yet, or the retransmission timer would fire first.
    pub(super) fn arm_tail_probe(&mut self, now: Instant, config: &TransportConfig) {
        self.timers.stop(TimerKind::TailProbe);
        if self.tail_probe_out || self.scoreboard.is_empty() || !self.rtt.has_sample() {
            return;
        }
        let mut pto = self.rtt.srtt() * 2;
        if self.scoreboard.pipe() <= self.mss {
            pto += config.delayed_ack;
        }
        let at = now + pto.max(Duration::from_millis(10));
        if self
            .timers
            .get(TimerKind::Retransmit)
            .is_some_and(|rto| at >= rto)
        {
            return;
        }
        self.timers.set(TimerKind::TailProbe, at);
    }

    fn arm_retransmit(&mut self, now: Instant) {
        if !self.timers.is_set(TimerKind::Retransmit) {
            self.timers.set(TimerKind::Retransmit, now + self.rtt.rto());
        }
    }

    fn arm_persist(&mut self, now: Instant) {
        if self.scoreboard.is_empty() && !self.timers.is_set(TimerKind::Persist) {
            self.timers
                .set(TimerKind::Persist, now + self.persist_interval);
        }
    }

    /// The next persist interval (doubling, capped).
    pub(super) fn backoff_persist(&mut self) -> Duration {
        self.persist_interval = (self.persist_interval * 2).min(super::PERSIST_MAX);
        self.persist_interval
    }
}
