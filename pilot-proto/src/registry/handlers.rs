//! One handler per registry request type, and the authentication policy they share.
//!
//! Owns the rules: who may do what, in compatibility and hardened mode
//! (`docs/design/control-plane.md#security`). Every handler returns either a response or an
//! [`ErrorCode`]; the connection layer in `server.rs` turns codes into `error` replies.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use super::auth::{AuthError, parse_key, verify_auth, verify_v05};
use super::server::RegistryServer;
use super::state::NodeRecord;
use super::{ErrorCode, SecurityMode, address_text, validate_hostname, validate_tags};
use crate::wire::registry::*;

type Outcome = Result<Response, ErrorCode>;

impl RegistryServer {
    pub(super) fn dispatch(
        &mut self,
        now: Instant,
        source: SocketAddr,
        request: Request,
    ) -> Outcome {
        match &request {
            Request::Register(r) => self.on_register(now, source, r.clone(), &request),
            Request::Heartbeat(r) => self.on_heartbeat(now, r.node_id, &request),
            Request::Deregister(r) => self.on_deregister(now, r.node_id, &request),
            Request::Lookup(r) => self.on_lookup(r.node_id),
            Request::Resolve(r) => self.on_resolve(now, r, &request),
            Request::ResolveHostname(r) => self.on_resolve_hostname(now, r, &request),
            Request::SetHostname(r) => self.on_set_hostname(now, r, &request),
            Request::SetTags(r) => self.on_set_tags(now, r, &request),
            Request::SetVisibility(r) => self.on_set_visibility(now, r, &request),
            Request::SetTaskExec(r) => self.on_set_task_exec(now, r, &request),
            Request::ReportTrust(r) => self.on_report_trust(now, r, &request),
            Request::RevokeTrust(r) => self.on_revoke_trust(now, r, &request),
            Request::RequestHandshake(r) => self.on_request_handshake(now, r, &request),
            Request::PollHandshakes(r) => self.on_poll_handshakes(now, r.node_id, &request),
            Request::RespondHandshake(r) => self.on_respond_handshake(now, r, &request),
            Request::Punch(r) => self.on_punch(now, r, &request),
            Request::RotateKey(r) => self.on_rotate_key(now, r, &request),
            Request::UpdatePoloScore(r) => {
                self.on_polo(now, r.node_id, r.delta.as_ref(), false, &request)
            }
            Request::SetPoloScore(r) => {
                self.on_polo(now, r.node_id, r.polo_score.as_ref(), true, &request)
            }
            Request::GetPoloScore(r) => self.polo_reply(r.node_id, Response::GetPoloScoreOk),
            Request::ListNetworks(_) => Ok(self.on_list_networks()),
            Request::ListNodes(r) => self.on_list_nodes(r.network_id),
            Request::CreateNetwork(r) => self.on_create_network(now, r),
            Request::JoinNetwork(r) => self.on_join_network(r),
            Request::LeaveNetwork(r) => self.on_leave_network(r),
            Request::BeaconRegister(r) => self.on_beacon_register(now, r),
            Request::BeaconList(_) => Ok(self.on_beacon_list(now)),
            _ => Err(ErrorCode::InvalidRequest),
        }
    }

    /// Checks that `signer` is registered and signed `request`.
    ///
    /// A valid hardened proof is always accepted. A v0.5 signature alone is accepted only in
    /// compatibility mode and only for nodes that never proved key possession.
    pub(super) fn authenticate(
        &mut self,
        now: Instant,
        signer: u32,
        request: &Request,
    ) -> Result<(), ErrorCode> {
        let record = self.tables.nodes.get(&signer).ok_or(ErrorCode::NotFound)?;
        let key = parse_key(&record.public_key).ok_or(ErrorCode::BadSignature)?;
        if request.auth().is_some() {
            let unix_now = self.clock.unix_at(now);
            return verify_auth(request, &key, signer, unix_now, &mut self.nonces)
                .map_err(auth_code);
        }
        if self.requires_proof(signer) {
            return Err(ErrorCode::ProofRequired);
        }
        verify_v05(request, &key).map_err(auth_code)
    }

    pub(super) fn requires_proof(&self, node: u32) -> bool {
        self.config.security == SecurityMode::Hardened || self.tables.hardened.contains(&node)
    }

    /// Whether `requester` may learn `target`'s endpoint.
    ///
    /// Public targets: anyone registered. Private targets: v0.5 accepts a trust pair in either
    /// direction or a shared non-zero network; a node that must prove its key (hardened) is
    /// resolvable only by peers it trusts itself.
    fn may_resolve(&self, requester: u32, target: u32) -> bool {
        let Some(record) = self.tables.nodes.get(&target) else {
            return false;
        };
        if record.public || requester == target {
            return true;
        }
        if self.requires_proof(target) {
            return self.tables.trust.contains(&(target, requester));
        }
        self.tables.has_pair(requester, target) || self.share_network(requester, target)
    }

    fn share_network(&self, a: u32, b: u32) -> bool {
        let (Some(a), Some(b)) = (self.tables.nodes.get(&a), self.tables.nodes.get(&b)) else {
            return false;
        };
        a.networks
            .iter()
            .any(|network| *network != 0 && b.networks.contains(network))
    }

    fn on_register(
        &mut self,
        now: Instant,
        source: SocketAddr,
        r: Register,
        request: &Request,
    ) -> Outcome {
        let key_bytes = r.public_key.as_ref().ok_or(ErrorCode::InvalidRequest)?;
        let key_array: [u8; 32] = key_bytes.to_array().ok_or(ErrorCode::InvalidRequest)?;
        let key = parse_key(&key_array).ok_or(ErrorCode::InvalidRequest)?;
        let known = self.tables.key_index.get(&key_array).copied();

        // Proof of possession: required in hardened mode and for ids that once proved it.
        let proven = match request.auth() {
            Some(_) => {
                let unix_now = self.clock.unix_at(now);
                let nonce_slot = known.unwrap_or(0);
                verify_auth(request, &key, nonce_slot, unix_now, &mut self.nonces)
                    .map_err(auth_code)?;
                true
            }
            None => false,
        };
        if !proven
            && (self.config.security == SecurityMode::Hardened
                || known.is_some_and(|id| self.tables.hardened.contains(&id)))
        {
            return Err(ErrorCode::ProofRequired);
        }
        if known.is_none() && !self.register_limiter.allow(now, &source.ip()) {
            return Err(ErrorCode::RateLimited);
        }

        let id = self.assign_id(known, &key_array, r.owner.as_deref())?;
        let endpoint = registered_endpoint(source, r.listen_addr.as_deref());
        self.apply_registration(now, id, key_array, endpoint, r.owner, proven);
        let (hostname, hostname_error) = self.register_hostname(id, r.hostname.as_deref());
        self.mark_dirty();
        debug!(node = id, proven, "registered");
        Ok(Response::RegisterOk(RegisterOk {
            node_id: id,
            network_id: 0,
            address: address_text(0, id),
            public_key: Base64(key_array.to_vec()),
            hostname,
            hostname_error,
            real_addr: proven.then(|| endpoint.to_string()),
            hardened: (proven || self.config.security == SecurityMode::Hardened).then_some(true),
        }))
    }

    /// Picks the id for a registration (v0.5 §1.5 cases 1-5, minus owner takeover of ids that
    /// proved their key, and without owner takeover at all in hardened mode).
    fn assign_id(
        &mut self,
        known: Option<u32>,
        key: &[u8; 32],
        owner: Option<&str>,
    ) -> Result<u32, ErrorCode> {
        if let Some(id) = known {
            return Ok(id);
        }
        let owner_id = owner.and_then(|owner| self.tables.owner_index.get(owner).copied());
        let takeover_allowed = self.config.security == SecurityMode::Compat
            && owner_id.is_some_and(|id| !self.tables.hardened.contains(&id));
        if let (Some(id), true) = (owner_id, takeover_allowed) {
            // v0.5 key recovery by owner string: re-key the owner's id.
            self.tables.key_index.retain(|_, indexed| *indexed != id);
            self.tables.key_index.insert(*key, id);
            if let Some(record) = self.tables.nodes.get_mut(&id) {
                record.public_key = *key;
            }
            return Ok(id);
        }
        if self.tables.nodes.len() >= self.config.max_nodes
            || self.tables.key_index.len() >= self.config.max_nodes.saturating_mul(4)
        {
            return Err(ErrorCode::TableFull);
        }
        let id = self.tables.next_node;
        self.tables.next_node = id.checked_add(1).ok_or(ErrorCode::TableFull)?;
        self.tables.key_index.insert(*key, id);
        Ok(id)
    }

    fn apply_registration(
        &mut self,
        now: Instant,
        id: u32,
        key: [u8; 32],
        endpoint: SocketAddr,
        owner: Option<String>,
        proven: bool,
    ) {
        if proven {
            self.tables.hardened.insert(id);
        }
        if let Some(owner) = owner.filter(|owner| !owner.is_empty()) {
            let free = !self.tables.owner_index.contains_key(&owner);
            if free || self.tables.owner_index.get(&owner) == Some(&id) {
                self.tables.owner_index.insert(owner.clone(), id);
                if let Some(record) = self.tables.nodes.get_mut(&id) {
                    record.owner.get_or_insert(owner);
                }
            }
        }
        match self.tables.nodes.get_mut(&id) {
            Some(record) => {
                record.real_addr = Some(endpoint);
                record.last_seen = now;
                record.public_key = key;
            }
            None => {
                let mut record = NodeRecord::fresh(id, key, now);
                record.real_addr = Some(endpoint);
                record.owner = self
                    .tables
                    .owner_index
                    .iter()
                    .find(|(_, v)| **v == id)
                    .map(|(k, _)| k.clone());
                self.tables.insert_node(record);
            }
        }
    }

    fn register_hostname(
        &mut self,
        id: u32,
        hostname: Option<&str>,
    ) -> (Option<String>, Option<String>) {
        let Some(hostname) = hostname.filter(|name| !name.is_empty()) else {
            return (None, None);
        };
        if let Err(reason) = validate_hostname(hostname) {
            return (None, Some(reason.to_owned()));
        }
        match self.claim_hostname(id, hostname) {
            Ok(()) => (Some(hostname.to_owned()), None),
            Err(_) => (None, None),
        }
    }

    fn claim_hostname(&mut self, id: u32, hostname: &str) -> Result<(), ErrorCode> {
        if self
            .tables
            .hostnames
            .get(hostname)
            .is_some_and(|owner| *owner != id)
        {
            return Err(ErrorCode::HostnameTaken);
        }
        let record = self.tables.nodes.get_mut(&id).ok_or(ErrorCode::NotFound)?;
        if let Some(old) = record.hostname.take() {
            self.tables.hostnames.remove(&old);
        }
        if !hostname.is_empty() {
            record.hostname = Some(hostname.to_owned());
            self.tables.hostnames.insert(hostname.to_owned(), id);
        }
        Ok(())
    }

    fn on_heartbeat(&mut self, now: Instant, node: u32, request: &Request) -> Outcome {
        self.authenticate(now, node, request)?;
        if let Some(record) = self.tables.nodes.get_mut(&node) {
            record.last_seen = now;
        }
        let time = i64::try_from(self.clock.unix_at(now)).unwrap_or(i64::MAX);
        Ok(Response::HeartbeatOk(HeartbeatOk { time }))
    }

    fn on_deregister(&mut self, now: Instant, node: u32, request: &Request) -> Outcome {
        if !self.tables.nodes.contains_key(&node) {
            return Ok(Response::DeregisterOk(Empty {}));
        }
        self.authenticate(now, node, request)?;
        self.tables.remove_node(node);
        self.mark_dirty();
        Ok(Response::DeregisterOk(Empty {}))
    }

    fn on_lookup(&self, node: u32) -> Outcome {
        let record = self.tables.nodes.get(&node).ok_or(ErrorCode::NotFound)?;
        Ok(Response::LookupOk(LookupOk {
            node_id: node,
            address: address_text(0, node),
            networks: record.networks.iter().copied().collect(),
            public_key: Base64(record.public_key.to_vec()),
            public: record.public,
            polo_score: record.polo_score,
            hostname: record.hostname.clone(),
            tags: (!record.tags.is_empty()).then(|| record.tags.clone()),
            task_exec: record.task_exec.then_some(true),
            real_addr: record
                .public
                .then(|| record.real_addr.map(|a| a.to_string()))
                .flatten(),
        }))
    }

    fn on_resolve(&mut self, now: Instant, r: &Resolve, request: &Request) -> Outcome {
        self.authenticate(now, r.requester_id, request)?;
        if !self.tables.nodes.contains_key(&r.node_id) {
            return Err(ErrorCode::NotFound);
        }
        if !self.may_resolve(r.requester_id, r.node_id) {
            return Err(ErrorCode::Denied);
        }
        let real_addr = self.endpoint_text(r.node_id)?;
        Ok(Response::ResolveOk(ResolveOk {
            node_id: r.node_id,
            real_addr,
        }))
    }

    fn on_resolve_hostname(
        &mut self,
        now: Instant,
        r: &ResolveHostname,
        request: &Request,
    ) -> Outcome {
        let id = *self
            .tables
            .hostnames
            .get(&r.hostname)
            .ok_or(ErrorCode::NotFound)?;
        let public = self
            .tables
            .nodes
            .get(&id)
            .is_some_and(|record| record.public);
        // v0.5 answers anyone; a node that must prove its key is found only by peers it trusts.
        if !public && self.requires_proof(id) {
            let requester = r.requester_id.ok_or(ErrorCode::Denied)?;
            if request.auth().is_none() {
                return Err(ErrorCode::Denied);
            }
            self.authenticate(now, requester, request)?;
            if !self.may_resolve(requester, id) {
                return Err(ErrorCode::Denied);
            }
        }
        Ok(Response::ResolveHostnameOk(ResolveHostnameOk {
            node_id: id,
            address: address_text(0, id),
            public,
            hostname: r.hostname.clone(),
        }))
    }

    fn on_set_hostname(&mut self, now: Instant, r: &SetHostname, request: &Request) -> Outcome {
        self.authenticate(now, r.node_id, request)?;
        if !r.hostname.is_empty() {
            validate_hostname(&r.hostname).map_err(|_| ErrorCode::InvalidHostname)?;
        }
        self.claim_hostname(r.node_id, &r.hostname)?;
        self.mark_dirty();
        Ok(Response::SetHostnameOk(SetHostnameOk {
            node_id: r.node_id,
            hostname: r.hostname.clone(),
        }))
    }

    fn on_set_tags(&mut self, now: Instant, r: &SetTags, request: &Request) -> Outcome {
        self.authenticate(now, r.node_id, request)?;
        let tags = validate_tags(&r.tags).map_err(|_| ErrorCode::InvalidTags)?;
        let record = self
            .tables
            .nodes
            .get_mut(&r.node_id)
            .ok_or(ErrorCode::NotFound)?;
        record.tags = tags.clone();
        self.mark_dirty();
        let tags = (!tags.is_empty()).then_some(tags);
        Ok(Response::SetTagsOk(SetTagsOk {
            node_id: r.node_id,
            tags,
        }))
    }

    fn on_set_visibility(&mut self, now: Instant, r: &SetVisibility, request: &Request) -> Outcome {
        self.authenticate(now, r.node_id, request)?;
        let record = self
            .tables
            .nodes
            .get_mut(&r.node_id)
            .ok_or(ErrorCode::NotFound)?;
        record.public = r.public;
        self.mark_dirty();
        let visibility = if r.public { "public" } else { "private" };
        Ok(Response::SetVisibilityOk(SetVisibilityOk {
            node_id: r.node_id,
            visibility: visibility.into(),
        }))
    }

    fn on_set_task_exec(&mut self, now: Instant, r: &SetTaskExec, request: &Request) -> Outcome {
        self.authenticate(now, r.node_id, request)?;
        let record = self
            .tables
            .nodes
            .get_mut(&r.node_id)
            .ok_or(ErrorCode::NotFound)?;
        record.task_exec = r.enabled;
        self.mark_dirty();
        Ok(Response::SetTaskExecOk(SetTaskExecOk {
            node_id: r.node_id,
            task_exec: r.enabled,
        }))
    }

    fn on_report_trust(&mut self, now: Instant, r: &TrustPair, request: &Request) -> Outcome {
        self.authenticate(now, r.node_id, request)?;
        if !self.tables.nodes.contains_key(&r.peer_id) || r.peer_id == r.node_id {
            return Err(ErrorCode::NotFound);
        }
        self.add_trust_edge(r.node_id, r.peer_id)?;
        Ok(Response::ReportTrustOk(Empty {}))
    }

    fn on_revoke_trust(&mut self, now: Instant, r: &TrustPair, request: &Request) -> Outcome {
        self.authenticate(now, r.node_id, request)?;
        if !self.tables.has_pair(r.node_id, r.peer_id) {
            return Err(ErrorCode::NotFound);
        }
        self.tables.trust.remove(&(r.node_id, r.peer_id));
        self.tables.trust.remove(&(r.peer_id, r.node_id));
        self.mark_dirty();
        Ok(Response::RevokeTrustOk(Empty {}))
    }

    pub(super) fn add_trust_edge(&mut self, truster: u32, trusted: u32) -> Result<(), ErrorCode> {
        if self.tables.trust.len() >= self.config.max_trust_edges {
            return Err(ErrorCode::TableFull);
        }
        self.tables.trust.insert((truster, trusted));
        self.mark_dirty();
        Ok(())
    }

    fn on_punch(&mut self, now: Instant, r: &Punch, request: &Request) -> Outcome {
        self.authenticate(now, r.requester_id, request)?;
        if r.requester_id != r.node_a && r.requester_id != r.node_b {
            return Err(ErrorCode::Denied);
        }
        let other = if r.requester_id == r.node_a {
            r.node_b
        } else {
            r.node_a
        };
        // v0.5 checks nothing here; a node that must prove its key gets the resolve rule.
        if self.requires_proof(other) && !self.may_resolve(r.requester_id, other) {
            return Err(ErrorCode::Denied);
        }
        Ok(Response::PunchOk(PunchOk {
            node_a: r.node_a,
            node_a_addr: self.endpoint_text(r.node_a)?,
            node_b: r.node_b,
            node_b_addr: self.endpoint_text(r.node_b)?,
        }))
    }

    fn on_rotate_key(&mut self, now: Instant, r: &RotateKey, request: &Request) -> Outcome {
        self.authenticate(now, r.node_id, request)?;
        let new_key: [u8; 32] = r
            .new_public_key
            .to_array()
            .ok_or(ErrorCode::InvalidRequest)?;
        parse_key(&new_key).ok_or(ErrorCode::InvalidRequest)?;
        if self
            .tables
            .key_index
            .get(&new_key)
            .is_some_and(|id| *id != r.node_id)
        {
            return Err(ErrorCode::Denied);
        }
        let record = self
            .tables
            .nodes
            .get_mut(&r.node_id)
            .ok_or(ErrorCode::NotFound)?;
        let old = std::mem::replace(&mut record.public_key, new_key);
        self.tables.key_index.remove(&old);
        self.tables.key_index.insert(new_key, r.node_id);
        self.mark_dirty();
        Ok(Response::RotateKeyOk(RotateKeyOk {
            node_id: r.node_id,
            address: address_text(0, r.node_id),
            public_key: Base64(new_key.to_vec()),
        }))
    }

    fn on_polo(
        &mut self,
        now: Instant,
        node: u32,
        value: Option<&serde_json::Number>,
        absolute: bool,
        request: &Request,
    ) -> Outcome {
        let value = value
            .and_then(serde_json::Number::as_f64)
            .ok_or(ErrorCode::InvalidRequest)?;
        if !self.tables.nodes.contains_key(&node) {
            return Err(ErrorCode::NotFound);
        }
        // v0.5 lets anyone write scores. Protected nodes: only their own proof may change
        // them, and never to an absolute value.
        if self.requires_proof(node) {
            if absolute || request.auth().is_none() {
                return Err(ErrorCode::Denied);
            }
            self.authenticate(now, node, request)?;
        }
        let record = self
            .tables
            .nodes
            .get_mut(&node)
            .ok_or(ErrorCode::NotFound)?;
        // Float to int casts saturate; only the integer part counts, as in v0.5.
        let value = value.trunc() as i64;
        record.polo_score = if absolute {
            value
        } else {
            record.polo_score.saturating_add(value)
        };
        record.last_seen = now;
        self.mark_dirty();
        let wrap = if absolute {
            Response::SetPoloScoreOk
        } else {
            Response::UpdatePoloScoreOk
        };
        self.polo_reply(node, wrap)
    }

    fn polo_reply(&self, node: u32, wrap: fn(PoloScoreOk) -> Response) -> Outcome {
        let record = self.tables.nodes.get(&node).ok_or(ErrorCode::NotFound)?;
        Ok(wrap(PoloScoreOk {
            node_id: node,
            address: address_text(0, node),
            polo_score: record.polo_score,
        }))
    }

    pub(super) fn endpoint_text(&self, node: u32) -> Result<String, ErrorCode> {
        let record = self.tables.nodes.get(&node).ok_or(ErrorCode::NotFound)?;
        record
            .real_addr
            .map(|addr| addr.to_string())
            .ok_or(ErrorCode::NotFound)
    }
}

/// The stored endpoint: the connection's source IP with the port the client offered (v0.5
/// §1.5); the whole source address when no port was offered.
fn registered_endpoint(source: SocketAddr, listen_addr: Option<&str>) -> SocketAddr {
    let port = listen_addr
        .and_then(|text| text.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .filter(|port| *port != 0);
    match port {
        Some(port) => SocketAddr::new(source.ip(), port),
        None => source,
    }
}

fn auth_code(error: AuthError) -> ErrorCode {
    match error {
        AuthError::Missing => ErrorCode::ProofRequired,
        AuthError::Stale => ErrorCode::Stale,
        AuthError::Replayed => ErrorCode::Replayed,
        _ => ErrorCode::BadSignature,
    }
}
