//! Every packet the Go v0.5 build put on the wire in the captures parses, matches the capture's
//! own decoding field by field, and re-emits to the same bytes. Packets come from plaintext
//! `PILT` frames, from decrypted `PILS` plaintexts, and from tunnel frames relayed through the
//! beacon. SACK payloads and data-exchange frames carried in those packets are checked too.
//!
//! The capture files are vendored under `tests/captures/` (copies of
//! `pilot-v0.5/captures/`); set `PILOT_CAPTURES` to read another copy.

use std::path::PathBuf;

use pilot_proto::wire::dataexchange::{DataFrame, DataFrameRepr};
use pilot_proto::wire::packet::{Packet, PacketRepr};
use pilot_proto::wire::sack::SackRepr;
use serde_json::Value;

const PILT: &[u8] = b"PILT";

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

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}"))).unwrap()
}

/// Parses `bytes` as one packet, compares it with the capture's decoding `want`, re-emits it.
fn check_packet(id: &str, bytes: &[u8], want: &Value) {
    let repr = PacketRepr::decode(bytes).unwrap_or_else(|e| panic!("{id}: {e}"));
    let view = Packet::new_checked(bytes).unwrap();

    assert_eq!(u64::from(repr.version), want["version"], "{id} version");
    assert_eq!(u64::from(repr.flags.bits()), want["flags"], "{id} flags");
    assert_eq!(
        u64::from(u8::from(repr.protocol)),
        want["protocol"],
        "{id} protocol"
    );
    assert_eq!(repr.src.to_string(), want["src"], "{id} src");
    assert_eq!(repr.dst.to_string(), want["dst"], "{id} dst");
    assert_eq!(u64::from(repr.src_port), want["src_port"], "{id} src_port");
    assert_eq!(u64::from(repr.dst_port), want["dst_port"], "{id} dst_port");
    assert_eq!(u64::from(repr.seq), want["seq"], "{id} seq");
    assert_eq!(u64::from(repr.ack), want["ack"], "{id} ack");
    assert_eq!(u64::from(repr.window), want["window"], "{id} window");
    assert_eq!(
        format!("{:08x}", view.checksum()),
        want["checksum"],
        "{id} checksum"
    );
    assert_eq!(
        hex::encode(repr.payload),
        want["payload_hex"],
        "{id} payload"
    );

    let mut out = vec![0xa5; repr.buffer_len()];
    repr.emit(&mut out).unwrap();
    assert_eq!(out, bytes, "{id}: re-emitted bytes differ");

    if let Some(sack) = want.get("sack") {
        check_sack(id, repr.payload, sack);
    }
}

fn check_sack(id: &str, payload: &[u8], want: &Value) {
    let repr = SackRepr::decode(payload).unwrap_or_else(|e| panic!("{id} sack: {e}"));
    let blocks: Vec<Value> = repr
        .blocks()
        .iter()
        .map(|b| serde_json::json!([b.left, b.right]))
        .collect();
    assert_eq!(Value::from(blocks), want["blocks"], "{id} sack blocks");

    let mut out = vec![0; repr.buffer_len()];
    repr.emit(&mut out).unwrap();
    assert_eq!(out, payload, "{id}: re-emitted SACK differs");
}

/// Strips the `PILT` magic; the rest of the datagram must be exactly one packet.
fn pilt_packet(id: &str, frame: &[u8]) -> Vec<u8> {
    assert_eq!(&frame[..4], PILT, "{id} is not PILT");
    frame[4..].to_vec()
}

#[test]
fn plaintext_tunnel_packets() {
    let mut checked = 0;
    for line in lines("tunnel-plaintext.jsonl") {
        if line["magic"] != "PILT" {
            continue;
        }
        let id = line["id"].as_str().unwrap();
        let packet = pilt_packet(id, &hex_field(&line, "hex"));
        check_packet(id, &packet, &line["packet"]);
        checked += 1;
    }
    assert!(checked >= 150, "only {checked} PILT frames found");
}

#[test]
fn encrypted_tunnel_inner_packets() {
    let mut checked = 0;
    for line in lines("tunnel-encrypted.jsonl") {
        let id = line["id"].as_str().unwrap();
        if line["magic"] == "PILT" {
            check_packet(
                id,
                &pilt_packet(id, &hex_field(&line, "hex")),
                &line["packet"],
            );
            checked += 1;
        }
        if line.get("plaintext_hex").is_some_and(|p| p.is_string()) {
            check_packet(
                id,
                &hex_field(&line, "plaintext_hex"),
                &line["inner_packet"],
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} packets found");
}

#[test]
fn relayed_packets_through_the_beacon() {
    let mut checked = 0;
    for line in lines("beacon.jsonl") {
        let inner = &line["inner"];
        if inner["magic"] != "PILT" {
            continue;
        }
        let id = line["id"].as_str().unwrap();
        check_packet(
            id,
            &pilt_packet(id, &hex_field(&line, "inner_hex")),
            &inner["packet"],
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} relayed PILT frames found");
}

#[test]
fn data_exchange_frames_in_streams() {
    let mut checked = 0;
    for line in lines("tunnel-plaintext.jsonl") {
        let app = &line["app"];
        if app["service"] != "data-exchange" {
            continue;
        }
        let id = line["id"].as_str().unwrap();
        for msg in app["messages"].as_array().into_iter().flatten() {
            let frame = hex_field(msg, "frame_hex");
            let view = DataFrame::new_checked(&frame[..]).unwrap_or_else(|e| panic!("{id}: {e}"));
            let repr = DataFrameRepr::parse(&view).unwrap();
            assert_eq!(
                u64::from(u32::from(repr.data_type)),
                msg["type"],
                "{id} type"
            );
            assert_eq!(hex::encode(view.body()), msg["body_hex"], "{id} body");

            let mut out = vec![0; repr.buffer_len()];
            repr.emit(&mut out).unwrap();
            assert_eq!(out, frame, "{id}: re-emitted data-exchange frame differs");
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} data-exchange frames found");
}
