//! The registry's trust-handshake relay, networks and beacon directory.
//!
//! Owns the handlers for `request_handshake`, `poll_handshakes`, `respond_handshake` (bounded
//! inboxes, v0.5 §1.9), the network messages (v0.5 refuses them; served only when enabled) and
//! `beacon_register`/`beacon_list`.

use std::collections::BTreeSet;
use std::time::Instant;

use subtle::ConstantTimeEq;

use super::server::RegistryServer;
use super::state::Network;
use super::{ErrorCode, address_text, validate_hostname};
use crate::wire::registry::*;

type Outcome = Result<Response, ErrorCode>;

/// Outstanding relayed requests remembered for `respond_handshake`, at most.
const MAX_ASKED: usize = 1_000_000;

impl RegistryServer {
    pub(super) fn on_request_handshake(
        &mut self,
        now: Instant,
        r: &RequestHandshake,
        request: &Request,
    ) -> Outcome {
        self.authenticate(now, r.from_node_id, request)?;
        let target_known = self.tables.nodes.contains_key(&r.to_node_id)
            || self.tables.key_index.values().any(|id| *id == r.to_node_id);
        if !target_known || r.to_node_id == r.from_node_id {
            return Err(ErrorCode::NotFound);
        }
        if r.justification.len() > self.config.max_justification {
            return Err(ErrorCode::InvalidRequest);
        }
        let max_inbox = self.config.max_inbox;
        let inbox = self.tables.inbox.entry(r.to_node_id).or_default();
        if inbox.len() >= max_inbox
            || inbox
                .iter()
                .any(|entry| entry.from_node_id == r.from_node_id)
        {
            return Err(ErrorCode::TableFull);
        }
        let timestamp = i64::try_from(self.clock.unix_at(now)).unwrap_or(i64::MAX);
        inbox.push(HandshakeRequestEntry {
            from_node_id: r.from_node_id,
            justification: r.justification.clone(),
            timestamp,
        });
        if self.asked.len() < MAX_ASKED {
            self.asked.insert((r.from_node_id, r.to_node_id));
        }
        self.mark_dirty();
        Ok(Response::RequestHandshakeOk(RequestHandshakeOk {
            status: "delivered".into(),
        }))
    }

    pub(super) fn on_poll_handshakes(
        &mut self,
        now: Instant,
        node: u32,
        request: &Request,
    ) -> Outcome {
        self.authenticate(now, node, request)?;
        let requests = self.tables.inbox.remove(&node).unwrap_or_default();
        let responses: Vec<_> = self
            .tables
            .responses
            .remove(&node)
            .map(|queue| queue.into_iter().collect())
            .unwrap_or_default();
        if !requests.is_empty() || !responses.is_empty() {
            self.mark_dirty();
        }
        Ok(Response::PollHandshakesOk(PollHandshakesOk {
            requests,
            responses,
        }))
    }

    pub(super) fn on_respond_handshake(
        &mut self,
        now: Instant,
        r: &RespondHandshake,
        request: &Request,
    ) -> Outcome {
        self.authenticate(now, r.node_id, request)?;
        let was_asked = self.asked.remove(&(r.peer_id, r.node_id));
        if r.accept {
            self.add_trust_edge(r.node_id, r.peer_id)?;
            // The requester consented by asking, so the pair is mutual.
            if was_asked {
                self.add_trust_edge(r.peer_id, r.node_id)?;
            }
        }

        // v0.5 queues a verdict even when nothing was asked; a protected requester only
        // receives verdicts on requests it made.
        if was_asked || !self.requires_proof(r.peer_id) {
            let timestamp = i64::try_from(self.clock.unix_at(now)).unwrap_or(i64::MAX);
            let max = self.config.max_responses;
            let queue = self.tables.responses.entry(r.peer_id).or_default();
            if queue.len() >= max {
                queue.pop_front();
            }
            queue.push_back(HandshakeResponseEntry {
                from_node_id: r.node_id,
                accept: r.accept,
                timestamp,
            });
            self.mark_dirty();
        }
        Ok(Response::RespondHandshakeOk(RespondHandshakeOk {
            accept: r.accept,
            peer_id: r.peer_id,
        }))
    }

    pub(super) fn on_list_networks(&self) -> Response {
        let networks = self
            .tables
            .networks
            .values()
            .map(|network| NetworkInfo {
                id: network.id,
                name: network.name.clone(),
                members: u32::try_from(network.members.len()).unwrap_or(u32::MAX),
                join_rule: network.join_rule.clone(),
            })
            .collect();
        Response::ListNetworksOk(ListNetworksOk { networks })
    }

    pub(super) fn on_list_nodes(&self, network_id: u16) -> Outcome {
        // Network 0 is refused to prevent enumeration, as in v0.5.
        if network_id == 0 {
            return Err(ErrorCode::Denied);
        }
        let network = self
            .tables
            .networks
            .get(&network_id)
            .ok_or(ErrorCode::NotFound)?;
        let nodes = network
            .members
            .iter()
            .filter_map(|id| self.tables.nodes.get(id))
            .map(|record| NodeEntry {
                node_id: record.id,
                address: address_text(network_id, record.id),
                hostname: record.hostname.clone(),
                task_exec: record.task_exec.then_some(true),
                real_addr: record
                    .public
                    .then(|| record.real_addr.map(|a| a.to_string()))
                    .flatten(),
            })
            .collect();
        Ok(Response::ListNodesOk(ListNodesOk { nodes }))
    }

    pub(super) fn on_create_network(&mut self, now: Instant, r: &CreateNetwork) -> Outcome {
        self.check_admin(r.admin_token.as_deref())?;
        validate_hostname(&r.name).map_err(|_| ErrorCode::InvalidRequest)?;
        if r.name == "backbone" || self.tables.networks.values().any(|n| n.name == r.name) {
            return Err(ErrorCode::Denied);
        }
        let join_rule = r.join_rule.clone().unwrap_or_else(|| "open".into());
        if !matches!(join_rule.as_str(), "open" | "token" | "invite") {
            return Err(ErrorCode::InvalidRequest);
        }
        let id = self.tables.next_net;
        self.tables.next_net = id.checked_add(1).ok_or(ErrorCode::TableFull)?;
        let network = Network {
            id,
            name: r.name.clone(),
            join_rule,
            token: r.token.clone(),
            members: BTreeSet::from([r.node_id]),
            created: self.clock.unix_at(now),
        };
        self.tables.networks.insert(id, network);
        if let Some(record) = self.tables.nodes.get_mut(&r.node_id) {
            record.networks.insert(id);
        }
        self.mark_dirty();
        Ok(Response::CreateNetworkOk(CreateNetworkOk {
            network_id: id,
            name: r.name.clone(),
        }))
    }

    pub(super) fn on_join_network(&mut self, r: &JoinNetwork) -> Outcome {
        self.check_admin(r.admin_token.as_deref())?;
        let network = self
            .tables
            .networks
            .get(&r.network_id)
            .ok_or(ErrorCode::NotFound)?;
        let allowed = match network.join_rule.as_str() {
            "open" => true,
            "token" => tokens_equal(network.token.as_deref(), r.token.as_deref()),
            "invite" => r
                .inviter_id
                .is_some_and(|inviter| network.members.contains(&inviter)),
            _ => false,
        };
        if !allowed {
            return Err(ErrorCode::Denied);
        }
        let record = self
            .tables
            .nodes
            .get_mut(&r.node_id)
            .ok_or(ErrorCode::NotFound)?;
        record.networks.insert(r.network_id);
        if let Some(network) = self.tables.networks.get_mut(&r.network_id) {
            network.members.insert(r.node_id);
        }
        self.mark_dirty();
        let address = address_text(r.network_id, r.node_id);
        Ok(Response::JoinNetworkOk(JoinNetworkOk {
            network_id: r.network_id,
            address,
        }))
    }

    pub(super) fn on_leave_network(&mut self, r: &LeaveNetwork) -> Outcome {
        self.check_admin(r.admin_token.as_deref())?;
        if r.network_id == 0 {
            return Err(ErrorCode::Denied);
        }
        let network = self
            .tables
            .networks
            .get_mut(&r.network_id)
            .ok_or(ErrorCode::NotFound)?;
        network.members.remove(&r.node_id);
        if let Some(record) = self.tables.nodes.get_mut(&r.node_id) {
            record.networks.remove(&r.network_id);
        }
        self.mark_dirty();
        Ok(Response::LeaveNetworkOk(LeaveNetworkOk {
            network_id: r.network_id,
        }))
    }

    /// Networks need the feature switched on and the admin token (compared in constant time).
    fn check_admin(&self, offered: Option<&str>) -> Result<(), ErrorCode> {
        if !self.config.networks_enabled {
            return Err(ErrorCode::Unsupported);
        }
        match &self.config.admin_token {
            Some(token) if tokens_equal(Some(token), offered) => Ok(()),
            _ => Err(ErrorCode::Denied),
        }
    }

    pub(super) fn on_beacon_register(&mut self, now: Instant, r: &BeaconRegister) -> Outcome {
        if r.beacon_id == 0 || r.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(ErrorCode::InvalidRequest);
        }
        let known = self.tables.beacons.contains_key(&r.beacon_id);
        if !known && self.tables.beacons.len() >= self.config.max_beacons {
            return Err(ErrorCode::TableFull);
        }
        self.tables
            .beacons
            .insert(r.beacon_id, (r.addr.clone(), now));
        Ok(Response::BeaconRegisterOk(BeaconRegisterOk {
            beacon_id: r.beacon_id,
        }))
    }

    pub(super) fn on_beacon_list(&self, now: Instant) -> Response {
        let expiry = self.config.beacon_expiry;
        let beacons = self
            .tables
            .beacons
            .iter()
            .filter(|(_, (_, seen))| now.saturating_duration_since(*seen) <= expiry)
            .map(|(id, (addr, _))| BeaconEntry {
                id: *id,
                addr: addr.clone(),
            })
            .collect();
        Response::BeaconListOk(BeaconListOk { beacons })
    }
}

fn tokens_equal(expected: Option<&str>, offered: Option<&str>) -> bool {
    match (expected, offered) {
        (Some(expected), Some(offered)) if !expected.is_empty() => {
            expected.as_bytes().ct_eq(offered.as_bytes()).into()
        }
        _ => false,
    }
}
