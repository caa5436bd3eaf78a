//! The outbound feed: an in-daemon subscriber to every (non-system) topic on the local broker
//! that hands each logged event to the outbound queue, resuming after a restart from a
//! persisted cursor with `since`, so no event logged while the daemon was down is skipped.
//!
//! It connects over the daemon's own IPC socket like any client, speaks the extended event
//! protocol (`pilot_proto::pubsub::client::ClientSession`), subscribes to `>` with
//! `since = cursor + 1` (or from the broker head on first use), and for each event: enqueue
//! (fsynced) and then advance the cursor (saved after each batch). An overflow gap (the queue
//! was slow) reconnects and replays from the cursor; an expired gap (retention evicted events
//! before they were forwarded) is counted in `missed`.
//!
//! # Limitations
//!
//! - A crash between an enqueue and the cursor save re-enqueues that event after the restart,
//!   under a new `webhook-id`: outbound delivery is at least once across crashes.
//! - System topics (`$...`) are not forwarded: the `>` filter never matches them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pilot_proto::pubsub::client::{ClientSession, SubscribeOptions};
use pilot_proto::pubsub::codec::{Delivery, GapNotice, GapReason, ServerMessage};
use pilot_proto::pubsub::{Seq, TopicFilter};
use serde_json::json;
use tokio::io::AsyncReadExt as _;

use super::store::Store;
use crate::client::{Client, Conn};
use crate::client_proto::PORT_EVENTS;
use crate::shim::addr::AddrPort;
use crate::webhook::outbound::{EnqueueError, OutboundEvent, OutboundHandle};

/// Wait before reconnecting after an error.
const RECONNECT: Duration = Duration::from_millis(500);
/// Wait before retrying an enqueue the full queue refused.
const QUEUE_FULL_RETRY: Duration = Duration::from_secs(1);

/// What `pilotctl webhook-status` shows about the feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FeedStats {
    /// Subscribed to the local broker right now.
    pub connected: bool,
    /// Last broker sequence number queued for delivery.
    pub cursor: Option<u64>,
    /// Events retention evicted before they could be queued (total).
    pub missed: u64,
    /// Times the feed (re)connected.
    pub connects: u64,
    /// The last error, if the feed is not connected.
    pub last_error: Option<String>,
}

/// Shared view of the feed's stats.
pub type SharedFeedStats = Arc<Mutex<FeedStats>>;

/// The feed's fixed inputs.
#[derive(Debug, Clone)]
pub struct Feed {
    /// The daemon's IPC socket.
    pub socket: PathBuf,
    /// Where the cursor is saved.
    pub store: Store,
    /// The outbound sender to feed.
    pub sender: Arc<OutboundHandle>,
    /// Stats for `pilotctl`.
    pub stats: SharedFeedStats,
}

fn update(stats: &SharedFeedStats, f: impl FnOnce(&mut FeedStats)) {
    f(&mut stats.lock().unwrap_or_else(PoisonError::into_inner));
}

/// Why a session ended (always followed by a reconnect).
enum End {
    Error(String),
    Replay,
}

impl Feed {
    /// Runs until aborted: connect, forward, reconnect.
    pub async fn run(self) {
        let mut cursor = self.store.load_cursor();
        update(&self.stats, |s| s.cursor = cursor);
        loop {
            let end = self.session(&mut cursor).await;
            let text = match end {
                End::Error(text) => Some(text),
                End::Replay => None,
            };
            update(&self.stats, |s| {
                s.connected = false;
                s.last_error = text.clone();
            });
            if let Some(text) = text {
                tracing::debug!(error = %text, "outbound webhook feed disconnected");
                tokio::time::sleep(RECONNECT).await;
            }
        }
    }

    async fn session(&self, cursor: &mut Option<u64>) -> End {
        let (client, conn, node) = match connect(&self.socket).await {
            Ok(parts) => parts,
            Err(text) => return End::Error(text),
        };
        let mut session = ClientSession::new();
        let Ok(filter) = TopicFilter::parse(">") else {
            return End::Error("the `>` filter does not parse".into());
        };
        let since = cursor.map(|c| Seq(c).next());
        let options = SubscribeOptions {
            since,
            ..SubscribeOptions::default()
        };
        let (_, subscribe) = session.subscribe(filter, options);
        let hello = session.hello();
        for frame in [hello, subscribe] {
            if let Err(e) = conn.send_all(&frame).await {
                return End::Error(e.to_string());
            }
        }
        update(&self.stats, |s| {
            s.connected = true;
            s.connects += 1;
            s.last_error = None;
        });
        let end = self.forward(conn, session, node, cursor).await;
        drop(client);
        end
    }

    async fn forward(
        &self,
        mut conn: Conn,
        mut session: ClientSession,
        node: u32,
        cursor: &mut Option<u64>,
    ) -> End {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match conn.read(&mut buf).await {
                Ok(0) => return End::Error("the broker closed the feed".into()),
                Ok(n) => n,
                Err(e) => return End::Error(e.to_string()),
            };
            if let Err(e) = session.handle_bytes(&buf[..n]) {
                return End::Error(e.to_string());
            }
            let before = *cursor;
            let mut end = None;
            while let Some(message) = session.poll_message() {
                end = self.on_message(message, node, cursor).await;
                if end.is_some() {
                    break;
                }
            }
            self.save(before, *cursor).await;
            if let Some(end) = end {
                return end;
            }
        }
    }

    async fn on_message(
        &self,
        message: ServerMessage,
        node: u32,
        cursor: &mut Option<u64>,
    ) -> Option<End> {
        match message {
            ServerMessage::Welcome { head, .. } if cursor.is_none() => {
                *cursor = Some(head.0);
                None
            }
            ServerMessage::Event(delivery) => self.on_event(delivery, node, cursor).await,
            ServerMessage::Gap(gap) => self.on_gap(gap, cursor),
            ServerMessage::Error { message, .. } => Some(End::Error(message)),
            _ => None,
        }
    }

    async fn on_event(
        &self,
        delivery: Delivery,
        node: u32,
        cursor: &mut Option<u64>,
    ) -> Option<End> {
        let seq = delivery.seq.0;
        if cursor.is_some_and(|c| seq <= c) {
            return None;
        }
        let data = json!({"topic": delivery.topic.as_str(), "seq": seq});
        let event =
            OutboundEvent::with_payload("pubsub.published", node, data, &delivery.payload);
        // Bounded only by the sender's own limits: a full queue waits for deliveries.
        loop {
            match self.sender.enqueue(&event).await {
                Ok(_) => break,
                Err(EnqueueError::Full(_)) => tokio::time::sleep(QUEUE_FULL_RETRY).await,
                Err(err) => {
                    // Counted by the sender as `refused`; the event cannot ever be queued.
                    tracing::warn!(%err, seq, "event not queued for outbound delivery");
                    break;
                }
            }
        }
        *cursor = Some(seq);
        None
    }

    fn on_gap(&self, gap: GapNotice, cursor: &mut Option<u64>) -> Option<End> {
        match gap.reason {
            GapReason::Expired => {
                tracing::warn!(from = gap.from.0, to = gap.to.0, "outbound feed missed events");
                update(&self.stats, |s| s.missed += gap.missed);
                *cursor = Some(cursor.map_or(gap.to.0, |c| c.max(gap.to.0)));
                None
            }
            _ => Some(End::Replay),
        }
    }

    async fn save(&self, before: Option<u64>, after: Option<u64>) {
        let Some(seq) = after.filter(|_| after != before) else {
            return;
        };
        let store = self.store.clone();
        let saved = tokio::task::spawn_blocking(move || store.save_cursor(seq)).await;
        if let Err(err) = saved.map_err(|e| e.to_string()).and_then(|r| r) {
            tracing::error!(%err, "outbound webhook cursor not saved");
        }
        update(&self.stats, |s| s.cursor = Some(seq));
    }
}

/// Connects to the daemon, waits for the node's address and opens a stream to its broker.
async fn connect(socket: &PathBuf) -> Result<(Client, Conn, u32), String> {
    let client = Client::connect(socket).await.map_err(|e| e.to_string())?;
    let addr = client.address().await.map_err(|e| e.to_string())?;
    if addr.node == 0 {
        return Err("the node has no address yet".into());
    }
    let remote = AddrPort {
        addr,
        port: PORT_EVENTS,
    };
    let conn = client.dial(remote).await.map_err(|e| e.to_string())?;
    Ok((client, conn, addr.node))
}
