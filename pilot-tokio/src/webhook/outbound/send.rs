//! One delivery attempt over HTTP (blocking ureq, run on `spawn_blocking`) and what its outcome
//! means for the queue.

use std::time::Duration;

use crate::webhook::verify::{
    HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, Secret, sign_standard,
};

/// Longest `Retry-After` honoured, whatever the receiver asks.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 2xx: delivered.
    Delivered,
    /// 410 Gone: the receiver asked never to be sent this again.
    Gone,
    /// Anything else: try again, no earlier than `after` if the receiver said so.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
}

/// A ureq agent that never follows redirects (a 3xx is a failure) and ignores proxy variables,
/// so a configured loopback URL is reached directly.
pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build();
    config.into()
}

/// POSTs `body` once, signed for this attempt (fresh timestamp, same id).
pub(crate) fn attempt(
    agent: &ureq::Agent,
    url: &str,
    secret: &Secret,
    id: &str,
    body: &str,
    unix_now: u64,
) -> Outcome {
    let signature = sign_standard(secret, id, unix_now, body.as_bytes());
    let result = agent
        .post(url)
        .header("content-type", "application/json")
        .header(HEADER_WEBHOOK_ID, id)
        .header(HEADER_WEBHOOK_TIMESTAMP, unix_now.to_string())
        .header(HEADER_WEBHOOK_SIGNATURE, signature)
        .send(body);
    match result {
        Ok(response) => classify(response.status().as_u16(), retry_after(&response)),
        Err(err) => Outcome::Retry {
            after: None,
            reason: format!("transport: {err}"),
        },
    }
}

fn classify(status: u16, after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        410 => Outcome::Gone,
        _ => Outcome::Retry {
            after,
            reason: format!("status {status}"),
        },
    }
}

/// `Retry-After` in delta-seconds form (the HTTP-date form is ignored), capped.
fn retry_after<B>(response: &ureq::http::Response<B>) -> Option<Duration> {
    let text = response.headers().get("retry-after")?.to_str().ok()?;
    let secs: u64 = text.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Exponential backoff: `initial × 2^(failures-1)`, capped at `max`, then scaled by a jitter
/// factor in [0.5, 1.0] so that many queues do not retry in step.
pub(crate) fn backoff(
    initial: Duration,
    max: Duration,
    failures: u32,
    jitter_unit: f64,
) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let base = initial.saturating_mul(1u32 << exponent).min(max);
    base.mul_f64(0.5 + 0.5 * jitter_unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(classify(200, None), Outcome::Delivered);
        assert_eq!(classify(204, None), Outcome::Delivered);
        assert_eq!(classify(410, None), Outcome::Gone);
        for status in [301, 400, 429, 500, 503] {
            assert!(
                matches!(classify(status, None), Outcome::Retry { .. }),
                "{status}"
            );
        }
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_downwards() {
        let (one, cap) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(backoff(one, cap, 1, 1.0), one);
        assert_eq!(backoff(one, cap, 4, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(one, cap, 40, 1.0), cap);
        assert_eq!(backoff(one, cap, 4, 0.0), Duration::from_secs(4));
    }
}
