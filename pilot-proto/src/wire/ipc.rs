//! The v0.5 daemon IPC framing and commands.
//!
//! Drivers (applications, `pilotctl`) talk to the daemon over a local stream socket. Every
//! message is `length u32 | body` with `body = command u8 | payload`, big-endian, and a body of
//! at most 1 MiB. [`frame_len`] sizes the next frame in a byte stream, [`IpcFrame`] is a view
//! over one frame, and [`IpcMessage`] is the typed message with one variant per command of the
//! v0.5 catalogue (codes 0x01-0x1E) plus [`IpcMessage::Unknown`].
//!
//! Text fields (hostnames, reasons, error messages, URLs) stay as bytes because v0.5 does not
//! require UTF-8; JSON replies stay as raw bytes for the caller's serde types. Fixed-size
//! payloads must be exactly their size. Nothing here allocates.
//!
//! # Limitations
//!
//! - v0.5 silently skips zero-length bodies; [`IpcFrame::new_checked`] reports them as
//!   [`ParseError::Malformed`] and leaves skipping to the reader, which also knows the frame
//!   is 4 bytes long from [`frame_len`].

use super::addr::{Addr, AddrPort};
use super::{EmitError, ParseError};

/// Byte ranges of an IPC frame.
pub mod field {
    use core::ops::{Range, RangeFrom};

    /// Body length (u32).
    pub const LENGTH: Range<usize> = 0..4;
    /// Command byte, the first body byte.
    pub const COMMAND: usize = 4;
    /// The command's payload.
    pub const PAYLOAD: RangeFrom<usize> = 5..;
}

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// Largest body either side accepts: 1 MiB. v0.5 tears the whole session down above it.
pub const MAX_BODY_LEN: usize = 1 << 20;

macro_rules! commands {
    ($($(#[$doc:meta])* $name:ident = $code:literal,)*) => {
        /// The command byte.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Command {
            $($(#[$doc])* $name,)*
            /// Any other value.
            Unknown(u8),
        }

        impl From<u8> for Command {
            fn from(v: u8) -> Self {
                match v {
                    $($code => Self::$name,)*
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<Command> for u8 {
            fn from(c: Command) -> Self {
                match c {
                    $(Command::$name => $code,)*
                    Command::Unknown(other) => other,
                }
            }
        }

        impl Command {
            /// The v0.5 name (`Bind`, `DialOK`, ...); `unknown` for other values.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$name => stringify!($name),)*
                    Self::Unknown(_) => "unknown",
                }
            }
        }
    };
}

commands! {
    /// Driver asks to bind a port.
    Bind = 0x01,
    /// Port bound.
    BindOK = 0x02,
    /// Driver asks to open a stream.
    Dial = 0x03,
    /// Stream open.
    DialOK = 0x04,
    /// A remote stream was accepted on a bound port.
    Accept = 0x05,
    /// Driver sends stream data.
    Send = 0x06,
    /// Stream data arrived.
    Recv = 0x07,
    /// Driver closes a stream.
    Close = 0x08,
    /// Stream closed (reply, or unsolicited when the receive side ends).
    CloseOK = 0x09,
    /// A request failed.
    Error = 0x0A,
    /// Driver sends a datagram.
    SendTo = 0x0B,
    /// A datagram arrived.
    RecvFrom = 0x0C,
    /// Driver asks for daemon status.
    Info = 0x0D,
    /// Daemon status (JSON).
    InfoOK = 0x0E,
    /// Trust handshake sub-command.
    Handshake = 0x0F,
    /// Trust handshake result (JSON).
    HandshakeOK = 0x10,
    /// Driver resolves a hostname.
    ResolveHostname = 0x11,
    /// Resolution result (JSON).
    ResolveHostnameOK = 0x12,
    /// Driver sets the node's hostname.
    SetHostname = 0x13,
    /// Hostname set (JSON).
    SetHostnameOK = 0x14,
    /// Driver sets public/private visibility.
    SetVisibility = 0x15,
    /// Visibility set (JSON).
    SetVisibilityOK = 0x16,
    /// Driver deregisters the node.
    Deregister = 0x17,
    /// Deregistered (JSON).
    DeregisterOK = 0x18,
    /// Driver sets tags (JSON array).
    SetTags = 0x19,
    /// Tags set (JSON).
    SetTagsOK = 0x1A,
    /// Driver sets the webhook URL.
    SetWebhook = 0x1B,
    /// Webhook set (JSON).
    SetWebhookOK = 0x1C,
    /// Driver enables or disables task execution.
    SetTaskExec = 0x1D,
    /// Task execution set (JSON).
    SetTaskExecOK = 0x1E,
}

/// How many bytes the frame starting at `prefix` occupies (prefix included), once its length
/// is present. `Ok(None)` while fewer than 4 bytes are buffered.
///
/// # Errors
///
/// [`ParseError::TooLarge`] for a body above [`MAX_BODY_LEN`].
pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some(len) = prefix.first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let body = u32::from_be_bytes(*len);
    let body = usize::try_from(body).unwrap_or(usize::MAX);
    if body > MAX_BODY_LEN {
        return Err(ParseError::TooLarge {
            len: body,
            max: MAX_BODY_LEN,
        });
    }
    Ok(Some(LEN_PREFIX + body))
}

/// A view of one IPC frame at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpcFrame<B: AsRef<[u8]>> {
    buffer: B,
}

impl<B: AsRef<[u8]>> IpcFrame<B> {
    /// Checks the length prefix, the 1 MiB cap, that the body is present and not empty.
    /// Bytes after the frame are allowed and not part of it.
    ///
    /// # Errors
    ///
    /// [`ParseError::Truncated`], [`ParseError::TooLarge`], [`ParseError::BadLength`], or
    /// [`ParseError::Malformed`] for a zero-length body.
    pub fn new_checked(buffer: B) -> Result<Self, ParseError> {
        let bytes = buffer.as_ref();
        let Some(declared) = frame_len(bytes)? else {
            return Err(ParseError::Truncated {
                needed: LEN_PREFIX,
                got: bytes.len(),
            });
        };
        if declared > bytes.len() {
            return Err(ParseError::BadLength {
                declared,
                actual: bytes.len(),
            });
        }
        if declared == LEN_PREFIX {
            return Err(ParseError::Malformed {
                what: "ipc frame",
                reason: "empty body",
            });
        }
        Ok(Self { buffer })
    }

    /// Prefix plus body.
    pub fn frame_len(&self) -> usize {
        // new_checked proved the prefix is present and within the cap.
        frame_len(self.buffer.as_ref())
            .ok()
            .flatten()
            .unwrap_or(LEN_PREFIX)
    }

    /// The command byte.
    pub fn command(&self) -> Command {
        Command::from(self.buffer.as_ref()[field::COMMAND])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> IpcFrame<&'a T> {
    /// The body: command byte and payload.
    pub fn body(&self) -> &'a [u8] {
        &self.buffer.as_ref()[LEN_PREFIX..self.frame_len()]
    }

    /// The payload after the command byte.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::COMMAND + 1..self.frame_len()]
    }
}

/// The trust-handshake sub-commands carried by [`IpcMessage::Handshake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeCmd<'a> {
    /// 0x01: ask `node` to trust us.
    Request {
        /// Target node ID.
        node: u32,
        /// Free text shown to the other side.
        justification: &'a [u8],
    },
    /// 0x02: approve a pending request from `node`.
    Approve {
        /// Requesting node ID.
        node: u32,
    },
    /// 0x03: reject a pending request from `node`.
    Reject {
        /// Requesting node ID.
        node: u32,
        /// Free text.
        reason: &'a [u8],
    },
    /// 0x04: list pending requests.
    Pending,
    /// 0x05: list trusted nodes.
    Trusted,
    /// 0x06: revoke trust in `node`.
    Revoke {
        /// Node ID.
        node: u32,
    },
    /// Any other sub-command byte, with its arguments.
    Unknown {
        /// The sub-command byte.
        sub: u8,
        /// Its arguments.
        args: &'a [u8],
    },
}

impl HandshakeCmd<'_> {
    /// The sub-command byte.
    pub fn sub(&self) -> u8 {
        match self {
            Self::Request { .. } => 1,
            Self::Approve { .. } => 2,
            Self::Reject { .. } => 3,
            Self::Pending => 4,
            Self::Trusted => 5,
            Self::Revoke { .. } => 6,
            Self::Unknown { sub, .. } => *sub,
        }
    }

    /// The v0.5 `pilotctl` name of the sub-command.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Request { .. } => "send",
            Self::Approve { .. } => "approve",
            Self::Reject { .. } => "reject",
            Self::Pending => "pending",
            Self::Trusted => "trusted",
            Self::Revoke { .. } => "revoke",
            Self::Unknown { .. } => "unknown",
        }
    }
}

/// One IPC message, typed by command. JSON payloads are the raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // Field names repeat the table in the module docs.
pub enum IpcMessage<'a> {
    Bind {
        port: u16,
    },
    BindOk {
        port: u16,
    },
    Dial {
        dst: AddrPort,
    },
    DialOk {
        conn_id: u32,
    },
    /// Starts with the *local* port the connection arrived on.
    Accept {
        local_port: u16,
        conn_id: u32,
        remote: AddrPort,
    },
    Send {
        conn_id: u32,
        data: &'a [u8],
    },
    Recv {
        conn_id: u32,
        data: &'a [u8],
    },
    Close {
        conn_id: u32,
    },
    CloseOk {
        conn_id: u32,
    },
    /// v0.5 always sends code 1.
    Error {
        code: u16,
        message: &'a [u8],
    },
    SendTo {
        dst: AddrPort,
        data: &'a [u8],
    },
    /// Carries the destination port the datagram arrived on.
    RecvFrom {
        src: AddrPort,
        dst_port: u16,
        data: &'a [u8],
    },
    Info,
    InfoOk {
        json: &'a [u8],
    },
    Handshake(HandshakeCmd<'a>),
    HandshakeOk {
        json: &'a [u8],
    },
    ResolveHostname {
        hostname: &'a [u8],
    },
    ResolveHostnameOk {
        json: &'a [u8],
    },
    /// An empty hostname clears it.
    SetHostname {
        hostname: &'a [u8],
    },
    SetHostnameOk {
        json: &'a [u8],
    },
    /// 1 = public, anything else private.
    SetVisibility {
        value: u8,
    },
    SetVisibilityOk {
        json: &'a [u8],
    },
    Deregister,
    DeregisterOk {
        json: &'a [u8],
    },
    /// A JSON array of at most three strings.
    SetTags {
        json: &'a [u8],
    },
    SetTagsOk {
        json: &'a [u8],
    },
    /// An empty URL disables the webhook.
    SetWebhook {
        url: &'a [u8],
    },
    SetWebhookOk {
        json: &'a [u8],
    },
    /// 1 = enabled.
    SetTaskExec {
        value: u8,
    },
    SetTaskExecOk {
        json: &'a [u8],
    },
    /// A command byte outside the catalogue, with its payload.
    Unknown {
        cmd: u8,
        payload: &'a [u8],
    },
}

/// Splits a fixed-size head off `p`.
fn head<const N: usize>(p: &[u8]) -> Result<([u8; N], &[u8]), ParseError> {
    match p.split_first_chunk::<N>() {
        Some((h, rest)) => Ok((*h, rest)),
        None => Err(ParseError::Truncated {
            needed: N,
            got: p.len(),
        }),
    }
}

/// `p` must be exactly `N` bytes.
fn exact<const N: usize>(what: &'static str, p: &[u8]) -> Result<[u8; N], ParseError> {
    let (h, rest) = head::<N>(p)?;
    if !rest.is_empty() {
        return Err(ParseError::Malformed {
            what,
            reason: "trailing bytes after fixed payload",
        });
    }
    Ok(h)
}

fn empty(what: &'static str, p: &[u8]) -> Result<(), ParseError> {
    exact::<0>(what, p).map(|_| ())
}

fn u16_of(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

fn u32_of(b: [u8; 4]) -> u32 {
    u32::from_be_bytes(b)
}

fn conn_and_data(p: &[u8]) -> Result<(u32, &[u8]), ParseError> {
    let (id, data) = head::<4>(p)?;
    Ok((u32_of(id), data))
}

fn parse_handshake(p: &[u8]) -> Result<HandshakeCmd<'_>, ParseError> {
    let ([sub], args) = head::<1>(p)?;
    let node_and_text = |args| -> Result<(u32, &[u8]), ParseError> {
        let (n, text) = head::<4>(args)?;
        Ok((u32_of(n), text))
    };
    Ok(match sub {
        1 => {
            let (node, justification) = node_and_text(args)?;
            HandshakeCmd::Request {
                node,
                justification,
            }
        }
        2 => HandshakeCmd::Approve {
            node: u32_of(exact("handshake approve", args)?),
        },
        3 => {
            let (node, reason) = node_and_text(args)?;
            HandshakeCmd::Reject { node, reason }
        }
        4 => empty("handshake pending", args).map(|()| HandshakeCmd::Pending)?,
        5 => empty("handshake trusted", args).map(|()| HandshakeCmd::Trusted)?,
        6 => HandshakeCmd::Revoke {
            node: u32_of(exact("handshake revoke", args)?),
        },
        sub => HandshakeCmd::Unknown { sub, args },
    })
}

impl<'a> IpcMessage<'a> {
    /// Reads a checked frame.
    ///
    /// # Errors
    ///
    /// As [`parse_body`](Self::parse_body).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &IpcFrame<&'a T>) -> Result<Self, ParseError> {
        Self::parse_body(frame.body())
    }

    /// Checks and parses the frame at the front of `bytes` (length prefix included).
    ///
    /// # Errors
    ///
    /// As [`IpcFrame::new_checked`] and [`parse_body`](Self::parse_body).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse(&IpcFrame::new_checked(bytes)?)
    }

    /// Parses a body (command byte and payload, without the length prefix).
    ///
    /// # Errors
    ///
    /// [`ParseError::Truncated`] for an empty body or a payload shorter than its command
    /// needs; [`ParseError::Malformed`] for bytes after a fixed-size payload.
    pub fn parse_body(body: &'a [u8]) -> Result<Self, ParseError> {
        let ([cmd], p) = head::<1>(body)?;
        let cmd = Command::from(cmd);
        let what = cmd.name();
        Ok(match cmd {
            Command::Bind => Self::Bind {
                port: u16_of(exact(what, p)?),
            },
            Command::BindOK => Self::BindOk {
                port: u16_of(exact(what, p)?),
            },
            Command::Dial => Self::Dial {
                dst: AddrPort::from_bytes(exact(what, p)?),
            },
            Command::DialOK => Self::DialOk {
                conn_id: u32_of(exact(what, p)?),
            },
            Command::Accept => Self::parse_accept(exact(what, p)?),
            Command::Send => {
                conn_and_data(p).map(|(conn_id, data)| Self::Send { conn_id, data })?
            }
            Command::Recv => {
                conn_and_data(p).map(|(conn_id, data)| Self::Recv { conn_id, data })?
            }
            Command::Close => Self::Close {
                conn_id: u32_of(exact(what, p)?),
            },
            Command::CloseOK => Self::CloseOk {
                conn_id: u32_of(exact(what, p)?),
            },
            Command::Error => {
                let (code, message) = head::<2>(p)?;
                Self::Error {
                    code: u16_of(code),
                    message,
                }
            }
            Command::SendTo => {
                let (dst, data) = head::<{ AddrPort::LEN }>(p)?;
                Self::SendTo {
                    dst: AddrPort::from_bytes(dst),
                    data,
                }
            }
            Command::RecvFrom => Self::parse_recv_from(p)?,
            Command::Info => empty(what, p).map(|()| Self::Info)?,
            Command::Handshake => Self::Handshake(parse_handshake(p)?),
            Command::Deregister => empty(what, p).map(|()| Self::Deregister)?,
            Command::SetVisibility => Self::SetVisibility {
                value: exact::<1>(what, p)?[0],
            },
            Command::SetTaskExec => Self::SetTaskExec {
                value: exact::<1>(what, p)?[0],
            },
            Command::ResolveHostname => Self::ResolveHostname { hostname: p },
            Command::SetHostname => Self::SetHostname { hostname: p },
            Command::SetTags => Self::SetTags { json: p },
            Command::SetWebhook => Self::SetWebhook { url: p },
            Command::Unknown(cmd) => Self::Unknown { cmd, payload: p },
            json_reply => Self::json_reply(json_reply, p),
        })
    }

    fn parse_accept(p: [u8; 14]) -> Self {
        let [l0, l1, c0, c1, c2, c3, a0, a1, a2, a3, a4, a5, p0, p1] = p;
        let remote = AddrPort::new(Addr::from_bytes([a0, a1, a2, a3, a4, a5]), u16_of([p0, p1]));
        Self::Accept {
            local_port: u16_of([l0, l1]),
            conn_id: u32_of([c0, c1, c2, c3]),
            remote,
        }
    }

    fn parse_recv_from(p: &'a [u8]) -> Result<Self, ParseError> {
        let (src, rest) = head::<{ AddrPort::LEN }>(p)?;
        let (dst_port, data) = head::<2>(rest)?;
        Ok(Self::RecvFrom {
            src: AddrPort::from_bytes(src),
            dst_port: u16_of(dst_port),
            data,
        })
    }

    /// The `*OK` replies whose payload is a JSON document. Only called with those commands;
    /// anything else is kept as `Unknown` so no input can reach an unhandled case.
    fn json_reply(cmd: Command, json: &'a [u8]) -> Self {
        match cmd {
            Command::InfoOK => Self::InfoOk { json },
            Command::HandshakeOK => Self::HandshakeOk { json },
            Command::ResolveHostnameOK => Self::ResolveHostnameOk { json },
            Command::SetHostnameOK => Self::SetHostnameOk { json },
            Command::SetVisibilityOK => Self::SetVisibilityOk { json },
            Command::DeregisterOK => Self::DeregisterOk { json },
            Command::SetTagsOK => Self::SetTagsOk { json },
            Command::SetWebhookOK => Self::SetWebhookOk { json },
            Command::SetTaskExecOK => Self::SetTaskExecOk { json },
            other => Self::Unknown {
                cmd: other.into(),
                payload: json,
            },
        }
    }
}

/// The fixed-size front of a payload, built on the stack for [`IpcMessage::emit`].
#[derive(Default)]
struct Head {
    bytes: [u8; 16],
    len: usize,
}

impl Head {
    /// Appends `b`. Every caller appends at most 14 bytes in total (Accept), within the 16.
    fn put(mut self, b: &[u8]) -> Self {
        self.bytes[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        self
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<'a> HandshakeCmd<'a> {
    fn split(self) -> (Head, &'a [u8]) {
        let head = Head::default().put(&[self.sub()]);
        match self {
            Self::Request {
                node,
                justification: text,
            }
            | Self::Reject { node, reason: text } => (head.put(&node.to_be_bytes()), text),
            Self::Approve { node } | Self::Revoke { node } => (head.put(&node.to_be_bytes()), &[]),
            Self::Pending | Self::Trusted => (head, &[]),
            Self::Unknown { args, .. } => (head, args),
        }
    }
}

impl<'a> IpcMessage<'a> {
    /// The command byte of this message.
    pub fn command(&self) -> Command {
        match self {
            Self::Bind { .. } => Command::Bind,
            Self::BindOk { .. } => Command::BindOK,
            Self::Dial { .. } => Command::Dial,
            Self::DialOk { .. } => Command::DialOK,
            Self::Accept { .. } => Command::Accept,
            Self::Send { .. } => Command::Send,
            Self::Recv { .. } => Command::Recv,
            Self::Close { .. } => Command::Close,
            Self::CloseOk { .. } => Command::CloseOK,
            Self::Error { .. } => Command::Error,
            Self::SendTo { .. } => Command::SendTo,
            Self::RecvFrom { .. } => Command::RecvFrom,
            Self::Info => Command::Info,
            Self::InfoOk { .. } => Command::InfoOK,
            Self::Handshake(_) => Command::Handshake,
            Self::HandshakeOk { .. } => Command::HandshakeOK,
            Self::ResolveHostname { .. } => Command::ResolveHostname,
            Self::ResolveHostnameOk { .. } => Command::ResolveHostnameOK,
            Self::SetHostname { .. } => Command::SetHostname,
            Self::SetHostnameOk { .. } => Command::SetHostnameOK,
            Self::SetVisibility { .. } => Command::SetVisibility,
            Self::SetVisibilityOk { .. } => Command::SetVisibilityOK,
            Self::Deregister => Command::Deregister,
            Self::DeregisterOk { .. } => Command::DeregisterOK,
            Self::SetTags { .. } => Command::SetTags,
            Self::SetTagsOk { .. } => Command::SetTagsOK,
            Self::SetWebhook { .. } => Command::SetWebhook,
            Self::SetWebhookOk { .. } => Command::SetWebhookOK,
            Self::SetTaskExec { .. } => Command::SetTaskExec,
            Self::SetTaskExecOk { .. } => Command::SetTaskExecOK,
            Self::Unknown { cmd, .. } => Command::Unknown(*cmd),
        }
    }

    /// The payload as a fixed head and a borrowed tail.
    fn split(&self) -> (Head, &'a [u8]) {
        let h = Head::default();
        match *self {
            Self::Bind { port } | Self::BindOk { port } => (h.put(&port.to_be_bytes()), &[]),
            Self::Dial { dst } => (h.put(&dst.to_bytes()), &[]),
            Self::DialOk { conn_id } | Self::Close { conn_id } | Self::CloseOk { conn_id } => {
                (h.put(&conn_id.to_be_bytes()), &[])
            }
            Self::Accept {
                local_port,
                conn_id,
                remote,
            } => {
                let h = h.put(&local_port.to_be_bytes()).put(&conn_id.to_be_bytes());
                (h.put(&remote.to_bytes()), &[])
            }
            Self::Send { conn_id, data } | Self::Recv { conn_id, data } => {
                (h.put(&conn_id.to_be_bytes()), data)
            }
            Self::Error { code, message } => (h.put(&code.to_be_bytes()), message),
            Self::SendTo { dst, data } => (h.put(&dst.to_bytes()), data),
            Self::RecvFrom {
                src,
                dst_port,
                data,
            } => (h.put(&src.to_bytes()).put(&dst_port.to_be_bytes()), data),
            Self::Handshake(cmd) => cmd.split(),
            Self::SetVisibility { value } | Self::SetTaskExec { value } => (h.put(&[value]), &[]),
            Self::Info | Self::Deregister => (h, &[]),
            Self::InfoOk { json }
            | Self::HandshakeOk { json }
            | Self::ResolveHostnameOk { json }
            | Self::SetHostnameOk { json }
            | Self::SetVisibilityOk { json }
            | Self::DeregisterOk { json }
            | Self::SetTags { json }
            | Self::SetTagsOk { json }
            | Self::SetWebhookOk { json }
            | Self::SetTaskExecOk { json } => (h, json),
            Self::ResolveHostname { hostname } | Self::SetHostname { hostname } => (h, hostname),
            Self::SetWebhook { url } => (h, url),
            Self::Unknown { payload, .. } => (h, payload),
        }
    }

    /// Body bytes: the command byte plus the payload.
    pub fn body_len(&self) -> usize {
        let (head, tail) = self.split();
        1 + head.len + tail.len()
    }

    /// Bytes [`emit`](Self::emit) writes: prefix plus body.
    pub fn buffer_len(&self) -> usize {
        LEN_PREFIX + self.body_len()
    }

    /// Writes the whole frame (length prefix included) into the front of `buf`; returns the
    /// bytes written.
    ///
    /// # Errors
    ///
    /// [`EmitError::OutOfRange`] for a body above 1 MiB, [`EmitError::Inconsistent`] for an
    /// `Unknown` command byte that names a catalogued command, [`EmitError::BufferTooSmall`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        self.check()?;
        let len = self.buffer_len();
        EmitError::check_len(buf, len)?;

        let (head, tail) = self.split();
        // check() bounded the body to 1 MiB.
        buf[field::LENGTH].copy_from_slice(&(self.body_len() as u32).to_be_bytes());
        buf[field::COMMAND] = self.command().into();
        let tail_at = field::PAYLOAD.start + head.len;
        buf[field::PAYLOAD.start..tail_at].copy_from_slice(head.as_slice());
        buf[tail_at..len].copy_from_slice(tail);
        Ok(len)
    }

    fn check(&self) -> Result<(), EmitError> {
        let body = self.body_len();
        if body > MAX_BODY_LEN {
            return Err(EmitError::OutOfRange {
                field: "ipc body",
                value: body,
                max: MAX_BODY_LEN,
            });
        }
        let known = |b: u8| !matches!(Command::from(b), Command::Unknown(_));
        let reason = match self {
            Self::Unknown { cmd, .. } if known(*cmd) => "Unknown with a catalogued command byte",
            Self::Handshake(HandshakeCmd::Unknown { sub: 1..=6, .. }) => {
                "handshake Unknown with a catalogued sub-command"
            }
            _ => return Ok(()),
        };
        Err(EmitError::Inconsistent { reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    fn round_trip(body_hex: &str, want: IpcMessage<'_>) {
        let body = h(body_hex);
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);

        assert_eq!(IpcMessage::decode(&frame), Ok(want), "{body_hex}");
        let mut out = vec![0xa5; want.buffer_len()];
        assert_eq!(want.emit(&mut out), Ok(frame.len()));
        assert_eq!(out, frame, "{body_hex}");
    }

    #[test]
    fn section_9_vectors() {
        let dst = AddrPort::new(Addr::new(0, 1), 7);
        round_trip("03 0000 00000001 0007", IpcMessage::Dial { dst });
        round_trip("04 00000001", IpcMessage::DialOk { conn_id: 1 });
        round_trip(
            "06 00000001 68656c6c6f",
            IpcMessage::Send {
                conn_id: 1,
                data: b"hello",
            },
        );
        round_trip(
            "07 00000001 68656c6c6f",
            IpcMessage::Recv {
                conn_id: 1,
                data: b"hello",
            },
        );
        round_trip("08 00000001", IpcMessage::Close { conn_id: 1 });
        round_trip("09 00000001", IpcMessage::CloseOk { conn_id: 1 });
        let message = b"dial timeout";
        round_trip(
            "0a 0001 6469616c2074696d656f7574",
            IpcMessage::Error { code: 1, message },
        );
    }

    #[test]
    fn accept_and_recv_from_layouts() {
        let remote = AddrPort::new(Addr::new(0, 3), 49152);
        let accept = IpcMessage::Accept {
            local_port: 5002,
            conn_id: 4,
            remote,
        };
        round_trip("05 138a 00000004 0000 00000003 c000", accept);

        let src = AddrPort::new(Addr::new(0, 1), 49156);
        let data = b"dgram-two";
        let msg = IpcMessage::RecvFrom {
            src,
            dst_port: 5001,
            data,
        };
        round_trip("0c 0000 00000001 c004 1389 646772616d2d74776f", msg);
    }

    #[test]
    fn handshake_sub_commands() {
        let justification = b"second request";
        let req = HandshakeCmd::Request {
            node: 2,
            justification,
        };
        round_trip(
            "0f 01 00000002 7365636f6e642072657175657374",
            IpcMessage::Handshake(req),
        );
        round_trip("0f 04", IpcMessage::Handshake(HandshakeCmd::Pending));
        round_trip(
            "0f 06 00000002",
            IpcMessage::Handshake(HandshakeCmd::Revoke { node: 2 }),
        );
        let odd = HandshakeCmd::Unknown { sub: 9, args: b"x" };
        round_trip("0f 09 78", IpcMessage::Handshake(odd));
    }

    #[test]
    fn unknown_command_kept() {
        round_trip(
            "7f",
            IpcMessage::Unknown {
                cmd: 0x7f,
                payload: &[],
            },
        );
        let bad = IpcMessage::Unknown {
            cmd: 0x01,
            payload: &[],
        };
        assert!(matches!(
            bad.emit(&mut [0; 8]),
            Err(EmitError::Inconsistent { .. })
        ));
    }

    #[test]
    fn framing_errors() {
        assert_eq!(frame_len(&[0, 0]), Ok(None));
        assert!(matches!(
            frame_len(&h("00100001")),
            Err(ParseError::TooLarge { .. })
        ));
        assert_eq!(frame_len(&h("00100000")), Ok(Some(4 + (1 << 20))));
        assert!(matches!(
            IpcMessage::decode(&h("00000000")),
            Err(ParseError::Malformed { .. })
        ));
        assert_eq!(
            IpcMessage::decode(&h("00000005 04 0000")),
            Err(ParseError::BadLength {
                declared: 9,
                actual: 7
            })
        );
        assert_eq!(
            IpcMessage::decode(&h("00000003 04 0000")),
            Err(ParseError::Truncated { needed: 4, got: 2 })
        );
        assert!(matches!(
            IpcMessage::decode(&h("00000002 0d 00")),
            Err(ParseError::Malformed { what: "Info", .. })
        ));
    }
}
