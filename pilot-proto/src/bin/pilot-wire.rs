//! `pilot-wire decode`: decodes Pilot Protocol v0.5 frames given as hex, one per line.
//!
//! Each input line is `<kind> <hex>`, where kind is one of:
//!
//! - `packet`: a bare 34-byte-header packet plus payload;
//! - `udp`: one tunnel-socket datagram, dispatched on its first bytes (`PILT`, `PILS`, `PILK`,
//!   `PILA`, `PILP`, or a beacon message when the first byte is below 0x10);
//! - `ipc`: one or more length-prefixed daemon IPC frames;
//! - `registry`: one or more length-prefixed registry JSON frames.
//!
//! Inside packets, SACK blocks and whole frames of the data-exchange (1001), event-stream (1002)
//! and trust (444) services are decoded too; relayed beacon frames are decoded recursively.
//!
//! Spaces, `:` and `-` inside the hex are ignored; blank lines and lines starting with `#`
//! are skipped. Every decoded frame becomes one JSON line on stdout; a line that cannot be
//! decoded becomes one `{"line":N,"error":"..."}` line and decoding goes on. The exit status
//! is 1 when any line failed.

#![forbid(unsafe_code)]

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use pilot_proto::wire::ParseError;
use pilot_proto::wire::addr::port;
use pilot_proto::wire::beacon::{BeaconRepr, is_beacon_datagram};
use pilot_proto::wire::dataexchange::DataFrameRepr;
use pilot_proto::wire::event::EventFrame;
use pilot_proto::wire::ipc::{self, HandshakeCmd, IpcMessage};
use pilot_proto::wire::packet::{Flags, Packet, PacketRepr};
use pilot_proto::wire::registry::{self, Request, Response};
use pilot_proto::wire::sack::SackRepr;
use pilot_proto::wire::trust::TrustMessage;
use pilot_proto::wire::tunnel::{AuthKeyExchangeRepr, TunnelRepr};
use serde_json::{Map, Value, json};

const USAGE: &str = "usage: pilot-wire decode < lines\n\n\
Reads `<kind> <hex>` lines from stdin (kind: udp, registry, ipc, packet) and prints one JSON\n\
object per decoded frame, or {\"line\":N,\"error\":...} for a line that does not decode.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["decode"] => run_decode(),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run_decode() -> ExitCode {
    let stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    let mut failed = false;

    for (index, line) in stdin.lines().enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                eprintln!("pilot-wire: reading stdin: {e}");
                return ExitCode::FAILURE;
            }
        };
        for object in decode_line(&line) {
            failed |= object.contains_key("error");
            if writeln!(stdout, "{}", render(index + 1, object)).is_err() {
                return ExitCode::FAILURE;
            }
        }
    }

    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

type Object = Map<String, Value>;

/// One output line: `line` and `kind` first, then the other fields in sorted order.
fn render(line: usize, mut object: Object) -> String {
    let kind = object.remove("kind").unwrap_or(Value::Null);
    let rest = Value::Object(object).to_string();
    let rest = rest.strip_prefix('{').unwrap_or(&rest);
    let sep = if rest == "}" { "" } else { "," };
    format!("{{\"line\":{line},\"kind\":{kind}{sep}{rest}")
}

fn error(message: impl std::fmt::Display) -> Object {
    let mut o = Object::new();
    o.insert("error".into(), message.to_string().into());
    o
}

fn object(value: Value) -> Object {
    match value {
        Value::Object(o) => o,
        other => error(format!("internal: not an object: {other}")),
    }
}

/// Decodes one input line into zero (blank or comment) or more output objects.
fn decode_line(line: &str) -> Vec<Object> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Vec::new();
    }

    let (kind, hex_text) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let bytes = match parse_hex(hex_text) {
        Ok(bytes) => bytes,
        Err(e) => return vec![with_kind(kind, error(e))],
    };

    let objects = match kind {
        "packet" => vec![decode_packet(&bytes)],
        "udp" => vec![decode_udp(&bytes)],
        "ipc" => decode_stream(&bytes, ipc::frame_len, decode_ipc),
        "registry" => decode_stream(&bytes, registry_frame_len, decode_registry),
        other => {
            let msg = format!("unknown kind {other:?}: expected udp, registry, ipc or packet");
            vec![error(msg)]
        }
    };
    objects.into_iter().map(|o| with_kind(kind, o)).collect()
}

fn with_kind(kind: &str, mut o: Object) -> Object {
    o.insert("kind".into(), kind.into());
    o
}

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | ':' | '-'))
        .collect();
    if digits.is_empty() {
        return Err("no hex bytes after the kind".into());
    }
    if !digits.len().is_multiple_of(2) {
        return Err(format!("bad hex: odd number of digits ({})", digits.len()));
    }
    let nibble = |i: usize, c: u8| {
        (c as char)
            .to_digit(16)
            .ok_or_else(|| format!("bad hex: {:?} at digit {i}", c as char))
    };
    let d = digits.as_bytes();
    (0..d.len() / 2)
        .map(|i| Ok((nibble(2 * i, d[2 * i])? << 4 | nibble(2 * i + 1, d[2 * i + 1])?) as u8))
        .collect()
}

/// Lower-case hex, as the captures write it. (`hex` is only a dev-dependency of this crate.)
fn hex_encode(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Splits a byte stream of length-prefixed frames and decodes each one.
fn decode_stream(
    mut bytes: &[u8],
    frame_len: fn(&[u8]) -> Result<Option<usize>, ParseError>,
    decode: fn(&[u8]) -> Object,
) -> Vec<Object> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = match frame_len(bytes) {
            Ok(Some(len)) if len <= bytes.len() => len,
            Ok(Some(len)) => {
                let e = ParseError::BadLength {
                    declared: len,
                    actual: bytes.len(),
                };
                out.push(error(e));
                break;
            }
            Ok(None) => {
                out.push(error(ParseError::Truncated {
                    needed: 4,
                    got: bytes.len(),
                }));
                break;
            }
            Err(e) => {
                out.push(error(e));
                break;
            }
        };
        out.push(decode(&bytes[..len]));
        bytes = &bytes[len..];
    }
    out
}

/// Bytes as a string when they are UTF-8, else as hex under `<key>_hex`.
fn put_text(o: &mut Object, key: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => o.insert(key.into(), text.into()),
        Err(_) => o.insert(format!("{key}_hex"), hex_encode(bytes).into()),
    };
}

/// Bytes as parsed JSON when they are JSON, else as text.
fn put_json(o: &mut Object, bytes: &[u8]) {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => o.insert("json".into(), v),
        Err(_) => {
            put_text(o, "text", bytes);
            None
        }
    };
}

fn decode_packet(bytes: &[u8]) -> Object {
    let repr = match PacketRepr::decode(bytes) {
        Ok(repr) => repr,
        Err(e) => return error(format_args!("packet: {e}")),
    };
    let mut o = object(packet_json(&repr));
    // A valid packet has a checksum field; the view was already checked by decode.
    if let Ok(view) = Packet::new_unverified(bytes) {
        o.insert("checksum".into(), format!("{:08x}", view.checksum()).into());
        let extra = bytes.len() - view.total_len();
        if extra > 0 {
            o.insert("trailing_bytes".into(), extra.into());
        }
    }
    o
}

fn packet_json(p: &PacketRepr<'_>) -> Value {
    let mut v = json!({
        "version": p.version,
        "flags": p.flags.to_string(),
        "protocol": p.protocol.to_string(),
        "payload_len": p.payload.len(),
        "src": p.src_addr_port().to_string(),
        "dst": p.dst_addr_port().to_string(),
        "seq": p.seq,
        "ack": p.ack,
        "window": p.window,
        "payload_hex": hex_encode(p.payload),
    });
    if let Some(app) = app_json(p) {
        v["app"] = app;
    }
    v
}

/// Decodes what the payload carries when its shape is unambiguous: SACK blocks on an ACK, or
/// one whole frame of the service on a well-known port (data exchange, event stream, trust).
fn app_json(p: &PacketRepr<'_>) -> Option<Value> {
    let sack = SackRepr::decode(p.payload)
        .ok()
        .filter(|_| p.flags.contains(Flags::ACK));
    if let Some(sack) = sack {
        let blocks: Vec<_> = sack
            .blocks()
            .iter()
            .map(|b| json!([b.left, b.right]))
            .collect();
        return Some(json!({ "sack": blocks }));
    }

    let ports = [p.src_port, p.dst_port];
    if ports.contains(&port::DATA_EXCHANGE) {
        return data_exchange_json(p.payload);
    }
    if ports.contains(&port::EVENT_STREAM) {
        let frame = EventFrame::new_checked(p.payload).ok()?;
        let mut o = Object::new();
        put_text(&mut o, "topic", frame.topic());
        put_text(&mut o, "payload", frame.payload());
        return Some(json!({ "event": o }));
    }
    if ports.contains(&port::TRUST) {
        let msg = TrustMessage::parse(p.payload).ok()?;
        let json: Value = serde_json::from_slice(&msg.to_json()).ok()?;
        return Some(json!({ "trust": json }));
    }
    None
}

fn data_exchange_json(payload: &[u8]) -> Option<Value> {
    let frame = DataFrameRepr::decode(payload).ok()?;
    let mut o = Object::new();
    o.insert("data_type".into(), frame.data_type.to_string().into());
    if let Some(name) = frame.filename {
        put_text(&mut o, "filename", name);
    }
    put_text(&mut o, "body", frame.payload);
    Some(json!({ "dataexchange": o }))
}

/// Relayed frames nest; this bounds how deep a crafted datagram can make the decoder recurse.
const MAX_RELAY_DEPTH: usize = 4;

fn decode_udp(bytes: &[u8]) -> Object {
    decode_datagram(bytes, 0)
}

fn decode_datagram(bytes: &[u8], depth: usize) -> Object {
    if is_beacon_datagram(bytes) {
        return decode_beacon(bytes, depth);
    }
    match TunnelRepr::parse(bytes) {
        Ok(frame) => tunnel_json(&frame),
        Err(ParseError::BadMagic) if bytes.len() >= 4 => {
            error(format!("udp: unknown magic {}", hex_encode(&bytes[..4])))
        }
        Err(e) => error(format_args!("udp: {e}")),
    }
}

fn tunnel_json(frame: &TunnelRepr<'_>) -> Object {
    let magic = String::from_utf8_lossy(&frame.kind().magic()).into_owned();
    let mut o = match frame {
        TunnelRepr::Plain(plain) => decode_packet(plain.packet),
        TunnelRepr::Sealed(sealed) => object(json!({
            "sender": sealed.sender,
            "nonce_prefix": hex_encode(&sealed.nonce.prefix),
            "nonce_counter": sealed.nonce.counter,
            "sealed_len": sealed.sealed.len(),
            "sealed_hex": hex_encode(sealed.sealed),
        })),
        TunnelRepr::KeyExchange(key) => object(json!({
            "sender": key.sender,
            "x25519_pub": hex_encode(&key.public_key),
        })),
        TunnelRepr::AuthKeyExchange(auth) => object(json!({
            "sender": auth.sender,
            "x25519_pub": hex_encode(&auth.public_key),
            "ed25519_pub": hex_encode(&auth.signing_key),
            "signature": hex_encode(&auth.signature),
            "signature_valid": auth_signature_valid(auth),
        })),
        TunnelRepr::Punch => Object::new(),
    };
    o.insert("magic".into(), magic.into());
    o
}

/// Checks a PILA signature as v0.5 does: plain Ed25519 over `auth ‖ node ‖ X25519 key`.
fn auth_signature_valid(auth: &AuthKeyExchangeRepr) -> bool {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    let Ok(key) = VerifyingKey::from_bytes(&auth.signing_key) else {
        return false;
    };
    let signature = Signature::from_bytes(&auth.signature);
    key.verify(&auth.signed_message(), &signature).is_ok()
}

fn decode_beacon(bytes: &[u8], depth: usize) -> Object {
    let msg = match BeaconRepr::parse_bytes(bytes) {
        Ok(msg) => msg,
        Err(e) => return error(format_args!("beacon: {e}")),
    };
    let mut o = object(json!({ "beacon": format!("{:?}", msg.kind()) }));
    let inner = match msg {
        BeaconRepr::Discover { node_id, proof } => {
            o.insert("node_id".into(), node_id.into());
            o.insert("proof".into(), proof.is_some().into());
            None
        }
        BeaconRepr::DiscoverReply { observed: at } | BeaconRepr::PunchCommand { peer: at } => {
            o.insert("endpoint".into(), at.to_string().into());
            None
        }
        BeaconRepr::PunchRequest {
            requester_id,
            target_id,
        } => {
            o.insert("requester_id".into(), requester_id.into());
            o.insert("target_id".into(), target_id.into());
            None
        }
        BeaconRepr::Relay {
            sender_id,
            dest_id,
            payload,
        } => {
            o.insert("sender_id".into(), sender_id.into());
            o.insert("dest_id".into(), dest_id.into());
            Some(payload)
        }
        BeaconRepr::RelayDeliver { sender_id, payload } => {
            o.insert("sender_id".into(), sender_id.into());
            Some(payload)
        }
        BeaconRepr::Sync {
            beacon_id,
            node_ids,
        } => {
            o.insert("beacon_id".into(), beacon_id.into());
            o.insert(
                "node_ids".into(),
                node_ids.iter().collect::<Vec<_>>().into(),
            );
            None
        }
        _ => None,
    };
    if let Some(inner) = inner {
        let nested = if depth < MAX_RELAY_DEPTH {
            decode_datagram(inner, depth + 1)
        } else {
            error("relay nesting too deep")
        };
        o.insert("inner".into(), Value::Object(nested));
    }
    o
}

/// A registry frame: `u32 length ‖ JSON`, classified against the request and response
/// catalogues.
fn decode_registry(frame: &[u8]) -> Object {
    let body = frame.get(registry::LENGTH_PREFIX..).unwrap_or_default();
    let json: Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(e) => return error(format_args!("registry: body is not JSON: {e}")),
    };

    let request = Request::from_value(json.clone());
    let response = Response::from_value(json.clone());
    let (direction, type_name) = match (&request, &response) {
        (Ok(r), _) if !matches!(r, Request::Unknown(_)) => ("request", r.type_name().to_owned()),
        (_, Ok(r)) if !matches!(r, Response::Unknown(_)) => ("response", r.type_name().to_owned()),
        (Err(e), _) | (_, Err(e)) => return error(format_args!("registry: {e}")),
        (Ok(r), _) => ("unknown", r.type_name().to_owned()),
    };
    object(json!({ "direction": direction, "type": type_name, "json": json }))
}

fn registry_frame_len(bytes: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some(len) = bytes.first_chunk::<{ registry::LENGTH_PREFIX }>() else {
        return Ok(None);
    };
    let body = u32::from_be_bytes(*len) as usize;
    if body > registry::MAX_FRAME_BODY {
        return Err(ParseError::TooLarge {
            len: body,
            max: registry::MAX_FRAME_BODY,
        });
    }
    Ok(Some(registry::LENGTH_PREFIX + body))
}

fn decode_ipc(frame: &[u8]) -> Object {
    let msg = match IpcMessage::decode(frame) {
        Ok(msg) => msg,
        Err(e) => return error(format_args!("ipc: {e}")),
    };
    let mut o = Object::new();
    o.insert("command".into(), msg.command().name().into());
    o.insert("cmd".into(), u8::from(msg.command()).into());
    ipc_fields(&mut o, &msg);
    o
}

fn ipc_fields(o: &mut Object, msg: &IpcMessage<'_>) {
    let mut put = |k: &str, v: Value| o.insert(k.into(), v);
    match *msg {
        IpcMessage::Bind { port } | IpcMessage::BindOk { port } => put("port", port.into()),
        IpcMessage::Dial { dst } => put("dst", dst.to_string().into()),
        IpcMessage::DialOk { conn_id }
        | IpcMessage::Close { conn_id }
        | IpcMessage::CloseOk { conn_id } => put("conn_id", conn_id.into()),
        IpcMessage::Accept {
            local_port,
            conn_id,
            remote,
        } => {
            put("local_port", local_port.into());
            put("conn_id", conn_id.into());
            put("remote", remote.to_string().into())
        }
        IpcMessage::Send { conn_id, data } | IpcMessage::Recv { conn_id, data } => {
            put("conn_id", conn_id.into());
            put("data_hex", hex_encode(data).into())
        }
        IpcMessage::SendTo { dst, data } => {
            put("dst", dst.to_string().into());
            put("data_hex", hex_encode(data).into())
        }
        IpcMessage::RecvFrom {
            src,
            dst_port,
            data,
        } => {
            put("src", src.to_string().into());
            put("dst_port", dst_port.into());
            put("data_hex", hex_encode(data).into())
        }
        IpcMessage::SetVisibility { value } | IpcMessage::SetTaskExec { value } => {
            put("value", value.into())
        }
        IpcMessage::Info | IpcMessage::Deregister => None,
        _ => {
            ipc_text_fields(o, msg);
            None
        }
    };
}

fn ipc_text_fields(o: &mut Object, msg: &IpcMessage<'_>) {
    match *msg {
        IpcMessage::Error { code, message } => {
            o.insert("code".into(), code.into());
            put_text(o, "message", message);
        }
        IpcMessage::Handshake(cmd) => handshake_fields(o, &cmd),
        IpcMessage::ResolveHostname { hostname } | IpcMessage::SetHostname { hostname } => {
            put_text(o, "hostname", hostname)
        }
        IpcMessage::SetWebhook { url } => put_text(o, "url", url),
        IpcMessage::Unknown { payload, .. } => {
            o.insert("payload_hex".into(), hex_encode(payload).into());
        }
        IpcMessage::InfoOk { json }
        | IpcMessage::HandshakeOk { json }
        | IpcMessage::ResolveHostnameOk { json }
        | IpcMessage::SetHostnameOk { json }
        | IpcMessage::SetVisibilityOk { json }
        | IpcMessage::DeregisterOk { json }
        | IpcMessage::SetTags { json }
        | IpcMessage::SetTagsOk { json }
        | IpcMessage::SetWebhookOk { json }
        | IpcMessage::SetTaskExecOk { json } => put_json(o, json),
        _ => {}
    }
}

fn handshake_fields(o: &mut Object, cmd: &HandshakeCmd<'_>) {
    o.insert("sub".into(), cmd.sub().into());
    o.insert("sub_name".into(), cmd.name().into());
    match *cmd {
        HandshakeCmd::Request {
            node,
            justification: text,
        }
        | HandshakeCmd::Reject { node, reason: text } => {
            o.insert("node_id".into(), node.into());
            put_text(o, "text", text);
        }
        HandshakeCmd::Approve { node } | HandshakeCmd::Revoke { node } => {
            o.insert("node_id".into(), node.into());
        }
        HandshakeCmd::Unknown { args, .. } => {
            o.insert("args_hex".into(), hex_encode(args).into());
        }
        HandshakeCmd::Pending | HandshakeCmd::Trusted => {}
    }
}
