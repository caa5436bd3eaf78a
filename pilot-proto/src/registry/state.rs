//! The registry's tables and their persistence as pure encode + recover.
//!
//! Owns the data model (node records, key/owner/hostname indexes, directed trust edges,
//! handshake inboxes, networks, beacons) and its JSON snapshot. Never touches a file: the
//! driver writes [`crate::registry::RegistryServer::encode_state`] to a temp file, fsyncs and
//! renames it, and hands the bytes back to `recover` at start-up.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::wire::registry::{Base64, HandshakeRequestEntry, HandshakeResponseEntry};

/// Format tag written into every snapshot.
pub const STATE_FORMAT: &str = "pilot-rs-registry-1";

/// Why a snapshot could not be recovered (the driver then starts empty, as v0.5 does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecoverError {
    /// Not the JSON this module writes.
    #[error("registry snapshot is not valid json: {0}")]
    Json(String),
    /// Written by something else.
    #[error("unknown registry snapshot format {0:?}")]
    Format(String),
    /// A record breaks an invariant (bad key length, duplicate id).
    #[error("invalid registry snapshot: {0}")]
    Invalid(&'static str),
}

/// Maps the monotonic `now` the core is given onto Unix seconds.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    base: Instant,
    unix_base: u64,
}

impl WallClock {
    /// Anchors `now` to `unix_now` (seconds since 1970).
    pub fn new(now: Instant, unix_now: u64) -> Self {
        Self {
            base: now,
            unix_base: unix_now,
        }
    }

    /// Unix seconds at `now`.
    pub fn unix_at(&self, now: Instant) -> u64 {
        self.unix_base + now.saturating_duration_since(self.base).as_secs()
    }

    /// The instant that corresponds to `unix` seconds, clamped to `now` for future times.
    pub fn instant_of(&self, now: Instant, unix: u64) -> Instant {
        let age = self.unix_at(now).saturating_sub(unix);
        now.checked_sub(Duration::from_secs(age)).unwrap_or(now)
    }
}

/// One registered node.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NodeRecord {
    /// Node id.
    pub(super) id: u32,
    /// Owner string, if given.
    pub(super) owner: Option<String>,
    /// Ed25519 public key.
    pub(super) public_key: [u8; 32],
    /// Endpoint peers should use.
    pub(super) real_addr: Option<SocketAddr>,
    /// Network memberships (0 always).
    pub(super) networks: BTreeSet<u16>,
    /// Visibility.
    pub(super) public: bool,
    /// Last register/heartbeat.
    pub(super) last_seen: Instant,
    /// Hostname, if set.
    pub(super) hostname: Option<String>,
    /// Tags.
    pub(super) tags: Vec<String>,
    /// Reputation.
    pub(super) polo_score: i64,
    /// Task capability flag.
    pub(super) task_exec: bool,
}

impl NodeRecord {
    /// A fresh record as v0.5 creates it: network 0, private, no tags, score 0.
    pub(super) fn fresh(id: u32, public_key: [u8; 32], now: Instant) -> Self {
        Self {
            id,
            owner: None,
            public_key,
            real_addr: None,
            networks: BTreeSet::from([0]),
            public: false,
            last_seen: now,
            hostname: None,
            tags: Vec::new(),
            polo_score: 0,
            task_exec: false,
        }
    }
}

/// A network (only network 0, `backbone`, is usable in v0.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Network {
    /// Id.
    pub(super) id: u16,
    /// Name.
    pub(super) name: String,
    /// `open`, `token` or `invite`.
    pub(super) join_rule: String,
    /// Join token for the `token` rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) token: Option<String>,
    /// Members.
    pub(super) members: BTreeSet<u32>,
    /// Creation time, Unix seconds.
    pub(super) created: u64,
}

/// Every table of the registry.
#[derive(Debug, Default)]
pub(super) struct Tables {
    /// Live node records.
    pub(super) nodes: BTreeMap<u32, NodeRecord>,
    /// Public key → id; survives reaping so a returning key gets its id back.
    pub(super) key_index: HashMap<[u8; 32], u32>,
    /// Owner → id (live nodes only after a restart, as v0.5).
    pub(super) owner_index: HashMap<String, u32>,
    /// Hostname → id.
    pub(super) hostnames: HashMap<String, u32>,
    /// Directed trust edges `(truster, trusted)`.
    pub(super) trust: BTreeSet<(u32, u32)>,
    /// Ids that proved key possession once; from then on they must always prove it.
    pub(super) hardened: BTreeSet<u32>,
    /// Relayed trust requests per target.
    pub(super) inbox: BTreeMap<u32, Vec<HandshakeRequestEntry>>,
    /// Relayed verdicts per requester.
    pub(super) responses: BTreeMap<u32, VecDeque<HandshakeResponseEntry>>,
    /// Networks by id.
    pub(super) networks: BTreeMap<u16, Network>,
    /// Beacons: id → (address, last registration).
    pub(super) beacons: BTreeMap<u32, (String, Instant)>,
    /// Next node id to hand out.
    pub(super) next_node: u32,
    /// Next network id to hand out.
    pub(super) next_net: u16,
}

impl Tables {
    /// Empty tables with network 0 (`backbone`, open).
    pub(super) fn new(created: u64) -> Self {
        let backbone = Network {
            id: 0,
            name: "backbone".into(),
            join_rule: "open".into(),
            token: None,
            members: BTreeSet::new(),
            created,
        };
        Self {
            networks: BTreeMap::from([(0, backbone)]),
            next_node: 1,
            next_net: 1,
            ..Self::default()
        }
    }

    /// True when either node trusts the other (v0.5's symmetric pair).
    pub(super) fn has_pair(&self, a: u32, b: u32) -> bool {
        self.trust.contains(&(a, b)) || self.trust.contains(&(b, a))
    }

    /// Removes a node record and everything keyed by it that v0.5 frees on deregister/reap:
    /// network memberships and the hostname. Key and owner indexes, trust and inboxes stay.
    pub(super) fn remove_node(&mut self, id: u32) -> Option<NodeRecord> {
        let record = self.nodes.remove(&id)?;
        for network in self.networks.values_mut() {
            network.members.remove(&id);
        }
        if let Some(hostname) = &record.hostname {
            self.hostnames.remove(hostname);
        }
        Some(record)
    }

    /// Installs a node record and its memberships.
    pub(super) fn insert_node(&mut self, record: NodeRecord) {
        for network in &record.networks {
            if let Some(network) = self.networks.get_mut(network) {
                network.members.insert(record.id);
            }
        }
        self.nodes.insert(record.id, record);
    }

    /// Encodes a snapshot (compact JSON).
    pub(super) fn encode(&self, clock: &WallClock, now: Instant) -> Vec<u8> {
        let stored = Stored {
            format: STATE_FORMAT.into(),
            saved_at: clock.unix_at(now),
            next_node: self.next_node,
            next_net: self.next_net,
            nodes: self
                .nodes
                .values()
                .map(|node| StoredNode::from_record(node, clock, now))
                .collect(),
            networks: self.networks.values().cloned().collect(),
            trust: self.trust.iter().copied().collect(),
            key_index: self
                .key_index
                .iter()
                .map(|(key, id)| (Base64(key.to_vec()), *id))
                .collect(),
            owner_index: self
                .owner_index
                .iter()
                .map(|(owner, id)| (owner.clone(), *id))
                .collect(),
            hardened: self.hardened.iter().copied().collect(),
            inbox: self
                .inbox
                .iter()
                .map(|(id, list)| (*id, list.clone()))
                .collect(),
            responses: self
                .responses
                .iter()
                .map(|(id, list)| (*id, list.iter().cloned().collect()))
                .collect(),
        };
        let mut stored = stored;
        // Sorted so that the same state always encodes to the same bytes.
        stored
            .key_index
            .sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        stored.owner_index.sort();
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// Rebuilds tables from a snapshot; `max_nodes` bounds what is accepted.
    ///
    /// # Errors
    /// [`RecoverError`] when the bytes are not a snapshot of this format or break an invariant.
    pub(super) fn recover(
        bytes: &[u8],
        clock: &WallClock,
        now: Instant,
        max_nodes: usize,
    ) -> Result<Self, RecoverError> {
        let stored: Stored =
            serde_json::from_slice(bytes).map_err(|error| RecoverError::Json(error.to_string()))?;
        if stored.format != STATE_FORMAT {
            return Err(RecoverError::Format(stored.format));
        }
        let mut tables = Self::new(clock.unix_at(now));
        tables.next_node = stored.next_node.max(1);
        tables.next_net = stored.next_net.max(1);
        for network in stored.networks {
            tables.networks.insert(
                network.id,
                Network {
                    members: BTreeSet::new(),
                    ..network
                },
            );
        }
        for node in stored.nodes.into_iter().take(max_nodes) {
            let record = node.into_record(clock, now)?;
            if let Some(hostname) = &record.hostname {
                tables.hostnames.insert(hostname.clone(), record.id);
            }
            if let Some(owner) = &record.owner {
                tables.owner_index.insert(owner.clone(), record.id);
            }
            tables.key_index.insert(record.public_key, record.id);
            tables.insert_node(record);
        }
        tables.restore_indexes(stored.key_index, stored.owner_index, max_nodes)?;
        tables.trust = stored.trust.into_iter().collect();
        tables.hardened = stored.hardened.into_iter().collect();
        tables.inbox = stored.inbox.into_iter().collect();
        tables.responses = stored
            .responses
            .into_iter()
            .map(|(id, list)| (id, list.into_iter().collect()))
            .collect();
        Ok(tables)
    }

    fn restore_indexes(
        &mut self,
        keys: Vec<(Base64, u32)>,
        owners: Vec<(String, u32)>,
        max_entries: usize,
    ) -> Result<(), RecoverError> {
        for (key, id) in keys.into_iter().take(max_entries) {
            let key: [u8; 32] = key.to_array().ok_or(RecoverError::Invalid("key length"))?;
            self.key_index.entry(key).or_insert(id);
        }
        for (owner, id) in owners.into_iter().take(max_entries) {
            self.owner_index.entry(owner).or_insert(id);
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    format: String,
    saved_at: u64,
    next_node: u32,
    next_net: u16,
    nodes: Vec<StoredNode>,
    networks: Vec<Network>,
    trust: Vec<(u32, u32)>,
    key_index: Vec<(Base64, u32)>,
    owner_index: Vec<(String, u32)>,
    hardened: Vec<u32>,
    inbox: Vec<(u32, Vec<HandshakeRequestEntry>)>,
    responses: Vec<(u32, Vec<HandshakeResponseEntry>)>,
}

#[derive(Serialize, Deserialize)]
struct StoredNode {
    id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    public_key: Base64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    real_addr: Option<SocketAddr>,
    networks: Vec<u16>,
    public: bool,
    last_seen: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    polo_score: i64,
    #[serde(default)]
    task_exec: bool,
}

impl StoredNode {
    fn from_record(record: &NodeRecord, clock: &WallClock, now: Instant) -> Self {
        let age = now.saturating_duration_since(record.last_seen).as_secs();
        Self {
            id: record.id,
            owner: record.owner.clone(),
            public_key: Base64(record.public_key.to_vec()),
            real_addr: record.real_addr,
            networks: record.networks.iter().copied().collect(),
            public: record.public,
            last_seen: clock.unix_at(now).saturating_sub(age),
            hostname: record.hostname.clone(),
            tags: record.tags.clone(),
            polo_score: record.polo_score,
            task_exec: record.task_exec,
        }
    }

    fn into_record(self, clock: &WallClock, now: Instant) -> Result<NodeRecord, RecoverError> {
        let public_key = self
            .public_key
            .to_array()
            .ok_or(RecoverError::Invalid("key length"))?;
        if self.id == 0 {
            return Err(RecoverError::Invalid("node id 0"));
        }
        Ok(NodeRecord {
            id: self.id,
            owner: self.owner,
            public_key,
            real_addr: self.real_addr,
            networks: self.networks.into_iter().collect(),
            public: self.public,
            last_seen: clock.instant_of(now, self.last_seen),
            hostname: self.hostname,
            tags: self.tags,
            polo_score: self.polo_score,
            task_exec: self.task_exec,
        })
    }
}
