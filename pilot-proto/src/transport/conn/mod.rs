//! One stream connection: its state, buffers, estimators and timers.
//!
//! The connection is driven by [`Transport`](super::Transport): `input` feeds it segments,
//! `output` asks it for the next segment to send, `timeout` services its timers. It never sees
//! addresses beyond its own 4-tuple and never touches other connections.

pub(crate) mod input;
pub(crate) mod output;
mod timeout;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::config::{TransportConfig, WINDOW_UNIT};
use super::congestion::Congestion;
use super::recv::RecvBuffer;
use super::rtt::RttEstimator;
use super::scoreboard::{Delivered, Scoreboard};
use super::send::SendBuffer;
use super::seq::SeqSpace;
use super::timer::{TimerKind, TimerTable};
use super::types::{CloseReason, ConnId, ConnState, StreamError, TransportEvent};
use crate::wire::addr::AddrPort;

/// Zero-window probe interval: first value and cap (v0.5).
const PERSIST_INITIAL: Duration = Duration::from_millis(500);
const PERSIST_MAX: Duration = Duration::from_secs(30);
/// SYN retransmission: first timeout and cap (v0.5).
const SYN_RTO_INITIAL: Duration = Duration::from_secs(1);
const SYN_RTO_MAX: Duration = Duration::from_secs(8);
/// ACKs sent in reply to a retransmitted FIN after the connection finished.
const MAX_LATE_FIN_ACKS: u8 = 3;

/// Control segments waiting to be sent.
#[derive(Debug, Default, Clone, Copy)]
struct Pending {
    syn: bool,
    syn_ack: bool,
    /// A pure ACK is due now.
    ack: bool,
    keepalive: bool,
    probe: bool,
    /// The tail-loss-probe timer fired: send one segment regardless of the window.
    tail_probe: bool,
    rst: bool,
    /// The Nagle timer fired: one small segment may go.
    nagle_expired: bool,
}

/// Edge-trigger bookkeeping for application events.
#[derive(Debug, Default, Clone, Copy)]
struct Notify {
    readable_raised: bool,
    want_writable: bool,
}

/// Events a connection raises, queued by the transport.
pub(crate) type Events = VecDeque<TransportEvent>;

/// One connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: ConnId,
    pub(crate) local_port: u16,
    pub(crate) remote: AddrPort,
    state: ConnState,
    /// Our sequence space; `snd.isn()` is our ISN.
    snd: SeqSpace,
    /// The peer's sequence space, known once its SYN arrived.
    rcv: Option<SeqSpace>,
    send: SendBuffer,
    /// Offset of the oldest unacknowledged byte.
    snd_una: u64,
    /// Offset of the next new byte (or FIN) to send.
    snd_nxt: u64,
    /// The application closed: a FIN follows the data.
    fin_queued: bool,
    fin_sent: bool,
    scoreboard: Scoreboard,
    rtt: RttEstimator,
    cc: Congestion,
    /// The most recently sent segment known delivered, and the RTT of that delivery (RACK).
    rack: Option<(Delivered, Duration)>,
    /// RACK reordering window, in quarters of the minimum RTT.
    reorder_mult: u32,
    /// A tail loss probe went out and no acknowledgement has arrived since.
    tail_probe_out: bool,
    dupacks: u32,
    /// Peer's window in bytes, and the segment that last set it (RFC 793 WL1/WL2 as offsets).
    peer_window: u64,
    window_seq: u64,
    window_ack: u64,
    recv: RecvBuffer,
    /// Offset of the peer's FIN once seen in-window.
    peer_fin: Option<u64>,
    eof: bool,
    /// Segments received since our last ACK.
    unacked_segments: u32,
    /// Window (in units) we last advertised.
    advertised_units: u16,
    nodelay: bool,
    timers: TimerTable,
    syn_transmissions: u8,
    /// When the only transmission of our SYN or SYN-ACK went out (for one RTT sample).
    handshake_sent: Option<Instant>,
    persist_interval: Duration,
    late_fin_acks: u8,
    pending: Pending,
    notify: Notify,
    reason: Option<CloseReason>,
    /// Whether the application has learnt of this connection (dialed, or `Incoming` raised).
    pub(crate) surfaced: bool,
    mss: usize,
    pub(crate) ready_queued: bool,
}

impl Conn {
    /// A connection we dial: SYN queued.
    pub(crate) fn dial(
        id: ConnId,
        local_port: u16,
        remote: AddrPort,
        isn: u32,
        config: &TransportConfig,
    ) -> Self {
        let mut conn = Self::new(id, local_port, remote, isn, config, ConnState::SynSent);
        conn.pending.syn = true;
        conn.surfaced = true;
        conn
    }

    /// A connection accepted from a SYN carrying `peer_isn` and `window`: SYN-ACK queued.
    pub(crate) fn accept(
        id: ConnId,
        local_port: u16,
        remote: AddrPort,
        isn: u32,
        syn: (u32, u16),
        config: &TransportConfig,
    ) -> Self {
        let mut conn = Self::new(id, local_port, remote, isn, config, ConnState::SynReceived);
        conn.rcv = Some(SeqSpace::new(syn.0));
        conn.set_peer_window(syn.1, 0, 0);
        conn.pending.syn_ack = true;
        conn
    }

    fn new(
        id: ConnId,
        local_port: u16,
        remote: AddrPort,
        isn: u32,
        config: &TransportConfig,
        state: ConnState,
    ) -> Self {
        let mss = config.mss();
        Self {
            id,
            local_port,
            remote,
            state,
            snd: SeqSpace::new(isn),
            rcv: None,
            send: SendBuffer::new(config.send_buffer_len()),
            snd_una: 0,
            snd_nxt: 0,
            fin_queued: false,
            fin_sent: false,
            scoreboard: Scoreboard::default(),
            rtt: RttEstimator::new(),
            cc: Congestion::new(mss, config.max_cwnd),
            rack: None,
            reorder_mult: 1,
            tail_probe_out: false,
            dupacks: 0,
            peer_window: WINDOW_UNIT as u64,
            window_seq: 0,
            window_ack: 0,
            recv: RecvBuffer::new(config.recv_buffer_len(), config.max_ooo_ranges),
            peer_fin: None,
            eof: false,
            unacked_segments: 0,
            advertised_units: 0,
            nodelay: false,
            timers: TimerTable::default(),
            syn_transmissions: 0,
            handshake_sent: None,
            persist_interval: PERSIST_INITIAL,
            late_fin_acks: 0,
            pending: Pending::default(),
            notify: Notify::default(),
            reason: None,
            surfaced: false,
            mss,
            ready_queued: false,
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> ConnState {
        self.state
    }

    /// Whether the connection can be forgotten: closed, with nothing left to send.
    pub(crate) fn is_finished(&self) -> bool {
        self.state == ConnState::Closed && !self.pending.rst
    }

    /// Bytes held in this connection's buffers.
    pub(crate) fn buffered(&self) -> usize {
        self.send.len() + self.recv.buffered()
    }

    /// The earliest armed timer.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Switches Nagle coalescing off (`true`) or on.
    pub(crate) fn set_nodelay(&mut self, nodelay: bool) {
        self.nodelay = nodelay;
    }

    /// Queues application data; returns the bytes accepted. `budget` is the node-wide room.
    pub(crate) fn write(&mut self, data: &[u8], budget: usize) -> Result<usize, StreamError> {
        if let Some(reason) = self.abnormal_end() {
            return Err(StreamError::Ended(reason));
        }
        if self.fin_queued || !self.can_send_data() {
            return Err(StreamError::Closed);
        }
        let accepted = self.send.write(data, budget);
        if accepted < data.len() {
            self.notify.want_writable = true;
        }
        if accepted == 0 && !data.is_empty() {
            return Err(StreamError::WouldBlock);
        }
        Ok(accepted)
    }

    /// Reads in-order data; `Ok(0)` means end of stream. Reading may queue a window update.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> Result<usize, StreamError> {
        self.notify.readable_raised = false;
        let count = self.recv.read(out);
        if count > 0 {
            self.maybe_window_update();
            return Ok(count);
        }
        if self.eof || out.is_empty() {
            return Ok(0);
        }
        match self.abnormal_end() {
            Some(reason) => Err(StreamError::Ended(reason)),
            None => Err(StreamError::WouldBlock),
        }
    }

    /// The application closes: a FIN follows the queued data. Closing twice does nothing.
    pub(crate) fn close(&mut self) {
        match self.state {
            // The FIN follows the handshake and the queued data.
            ConnState::SynSent | ConnState::SynReceived => self.fin_queued = true,
            ConnState::Established => {
                self.state = ConnState::FinWait1;
                self.fin_queued = true;
            }
            ConnState::CloseWait => {
                self.state = ConnState::LastAck;
                self.fin_queued = true;
            }
            _ => {}
        }
        self.timers.stop(TimerKind::Nagle);
        self.pending.nagle_expired = true;
    }

    /// The application aborts: a reset is sent and the connection ends at once.
    pub(crate) fn abort(&mut self, events: &mut Events) {
        if self.state == ConnState::Closed {
            return;
        }
        let synchronized = !matches!(self.state, ConnState::SynSent | ConnState::TimeWait);
        self.pending = Pending {
            rst: synchronized,
            ..Pending::default()
        };
        self.finish(CloseReason::Aborted, events);
    }

    /// Ends the connection with `reason`, raising `Closed` if the application knows of it.
    fn finish(&mut self, reason: CloseReason, events: &mut Events) {
        let already_reported = matches!(self.state, ConnState::TimeWait | ConnState::Closed);
        tracing::debug!(id = %self.id, from = ?self.state, ?reason, "connection ended");
        self.state = ConnState::Closed;
        self.timers.clear();
        if self.reason.is_none() {
            self.reason = Some(reason);
        }
        if self.surfaced && !already_reported {
            events.push_back(TransportEvent::Closed {
                conn: self.id,
                reason,
            });
        }
    }

    /// The handshake completed: ESTABLISHED, or FIN_WAIT_1 if the application already closed.
    fn establish(&mut self) {
        self.state = if self.fin_queued {
            ConnState::FinWait1
        } else {
            ConnState::Established
        };
    }

    /// Enters TIME_WAIT: the application learns the connection closed normally.
    fn enter_time_wait(&mut self, now: Instant, linger: Duration, events: &mut Events) {
        tracing::debug!(id = %self.id, from = ?self.state, "time-wait");
        self.state = ConnState::TimeWait;
        self.timers.clear();
        self.timers.set(TimerKind::Linger, now + linger);
        self.reason = Some(CloseReason::Normal);
        if self.surfaced {
            events.push_back(TransportEvent::Closed {
                conn: self.id,
                reason: CloseReason::Normal,
            });
        }
    }

    /// The reason for an abnormal end, if the connection ended that way.
    fn abnormal_end(&self) -> Option<CloseReason> {
        self.reason.filter(|r| *r != CloseReason::Normal)
    }

    fn can_send_data(&self) -> bool {
        matches!(
            self.state,
            ConnState::SynSent
                | ConnState::SynReceived
                | ConnState::Established
                | ConnState::CloseWait
        )
    }

    /// Whether our side has a receive sequence space (the peer's SYN was seen).
    fn synchronized(&self) -> bool {
        !matches!(self.state, ConnState::SynSent | ConnState::Closed)
    }

    /// Records the peer's window. A v0.5 peer (recognised by its ISN of 0, which it always
    /// uses) counts free slots of its receive queue, one slot per segment whatever its size, so
    /// a unit is worth one of our segments; our own peers count 4,096-byte units.
    fn set_peer_window(&mut self, units: u16, seq: u64, ack: u64) {
        self.peer_window = self.window_bytes(units);
        self.window_seq = seq;
        self.window_ack = ack;
    }

    /// The peer's window of `units`, in bytes (see [`Self::set_peer_window`]).
    fn window_bytes(&self, units: u16) -> u64 {
        let v05 = self.rcv.is_some_and(|rcv| rcv.isn() == 0);
        let unit = if v05 {
            self.mss.min(WINDOW_UNIT)
        } else {
            WINDOW_UNIT
        };
        u64::from(units) * unit as u64
    }

    /// The window we advertise, in v0.5 units of 4,096 bytes (rounded down).
    fn window_units(&self) -> u16 {
        u16::try_from(self.recv.window() / WINDOW_UNIT).unwrap_or(u16::MAX)
    }

    /// After a read: queue an ACK if the advertised window grew enough to matter.
    fn maybe_window_update(&mut self) {
        if !self.synchronized() || self.eof {
            return;
        }
        let now_units = self.window_units();
        let capacity_units = (self.recv.window() + self.recv.readable()) / WINDOW_UNIT;
        let step = (capacity_units / 4).max(1);
        let grew = usize::from(now_units.saturating_sub(self.advertised_units));
        if (self.advertised_units == 0 && now_units > 0) || grew >= step {
            self.pending.ack = true;
        }
    }

    fn raise_readable(&mut self, events: &mut Events) {
        if self.surfaced && !self.notify.readable_raised {
            self.notify.readable_raised = true;
            events.push_back(TransportEvent::Readable { conn: self.id });
        }
    }

    fn raise_writable(&mut self, events: &mut Events) {
        if self.surfaced && self.notify.want_writable && self.send.room() > 0 {
            self.notify.want_writable = false;
            events.push_back(TransportEvent::Writable { conn: self.id });
        }
    }

    /// Makes the connection visible to the application (listener side, handshake complete).
    fn surface(&mut self, events: &mut Events) {
        if self.surfaced {
            return;
        }
        self.surfaced = true;
        events.push_back(TransportEvent::Incoming {
            conn: self.id,
            port: self.local_port,
            remote: self.remote,
        });
        if self.recv.readable() > 0 || self.eof {
            self.raise_readable(events);
        }
    }

    /// Restarts the idle timer after hearing from the peer.
    fn heard(&mut self, now: Instant, config: &TransportConfig) {
        if !self.synchronized() || self.state == ConnState::TimeWait {
            return;
        }
        self.timers.set(TimerKind::Idle, now + config.idle_timeout);
    }

    /// Restarts the keepalive timer after sending: a keepalive goes out only when we have
    /// been silent for the interval, so each side's own traffic keeps the other's idle timer
    /// from firing (v0.5 keys its keepalive on the peer's silence instead).
    pub(super) fn spoke(&mut self, now: Instant, config: &TransportConfig) {
        if !self.synchronized() || self.state == ConnState::TimeWait {
            return;
        }
        self.timers
            .set(TimerKind::Keepalive, now + config.keepalive_interval);
    }
}

impl Conn {
    /// A diagnostic snapshot.
    pub(crate) fn stats(&self) -> super::types::ConnStats {
        super::types::ConnStats {
            state: self.state,
            cwnd: self.cc.window(),
            in_flight: self.scoreboard.pipe(),
            peer_window: self.peer_window,
            srtt: self.rtt.srtt(),
            rto: self.rtt.rto(),
            bytes_acked: self.snd_una,
            bytes_received: self.recv.next(),
        }
    }
}
