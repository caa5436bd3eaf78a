//! Shared helpers for the webhook tests: signed Standard Webhooks POSTs from a blocking HTTP
//! client (ureq), and an axum receiver for outbound deliveries that fails its first requests
//! on purpose and reports every request it saw.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use pilot_tokio::webhook::verify::{self, Secret};
use serde_json::Value;

/// The test-vector secret most webhook tests sign with.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Wall-clock seconds, as webhook timestamps are.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// One Standard Webhooks POST of `body`, signed with `secret` at `unix_now()`; returns the
/// status and body, or the transport error (receiver gone).
pub fn post_standard(
    url: &str,
    id: &str,
    body: &str,
    secret: &Secret,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let ts = unix_now();
    let signature = verify::sign_standard(secret, id, ts, body.as_bytes());
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(timeout))
        .build();
    let agent: ureq::Agent = config.into();
    let mut response = agent
        .post(url)
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .header("content-type", "application/json")
        .send(body.as_bytes())
        .map_err(|e| e.to_string())?;
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Ok((response.status().as_u16(), text))
}

/// What the outbound receiver saw on one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub id: String,
    pub body: Value,
    pub verified: bool,
    pub status: u16,
}

/// An outbound receiver: answers `failing_status` to the first `fail_first` requests and 200
/// after, checks each signature against `secret`, and hands every request to `report`.
pub struct Receiver {
    pub secret: Secret,
    pub fail_first: u32,
    pub failing_status: StatusCode,
    count: AtomicU32,
    report: Box<dyn Fn(Seen) + Send + Sync>,
}

impl Receiver {
    pub fn new(
        secret: Secret,
        fail_first: u32,
        failing_status: StatusCode,
        report: impl Fn(Seen) + Send + Sync + 'static,
    ) -> Receiver {
        Receiver {
            secret,
            fail_first,
            failing_status,
            count: AtomicU32::new(0),
            report: Box::new(report),
        }
    }

    /// Serves POSTs to `path` on an ephemeral loopback port (call inside a tokio runtime).
    pub async fn serve(self, path: &str) -> SocketAddr {
        let app = Router::new()
            .route(path, axum::routing::post(receive))
            .with_state(Arc::new(self));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver runs") });
        addr
    }
}

async fn receive(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let secrets = [rx.secret.clone()];
    let tolerance = verify::DEFAULT_TOLERANCE;
    let checked = verify::verify_standard(&secrets, &headers, &body, unix_now(), tolerance);
    let status = if rx.count.fetch_add(1, Ordering::SeqCst) < rx.fail_first {
        rx.failing_status
    } else {
        StatusCode::OK
    };
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok());
    (rx.report)(Seen {
        id: id.unwrap_or_default().to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        verified: checked.is_ok(),
        status: status.as_u16(),
    });
    status
}
