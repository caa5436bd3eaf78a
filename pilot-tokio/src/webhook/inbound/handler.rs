//! The request pipeline of the inbound receiver: each step either answers or passes on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use super::route::{self, Route, Verifier};
use super::{Shared, bump, dedupe_key};
use crate::webhook::dedupe::Claim;
use crate::webhook::sink::InboundEvent;
use crate::webhook::verify::{self, HEADER_WEBHOOK_ID, Verified, VerifyError};

/// A short plain-text answer.
type Answer = (StatusCode, &'static str);

/// The router: every path goes to one handler, which does its own longest-prefix routing.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response {
    match pipeline(&shared, peer, request).await {
        Ok(answer) | Err(answer) => answer.into_response(),
    }
}

async fn pipeline(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    request: Request<Body>,
) -> Result<Answer, Answer> {
    let (parts, body) = request.into_parts();
    let route = admit(shared, peer, &parts.method, parts.uri.path())?;
    let body = read_body(shared, &parts.headers, body).await?;
    let verified = verify_request(shared, route, &parts.headers, &body)?;
    let Some(topic) = route.topic(parts.uri.path(), &parts.headers) else {
        bump(&shared.counters.malformed);
        return Err((
            StatusCode::BAD_REQUEST,
            "cannot derive a topic from this request\n",
        ));
    };
    let event = InboundEvent {
        topic,
        payload: body,
        source: route.name.clone(),
        delivery_id: verified.delivery_id,
    };
    publish_once(shared, event).await
}

/// Routing, method and rate limit: the checks that cost nothing.
fn admit<'s>(
    shared: &'s Shared,
    peer: SocketAddr,
    method: &Method,
    path: &str,
) -> Result<&'s Route, Answer> {
    let Some(route) = route::find(&shared.config.routes, path) else {
        bump(&shared.counters.not_found);
        return Err((StatusCode::NOT_FOUND, "no webhook route for this path\n"));
    };
    if method != Method::POST {
        bump(&shared.counters.not_found);
        return Err((StatusCode::METHOD_NOT_ALLOWED, "webhooks must be POSTed\n"));
    }
    let allowed = match shared.limiter.lock() {
        Ok(mut limiter) => limiter.allow(Instant::now(), peer.ip()),
        // A poisoned lock means a panic elsewhere; fail closed rather than unlimited.
        Err(_) => false,
    };
    if !allowed {
        bump(&shared.counters.rate_limited);
        return Err((StatusCode::TOO_MANY_REQUESTS, "rate limited; retry later\n"));
    }
    Ok(route)
}

/// Reads the raw body, refusing anything over the limit (by header first, then while reading).
async fn read_body(shared: &Shared, headers: &HeaderMap, body: Body) -> Result<Bytes, Answer> {
    let limit = shared.config.max_body;
    let too_large = (
        StatusCode::PAYLOAD_TOO_LARGE,
        "body exceeds the size limit\n",
    );
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        bump(&shared.counters.too_large);
        return Err(too_large);
    }
    // Limitation: any read error (the limit, or a client gone mid-body) is answered 413.
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        bump(&shared.counters.too_large);
        too_large
    })
}

fn verify_request(
    shared: &Shared,
    route: &Route,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Verified, Answer> {
    let now = unix_now();
    let tolerance = shared.config.tolerance;
    let result = match &route.verifier {
        Verifier::StandardWebhooks(secrets) => {
            verify::verify_standard(secrets, headers, body, now, tolerance)
        }
        Verifier::Stripe(secrets) => verify::verify_stripe(secrets, headers, body, now, tolerance),
        Verifier::GitHub(secrets) => verify::verify_github(secrets, headers, body),
        Verifier::Unsigned => unsigned_id(headers),
    };
    result.map_err(|err| reject(shared, route, &err))
}

/// An unsigned request may still carry a `webhook-id` for dedupe.
fn unsigned_id(headers: &HeaderMap) -> Result<Verified, VerifyError> {
    let id = match headers.get(HEADER_WEBHOOK_ID) {
        None => None,
        Some(v) => {
            let id = v
                .to_str()
                .map_err(|_| VerifyError::MalformedHeader(HEADER_WEBHOOK_ID))?;
            Some(id.to_owned()).filter(|id| !id.is_empty() && id.len() <= 256)
        }
    };
    Ok(Verified {
        delivery_id: id,
        timestamp: None,
    })
}

fn reject(shared: &Shared, route: &Route, err: &VerifyError) -> Answer {
    tracing::debug!(source = %route.name, %err, "webhook refused");
    if err.is_malformed() {
        bump(&shared.counters.malformed);
        return (StatusCode::BAD_REQUEST, malformed_reason(err));
    }
    bump(&shared.counters.unauthorized);
    match err {
        VerifyError::Stale(_) => (StatusCode::UNAUTHORIZED, "timestamp too old\n"),
        VerifyError::Future(_) => (StatusCode::UNAUTHORIZED, "timestamp in the future\n"),
        _ => (StatusCode::UNAUTHORIZED, "signature does not match\n"),
    }
}

fn malformed_reason(err: &VerifyError) -> &'static str {
    match err {
        VerifyError::MissingHeader(_) => "missing signature header\n",
        VerifyError::DuplicateHeader(_) => "signature header given more than once\n",
        _ => "malformed signature header\n",
    }
}

/// Dedupe, then publish and wait for durability. The publish runs in its own task so that a
/// client hanging up cannot leave the delivery id stuck "in flight".
async fn publish_once(shared: &Arc<Shared>, event: InboundEvent) -> Result<Answer, Answer> {
    let key = event
        .delivery_id
        .as_deref()
        .map(|id| dedupe_key(&event.source, id));
    if let Some(key) = &key {
        let claim = match shared.dedupe.lock() {
            Ok(mut dedupe) => dedupe.claim(Instant::now(), key),
            Err(_) => Claim::InFlight,
        };
        match claim {
            Claim::Fresh => {}
            Claim::Duplicate => {
                bump(&shared.counters.duplicate);
                return Ok((StatusCode::OK, "duplicate delivery; already accepted\n"));
            }
            Claim::InFlight => {
                bump(&shared.counters.in_progress);
                return Err((
                    StatusCode::CONFLICT,
                    "same delivery in progress; retry later\n",
                ));
            }
        }
    }
    let task = tokio::spawn(publish_and_record(shared.clone(), event, key));
    task.await.unwrap_or(Err((
        StatusCode::SERVICE_UNAVAILABLE,
        "event log unavailable\n",
    )))
}

async fn publish_and_record(
    shared: Arc<Shared>,
    event: InboundEvent,
    key: Option<String>,
) -> Result<Answer, Answer> {
    let topic = event.topic.clone();
    let (done, confirmed) = oneshot::channel();
    shared.sink.publish(event, done);
    let outcome = tokio::time::timeout(shared.config.publish_timeout, confirmed).await;
    let durable = matches!(outcome, Ok(Ok(Ok(()))));

    if let (Some(key), Ok(mut dedupe)) = (&key, shared.dedupe.lock()) {
        if durable {
            dedupe.confirm(Instant::now(), key)
        } else {
            dedupe.release(key)
        }
    }
    if durable {
        bump(&shared.counters.accepted);
        tracing::debug!(%topic, "webhook published");
        Ok((StatusCode::OK, "accepted\n"))
    } else {
        bump(&shared.counters.publish_failed);
        tracing::warn!(%topic, "webhook not confirmed durable; answered 503");
        Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "event log did not confirm; retry later\n",
        ))
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it, which fails every tolerance).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
