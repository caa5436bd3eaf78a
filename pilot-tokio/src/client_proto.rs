//! The runtime-free half of the client library, shared by the tokio client ([`crate::client`])
//! and the runtime-agnostic one (`crate::agnostic`): the error type, the broker's event frame
//! codec, request encoding and reply decoding, and the readers' routing tables
//! (`routes`). Nothing here does I/O.

use serde_json::Value;

use crate::framing::{SEND_OK, SHUTDOWN_OK};
use crate::shim::addr::Addr;
use crate::shim::ipc::Message;

// Only the runtime-agnostic client uses the tables so far; the tokio client's `Tables` and
// `Conn` read buffer are the same bookkeeping and can move onto them (then drop this cfg).
#[cfg(feature = "client-async-io")]
pub(crate) mod routes;

/// The event broker's virtual port.
pub const PORT_EVENTS: u16 = 1002;
/// The echo service's virtual port.
pub const PORT_ECHO: u16 = 7;
/// Largest data chunk per `Send` message.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Largest topic the broker accepts.
pub const MAX_TOPIC: usize = 1024;
/// Largest payload the broker accepts.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// Errors from the client library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No daemon answers on the socket.
    #[error("daemon is not running (no socket at {0})")]
    NotRunning(String),
    /// The daemon answered with an error.
    #[error("{0}")]
    Daemon(String),
    /// The connection to the daemon ended.
    #[error("connection to the daemon was lost")]
    Disconnected,
    /// The daemon sent something this client cannot use.
    #[error("unexpected reply from the daemon: {0}")]
    Protocol(String),
    /// An I/O error on the socket.
    #[error("daemon socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Maps a failed socket connect to [`ClientError::NotRunning`] when nothing listens there.
pub(crate) fn connect_error(path: &std::path::Path, e: std::io::Error) -> ClientError {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning(path.display().to_string())
        }
        _ => ClientError::Io(e),
    }
}

/// A client error as an `io::Error` (for `AsyncRead`/`AsyncWrite` impls).
pub(crate) fn to_io(e: ClientError) -> std::io::Error {
    match e {
        ClientError::Io(e) => e,
        ClientError::Disconnected => std::io::ErrorKind::BrokenPipe.into(),
        other => std::io::Error::other(other),
    }
}

/// One published event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The topic it was published on.
    pub topic: String,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

/// Encodes one v0.5 event frame.
pub fn encode_event(topic: &str, payload: &[u8]) -> Result<Vec<u8>, ClientError> {
    if topic.len() > MAX_TOPIC || payload.len() > MAX_PAYLOAD {
        return Err(ClientError::Daemon(format!(
            "event too large: topic {} bytes (max {MAX_TOPIC}), payload {} bytes \
             (max {MAX_PAYLOAD})",
            topic.len(),
            payload.len()
        )));
    }
    let mut out = Vec::with_capacity(6 + topic.len() + payload.len());
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decodes one frame from the front of `buf`: `Ok(None)` needs more bytes.
pub(crate) fn decode_event(buf: &[u8]) -> Result<Option<(Event, usize)>, ClientError> {
    let bad = || ClientError::Protocol("malformed event frame from the broker".into());
    let Some(t) = buf
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    else {
        return Ok(None);
    };
    if t > MAX_TOPIC {
        return Err(bad());
    }
    let Some(p) = buf.get(2 + t..6 + t) else {
        return Ok(None);
    };
    let p = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
    if p > MAX_PAYLOAD {
        return Err(bad());
    }
    let Some(payload) = buf.get(6 + t..6 + t + p) else {
        return Ok(None);
    };
    let topic = String::from_utf8_lossy(&buf[2..2 + t]).into_owned();
    Ok(Some((
        Event {
            topic,
            payload: payload.to_vec(),
        },
        6 + t + p,
    )))
}

/// Takes the next whole event off the front of `buf`, if there is one.
pub(crate) fn take_event(buf: &mut Vec<u8>) -> Result<Option<Event>, ClientError> {
    Ok(decode_event(buf)?.map(|(event, used)| {
        buf.drain(..used);
        event
    }))
}

pub(crate) fn encode(message: &Message) -> Vec<u8> {
    let mut body = Vec::new();
    message.encode(&mut body);
    body
}

pub(crate) fn expect_send_ok(body: &[u8]) -> Result<(), ClientError> {
    if body == [SEND_OK] {
        Ok(())
    } else {
        Err(decode_error(body))
    }
}

pub(crate) fn decode_error(body: &[u8]) -> ClientError {
    match Message::decode(body) {
        Ok(Message::Error { message, .. }) => ClientError::Daemon(message),
        Ok(other) => ClientError::Protocol(format!("{other:?}")),
        Err(e) => ClientError::Protocol(e.to_string()),
    }
}

/// The JSON object of a `*Ok` reply that carries one.
pub(crate) fn json_reply(body: &[u8]) -> Result<Value, ClientError> {
    match Message::decode(body) {
        Ok(
            Message::InfoOk { json }
            | Message::HandshakeOk { json }
            | Message::ResolveHostnameOk { json }
            | Message::SetHostnameOk { json }
            | Message::SetWebhookOk { json }
            | Message::SetVisibilityOk { json }
            | Message::DeregisterOk { json }
            | Message::SetTagsOk { json }
            | Message::ExtensionOk { json },
        ) => serde_json::from_slice(&json).map_err(|e| ClientError::Protocol(e.to_string())),
        _ => Err(decode_error(body)),
    }
}

/// This node's address from the daemon's `info` object.
pub(crate) fn address_from_info(info: &Value) -> Result<Addr, ClientError> {
    let text = info
        .get("address")
        .and_then(Value::as_str)
        .unwrap_or_default();
    text.parse()
        .map_err(|_| ClientError::Daemon("the daemon has no address yet (not registered)".into()))
}

/// The PID in a shutdown reply.
pub(crate) fn shutdown_pid(body: &[u8]) -> Result<u32, ClientError> {
    match body.split_first() {
        Some((&SHUTDOWN_OK, json)) => serde_json::from_slice::<Value>(json)
            .ok()
            .and_then(|v| v.get("pid")?.as_u64())
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| ClientError::Protocol("shutdown reply without pid".into())),
        _ => Err(decode_error(body)),
    }
}

/// The connection id of a dial reply, or the daemon's error text.
pub(crate) fn dial_reply(reply: &[u8]) -> Result<u32, String> {
    match Message::decode(reply) {
        Ok(Message::DialOk { conn }) => Ok(conn),
        Ok(Message::Error { message, .. }) => Err(message),
        other => Err(format!("unexpected reply to dial: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_frames_round_trip_and_reject_huge_topics() {
        let frame = encode_event("tasks.complete", b"{}").expect("encode");
        let (event, used) = decode_event(&frame).expect("ok").expect("whole");
        assert_eq!(
            (event.topic.as_str(), used),
            ("tasks.complete", frame.len())
        );
        assert!(decode_event(&frame[..5]).expect("ok").is_none());
        assert!(encode_event(&"x".repeat(2000), b"").is_err());
        assert!(decode_event(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn take_event_consumes_exactly_one_frame() {
        let mut buf = encode_event("a", b"1").expect("encode");
        buf.extend(encode_event("b", b"22").expect("encode"));
        let first = take_event(&mut buf).expect("ok").expect("whole");
        assert_eq!(
            (first.topic.as_str(), first.payload.as_slice()),
            ("a", &b"1"[..])
        );
        assert_eq!(buf, encode_event("b", b"22").expect("encode"));
    }

    #[test]
    fn address_missing_from_info_is_a_daemon_error() {
        let err = address_from_info(&serde_json::json!({})).expect_err("no address");
        assert!(matches!(err, ClientError::Daemon(_)));
    }
}
