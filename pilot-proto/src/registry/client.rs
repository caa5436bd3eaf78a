//! The registry client: signed requests out, correlated responses in, over one byte stream.
//!
//! Owns request signing (v0.5 challenge, hardened proof, or both), in-order correlation of
//! responses to requests (the protocol has no request ids), timeouts, and the v0.5 retry rule:
//! after a broken stream, each unanswered request is sent again once on the next stream.
//! Never opens the stream: the driver connects, calls [`RegistryClient::handle_connected`],
//! carries bytes both ways and reconnects when asked with [`ClientEvent::Reconnect`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use tracing::debug;

use super::ErrorCode;
use super::auth::{SignatureForm, sign_request};
use super::state::WallClock;
use crate::rng::Rng;
use crate::wire::registry::*;

/// Identifies a request for the life of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Client limits and behaviour.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How long a written request may wait for its response before the stream is declared
    /// broken.
    pub request_timeout: Duration,
    /// Requests queued or in flight at most.
    pub max_pending: usize,
    /// Signatures to attach until the server says it is hardened.
    pub signature_form: SignatureForm,
    /// Heartbeat period once registered, each success followed by `poll_handshakes` as in
    /// v0.5 (v0.5: 30 s; the registry reaps after 3 minutes). `None` leaves it to the node.
    pub heartbeat: Option<Duration>,
    /// Consecutive failed heartbeats that raise [`ClientEvent::ReRegister`] (v0.5: 3).
    pub reregister_after: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            max_pending: 64,
            signature_form: SignatureForm::Both,
            heartbeat: Some(Duration::from_secs(30)),
            reregister_after: 3,
        }
    }
}

/// ` (code)` after a refusal's text, when a hardened server gave a reason code.
fn reason_suffix(code: Option<ErrorCode>) -> String {
    code.map(|c| format!(" ({})", c.as_str()))
        .unwrap_or_default()
}

/// Why a request did not get a success response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The server answered `error`.
    #[error("registry refused the request: {text}{}", reason_suffix(*code))]
    Refused {
        /// The reason code, when the server is a hardened one.
        code: Option<ErrorCode>,
        /// The server's text (`request failed` for v0.5).
        text: String,
    },
    /// No response within the timeout.
    #[error("registry request timed out")]
    Timeout,
    /// The stream broke twice while the request was unanswered.
    #[error("registry connection lost")]
    Disconnected,
    /// Too many requests are pending.
    #[error("too many registry requests pending")]
    TooManyPending,
    /// The request could not be encoded (over 1 MiB).
    #[error("request could not be encoded: {0}")]
    Encode(#[from] MessageError),
    /// The server sent something that is not an answer to the request.
    #[error("unexpected registry response: {0}")]
    Protocol(String),
}

/// Something the driver or the node must learn.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A request finished.
    Response {
        /// Which request.
        id: RequestId,
        /// Its request `type`.
        request_type: String,
        /// The success response, or why there is none.
        result: Result<Response, RegistryError>,
    },
    /// Close the stream, open a new one, then call [`RegistryClient::handle_connected`].
    Reconnect,
    /// The server proved it is hardened; v0.5 signatures are no longer sent.
    ServerHardened,
    /// Heartbeats keep failing: register again with the same key, then re-apply visibility,
    /// hostname and trust reports, as v0.5 does.
    ReRegister,
}

#[derive(Debug)]
struct Pending {
    id: RequestId,
    request: Request,
    written: bool,
    attempts: u8,
    deadline: Option<Instant>,
}

/// The registry client state machine.
///
/// Drain order after any input: [`Self::poll_bytes`] until `None`, [`Self::poll_event`] until
/// `None`, then [`Self::poll_timeout`].
#[derive(Debug)]
pub struct RegistryClient {
    config: ClientConfig,
    key: Option<SigningKey>,
    node_id: Option<u32>,
    form: SignatureForm,
    clock: WallClock,
    rng: Rng,
    decoder: FrameDecoder,
    out: Vec<u8>,
    pending: VecDeque<Pending>,
    events: VecDeque<ClientEvent>,
    next_id: u64,
    connected: bool,
    next_heartbeat: Option<Instant>,
    heartbeat_in_flight: Option<RequestId>,
    heartbeat_failures: u32,
}

impl RegistryClient {
    /// Creates a disconnected client. `key` signs requests; `unix_now` anchors the wall
    /// clock used in hardened proofs.
    pub fn new(
        config: ClientConfig,
        now: Instant,
        unix_now: u64,
        key: Option<SigningKey>,
        rng: Rng,
    ) -> Self {
        Self {
            form: config.signature_form,
            config,
            key,
            node_id: None,
            clock: WallClock::new(now, unix_now),
            rng,
            decoder: FrameDecoder::default(),
            out: Vec::new(),
            pending: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
            connected: false,
            next_heartbeat: None,
            heartbeat_in_flight: None,
            heartbeat_failures: 0,
        }
    }

    /// The node id requests are signed as (learned from `register_ok`, or set here).
    pub fn set_node_id(&mut self, node_id: u32) {
        self.node_id = Some(node_id);
    }

    /// The node id, once known.
    pub fn node_id(&self) -> Option<u32> {
        self.node_id
    }

    /// The signature form currently used.
    pub fn signature_form(&self) -> SignatureForm {
        self.form
    }

    /// Queues a request; it is signed when written, so a retry carries a fresh proof.
    ///
    /// # Errors
    /// [`RegistryError::TooManyPending`] when the queue is full.
    pub fn send(&mut self, now: Instant, request: Request) -> Result<RequestId, RegistryError> {
        if self.pending.len() >= self.config.max_pending {
            return Err(RegistryError::TooManyPending);
        }
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.pending.push_back(Pending {
            id,
            request,
            written: false,
            attempts: 0,
            deadline: None,
        });
        if self.connected {
            self.write_unwritten(now);
        }
        Ok(id)
    }

    /// The driver's stream is open: write everything that waits.
    pub fn handle_connected(&mut self, now: Instant) {
        self.connected = true;
        self.decoder = FrameDecoder::default();
        self.write_unwritten(now);
    }

    /// The stream broke. Unanswered requests are retried once on the next stream.
    pub fn handle_disconnected(&mut self, _now: Instant) {
        self.connected = false;
        self.out.clear();
        self.decoder = FrameDecoder::default();
        let mut kept = VecDeque::new();
        while let Some(mut pending) = self.pending.pop_front() {
            if pending.written && pending.attempts >= 2 {
                self.finish(pending, Err(RegistryError::Disconnected));
                continue;
            }
            pending.written = false;
            pending.deadline = None;
            kept.push_back(pending);
        }
        self.pending = kept;
        if !self.pending.is_empty() {
            self.events.push_back(ClientEvent::Reconnect);
        }
    }

    /// Bytes arrived from the stream.
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if let Err(error) = self.decoder.push(bytes) {
            debug!(%error, "registry stream framing broke");
            self.reset_stream(now);
            return;
        }
        while let Some(body) = self.decoder.next_frame() {
            self.on_frame(now, &body);
        }
    }

    /// Sends a due heartbeat; fails the oldest request when its response is overdue, and
    /// then resets the stream.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.on_heartbeat_timer(now);
        let overdue = self
            .pending
            .front()
            .is_some_and(|p| p.written && p.deadline.is_some_and(|d| now >= d));
        if !overdue {
            return;
        }
        if let Some(pending) = self.pending.pop_front() {
            self.finish(pending, Err(RegistryError::Timeout));
        }
        // Responses are positional, so a late answer would be misattributed: start over.
        self.reset_stream(now);
    }

    /// Bytes to write to the stream, in a cleared `buf`; returns their length.
    #[must_use]
    pub fn poll_bytes(&mut self, buf: &mut Vec<u8>) -> Option<usize> {
        if self.out.is_empty() {
            return None;
        }
        buf.clear();
        std::mem::swap(buf, &mut self.out);
        Some(buf.len())
    }

    /// Next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When to call [`Self::handle_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.pending.front().and_then(|pending| pending.deadline);
        [deadline, self.next_heartbeat].into_iter().flatten().min()
    }

    /// Requests queued or awaiting answers.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    fn write_unwritten(&mut self, now: Instant) {
        let unix_now = self.clock.unix_at(now);
        let deadline = now + self.config.request_timeout;
        for index in 0..self.pending.len() {
            if self.pending[index].written {
                continue;
            }
            let mut request = self.pending[index].request.clone();
            self.sign(&mut request, unix_now);
            if let Err(error) = request.encode_frame(&mut self.out) {
                if let Some(pending) = self.pending.remove(index) {
                    self.finish(pending, Err(RegistryError::Encode(error)));
                }
                return self.write_unwritten(now);
            }
            let pending = &mut self.pending[index];
            pending.written = true;
            pending.attempts += 1;
            pending.deadline = Some(deadline);
        }
    }

    fn sign(&mut self, request: &mut Request, unix_now: u64) {
        let Some(key) = &self.key else { return };
        let ours = match request.challenge() {
            Some((signer, _)) => Some(signer) == self.node_id,
            None => matches!(
                request,
                Request::Register(_) | Request::ResolveHostname(_) | Request::UpdatePoloScore(_)
            ),
        };
        if ours {
            sign_request(request, key, self.form, unix_now, &mut self.rng);
        }
    }

    fn on_frame(&mut self, now: Instant, body: &[u8]) {
        let Some(pending) = self.pending.pop_front() else {
            debug!("registry sent an unsolicited frame");
            return self.reset_stream(now);
        };
        let request_type = pending.request.type_name().to_owned();
        let result = match Response::from_json(body) {
            Ok(Response::Error(reply)) => Err(RegistryError::Refused {
                code: reply.code.as_deref().and_then(ErrorCode::parse),
                text: reply.error,
            }),
            Ok(response) if response.type_name() == Response::ok_type_for(&request_type) => {
                self.learn(now, &response);
                Ok(response)
            }
            Ok(response) => Err(RegistryError::Protocol(format!(
                "{} in answer to {request_type}",
                response.type_name()
            ))),
            Err(error) => Err(RegistryError::Protocol(error.to_string())),
        };
        let broken = matches!(result, Err(RegistryError::Protocol(_)));
        self.finish(pending, result);
        if self.connected && !broken {
            self.write_unwritten(now);
        }
        if broken {
            self.reset_stream(now);
        }
    }

    /// Learns the node id and the server's hardening from `register_ok`.
    fn learn(&mut self, now: Instant, response: &Response) {
        let Response::RegisterOk(ok) = response else {
            return;
        };
        self.node_id = Some(ok.node_id);
        self.heartbeat_failures = 0;
        self.next_heartbeat = self.config.heartbeat.map(|period| now + period);
        if ok.hardened == Some(true) && self.form != SignatureForm::Hardened {
            self.form = SignatureForm::Hardened;
            self.events.push_back(ClientEvent::ServerHardened);
        }
    }

    fn finish(&mut self, pending: Pending, result: Result<Response, RegistryError>) {
        if self.heartbeat_in_flight == Some(pending.id) {
            self.on_heartbeat_result(result.is_ok());
        }
        let request_type = pending.request.type_name().to_owned();
        self.events.push_back(ClientEvent::Response {
            id: pending.id,
            request_type,
            result,
        });
    }

    fn on_heartbeat_timer(&mut self, now: Instant) {
        let (Some(due), Some(period)) = (self.next_heartbeat, self.config.heartbeat) else {
            return;
        };
        if now < due {
            return;
        }
        self.next_heartbeat = Some(now + period);
        if self.heartbeat_in_flight.is_none() {
            self.heartbeat_in_flight = self.heartbeat(now).ok();
        }
    }

    /// v0.5: a successful heartbeat is followed by `poll_handshakes`; failures in a row mean
    /// the registry has forgotten us.
    fn on_heartbeat_result(&mut self, ok: bool) {
        self.heartbeat_in_flight = None;
        if ok {
            self.heartbeat_failures = 0;
            let Some(node_id) = self.node_id else { return };
            let request = Request::PollHandshakes(NodeSigned {
                node_id,
                ..NodeSigned::default()
            });
            let id = RequestId(self.next_id);
            self.next_id += 1;
            let pending = Pending {
                id,
                request,
                written: false,
                attempts: 0,
                deadline: None,
            };
            self.pending.push_back(pending);
            return;
        }
        self.heartbeat_failures += 1;
        if self.heartbeat_failures >= self.config.reregister_after {
            self.heartbeat_failures = 0;
            self.events.push_back(ClientEvent::ReRegister);
        }
    }

    fn reset_stream(&mut self, now: Instant) {
        self.handle_disconnected(now);
        if !self
            .events
            .iter()
            .any(|event| matches!(event, ClientEvent::Reconnect))
        {
            self.events.push_back(ClientEvent::Reconnect);
        }
    }
}

/// Builders for the requests a node makes; ids are filled from the client's node id.
impl RegistryClient {
    /// `register` with the client's key.
    ///
    /// # Errors
    /// As [`Self::send`]; [`RegistryError::Protocol`] when the client has no key.
    pub fn register(
        &mut self,
        now: Instant,
        listen_addr: Option<String>,
        hostname: Option<String>,
        owner: Option<String>,
    ) -> Result<RequestId, RegistryError> {
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| RegistryError::Protocol("no identity key".into()))?;
        let public_key = Some(Base64(key.verifying_key().to_bytes().to_vec()));
        let request = Request::Register(Register {
            public_key,
            listen_addr,
            owner,
            hostname,
            auth: None,
        });
        self.send(now, request)
    }

    /// `heartbeat` for this node.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn heartbeat(&mut self, now: Instant) -> Result<RequestId, RegistryError> {
        let node_id = self.own_id()?;
        self.send(
            now,
            Request::Heartbeat(NodeSigned {
                node_id,
                ..NodeSigned::default()
            }),
        )
    }

    /// `poll_handshakes` for this node.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn poll_handshakes(&mut self, now: Instant) -> Result<RequestId, RegistryError> {
        let node_id = self.own_id()?;
        self.send(
            now,
            Request::PollHandshakes(NodeSigned {
                node_id,
                ..NodeSigned::default()
            }),
        )
    }

    /// `resolve` of `target`'s endpoint.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn resolve(&mut self, now: Instant, target: u32) -> Result<RequestId, RegistryError> {
        let requester_id = self.own_id()?;
        self.send(
            now,
            Request::Resolve(Resolve {
                node_id: target,
                requester_id,
                ..Resolve::default()
            }),
        )
    }

    /// `resolve_hostname`; hardened clients identify themselves so private peers can answer.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn resolve_hostname(
        &mut self,
        now: Instant,
        hostname: &str,
    ) -> Result<RequestId, RegistryError> {
        let requester_id = if self.form == SignatureForm::V05 {
            None
        } else {
            self.node_id
        };
        let request = ResolveHostname {
            hostname: hostname.into(),
            requester_id,
            auth: None,
        };
        self.send(now, Request::ResolveHostname(request))
    }

    /// `lookup` of a node's key and metadata.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn lookup(&mut self, now: Instant, node: u32) -> Result<RequestId, RegistryError> {
        self.send(now, Request::Lookup(NodeOnly { node_id: node }))
    }

    /// `request_handshake` to `peer` through the registry relay.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn request_handshake(
        &mut self,
        now: Instant,
        peer: u32,
        justification: &str,
    ) -> Result<RequestId, RegistryError> {
        let from_node_id = self.own_id()?;
        let request = RequestHandshake {
            from_node_id,
            to_node_id: peer,
            justification: justification.into(),
            ..RequestHandshake::default()
        };
        self.send(now, Request::RequestHandshake(request))
    }

    /// `respond_handshake` to `peer`'s relayed request.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn respond_handshake(
        &mut self,
        now: Instant,
        peer: u32,
        accept: bool,
    ) -> Result<RequestId, RegistryError> {
        let node_id = self.own_id()?;
        let request = RespondHandshake {
            node_id,
            peer_id: peer,
            accept,
            ..RespondHandshake::default()
        };
        self.send(now, Request::RespondHandshake(request))
    }

    /// `report_trust` of `peer`.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn report_trust(&mut self, now: Instant, peer: u32) -> Result<RequestId, RegistryError> {
        let node_id = self.own_id()?;
        self.send(
            now,
            Request::ReportTrust(TrustPair {
                node_id,
                peer_id: peer,
                ..TrustPair::default()
            }),
        )
    }

    /// `revoke_trust` of `peer`.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn revoke_trust(&mut self, now: Instant, peer: u32) -> Result<RequestId, RegistryError> {
        let node_id = self.own_id()?;
        self.send(
            now,
            Request::RevokeTrust(TrustPair {
                node_id,
                peer_id: peer,
                ..TrustPair::default()
            }),
        )
    }

    /// `set_visibility`.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn set_visibility(
        &mut self,
        now: Instant,
        public: bool,
    ) -> Result<RequestId, RegistryError> {
        let node_id = self.own_id()?;
        self.send(
            now,
            Request::SetVisibility(SetVisibility {
                node_id,
                public,
                ..SetVisibility::default()
            }),
        )
    }

    /// `set_hostname` ("" clears).
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn set_hostname(
        &mut self,
        now: Instant,
        hostname: &str,
    ) -> Result<RequestId, RegistryError> {
        let node_id = self.own_id()?;
        let request = SetHostname {
            node_id,
            hostname: hostname.into(),
            ..SetHostname::default()
        };
        self.send(now, Request::SetHostname(request))
    }

    /// `deregister`.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn deregister(&mut self, now: Instant) -> Result<RequestId, RegistryError> {
        let node_id = self.own_id()?;
        self.send(
            now,
            Request::Deregister(NodeSigned {
                node_id,
                ..NodeSigned::default()
            }),
        )
    }

    /// `set_tags` (replaces the whole list; empty clears).
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn set_tags(
        &mut self,
        now: Instant,
        tags: Vec<String>,
    ) -> Result<RequestId, RegistryError> {
        let node_id = self.own_id()?;
        let request = SetTags {
            node_id,
            tags,
            ..SetTags::default()
        };
        self.send(now, Request::SetTags(request))
    }

    /// `create_network` (needs the registry's admin token).
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn create_network(
        &mut self,
        now: Instant,
        name: &str,
        join_rule: Option<String>,
        tokens: NetworkTokens,
    ) -> Result<RequestId, RegistryError> {
        let request = CreateNetwork {
            node_id: self.own_id()?,
            name: name.into(),
            join_rule,
            token: tokens.join,
            admin_token: tokens.admin,
        };
        self.send(now, Request::CreateNetwork(request))
    }

    /// `join_network`.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn join_network(
        &mut self,
        now: Instant,
        network_id: u16,
        inviter_id: Option<u32>,
        tokens: NetworkTokens,
    ) -> Result<RequestId, RegistryError> {
        let request = JoinNetwork {
            node_id: self.own_id()?,
            network_id,
            token: tokens.join,
            inviter_id,
            admin_token: tokens.admin,
        };
        self.send(now, Request::JoinNetwork(request))
    }

    /// `leave_network`.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn leave_network(
        &mut self,
        now: Instant,
        network_id: u16,
        admin_token: Option<String>,
    ) -> Result<RequestId, RegistryError> {
        let request = LeaveNetwork {
            node_id: self.own_id()?,
            network_id,
            admin_token,
        };
        self.send(now, Request::LeaveNetwork(request))
    }

    /// `list_networks`.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub fn list_networks(&mut self, now: Instant) -> Result<RequestId, RegistryError> {
        self.send(now, Request::ListNetworks(Empty {}))
    }

    fn own_id(&self) -> Result<u32, RegistryError> {
        self.node_id
            .ok_or_else(|| RegistryError::Protocol("not registered yet".into()))
    }
}

/// The secrets a network request may carry: the network's join token and the registry's
/// admin token (v0.5 networks need the admin token for every change).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NetworkTokens {
    /// The network's join token (`token` join rule).
    pub join: Option<String>,
    /// The registry's admin token.
    pub admin: Option<String>,
}

impl core::fmt::Debug for NetworkTokens {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let shown = |t: &Option<String>| if t.is_some() { "<set>" } else { "<none>" };
        f.debug_struct("NetworkTokens")
            .field("join", &shown(&self.join))
            .field("admin", &shown(&self.admin))
            .finish()
    }
}
