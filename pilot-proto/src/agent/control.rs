//! Control commands (resolve, hostname, visibility, trust handshakes) answered through events,
//! the snapshots `peers()` and `info()`, and carrying out the trust store's actions.

use std::time::Instant;

use super::registration::Pending;
use super::{Agent, AgentError, AgentEvent, AgentInfo, ControlId, PeerInfo};
use crate::registry::{RegistryError, RequestId};
use crate::trust::TrustAction;
use crate::wire::addr::Addr;

impl Agent {
    /// Resolves a hostname at the registry; answered by [`AgentEvent::ControlResult`].
    ///
    /// # Errors
    /// The registry client's refusal (too many pending requests).
    pub fn resolve_hostname(&mut self, now: Instant, name: &str) -> Result<ControlId, AgentError> {
        let now = self.clamp(now);
        let id = self.registry.resolve_hostname(now, name)?;
        self.control(now, id)
    }

    /// Resolves a node's endpoint at the registry (refused for private nodes that do not trust
    /// us); answered by [`AgentEvent::ControlResult`].
    ///
    /// # Errors
    /// As [`Self::resolve_hostname`], or not registered yet.
    pub fn resolve(&mut self, now: Instant, peer: Addr) -> Result<ControlId, AgentError> {
        let now = self.clamp(now);
        let id = self.registry.resolve(now, peer.node)?;
        self.control(now, id)
    }

    /// Looks a node up at the registry (key, hostname, visibility).
    ///
    /// # Errors
    /// As [`Self::resolve_hostname`].
    pub fn lookup(&mut self, now: Instant, peer: Addr) -> Result<ControlId, AgentError> {
        let now = self.clamp(now);
        let id = self.registry.lookup(now, peer.node)?;
        self.control(now, id)
    }

    /// Sets (or with "" clears) our hostname.
    ///
    /// # Errors
    /// As [`Self::resolve_hostname`], or not registered yet.
    pub fn set_hostname(&mut self, now: Instant, name: &str) -> Result<ControlId, AgentError> {
        let now = self.clamp(now);
        let id = self.registry.set_hostname(now, name)?;
        self.config.hostname = (!name.is_empty()).then(|| name.to_owned());
        self.control(now, id)
    }

    /// Makes the node public or private (at the registry, and for admission).
    ///
    /// # Errors
    /// As [`Self::set_hostname`].
    pub fn set_visibility(&mut self, now: Instant, public: bool) -> Result<ControlId, AgentError> {
        let now = self.clamp(now);
        let id = self.registry.set_visibility(now, public)?;
        self.config.public = public;
        self.trust.set_private(!public);
        self.control(now, id)
    }

    /// Asks `peer` for trust.
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`].
    pub fn handshake(
        &mut self,
        now: Instant,
        peer: Addr,
        justification: &str,
    ) -> Result<(), AgentError> {
        let now = self.clamp(now);
        self.reg.registered.ok_or(AgentError::NotRegistered)?;
        let unix_now = self.unix_now(now);
        self.trust.request(unix_now, peer.node, justification);
        self.process(now);
        Ok(())
    }

    /// Approves a pending trust request.
    ///
    /// # Errors
    /// The trust store's refusal (nothing pending).
    pub fn approve(&mut self, now: Instant, peer: Addr) -> Result<(), AgentError> {
        let now = self.clamp(now);
        let unix_now = self.unix_now(now);
        self.trust.approve(unix_now, peer.node)?;
        self.process(now);
        Ok(())
    }

    /// Rejects a pending trust request.
    ///
    /// # Errors
    /// As [`Self::approve`].
    pub fn reject(&mut self, now: Instant, peer: Addr, reason: &str) -> Result<(), AgentError> {
        let now = self.clamp(now);
        let unix_now = self.unix_now(now);
        self.trust.reject(unix_now, peer.node, reason)?;
        self.process(now);
        Ok(())
    }

    /// Revokes trust in `peer` (and drops its tunnel).
    ///
    /// # Errors
    /// As [`Self::approve`] (not trusted).
    pub fn revoke(&mut self, now: Instant, peer: Addr) -> Result<(), AgentError> {
        let now = self.clamp(now);
        let unix_now = self.unix_now(now);
        self.trust.revoke(unix_now, peer.node)?;
        self.process(now);
        Ok(())
    }

    /// Replaces the trust store with one recovered from the bytes of an earlier
    /// [`AgentEvent::PersistTrust`]. Call at start-up, before peers connect.
    ///
    /// # Errors
    /// [`AgentError::Trust`] when the bytes are not a trust store.
    pub fn restore_trust(&mut self, bytes: &[u8]) -> Result<(), AgentError> {
        let node_id = self.reg.registered.map_or(0, |(a, _)| a.node);
        let (key, mode) = (self.key.clone(), self.config.trust_mode);
        let mut store =
            crate::trust::TrustStore::recover(node_id, key, mode, self.rng.fork(), bytes)?;
        store.set_private(!self.config.public);
        self.trust = store;
        Ok(())
    }

    /// Every tracked peer, by node id.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let network = self.reg.registered.map_or(0, |(a, _)| a.network);
        self.peers
            .iter()
            .map(|(&id, entry)| {
                let peer = Addr::new(network, id);
                PeerInfo {
                    peer,
                    route: entry.route,
                    keyed: self.node.as_ref().is_some_and(|n| n.is_peer_keyed(peer)),
                    trusted: self.trust.is_trusted(id),
                    time_to_route: entry.first_route_after,
                    candidates: entry.path.candidates().to_vec(),
                }
            })
            .collect()
    }

    /// The route to one peer.
    pub fn route(&self, peer: Addr) -> super::PeerRoute {
        self.peers
            .get(&peer.node)
            .map_or(super::PeerRoute::None, |e| e.route)
    }

    /// Our own state.
    pub fn info(&self) -> AgentInfo {
        AgentInfo {
            address: self.reg.registered.map(|(a, _)| a),
            registered_endpoint: self.reg.registered.map(|(_, e)| e),
            observed_endpoint: self.beacon.as_ref().and_then(|b| b.observed()),
            public: self.config.public,
            peers: self.peers.len(),
            trusted: self.trust.trusted().count(),
        }
    }

    pub(super) fn control(&mut self, now: Instant, id: RequestId) -> Result<ControlId, AgentError> {
        self.requests.insert(id, Pending::Control);
        self.process(now);
        Ok(id)
    }

    pub(super) fn drain_trust(&mut self, now: Instant) -> bool {
        let mut moved = false;
        while let Some(action) = self.trust.poll_action() {
            moved = true;
            self.on_trust_action(now, action);
        }
        moved
    }

    fn on_trust_action(&mut self, now: Instant, action: TrustAction) {
        let queued: Result<Option<RequestId>, RegistryError> = match action {
            // Limitation: only over a tunnel that is keyed already; no dial just for this.
            TrustAction::SendDirect { peer, message } => {
                self.send_trust_direct(now, peer, message);
                Ok(None)
            }
            TrustAction::RelayRequest {
                peer,
                justification,
            } => self
                .registry
                .request_handshake(now, peer, &justification)
                .map(Some),
            TrustAction::RelayResponse { peer, accept } => {
                self.registry.respond_handshake(now, peer, accept).map(Some)
            }
            TrustAction::ReportTrust { peer } => self.registry.report_trust(now, peer).map(Some),
            TrustAction::RevokeTrust { peer } => self.registry.revoke_trust(now, peer).map(Some),
            TrustAction::DropTunnel { peer } => {
                // A revoke on its way keeps the tunnel; its stream's end drops it.
                if !self.revoke_in_flight(peer) {
                    self.drop_peer(now, peer);
                }
                Ok(None)
            }
            TrustAction::Persist => {
                self.events
                    .push_back(AgentEvent::PersistTrust(self.trust.encode()));
                Ok(None)
            }
            TrustAction::Notify(event) => {
                self.events.push_back(AgentEvent::Trust(event));
                Ok(None)
            }
        };
        if let Ok(Some(id)) = queued {
            self.requests.insert(id, Pending::Internal);
        }
    }

    pub(super) fn drop_peer(&mut self, now: Instant, peer: u32) {
        self.peers.remove(&peer);
        if let Some(node) = &mut self.node {
            let addr = Addr::new(node.address().network, peer);
            node.remove_peer(now, addr);
        }
    }
}

#[cfg(test)]
mod tests {
    // The test takes one real instant as the epoch of its virtual clock.
    #![allow(clippy::disallowed_methods)]

    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::agent::AgentConfig;

    fn agent() -> Agent {
        let key = SigningKey::from_bytes(&[7; 32]);
        Agent::new(
            AgentConfig::default(),
            key,
            [9; 32],
            Instant::now(),
            1_796_317_551,
        )
    }

    #[test]
    fn a_new_agent_asks_for_the_registry_and_refuses_commands_until_registered() {
        let mut agent = agent();
        assert_eq!(agent.poll_event(), Some(AgentEvent::ConnectRegistry));
        let peer = Addr::new(0, 5);
        let now = Instant::now();
        assert_eq!(agent.listen(80), Err(AgentError::NotRegistered));
        assert!(matches!(
            agent.connect(now, crate::wire::addr::AddrPort::new(peer, 80)),
            Err(AgentError::NotRegistered)
        ));
        assert_eq!(agent.info().address, None);
        assert!(agent.peers().is_empty());
    }

    #[test]
    fn trust_is_restored_from_persisted_bytes_and_corrupt_bytes_are_refused() {
        let mut agent = agent();
        let bytes = agent.trust().encode();
        assert_eq!(agent.restore_trust(&bytes), Ok(()));
        assert!(matches!(
            agent.restore_trust(b"not a store"),
            Err(AgentError::Trust(_))
        ));
    }
}
