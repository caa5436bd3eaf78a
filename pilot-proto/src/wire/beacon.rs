//! Beacon messages 0x01-0x07 that share the tunnel socket.
//!
//! Owns the byte layout of every beacon datagram: a [`BeaconPacket`] view over received bytes
//! and a [`BeaconRepr`] that parses and emits whole messages. The first byte is the type; all
//! codes are below 0x10 so a node can tell beacon traffic from tunnel frames (`P`, 0x50).
//! Integers are big-endian. No policy lives here.
//!
//! One extension beyond v0.5: a Discover may carry a [`DiscoverProof`] after the node id. The
//! v0.5 beacon ignores bytes after the id, so the extension is invisible to it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::ParseError;

/// Byte ranges of the fixed fields.
pub mod field {
    use std::ops::Range;

    /// Message type.
    pub const KIND: usize = 0;
    /// Node id of a Discover; requester of a PunchRequest; sender of Relay and RelayDeliver;
    /// beacon id of a Sync.
    pub const FIRST_ID: Range<usize> = 1..5;
    /// Target of a PunchRequest; destination of a Relay.
    pub const SECOND_ID: Range<usize> = 5..9;
    /// Address length byte of DiscoverReply and PunchCommand.
    pub const IP_LEN: usize = 1;
    /// Node-id count of a Sync.
    pub const SYNC_COUNT: Range<usize> = 5..7;
    /// First node id of a Sync.
    pub const SYNC_IDS: usize = 7;
    /// Inner frame of a Relay.
    pub const RELAY_PAYLOAD: usize = 9;
    /// Inner frame of a RelayDeliver.
    pub const DELIVER_PAYLOAD: usize = 5;
    /// Magic of a Discover proof.
    pub const PROOF_MAGIC: Range<usize> = 5..9;
    /// Timestamp of a Discover proof.
    pub const PROOF_TS: Range<usize> = 9..17;
    /// Signature of a Discover proof.
    pub const PROOF_SIG: Range<usize> = 17..81;
}

/// Magic that introduces a [`DiscoverProof`] (`PDv1`).
pub const PROOF_MAGIC: [u8; 4] = *b"PDv1";

/// Domain string of the bytes a Discover proof signs.
pub const PROOF_DOMAIN: &[u8] = b"pilot-discover-v1";

/// Most node ids a Sync can list.
pub const MAX_SYNC_IDS: usize = 65_535;

/// Beacon message type (first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BeaconKind {
    /// 0x01 node → beacon.
    Discover,
    /// 0x02 beacon → node: observed endpoint.
    DiscoverReply,
    /// 0x03 node → beacon.
    PunchRequest,
    /// 0x04 beacon → node: punch towards this endpoint.
    PunchCommand,
    /// 0x05 node → beacon (or beacon → beacon).
    Relay,
    /// 0x06 beacon → node.
    RelayDeliver,
    /// 0x07 beacon → beacon gossip.
    Sync,
    /// Any other code.
    Unknown(u8),
}

impl From<u8> for BeaconKind {
    fn from(value: u8) -> Self {
        match value {
            0x01 => Self::Discover,
            0x02 => Self::DiscoverReply,
            0x03 => Self::PunchRequest,
            0x04 => Self::PunchCommand,
            0x05 => Self::Relay,
            0x06 => Self::RelayDeliver,
            0x07 => Self::Sync,
            other => Self::Unknown(other),
        }
    }
}

impl From<BeaconKind> for u8 {
    fn from(kind: BeaconKind) -> Self {
        match kind {
            BeaconKind::Discover => 0x01,
            BeaconKind::DiscoverReply => 0x02,
            BeaconKind::PunchRequest => 0x03,
            BeaconKind::PunchCommand => 0x04,
            BeaconKind::Relay => 0x05,
            BeaconKind::RelayDeliver => 0x06,
            BeaconKind::Sync => 0x07,
            BeaconKind::Unknown(other) => other,
        }
    }
}

/// True when a datagram on the shared socket is beacon traffic rather than a tunnel frame.
pub fn is_beacon_datagram(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|&first| first < 0x10)
}

/// A checked view of a beacon datagram; accessors never panic once constructed.
#[derive(Debug, Clone, Copy)]
pub struct BeaconPacket<B: AsRef<[u8]>> {
    bytes: B,
}

impl<B: AsRef<[u8]>> BeaconPacket<B> {
    /// Checks that the bytes are long enough for the fixed fields of their type.
    ///
    /// # Errors
    /// [`ParseError::Truncated`] when short, [`ParseError::UnknownValue`] for an unknown type or
    /// an address length other than 4 or 16. A Sync shorter than its count says is truncated;
    /// bytes after the listed ids are ignored, as are bytes after a Discover's node id.
    pub fn new_checked(bytes: B) -> Result<Self, ParseError> {
        let data = bytes.as_ref();
        let Some(&code) = data.first() else {
            return Err(ParseError::Truncated { needed: 1, got: 0 });
        };
        let needed = match BeaconKind::from(code) {
            BeaconKind::Discover | BeaconKind::RelayDeliver => 5,
            BeaconKind::PunchRequest | BeaconKind::Relay => 9,
            BeaconKind::DiscoverReply | BeaconKind::PunchCommand => endpoint_len(data)?,
            BeaconKind::Sync => sync_len(data)?,
            BeaconKind::Unknown(value) => {
                return Err(ParseError::UnknownValue {
                    field: "beacon type",
                    value: value.into(),
                });
            }
        };
        if data.len() < needed {
            return Err(ParseError::Truncated {
                needed,
                got: data.len(),
            });
        }
        Ok(Self { bytes })
    }

    /// Message type.
    pub fn kind(&self) -> BeaconKind {
        BeaconKind::from(self.data()[field::KIND])
    }

    /// First id field (node, requester, sender or beacon id, by type).
    pub fn first_id(&self) -> u32 {
        read_u32(self.data(), field::FIRST_ID.start)
    }

    /// Second id field (PunchRequest target, Relay destination); 0 for other types.
    pub fn second_id(&self) -> u32 {
        match self.kind() {
            BeaconKind::PunchRequest | BeaconKind::Relay => {
                read_u32(self.data(), field::SECOND_ID.start)
            }
            _ => 0,
        }
    }

    /// Endpoint of a DiscoverReply or PunchCommand.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        match self.kind() {
            BeaconKind::DiscoverReply | BeaconKind::PunchCommand => read_endpoint(self.data()),
            _ => None,
        }
    }

    /// Inner tunnel frame of a Relay or RelayDeliver; empty for other types.
    pub fn payload(&self) -> &[u8] {
        let start = match self.kind() {
            BeaconKind::Relay => field::RELAY_PAYLOAD,
            BeaconKind::RelayDeliver => field::DELIVER_PAYLOAD,
            _ => return &[],
        };
        &self.data()[start..]
    }

    /// The whole datagram.
    pub fn as_bytes(&self) -> &[u8] {
        self.data()
    }

    fn data(&self) -> &[u8] {
        self.bytes.as_ref()
    }
}

/// A proof that the sender of a Discover holds the node's identity key.
///
/// The signature is Ed25519 over `PROOF_DOMAIN ‖ node_id ‖ unix_time` (big-endian), made with
/// the key the registry holds for the node. The beacon accepts it within a short time window
/// and never twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoverProof {
    /// Signer's wall clock, Unix seconds.
    pub unix_time: u64,
    /// Ed25519 signature.
    pub signature: [u8; 64],
}

impl DiscoverProof {
    /// Bytes the signature covers.
    pub fn signed_bytes(node_id: u32, unix_time: u64) -> [u8; 29] {
        let mut out = [0u8; 29];
        out[..17].copy_from_slice(PROOF_DOMAIN);
        out[17..21].copy_from_slice(&node_id.to_be_bytes());
        out[21..].copy_from_slice(&unix_time.to_be_bytes());
        out
    }
}

/// Node ids listed in a Sync, borrowed from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeIdList<'a> {
    bytes: &'a [u8],
}

impl<'a> NodeIdList<'a> {
    /// Wraps `4 × n` bytes of big-endian ids; a trailing partial id is ignored.
    pub fn new(bytes: &'a [u8]) -> Self {
        let whole = bytes.len() / 4 * 4;
        Self {
            bytes: &bytes[..whole],
        }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.bytes.len() / 4
    }

    /// True when no ids are listed.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The ids in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.bytes
            .chunks_exact(4)
            .map(|chunk| u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
    }
}

/// A whole beacon message, parsed or to be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BeaconRepr<'a> {
    /// 0x01: register the sender's observed endpoint for `node_id` (0 = anonymous probe).
    Discover {
        /// Claimed node id.
        node_id: u32,
        /// Optional proof of key possession (hardened form).
        proof: Option<DiscoverProof>,
    },
    /// 0x02: the endpoint the beacon observed.
    DiscoverReply {
        /// Observed source address.
        observed: SocketAddr,
    },
    /// 0x03: ask the beacon to coordinate a punch.
    PunchRequest {
        /// Who asks.
        requester_id: u32,
        /// Whom to punch towards.
        target_id: u32,
    },
    /// 0x04: punch towards this endpoint.
    PunchCommand {
        /// The peer's observed endpoint.
        peer: SocketAddr,
    },
    /// 0x05: forward `payload` to `dest_id`.
    Relay {
        /// Claimed sender.
        sender_id: u32,
        /// Destination node.
        dest_id: u32,
        /// Complete tunnel frame.
        payload: &'a [u8],
    },
    /// 0x06: a relayed frame.
    RelayDeliver {
        /// Sender named in the Relay.
        sender_id: u32,
        /// Complete tunnel frame.
        payload: &'a [u8],
    },
    /// 0x07: gossip of locally known node ids.
    Sync {
        /// Sending beacon.
        beacon_id: u32,
        /// Node ids it knows locally.
        node_ids: NodeIdList<'a>,
    },
}

impl<'a> BeaconRepr<'a> {
    /// Checks and parses raw bytes in one step.
    ///
    /// # Errors
    /// As [`BeaconPacket::new_checked`].
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Self, ParseError> {
        let packet = BeaconPacket::new_checked(bytes)?;
        Ok(Self::parse(packet))
    }

    /// Parses a checked packet.
    pub fn parse(packet: BeaconPacket<&'a [u8]>) -> Self {
        let data: &'a [u8] = packet.bytes;
        let first_id = read_u32(data, field::FIRST_ID.start);
        match packet.kind() {
            BeaconKind::Discover => Self::Discover {
                node_id: first_id,
                proof: read_proof(data),
            },
            BeaconKind::DiscoverReply => Self::DiscoverReply {
                observed: read_endpoint(data).unwrap_or(UNSPECIFIED),
            },
            BeaconKind::PunchRequest => Self::PunchRequest {
                requester_id: first_id,
                target_id: packet.second_id(),
            },
            BeaconKind::PunchCommand => Self::PunchCommand {
                peer: read_endpoint(data).unwrap_or(UNSPECIFIED),
            },
            BeaconKind::Relay => Self::Relay {
                sender_id: first_id,
                dest_id: packet.second_id(),
                payload: &data[field::RELAY_PAYLOAD..],
            },
            BeaconKind::RelayDeliver => Self::RelayDeliver {
                sender_id: first_id,
                payload: &data[field::DELIVER_PAYLOAD..],
            },
            // new_checked rejects unknown codes, so only Sync remains.
            BeaconKind::Sync | BeaconKind::Unknown(_) => Self::Sync {
                beacon_id: first_id,
                node_ids: NodeIdList::new(sync_ids(data)),
            },
        }
    }

    /// Message type.
    pub fn kind(&self) -> BeaconKind {
        match self {
            Self::Discover { .. } => BeaconKind::Discover,
            Self::DiscoverReply { .. } => BeaconKind::DiscoverReply,
            Self::PunchRequest { .. } => BeaconKind::PunchRequest,
            Self::PunchCommand { .. } => BeaconKind::PunchCommand,
            Self::Relay { .. } => BeaconKind::Relay,
            Self::RelayDeliver { .. } => BeaconKind::RelayDeliver,
            Self::Sync { .. } => BeaconKind::Sync,
        }
    }

    /// Bytes [`Self::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Self::Discover { proof, .. } => 5 + proof.map_or(0, |_| 4 + 8 + 64),
            Self::DiscoverReply { observed: addr } | Self::PunchCommand { peer: addr } => {
                2 + ip_bytes(addr).len() + 2
            }
            Self::PunchRequest { .. } => 9,
            Self::Relay { payload, .. } => 9 + payload.len(),
            Self::RelayDeliver { payload, .. } => 5 + payload.len(),
            Self::Sync { node_ids, .. } => 7 + node_ids.len().min(MAX_SYNC_IDS) * 4,
        }
    }

    /// Writes the message at the start of `buf` and returns its length.
    ///
    /// # Errors
    /// [`ParseError::Truncated`] when `buf` is shorter than [`Self::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ParseError> {
        let len = self.buffer_len();
        if buf.len() < len {
            return Err(ParseError::Truncated {
                needed: len,
                got: buf.len(),
            });
        }
        buf[field::KIND] = self.kind().into();
        match self {
            Self::Discover { node_id, proof } => emit_discover(buf, *node_id, proof.as_ref()),
            Self::DiscoverReply { observed: addr } | Self::PunchCommand { peer: addr } => {
                emit_endpoint(buf, addr)
            }
            Self::PunchRequest {
                requester_id: first,
                target_id: second,
            } => emit_ids(buf, *first, Some(*second)),
            Self::Relay {
                sender_id,
                dest_id,
                payload,
            } => {
                emit_ids(buf, *sender_id, Some(*dest_id));
                buf[field::RELAY_PAYLOAD..len].copy_from_slice(payload);
            }
            Self::RelayDeliver { sender_id, payload } => {
                emit_ids(buf, *sender_id, None);
                buf[field::DELIVER_PAYLOAD..len].copy_from_slice(payload);
            }
            Self::Sync {
                beacon_id,
                node_ids,
            } => emit_sync(buf, *beacon_id, node_ids),
        }
        Ok(len)
    }

    /// Emits into a fresh vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.buffer_len()];
        // The buffer has exactly buffer_len bytes, so emit cannot fail.
        let _ = self.emit(&mut out);
        out
    }
}

const UNSPECIFIED: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

fn read_u32(data: &[u8], at: usize) -> u32 {
    match data.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

fn endpoint_len(data: &[u8]) -> Result<usize, ParseError> {
    let Some(&ip_len) = data.get(field::IP_LEN) else {
        return Err(ParseError::Truncated {
            needed: 2,
            got: data.len(),
        });
    };
    match ip_len {
        4 | 16 => Ok(2 + usize::from(ip_len) + 2),
        other => Err(ParseError::UnknownValue {
            field: "beacon ip length",
            value: other.into(),
        }),
    }
}

fn sync_len(data: &[u8]) -> Result<usize, ParseError> {
    let Some(&[high, low]) = data.get(field::SYNC_COUNT) else {
        return Err(ParseError::Truncated {
            needed: field::SYNC_IDS,
            got: data.len(),
        });
    };
    let count = usize::from(u16::from_be_bytes([high, low]));
    Ok(field::SYNC_IDS + count * 4)
}

/// The ids a Sync's count covers; bytes after them are ignored.
fn sync_ids(data: &[u8]) -> &[u8] {
    let count = match data.get(field::SYNC_COUNT) {
        Some(&[high, low]) => usize::from(u16::from_be_bytes([high, low])),
        _ => 0,
    };
    data.get(field::SYNC_IDS..field::SYNC_IDS + count * 4)
        .unwrap_or(&[])
}

fn read_endpoint(data: &[u8]) -> Option<SocketAddr> {
    let ip_len = usize::from(*data.get(field::IP_LEN)?);
    let ip_bytes = data.get(2..2 + ip_len)?;
    let port_bytes = data.get(2 + ip_len..2 + ip_len + 2)?;
    let ip = match ip_len {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip_bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip_bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(
        ip,
        u16::from_be_bytes([port_bytes[0], port_bytes[1]]),
    ))
}

fn read_proof(data: &[u8]) -> Option<DiscoverProof> {
    if data.get(field::PROOF_MAGIC)? != PROOF_MAGIC {
        return None;
    }
    let unix_time = u64::from_be_bytes(data.get(field::PROOF_TS)?.try_into().ok()?);
    let signature = data.get(field::PROOF_SIG)?.try_into().ok()?;
    Some(DiscoverProof {
        unix_time,
        signature,
    })
}

/// IPv4 (including IPv4-mapped IPv6) goes out in 4-byte form, as v0.5 does.
fn ip_bytes(addr: &SocketAddr) -> Vec<u8> {
    match addr.ip() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    }
}

fn emit_ids(buf: &mut [u8], first: u32, second: Option<u32>) {
    buf[field::FIRST_ID].copy_from_slice(&first.to_be_bytes());
    if let Some(second) = second {
        buf[field::SECOND_ID].copy_from_slice(&second.to_be_bytes());
    }
}

fn emit_discover(buf: &mut [u8], node_id: u32, proof: Option<&DiscoverProof>) {
    emit_ids(buf, node_id, None);
    if let Some(proof) = proof {
        buf[field::PROOF_MAGIC].copy_from_slice(&PROOF_MAGIC);
        buf[field::PROOF_TS].copy_from_slice(&proof.unix_time.to_be_bytes());
        buf[field::PROOF_SIG].copy_from_slice(&proof.signature);
    }
}

fn emit_endpoint(buf: &mut [u8], addr: &SocketAddr) {
    let ip = ip_bytes(addr);
    // ip is 4 or 16 bytes, so the length fits a byte.
    buf[field::IP_LEN] = ip.len() as u8;
    buf[2..2 + ip.len()].copy_from_slice(&ip);
    buf[2 + ip.len()..4 + ip.len()].copy_from_slice(&addr.port().to_be_bytes());
}

fn emit_sync(buf: &mut [u8], beacon_id: u32, node_ids: &NodeIdList<'_>) {
    emit_ids(buf, beacon_id, None);
    let count = node_ids.len().min(MAX_SYNC_IDS);
    // count is capped at u16::MAX.
    buf[field::SYNC_COUNT].copy_from_slice(&(count as u16).to_be_bytes());
    for (index, id) in node_ids.iter().take(count).enumerate() {
        let at = field::SYNC_IDS + index * 4;
        buf[at..at + 4].copy_from_slice(&id.to_be_bytes());
    }
}

/// Writes a Sync listing `node_ids` (at most [`MAX_SYNC_IDS`]) into a fresh vector.
pub fn encode_sync(beacon_id: u32, node_ids: &[u32]) -> Vec<u8> {
    let ids: Vec<u8> = node_ids
        .iter()
        .take(MAX_SYNC_IDS)
        .flat_map(|id| id.to_be_bytes())
        .collect();
    BeaconRepr::Sync {
        beacon_id,
        node_ids: NodeIdList::new(&ids),
    }
    .to_vec()
}
