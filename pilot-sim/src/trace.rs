//! The trace: every send, delivery, drop and host event, with its virtual time.
//!
//! Every record is folded into a running 64-bit hash (so two runs can be compared cheaply) and,
//! when recording is on, kept in memory for a readable timeline. Records name hosts and NATs by
//! index; [`crate::Sim::timeline`] renders them with names.

use std::fmt;
use std::net::SocketAddrV4;
use std::time::Duration;

use crate::link::Direction;
use crate::machine::StreamId;
use crate::nat::NatDrop;
use crate::seed::fnv1a;
use crate::sim::Iface;
use crate::{HostId, NatId, NetId};

/// Why a packet did not reach a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Lost at random by a link.
    Lost,
    /// Larger than a link's MTU.
    TooBig,
    /// A link's transmit queue was full.
    QueueFull,
    /// No network on the way knew the destination address.
    NoRoute,
    /// The destination host has no socket bound on that port.
    NoSocket,
    /// The destination host is crashed.
    HostDown,
    /// A partition between the two hosts was active at delivery time.
    Partitioned,
    /// A NAT refused it.
    Nat(NatDrop),
    /// The bytes did not parse or a checksum failed.
    Malformed,
    /// A fault rule dropped it (the rule's index).
    Fault(usize),
    /// The sending host has no UDP socket, or the machine returned a bad transmit.
    BadTransmit,
}

/// Where in the network a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    /// At a host: sending (send-stage fault) or delivering.
    Host(HostId),
    /// At a NAT box.
    Nat(NatId),
    /// At the router of a network (no route, malformed).
    Router(NetId),
    /// On one direction of an interface's link (loss, MTU, queue).
    Link(Iface, Direction),
}

/// What happened. Addresses are as seen at that point of the path (private inside a NAT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceKind {
    /// A host sent a datagram.
    Sent {
        /// The sender.
        host: HostId,
        /// Source address.
        src: SocketAddrV4,
        /// Destination address.
        dst: SocketAddrV4,
        /// UDP payload length.
        len: usize,
    },
    /// A datagram reached a machine.
    Delivered {
        /// The receiver.
        host: HostId,
        /// Source address.
        src: SocketAddrV4,
        /// Destination address.
        dst: SocketAddrV4,
        /// UDP payload length.
        len: usize,
    },
    /// A datagram was dropped.
    Dropped {
        /// Why.
        reason: DropReason,
        /// Where.
        place: Place,
        /// Source address.
        src: SocketAddrV4,
        /// Destination address.
        dst: SocketAddrV4,
        /// UDP payload length.
        len: usize,
    },
    /// A NAT created a mapping.
    Mapped {
        /// The NAT.
        nat: NatId,
        /// The internal endpoint.
        internal: SocketAddrV4,
        /// The external endpoint it maps to.
        external: SocketAddrV4,
        /// The remote endpoint of the packet that created it.
        remote: SocketAddrV4,
    },
    /// A fault rule delayed or duplicated a datagram (drops appear as `Dropped`).
    Faulted {
        /// The rule's index.
        rule: usize,
        /// `"delay"` or `"duplicate"`.
        action: &'static str,
        /// Source address.
        src: SocketAddrV4,
        /// Destination address.
        dst: SocketAddrV4,
    },
    /// A host's timer fired.
    Timer {
        /// The host.
        host: HostId,
    },
    /// A host crashed.
    Crashed {
        /// The host.
        host: HostId,
    },
    /// A host (re)started.
    Started {
        /// The host.
        host: HostId,
        /// Its boot count (0 for the first start).
        boot: u32,
    },
    /// A stream event reached a host.
    Stream {
        /// The host.
        host: HostId,
        /// The stream.
        id: StreamId,
        /// What happened: connected, accepted, data, closed, refused or reset.
        what: &'static str,
        /// Bytes carried (data only).
        len: usize,
    },
    /// A note from the scenario (partitions, NAT reboots, address changes).
    Note(String),
}

/// One trace record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    /// Virtual time since the simulation's epoch.
    pub at: Duration,
    /// The class label the classifier gave the payload, if any.
    pub class: Option<&'static str>,
    /// What happened.
    pub kind: TraceKind,
}

/// The trace recorder: a running hash and, optionally, the records themselves.
#[derive(Debug, Clone)]
pub struct Trace {
    hash: u64,
    count: u64,
    records: Option<Vec<TraceRecord>>,
}

impl Trace {
    /// Creates a recorder that keeps records only if `keep` is set.
    pub(crate) fn new(keep: bool) -> Self {
        Self {
            hash: 0xcbf2_9ce4_8422_2325,
            count: 0,
            records: keep.then(Vec::new),
        }
    }

    /// Records one event.
    pub(crate) fn record(&mut self, at: Duration, class: Option<&'static str>, kind: TraceKind) {
        self.count += 1;
        self.mix(at.as_nanos() as u64);
        self.mix(class.map_or(0, |label| fnv1a(label.as_bytes())));
        self.mix_kind(&kind);
        if let Some(records) = &mut self.records {
            records.push(TraceRecord { at, class, kind });
        }
    }

    /// Returns the hash of every record so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Returns how many records were made (kept or not).
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Returns true if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Returns the kept records (empty unless recording was enabled).
    pub fn records(&self) -> &[TraceRecord] {
        self.records.as_deref().unwrap_or(&[])
    }

    /// Starts or stops keeping records (the hash is always kept).
    pub(crate) fn set_keep(&mut self, keep: bool) {
        match (keep, self.records.is_some()) {
            (true, false) => self.records = Some(Vec::new()),
            (false, true) => self.records = None,
            _ => {}
        }
    }

    fn mix(&mut self, word: u64) {
        self.hash = (self.hash ^ word)
            .wrapping_mul(0x0100_0000_01b3)
            .rotate_left(23);
    }

    fn mix_addr(&mut self, addr: SocketAddrV4) {
        self.mix((u64::from(addr.ip().to_bits()) << 16) | u64::from(addr.port()));
    }

    fn mix_kind(&mut self, kind: &TraceKind) {
        match kind {
            TraceKind::Sent {
                host,
                src,
                dst,
                len,
            }
            | TraceKind::Delivered {
                host,
                src,
                dst,
                len,
            } => {
                let tag = if matches!(kind, TraceKind::Sent { .. }) {
                    1
                } else {
                    2
                };
                self.mix(tag);
                self.mix(host.0 as u64);
                self.mix_addr(*src);
                self.mix_addr(*dst);
                self.mix(*len as u64);
            }
            TraceKind::Dropped {
                reason,
                place,
                src,
                dst,
                len,
            } => {
                self.mix(3);
                self.mix(fnv1a(format!("{reason:?} {place:?}").as_bytes()));
                self.mix_addr(*src);
                self.mix_addr(*dst);
                self.mix(*len as u64);
            }
            other => self.mix(fnv1a(format!("{other:?}").as_bytes())),
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nat(why) => write!(f, "nat {why:?}"),
            Self::Fault(rule) => write!(f, "fault rule {rule}"),
            other => write!(f, "{other:?}"),
        }
    }
}
