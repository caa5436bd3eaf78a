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

mod command;
mod emit;
#[cfg(test)]
mod tests;

pub use command::{Command, HandshakeCmd};

use super::ParseError;
use super::addr::{Addr, AddrPort};

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
