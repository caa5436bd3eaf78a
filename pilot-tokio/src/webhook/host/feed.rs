//! The outbound feed: an in-daemon subscriber to every (non-system) topic on the local broker
//! that hands each event to the outbound queue, resuming after a restart from a persisted
//! cursor, so no event retained while the daemon was down or the receiver was failing is
//! skipped.
//!
//! It connects over the daemon's own IPC socket like any client and speaks the extended event
//! protocol (`pilot_proto::pubsub::client::ClientSession`): hello, then (knowing the broker's
//! head from the welcome) a subscribe to `>` with `since = cursor + 1`, or live from the head
//! on first use. For each event: enqueue (fsynced by the queue), then advance the cursor, which
//! is saved after each batch. An overflow gap (the queue was slow) reconnects and replays from
//! the cursor; an expired gap (retention evicted events before they were forwarded) is counted
//! in `missed`.
//!
//! # Limitations
//!
//! - A crash between an enqueue and the cursor save re-enqueues that event after the restart,
//!   under a new `webhook-id`: outbound delivery is at least once across crashes.
//! - System topics (`$...`) are not forwarded: the `>` filter never matches them.
//! - Without a persistent event log (`<home>/events.log`), the cursor is not trusted across a
//!   daemon restart: the feed starts from sequence 1 of the new, empty log. A broker whose head
//!   is behind the saved cursor has lost its log; the feed then also replays from sequence 1.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pilot_proto::pubsub::client::{ClientSession, SubscribeOptions};
use pilot_proto::pubsub::codec::{Delivery, GapNotice, GapReason, ServerMessage};
use pilot_proto::pubsub::{Seq, TopicFilter};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

use super::store::Store;
use crate::client::{Client, Conn};
use crate::client_proto::PORT_EVENTS;
use crate::shim::addr::AddrPort;
use crate::webhook::outbound::{EnqueueError, OutboundEvent, OutboundHandle};

/// Wait before reconnecting after an error.
const RECONNECT: Duration = Duration::from_millis(500);
/// Wait before retrying an enqueue the full queue refused.
const QUEUE_FULL_RETRY: Duration = Duration::from_secs(1);
/// Longest wait for the broker's welcome and subscription acknowledgement.
const HANDSHAKE: Duration = Duration::from_secs(10);

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

/// Shared, observable view of the feed's stats (the host waits on it for the first connect).
pub type SharedFeedStats = Arc<watch::Sender<FeedStats>>;

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
    /// The daemon has just started (not a `set-webhook` while it runs).
    pub restart: bool,
}

fn update(stats: &SharedFeedStats, f: impl FnOnce(&mut FeedStats)) {
    stats.send_modify(f);
}

/// Why a session ended (always followed by a reconnect).
enum End {
    Error(String),
    Replay,
}

/// One open connection to the broker.
struct Link {
    conn: Conn,
    session: ClientSession,
    node: u32,
    buf: Vec<u8>,
    _client: Client,
}

impl Feed {
    /// Runs until aborted: connect, forward, reconnect.
    pub async fn run(self) {
        let mut cursor = self.store.load_cursor();
        if self.restart && cursor.is_some() && !self.store.event_log_persists() {
            // Limitation: without `<home>/events.log` the broker's log starts empty with the
            // daemon and its sequence numbers start over, so the saved cursor means nothing:
            // every event it holds is new, from sequence 1.
            cursor = Some(0);
        }
        update(&self.stats, |s| s.cursor = cursor);
        loop {
            let end = self.session(&mut cursor).await;
            let text = match end {
                End::Error(text) => Some(text),
                End::Replay => None,
            };
            update(&self.stats, |s| {
                s.connected = false;
                s.last_error.clone_from(&text);
            });
            if let Some(text) = text {
                tracing::debug!(error = %text, "outbound webhook feed disconnected");
                tokio::time::sleep(RECONNECT).await;
            }
        }
    }

    async fn session(&self, cursor: &mut Option<u64>) -> End {
        let subscribed = tokio::time::timeout(HANDSHAKE, self.subscribe(cursor)).await;
        let mut link = match subscribed {
            Ok(Ok(link)) => link,
            Ok(Err(text)) => return End::Error(text),
            Err(_) => return End::Error("the broker did not answer the subscription".into()),
        };
        update(&self.stats, |s| {
            s.connected = true;
            s.connects += 1;
            s.cursor = *cursor;
            s.last_error = None;
        });
        self.forward(&mut link, cursor).await
    }

    /// Connects, learns the broker's head and subscribes from the right place.
    async fn subscribe(&self, cursor: &mut Option<u64>) -> Result<Link, String> {
        // The node has an address only once registered, and the broker's log is restored
        // before that is visible, so `head` is the restored head.
        let (mut link, head) = hello(&self.socket).await?;

        let since = match *cursor {
            None => {
                *cursor = Some(head);
                None
            }
            Some(c) if c > head => {
                tracing::warn!(
                    cursor = c,
                    head,
                    "event log behind the outbound cursor; replaying"
                );
                *cursor = Some(0);
                Some(Seq(1))
            }
            Some(c) => Some(Seq(c).next()),
        };
        let filter = TopicFilter::parse(">").map_err(|e| e.to_string())?;
        let options = SubscribeOptions {
            since,
            ..SubscribeOptions::default()
        };
        let (_, frame) = link.session.subscribe(filter, options);
        link.send(&frame).await?;
        link.expect(|m| matches!(m, ServerMessage::SubAck { .. }).then_some(()))
            .await?;
        Ok(link)
    }

    async fn forward(&self, link: &mut Link, cursor: &mut Option<u64>) -> End {
        loop {
            let before = *cursor;
            let mut end = None;
            while let Some(message) = link.session.poll_message() {
                end = self.on_message(message, link.node, cursor).await;
                if end.is_some() {
                    break;
                }
            }
            self.save(before, *cursor).await;
            if let Some(end) = end {
                return end;
            }
            if let Err(text) = link.read().await {
                return End::Error(text);
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
            ServerMessage::Event(delivery) => self.on_event(delivery, node, cursor).await,
            ServerMessage::Gap(gap) => self.on_gap(&gap, cursor),
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
        let event = OutboundEvent::with_payload("pubsub.published", node, data, &delivery.payload);
        // A full queue waits for deliveries; the broker buffers (or reports a gap) meanwhile.
        loop {
            match self.sender.enqueue(&event).await {
                Ok(_) => break,
                Err(EnqueueError::Full(_)) => tokio::time::sleep(QUEUE_FULL_RETRY).await,
                Err(err) => {
                    // Counted by the sender as `refused`; this event can never be queued.
                    tracing::warn!(%err, seq, "event not queued for outbound delivery");
                    break;
                }
            }
        }
        *cursor = Some(seq);
        None
    }

    fn on_gap(&self, gap: &GapNotice, cursor: &mut Option<u64>) -> Option<End> {
        match gap.reason {
            GapReason::Expired => {
                tracing::warn!(
                    from = gap.from.0,
                    to = gap.to.0,
                    "outbound feed missed events"
                );
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

impl Link {
    /// Writes one frame and waits until the daemon accepted it (through `&mut`: a `Conn` is
    /// not `Sync`, and this future must be `Send`).
    async fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        self.conn
            .write_all(frame)
            .await
            .map_err(|e| e.to_string())?;
        self.conn.flush().await.map_err(|e| e.to_string())
    }

    /// Reads once from the broker into the session.
    async fn read(&mut self) -> Result<(), String> {
        let n = match self.conn.read(&mut self.buf).await {
            Ok(0) => return Err("the broker closed the feed".into()),
            Ok(n) => n,
            Err(e) => return Err(e.to_string()),
        };
        self.session
            .handle_bytes(&self.buf[..n])
            .map_err(|e| e.to_string())
    }

    /// Waits for the first message `pick` accepts; messages before it are dropped (nothing
    /// but control messages can come before the subscription is acknowledged).
    async fn expect<T>(&mut self, pick: impl Fn(&ServerMessage) -> Option<T>) -> Result<T, String> {
        loop {
            while let Some(message) = self.session.poll_message() {
                if let ServerMessage::Error { message, .. } = &message {
                    return Err(message.clone());
                }
                if let Some(found) = pick(&message) {
                    return Ok(found);
                }
            }
            self.read().await?;
        }
    }
}

/// Connects and says hello; returns the link and the broker's head.
async fn hello(socket: &PathBuf) -> Result<(Link, u64), String> {
    let mut link = connect(socket).await?;
    let hello = link.session.hello();
    link.send(&hello).await?;
    let head = link
        .expect(|m| match m {
            ServerMessage::Welcome { head, .. } => Some(head.0),
            _ => None,
        })
        .await?;
    Ok((link, head))
}

/// Connects to the daemon, waits for the node's address and opens a stream to its broker.
async fn connect(socket: &PathBuf) -> Result<Link, String> {
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
    Ok(Link {
        conn,
        session: ClientSession::new(),
        node: addr.node,
        buf: vec![0u8; 64 * 1024],
        _client: client,
    })
}
