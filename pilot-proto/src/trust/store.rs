//! The trust store: trusted, pending and outgoing sets, the handshake transitions, the
//! admission decision, and persistence as pure encode + recover.
//!
//! Every operation queues [`TrustAction`]s (messages to send on port 444, registry calls,
//! tunnels to drop, persistence, notifications) that the node drains with
//! [`TrustStore::poll_action`]. Nothing here sends, stores or reads a clock.

use std::collections::{BTreeMap, VecDeque};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::message::{Arrival, Rejection, ReplayFilter, build_message};
use super::{Refusal, TrustError, TrustMode};
use crate::rng::Rng;
use crate::wire::registry::{Base64, PollHandshakesOk};
use crate::wire::trust::{HandshakeType, TrustMessage};

/// Pending requests kept at most; further requests are dropped (v0.5: unbounded).
pub const MAX_PENDING: usize = 256;

/// Trusted peers kept at most.
pub const MAX_TRUSTED: usize = 65_536;

/// Longest justification or reason kept, in bytes.
pub const MAX_TEXT: usize = 1024;

/// Snapshot format tag.
pub const TRUST_FORMAT: &str = "pilot-rs-trust-1";

/// A peer we trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedPeer {
    /// The peer.
    pub node_id: u32,
    /// Its Ed25519 key when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<Base64>,
    /// When trust was established, Unix seconds.
    pub approved_at: i64,
    /// Both sides asked or approved.
    pub mutual: bool,
}

/// A request waiting for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRequest {
    /// The requester.
    pub node_id: u32,
    /// Its justification (truncated to [`MAX_TEXT`]).
    pub justification: String,
    /// When it arrived, Unix seconds.
    pub received_at: i64,
    /// True when it came through the registry relay.
    pub relayed: bool,
}

/// What the node must do on the store's behalf.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TrustAction {
    /// Open a stream to `peer`:444 and write this message (fall back to the registry relay with
    /// [`TrustStore::handle_direct_failure`] if that fails).
    SendDirect {
        /// Destination node.
        peer: u32,
        /// The message, signed.
        message: TrustMessage,
    },
    /// Registry `request_handshake`.
    RelayRequest {
        /// Target.
        peer: u32,
        /// Justification.
        justification: String,
    },
    /// Registry `respond_handshake`.
    RelayResponse {
        /// Original requester.
        peer: u32,
        /// Verdict.
        accept: bool,
    },
    /// Registry `report_trust`.
    ReportTrust {
        /// Peer now trusted.
        peer: u32,
    },
    /// Registry `revoke_trust`.
    RevokeTrust {
        /// Peer no longer trusted.
        peer: u32,
    },
    /// Forget the tunnel (crypto state, endpoint) to `peer`.
    DropTunnel {
        /// The peer.
        peer: u32,
    },
    /// The store changed: write [`TrustStore::encode`] durably.
    Persist,
    /// Tell the application (webhook, IPC).
    Notify(TrustEvent),
}

/// Trust changes the application may want to hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustEvent {
    /// A request is waiting for approval.
    Pending {
        /// The requester.
        peer: u32,
    },
    /// Trust was established without the operator (mutual request, or re-asked).
    AutoApproved {
        /// The peer.
        peer: u32,
    },
    /// The peer approved our request.
    Established {
        /// The peer.
        peer: u32,
    },
    /// The peer rejected our request.
    RejectedByPeer {
        /// The peer.
        peer: u32,
    },
    /// The peer revoked trust.
    RevokedByPeer {
        /// The peer.
        peer: u32,
    },
    /// An incoming message was not believed.
    MessageRejected {
        /// The claimed sender.
        peer: u32,
        /// Why.
        reason: Rejection,
    },
}

/// The node's trust state.
///
/// After any call, drain [`Self::poll_action`] until `None`.
#[derive(Debug)]
pub struct TrustStore {
    node_id: u32,
    key: SigningKey,
    mode: TrustMode,
    private: bool,
    rng: Rng,
    trusted: BTreeMap<u32, TrustedPeer>,
    pending: BTreeMap<u32, PendingRequest>,
    outgoing: BTreeMap<u32, i64>,
    replay: ReplayFilter,
    actions: VecDeque<TrustAction>,
}

impl TrustStore {
    /// An empty store for node `node_id` signing with `key`.
    pub fn new(node_id: u32, key: SigningKey, mode: TrustMode, rng: Rng) -> Self {
        Self {
            node_id,
            key,
            mode,
            private: true,
            rng,
            trusted: BTreeMap::new(),
            pending: BTreeMap::new(),
            outgoing: BTreeMap::new(),
            replay: ReplayFilter::default(),
            actions: VecDeque::new(),
        }
    }

    /// Updates our node id (after a re-registration assigned a new one).
    pub fn set_node_id(&mut self, node_id: u32) {
        self.node_id = node_id;
    }

    /// Sets whether this node is private (the default): private nodes admit only trusted peers.
    pub fn set_private(&mut self, private: bool) {
        self.private = private;
    }

    /// Asks `peer` for trust. Already trusted: nothing is sent.
    pub fn request(&mut self, unix_now: i64, peer: u32, justification: &str) {
        if self.trusted.contains_key(&peer) || peer == self.node_id {
            return;
        }
        self.outgoing.insert(peer, unix_now);
        let message = self.message(HandshakeType::Request, peer, (justification, ""), unix_now);
        self.actions
            .push_back(TrustAction::SendDirect { peer, message });
        self.actions.push_back(TrustAction::Persist);
    }

    /// Approves a pending request.
    ///
    /// # Errors
    /// [`TrustError::NotPending`] when `peer` has no pending request.
    pub fn approve(&mut self, unix_now: i64, peer: u32) -> Result<(), TrustError> {
        self.pending
            .remove(&peer)
            .ok_or(TrustError::NotPending(peer))?;
        self.trust(peer, None, unix_now, false);
        let message = self.message(HandshakeType::Accept, peer, ("", ""), unix_now);
        self.actions
            .push_back(TrustAction::SendDirect { peer, message });
        self.actions
            .push_back(TrustAction::RelayResponse { peer, accept: true });
        Ok(())
    }

    /// Rejects a pending request.
    ///
    /// # Errors
    /// [`TrustError::NotPending`] when `peer` has no pending request.
    pub fn reject(&mut self, unix_now: i64, peer: u32, reason: &str) -> Result<(), TrustError> {
        self.pending
            .remove(&peer)
            .ok_or(TrustError::NotPending(peer))?;
        let message = self.message(HandshakeType::Reject, peer, ("", reason), unix_now);
        self.actions
            .push_back(TrustAction::SendDirect { peer, message });
        self.actions.push_back(TrustAction::RelayResponse {
            peer,
            accept: false,
        });
        self.actions.push_back(TrustAction::Persist);
        Ok(())
    }

    /// Revokes trust in `peer`.
    ///
    /// # Errors
    /// [`TrustError::NotTrusted`] when `peer` is not trusted.
    pub fn revoke(&mut self, unix_now: i64, peer: u32) -> Result<(), TrustError> {
        self.trusted
            .remove(&peer)
            .ok_or(TrustError::NotTrusted(peer))?;
        self.outgoing.remove(&peer);
        let message = self.message(HandshakeType::Revoke, peer, ("", "trust revoked"), unix_now);
        self.actions.push_back(TrustAction::RevokeTrust { peer });
        // The revoke goes out first: it needs the tunnel that `DropTunnel` takes down (the
        // agent defers the drop until the revoke's stream has ended).
        self.actions
            .push_back(TrustAction::SendDirect { peer, message });
        self.actions.push_back(TrustAction::DropTunnel { peer });
        self.actions.push_back(TrustAction::Persist);
        Ok(())
    }

    /// The direct delivery of `message` to `peer` failed: use the registry relay instead
    /// (requests and verdicts have relay forms; revokes and rejects already went there).
    pub fn handle_direct_failure(&mut self, peer: u32, message: &TrustMessage) {
        if message.kind == HandshakeType::Request && self.outgoing.contains_key(&peer) {
            let justification = message.justification.clone();
            self.actions.push_back(TrustAction::RelayRequest {
                peer,
                justification,
            });
        }
    }

    /// A message arrived on port 444.
    ///
    /// Checked in order: freshness, sender = tunnel peer, replay, signature against the
    /// registry's key for the sender. Then: request → pending, or trusted at once when we
    /// asked too (mutual) or already trust the sender; accept → trusted only if we asked;
    /// reject → our request forgotten; revoke → trust removed and tunnel dropped.
    pub fn handle_message(&mut self, message: &TrustMessage, arrival: &Arrival<'_>) {
        let peer = message.node_id;
        if let Err(reason) = self.replay.check(message, arrival, self.mode) {
            debug!(peer, %reason, "trust message not believed");
            self.notify(TrustEvent::MessageRejected { peer, reason });
            return;
        }
        let key = arrival
            .registry_key
            .map(|key| Base64(key.to_bytes().to_vec()));
        match message.kind {
            HandshakeType::Request => {
                self.on_request(arrival.unix_now, peer, &message.justification, key, false)
            }
            HandshakeType::Accept => self.on_accept(arrival.unix_now, peer, key),
            HandshakeType::Reject => self.on_reject(peer),
            HandshakeType::Revoke => self.on_revoke(peer),
            HandshakeType::Other(_) => {}
        }
    }

    /// Requests and verdicts polled from the registry relay (authenticated by the registry).
    pub fn handle_relayed(&mut self, unix_now: i64, polled: &PollHandshakesOk) {
        for request in &polled.requests {
            self.on_request(
                unix_now,
                request.from_node_id,
                &request.justification,
                None,
                true,
            );
        }
        for response in &polled.responses {
            if response.accept {
                self.on_accept(unix_now, response.from_node_id, None);
            } else {
                self.on_reject(response.from_node_id);
            }
        }
    }

    /// Decides whether `peer` may open connections or send datagrams to us.
    ///
    /// # Errors
    /// [`Refusal::Untrusted`] when this node is private and does not trust `peer`.
    pub fn admit(&self, peer: u32) -> Result<(), Refusal> {
        if !self.private || self.trusted.contains_key(&peer) || peer == self.node_id {
            return Ok(());
        }
        Err(Refusal::Untrusted { peer })
    }

    /// [`Self::admit`] for a connection to `port`; the handshake port 444 is always admitted,
    /// or nobody could ever ask for trust.
    ///
    /// # Errors
    /// As [`Self::admit`].
    pub fn admit_connection(&self, peer: u32, port: u16) -> Result<(), Refusal> {
        if port == super::TRUST_PORT {
            return Ok(());
        }
        self.admit(peer)
    }

    /// True when `peer` is trusted.
    pub fn is_trusted(&self, peer: u32) -> bool {
        self.trusted.contains_key(&peer)
    }

    /// Trusted peers, by id.
    pub fn trusted(&self) -> impl Iterator<Item = &TrustedPeer> {
        self.trusted.values()
    }

    /// Pending requests, by id.
    pub fn pending(&self) -> impl Iterator<Item = &PendingRequest> {
        self.pending.values()
    }

    /// True when we asked `peer` and have no answer yet.
    pub fn is_outgoing(&self, peer: u32) -> bool {
        self.outgoing.contains_key(&peer)
    }

    /// After re-registering: report every trusted peer to the registry again (v0.5 §3.6).
    pub fn reannounce(&mut self) {
        let peers: Vec<u32> = self.trusted.keys().copied().collect();
        self.actions.extend(
            peers
                .into_iter()
                .map(|peer| TrustAction::ReportTrust { peer }),
        );
    }

    /// Next action.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<TrustAction> {
        self.actions.pop_front()
    }

    /// Encodes trusted, pending and outgoing sets (compact JSON, sorted by id).
    pub fn encode(&self) -> Vec<u8> {
        let stored = StoredTrust {
            format: TRUST_FORMAT.into(),
            trusted: self.trusted.values().cloned().collect(),
            pending: self.pending.values().cloned().collect(),
            outgoing: self
                .outgoing
                .iter()
                .map(|(peer, at)| (*peer, *at))
                .collect(),
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// Restores a store written by [`Self::encode`].
    ///
    /// # Errors
    /// [`TrustError::Corrupt`] when the bytes are not such a snapshot.
    pub fn recover(
        node_id: u32,
        key: SigningKey,
        mode: TrustMode,
        rng: Rng,
        bytes: &[u8],
    ) -> Result<Self, TrustError> {
        let stored: StoredTrust = serde_json::from_slice(bytes)
            .map_err(|error| TrustError::Corrupt(error.to_string()))?;
        if stored.format != TRUST_FORMAT {
            return Err(TrustError::Corrupt(format!(
                "unknown format {:?}",
                stored.format
            )));
        }
        let mut store = Self::new(node_id, key, mode, rng);
        store.trusted = stored
            .trusted
            .into_iter()
            .take(MAX_TRUSTED)
            .map(|p| (p.node_id, p))
            .collect();
        store.pending = stored
            .pending
            .into_iter()
            .take(MAX_PENDING)
            .map(|p| (p.node_id, p))
            .collect();
        store.outgoing = stored.outgoing.into_iter().take(MAX_PENDING).collect();
        Ok(store)
    }

    fn on_request(
        &mut self,
        unix_now: i64,
        peer: u32,
        justification: &str,
        key: Option<Base64>,
        relayed: bool,
    ) {
        if self.trusted.contains_key(&peer) {
            self.send_accept(unix_now, peer, relayed);
            return;
        }
        if self.outgoing.remove(&peer).is_some() {
            // Both sides asked: mutual auto-approval, as in v0.5.
            self.trust(peer, key, unix_now, true);
            self.send_accept(unix_now, peer, relayed);
            self.notify(TrustEvent::AutoApproved { peer });
            return;
        }
        if !self.pending.contains_key(&peer) && self.pending.len() >= MAX_PENDING {
            debug!(peer, "pending table full; request dropped");
            return;
        }
        let justification = truncate(justification, MAX_TEXT);
        self.pending.insert(
            peer,
            PendingRequest {
                node_id: peer,
                justification,
                received_at: unix_now,
                relayed,
            },
        );
        self.actions.push_back(TrustAction::Persist);
        self.notify(TrustEvent::Pending { peer });
    }

    fn on_accept(&mut self, unix_now: i64, peer: u32, key: Option<Base64>) {
        // An accept we never asked for is ignored (v0.5 trusts it).
        if self.outgoing.remove(&peer).is_none() {
            return;
        }
        self.trust(peer, key, unix_now, true);
        self.notify(TrustEvent::Established { peer });
    }

    fn on_reject(&mut self, peer: u32) {
        if self.outgoing.remove(&peer).is_some() {
            self.actions.push_back(TrustAction::Persist);
            self.notify(TrustEvent::RejectedByPeer { peer });
        }
    }

    fn on_revoke(&mut self, peer: u32) {
        let was_trusted = self.trusted.remove(&peer).is_some();
        let was_pending = self.pending.remove(&peer).is_some();
        let was_outgoing = self.outgoing.remove(&peer).is_some();
        if !(was_trusted || was_pending || was_outgoing) {
            return;
        }
        self.actions.push_back(TrustAction::DropTunnel { peer });
        if was_trusted {
            self.actions.push_back(TrustAction::RevokeTrust { peer });
        }
        self.actions.push_back(TrustAction::Persist);
        self.notify(TrustEvent::RevokedByPeer { peer });
    }

    fn trust(&mut self, peer: u32, public_key: Option<Base64>, unix_now: i64, mutual: bool) {
        if !self.trusted.contains_key(&peer) && self.trusted.len() >= MAX_TRUSTED {
            debug!(peer, "trusted table full");
            return;
        }
        self.pending.remove(&peer);
        self.trusted.insert(
            peer,
            TrustedPeer {
                node_id: peer,
                public_key,
                approved_at: unix_now,
                mutual,
            },
        );
        self.actions.push_back(TrustAction::ReportTrust { peer });
        self.actions.push_back(TrustAction::Persist);
    }

    fn send_accept(&mut self, unix_now: i64, peer: u32, relayed: bool) {
        if relayed {
            self.actions
                .push_back(TrustAction::RelayResponse { peer, accept: true });
            return;
        }
        let message = self.message(HandshakeType::Accept, peer, ("", ""), unix_now);
        self.actions
            .push_back(TrustAction::SendDirect { peer, message });
    }

    fn message(
        &mut self,
        kind: HandshakeType,
        peer: u32,
        text: (&str, &str),
        unix_now: i64,
    ) -> TrustMessage {
        let text = (truncate(text.0, MAX_TEXT), truncate(text.1, MAX_TEXT));
        build_message(
            kind,
            (self.node_id, peer),
            &self.key,
            (&text.0, &text.1),
            unix_now,
            self.mode,
            &mut self.rng,
        )
    }

    fn notify(&mut self, event: TrustEvent) {
        self.actions.push_back(TrustAction::Notify(event));
    }
}

/// The registry key a node looked up for a peer, for [`Arrival::registry_key`].
pub fn key_from_lookup(public_key: &Base64) -> Option<VerifyingKey> {
    crate::registry::parse_key(&public_key.0)
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[derive(Serialize, Deserialize)]
struct StoredTrust {
    format: String,
    trusted: Vec<TrustedPeer>,
    pending: Vec<PendingRequest>,
    outgoing: Vec<(u32, i64)>,
}
