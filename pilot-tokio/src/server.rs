//! The local IPC server: a Unix socket (mode 0600) speaking the v0.5 daemon IPC.
//!
//! Each session has a reader (this task), a writer task and a task that forwards the driver's
//! pushes. Requests are handed to the driver and answered when the driver replies, so a slow dial
//! never holds up the session's other requests or any other session. Untagged replies are
//! written in request order, which is what v0.5 clients rely on (they match replies FIFO per
//! command); tagged replies (the `0x80` extension, see `framing`) are written as soon as ready.
//! A bad frame (oversized, malformed, unknown command) gets an `Error` reply and the session
//! carries on. Webhook requests (v0.5 `SetWebhook` and the `0x84` extension of
//! `webhook::host::ipc`) go to the webhook host task instead of the driver.
//!
//! # Limitations
//!
//! - An untagged request waits behind earlier untagged requests for its reply to be written
//!   (v0.5 clients need that order); tagged clients are not affected.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::driver::commands::{Command, ControlOp, Push, Reply, SessionId};
use crate::framing::{self, Frame, SEND_OK, SHUTDOWN, SHUTDOWN_OK};
use crate::shim::extension::Extension;
use crate::shim::ipc::Message;
use crate::webhook::host::{HostHandle, ipc as webhook_ipc};

/// Concurrent sessions accepted; later connections wait.
const MAX_SESSIONS: usize = 256;
/// Untagged requests awaiting their reply per session.
const ORDERED_DEPTH: usize = 64;
/// Bytes of `Send` data in flight per session (back-pressure on writers).
const SEND_WINDOW: usize = 8 << 20;

/// Binds the socket at `path` with mode 0600, replacing a stale socket file.
pub async fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;

    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another daemon is already listening on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts sessions until the driver goes away. Webhook requests (v0.5 `SetWebhook` and the
/// `0x84` extension) go to `webhooks`.
pub async fn serve(listener: UnixListener, driver: mpsc::Sender<Command>, webhooks: HostHandle) {
    let slots = Arc::new(Semaphore::new(MAX_SESSIONS));
    let mut next: SessionId = 0;
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "ipc accept failed");
                continue;
            }
        };
        next += 1;
        let (driver, webhooks) = (driver.clone(), webhooks.clone());
        tokio::spawn(async move {
            Session::run(stream, next, driver, webhooks).await;
            drop(permit);
        });
    }
}

struct Session {
    id: SessionId,
    driver: mpsc::Sender<Command>,
    webhooks: HostHandle,
    out: mpsc::Sender<Vec<u8>>,
    ordered: mpsc::Sender<oneshot::Receiver<Option<Vec<u8>>>>,
    send_window: Arc<Semaphore>,
}

impl Session {
    async fn run(
        stream: UnixStream,
        id: SessionId,
        driver: mpsc::Sender<Command>,
        webhooks: HostHandle,
    ) {
        tracing::debug!(session = id, "ipc session opened");
        let (mut rd, mut wr) = stream.into_split();
        let (out, mut out_rx) = mpsc::channel::<Vec<u8>>(256);
        let writer = tokio::spawn(async move {
            while let Some(body) = out_rx.recv().await {
                if framing::write_frame(&mut wr, &body).await.is_err() {
                    break;
                }
            }
        });
        let (ordered, ordered_rx) = mpsc::channel(ORDERED_DEPTH);
        tokio::spawn(forward_ordered(ordered_rx, out.clone()));
        let (push_tx, push_rx) = mpsc::channel::<Push>(256);
        tokio::spawn(forward_pushes(push_rx, out.clone()));
        if driver
            .send(Command::SessionOpened {
                session: id,
                push: push_tx,
            })
            .await
            .is_err()
        {
            return;
        }
        let send_window = Arc::new(Semaphore::new(SEND_WINDOW));
        let session = Session {
            id,
            driver,
            webhooks,
            out,
            ordered,
            send_window,
        };
        session.read_loop(&mut rd).await;
        let _ = session
            .driver
            .send(Command::SessionClosed { session: id })
            .await;
        drop(session);
        let _ = writer.await;
        tracing::debug!(session = id, "ipc session closed");
    }

    async fn read_loop(&self, rd: &mut tokio::net::unix::OwnedReadHalf) {
        loop {
            match framing::read_frame(rd).await {
                Ok(None) | Err(_) => return,
                Ok(Some(Frame::Oversized(len))) => {
                    let text = format!(
                        "message too large: {len} bytes (limit {})",
                        framing::MAX_BODY
                    );
                    self.immediate(None, error_body(&text)).await;
                }
                Ok(Some(Frame::Body(body))) if body.is_empty() => {}
                Ok(Some(Frame::Body(body))) => {
                    let (tag, inner) = framing::split_tag(&body);
                    if !self.dispatch(tag, inner).await {
                        return;
                    }
                }
            }
        }
    }

    /// Handles one request; `false` when the driver is gone.
    async fn dispatch(&self, tag: Option<u32>, inner: &[u8]) -> bool {
        if inner == [SHUTDOWN] {
            let body = [
                &[SHUTDOWN_OK][..],
                format!("{{\"pid\":{}}}", std::process::id()).as_bytes(),
            ]
            .concat();
            self.immediate(tag, body).await;
            let _ = self.driver.send(Command::Shutdown).await;
            return false;
        }
        if let [webhook_ipc::WEBHOOK, json @ ..] = inner {
            self.webhook(tag, json).await;
            return true;
        }
        let message = match Message::decode(inner) {
            Ok(m) => m,
            Err(e) => {
                self.immediate(tag, error_body(&e.to_string())).await;
                return true;
            }
        };
        self.request(tag, message).await
    }

    async fn request(&self, tag: Option<u32>, message: Message) -> bool {
        let session = self.id;
        match message {
            Message::Bind { port } => {
                self.call(
                    tag,
                    |reply| Command::Bind {
                        session,
                        port,
                        reply,
                    },
                    move |()| Message::BindOk { port },
                )
                .await
            }
            Message::Dial { remote } => {
                self.call(
                    tag,
                    |reply| Command::Dial {
                        session,
                        remote,
                        reply,
                    },
                    |conn| Message::DialOk { conn },
                )
                .await
            }
            Message::Close { conn } => {
                self.call(
                    tag,
                    |reply| Command::Close {
                        session,
                        conn,
                        reply,
                    },
                    move |()| Message::CloseOk { conn },
                )
                .await
            }
            Message::Send { conn, data } => {
                let len = data.len();
                self.send(tag, len, |reply| Command::Send {
                    session,
                    conn,
                    data,
                    reply,
                })
                .await
            }
            Message::SendTo { dst, data } => {
                self.send(tag, data.len(), |reply| Command::SendTo {
                    dst,
                    data,
                    reply,
                })
                .await
            }
            Message::SetWebhook { url } => {
                let webhooks = self.webhooks.clone();
                let body = async move {
                    let reply = webhooks.set_outbound_v05(url).await;
                    Some(reply_body(Ok(reply), |v| Message::SetWebhookOk {
                        json: serde_json::to_vec(&v).unwrap_or_default(),
                    }))
                };
                self.respond(tag, body).await;
                true
            }
            other => match control_op(other) {
                Ok((op, wrap)) => {
                    self.call(tag, |reply| Command::Control { op, reply }, wrap)
                        .await
                }
                Err(text) => {
                    self.immediate(tag, error_body(&text)).await;
                    true
                }
            },
        }
    }

    /// Sends a command and arranges for its reply to be written.
    async fn call<T: Send + 'static>(
        &self,
        tag: Option<u32>,
        make: impl FnOnce(Reply<T>) -> Command,
        ok: impl FnOnce(T) -> Message + Send + 'static,
    ) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.driver.send(make(reply)).await.is_err() {
            return false;
        }
        let body = async move { Some(reply_body(rx.await, ok)) };
        self.respond(tag, body).await;
        true
    }

    /// `Send`/`SendTo`: no reply on success unless tagged; bounded bytes in flight.
    async fn send(
        &self,
        tag: Option<u32>,
        len: usize,
        make: impl FnOnce(Reply<()>) -> Command,
    ) -> bool {
        let permits = len.clamp(1, SEND_WINDOW) as u32;
        let Ok(permit) = self.send_window.clone().acquire_many_owned(permits).await else {
            return false;
        };
        let (reply, rx) = oneshot::channel();
        if self.driver.send(make(reply)).await.is_err() {
            return false;
        }
        let out = self.out.clone();
        tokio::spawn(async move {
            let result = rx.await;
            drop(permit);
            let body = match (result, tag) {
                (Ok(Ok(())), None) => return,
                (Ok(Ok(())), Some(_)) => vec![SEND_OK],
                (Ok(Err(e)), _) => error_body(&e),
                (Err(_), _) => error_body("daemon is shutting down"),
            };
            let _ = out.send(framing::with_tag(tag, body)).await;
        });
        true
    }

    async fn respond(
        &self,
        tag: Option<u32>,
        body: impl Future<Output = Option<Vec<u8>>> + Send + 'static,
    ) {
        match tag {
            Some(_) => {
                let out = self.out.clone();
                tokio::spawn(async move {
                    if let Some(body) = body.await {
                        let _ = out.send(framing::with_tag(tag, body)).await;
                    }
                });
            }
            None => {
                let (tx, rx) = oneshot::channel();
                let _ = self.ordered.send(rx).await;
                tokio::spawn(async move {
                    let _ = tx.send(body.await);
                });
            }
        }
    }

    /// The `0x84` extension: a JSON request for the webhook host.
    async fn webhook(&self, tag: Option<u32>, json: &[u8]) {
        let request = webhook_ipc::decode_request(json);
        let webhooks = self.webhooks.clone();
        let body = async move {
            let reply = match request {
                Ok(request) => webhooks.call(request).await,
                Err(text) => Err(text),
            };
            Some(match reply {
                Ok(value) => webhook_ipc::encode_reply(&value),
                Err(text) => error_body(&text),
            })
        };
        self.respond(tag, body).await;
    }

    async fn immediate(&self, tag: Option<u32>, body: Vec<u8>) {
        self.respond(tag, async move { Some(body) }).await;
    }
}

type Wrap = Box<dyn FnOnce(Value) -> Message + Send>;

fn control_op(message: Message) -> Result<(ControlOp, Wrap), String> {
    let json = |v: Value| serde_json::to_vec(&v).unwrap_or_default();
    Ok(match message {
        Message::Info => (
            ControlOp::Info,
            Box::new(move |v| Message::InfoOk { json: json(v) }),
        ),
        Message::ResolveHostname { name } => (
            ControlOp::Resolve(name),
            Box::new(move |v| Message::ResolveHostnameOk { json: json(v) }),
        ),
        Message::SetHostname { name } => (
            ControlOp::SetHostname(name),
            Box::new(move |v| Message::SetHostnameOk { json: json(v) }),
        ),
        Message::Handshake { sub, args } => (
            handshake_op(sub, &args)?,
            Box::new(move |v| Message::HandshakeOk { json: json(v) }),
        ),
        Message::SetVisibility { public } => (
            ControlOp::SetVisibility(public),
            Box::new(move |v| Message::SetVisibilityOk { json: json(v) }),
        ),
        Message::Deregister => (
            ControlOp::Deregister,
            Box::new(move |v| Message::DeregisterOk { json: json(v) }),
        ),
        Message::SetTags { json: tags } => (
            ControlOp::SetTags(parse_tags(&tags)?),
            Box::new(move |v| Message::SetTagsOk { json: json(v) }),
        ),
        Message::Extension { json: request } => (
            extension_op(&request)?,
            Box::new(move |v| Message::ExtensionOk { json: json(v) }),
        ),
        Message::SetTaskExec { .. } => unsupported("set_task_exec"),
        other => {
            return Err(format!(
                "unexpected message from a client: {}",
                command_name(&other)
            ));
        }
    })
}

/// Tags a node may set through the daemon (v0.5's daemon limit; the registry allows 10).
const MAX_TAGS: usize = 3;

/// The `SetTags` payload: a JSON array of at most [`MAX_TAGS`] strings.
fn parse_tags(payload: &[u8]) -> Result<Vec<String>, String> {
    let tags: Vec<String> = serde_json::from_slice(payload)
        .map_err(|e| format!("set_tags: expected a JSON array of strings: {e}"))?;
    if tags.len() > MAX_TAGS {
        return Err(format!(
            "set_tags: at most {MAX_TAGS} tags, got {}",
            tags.len()
        ));
    }
    Ok(tags)
}

/// An extension request (`framing::EXTENSION`) as a control operation.
fn extension_op(payload: &[u8]) -> Result<ControlOp, String> {
    use pilot_proto::agent::NetworkRequest as R;
    use pilot_proto::registry::NetworkTokens;

    let request: Extension = serde_json::from_slice(payload)
        .map_err(|e| format!("unknown or malformed extension request: {e}"))?;
    let tokens = |join, admin| NetworkTokens { join, admin };
    let (request, tokens) = match request {
        Extension::NetworkCreate {
            name,
            join_rule,
            token,
            admin_token,
        } => (R::Create { name, join_rule }, tokens(token, admin_token)),
        Extension::NetworkJoin {
            network_id,
            inviter_id,
            token,
            admin_token,
        } => {
            let join = R::Join {
                network: network_id,
                inviter: inviter_id,
            };
            (join, tokens(token, admin_token))
        }
        Extension::NetworkLeave {
            network_id,
            admin_token,
        } => (
            R::Leave {
                network: network_id,
            },
            tokens(None, admin_token),
        ),
        Extension::NetworkList => (R::List, NetworkTokens::default()),
    };
    Ok(ControlOp::Network { request, tokens })
}

fn unsupported(what: &'static str) -> (ControlOp, Wrap) {
    (ControlOp::Unsupported(what), Box::new(|_| Message::Info))
}

fn handshake_op(sub: u8, args: &[u8]) -> Result<ControlOp, String> {
    let node = || -> Result<u32, String> {
        let b: [u8; 4] = args
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or("handshake: missing node id")?;
        Ok(u32::from_be_bytes(b))
    };
    let rest = || String::from_utf8_lossy(args.get(4..).unwrap_or_default()).into_owned();
    Ok(match sub {
        0x01 => ControlOp::Handshake {
            node: node()?,
            justification: rest(),
        },
        0x02 => ControlOp::Approve(node()?),
        0x03 => ControlOp::Reject {
            node: node()?,
            reason: rest(),
        },
        0x04 => ControlOp::Pending,
        0x05 => ControlOp::Trusted,
        0x06 => ControlOp::Untrust(node()?),
        other => return Err(format!("unknown handshake sub-command: 0x{other:02X}")),
    })
}

fn command_name(message: &Message) -> String {
    let mut body = Vec::new();
    message.encode(&mut body);
    format!("0x{:02X}", body.first().copied().unwrap_or(0))
}

fn reply_body<T>(
    result: Result<Result<T, String>, oneshot::error::RecvError>,
    ok: impl FnOnce(T) -> Message,
) -> Vec<u8> {
    match result {
        Ok(Ok(value)) => {
            let mut body = Vec::new();
            ok(value).encode(&mut body);
            body
        }
        Ok(Err(text)) => error_body(&text),
        Err(_) => error_body("daemon is shutting down"),
    }
}

fn error_body(text: &str) -> Vec<u8> {
    let mut body = Vec::new();
    Message::Error {
        code: 1,
        message: text.to_owned(),
    }
    .encode(&mut body);
    body
}

async fn forward_ordered(
    mut rx: mpsc::Receiver<oneshot::Receiver<Option<Vec<u8>>>>,
    out: mpsc::Sender<Vec<u8>>,
) {
    while let Some(next) = rx.recv().await {
        if let Ok(Some(body)) = next.await
            && out.send(body).await.is_err()
        {
            return;
        }
    }
}

async fn forward_pushes(mut rx: mpsc::Receiver<Push>, out: mpsc::Sender<Vec<u8>>) {
    while let Some(push) = rx.recv().await {
        let message = match push {
            Push::Accept {
                local_port,
                conn,
                remote,
            } => Message::Accept {
                local_port,
                conn,
                remote,
            },
            Push::Recv { conn, data } => Message::Recv { conn, data },
            Push::CloseOk { conn } => Message::CloseOk { conn },
            Push::RecvFrom {
                src,
                dst_port,
                data,
            } => Message::RecvFrom {
                src,
                dst_port,
                data,
            },
        };
        let mut body = Vec::new();
        message.encode(&mut body);
        if out.send(body).await.is_err() {
            return;
        }
    }
}
