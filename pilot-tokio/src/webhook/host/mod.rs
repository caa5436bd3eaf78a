//! The webhook host inside the daemon: runs the inbound receiver and the outbound sender as
//! `pilotctl` configures them, persists that configuration under `<home>/webhook/` and
//! restores it when the daemon starts.
//!
//! One task owns the running pieces; IPC sessions reach it through a [`HostHandle`] with
//! [`HostRequest`]s (the `0x84` extension, see [`ipc`]) or the v0.5 `SetWebhook` (outbound URL
//! only). The pieces:
//!
//! - inbound: [`crate::webhook::inbound`] with a [`publish::DriverSink`], so a provider gets
//!   2xx only once the driver confirmed `Command::PublishDurable` and the delivery id is
//!   journalled ([`store`]);
//! - outbound: [`crate::webhook::outbound`] fed by [`feed::Feed`], a subscriber to every topic
//!   of the local broker that resumes from a saved cursor.
//!
//! A start failure at restore time (port taken, bad file) is logged and shown by
//! `webhook-status`; the daemon runs on without that side.
//!
//! # Limitations
//!
//! - Replacing the inbound receiver stops the old one before binding the new one, so requests
//!   arriving in between are refused (connection refused; providers retry).
//! - Changing the outbound URL keeps the queue: events queued for the old target are delivered
//!   to the new one.
//! - See also [`feed`] and [`store`].

pub mod feed;
pub mod ipc;
pub mod publish;
mod spec;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use ipc::HostRequest;

use self::feed::{Feed, FeedStats, SharedFeedStats};
use self::publish::DriverSink;
use self::store::{InboundSpec, OutboundSpec, Store, StoredConfig};
use crate::driver::commands::Command;
use crate::webhook::verify::Secret;
use crate::webhook::{InboundHandle, OutboundHandle, dedupe, inbound, outbound};

/// Requests queued for the host task.
const CALL_DEPTH: usize = 16;
/// Longest wait for a new outbound feed to be subscribed before `set` answers.
const FEED_READY: Duration = Duration::from_secs(10);
/// Longest wait for the old receiver to finish its requests when it is replaced.
const INBOUND_STOP: Duration = Duration::from_secs(5);

type Call = (HostRequest, oneshot::Sender<Result<Value, String>>);

/// How IPC sessions reach the webhook host. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HostHandle {
    calls: mpsc::Sender<Call>,
}

impl HostHandle {
    /// Runs one request; the error text goes back to the client.
    pub async fn call(&self, request: HostRequest) -> Result<Value, String> {
        let (reply, answer) = oneshot::channel();
        let gone = || "the webhook host has stopped".to_owned();
        self.calls
            .send((request, reply))
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// The v0.5 `SetWebhook`: sets ("" clears) the outbound URL, keeping or generating the
    /// signing secret. Answers v0.5's `{"webhook": url}` (plus `generated_secret` if one was
    /// made).
    pub async fn set_outbound_v05(&self, url: String) -> Result<Value, String> {
        let request = if url.is_empty() {
            HostRequest::Clear {
                inbound: false,
                outbound: true,
            }
        } else {
            let spec = OutboundSpec {
                url: url.clone(),
                secret: String::new(),
                retry_initial_ms: None,
                max_attempts: None,
            };
            HostRequest::Set {
                inbound: None,
                outbound: Some(spec),
            }
        };
        let status = self.call(request).await?;
        let mut reply = json!({"webhook": url});
        if let Some(secret) = status.get("generated_secret") {
            reply["generated_secret"] = secret.clone();
        }
        Ok(reply)
    }
}

/// Starts the host: restores the saved configuration and serves requests until every
/// [`HostHandle`] is dropped.
pub async fn start(home: &Path, socket: PathBuf, driver: mpsc::Sender<Command>) -> HostHandle {
    let store = Store::new(home);
    let config = store.load_config().unwrap_or_else(|err| {
        tracing::warn!(%err, "webhook config unreadable; starting without webhooks");
        StoredConfig::default()
    });
    let mut host = Host {
        store,
        socket,
        driver,
        config: StoredConfig::default(),
        inbound: None,
        inbound_error: None,
        outbound: None,
        outbound_error: None,
    };
    host.restore(config).await;

    let (calls, mut rx) = mpsc::channel::<Call>(CALL_DEPTH);
    tokio::spawn(async move {
        while let Some((request, reply)) = rx.recv().await {
            let _ = reply.send(host.handle(request).await);
        }
        host.stop_all().await;
    });
    HostHandle { calls }
}

/// The running outbound side.
struct Outbound {
    sender: Arc<OutboundHandle>,
    feed: JoinHandle<()>,
    stats: SharedFeedStats,
}

struct Host {
    store: Store,
    socket: PathBuf,
    driver: mpsc::Sender<Command>,
    /// What is running (and saved).
    config: StoredConfig,
    inbound: Option<InboundHandle>,
    inbound_error: Option<String>,
    outbound: Option<Outbound>,
    outbound_error: Option<String>,
}

impl Host {
    async fn restore(&mut self, config: StoredConfig) {
        if let Some(spec) = config.inbound {
            match self.launch_inbound(&spec).await {
                Ok(handle) => self.inbound = Some(handle),
                Err(err) => {
                    tracing::warn!(%err, "webhook receiver not restored");
                    self.inbound_error = Some(err);
                }
            }
            self.config.inbound = Some(spec);
        }
        if let Some(spec) = config.outbound {
            match self.launch_outbound(&spec, true).await {
                Ok(running) => self.outbound = Some(running),
                Err(err) => {
                    tracing::warn!(%err, "outbound webhooks not restored");
                    self.outbound_error = Some(err);
                }
            }
            self.config.outbound = Some(spec);
        }
    }

    async fn handle(&mut self, request: HostRequest) -> Result<Value, String> {
        match request {
            HostRequest::Set { inbound, outbound } => self.set(inbound, outbound).await,
            HostRequest::Clear { inbound, outbound } => {
                self.clear(inbound, outbound).await?;
                Ok(self.status())
            }
            HostRequest::Status => Ok(self.status()),
        }
    }

    async fn set(
        &mut self,
        inbound: Option<InboundSpec>,
        outbound: Option<OutboundSpec>,
    ) -> Result<Value, String> {
        if inbound.is_none() && outbound.is_none() {
            return Err("nothing to set: give an inbound url and/or --outbound".into());
        }
        let mut generated = None;
        let outbound = outbound.map(|spec| self.fill_secret(spec, &mut generated));
        let outbound = outbound.transpose()?;
        // Check both sides before stopping anything that runs.
        if let Some(spec) = &inbound {
            spec::inbound_config(spec, Vec::new())?;
        }
        if let Some(spec) = &outbound {
            spec::outbound_config(spec, self.store.queue_dir())?;
        }
        let inbound_after = inbound.as_ref().or(self.config.inbound.as_ref());
        let outbound_after = outbound.as_ref().or(self.config.outbound.as_ref());
        if let (Some(i), Some(o)) = (inbound_after, outbound_after) {
            spec::refuse_loop(i, o)?;
        }

        if let Some(spec) = inbound {
            self.replace_inbound(spec).await?;
        }
        if let Some(spec) = outbound {
            self.replace_outbound(spec).await?;
        }
        let mut status = self.status();
        if let Some(secret) = generated {
            status["generated_secret"] = secret.into();
        }
        Ok(status)
    }

    /// An empty outbound secret keeps the current one, or gets a fresh one (returned once).
    fn fill_secret(
        &self,
        mut spec: OutboundSpec,
        generated: &mut Option<String>,
    ) -> Result<OutboundSpec, String> {
        if !spec.secret.is_empty() {
            return Ok(spec);
        }
        if let Some(current) = &self.config.outbound {
            spec.secret.clone_from(&current.secret);
            return Ok(spec);
        }
        let (_, text) = Secret::generate().map_err(|e| e.to_string())?;
        spec.secret.clone_from(&text);
        *generated = Some(text);
        Ok(spec)
    }

    async fn replace_inbound(&mut self, spec: InboundSpec) -> Result<(), String> {
        self.stop_inbound().await;
        match self.launch_inbound(&spec).await {
            Ok(handle) => {
                self.inbound = Some(handle);
                self.inbound_error = None;
                self.config.inbound = Some(spec);
                self.save()
            }
            Err(err) => {
                // Put the previous receiver back, if there was one.
                if let Some(old) = self.config.inbound.clone() {
                    self.inbound = self.launch_inbound(&old).await.ok();
                }
                Err(err)
            }
        }
    }

    async fn replace_outbound(&mut self, spec: OutboundSpec) -> Result<(), String> {
        let same_target = self.config.outbound.as_ref().map(|o| &o.url) == Some(&spec.url);
        self.stop_outbound().await;
        if !same_target {
            // A new target starts from "now", not from where the old one stopped.
            self.store.clear_cursor();
        }
        let running = match self.launch_outbound(&spec, false).await {
            Ok(running) => running,
            Err(err) => {
                self.outbound_error = Some(err.clone());
                return Err(err);
            }
        };
        let ready = running.stats.subscribe();
        self.outbound = Some(running);
        self.outbound_error = None;
        self.config.outbound = Some(spec);
        self.save()?;
        wait_connected(ready).await;
        Ok(())
    }

    async fn clear(&mut self, inbound: bool, outbound: bool) -> Result<(), String> {
        if inbound {
            self.stop_inbound().await;
            self.config.inbound = None;
            self.inbound_error = None;
        }
        if outbound {
            self.stop_outbound().await;
            self.store.clear_cursor();
            self.config.outbound = None;
            self.outbound_error = None;
        }
        self.save()
    }

    fn save(&self) -> Result<(), String> {
        self.store
            .save_config(&self.config)
            .map_err(|e| format!("webhook config not saved: {e}"))
    }

    async fn launch_inbound(&self, spec: &InboundSpec) -> Result<InboundHandle, String> {
        let store = self.store.clone();
        let max_age = dedupe::DEFAULT_MAX_AGE;
        let now = crate::driver::unix_now();
        let journal = tokio::task::spawn_blocking(move || store.open_journal(now, max_age))
            .await
            .map_err(|e| e.to_string())??;
        let remembered = journal.remembered.clone();
        let config = spec::inbound_config(spec, remembered)?;
        let sink = DriverSink::new(self.driver.clone(), Arc::new(journal));
        inbound::start(config, Arc::new(sink))
            .await
            .map_err(|e| e.to_string())
    }

    /// Starts the sender and its feed; `restart` is true when the daemon itself just started.
    async fn launch_outbound(
        &self,
        spec: &OutboundSpec,
        restart: bool,
    ) -> Result<Outbound, String> {
        let config = spec::outbound_config(spec, self.store.queue_dir())?;
        let sender = outbound::start(config).await.map_err(|e| e.to_string())?;
        let sender = Arc::new(sender);
        let stats: SharedFeedStats = Arc::new(watch::Sender::new(FeedStats::default()));
        let feed = Feed {
            socket: self.socket.clone(),
            store: self.store.clone(),
            sender: sender.clone(),
            stats: stats.clone(),
            restart,
        };
        tracing::info!("outbound webhooks started");
        Ok(Outbound {
            sender,
            feed: tokio::spawn(feed.run()),
            stats,
        })
    }

    async fn stop_inbound(&mut self) {
        let Some(handle) = self.inbound.take() else {
            return;
        };
        if tokio::time::timeout(INBOUND_STOP, handle.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("webhook receiver slow to stop; replacing it anyway");
        }
        tracing::info!("webhook receiver stopped");
    }

    async fn stop_outbound(&mut self) {
        let Some(running) = self.outbound.take() else {
            return;
        };
        running.feed.abort();
        let _ = running.feed.await;
        if let Ok(sender) = Arc::try_unwrap(running.sender) {
            sender.shutdown().await;
        }
        tracing::info!("outbound webhooks stopped");
    }

    async fn stop_all(&mut self) {
        self.stop_inbound().await;
        self.stop_outbound().await;
    }

    /// Configuration without secrets, and counters.
    fn status(&self) -> Value {
        json!({
            "inbound": self.inbound_status(),
            "outbound": self.outbound_status(),
        })
    }

    fn inbound_status(&self) -> Value {
        let Some(spec) = &self.config.inbound else {
            return Value::Null;
        };
        json!({
            "url": spec.url,
            "scheme": spec.provider,
            "secrets": spec.secrets.len(),
            "topic": spec.topic,
            "topic_header": spec.topic_header,
            "running": self.inbound.is_some(),
            "listen": self.inbound.as_ref().map(|h| h.local_addr().to_string()),
            "error": self.inbound_error,
            "stats": self.inbound.as_ref().map(InboundHandle::stats),
        })
    }

    fn outbound_status(&self) -> Value {
        let Some(spec) = &self.config.outbound else {
            return Value::Null;
        };
        let running = self.outbound.as_ref();
        json!({
            "url": spec.url,
            "running": running.is_some(),
            "error": self.outbound_error,
            "stats": running.map(|o| o.sender.stats()),
            "feed": running.map(|o| o.stats.borrow().clone()),
        })
    }
}

/// Waits (bounded) until a new feed has subscribed, so events published after `set` answers
/// are forwarded even on first use.
async fn wait_connected(mut stats: watch::Receiver<FeedStats>) {
    let ready = tokio::time::timeout(FEED_READY, stats.wait_for(|s| s.connected)).await;
    if !matches!(ready, Ok(Ok(_))) {
        tracing::warn!("outbound feed not subscribed yet; it keeps trying");
    }
}
