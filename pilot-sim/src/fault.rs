//! Fault rules aimed at kinds of packets: drop the first punch, delay every key exchange, drop
//! 30% of beacon replies.
//!
//! A packet's kind comes from the simulation's classifier (a user closure from payload bytes
//! to a label) or from a rule's own payload predicate. Rules are checked in the order they were
//! added, at the stage they name (when the packet is sent, or when it is about to be delivered);
//! the first rule that fires decides the packet's fate. Each rule counts how many packets it
//! matched and how many it acted on.

use std::fmt;
use std::time::Duration;

use crate::HostId;
use crate::seed::SimRng;

/// Where in a packet's life a rule is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// When the machine hands the datagram to the simulator (before links and NATs).
    Send,
    /// When the datagram is about to reach the destination machine.
    Deliver,
}

/// What a rule does to a packet it fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Discard it.
    Drop,
    /// Hold it back for the given time.
    Delay(Duration),
    /// Let it through and send an identical copy right behind it.
    Duplicate,
}

/// Which of the matching packets a rule acts on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// Every matching packet.
    Always,
    /// The first `n` matching packets.
    First(u64),
    /// Only the `n`-th matching packet (1-based).
    Nth(u64),
    /// Every `n`-th matching packet.
    Every(u64),
    /// Each matching packet with probability `p`, from the fault random stream.
    Chance(f64),
}

/// A predicate over UDP payload bytes.
pub type PayloadPredicate = Box<dyn Fn(&[u8]) -> bool>;

/// One fault rule.
pub struct FaultRule {
    action: FaultAction,
    stage: Stage,
    trigger: Trigger,
    class: Option<&'static str>,
    from: Option<HostId>,
    to: Option<HostId>,
    predicate: Option<PayloadPredicate>,
    matched: u64,
    fired: u64,
}

/// What a rule needs to know about a packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacketFacts<'a> {
    pub(crate) stage: Stage,
    pub(crate) class: Option<&'static str>,
    pub(crate) from: HostId,
    /// The destination host; only known at delivery.
    pub(crate) to: Option<HostId>,
    pub(crate) payload: &'a [u8],
}

impl FaultRule {
    /// A rule that drops every matching packet at delivery.
    pub fn dropping() -> Self {
        Self::new(FaultAction::Drop)
    }

    /// A rule that delays every matching packet at delivery by `delay`.
    pub fn delaying(delay: Duration) -> Self {
        Self::new(FaultAction::Delay(delay))
    }

    /// A rule that duplicates every matching packet at delivery.
    pub fn duplicating() -> Self {
        Self::new(FaultAction::Duplicate)
    }

    fn new(action: FaultAction) -> Self {
        Self {
            action,
            stage: Stage::Deliver,
            trigger: Trigger::Always,
            class: None,
            from: None,
            to: None,
            predicate: None,
            matched: 0,
            fired: 0,
        }
    }

    /// Checks the rule when packets are sent instead of when they are delivered. A rule
    /// checked at send time cannot filter on the destination host (`to`); such a rule never
    /// matches.
    pub fn at_send(mut self) -> Self {
        self.stage = Stage::Send;
        self
    }

    /// Matches only packets the classifier labels `class`.
    pub fn class(mut self, class: &'static str) -> Self {
        self.class = Some(class);
        self
    }

    /// Matches only packets sent by `host`.
    pub fn from(mut self, host: HostId) -> Self {
        self.from = Some(host);
        self
    }

    /// Matches only packets delivered to `host`.
    pub fn to(mut self, host: HostId) -> Self {
        self.to = Some(host);
        self
    }

    /// Matches only packets whose UDP payload satisfies `predicate`.
    pub fn payload(mut self, predicate: impl Fn(&[u8]) -> bool + 'static) -> Self {
        self.predicate = Some(Box::new(predicate));
        self
    }

    /// Acts on the first `n` matching packets only.
    pub fn first(mut self, n: u64) -> Self {
        self.trigger = Trigger::First(n);
        self
    }

    /// Acts on the `n`-th matching packet only (1-based).
    pub fn nth(mut self, n: u64) -> Self {
        self.trigger = Trigger::Nth(n);
        self
    }

    /// Acts on every `n`-th matching packet.
    pub fn every(mut self, n: u64) -> Self {
        self.trigger = Trigger::Every(n);
        self
    }

    /// Acts on each matching packet with probability `p`.
    pub fn chance(mut self, p: f64) -> Self {
        self.trigger = Trigger::Chance(p);
        self
    }

    /// Returns how many packets matched the rule's filters.
    pub fn matched(&self) -> u64 {
        self.matched
    }

    /// Returns how many packets the rule acted on.
    pub fn fired(&self) -> u64 {
        self.fired
    }

    /// Returns the rule's action.
    pub fn action(&self) -> FaultAction {
        self.action
    }

    /// Returns the action to take if the rule fires on this packet.
    pub(crate) fn check(
        &mut self,
        facts: &PacketFacts<'_>,
        rng: &mut SimRng,
    ) -> Option<FaultAction> {
        if !self.matches(facts) {
            return None;
        }
        self.matched += 1;
        let fires = match self.trigger {
            Trigger::Always => true,
            Trigger::First(n) => self.matched <= n,
            Trigger::Nth(n) => self.matched == n,
            Trigger::Every(n) => n > 0 && self.matched.is_multiple_of(n),
            Trigger::Chance(p) => rng.chance(p),
        };
        if fires {
            self.fired += 1;
        }
        fires.then_some(self.action)
    }

    fn matches(&self, facts: &PacketFacts<'_>) -> bool {
        if facts.stage != self.stage {
            return false;
        }
        if self.class.is_some() && self.class != facts.class {
            return false;
        }
        if self.from.is_some_and(|from| from != facts.from) {
            return false;
        }
        if self.to.is_some() && self.to != facts.to {
            return false;
        }
        self.predicate
            .as_ref()
            .is_none_or(|predicate| predicate(facts.payload))
    }
}

impl fmt::Debug for FaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultRule")
            .field("action", &self.action)
            .field("stage", &self.stage)
            .field("trigger", &self.trigger)
            .field("class", &self.class)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("has_predicate", &self.predicate.is_some())
            .field("matched", &self.matched)
            .field("fired", &self.fired)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(payload: &[u8]) -> PacketFacts<'_> {
        PacketFacts {
            stage: Stage::Deliver,
            class: None,
            from: HostId(0),
            to: None,
            payload,
        }
    }

    #[test]
    fn first_nth_every() {
        let mut rng = SimRng::new(1, "fault", 0);
        let mut first = FaultRule::dropping().first(2);
        let mut nth = FaultRule::dropping().nth(3);
        let mut every = FaultRule::dropping().every(2);
        let fired = |rule: &mut FaultRule, rng: &mut SimRng| {
            (0..6)
                .map(|_| rule.check(&facts(b"x"), rng).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fired(&mut first, &mut rng),
            [true, true, false, false, false, false]
        );
        assert_eq!(
            fired(&mut nth, &mut rng),
            [false, false, true, false, false, false]
        );
        assert_eq!(
            fired(&mut every, &mut rng),
            [false, true, false, true, false, true]
        );
    }

    #[test]
    fn payload_predicate_filters() {
        let mut rng = SimRng::new(1, "fault", 0);
        let mut rule = FaultRule::dropping().payload(|bytes| bytes.starts_with(b"PILK"));
        assert!(rule.check(&facts(b"PILK..."), &mut rng).is_some());
        assert!(rule.check(&facts(b"other"), &mut rng).is_none());
        assert_eq!((rule.matched(), rule.fired()), (1, 1));
    }
}
