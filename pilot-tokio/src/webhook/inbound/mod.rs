//! The inbound receiver: an axum HTTP server that verifies provider webhooks and publishes each
//! one, once, into the host's durable event log.
//!
//! Owns [`InboundConfig`], [`start`] and [`InboundHandle`]. The server binds exactly the
//! address it is given (a `set-webhook` URL parsed by [`parse_listen_url`]); a non-loopback
//! address is refused unless `allow_non_loopback` is set. Each request goes through, in order:
//! route (404), method (405), per-source rate limit (429), body size (413), signature and
//! timestamp (400 malformed / 401 not authentic), topic (400), delivery-id dedupe (200 for a
//! duplicate, 409 while the first copy is still publishing), then the durable publish: 200 only
//! after the sink confirms, 503 if it fails or times out.
//!
//! # Limitations
//! - Plain HTTP only; put a TLS terminator in front for anything beyond loopback.
//! - A chunked body larger than the limit is cut off while reading and answered 413; a client
//!   that disconnects mid-body also gets 413, which it never reads.

mod handler;
mod route;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use route::{Route, TopicRule, Verifier, parse_listen_url};

use super::dedupe::{self, DeliveryDedupe};
use super::ratelimit::{RateLimit, RateLimiter};
use super::sink::EventSink;
use super::verify::DEFAULT_TOLERANCE;

/// Default largest accepted body: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// Default time to wait for the sink's durability confirmation.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Most distinct sources the rate limiter tracks.
const MAX_RATE_SOURCES: usize = 4096;

/// Everything the inbound receiver needs to run.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// Exact address to bind.
    pub listen: SocketAddr,
    /// Allow `listen` to be a non-loopback address.
    pub allow_non_loopback: bool,
    /// Sources, matched by longest path prefix.
    pub routes: Vec<Route>,
    /// Largest accepted body in bytes (413 beyond).
    pub max_body: usize,
    /// Allowed distance between a signed timestamp and the local clock.
    pub tolerance: Duration,
    /// Token bucket per source IP (429 when empty).
    pub rate_limit: RateLimit,
    /// Most delivery ids remembered.
    pub dedupe_capacity: usize,
    /// How long a delivery id is remembered.
    pub dedupe_max_age: Duration,
    /// How long to wait for the sink to confirm durability (503 beyond).
    pub publish_timeout: Duration,
    /// `(route name, delivery id)` pairs already published, for example reloaded from the event
    /// log after a restart, so that provider retries of them stay duplicates.
    pub remembered: Vec<(String, String)>,
}

impl InboundConfig {
    /// A receiver for one `set-webhook` URL (`http://localhost:8080/events`), with defaults.
    pub fn from_url(url: &str, verifier: Verifier) -> Result<Self, ConfigError> {
        let (listen, path) = parse_listen_url(url)?;
        Ok(Self::new(listen, vec![Route::new(&path, verifier)]))
    }

    /// A receiver on `listen` with `routes` and default limits.
    pub fn new(listen: SocketAddr, routes: Vec<Route>) -> Self {
        Self {
            listen,
            allow_non_loopback: false,
            routes,
            max_body: DEFAULT_MAX_BODY,
            tolerance: DEFAULT_TOLERANCE,
            rate_limit: RateLimit::default(),
            dedupe_capacity: dedupe::DEFAULT_CAPACITY,
            dedupe_max_age: dedupe::DEFAULT_MAX_AGE,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            remembered: Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let loopback = self.listen.ip().is_loopback();
        if !loopback && !self.allow_non_loopback {
            return Err(ConfigError::NonLoopback(self.listen));
        }
        if self.routes.is_empty() {
            return Err(ConfigError::NoRoutes);
        }
        for (i, route) in self.routes.iter().enumerate() {
            route.validate(loopback)?;
            let clash = self.routes[..i]
                .iter()
                .any(|r| r.path == route.path || r.name == route.name);
            if clash {
                return Err(ConfigError::BadRoute(route.path.clone()));
            }
        }
        Ok(())
    }
}

/// Why the receiver could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL could not be parsed, has a query, or names a host other than an IP or localhost.
    #[error("bad webhook url {0:?}: use http://<ip or localhost>:<port>/<path>")]
    BadUrl(String),
    /// The URL is not `http://`.
    #[error("webhook url {0:?} must start with http:// (TLS is not served)")]
    NotHttp(String),
    /// The address is not loopback and `allow_non_loopback` is off.
    #[error("refusing to listen on non-loopback address {0} without the allow flag")]
    NonLoopback(SocketAddr),
    /// An unsigned route was configured on a non-loopback address.
    #[error("unsigned webhook routes are only allowed on loopback")]
    UnsignedNonLoopback,
    /// No route configured.
    #[error("no webhook route configured")]
    NoRoutes,
    /// A route has a bad path, name or topic prefix, or clashes with another.
    #[error("bad or duplicate webhook route {0:?}")]
    BadRoute(String),
    /// A signed route has no secret.
    #[error("webhook route {0:?} has no secret")]
    NoSecrets(String),
    /// Binding the address failed.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
}

/// Counters of what the receiver answered, for `pilotctl`.
#[derive(Debug, Default)]
pub(crate) struct InboundCounters {
    accepted: AtomicU64,
    duplicate: AtomicU64,
    malformed: AtomicU64,
    unauthorized: AtomicU64,
    too_large: AtomicU64,
    rate_limited: AtomicU64,
    not_found: AtomicU64,
    in_progress: AtomicU64,
    publish_failed: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of the receiver's counters (serialisable for `pilotctl --json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct InboundStats {
    /// Published and answered 200.
    pub accepted: u64,
    /// Retries of an already published delivery, answered 200 without publishing.
    pub duplicate: u64,
    /// Answered 400.
    pub malformed: u64,
    /// Answered 401.
    pub unauthorized: u64,
    /// Answered 413.
    pub too_large: u64,
    /// Answered 429.
    pub rate_limited: u64,
    /// Answered 404 or 405.
    pub not_found: u64,
    /// Answered 409: the same delivery was still being published.
    pub in_progress: u64,
    /// Answered 503: the sink failed or did not confirm in time.
    pub publish_failed: u64,
}

impl InboundCounters {
    fn snapshot(&self) -> InboundStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        InboundStats {
            accepted: get(&self.accepted),
            duplicate: get(&self.duplicate),
            malformed: get(&self.malformed),
            unauthorized: get(&self.unauthorized),
            too_large: get(&self.too_large),
            rate_limited: get(&self.rate_limited),
            not_found: get(&self.not_found),
            in_progress: get(&self.in_progress),
            publish_failed: get(&self.publish_failed),
        }
    }
}

/// State shared by all requests of one receiver.
pub(crate) struct Shared {
    config: InboundConfig,
    sink: Arc<dyn EventSink>,
    dedupe: Mutex<DeliveryDedupe>,
    limiter: Mutex<RateLimiter>,
    counters: InboundCounters,
}

/// A running receiver. Dropping it stops the server as [`InboundHandle::shutdown`] does,
/// without waiting.
#[derive(Debug)]
pub struct InboundHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

impl InboundHandle {
    /// The bound address (useful when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters so far.
    pub fn stats(&self) -> InboundStats {
        self.shared.counters.snapshot()
    }

    /// Stops accepting, lets requests in progress finish, and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Validates `config`, binds its address and serves until [`InboundHandle::shutdown`].
pub async fn start(
    config: InboundConfig,
    sink: Arc<dyn EventSink>,
) -> Result<InboundHandle, ConfigError> {
    config.validate()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| ConfigError::Bind(config.listen, e))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| ConfigError::Bind(config.listen, e))?;

    let shared = Arc::new(build_shared(config, sink));
    let app = handler::router(shared.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    // Limitation: plain HTTP only; TLS is left to a terminator in front.
    let task = tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(listener, service).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(err) = server.await {
            tracing::warn!(%err, "webhook receiver stopped with an error");
        }
    });
    tracing::info!(%local_addr, "webhook receiver listening");
    Ok(InboundHandle {
        local_addr,
        shared,
        stop: Some(stop),
        task,
    })
}

fn build_shared(config: InboundConfig, sink: Arc<dyn EventSink>) -> Shared {
    let now = Instant::now();
    // Limitation: the dedupe table is in RAM; across a restart it knows only `remembered`.
    let mut dedupe = DeliveryDedupe::new(config.dedupe_capacity, config.dedupe_max_age);
    for (route, id) in &config.remembered {
        dedupe.remember(now, &dedupe_key(route, id));
    }
    let limiter = RateLimiter::new(config.rate_limit, MAX_RATE_SOURCES);
    Shared {
        config,
        sink,
        dedupe: Mutex::new(dedupe),
        limiter: Mutex::new(limiter),
        counters: InboundCounters::default(),
    }
}

/// The dedupe key of a delivery: per source, so two providers may reuse an id.
fn dedupe_key(route: &str, delivery_id: &str) -> String {
    format!("{route}\n{delivery_id}")
}
