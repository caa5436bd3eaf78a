//! One subscription's delivery state: its bounded queue, replay cursor, pending gap notices and,
//! for durable subscriptions, the deliveries awaiting acknowledgement.
//!
//! A subscription is either live (the broker pushes matching events into its queue as they are
//! committed) or replaying (it reads the retained log from a cursor, and the broker skips it when
//! fanning out). A replay that reaches the head turns live.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::ClientId;
use super::retained::{Retained, StoredEvent};
use crate::pubsub::codec::{GapNotice, GapReason};
use crate::pubsub::{Seq, SubscriptionId, TopicFilter};

/// Limits that shape delivery, copied from the broker configuration.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) queue_events: usize,
    pub(super) queue_bytes: usize,
    pub(super) ack_wait: std::time::Duration,
    pub(super) max_deliver: u16,
    pub(super) max_ack_pending: usize,
}

/// Counters for one subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// Events sent, redeliveries included.
    pub delivered: u64,
    /// Events dropped because the queue overflowed.
    pub overflowed: u64,
    /// Sequence numbers skipped because retention evicted them before replay.
    pub expired: u64,
    /// Durable deliveries abandoned after the redelivery cap.
    pub dead_lettered: u64,
    /// Events waiting in the queue now.
    pub queued: usize,
    /// Durable deliveries awaiting acknowledgement now.
    pub unacked: usize,
}

/// What a subscription wants sent next.
#[derive(Debug)]
pub(super) enum Output {
    Gap(GapNotice),
    Event {
        event: Arc<StoredEvent>,
        attempt: u16,
        /// Set for durable deliveries: the broker arms a redelivery timer for it.
        deadline: Option<Instant>,
    },
}

#[derive(Debug)]
struct Unacked {
    event: Arc<StoredEvent>,
    attempt: u16,
    /// `None` while waiting in the redelivery queue.
    deadline: Option<Instant>,
}

/// Durable state kept while no connection holds the subscription.
#[derive(Debug)]
pub(super) struct Parked {
    pub(super) filter: TopicFilter,
    pub(super) unacked: Vec<(Seq, u16)>,
    pub(super) next: Seq,
}

#[derive(Debug)]
pub(super) struct Subscription {
    pub(super) id: SubscriptionId,
    pub(super) filter: TopicFilter,
    pub(super) echo: bool,
    pub(super) durable: Option<String>,
    /// Whether the client speaks the extended protocol (can be told about gaps).
    extended: bool,
    replay: Option<Seq>,
    queue: VecDeque<Arc<StoredEvent>>,
    queue_bytes: usize,
    /// Sequence number after the last event offered while live.
    cursor: Seq,
    gaps: VecDeque<GapNotice>,
    unacked: BTreeMap<Seq, Unacked>,
    redeliver: VecDeque<Seq>,
    stats: SubscriptionStats,
}

impl Subscription {
    /// Creates a subscription that delivers from `next` on, replaying when `next` is retained.
    pub(super) fn new(id: SubscriptionId, filter: TopicFilter, extended: bool, next: Seq) -> Self {
        Self {
            id,
            filter,
            echo: false,
            durable: None,
            extended,
            replay: Some(next),
            queue: VecDeque::new(),
            queue_bytes: 0,
            cursor: next,
            gaps: VecDeque::new(),
            unacked: BTreeMap::new(),
            redeliver: VecDeque::new(),
            stats: SubscriptionStats::default(),
        }
    }

    /// Skips replay: delivery starts with the next committed event.
    pub(super) fn start_live(&mut self, end: Seq) {
        self.replay = None;
        self.cursor = end;
    }

    /// Returns the replay cursor while replaying.
    pub(super) fn replay_cursor(&self) -> Option<Seq> {
        self.replay
    }

    /// Restores a parked durable: its unacknowledged events are redelivered first.
    pub(super) fn resume(&mut self, parked: Parked, retained: &Retained) {
        self.replay = Some(parked.next);
        for (seq, attempt) in parked.unacked {
            match retained.get(seq) {
                Some(event) => {
                    let event = Arc::clone(event);
                    self.unacked.insert(
                        seq,
                        Unacked {
                            event,
                            attempt,
                            deadline: None,
                        },
                    );
                    self.redeliver.push_back(seq);
                }
                None => self.note_gap(GapReason::Expired, seq, seq, 1),
            }
        }
    }

    /// Offers a committed, matching event while live; replaying subscriptions ignore it.
    pub(super) fn offer(&mut self, event: &Arc<StoredEvent>, limits: &Limits) {
        if self.replay.is_some() {
            return;
        }
        self.cursor = event.seq.next();
        self.queue_bytes += event.size();
        self.queue.push_back(Arc::clone(event));
        while self.queue.len() > limits.queue_events || self.queue_bytes > limits.queue_bytes {
            if self.durable.is_some() {
                self.spill_to_replay();
                return;
            }
            let Some(dropped) = self.pop_queue() else {
                return;
            };
            self.stats.overflowed += 1;
            self.note_gap(GapReason::Overflow, dropped.seq, dropped.seq, 1);
        }
    }

    /// Returns the next thing to send, if any.
    pub(super) fn next_output(
        &mut self,
        now: Instant,
        retained: &Retained,
        client: ClientId,
        limits: &Limits,
    ) -> Option<Output> {
        if let Some(gap) = self.gaps.pop_front() {
            return Some(Output::Gap(gap));
        }
        if let Some(output) = self.next_redelivery(now, limits) {
            return Some(output);
        }
        if self.durable.is_some() && self.unacked.len() >= limits.max_ack_pending {
            return None;
        }

        let event = match self.replay {
            Some(next) => {
                let next = self.skip_expired(next, retained);
                if let Some(gap) = self.gaps.pop_front() {
                    return Some(Output::Gap(gap));
                }
                self.next_replayed(next, retained, client)?
            }
            None => self.pop_queue()?,
        };
        Some(self.deliver(now, event, limits))
    }

    /// Records an acknowledgement, returning the disarmed timer deadline if one was armed.
    pub(super) fn ack(&mut self, seq: Seq) -> Option<Option<Instant>> {
        self.unacked.remove(&seq).map(|entry| entry.deadline)
    }

    /// Handles a redelivery timer; returns whether the subscription has something to send.
    pub(super) fn expire(&mut self, seq: Seq, deadline: Instant, limits: &Limits) -> bool {
        let Some(entry) = self.unacked.get_mut(&seq) else {
            return false;
        };
        if entry.deadline != Some(deadline) {
            return false;
        }
        if entry.attempt >= limits.max_deliver {
            self.unacked.remove(&seq);
            self.stats.dead_lettered += 1;
            self.note_gap(GapReason::MaxDeliver, seq, seq, 1);
            return true;
        }
        entry.deadline = None;
        self.redeliver.push_back(seq);
        true
    }

    /// Returns the state to keep for a durable subscription whose connection went away.
    pub(super) fn park(&self) -> Parked {
        let unacked = self
            .unacked
            .iter()
            .map(|(seq, u)| (*seq, u.attempt))
            .collect();
        let next = match (self.replay, self.queue.front()) {
            (Some(next), _) => next,
            (None, Some(front)) => front.seq,
            (None, None) => self.cursor,
        };
        Parked {
            filter: self.filter.clone(),
            unacked,
            next,
        }
    }

    /// Returns the armed redelivery deadlines, so the broker can disarm them on removal.
    pub(super) fn deadlines(&self) -> impl Iterator<Item = (Seq, Instant)> + '_ {
        self.unacked
            .iter()
            .filter_map(|(seq, u)| Some((*seq, u.deadline?)))
    }

    pub(super) fn stats(&self) -> SubscriptionStats {
        SubscriptionStats {
            queued: self.queue.len(),
            unacked: self.unacked.len(),
            ..self.stats
        }
    }

    fn next_redelivery(&mut self, now: Instant, limits: &Limits) -> Option<Output> {
        while let Some(seq) = self.redeliver.pop_front() {
            let Some(entry) = self.unacked.get_mut(&seq) else {
                continue;
            };
            entry.attempt = entry.attempt.saturating_add(1);
            let deadline = deadline_after(now, limits.ack_wait);
            entry.deadline = Some(deadline);
            self.stats.delivered += 1;
            let (event, attempt) = (Arc::clone(&entry.event), entry.attempt);
            return Some(Output::Event {
                event,
                attempt,
                deadline: Some(deadline),
            });
        }
        None
    }

    /// Finds the next retained event at or after `next` for this subscription; turns live when
    /// the replay reaches the head.
    fn next_replayed(
        &mut self,
        next: Seq,
        retained: &Retained,
        client: ClientId,
    ) -> Option<Arc<StoredEvent>> {
        let start = retained.position(next);
        let found = retained
            .from(start)
            .find(|e| self.wants(e, client))
            .map(Arc::clone);
        match &found {
            Some(event) => self.replay = Some(event.seq.next()),
            None => {
                // Everything retained has been seen: from now on the broker pushes.
                self.cursor = retained.end();
                self.replay = None;
            }
        }
        found
    }

    /// Moves a replay cursor that points before the oldest retained event up to it, noting an
    /// expired gap.
    fn skip_expired(&mut self, next: Seq, retained: &Retained) -> Seq {
        let first = retained.first_seq();
        if next >= first {
            return next;
        }
        let width = first.0 - next.0;
        self.stats.expired += width;
        self.note_gap(GapReason::Expired, next, Seq(first.0 - 1), width);
        self.replay = Some(first);
        first
    }

    fn wants(&self, event: &StoredEvent, client: ClientId) -> bool {
        (self.echo || event.origin != Some(client)) && self.filter.matches(&event.topic)
    }

    fn deliver(&mut self, now: Instant, event: Arc<StoredEvent>, limits: &Limits) -> Output {
        self.stats.delivered += 1;
        if self.durable.is_none() {
            return Output::Event {
                event,
                attempt: 1,
                deadline: None,
            };
        }
        let deadline = deadline_after(now, limits.ack_wait);
        let entry = Unacked {
            event: Arc::clone(&event),
            attempt: 1,
            deadline: Some(deadline),
        };
        self.unacked.insert(event.seq, entry);
        Output::Event {
            event,
            attempt: 1,
            deadline: Some(deadline),
        }
    }

    fn pop_queue(&mut self) -> Option<Arc<StoredEvent>> {
        let event = self.queue.pop_front()?;
        self.queue_bytes -= event.size();
        Some(event)
    }

    /// A durable subscription never drops: when its queue is full it falls back to reading the
    /// retained log from its oldest queued event.
    fn spill_to_replay(&mut self) {
        self.replay = self.queue.front().map(|e| e.seq);
        self.queue.clear();
        self.queue_bytes = 0;
    }

    /// Queues a gap notice, merging an overflow into a pending one (no event can be sent
    /// between them, since notices go first, so the merged range is contiguous).
    fn note_gap(&mut self, reason: GapReason, from: Seq, to: Seq, missed: u64) {
        if !self.extended {
            return;
        }
        if let Some(last) = self.gaps.back_mut()
            && last.reason == reason
            && reason == GapReason::Overflow
        {
            last.to = to;
            last.missed += missed;
            return;
        }
        self.gaps.push_back(GapNotice {
            id: self.id,
            reason,
            from,
            to,
            missed,
        });
    }
}

/// Returns `now + wait`, saturating far in the future instead of overflowing.
fn deadline_after(now: Instant, wait: std::time::Duration) -> Instant {
    const FAR: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 60 * 60);
    now.checked_add(wait)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}
