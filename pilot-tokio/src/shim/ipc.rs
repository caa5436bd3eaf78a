//! The v0.5 daemon IPC messages (dataplane.md §7) as an owned enum: body = command byte ‖
//! payload. Decoding goes through `pilot_proto::wire::ipc`; encoding writes the same layout.
//!
//! The `u32` length prefix is handled by the caller (see `crate::framing`).
//!
//! Beyond v0.5: [`Message::Extension`] and [`Message::ExtensionOk`] (see `crate::framing`).

use super::addr::AddrPort;
use crate::framing::{EXTENSION, EXTENSION_OK};

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
    /// A pilot-rs operation: a JSON object with an `op` field.
    Extension {
        json: Vec<u8>,
    },
    /// The JSON reply to an [`Message::Extension`].
    ExtensionOk {
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
    /// The payload does not have the layout the command needs.
    #[error("malformed {0} message: {1}")]
    Malformed(&'static str, String),
}

impl Message {
    /// Decodes one body with `pilot_proto::wire::ipc` (which checks every length exactly) and
    /// copies it into an owned message.
    pub fn decode(body: &[u8]) -> Result<Message, IpcError> {
        use pilot_proto::wire::ipc::IpcMessage as W;

        let (&cmd, payload) = body.split_first().ok_or(IpcError::Empty)?;
        let parsed = W::parse_body(body).map_err(|e| {
            let name = pilot_proto::wire::ipc::Command::from(cmd).name();
            IpcError::Malformed(name, e.to_string())
        })?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok(match parsed {
            W::Bind { port } => Message::Bind { port },
            W::BindOk { port } => Message::BindOk { port },
            W::Dial { dst } => Message::Dial { remote: dst },
            W::DialOk { conn_id } => Message::DialOk { conn: conn_id },
            W::Accept {
                local_port,
                conn_id,
                remote,
            } => Message::Accept {
                local_port,
                conn: conn_id,
                remote,
            },
            W::Send { conn_id, data } => Message::Send {
                conn: conn_id,
                data: data.to_vec(),
            },
            W::Recv { conn_id, data } => Message::Recv {
                conn: conn_id,
                data: data.to_vec(),
            },
            W::Close { conn_id } => Message::Close { conn: conn_id },
            W::CloseOk { conn_id } => Message::CloseOk { conn: conn_id },
            W::Error { code, message } => Message::Error {
                code,
                message: text(message),
            },
            W::SendTo { dst, data } => Message::SendTo {
                dst,
                data: data.to_vec(),
            },
            W::RecvFrom {
                src,
                dst_port,
                data,
            } => Message::RecvFrom {
                src,
                dst_port,
                data: data.to_vec(),
            },
            W::Info => Message::Info,
            W::InfoOk { json } => Message::InfoOk {
                json: json.to_vec(),
            },
            W::Handshake(h) => Message::Handshake {
                sub: h.sub(),
                args: payload.get(1..).unwrap_or_default().to_vec(),
            },
            W::HandshakeOk { json } => Message::HandshakeOk {
                json: json.to_vec(),
            },
            W::ResolveHostname { hostname } => Message::ResolveHostname {
                name: text(hostname),
            },
            W::ResolveHostnameOk { json } => Message::ResolveHostnameOk {
                json: json.to_vec(),
            },
            W::SetHostname { hostname } => Message::SetHostname {
                name: text(hostname),
            },
            W::SetHostnameOk { json } => Message::SetHostnameOk {
                json: json.to_vec(),
            },
            W::SetVisibility { value } => Message::SetVisibility { public: value == 1 },
            W::SetVisibilityOk { json } => Message::SetVisibilityOk {
                json: json.to_vec(),
            },
            W::Deregister => Message::Deregister,
            W::DeregisterOk { json } => Message::DeregisterOk {
                json: json.to_vec(),
            },
            W::SetTags { json } => Message::SetTags {
                json: json.to_vec(),
            },
            W::SetTagsOk { json } => Message::SetTagsOk {
                json: json.to_vec(),
            },
            W::SetWebhook { url } => Message::SetWebhook { url: text(url) },
            W::SetWebhookOk { json } => Message::SetWebhookOk {
                json: json.to_vec(),
            },
            W::SetTaskExec { value } => Message::SetTaskExec {
                enabled: value == 1,
            },
            W::SetTaskExecOk { json } => Message::SetTaskExecOk {
                json: json.to_vec(),
            },
            W::Unknown {
                cmd: EXTENSION,
                payload,
            } => Message::Extension {
                json: payload.to_vec(),
            },
            W::Unknown {
                cmd: EXTENSION_OK,
                payload,
            } => Message::ExtensionOk {
                json: payload.to_vec(),
            },
            _ => return Err(IpcError::UnknownCommand(cmd)),
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
            Message::Extension { json } => put(out, EXTENSION, &[json]),
            Message::ExtensionOk { json } => put(out, EXTENSION_OK, &[json]),
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
        fn send_round_trips(
            conn in any::<u32>(),
            data in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let m = Message::Send { conn, data };
            let mut out = Vec::new();
            m.encode(&mut out);
            prop_assert_eq!(Message::decode(&out), Ok(m));
        }
    }

    proptest! {
        #[test]
        fn our_encoding_parses_with_the_wire_codec(
            conn in any::<u32>(),
            port in any::<u16>(),
            data in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let send = Message::Send { conn, data: data.clone() };
            for m in [send, Message::Bind { port }, Message::CloseOk { conn }, Message::Info] {
                let mut out = Vec::new();
                m.encode(&mut out);
                prop_assert!(pilot_proto::wire::ipc::IpcMessage::parse_body(&out).is_ok());
                prop_assert_eq!(Message::decode(&out), Ok(m));
            }
        }
    }

    #[test]
    fn unknown_command_text_matches_v05() {
        let err = Message::decode(&[0x7f]).expect_err("unknown");
        assert_eq!(err.to_string(), "unknown command: 0x7F");
    }
}
