//! Every IPC frame captured between `pilotctl` (or the harness) and the Go v0.5 daemon parses
//! as the command the capture names, matches the capture's decoded fields, and re-emits to the
//! same bytes. The capture files are vendored under `tests/captures/`; set `PILOT_CAPTURES` to
//! read another copy.

use std::path::PathBuf;

use pilot_proto::wire::ipc::{Command, HandshakeCmd, IpcMessage};
use serde_json::Value;

fn captures_dir() -> PathBuf {
    match std::env::var_os("PILOT_CAPTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/captures"),
    }
}

fn lines(file: &str) -> Vec<Value> {
    let path = captures_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// Compares the typed message with the fields the capture decoded.
fn check_fields(id: &str, msg: &IpcMessage<'_>, want: &Value) {
    let mut got = serde_json::Map::new();
    let mut put = |k: &str, v: Value| got.insert(k.to_owned(), v);
    match *msg {
        IpcMessage::Bind { port } | IpcMessage::BindOk { port } => put("port", port.into()),
        IpcMessage::Dial { dst } | IpcMessage::SendTo { dst, .. } => {
            put("addr", dst.addr.to_string().into());
            put("port", dst.port.into())
        }
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
            put("remote_addr", remote.addr.to_string().into());
            put("remote_port", remote.port.into())
        }
        IpcMessage::Send { conn_id, data } | IpcMessage::Recv { conn_id, data } => {
            put("data_hex", hex::encode(data).into());
            put("conn_id", conn_id.into())
        }
        IpcMessage::RecvFrom {
            src,
            dst_port,
            data,
        } => {
            put("src_addr", src.addr.to_string().into());
            put("src_port", src.port.into());
            put("dst_port", dst_port.into());
            put("data_hex", hex::encode(data).into())
        }
        IpcMessage::Error { code, message } => {
            put("code", code.into());
            put("message", text(message).into())
        }
        IpcMessage::Handshake(cmd) => {
            check_handshake(&cmd, &mut put);
            None
        }
        IpcMessage::ResolveHostname { hostname } | IpcMessage::SetHostname { hostname } => {
            put("text", text(hostname).into())
        }
        IpcMessage::SetVisibility { value } | IpcMessage::SetTaskExec { value } => {
            put("value", value.into())
        }
        _ => None,
    };
    for (k, v) in &got {
        assert_eq!(&want[k], v, "{id}: field {k}");
    }
}

fn check_handshake(cmd: &HandshakeCmd<'_>, put: &mut impl FnMut(&str, Value) -> Option<Value>) {
    put("sub", cmd.sub().into());
    put("sub_name", cmd.name().into());
    match *cmd {
        HandshakeCmd::Request {
            node,
            justification: t,
        }
        | HandshakeCmd::Reject { node, reason: t } => {
            put("node_id", node.into());
            put("text", text(t).into());
        }
        HandshakeCmd::Approve { node } | HandshakeCmd::Revoke { node } => {
            put("node_id", node.into());
        }
        _ => {}
    }
}

#[test]
fn every_ipc_frame_parses_and_re_emits() {
    let mut checked = 0;
    for line in lines("ipc.jsonl") {
        let id = line["id"].as_str().unwrap();
        let frame = hex::decode(line["frame_hex"].as_str().unwrap()).unwrap();
        let msg = IpcMessage::decode(&frame).unwrap_or_else(|e| panic!("{id}: {e}"));

        assert_eq!(
            u64::from(u8::from(msg.command())),
            line["cmd"],
            "{id} command"
        );
        if !matches!(msg.command(), Command::Unknown(_)) {
            assert_eq!(msg.command().name(), line["cmd_name"], "{id} name");
        }
        check_fields(id, &msg, &line);
        if let Some(json) = line.get("json") {
            let parsed: Value = serde_json::from_slice(&frame[5..]).unwrap();
            assert_eq!(&parsed, json, "{id} json");
        }

        let mut out = vec![0xa5; msg.buffer_len()];
        msg.emit(&mut out).unwrap();
        assert_eq!(out, frame, "{id}: re-emitted bytes differ");
        checked += 1;
    }
    assert!(checked >= 100, "only {checked} IPC frames found");
}

#[test]
fn unknown_command_from_the_harness_is_kept() {
    let frame = hex::decode("000000017f").unwrap();
    assert_eq!(
        IpcMessage::decode(&frame),
        Ok(IpcMessage::Unknown {
            cmd: 0x7f,
            payload: &[]
        })
    );
}
