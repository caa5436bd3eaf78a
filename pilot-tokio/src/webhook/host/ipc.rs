//! The webhook extension of the daemon IPC, used by `pilotctl set-webhook`, `clear-webhook`
//! and `webhook-status`: request `0x84 ‖ JSON` ([`HostRequest`]), reply `0x85 ‖ JSON` or the
//! usual v0.5 `Error`.
//!
//! Like the other extensions (see `framing`), the daemon never sends these unless a client asks
//! first, so v0.5 clients never see them. The v0.5 `SetWebhook` (0x1B) keeps its meaning: it
//! sets ("" clears) the outbound URL only.

use serde::{Deserialize, Serialize};

use super::store::{InboundSpec, OutboundSpec};

/// Extension: a webhook host request, `0x84 ‖ JSON` [`HostRequest`].
pub const WEBHOOK: u8 = 0x84;
/// Extension: reply to [`WEBHOOK`], `0x85 ‖ JSON`.
pub const WEBHOOK_OK: u8 = 0x85;

/// What a client asks of the webhook host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HostRequest {
    /// Starts (or replaces) the inbound receiver and/or the outbound target; a side left out
    /// is kept as it is. An outbound spec with an empty secret keeps the current secret, or
    /// gets a generated one that the reply carries once (`generated_secret`).
    Set {
        /// The inbound receiver to run.
        #[serde(default)]
        inbound: Option<InboundSpec>,
        /// The outbound target to deliver to.
        #[serde(default)]
        outbound: Option<OutboundSpec>,
    },
    /// Stops and forgets the chosen sides.
    Clear {
        /// Stop the inbound receiver.
        inbound: bool,
        /// Stop outbound delivery (queued events stay on disk).
        outbound: bool,
    },
    /// Configuration (without secrets) and counters.
    Status,
}

/// Encodes a request body (`0x84 ‖ JSON`).
pub fn encode_request(request: &HostRequest) -> Vec<u8> {
    let mut body = vec![WEBHOOK];
    // Serialising these plain structs cannot fail.
    body.extend(serde_json::to_vec(request).unwrap_or_default());
    body
}

/// Encodes a reply body (`0x85 ‖ JSON`).
pub fn encode_reply(reply: &serde_json::Value) -> Vec<u8> {
    let mut body = vec![WEBHOOK_OK];
    body.extend(serde_json::to_vec(reply).unwrap_or_default());
    body
}

/// Decodes a request after its `0x84` byte; the error text goes back to the client.
pub fn decode_request(json: &[u8]) -> Result<HostRequest, String> {
    serde_json::from_slice(json).map_err(|e| format!("bad webhook request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_an_error() {
        let request = HostRequest::Clear {
            inbound: true,
            outbound: false,
        };
        let body = encode_request(&request);
        assert_eq!(body[0], WEBHOOK);
        assert_eq!(decode_request(&body[1..]), Ok(request));
        assert!(decode_request(b"{\"op\":\"explode\"}").is_err());
        assert!(decode_request(&[0xff, 0x00]).is_err());
    }
}
