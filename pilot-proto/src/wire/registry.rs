//! Registry frames (u32 length + JSON) and a typed message for every request and response.
//!
//! Owns the byte layout of the registry protocol only: the length-prefixed framing with its
//! 1 MiB cap ([`FrameDecoder`], [`encode_frame`]), the JSON message catalogue of v0.5 with its
//! exact field names ([`Request`], [`Response`]), and the optional `auth` object that hardened
//! peers add. No policy lives here: whether a signature is required or valid is the registry
//! server's business (`crate::registry`).
//!
//! Encoding follows Go's `encoding/json` over a map: compact, keys sorted, base64 standard with
//! padding. A message whose `type` is not in the catalogue is preserved as
//! [`UnknownMessage`] rather than rejected, so a driver can log it and answer `error`.

use std::collections::VecDeque;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// Largest JSON body accepted or emitted, as in v0.5 (1 MiB).
pub const MAX_FRAME_BODY: usize = 1_048_576;

/// Bytes of the big-endian length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Complete frames a [`FrameDecoder`] holds before the reader must drain them.
pub const MAX_QUEUED_FRAMES: usize = 64;

/// Why a registry frame or message could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix declares a body larger than the cap; the stream cannot be resynced.
    #[error("frame of {declared} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Body length the prefix declares.
        declared: usize,
        /// The cap.
        max: usize,
    },
    /// More complete frames are queued than the decoder holds; the reader is not draining.
    #[error("more than {0} frames queued")]
    Backlog(usize),
    /// An earlier error left the stream unusable.
    #[error("stream already failed")]
    Poisoned,
}

/// Why a JSON body is not a valid registry message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The body is not a JSON object.
    #[error("body is not a json object: {0}")]
    NotAnObject(String),
    /// The object has no string `type` field.
    #[error("message has no string type field")]
    MissingType,
    /// A known message type whose fields do not have the expected shape.
    #[error("invalid {type_name} message: {detail}")]
    InvalidFields {
        /// The `type` of the message.
        type_name: String,
        /// What serde reported.
        detail: String,
    },
    /// The encoded body would exceed [`MAX_FRAME_BODY`].
    #[error("encoded message of {0} bytes exceeds the frame limit")]
    TooLarge(usize),
}

/// Incremental decoder of `u32 length ‖ body` frames over a byte stream.
///
/// Feed it whatever the stream delivered with [`FrameDecoder::push`] and drain whole bodies
/// with [`FrameDecoder::next_frame`]. A length above the cap is rejected as soon as its four
/// bytes arrive, before any of its body is stored; the decoder is then poisoned, because a
/// stream cannot be resynchronised after a bad length.
#[derive(Debug)]
pub struct FrameDecoder {
    max_body: usize,
    header: [u8; LENGTH_PREFIX],
    header_len: usize,
    body: Vec<u8>,
    expected: Option<usize>,
    ready: VecDeque<Vec<u8>>,
    poisoned: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(MAX_FRAME_BODY)
    }
}

impl FrameDecoder {
    /// Creates a decoder accepting bodies up to `max_body` bytes (at most [`MAX_FRAME_BODY`]).
    pub fn new(max_body: usize) -> Self {
        Self {
            max_body: max_body.min(MAX_FRAME_BODY),
            header: [0; LENGTH_PREFIX],
            header_len: 0,
            body: Vec::new(),
            expected: None,
            ready: VecDeque::new(),
            poisoned: false,
        }
    }

    /// Consumes bytes from the stream.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] for an oversize length prefix, [`FrameError::Backlog`] when
    /// more than [`MAX_QUEUED_FRAMES`] frames wait, [`FrameError::Poisoned`] after either. The
    /// caller should close the stream on any error.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), FrameError> {
        if self.poisoned {
            return Err(FrameError::Poisoned);
        }
        while !bytes.is_empty() {
            let taken = match self.expected {
                None => self.take_header(bytes)?,
                Some(expected) => self.take_body(bytes, expected)?,
            };
            bytes = &bytes[taken..];
        }
        Ok(())
    }

    /// Returns the next complete body, oldest first.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        self.ready.pop_front()
    }

    /// Returns true when part of a frame is buffered (a clean stream end has none).
    pub fn has_partial(&self) -> bool {
        self.header_len > 0 || self.expected.is_some()
    }

    fn take_header(&mut self, bytes: &[u8]) -> Result<usize, FrameError> {
        let want = LENGTH_PREFIX - self.header_len;
        let taken = want.min(bytes.len());
        self.header[self.header_len..self.header_len + taken].copy_from_slice(&bytes[..taken]);
        self.header_len += taken;
        if self.header_len < LENGTH_PREFIX {
            return Ok(taken);
        }

        // The whole prefix is here: judge the length before storing any body byte.
        let declared = u32::from_be_bytes(self.header) as usize;
        self.header_len = 0;
        if declared > self.max_body {
            self.fail();
            return Err(FrameError::TooLarge {
                declared,
                max: self.max_body,
            });
        }
        self.expected = Some(declared);
        if declared == 0 {
            self.finish_frame()?;
        }
        Ok(taken)
    }

    fn take_body(&mut self, bytes: &[u8], expected: usize) -> Result<usize, FrameError> {
        let taken = (expected - self.body.len()).min(bytes.len());
        self.body.extend_from_slice(&bytes[..taken]);
        if self.body.len() == expected {
            self.finish_frame()?;
        }
        Ok(taken)
    }

    fn finish_frame(&mut self) -> Result<(), FrameError> {
        if self.ready.len() >= MAX_QUEUED_FRAMES {
            self.fail();
            return Err(FrameError::Backlog(MAX_QUEUED_FRAMES));
        }
        self.ready.push_back(std::mem::take(&mut self.body));
        self.expected = None;
        Ok(())
    }

    fn fail(&mut self) {
        self.poisoned = true;
        self.body = Vec::new();
        self.ready.clear();
    }
}

/// Appends `u32 length ‖ body` to `out`.
///
/// # Errors
/// [`MessageError::TooLarge`] when the body exceeds [`MAX_FRAME_BODY`]; `out` is unchanged.
pub fn encode_frame(body: &[u8], out: &mut Vec<u8>) -> Result<(), MessageError> {
    let len = u32::try_from(body.len()).map_err(|_| MessageError::TooLarge(body.len()))?;
    if body.len() > MAX_FRAME_BODY {
        return Err(MessageError::TooLarge(body.len()));
    }
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// Bytes carried as standard base64 with padding (Go `base64.StdEncoding`).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Base64(pub Vec<u8>);

impl Base64 {
    /// Returns the bytes as a fixed-size array, if the length matches.
    pub fn to_array<const N: usize>(&self) -> Option<[u8; N]> {
        self.0.as_slice().try_into().ok()
    }

    /// Encodes the bytes as text.
    pub fn encode(&self) -> String {
        STANDARD.encode(&self.0)
    }

    /// Decodes standard padded base64.
    ///
    /// # Errors
    /// Whatever the base64 decoder reports for malformed text.
    pub fn decode(text: &str) -> Result<Self, base64::DecodeError> {
        STANDARD.decode(text).map(Self)
    }
}

impl std::fmt::Debug for Base64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys and signatures are public, but a length is all a log ever needs.
        write!(f, "Base64({} bytes)", self.0.len())
    }
}

impl Serialize for Base64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::decode(&text).map_err(D::Error::custom)
    }
}

/// The hardened-form proof attached to a request as the `auth` object (ignored by v0.5).
///
/// `sig` is an Ed25519 signature over [`auth_transcript`]: a domain string, the timestamp, the
/// nonce and the canonical JSON of the whole request without `signature` and `auth`. It binds
/// the signature to every field of the body and makes it single-use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    /// Signer's wall clock, Unix seconds.
    pub ts: u64,
    /// 16 random bytes, never reused by the signer.
    pub nonce: Base64,
    /// Ed25519 signature over the transcript.
    pub sig: Base64,
}

/// Domain separation prefix of the hardened request transcript.
pub const AUTH_DOMAIN: &[u8] = b"pilot-registry-auth-v1\n";

/// Builds the bytes a hardened `auth.sig` covers for a request JSON object.
///
/// The object is re-serialised without `signature` and `auth`, keys sorted, so the transcript
/// is the same on both sides however the sender ordered its keys.
pub fn auth_transcript(object: &Map<String, Value>, ts: u64, nonce: &[u8]) -> Vec<u8> {
    let mut body = object.clone();
    body.remove("signature");
    body.remove("auth");
    let mut out = Vec::with_capacity(AUTH_DOMAIN.len() + 8 + nonce.len() + 256);
    out.extend_from_slice(AUTH_DOMAIN);
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(nonce);
    // A Map of Values always serialises; an empty body is the safe fallback regardless.
    out.extend_from_slice(&serde_json::to_vec(&Value::Object(body)).unwrap_or_default());
    out
}

/// A message whose `type` is not in the catalogue, kept whole.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownMessage {
    /// The `type` field.
    pub type_name: String,
    /// Every field, including `type`.
    pub fields: Map<String, Value>,
}

/// Tags: v0.5 silently drops array members that are not strings.
fn lenient_strings<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let values = Option::<Vec<Value>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(values
        .into_iter()
        .filter_map(|value| value.as_str().map(str::to_owned))
        .collect())
}

/// Lists that Go may send as `null` when empty.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }
    };
}

macro_rules! message_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident($ty:ty) = $tag:literal, )* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant($ty), )*
            /// A `type` this implementation does not know, preserved whole.
            Unknown(UnknownMessage),
        }

        impl $name {
            /// The value of the `type` field.
            pub fn type_name(&self) -> &str {
                match self {
                    $( Self::$variant(_) => $tag, )*
                    Self::Unknown(unknown) => &unknown.type_name,
                }
            }

            /// Decodes a frame body.
            ///
            /// # Errors
            /// [`MessageError`] when the body is not an object with a string `type`, or a
            /// known type has fields of the wrong shape.
            pub fn from_json(body: &[u8]) -> Result<Self, MessageError> {
                let value: Value = serde_json::from_slice(body)
                    .map_err(|error| MessageError::NotAnObject(error.to_string()))?;
                Self::from_value(value)
            }

            /// Decodes an already parsed JSON value.
            ///
            /// # Errors
            /// As [`Self::from_json`].
            pub fn from_value(value: Value) -> Result<Self, MessageError> {
                let Value::Object(fields) = value else {
                    return Err(MessageError::NotAnObject("not an object".into()));
                };
                let Some(type_name) = fields.get("type").and_then(Value::as_str) else {
                    return Err(MessageError::MissingType);
                };
                let type_name = type_name.to_owned();
                let invalid = |error: serde_json::Error| MessageError::InvalidFields {
                    type_name: type_name.clone(),
                    detail: error.to_string(),
                };
                match type_name.as_str() {
                    $( $tag => serde_json::from_value(Value::Object(fields))
                        .map(Self::$variant)
                        .map_err(invalid), )*
                    _ => Ok(Self::Unknown(UnknownMessage { type_name, fields })),
                }
            }

            /// Encodes as a JSON object with sorted keys, `type` included.
            pub fn to_value(&self) -> Value {
                let (tag, body) = match self {
                    $( Self::$variant(inner) => ($tag, serde_json::to_value(inner)), )*
                    Self::Unknown(unknown) => {
                        return Value::Object(unknown.fields.clone());
                    }
                };
                // Every field type serialises infallibly; an empty object is the fallback.
                let mut object = match body {
                    Ok(Value::Object(object)) => object,
                    _ => Map::new(),
                };
                object.insert("type".to_owned(), Value::String(tag.to_owned()));
                Value::Object(object)
            }

            /// Encodes as the compact JSON body of a frame.
            pub fn to_json(&self) -> Vec<u8> {
                serde_json::to_vec(&self.to_value()).unwrap_or_default()
            }

            /// Encodes as a whole frame appended to `out`.
            ///
            /// # Errors
            /// [`MessageError::TooLarge`] when the body exceeds the frame cap.
            pub fn encode_frame(&self, out: &mut Vec<u8>) -> Result<(), MessageError> {
                encode_frame(&self.to_json(), out)
            }
        }
    };
}

pub use messages::*;

/// The message structs, one per `type`.
mod messages;

message_enum! {
    /// Every request type of the v0.5 catalogue (client → registry).
    Request {
        /// `register`.
        Register(Register) = "register",
        /// `heartbeat`.
        Heartbeat(NodeSigned) = "heartbeat",
        /// `deregister`.
        Deregister(NodeSigned) = "deregister",
        /// `lookup`.
        Lookup(NodeOnly) = "lookup",
        /// `resolve`.
        Resolve(Resolve) = "resolve",
        /// `resolve_hostname`.
        ResolveHostname(ResolveHostname) = "resolve_hostname",
        /// `set_hostname`.
        SetHostname(SetHostname) = "set_hostname",
        /// `set_tags`.
        SetTags(SetTags) = "set_tags",
        /// `set_visibility`.
        SetVisibility(SetVisibility) = "set_visibility",
        /// `set_task_exec`.
        SetTaskExec(SetTaskExec) = "set_task_exec",
        /// `report_trust`.
        ReportTrust(TrustPair) = "report_trust",
        /// `revoke_trust`.
        RevokeTrust(TrustPair) = "revoke_trust",
        /// `request_handshake`.
        RequestHandshake(RequestHandshake) = "request_handshake",
        /// `poll_handshakes`.
        PollHandshakes(NodeSigned) = "poll_handshakes",
        /// `respond_handshake`.
        RespondHandshake(RespondHandshake) = "respond_handshake",
        /// `punch`.
        Punch(Punch) = "punch",
        /// `rotate_key`.
        RotateKey(RotateKey) = "rotate_key",
        /// `update_polo_score`.
        UpdatePoloScore(UpdatePoloScore) = "update_polo_score",
        /// `set_polo_score`.
        SetPoloScore(SetPoloScore) = "set_polo_score",
        /// `get_polo_score`.
        GetPoloScore(NodeOnly) = "get_polo_score",
        /// `list_networks`.
        ListNetworks(Empty) = "list_networks",
        /// `list_nodes`.
        ListNodes(ListNodes) = "list_nodes",
        /// `create_network`.
        CreateNetwork(CreateNetwork) = "create_network",
        /// `join_network`.
        JoinNetwork(JoinNetwork) = "join_network",
        /// `leave_network`.
        LeaveNetwork(LeaveNetwork) = "leave_network",
        /// `beacon_register`.
        BeaconRegister(BeaconRegister) = "beacon_register",
        /// `beacon_list`.
        BeaconList(Empty) = "beacon_list",
        /// `subscribe_replication`.
        SubscribeReplication(SubscribeReplication) = "subscribe_replication",
    }
}

message_enum! {
    /// Every response type of the v0.5 catalogue (registry → client).
    Response {
        /// `register_ok`.
        RegisterOk(RegisterOk) = "register_ok",
        /// `heartbeat_ok`.
        HeartbeatOk(HeartbeatOk) = "heartbeat_ok",
        /// `deregister_ok`.
        DeregisterOk(Empty) = "deregister_ok",
        /// `lookup_ok`.
        LookupOk(LookupOk) = "lookup_ok",
        /// `resolve_ok`.
        ResolveOk(ResolveOk) = "resolve_ok",
        /// `resolve_hostname_ok`.
        ResolveHostnameOk(ResolveHostnameOk) = "resolve_hostname_ok",
        /// `set_hostname_ok`.
        SetHostnameOk(SetHostnameOk) = "set_hostname_ok",
        /// `set_tags_ok`.
        SetTagsOk(SetTagsOk) = "set_tags_ok",
        /// `set_visibility_ok`.
        SetVisibilityOk(SetVisibilityOk) = "set_visibility_ok",
        /// `set_task_exec_ok`.
        SetTaskExecOk(SetTaskExecOk) = "set_task_exec_ok",
        /// `report_trust_ok`.
        ReportTrustOk(Empty) = "report_trust_ok",
        /// `revoke_trust_ok`.
        RevokeTrustOk(Empty) = "revoke_trust_ok",
        /// `request_handshake_ok`.
        RequestHandshakeOk(RequestHandshakeOk) = "request_handshake_ok",
        /// `poll_handshakes_ok`.
        PollHandshakesOk(PollHandshakesOk) = "poll_handshakes_ok",
        /// `respond_handshake_ok`.
        RespondHandshakeOk(RespondHandshakeOk) = "respond_handshake_ok",
        /// `punch_ok`.
        PunchOk(PunchOk) = "punch_ok",
        /// `rotate_key_ok`.
        RotateKeyOk(RotateKeyOk) = "rotate_key_ok",
        /// `update_polo_score_ok`.
        UpdatePoloScoreOk(PoloScoreOk) = "update_polo_score_ok",
        /// `set_polo_score_ok`.
        SetPoloScoreOk(PoloScoreOk) = "set_polo_score_ok",
        /// `get_polo_score_ok`.
        GetPoloScoreOk(PoloScoreOk) = "get_polo_score_ok",
        /// `list_networks_ok`.
        ListNetworksOk(ListNetworksOk) = "list_networks_ok",
        /// `list_nodes_ok`.
        ListNodesOk(ListNodesOk) = "list_nodes_ok",
        /// `create_network_ok`.
        CreateNetworkOk(CreateNetworkOk) = "create_network_ok",
        /// `join_network_ok`.
        JoinNetworkOk(JoinNetworkOk) = "join_network_ok",
        /// `leave_network_ok`.
        LeaveNetworkOk(LeaveNetworkOk) = "leave_network_ok",
        /// `beacon_register_ok`.
        BeaconRegisterOk(BeaconRegisterOk) = "beacon_register_ok",
        /// `beacon_list_ok`.
        BeaconListOk(BeaconListOk) = "beacon_list_ok",
        /// `error`.
        Error(ErrorReply) = "error",
        /// `replication_snapshot` (replication stream only).
        ReplicationSnapshot(ReplicationSnapshot) = "replication_snapshot",
        /// `heartbeat` pushed on a replication stream.
        ReplicationHeartbeat(Empty) = "heartbeat",
    }
}

impl Request {
    /// The v0.5 signature challenge for this request and the node that must sign it, or `None`
    /// for unsigned types.
    pub fn challenge(&self) -> Option<(u32, String)> {
        let (signer, text) = match self {
            Self::Heartbeat(r) => (r.node_id, format!("heartbeat:{}", r.node_id)),
            Self::Deregister(r) => (r.node_id, format!("deregister:{}", r.node_id)),
            Self::PollHandshakes(r) => (r.node_id, format!("poll_handshakes:{}", r.node_id)),
            Self::Resolve(r) => (
                r.requester_id,
                format!("resolve:{}:{}", r.requester_id, r.node_id),
            ),
            Self::ReportTrust(r) => (
                r.node_id,
                format!("report_trust:{}:{}", r.node_id, r.peer_id),
            ),
            Self::RevokeTrust(r) => (
                r.node_id,
                format!("revoke_trust:{}:{}", r.node_id, r.peer_id),
            ),
            Self::SetVisibility(r) => (r.node_id, format!("set_visibility:{}", r.node_id)),
            Self::SetTaskExec(r) => (r.node_id, format!("set_task_exec:{}", r.node_id)),
            Self::SetHostname(r) => (r.node_id, format!("set_hostname:{}", r.node_id)),
            Self::SetTags(r) => (r.node_id, format!("set_tags:{}", r.node_id)),
            Self::Punch(r) => (r.requester_id, format!("punch:{}:{}", r.node_a, r.node_b)),
            Self::RequestHandshake(r) => (
                r.from_node_id,
                format!("handshake:{}:{}", r.from_node_id, r.to_node_id),
            ),
            Self::RespondHandshake(r) => {
                (r.node_id, format!("respond:{}:{}", r.node_id, r.peer_id))
            }
            Self::RotateKey(r) => (r.node_id, format!("rotate:{}", r.node_id)),
            _ => return None,
        };
        Some((signer, text))
    }

    /// The v0.5 `signature` field, if this request type carries one.
    pub fn signature(&self) -> Option<&Base64> {
        match self {
            Self::Heartbeat(r) | Self::Deregister(r) | Self::PollHandshakes(r) => {
                r.signature.as_ref()
            }
            Self::Resolve(r) => r.signature.as_ref(),
            Self::ReportTrust(r) | Self::RevokeTrust(r) => r.signature.as_ref(),
            Self::SetVisibility(r) => r.signature.as_ref(),
            Self::SetTaskExec(r) => r.signature.as_ref(),
            Self::SetHostname(r) => r.signature.as_ref(),
            Self::SetTags(r) => r.signature.as_ref(),
            Self::Punch(r) => r.signature.as_ref(),
            Self::RequestHandshake(r) => r.signature.as_ref(),
            Self::RespondHandshake(r) => r.signature.as_ref(),
            Self::RotateKey(r) => r.signature.as_ref(),
            _ => None,
        }
    }

    /// The hardened `auth` object, if present.
    pub fn auth(&self) -> Option<&Auth> {
        self.auth_slot_ref().and_then(Option::as_ref)
    }

    /// Sets the v0.5 `signature` field; returns false for types that have none.
    pub fn set_signature(&mut self, signature: Option<Base64>) -> bool {
        let slot = match self {
            Self::Heartbeat(r) | Self::Deregister(r) | Self::PollHandshakes(r) => &mut r.signature,
            Self::Resolve(r) => &mut r.signature,
            Self::ReportTrust(r) | Self::RevokeTrust(r) => &mut r.signature,
            Self::SetVisibility(r) => &mut r.signature,
            Self::SetTaskExec(r) => &mut r.signature,
            Self::SetHostname(r) => &mut r.signature,
            Self::SetTags(r) => &mut r.signature,
            Self::Punch(r) => &mut r.signature,
            Self::RequestHandshake(r) => &mut r.signature,
            Self::RespondHandshake(r) => &mut r.signature,
            Self::RotateKey(r) => &mut r.signature,
            _ => return false,
        };
        *slot = signature;
        true
    }

    /// Sets the hardened `auth` object; returns false for types that cannot carry one.
    pub fn set_auth(&mut self, auth: Option<Auth>) -> bool {
        match self.auth_slot_mut() {
            Some(slot) => {
                *slot = auth;
                true
            }
            None => false,
        }
    }

    fn auth_slot_ref(&self) -> Option<&Option<Auth>> {
        match self {
            Self::Register(r) => Some(&r.auth),
            Self::Heartbeat(r) | Self::Deregister(r) | Self::PollHandshakes(r) => Some(&r.auth),
            Self::Resolve(r) => Some(&r.auth),
            Self::ResolveHostname(r) => Some(&r.auth),
            Self::ReportTrust(r) | Self::RevokeTrust(r) => Some(&r.auth),
            Self::SetVisibility(r) => Some(&r.auth),
            Self::SetTaskExec(r) => Some(&r.auth),
            Self::SetHostname(r) => Some(&r.auth),
            Self::SetTags(r) => Some(&r.auth),
            Self::Punch(r) => Some(&r.auth),
            Self::RequestHandshake(r) => Some(&r.auth),
            Self::RespondHandshake(r) => Some(&r.auth),
            Self::RotateKey(r) => Some(&r.auth),
            Self::UpdatePoloScore(r) => Some(&r.auth),
            Self::SetPoloScore(r) => Some(&r.auth),
            _ => None,
        }
    }

    fn auth_slot_mut(&mut self) -> Option<&mut Option<Auth>> {
        match self {
            Self::Register(r) => Some(&mut r.auth),
            Self::Heartbeat(r) | Self::Deregister(r) | Self::PollHandshakes(r) => Some(&mut r.auth),
            Self::Resolve(r) => Some(&mut r.auth),
            Self::ResolveHostname(r) => Some(&mut r.auth),
            Self::ReportTrust(r) | Self::RevokeTrust(r) => Some(&mut r.auth),
            Self::SetVisibility(r) => Some(&mut r.auth),
            Self::SetTaskExec(r) => Some(&mut r.auth),
            Self::SetHostname(r) => Some(&mut r.auth),
            Self::SetTags(r) => Some(&mut r.auth),
            Self::Punch(r) => Some(&mut r.auth),
            Self::RequestHandshake(r) => Some(&mut r.auth),
            Self::RespondHandshake(r) => Some(&mut r.auth),
            Self::RotateKey(r) => Some(&mut r.auth),
            Self::UpdatePoloScore(r) => Some(&mut r.auth),
            Self::SetPoloScore(r) => Some(&mut r.auth),
            _ => None,
        }
    }
}

impl Response {
    /// The `<request>_ok` type that answers a request type (`error` answers any).
    pub fn ok_type_for(request_type: &str) -> String {
        format!("{request_type}_ok")
    }

    /// True when this is the `error` reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Error(_))
    }
}
