//! The registry server: connections in, frames out, tables in between.
//!
//! Owns the connection layer (one [`FrameDecoder`] per connection, idle deadlines, bounded
//! output), the timers (reaping, rate-limit pruning) and the public API a driver calls. The
//! request handlers live in `handlers.rs`. Never touches a socket or a file: the driver feeds
//! bytes in with [`RegistryServer::handle_bytes`] and writes what
//! [`RegistryServer::poll_transmit`] returns.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tracing::debug;

use super::auth::NonceCache;
use super::ratelimit::{RateLimit, RateLimiter};
use super::state::{RecoverError, Tables, WallClock};
use super::{ErrorCode, SecurityMode};
use crate::wire::registry::{ErrorReply, FrameDecoder, Request, Response};

/// Identifies one byte-stream connection; chosen by the driver, unique while open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// Bytes for one connection: the first `len` bytes of the buffer passed to `poll_transmit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the bytes must be written to the connection"]
pub struct StreamTransmit {
    /// Which connection.
    pub conn: ConnectionId,
    /// How many bytes of the caller's buffer to write.
    pub len: usize,
}

/// Why the server wants a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// No bytes for the idle period (v0.5: 5 minutes).
    Idle,
    /// The framing broke (oversize length, backlog); the stream cannot be resynced.
    BadFraming,
    /// Too many connections are open.
    TooManyConnections,
    /// The client did not read its responses.
    OutputBacklog,
    /// The request ends the conversation (`subscribe_replication` without replication).
    Finished,
}

/// Something the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// Close this connection once its pending bytes are written.
    Close {
        /// Which connection.
        conn: ConnectionId,
        /// Why.
        reason: CloseReason,
    },
    /// The persistent state changed since the last [`RegistryServer::mark_persisted`]; write
    /// [`RegistryServer::encode_state`] (v0.5 coalesces to at most one write per second).
    StateDirty,
}

/// Limits and timers of the registry server. Defaults follow v0.5 where it has a value.
/// Its `Debug` output never shows the admin token.
#[derive(Clone)]
pub struct RegistryConfig {
    /// Compatibility or hardened rules (see `docs/design/control-plane.md`).
    pub security: SecurityMode,
    /// Live node records at most.
    pub max_nodes: usize,
    /// Open connections at most.
    pub max_connections: usize,
    /// Close a connection after this long without bytes (v0.5: 5 min).
    pub idle_timeout: Duration,
    /// A node not seen for this long is reaped (v0.5: 3 min).
    pub node_expiry: Duration,
    /// How often the reaper runs (v0.5: 60 s).
    pub reap_interval: Duration,
    /// `register` per source IP (v0.5: 10 per 60 s).
    pub register_limit: RateLimit,
    /// Any request per source IP (v0.5 has none).
    pub request_limit: RateLimit,
    /// Source IPs tracked by the rate limiters.
    pub max_sources: usize,
    /// Pending relayed requests per target (v0.5: 100).
    pub max_inbox: usize,
    /// Pending relayed verdicts per requester (v0.5: unbounded).
    pub max_responses: usize,
    /// Longest justification accepted (v0.5: up to the 1 MiB frame).
    pub max_justification: usize,
    /// Directed trust edges at most.
    pub max_trust_edges: usize,
    /// Beacons remembered at most.
    pub max_beacons: usize,
    /// Beacons not re-registered within this are omitted and dropped (v0.5: 60 s).
    pub beacon_expiry: Duration,
    /// Token for network administration; `None` disables it (v0.5 default).
    pub admin_token: Option<String>,
    /// Serve `create_network`/`join_network`/`leave_network` (v0.5 always refuses them).
    pub networks_enabled: bool,
    /// Frames answered per connection before its output must drain.
    pub max_output_frames: usize,
}

impl core::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let token = self.admin_token.as_ref().map(|_| "<redacted>");
        f.debug_struct("RegistryConfig")
            .field("security", &self.security)
            .field("max_nodes", &self.max_nodes)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("node_expiry", &self.node_expiry)
            .field("admin_token", &token)
            .field("networks_enabled", &self.networks_enabled)
            .finish_non_exhaustive()
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            security: SecurityMode::Compat,
            max_nodes: 100_000,
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(300),
            node_expiry: Duration::from_secs(180),
            reap_interval: Duration::from_secs(60),
            register_limit: RateLimit::V05_REGISTER,
            request_limit: RateLimit {
                capacity: 200,
                period: Duration::from_secs(10),
            },
            max_sources: 65_536,
            max_inbox: 100,
            max_responses: 100,
            max_justification: 1024,
            max_trust_edges: 1_000_000,
            max_beacons: 256,
            beacon_expiry: Duration::from_secs(60),
            admin_token: None,
            networks_enabled: false,
            max_output_frames: 64,
        }
    }
}

#[derive(Debug)]
struct Connection {
    peer: SocketAddr,
    decoder: FrameDecoder,
    last_activity: Instant,
    queued: usize,
}

/// The registry as a pure state machine.
///
/// Drive it as every core machine: after any `handle_*`, drain [`Self::poll_transmit`] until
/// `None`, then [`Self::poll_event`] until `None`, then re-arm the timer from
/// [`Self::poll_timeout`]. [`Self::handle_request`] is the same logic without the framing, for
/// drivers and tests that already hold a parsed request.
#[derive(Debug)]
pub struct RegistryServer {
    pub(super) config: RegistryConfig,
    pub(super) clock: WallClock,
    pub(super) tables: Tables,
    pub(super) nonces: NonceCache,
    pub(super) register_limiter: RateLimiter<IpAddr>,
    request_limiter: RateLimiter<IpAddr>,
    pub(super) asked: std::collections::BTreeSet<(u32, u32)>,
    connections: BTreeMap<ConnectionId, Connection>,
    outgoing: VecDeque<(ConnectionId, Vec<u8>)>,
    events: VecDeque<ServerEvent>,
    dirty: bool,
    next_reap: Instant,
    last_now: Instant,
}

impl RegistryServer {
    /// Creates an empty registry; `unix_now` anchors wall-clock fields (heartbeat `time`,
    /// handshake timestamps, hardened proof windows) to `now`.
    pub fn new(config: RegistryConfig, now: Instant, unix_now: u64) -> Self {
        let clock = WallClock::new(now, unix_now);
        let tables = Tables::new(unix_now);
        Self::with_tables(config, now, clock, tables)
    }

    /// Rebuilds a registry from a snapshot written by [`Self::encode_state`].
    ///
    /// Nodes keep their last-seen times, so those offline for longer than the expiry are
    /// reaped at the first timeout, as in v0.5.
    ///
    /// # Errors
    /// [`RecoverError`] when the snapshot is corrupt; the driver then starts empty.
    pub fn recover(
        config: RegistryConfig,
        now: Instant,
        unix_now: u64,
        snapshot: &[u8],
    ) -> Result<Self, RecoverError> {
        let clock = WallClock::new(now, unix_now);
        let tables = Tables::recover(snapshot, &clock, now, config.max_nodes)?;
        Ok(Self::with_tables(config, now, clock, tables))
    }

    fn with_tables(config: RegistryConfig, now: Instant, clock: WallClock, tables: Tables) -> Self {
        let idle = Duration::from_secs(120);
        Self {
            register_limiter: RateLimiter::new(config.register_limit, config.max_sources, idle),
            request_limiter: RateLimiter::new(config.request_limit, config.max_sources, idle),
            next_reap: now + config.reap_interval,
            config,
            clock,
            tables,
            nonces: NonceCache::default(),
            asked: Default::default(),
            connections: BTreeMap::new(),
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
            dirty: false,
            last_now: now,
        }
    }

    /// A connection was accepted from `peer`.
    pub fn handle_connect(&mut self, now: Instant, conn: ConnectionId, peer: SocketAddr) {
        let now = self.clamp(now);
        if self.connections.len() >= self.config.max_connections {
            debug!(conn = conn.0, "refusing connection: table full");
            self.events.push_back(ServerEvent::Close {
                conn,
                reason: CloseReason::TooManyConnections,
            });
            return;
        }
        let connection = Connection {
            peer,
            decoder: FrameDecoder::default(),
            last_activity: now,
            queued: 0,
        };
        self.connections.insert(conn, connection);
    }

    /// Bytes arrived on a connection; whole requests are answered in order.
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnectionId, bytes: &[u8]) {
        let now = self.clamp(now);
        let Some(connection) = self.connections.get_mut(&conn) else {
            return;
        };
        connection.last_activity = now;
        if let Err(error) = connection.decoder.push(bytes) {
            debug!(conn = conn.0, %error, "closing connection: bad framing");
            self.close(conn, CloseReason::BadFraming);
        }

        // Answer every whole frame (a framing error above already dropped the connection).
        while let Some((peer, body)) = self.next_body(conn) {
            self.answer_frame(now, conn, peer, &body);
        }
    }

    /// The connection ended (either side); forget its state.
    pub fn handle_disconnect(&mut self, _now: Instant, conn: ConnectionId) {
        self.connections.remove(&conn);
        self.outgoing.retain(|(owner, _)| *owner != conn);
    }

    /// Runs due timers: reaping, idle connections, table pruning.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        let idle: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|(_, c)| {
                now.saturating_duration_since(c.last_activity) >= self.config.idle_timeout
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in idle {
            self.close(conn, CloseReason::Idle);
        }
        if now >= self.next_reap {
            self.reap(now);
            self.next_reap = now + self.config.reap_interval;
        }
    }

    /// Handles one parsed request from `source` and returns the response (no framing).
    pub fn handle_request(
        &mut self,
        now: Instant,
        source: SocketAddr,
        request: Request,
    ) -> Response {
        let now = self.clamp(now);
        let type_name = request.type_name().to_owned();
        if !self.request_limiter.allow(now, &source.ip()) {
            return error_response(ErrorCode::RateLimited);
        }
        match self.dispatch(now, source, request) {
            Ok(response) => response,
            Err(code) => {
                debug!(request = %type_name, code = code.as_str(), "request refused");
                error_response(code)
            }
        }
    }

    /// Next bytes to write, appended to a cleared `buf`.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<StreamTransmit> {
        let (conn, bytes) = self.outgoing.pop_front()?;
        if let Some(connection) = self.connections.get_mut(&conn) {
            connection.queued = connection.queued.saturating_sub(1);
        }
        buf.clear();
        buf.extend_from_slice(&bytes);
        Some(StreamTransmit {
            conn,
            len: bytes.len(),
        })
    }

    /// Next thing the driver must do.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self
            .connections
            .values()
            .map(|c| c.last_activity + self.config.idle_timeout)
            .min();
        Some(idle.map_or(self.next_reap, |idle| idle.min(self.next_reap)))
    }

    /// Encodes the persistent state (see `state.rs` for the format).
    pub fn encode_state(&self, now: Instant) -> Vec<u8> {
        self.tables.encode(&self.clock, now.max(self.last_now))
    }

    /// True when the state changed since the last [`Self::mark_persisted`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The driver wrote the state durably.
    pub fn mark_persisted(&mut self) {
        self.dirty = false;
    }

    /// Live node count.
    pub fn node_count(&self) -> usize {
        self.tables.nodes.len()
    }

    /// Open connection count.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Unix seconds at `now` by the server's wall clock.
    pub fn unix_at(&self, now: Instant) -> u64 {
        self.clock.unix_at(now)
    }

    pub(super) fn mark_dirty(&mut self) {
        if !self.dirty {
            self.dirty = true;
            self.events.push_back(ServerEvent::StateDirty);
        }
    }

    fn next_body(&mut self, conn: ConnectionId) -> Option<(SocketAddr, Vec<u8>)> {
        let connection = self.connections.get_mut(&conn)?;
        Some((connection.peer, connection.decoder.next_frame()?))
    }

    fn answer_frame(&mut self, now: Instant, conn: ConnectionId, peer: SocketAddr, body: &[u8]) {
        let response = match Request::from_json(body) {
            Ok(Request::SubscribeReplication(_)) => {
                // Limitation: hot-standby replication is not implemented; this answers as a v0.5
                // primary without a replication token does, and closes.
                self.enqueue(conn, &error_text("replication not configured"));
                self.close(conn, CloseReason::Finished);
                return;
            }
            Ok(request) => self.handle_request(now, peer, request),
            Err(error) => {
                debug!(conn = conn.0, %error, "unparsable request");
                error_response(ErrorCode::InvalidRequest)
            }
        };
        self.enqueue(conn, &response);
    }

    fn enqueue(&mut self, conn: ConnectionId, response: &Response) {
        let Some(connection) = self.connections.get_mut(&conn) else {
            return;
        };
        if connection.queued >= self.config.max_output_frames {
            self.close(conn, CloseReason::OutputBacklog);
            return;
        }
        let mut frame = Vec::new();
        if response.encode_frame(&mut frame).is_err() {
            // Only a list response could exceed 1 MiB; answer with an error instead.
            frame.clear();
            let _ = error_response(ErrorCode::TableFull).encode_frame(&mut frame);
        }
        connection.queued += 1;
        self.outgoing.push_back((conn, frame));
    }

    fn close(&mut self, conn: ConnectionId, reason: CloseReason) {
        if self.connections.remove(&conn).is_some() {
            self.events.push_back(ServerEvent::Close { conn, reason });
        }
    }

    fn reap(&mut self, now: Instant) {
        let expiry = self.config.node_expiry;
        let expired: Vec<u32> = self
            .tables
            .nodes
            .values()
            .filter(|node| now.saturating_duration_since(node.last_seen) > expiry)
            .map(|node| node.id)
            .collect();
        for id in &expired {
            self.tables.remove_node(*id);
        }
        if !expired.is_empty() {
            debug!(count = expired.len(), "reaped expired nodes");
            self.mark_dirty();
        }
        let beacon_expiry = self.config.beacon_expiry;
        self.tables
            .beacons
            .retain(|_, (_, seen)| now.saturating_duration_since(*seen) <= beacon_expiry);
        self.register_limiter.prune(now);
        self.request_limiter.prune(now);
        self.nonces.prune(self.clock.unix_at(now));
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        if now < self.last_now {
            debug!("time moved backwards; clamping");
            return self.last_now;
        }
        self.last_now = now;
        now
    }
}

/// The `error` reply: v0.5 text plus a machine-readable code.
pub(super) fn error_response(code: ErrorCode) -> Response {
    Response::Error(ErrorReply {
        error: "request failed".into(),
        code: Some(code.as_str().into()),
    })
}

fn error_text(text: &str) -> Response {
    Response::Error(ErrorReply {
        error: text.into(),
        code: None,
    })
}
