//! The v0.5 daemon IPC messages (dataplane.md §7): body = command byte ‖ payload.
//!
//! The `u32` length prefix is handled by the caller (see `crate::framing`).

use super::addr::{Addr, AddrPort};

/// Largest body a v0.5 peer accepts.
pub const MAX_BODY: usize = 1 << 20;

/// One IPC message, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum Message {
    Bind {
        port: u16,
    },
    BindOk {
        port: u16,
    },
    Dial {
        remote: AddrPort,
    },
    DialOk {
        conn: u32,
    },
    Accept {
        local_port: u16,
        conn: u32,
        remote: AddrPort,
    },
    Send {
        conn: u32,
        data: Vec<u8>,
    },
    Recv {
        conn: u32,
        data: Vec<u8>,
    },
    Close {
        conn: u32,
    },
    CloseOk {
        conn: u32,
    },
    Error {
        code: u16,
        message: String,
    },
    SendTo {
        dst: AddrPort,
        data: Vec<u8>,
    },
    RecvFrom {
        src: AddrPort,
        dst_port: u16,
        data: Vec<u8>,
    },
    Info,
    InfoOk {
        json: Vec<u8>,
    },
    Handshake {
        sub: u8,
        args: Vec<u8>,
    },
    HandshakeOk {
        json: Vec<u8>,
    },
    ResolveHostname {
        name: String,
    },
    ResolveHostnameOk {
        json: Vec<u8>,
    },
    SetHostname {
        name: String,
    },
    SetHostnameOk {
        json: Vec<u8>,
    },
    SetVisibility {
        public: bool,
    },
    SetVisibilityOk {
        json: Vec<u8>,
    },
    Deregister,
    DeregisterOk {
        json: Vec<u8>,
    },
    SetTags {
        json: Vec<u8>,
    },
    SetTagsOk {
        json: Vec<u8>,
    },
    SetWebhook {
        url: String,
    },
    SetWebhookOk {
        json: Vec<u8>,
    },
    SetTaskExec {
        enabled: bool,
    },
    SetTaskExecOk {
        json: Vec<u8>,
    },
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpcError {
    /// Empty body.
    #[error("empty message")]
    Empty,
    /// A command byte v0.5 does not define.
    #[error("unknown command: 0x{0:02X}")]
    UnknownCommand(u8),
    /// The payload is shorter than the command needs.
    #[error("truncated {command} message: need {needed} bytes, got {got}")]
    Truncated {
        /// Command name.
        command: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
}

fn need(command: &'static str, p: &[u8], needed: usize) -> Result<(), IpcError> {
    if p.len() < needed {
        return Err(IpcError::Truncated {
            command,
            needed,
            got: p.len(),
        });
    }
    Ok(())
}

fn u16_at(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

fn u32_at(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

fn addr_port_at(p: &[u8], at: usize) -> AddrPort {
    let mut a = [0u8; 6];
    a.copy_from_slice(&p[at..at + 6]);
    AddrPort {
        addr: Addr::from_bytes(a),
        port: u16_at(p, at + 6),
    }
}

fn text(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

impl Message {
    /// Decodes one body. Never panics: every index is behind a `need` check.
    pub fn decode(body: &[u8]) -> Result<Message, IpcError> {
        let (&cmd, p) = body.split_first().ok_or(IpcError::Empty)?;
        let json = || p.to_vec();
        Ok(match cmd {
            0x01 => need("bind", p, 2).map(|()| Message::Bind { port: u16_at(p, 0) })?,
            0x02 => need("bind_ok", p, 2).map(|()| Message::BindOk { port: u16_at(p, 0) })?,
            0x03 => need("dial", p, 8).map(|()| Message::Dial {
                remote: addr_port_at(p, 0),
            })?,
            0x04 => need("dial_ok", p, 4).map(|()| Message::DialOk { conn: u32_at(p, 0) })?,
            0x05 => {
                need("accept", p, 14)?;
                let (local_port, conn) = (u16_at(p, 0), u32_at(p, 2));
                Message::Accept {
                    local_port,
                    conn,
                    remote: addr_port_at(p, 6),
                }
            }
            0x06 => need("send", p, 4).map(|()| Message::Send {
                conn: u32_at(p, 0),
                data: p[4..].to_vec(),
            })?,
            0x07 => need("recv", p, 4).map(|()| Message::Recv {
                conn: u32_at(p, 0),
                data: p[4..].to_vec(),
            })?,
            0x08 => need("close", p, 4).map(|()| Message::Close { conn: u32_at(p, 0) })?,
            0x09 => need("close_ok", p, 4).map(|()| Message::CloseOk { conn: u32_at(p, 0) })?,
            0x0A => need("error", p, 2).map(|()| Message::Error {
                code: u16_at(p, 0),
                message: text(&p[2..]),
            })?,
            0x0B => need("send_to", p, 8).map(|()| Message::SendTo {
                dst: addr_port_at(p, 0),
                data: p[8..].to_vec(),
            })?,
            0x0C => {
                need("recv_from", p, 10)?;
                let (src, dst_port) = (addr_port_at(p, 0), u16_at(p, 8));
                Message::RecvFrom {
                    src,
                    dst_port,
                    data: p[10..].to_vec(),
                }
            }
            0x0D => Message::Info,
            0x0E => Message::InfoOk { json: json() },
            0x0F => need("handshake", p, 1).map(|()| Message::Handshake {
                sub: p[0],
                args: p[1..].to_vec(),
            })?,
            0x10 => Message::HandshakeOk { json: json() },
            0x11 => Message::ResolveHostname { name: text(p) },
            0x12 => Message::ResolveHostnameOk { json: json() },
            0x13 => Message::SetHostname { name: text(p) },
            0x14 => Message::SetHostnameOk { json: json() },
            0x15 => need("set_visibility", p, 1)
                .map(|()| Message::SetVisibility { public: p[0] == 1 })?,
            0x16 => Message::SetVisibilityOk { json: json() },
            0x17 => Message::Deregister,
            0x18 => Message::DeregisterOk { json: json() },
            0x19 => Message::SetTags { json: json() },
            0x1A => Message::SetTagsOk { json: json() },
            0x1B => Message::SetWebhook { url: text(p) },
            0x1C => Message::SetWebhookOk { json: json() },
            0x1D => {
                need("set_task_exec", p, 1).map(|()| Message::SetTaskExec { enabled: p[0] == 1 })?
            }
            0x1E => Message::SetTaskExecOk { json: json() },
            other => return Err(IpcError::UnknownCommand(other)),
        })
    }

    /// Appends the body (command byte and payload) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Bind { port } => put(out, 0x01, &[&port.to_be_bytes()]),
            Message::BindOk { port } => put(out, 0x02, &[&port.to_be_bytes()]),
            Message::Dial { remote } => put(out, 0x03, &[&ap(remote)]),
            Message::DialOk { conn } => put(out, 0x04, &[&conn.to_be_bytes()]),
            Message::Accept {
                local_port,
                conn,
                remote,
            } => {
                put(
                    out,
                    0x05,
                    &[&local_port.to_be_bytes(), &conn.to_be_bytes(), &ap(remote)],
                );
            }
            Message::Send { conn, data } => put(out, 0x06, &[&conn.to_be_bytes(), data]),
            Message::Recv { conn, data } => put(out, 0x07, &[&conn.to_be_bytes(), data]),
            Message::Close { conn } => put(out, 0x08, &[&conn.to_be_bytes()]),
            Message::CloseOk { conn } => put(out, 0x09, &[&conn.to_be_bytes()]),
            Message::Error { code, message } => {
                put(out, 0x0A, &[&code.to_be_bytes(), message.as_bytes()]);
            }
            Message::SendTo { dst, data } => put(out, 0x0B, &[&ap(dst), data]),
            Message::RecvFrom {
                src,
                dst_port,
                data,
            } => {
                put(out, 0x0C, &[&ap(src), &dst_port.to_be_bytes(), data]);
            }
            Message::Info => put(out, 0x0D, &[]),
            Message::InfoOk { json } => put(out, 0x0E, &[json]),
            Message::Handshake { sub, args } => put(out, 0x0F, &[&[*sub], args]),
            Message::HandshakeOk { json } => put(out, 0x10, &[json]),
            Message::ResolveHostname { name } => put(out, 0x11, &[name.as_bytes()]),
            Message::ResolveHostnameOk { json } => put(out, 0x12, &[json]),
            Message::SetHostname { name } => put(out, 0x13, &[name.as_bytes()]),
            Message::SetHostnameOk { json } => put(out, 0x14, &[json]),
            Message::SetVisibility { public } => put(out, 0x15, &[&[u8::from(*public)]]),
            Message::SetVisibilityOk { json } => put(out, 0x16, &[json]),
            Message::Deregister => put(out, 0x17, &[]),
            Message::DeregisterOk { json } => put(out, 0x18, &[json]),
            Message::SetTags { json } => put(out, 0x19, &[json]),
            Message::SetTagsOk { json } => put(out, 0x1A, &[json]),
            Message::SetWebhook { url } => put(out, 0x1B, &[url.as_bytes()]),
            Message::SetWebhookOk { json } => put(out, 0x1C, &[json]),
            Message::SetTaskExec { enabled } => put(out, 0x1D, &[&[u8::from(*enabled)]]),
            Message::SetTaskExecOk { json } => put(out, 0x1E, &[json]),
        }
    }
}

fn ap(a: &AddrPort) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..6].copy_from_slice(&a.addr.to_bytes());
    out[6..].copy_from_slice(&a.port.to_be_bytes());
    out
}

fn put(out: &mut Vec<u8>, cmd: u8, parts: &[&[u8]]) {
    out.push(cmd);
    for part in parts {
        out.extend_from_slice(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn send_round_trips(conn in any::<u32>(), data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let m = Message::Send { conn, data };
            let mut out = Vec::new();
            m.encode(&mut out);
            prop_assert_eq!(Message::decode(&out), Ok(m));
        }
    }

    #[test]
    fn unknown_command_text_matches_v05() {
        let err = Message::decode(&[0x7f]).expect_err("unknown");
        assert_eq!(err.to_string(), "unknown command: 0x7F");
    }
}
