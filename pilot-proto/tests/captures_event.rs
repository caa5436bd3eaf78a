//! Event-stream frames captured from the Go v0.5 daemons decode and re-encode byte for byte.
//!
//! Sources: the `app` annotations of `tunnel-plaintext.jsonl` (subscribe, publish and deliver
//! frames reassembled from stream segments) and the `data_hex` of event-stream IPC messages in
//! `ipc.jsonl`. The files are vendored under `tests/captures/`; `PILOT_CAPTURES` points
//! elsewhere.

use std::path::PathBuf;

use pilot_proto::pubsub::codec::FrameReader;
use pilot_proto::wire::event::{EventFrame, EventRepr};
use serde_json::Value;

fn captures_dir() -> PathBuf {
    std::env::var_os("PILOT_CAPTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/captures"))
}

fn lines(file: &str) -> Vec<Value> {
    let path = captures_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("captures missing at {}: {err}", path.display()));
    text.lines()
        .map(|line| serde_json::from_str(line).expect("capture line is JSON"))
        .collect()
}

fn check_frame(id: &str, bytes: &[u8], topic: &[u8], payload: &[u8]) {
    let frame = EventFrame::new_checked(bytes).unwrap_or_else(|err| panic!("{id}: {err}"));
    let repr = EventRepr::parse(&frame);
    assert_eq!(repr.topic, topic, "{id}: topic");
    assert_eq!(repr.payload, payload, "{id}: payload");
    assert_eq!(frame.frame_len(), bytes.len(), "{id}: length");
    assert_eq!(repr.to_vec(), bytes, "{id}: re-encoding");
}

#[test]
fn tunnel_capture_event_frames_round_trip() {
    let mut seen = Vec::new();
    for line in lines("tunnel-plaintext.jsonl") {
        let Some(app) = line.get("app") else { continue };
        if app["service"] != "event-stream" {
            continue;
        }
        for message in app["messages"].as_array().expect("messages") {
            let id = line["id"].as_str().unwrap_or("?");
            let bytes = hex::decode(message["frame_hex"].as_str().unwrap()).unwrap();
            let topic = message["topic"].as_str().unwrap().as_bytes();
            let payload = hex::decode(message["payload_hex"].as_str().unwrap()).unwrap();
            check_frame(id, &bytes, topic, &payload);
            seen.push(message["role"].as_str().unwrap().to_owned());
        }
    }

    // The capture holds at least one frame of each role.
    for role in ["subscribe", "publish", "deliver"] {
        assert!(
            seen.iter().any(|r| r == role),
            "no {role} frame in the capture: {seen:?}"
        );
    }
}

#[test]
fn ipc_capture_event_payloads_reassemble() {
    let mut frames = Vec::new();
    for line in lines("ipc.jsonl") {
        let step = line["step"].as_str().unwrap_or("");
        let Some(data) = line.get("data_hex").and_then(Value::as_str) else {
            continue;
        };
        if !step.contains("event-stream") {
            continue;
        }

        // Feed the bytes one at a time: a stream may split a frame anywhere.
        let mut reader = FrameReader::new(64 * 1024);
        let bytes = hex::decode(data).unwrap();
        for byte in &bytes {
            reader.push(std::slice::from_ref(byte));
        }
        while let Some(frame) = reader.next_frame().unwrap() {
            frames.push(frame);
        }
    }

    assert!(
        frames.len() >= 2,
        "expected subscribe and deliver frames, got {}",
        frames.len()
    );
    assert!(frames.iter().all(|f| &f.topic[..] == b"sensors"));
    assert!(frames.iter().any(|f| &f.payload[..] == b"temperature=22.5"));
}
