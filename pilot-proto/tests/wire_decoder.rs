//! `pilot-wire decode` end to end: captured frames decode to JSON lines with the right fields,
//! bad lines give a precise error on their own line, and decoding continues after them.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

fn decode(input: &str) -> (Vec<Value>, Option<i32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pilot-wire"))
        .arg("decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Feed stdin from another thread: the decoder writes while it reads, and a large input
    // would fill both pipes if this thread wrote everything before reading.
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, out.status.code())
}

fn capture_lines(file: &str) -> Vec<Value> {
    let dir = match std::env::var_os("PILOT_CAPTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/captures"),
    };
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn section_9_vectors_decode() {
    let input = "\
# P1 SYN, then P9 ACK+SACK, then an IPC Dial and DialOK in one stream
packet 11 01 0000 0000 00000001 0000 00000002 c000 03e8 00000000 00000000 0200 145ed874

packet 12 01 0015 0000 00000002 0000 00000001 03e8 c000 00000001 00001001 01fe 357a5468 \
5341434b 02 00001001 00002001 00003001 00004001
ipc 00000009 03 0000 00000001 0007 00000005 04 00000001
";
    let (out, status) = decode(input);
    assert_eq!(status, Some(0));
    assert_eq!(out.len(), 4);

    assert_eq!(out[0]["line"], 2);
    assert_eq!(out[0]["flags"], "SYN");
    assert_eq!(out[0]["src"], "0:0000.0000.0001:49152");
    assert_eq!(out[0]["checksum"], "145ed874");

    assert_eq!(out[1]["line"], 4);
    assert_eq!(
        out[1]["app"]["sack"],
        serde_json::json!([[4097, 8193], [12289, 16385]])
    );

    assert_eq!(out[2]["command"], "Dial");
    assert_eq!(out[2]["dst"], "0:0000.0000.0001:7");
    assert_eq!(
        (out[3]["line"].clone(), out[3]["conn_id"].clone()),
        (5.into(), 1.into())
    );
}

#[test]
fn bad_lines_report_and_continue() {
    let input = "\
packet 11 01 0000
packet 11 01 0000 0000 00000001 0000 00000002 c000 03e8 00000000 00000000 0200 145ed875
packet zz
ipc 00200000 01
frob 00
udp 50494c54 1101
";
    let (out, status) = decode(input);
    assert_eq!(status, Some(1));
    let errors: Vec<&str> = out.iter().map(|o| o["error"].as_str().unwrap()).collect();
    assert_eq!(
        out.iter()
            .map(|o| o["line"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(errors[0], "packet: truncated: need 34 bytes, got 4");
    assert!(
        errors[1].starts_with("packet: checksum mismatch: frame says 0x145ed875"),
        "{}",
        errors[1]
    );
    assert!(errors[2].starts_with("bad hex"), "{}", errors[2]);
    assert!(
        errors[3].contains("exceeds the 1048576-byte limit"),
        "{}",
        errors[3]
    );
    assert!(
        errors[4].starts_with("unknown kind \"frob\""),
        "{}",
        errors[4]
    );
    assert_eq!(errors[5], "udp: truncated: need 38 bytes, got 6");
}

#[test]
fn every_captured_pilt_and_ipc_frame_decodes() {
    let mut input = String::new();
    let mut expected = Vec::new();
    for line in capture_lines("tunnel-plaintext.jsonl") {
        if line["magic"] == "PILT" {
            input += &format!("udp {}\n", line["hex"].as_str().unwrap());
            expected.push(("udp", line["packet"]["seq"].clone()));
        }
    }
    for line in capture_lines("ipc.jsonl") {
        input += &format!("ipc {}\n", line["frame_hex"].as_str().unwrap());
        expected.push(("ipc", line["cmd"].clone()));
    }

    let (out, status) = decode(&input);
    assert_eq!(
        status,
        Some(0),
        "{:?}",
        out.iter().find(|o| o.get("error").is_some())
    );
    assert_eq!(out.len(), expected.len());
    for (got, (kind, value)) in out.iter().zip(&expected) {
        assert_eq!(got["kind"], *kind);
        let field = if *kind == "udp" { "seq" } else { "cmd" };
        assert_eq!(&got[field], value, "{got}");
    }
}

#[test]
fn every_captured_beacon_tunnel_and_registry_frame_decodes() {
    let mut input = String::new();
    let mut expected = Vec::new();
    for file in ["beacon.jsonl", "tunnel-encrypted.jsonl"] {
        for line in capture_lines(file) {
            input += &format!("udp {}\n", line["hex"].as_str().unwrap());
            expected.push(line);
        }
    }
    for line in capture_lines("registry.jsonl") {
        input += &format!("registry {}\n", line["frame_hex"].as_str().unwrap());
        expected.push(line);
    }

    let (out, status) = decode(&input);
    assert_eq!(
        status,
        Some(0),
        "{:?}",
        out.iter().find(|o| o.get("error").is_some())
    );
    assert_eq!(out.len(), expected.len());
    let mut signatures = 0;
    for (got, want) in out.iter().zip(&expected) {
        if let Some(magic) = want.get("magic") {
            assert_eq!(&got["magic"], magic, "{got}");
        }
        if want.get("signature_valid").is_some() {
            assert_eq!(got["signature_valid"], true, "{got}");
            signatures += 1;
        }
        if let Some(name) = want.get("type_name") {
            assert_eq!(&got["beacon"], name, "{got}");
        }
        if let Some(inner) = want.get("inner_hex") {
            assert!(
                got["inner"].get("magic").is_some(),
                "relayed frame not decoded: {got} {inner}"
            );
        }
        if want.get("frame_hex").is_some() {
            assert_eq!(got["type"], want["type"], "{got}");
            assert_eq!(got["json"], want["json"], "{got}");
        }
    }
    assert!(signatures >= 5, "only {signatures} PILA signatures checked");
}
