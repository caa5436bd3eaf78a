//! The registry message structs, one per JSON `type` (fields named exactly as in v0.5).
//!
//! Optional fields are `Option`s skipped when absent, so a parsed message re-emits the same
//! fields it arrived with.

use super::*;

wire_struct! {
    /// `register`: announce a key and endpoint; unsigned in v0.5.
    Register {
        /// Ed25519 public key (32 bytes); required by the server.
        #[serde(skip_serializing_if = "Option::is_none")]
        public_key: Option<Base64>,
        /// `host:port` the node listens on; only the port is used.
        #[serde(skip_serializing_if = "Option::is_none")]
        listen_addr: Option<String>,
        /// Owner string (key recovery in v0.5).
        #[serde(skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        /// Hostname to claim.
        #[serde(skip_serializing_if = "Option::is_none")]
        hostname: Option<String>,
        /// Hardened proof of possession of `public_key`.
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// A request that names one node and is signed by it (`heartbeat`, `deregister`,
    /// `poll_handshakes`).
    NodeSigned {
        /// The node.
        node_id: u32,
        /// v0.5 signature over the fixed challenge.
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<Base64>,
        /// Hardened proof.
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// A request that names only a node (`lookup`, `get_polo_score`).
    NodeOnly {
        /// The node.
        node_id: u32,
    }
}

wire_struct! {
    /// A request with no fields besides `type` (`list_networks`, `beacon_list`).
    Empty {}
}

wire_struct! {
    /// `resolve`: a node's endpoint, for a registered requester.
    Resolve {
        /// Target node.
        node_id: u32,
        /// Who asks; signs `resolve:<requester>:<target>`.
        requester_id: u32,
        /// v0.5 signature.
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<Base64>,
        /// Hardened proof.
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// `resolve_hostname`; unsigned in v0.5. Hardened requesters add their id and proof so
    /// that private nodes resolve only for trusted peers.
    ResolveHostname {
        /// Hostname to look up.
        hostname: String,
        /// Hardened: who asks.
        #[serde(skip_serializing_if = "Option::is_none")]
        requester_id: Option<u32>,
        /// Hardened proof by the requester.
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// `set_hostname` ("" clears).
    SetHostname {
        /// The node.
        node_id: u32,
        /// New hostname.
        hostname: String,
        /// v0.5 signature.
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<Base64>,
        /// Hardened proof.
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// `set_tags`: replaces the whole list.
    SetTags {
        /// The node.
        node_id: u32,
        /// Tags; non-string members are dropped as in v0.5.
        #[serde(deserialize_with = "lenient_strings")]
        tags: Vec<String>,
        /// v0.5 signature.
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<Base64>,
        /// Hardened proof.
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// `set_visibility`.
    SetVisibility {
        /// The node.
        node_id: u32,
        /// True for public.
        public: bool,
        /// v0.5 signature.
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<Base64>,
        /// Hardened proof.
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// `set_task_exec`.
    SetTaskExec {
        /// The node.
        node_id: u32,
        /// Capability flag.
        enabled: bool,
        /// v0.5 signature.
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<Base64>,
        /// Hardened proof.
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// `report_trust` and `revoke_trust`, signed by `node_id`.
    TrustPair {
        /// The signer.
        node_id: u32,
        /// The other side of the pair.
        peer_id: u32,
        /// v0.5 signature.
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<Base64>,
        /// Hardened proof.
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// `request_handshake`: queue a trust request in the target's inbox.
    RequestHandshake {
        /// Requester (signer).
        from_node_id: u32,
        /// Target.
        to_node_id: u32,
        /// Free text for the target's operator.
        justification: String,
        /// v0.5 signature.
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<Base64>,
        /// Hardened proof.
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// `respond_handshake`: the responder's verdict on a relayed request.
    RespondHandshake {
        /// Responder (signer).
        node_id: u32,
        /// Original requester.
        peer_id: u32,
        /// Verdict.
        accept: bool,
        /// v0.5 signature.
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<Base64>,
        /// Hardened proof.
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// `punch`: both endpoints for a pair (unused by the v0.5 daemon).
    Punch {
        /// Requester; must be `node_a` or `node_b`.
        requester_id: u32,
        /// First node.
        node_a: u32,
        /// Second node.
        node_b: u32,
        /// v0.5 signature.
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<Base64>,
        /// Hardened proof.
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// `rotate_key`: signed by the current key.
    RotateKey {
        /// The node.
        node_id: u32,
        /// Replacement Ed25519 key.
        new_public_key: Base64,
        /// v0.5 signature.
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<Base64>,
        /// Hardened proof.
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// `update_polo_score`: adds the integer part of `delta`.
    UpdatePoloScore {
        /// The node.
        node_id: u32,
        /// Change to apply (required; kept as written, integer or float).
        #[serde(skip_serializing_if = "Option::is_none")]
        delta: Option<serde_json::Number>,
        /// Hardened proof (v0.5 has no authentication here).
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// `set_polo_score`.
    SetPoloScore {
        /// The node.
        node_id: u32,
        /// New score (required; kept as written).
        #[serde(skip_serializing_if = "Option::is_none")]
        polo_score: Option<serde_json::Number>,
        /// Hardened proof (v0.5 has no authentication here).
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth>,
    }
}

wire_struct! {
    /// `list_nodes`.
    ListNodes {
        /// Network to list (0 is refused).
        network_id: u16,
    }
}

wire_struct! {
    /// `create_network` (refused by v0.5's dispatcher).
    CreateNetwork {
        /// Creator.
        node_id: u32,
        /// Network name.
        name: String,
        /// `open`, `token` or `invite`.
        #[serde(skip_serializing_if = "Option::is_none")]
        join_rule: Option<String>,
        /// Join token for the `token` rule.
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Registry admin token.
        #[serde(skip_serializing_if = "Option::is_none")]
        admin_token: Option<String>,
    }
}

wire_struct! {
    /// `join_network` (refused by v0.5's dispatcher).
    JoinNetwork {
        /// Joiner.
        node_id: u32,
        /// Network.
        network_id: u16,
        /// Join token.
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Inviting member for the `invite` rule.
        #[serde(skip_serializing_if = "Option::is_none")]
        inviter_id: Option<u32>,
        /// Registry admin token.
        #[serde(skip_serializing_if = "Option::is_none")]
        admin_token: Option<String>,
    }
}

wire_struct! {
    /// `leave_network` (refused by v0.5's dispatcher).
    LeaveNetwork {
        /// Leaver.
        node_id: u32,
        /// Network.
        network_id: u16,
        /// Registry admin token.
        #[serde(skip_serializing_if = "Option::is_none")]
        admin_token: Option<String>,
    }
}

wire_struct! {
    /// `beacon_register`: a beacon announces its UDP address.
    BeaconRegister {
        /// Non-zero beacon id.
        beacon_id: u32,
        /// `host:port`.
        addr: String,
    }
}

wire_struct! {
    /// `subscribe_replication`: turns the connection into a snapshot stream.
    SubscribeReplication {
        /// Replication token.
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    }
}

wire_struct! {
    /// `register_ok`.
    RegisterOk {
        /// Assigned id.
        node_id: u32,
        /// Always 0 in v0.5.
        network_id: u16,
        /// Text address in network 0.
        address: String,
        /// Echo of the key.
        public_key: Base64,
        /// Present only when the hostname was applied.
        #[serde(skip_serializing_if = "Option::is_none")]
        hostname: Option<String>,
        /// Present only when the hostname was invalid.
        #[serde(skip_serializing_if = "Option::is_none")]
        hostname_error: Option<String>,
        /// Hardened servers: the endpoint stored for the node.
        #[serde(skip_serializing_if = "Option::is_none")]
        real_addr: Option<String>,
        /// Hardened servers say so, so that clients stop sending replayable v0.5 signatures.
        #[serde(skip_serializing_if = "Option::is_none")]
        hardened: Option<bool>,
    }
}

wire_struct! {
    /// `heartbeat_ok`.
    HeartbeatOk {
        /// Server wall clock, Unix seconds.
        time: i64,
    }
}

wire_struct! {
    /// `lookup_ok`.
    LookupOk {
        /// The node.
        node_id: u32,
        /// Text address.
        address: String,
        /// Network ids.
        #[serde(deserialize_with = "null_as_empty")]
        networks: Vec<u16>,
        /// Ed25519 key.
        public_key: Base64,
        /// Visibility.
        public: bool,
        /// Reputation.
        polo_score: i64,
        /// Hostname, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        hostname: Option<String>,
        /// Tags, only when non-empty.
        #[serde(skip_serializing_if = "Option::is_none")]
        tags: Option<Vec<String>>,
        /// Only when set.
        #[serde(skip_serializing_if = "Option::is_none")]
        task_exec: Option<bool>,
        /// Endpoint, only for public nodes.
        #[serde(skip_serializing_if = "Option::is_none")]
        real_addr: Option<String>,
    }
}

wire_struct! {
    /// `resolve_ok`.
    ResolveOk {
        /// The node.
        node_id: u32,
        /// Its endpoint.
        real_addr: String,
    }
}

wire_struct! {
    /// `resolve_hostname_ok`.
    ResolveHostnameOk {
        /// The node.
        node_id: u32,
        /// Text address.
        address: String,
        /// Visibility.
        public: bool,
        /// The hostname.
        hostname: String,
    }
}

wire_struct! {
    /// `set_hostname_ok`.
    SetHostnameOk {
        /// The node.
        node_id: u32,
        /// The hostname now set.
        hostname: String,
    }
}

wire_struct! {
    /// `set_tags_ok` (`tags` is `null` when cleared).
    SetTagsOk {
        /// The node.
        node_id: u32,
        /// The tags now set.
        tags: Option<Vec<String>>,
    }
}

wire_struct! {
    /// `set_visibility_ok`.
    SetVisibilityOk {
        /// The node.
        node_id: u32,
        /// `public` or `private`.
        visibility: String,
    }
}

wire_struct! {
    /// `set_task_exec_ok`.
    SetTaskExecOk {
        /// The node.
        node_id: u32,
        /// The flag now set.
        task_exec: bool,
    }
}

wire_struct! {
    /// `request_handshake_ok`.
    RequestHandshakeOk {
        /// Always `delivered`.
        status: String,
    }
}

wire_struct! {
    /// One relayed trust request in `poll_handshakes_ok`.
    HandshakeRequestEntry {
        /// Requester.
        from_node_id: u32,
        /// Its justification.
        justification: String,
        /// When it was queued, Unix seconds.
        timestamp: i64,
    }
}

wire_struct! {
    /// One relayed trust verdict in `poll_handshakes_ok`.
    HandshakeResponseEntry {
        /// Responder.
        from_node_id: u32,
        /// Verdict.
        accept: bool,
        /// When it was queued, Unix seconds.
        timestamp: i64,
    }
}

wire_struct! {
    /// `poll_handshakes_ok`: both inboxes, drained.
    PollHandshakesOk {
        /// Requests addressed to the poller.
        #[serde(deserialize_with = "null_as_empty")]
        requests: Vec<HandshakeRequestEntry>,
        /// Verdicts on the poller's requests.
        #[serde(deserialize_with = "null_as_empty")]
        responses: Vec<HandshakeResponseEntry>,
    }
}

wire_struct! {
    /// `respond_handshake_ok`.
    RespondHandshakeOk {
        /// Verdict echoed.
        accept: bool,
        /// Requester echoed.
        peer_id: u32,
    }
}

wire_struct! {
    /// `punch_ok`.
    PunchOk {
        /// First node.
        node_a: u32,
        /// Its endpoint.
        node_a_addr: String,
        /// Second node.
        node_b: u32,
        /// Its endpoint.
        node_b_addr: String,
    }
}

wire_struct! {
    /// `rotate_key_ok`.
    RotateKeyOk {
        /// The node.
        node_id: u32,
        /// Text address.
        address: String,
        /// The new key.
        public_key: Base64,
    }
}

wire_struct! {
    /// `update_polo_score_ok`, `set_polo_score_ok`, `get_polo_score_ok`.
    PoloScoreOk {
        /// The node.
        node_id: u32,
        /// Text address.
        address: String,
        /// Current score.
        polo_score: i64,
    }
}

wire_struct! {
    /// One network in `list_networks_ok`.
    NetworkInfo {
        /// Network id.
        id: u16,
        /// Name.
        name: String,
        /// Member count.
        members: u32,
        /// Join rule.
        join_rule: String,
    }
}

wire_struct! {
    /// `list_networks_ok`.
    ListNetworksOk {
        /// Every network.
        #[serde(deserialize_with = "null_as_empty")]
        networks: Vec<NetworkInfo>,
    }
}

wire_struct! {
    /// One node in `list_nodes_ok`.
    NodeEntry {
        /// The node.
        node_id: u32,
        /// Address in the listed network.
        address: String,
        /// Hostname, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        hostname: Option<String>,
        /// Only when set.
        #[serde(skip_serializing_if = "Option::is_none")]
        task_exec: Option<bool>,
        /// Only for public nodes.
        #[serde(skip_serializing_if = "Option::is_none")]
        real_addr: Option<String>,
    }
}

wire_struct! {
    /// `list_nodes_ok`.
    ListNodesOk {
        /// Members.
        #[serde(deserialize_with = "null_as_empty")]
        nodes: Vec<NodeEntry>,
    }
}

wire_struct! {
    /// `create_network_ok`.
    CreateNetworkOk {
        /// New id.
        network_id: u16,
        /// Name.
        name: String,
    }
}

wire_struct! {
    /// `join_network_ok`.
    JoinNetworkOk {
        /// Network.
        network_id: u16,
        /// Address in that network.
        address: String,
    }
}

wire_struct! {
    /// `leave_network_ok`.
    LeaveNetworkOk {
        /// Network.
        network_id: u16,
    }
}

wire_struct! {
    /// `beacon_register_ok`.
    BeaconRegisterOk {
        /// Echoed id.
        beacon_id: u32,
    }
}

wire_struct! {
    /// One beacon in `beacon_list_ok`.
    BeaconEntry {
        /// Beacon id.
        id: u32,
        /// `host:port`.
        addr: String,
    }
}

wire_struct! {
    /// `beacon_list_ok`.
    BeaconListOk {
        /// Beacons seen in the last 60 s.
        #[serde(deserialize_with = "null_as_empty")]
        beacons: Vec<BeaconEntry>,
    }
}

wire_struct! {
    /// `error`: v0.5 always says `request failed`.
    ErrorReply {
        /// Human text.
        error: String,
        /// Hardened servers: a machine-readable reason (see `registry::ErrorCode`).
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    }
}

wire_struct! {
    /// `replication_snapshot`: the full persisted state.
    ReplicationSnapshot {
        /// State object, as persisted.
        snapshot: Value,
    }
}
