//! Every beacon message shape captured from the Go v0.5 implementation parses and re-emits
//! byte-identically, and its decoded fields match the capture's annotations.
//!
//! A sample of each type (and each relayed inner magic) is embedded; when the full capture is
//! present (`PILOT_CAPTURES`, default the shared reference path) every datagram is checked.

use std::net::SocketAddr;

use pilot_proto::wire::beacon::{BeaconKind, BeaconRepr};
use serde_json::Value;

/// (capture id, datagram hex).
const DATAGRAMS: &[(&str, &str)] = &[
    ("bcn-0001", "0100000001"),
    ("bcn-0002", "02047f0000019a56"),
    ("bcn-0009", "04047f0000019a56"),
    ("bcn-0061", "030000000100000002"),
    (
        "bcn-0129",
        "05000000010000000250494c5411010000000000000001000000000002c00000070000000000000000020065a71a43",
    ),
    (
        "bcn-0130",
        "060000000150494c5411010000000000000001000000000002c00000070000000000000000020065a71a43",
    ),
    (
        "bcn-0164",
        "05000000010000000250494c4100000001a4354c89909f8e5da1606460280200c6bb5b6c36dceb0979f318ef9308c5ee1ba7a01ceee479fa9c1da1d2cc15b8da46bcd72cc7006a9160e97edc8dd4c7f0c5f4a70dfb7510f53af1f081f1bd1283d354fb24b91c2652823f778e2e9f42d8ec3a43a8741bb2baa9d522f98c855073e850b6489f09b61017d4fa49e129722f03",
    ),
    (
        "bcn-0169",
        "060000000150494c4100000001a4354c89909f8e5da1606460280200c6bb5b6c36dceb0979f318ef9308c5ee1ba7a01ceee479fa9c1da1d2cc15b8da46bcd72cc7006a9160e97edc8dd4c7f0c5f4a70dfb7510f53af1f081f1bd1283d354fb24b91c2652823f778e2e9f42d8ec3a43a8741bb2baa9d522f98c855073e850b6489f09b61017d4fa49e129722f03",
    ),
    (
        "bcn-0180",
        "05000000010000000250494c53000000018efd74a200000000000000045e3f017f0959fab3e7d91b26b616e1baba734c50138d1134f61c8f7acb542ed3edc30c6f4cca52dd5c507b4c84bcc4a0d1a3",
    ),
    (
        "bcn-0182",
        "060000000150494c53000000018efd74a200000000000000018733a067d75fc369e90ec1e3286897ff15145e2129b8391ce91c53ce39f20d30404dac027f129dd0e91fc47684989da043ff",
    ),
    ("bcn-0226", "07000000020001000000c8"),
    ("bcn-0227", "0500000064000000c850494c50"),
    ("bcn-0229", "060000006450494c50"),
];

fn round_trip(id: &str, datagram_hex: &str) -> Vec<u8> {
    let bytes = hex::decode(datagram_hex).expect("capture hex");
    let repr = BeaconRepr::parse_bytes(&bytes).unwrap_or_else(|e| panic!("{id}: {e}"));
    assert_eq!(repr.buffer_len(), bytes.len(), "{id}: length");
    assert_eq!(repr.to_vec(), bytes, "{id}: byte-identical re-emission");
    bytes
}

#[test]
fn embedded_datagrams_round_trip() {
    for (id, datagram) in DATAGRAMS {
        round_trip(id, datagram);
    }
}

#[test]
fn embedded_fields_match_the_reference_vectors() {
    let sync = hex::decode("07000000020001000000c8").expect("hex");
    let BeaconRepr::Sync {
        beacon_id,
        node_ids,
    } = BeaconRepr::parse_bytes(&sync).expect("sync")
    else {
        panic!("not a sync");
    };
    assert_eq!(
        (beacon_id, node_ids.iter().collect::<Vec<_>>()),
        (2, vec![200])
    );

    let reply = hex::decode("02047f0000019a56").expect("hex");
    let expected: SocketAddr = "127.0.0.1:39510".parse().expect("addr");
    assert_eq!(
        BeaconRepr::parse_bytes(&reply).expect("reply"),
        BeaconRepr::DiscoverReply { observed: expected }
    );
}

fn check_record(record: &Value) {
    let id = record["id"].as_str().unwrap_or_default();
    let bytes = round_trip(id, record["hex"].as_str().unwrap_or_default());
    let repr = BeaconRepr::parse_bytes(&bytes).expect("parsed above");
    let number = |name: &str| record[name].as_u64().map(|value| value as u32);
    match repr {
        BeaconRepr::Discover { node_id, .. } => {
            assert_eq!(Some(node_id), number("node_id"), "{id}")
        }
        BeaconRepr::DiscoverReply { observed: addr } | BeaconRepr::PunchCommand { peer: addr } => {
            assert_eq!(
                addr.ip().to_string(),
                record["ip"].as_str().unwrap_or_default(),
                "{id}"
            );
            assert_eq!(Some(u32::from(addr.port())), number("port"), "{id}");
        }
        BeaconRepr::PunchRequest {
            requester_id,
            target_id,
        } => {
            assert_eq!(Some(requester_id), number("requester_id"), "{id}");
            assert_eq!(Some(target_id), number("target_id"), "{id}");
        }
        BeaconRepr::Relay {
            sender_id,
            dest_id,
            payload,
        } => {
            assert_eq!(Some(sender_id), number("sender_id"), "{id}");
            assert_eq!(Some(dest_id), number("dest_id"), "{id}");
            assert_eq!(
                hex::encode(payload),
                record["inner_hex"].as_str().unwrap_or_default()
            );
        }
        BeaconRepr::RelayDeliver { sender_id, payload } => {
            assert_eq!(Some(sender_id), number("sender_id"), "{id}");
            assert_eq!(
                hex::encode(payload),
                record["inner_hex"].as_str().unwrap_or_default()
            );
        }
        BeaconRepr::Sync {
            beacon_id,
            node_ids,
        } => {
            assert_eq!(Some(beacon_id), number("beacon_id"), "{id}");
            let ids: Vec<u64> = node_ids.iter().map(u64::from).collect();
            let expected: Vec<u64> = record["node_ids"]
                .as_array()
                .map(|list| list.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            assert_eq!(ids, expected, "{id}");
        }
        _ => panic!("{id}: unexpected kind {:?}", repr.kind()),
    }
    assert_eq!(
        u8::from(repr.kind()) as u64,
        record["type"].as_u64().unwrap_or(0),
        "{id}"
    );
    assert_ne!(repr.kind(), BeaconKind::Unknown(0));
}

#[test]
fn full_capture_file_round_trips_when_present() {
    let dir = capture_dir();
    let Ok(text) = std::fs::read_to_string(format!("{dir}/beacon.jsonl")) else {
        eprintln!("beacon.jsonl not found under {dir}; the embedded datagrams still ran");
        return;
    };
    let mut checked = 0;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        check_record(&serde_json::from_str(line).expect("jsonl line"));
        checked += 1;
    }
    assert!(checked >= 183, "checked {checked} datagrams");
}

const FILE: &str = "beacon.jsonl";

/// `PILOT_CAPTURES`, else the copies vendored under `tests/captures`, else the shared reference.
fn capture_dir() -> String {
    if let Ok(dir) = std::env::var("PILOT_CAPTURES") {
        return dir;
    }
    let vendored = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/captures");
    if std::path::Path::new(&format!("{vendored}/{FILE}")).exists() {
        return vendored.to_owned();
    }
    "/work/shared/pilot-v0.5/captures".to_owned()
}

/// Replays what the Go daemons sent to the Go beacon into our beacon (compat mode) and checks
/// that our beacon sends the same datagrams to the same ports.
#[test]
fn our_beacon_answers_captured_daemons_as_the_go_beacon_did() {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use pilot_proto::beacon::{BeaconConfig, BeaconServer};

    let dir = capture_dir();
    let Ok(text) = std::fs::read_to_string(format!("{dir}/{FILE}")) else {
        eprintln!("{FILE} not found under {dir}; skipped");
        return;
    };
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let mut beacons: BTreeMap<String, BeaconServer> = BTreeMap::new();
    let (mut expected, mut produced) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let record: Value = serde_json::from_str(line).expect("jsonl line");
        let scenario = record["scenario"].as_str().unwrap_or_default().to_owned();
        if scenario == "gossip" {
            continue;
        }
        let bytes = hex::decode(record["hex"].as_str().unwrap_or_default()).expect("hex");
        let port = |name: &str| record[name].as_u64().unwrap_or(0) as u16;
        let now = start + Duration::from_secs_f64(record["t"].as_f64().unwrap_or(0.0));
        if record["from"] == "beacon" {
            expected.push((scenario, port("dst_port"), bytes));
            continue;
        }
        if record["to"] != "beacon" {
            continue;
        }
        let beacon = beacons
            .entry(scenario.clone())
            .or_insert_with(|| BeaconServer::new(BeaconConfig::default(), start, 0));
        let src = SocketAddr::from(([127, 0, 0, 1], port("src_port")));
        beacon.handle_datagram(now, src, &bytes);
        let mut buf = Vec::new();
        while let Some(t) = beacon.poll_transmit(now, &mut buf) {
            produced.push((scenario.clone(), t.dst.port(), buf[..t.len].to_vec()));
        }
    }
    let matched = expected
        .iter()
        .filter(|datagram| produced.contains(datagram))
        .count();
    eprintln!(
        "{matched} of {} captured beacon datagrams reproduced",
        expected.len()
    );
    for missing in expected
        .iter()
        .filter(|datagram| !produced.contains(datagram))
    {
        eprintln!(
            "not reproduced: {} port {} {}",
            missing.0,
            missing.1,
            hex::encode(&missing.2[..missing.2.len().min(12)])
        );
    }
    assert!(!expected.is_empty());
    // The published capture holds back about a fifth of the lines, so some replies have no
    // trigger here (a PunchRequest or Relay that was held back). Every datagram checked by
    // hand among the misses is of that kind; a behavioural difference would show as a much
    // lower ratio.
    assert!(
        matched * 100 >= expected.len() * 85,
        "{matched} of {}",
        expected.len()
    );
}
