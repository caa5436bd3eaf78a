//! The agent's own messages between peers, carried in sealed control packets (see
//! `node::Node::send_control`): path probes and their replies, host candidates, refusals.
//!
//! Layout: the 4-byte magic `PAG1`, one kind byte, then the kind's body. Probes, replies and
//! candidate lists carry the sender's host candidates as a comma-separated list of socket
//! addresses in text (so a lost candidate message is repaired by the next probe); a refusal
//! is UTF-8 text. Bodies are
//! bounded by the node's control payload limit; decoding never panics.

use std::net::SocketAddr;

const MAGIC: &[u8; 4] = b"PAG1";

/// Host candidates sent or accepted at most.
pub const MAX_HOST_CANDIDATES: usize = 4;

/// Longest refusal text kept, in bytes.
const MAX_REASON: usize = 512;

/// One agent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// "Is this path open?": answer with [`Signal::ProbeReply`] to where it came from. Carries
    /// the sender's host candidates.
    Probe(Vec<SocketAddr>),
    /// The answer to a probe, with the sender's host candidates.
    ProbeReply(Vec<SocketAddr>),
    /// The sender's own (LAN) endpoints.
    Candidates(Vec<SocketAddr>),
    /// The sender refused our connection, with its reason.
    Refused(String),
}

impl Signal {
    /// Encodes the message.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        match self {
            Self::Probe(addrs) => push_list(&mut out, 1, addrs),
            Self::ProbeReply(addrs) => push_list(&mut out, 2, addrs),
            Self::Candidates(addrs) => push_list(&mut out, 3, addrs),
            Self::Refused(reason) => {
                out.push(4);
                out.extend_from_slice(truncate(reason, MAX_REASON).as_bytes());
            }
        }
        out
    }

    /// Decodes a message; `None` for anything else.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let (&kind, body) = rest.split_first()?;
        match kind {
            1 => Some(Self::Probe(parse_list(body)?)),
            2 => Some(Self::ProbeReply(parse_list(body)?)),
            3 => Some(Self::Candidates(parse_list(body)?)),
            4 => {
                let text = String::from_utf8_lossy(body);
                Some(Self::Refused(truncate(&text, MAX_REASON).to_owned()))
            }
            _ => None,
        }
    }
}

fn push_list(out: &mut Vec<u8>, kind: u8, addrs: &[SocketAddr]) {
    out.push(kind);
    let text: Vec<String> = addrs
        .iter()
        .take(MAX_HOST_CANDIDATES)
        .map(ToString::to_string)
        .collect();
    out.extend_from_slice(text.join(",").as_bytes());
}

fn parse_list(body: &[u8]) -> Option<Vec<SocketAddr>> {
    let text = std::str::from_utf8(body).ok()?;
    let addrs = text
        .split(',')
        .filter_map(|part| part.parse().ok())
        .take(MAX_HOST_CANDIDATES)
        .collect();
    Some(addrs)
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_kind_round_trips() {
        let addrs = vec![
            "10.0.0.2:4000".parse().unwrap(),
            "[fe80::1]:9".parse().unwrap(),
        ];
        for signal in [
            Signal::Probe(Vec::new()),
            Signal::ProbeReply(addrs.clone()),
            Signal::Candidates(addrs),
            Signal::Refused("node is private".into()),
        ] {
            assert_eq!(Signal::parse(&signal.to_bytes()), Some(signal));
        }
        assert_eq!(Signal::parse(b"PAG1"), None);
        assert_eq!(Signal::parse(b"nope"), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Signal::parse(&bytes);
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&bytes);
            let _ = Signal::parse(&framed);
        }

        #[test]
        fn refusals_round_trip(text in "[ -~]{0,80}") {
            let signal = Signal::Refused(text);
            prop_assert_eq!(Signal::parse(&signal.to_bytes()), Some(signal));
        }
    }
}
