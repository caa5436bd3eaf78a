//! The stand-in event broker on port 1002: the v0.5 event frame over a stream, the first frame of
//! a connection is its subscription, later frames are publishes.
//!
//! Topic patterns: `*` alone matches every topic; otherwise patterns are `.`-separated segments
//! where a `*` segment matches exactly one segment and a final `>` matches one or more.

use std::collections::BTreeMap;

use super::StreamId;

/// Largest topic accepted (bytes).
const MAX_TOPIC: usize = 1024;
/// Largest payload accepted (bytes).
const MAX_PAYLOAD: usize = 16 << 20;

/// One decoded event frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Event {
    pub(super) topic: String,
    pub(super) payload: Vec<u8>,
}

/// Subscriptions keyed by the broker-side stream.
#[derive(Debug, Default)]
pub(super) struct Broker {
    subs: BTreeMap<StreamId, Option<String>>,
}

/// What a frame parse found.
pub(super) enum Parsed {
    Frame(Event, usize),
    NeedMore,
    Invalid,
}

/// Parses one event frame from the front of `buf`.
pub(super) fn parse(buf: &[u8]) -> Parsed {
    if buf.len() < 2 {
        return Parsed::NeedMore;
    }
    let t = u16::from_be_bytes([buf[0], buf[1]]) as usize;
    if t > MAX_TOPIC {
        return Parsed::Invalid;
    }
    if buf.len() < 6 + t {
        return Parsed::NeedMore;
    }
    let p = u32::from_be_bytes([buf[2 + t], buf[3 + t], buf[4 + t], buf[5 + t]]) as usize;
    if p > MAX_PAYLOAD {
        return Parsed::Invalid;
    }
    if buf.len() < 6 + t + p {
        return Parsed::NeedMore;
    }
    let topic = String::from_utf8_lossy(&buf[2..2 + t]).into_owned();
    Parsed::Frame(
        Event {
            topic,
            payload: buf[6 + t..6 + t + p].to_vec(),
        },
        6 + t + p,
    )
}

/// Encodes one event frame.
pub(super) fn encode(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + topic.len() + payload.len());
    out.extend_from_slice(&(topic.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Whether `pattern` matches `topic`.
pub(super) fn matches(pattern: &str, topic: &str) -> bool {
    if pattern == "*" || pattern == topic {
        return true;
    }
    let mut p = pattern.split('.');
    let mut t = topic.split('.');
    loop {
        match (p.next(), t.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Broker {
    /// A connection to the broker opened.
    pub(super) fn open(&mut self, stream: StreamId) {
        self.subs.insert(stream, None);
    }

    /// A connection to the broker closed.
    pub(super) fn close(&mut self, stream: StreamId) {
        self.subs.remove(&stream);
    }

    /// Handles one frame from `from`; returns the streams the event must be delivered to.
    pub(super) fn on_frame(&mut self, from: StreamId, event: &Event) -> Vec<StreamId> {
        let Some(slot) = self.subs.get_mut(&from) else {
            return Vec::new();
        };
        if slot.is_none() {
            *slot = Some(event.topic.clone());
            return Vec::new();
        }
        self.subs
            .iter()
            .filter(|(id, sub)| {
                **id != from && sub.as_deref().is_some_and(|s| matches(s, &event.topic))
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns() {
        assert!(matches("tasks.*", "tasks.complete"));
        assert!(!matches("tasks.*", "tasks.a.b"));
        assert!(matches("tasks.>", "tasks.a.b"));
        assert!(matches("*", "anything.at.all"));
        assert!(!matches("payments.*", "tasks.complete"));
    }

    #[test]
    fn frame_round_trip_matches_v05_vector() {
        let bytes = encode("alerts", b"server is down");
        assert_eq!(bytes.len(), 26);
        match parse(&bytes) {
            Parsed::Frame(e, used) => {
                assert_eq!(
                    (e.topic.as_str(), &e.payload[..], used),
                    ("alerts", &b"server is down"[..], 26)
                );
            }
            _ => panic!("expected a frame"),
        }
    }
}
