//! Events the daemon publishes itself ([`Command::PublishDurable`](super::commands::Command)),
//! for bridges such as the inbound webhook receiver.
//!
//! # Limitations
//!
//! - The daemon's broker log lives in memory only: the reply is sent as soon as the broker
//!   has sequenced the event, and a restart forgets it.

use pilot_proto::pubsub::Topic;

use super::commands::Reply;
use super::control::error_text;
use super::{Driver, clock};

impl Driver {
    /// Publishes `payload` on `topic` to the node's own broker and answers with its sequence
    /// number.
    pub(super) fn publish_durable(&mut self, topic: &str, payload: &[u8], reply: Reply<u64>) {
        let topic = match Topic::parse(topic) {
            Ok(topic) => topic,
            Err(err) => {
                let _ = reply.send(Err(format!("bad topic: {err}")));
                return;
            }
        };

        // Limitation: not yet written to disk before the reply (see the module header).
        let result = self.agent.publish_local(clock(), &topic, payload);
        let _ = reply.send(result.map(|seq| seq.0).map_err(|e| error_text(&e)));
    }
}
