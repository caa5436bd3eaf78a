//! Registry operations on this node's own entry beyond hostname and visibility: tags,
//! deregistration and network membership. Each is one registry request answered by
//! [`AgentEvent::ControlResult`](super::AgentEvent) with the registry's reply.

use std::time::Instant;

use super::{Agent, AgentError, ControlId};
use crate::registry::NetworkTokens;

/// A network operation at the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkRequest {
    /// Create a network named `name` with a join rule (`open`, `token`, `invite`).
    Create {
        /// Network name (hostname rules).
        name: String,
        /// Join rule; the registry's default (`open`) when absent.
        join_rule: Option<String>,
    },
    /// Join a network, optionally invited by a member.
    Join {
        /// The network.
        network: u16,
        /// The inviting member (`invite` rule).
        inviter: Option<u32>,
    },
    /// Leave a network.
    Leave {
        /// The network.
        network: u16,
    },
    /// List the registry's networks.
    List,
}

impl Agent {
    /// Replaces this node's tags at the registry (an empty list clears them).
    ///
    /// # Errors
    /// [`AgentError::NotRegistered`] or the registry client's refusal.
    pub fn set_tags(&mut self, now: Instant, tags: Vec<String>) -> Result<ControlId, AgentError> {
        let now = self.clamp(now);
        let id = self.registry.set_tags(now, tags)?;
        self.control(now, id)
    }

    /// Removes this node's entry from the registry. The node stays up; the registry forgets
    /// its address until the next registration (a restart).
    ///
    /// # Errors
    /// As [`Self::set_tags`].
    pub fn deregister(&mut self, now: Instant) -> Result<ControlId, AgentError> {
        let now = self.clamp(now);
        let id = self.registry.deregister(now)?;
        self.control(now, id)
    }

    /// Creates, joins, leaves or lists networks at the registry.
    ///
    /// # Errors
    /// As [`Self::set_tags`].
    pub fn network(
        &mut self,
        now: Instant,
        request: NetworkRequest,
        tokens: NetworkTokens,
    ) -> Result<ControlId, AgentError> {
        let now = self.clamp(now);
        let registry = &mut self.registry;
        let id = match request {
            NetworkRequest::Create { name, join_rule } => {
                registry.create_network(now, &name, join_rule, tokens)
            }
            NetworkRequest::Join { network, inviter } => {
                registry.join_network(now, network, inviter, tokens)
            }
            NetworkRequest::Leave { network } => registry.leave_network(now, network, tokens.admin),
            NetworkRequest::List => registry.list_networks(now),
        }?;
        self.control(now, id)
    }
}
