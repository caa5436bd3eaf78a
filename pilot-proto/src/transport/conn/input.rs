//! Processing of one inbound stream segment, in the order RFC 793 §3.9 suggests: reset, SYN,
//! acknowledgement (with SACK), data, FIN.

use std::time::Instant;

use super::{Conn, Events, MAX_LATE_FIN_ACKS};
use crate::transport::config::TransportConfig;
use crate::transport::recv::Insert;
use crate::transport::scoreboard::Delivered;
use crate::transport::seq::SeqSpace;
use crate::transport::timer::TimerKind;
use crate::transport::types::{CloseReason, ConnState, TransportEvent};
use crate::wire::packet::{Flags, PacketRepr};
use crate::wire::sack::SackRepr;

/// How far behind the cumulative ACK a SACK block may start and still be read as SACK rather
/// than data (ACKs can arrive reordered, so blocks may be stale).
const SACK_STALENESS: u64 = 16 * 1024 * 1024;

/// Largest multiple of a quarter minimum RTT the reordering window grows to.
const MAX_REORDER_MULT: u32 = 8;

/// Context the transport lends a connection for one input.
pub(crate) struct InputCtx<'a> {
    pub(crate) now: Instant,
    pub(crate) config: &'a TransportConfig,
    /// Node-wide bytes this connection may still add to its buffers.
    pub(crate) budget: usize,
    pub(crate) events: &'a mut Events,
}

impl Conn {
    /// Processes one inbound segment addressed to this connection.
    pub(crate) fn input(&mut self, packet: &PacketRepr<'_>, ctx: &mut InputCtx<'_>) {
        if self.state == ConnState::Closed {
            return;
        }
        let flags = packet.flags;
        if flags.contains(Flags::RST) {
            self.input_rst(packet, ctx.events);
            return;
        }
        if self.state == ConnState::SynSent {
            self.input_syn_sent(packet, ctx);
            return;
        }
        if flags.contains(Flags::SYN) {
            self.input_duplicate_syn(packet);
            return;
        }
        self.heard(ctx.now, ctx.config);
        let sack = self.sack_blocks(packet);
        if flags.contains(Flags::ACK) {
            self.input_ack(packet, sack.as_deref(), ctx);
        }
        if self.state == ConnState::Closed {
            return;
        }
        if sack.is_none() && !packet.payload.is_empty() {
            self.input_data(packet, ctx);
        }
        if flags.contains(Flags::FIN) {
            self.input_fin(packet, sack.is_some(), ctx);
        }
    }

    /// RST: accepted in SYN_SENT when it answers our SYN, otherwise only when its sequence
    /// number is in the receive window or equals the peer's ISN (the form v0.5 sends: its RSTs
    /// carry sequence 0 and its ISN is always 0).
    fn input_rst(&mut self, packet: &PacketRepr<'_>, events: &mut Events) {
        if self.state == ConnState::SynSent {
            let answers_syn = self.snd.offset(packet.ack, 0) == Some(0);
            if answers_syn || !packet.flags.contains(Flags::ACK) {
                self.finish(CloseReason::Refused, events);
            }
            return;
        }
        let Some(rcv) = self.rcv else { return };
        let in_window = rcv.offset(packet.seq, self.recv.next()).is_some_and(|off| {
            off >= self.recv.next() && off < self.recv.next() + (self.recv.window() as u64).max(1)
        });
        if in_window || packet.seq == rcv.isn() {
            self.pending = Default::default();
            self.finish(CloseReason::Reset, events);
        }
    }

    /// SYN_SENT: only a SYN-ACK acknowledging our SYN moves us on.
    fn input_syn_sent(&mut self, packet: &PacketRepr<'_>, ctx: &mut InputCtx<'_>) {
        let flags = packet.flags;
        // Limitation: a bare SYN here (simultaneous open) is ignored, so two nodes dialing each
        // other on the same ports at once connect only if one of them retries later.
        if !flags.contains(Flags::SYN) || !flags.contains(Flags::ACK) {
            return;
        }
        if self.snd.offset(packet.ack, 0) != Some(0) {
            return;
        }
        if let Some(sent_at) = self.handshake_sent.take() {
            self.rtt
                .on_sample(ctx.now.saturating_duration_since(sent_at));
        }
        self.rcv = Some(SeqSpace::new(packet.seq));
        self.set_peer_window(packet.window, 0, 0);
        self.establish();
        self.timers.stop(TimerKind::Retransmit);
        self.pending.syn = false;
        self.pending.ack = true;
        self.heard(ctx.now, ctx.config);
        ctx.events
            .push_back(TransportEvent::Connected { conn: self.id });
    }

    /// A SYN for an existing connection: our SYN-ACK (or handshake ACK) was lost; repeat it.
    fn input_duplicate_syn(&mut self, packet: &PacketRepr<'_>) {
        let Some(rcv) = self.rcv else { return };
        if packet.seq != rcv.isn() {
            return;
        }
        if packet.flags.contains(Flags::ACK) {
            self.pending.ack = self.state == ConnState::Established;
        } else if matches!(self.state, ConnState::SynReceived | ConnState::Established) {
            self.pending.syn_ack = true;
        }
    }

    /// The payload as SACK blocks (stream offsets), if it is SACK rather than data.
    ///
    /// v0.5 puts SACK blobs in the payload of ACKs, so a payload is ambiguous. It is read as
    /// SACK only if it is exactly a well-formed blob and every block names a range of our own
    /// sequence space that we have sent (allowing stale blocks up to [`SACK_STALENESS`] behind
    /// the cumulative ACK). Our ISN is random, so application data reads as SACK only if it
    /// happens to name our in-flight sequence numbers, which the peer's application cannot
    /// see. Our own sender never starts a segment with a blob, so our peers never hit this.
    fn sack_blocks(&self, packet: &PacketRepr<'_>) -> Option<Vec<(u64, u64)>> {
        let repr = SackRepr::decode(packet.payload).ok()?;
        if repr.buffer_len() != packet.payload.len() || !packet.flags.contains(Flags::ACK) {
            return None;
        }
        let mut blocks = Vec::with_capacity(repr.blocks().len());
        for block in repr.blocks() {
            let left = self.snd.offset(block.left, self.snd_una)?;
            let right = self.snd.offset(block.right, self.snd_una)?;
            let fresh = left + SACK_STALENESS >= self.snd_una;
            if left >= right || right > self.snd_nxt || !fresh {
                return None;
            }
            blocks.push((left.max(self.snd_una), right));
        }
        Some(blocks)
    }

    /// The acknowledgement field, window and SACK blocks.
    fn input_ack(
        &mut self,
        packet: &PacketRepr<'_>,
        sack: Option<&[(u64, u64)]>,
        ctx: &mut InputCtx<'_>,
    ) {
        let Some(ack) = self.snd.offset(packet.ack, self.snd_una) else {
            return;
        };
        if self.state == ConnState::SynReceived {
            if ack != 0 {
                return;
            }
            self.establish();
            self.timers.stop(TimerKind::Retransmit);
            self.pending.syn_ack = false;
            if let Some(sent_at) = self.handshake_sent.take() {
                self.rtt
                    .on_sample(ctx.now.saturating_duration_since(sent_at));
            }
            self.surface(ctx.events);
        }
        let limit = self.snd_nxt + u64::from(self.probe_outstanding());
        if ack > limit {
            self.pending.ack = true;
            return;
        }
        self.update_window(packet, ack);
        if ack > self.snd_una {
            self.on_new_ack(ack, ctx);
        } else if ack == self.snd_una && self.is_duplicate_ack(packet) {
            self.on_duplicate_ack();
        }
        if let Some(delivered) = sack.and_then(|blocks| self.scoreboard.on_sack(blocks)) {
            self.on_delivered(delivered, ctx.now);
        }
        self.detect_losses(ctx.now);
        self.arm_tail_probe(ctx.now, ctx.config);
    }

    /// 1 while a zero-window probe byte beyond `snd_nxt` may be acknowledged.
    fn probe_outstanding(&self) -> u8 {
        u8::from(self.timers.is_set(TimerKind::Persist) && self.send.end() > self.snd_nxt)
    }

    /// RFC 793 window update, except that a zero window is believed only from a segment that
    /// acknowledges something new or carries data: v0.5 keepalives, FINs and RSTs all carry
    /// window 0 without meaning "stop".
    fn update_window(&mut self, packet: &PacketRepr<'_>, ack: u64) {
        let Some(rcv) = self.rcv else { return };
        let Some(seq) = rcv.offset(packet.seq, self.recv.next()) else {
            return;
        };
        let newer = seq > self.window_seq || (seq == self.window_seq && ack >= self.window_ack);
        if !newer {
            return;
        }
        let informative = ack > self.snd_una || !packet.payload.is_empty();
        if packet.window == 0 && !informative {
            return;
        }
        self.set_peer_window(packet.window, seq, ack);
        if packet.window > 0 {
            self.timers.stop(TimerKind::Persist);
            self.persist_interval = super::PERSIST_INITIAL;
        }
    }

    fn on_new_ack(&mut self, ack: u64, ctx: &mut InputCtx<'_>) {
        if ack > self.snd_nxt {
            // A zero-window probe byte was accepted.
            self.snd_nxt = ack;
        }
        let acked = self.scoreboard.on_ack(ack);
        let bytes = ack - self.snd_una;
        self.snd_una = ack;
        self.send.release_to(ack);
        if let Some(delivered) = acked.newest {
            self.on_delivered(delivered, ctx.now);
        }
        self.rtt.reset_backoff();
        // At most one send buffer's worth, so it fits in usize.
        self.cc.on_ack(bytes as usize, self.snd_una);
        self.dupacks = 0;
        if self.scoreboard.is_empty() {
            self.timers.stop(TimerKind::Retransmit);
        } else {
            self.timers
                .set(TimerKind::Retransmit, ctx.now + self.rtt.rto());
        }
        if acked.fin {
            self.on_fin_acked(ctx);
        }
        self.raise_writable(ctx.events);
    }

    /// A pure, non-window-changing ACK that repeats the cumulative point while data is out.
    fn is_duplicate_ack(&self, packet: &PacketRepr<'_>) -> bool {
        packet.payload.is_empty()
            && !packet.flags.contains(Flags::FIN)
            && !self.scoreboard.is_empty()
            && self.window_bytes(packet.window) == self.peer_window
    }

    /// Classic fast retransmit for peers that do not send SACK: the third duplicate ACK marks
    /// the first outstanding segment lost.
    fn on_duplicate_ack(&mut self) {
        self.dupacks += 1;
        if self.dupacks == 3 {
            let flight = self.scoreboard.pipe();
            if self.scoreboard.mark_first_lost() {
                self.cc.on_loss(flight, self.snd_nxt);
            }
        }
    }

    /// A segment is known delivered: take an RTT sample (Karn) and advance RACK's reference
    /// (skipping a retransmission whose ACK came too soon to be for it, RFC 8985 §6.2 step 2).
    fn on_delivered(&mut self, delivered: Delivered, now: Instant) {
        self.tail_probe_out = false;
        self.pending.tail_probe = false;
        let rtt = now.saturating_duration_since(delivered.sent_at);
        if delivered.once {
            self.rtt.on_sample(rtt);
        } else if rtt < self.rtt.min_rtt() {
            return;
        }
        let newer = self
            .rack
            .is_none_or(|(d, _)| d.newest(Some(delivered)) == delivered);
        if newer {
            self.rack = Some((delivered, rtt));
        }
    }

    /// RACK: a segment sent before the newest delivered one is lost once it has been out
    /// longer than that delivery's RTT plus a reordering window. The window starts at a
    /// quarter of the minimum RTT and widens each time a segment declared lost turns up anyway
    /// (RFC 8985 §6.2), never beyond the smoothed RTT. Undecided segments arm the RACK timer.
    pub(super) fn detect_losses(&mut self, now: Instant) {
        if self.scoreboard.take_spurious() > 0 {
            self.reorder_mult = (self.reorder_mult + 1).min(MAX_REORDER_MULT);
            self.cc.undo();
        }
        let Some((delivered, rtt)) = self.rack else {
            return;
        };
        let quarter = self.rtt.min_rtt() / 4;
        let reorder = (quarter * self.reorder_mult).min(self.rtt.srtt());
        let flight = self.scoreboard.pipe();
        let (lost, next) = self
            .scoreboard
            .detect_losses(now, &delivered, rtt + reorder);
        if lost {
            self.cc.on_loss(flight, self.snd_nxt);
        }
        match next {
            Some(at) => self.timers.set(TimerKind::Rack, at),
            None => self.timers.stop(TimerKind::Rack),
        }
    }

    fn on_fin_acked(&mut self, ctx: &mut InputCtx<'_>) {
        match self.state {
            ConnState::FinWait1 => {
                self.state = ConnState::FinWait2;
                self.timers
                    .set(TimerKind::Linger, ctx.now + ctx.config.idle_timeout);
            }
            ConnState::Closing => self.enter_time_wait(ctx.now, ctx.config.time_wait, ctx.events),
            ConnState::LastAck => self.finish(CloseReason::Normal, ctx.events),
            _ => {}
        }
    }

    /// In-window data goes into the reassembly buffer; the ACK policy follows RFC 1122: every
    /// second segment, at once for anything out of order, else after the delayed-ACK timer.
    fn input_data(&mut self, packet: &PacketRepr<'_>, ctx: &mut InputCtx<'_>) {
        let receiving = matches!(
            self.state,
            ConnState::SynReceived
                | ConnState::Established
                | ConnState::FinWait1
                | ConnState::FinWait2
        );
        let Some(rcv) = self.rcv else { return };
        let Some(offset) = rcv.offset(packet.seq, self.recv.next()) else {
            return;
        };
        if !receiving || self.eof {
            self.pending.ack = true;
            return;
        }
        let mut data = packet.payload;
        if let Some(fin) = self.peer_fin {
            let room = fin.saturating_sub(offset).min(data.len() as u64);
            data = &data[..room as usize];
        }
        let had_gaps = self.recv.has_gaps();
        match self.recv.insert(offset, data, ctx.budget) {
            Insert::Accepted { advanced } => self.after_accept(advanced, had_gaps, ctx),
            Insert::Duplicate | Insert::OutOfWindow | Insert::Dropped => self.pending.ack = true,
        }
        self.maybe_consume_fin(ctx);
    }

    fn after_accept(&mut self, advanced: usize, had_gaps: bool, ctx: &mut InputCtx<'_>) {
        if advanced > 0 {
            self.raise_readable(ctx.events);
        }
        self.unacked_segments += 1;
        if had_gaps || self.recv.has_gaps() || self.unacked_segments >= 2 {
            self.pending.ack = true;
        } else if !self.timers.is_set(TimerKind::DelayedAck) {
            self.timers
                .set(TimerKind::DelayedAck, ctx.now + ctx.config.delayed_ack);
        }
    }

    /// FIN: accepted only inside the window; acted on once every byte before it has arrived.
    fn input_fin(&mut self, packet: &PacketRepr<'_>, sack: bool, ctx: &mut InputCtx<'_>) {
        let Some(rcv) = self.rcv else { return };
        let Some(seq) = rcv.offset(packet.seq, self.recv.next()) else {
            return;
        };
        let data_len = if sack { 0 } else { packet.payload.len() as u64 };
        let fin = seq + data_len;
        if self.eof {
            // A retransmitted FIN: our ACK was lost. Answer a few times, never with a FIN.
            if Some(fin) == self.peer_fin && self.late_fin_acks < MAX_LATE_FIN_ACKS {
                self.late_fin_acks += 1;
                self.pending.ack = true;
            }
            return;
        }
        let next = self.recv.next();
        // Limitation: v0.5 sends its FIN without waiting for its data to be acknowledged and
        // stops retransmitting once closed, so if that data was lost the FIN waits here for
        // bytes that never come, until the idle timeout ends the connection.
        if fin < next || fin > next + self.recv.window() as u64 {
            return;
        }
        self.peer_fin = Some(fin);
        self.maybe_consume_fin(ctx);
    }

    /// Consumes the peer's FIN once the in-order point reaches it.
    fn maybe_consume_fin(&mut self, ctx: &mut InputCtx<'_>) {
        if self.eof || self.peer_fin != Some(self.recv.next()) {
            return;
        }
        self.recv.consume_fin();
        self.eof = true;
        self.pending.ack = true;
        self.raise_readable(ctx.events);
        match self.state {
            ConnState::SynReceived | ConnState::Established => self.state = ConnState::CloseWait,
            ConnState::FinWait1 => self.state = ConnState::Closing,
            ConnState::FinWait2 => self.enter_time_wait(ctx.now, ctx.config.time_wait, ctx.events),
            _ => {}
        }
    }
}
