//! Every registry frame shape captured from the Go v0.5 implementation parses and re-emits.
//!
//! One frame per distinct (type, direction, field set) from `captures/registry.jsonl` is
//! embedded below, so the test always runs. When the full capture file is present (set
//! `PILOT_CAPTURES` to its directory; the default is the shared reference path) every one of its
//! frames is checked as well.

use pilot_proto::registry::{parse_key, verify_v05};
use pilot_proto::wire::registry::{FrameDecoder, Request, Response};
use serde_json::Value;

/// (capture id, direction, origin, frame hex).
const FRAMES: &[(&str, &str, &str, &str)] = &[
    (
        "reg-0001",
        "client->registry",
        "go",
        "0000006f7b226c697374656e5f61646472223a223132372e302e302e323a3339353230222c227075626c69635f6b6579223a224a52514250386d335166714f6a733232547a56543078457878757a7151746f314a724b654d6d4253344a6b3d222c2274797065223a227265676973746572227d",
    ),
    (
        "reg-0002",
        "registry->client",
        "go",
        "0000008a7b2261646472657373223a22303a303030302e303030302e30303031222c226e6574776f726b5f6964223a302c226e6f64655f6964223a312c227075626c69635f6b6579223a224a52514250386d335166714f6a733232547a56543078457878757a7151746f314a724b654d6d4253344a6b3d222c2274797065223a2272656769737465725f6f6b227d",
    ),
    (
        "reg-0004",
        "registry->client",
        "go",
        "0000003e7b226e6f64655f6964223a312c2274797065223a227365745f7669736962696c6974795f6f6b222c227669736962696c697479223a227075626c6963227d",
    ),
    (
        "reg-0005",
        "client->registry",
        "go",
        "0000009e7b22686f73746e616d65223a226e6f64652d61222c226e6f64655f6964223a312c227369676e6174757265223a2259583351597a794d68374831414c4c782f706370654b73486f5a6f37697173486e516a5437476c5a714342416946576e32317a536d5a396a39696b4e4b55486373466653594f377a2b425a7465636a6c7759767941773d3d222c2274797065223a227365745f686f73746e616d65227d",
    ),
    (
        "reg-0009",
        "client->registry",
        "go",
        "0000009a7b226e6f64655f6964223a322c227075626c6963223a747275652c227369676e6174757265223a226a73533735544c4f6d392f396e485868655964394f743451694855346b78717265307937304c6564726c78454d2f6a623451476e4573474234784343535a336b7575534b38346667667a696d43423150656e747443413d3d222c2274797065223a227365745f7669736962696c697479227d",
    ),
    (
        "reg-0012",
        "registry->client",
        "go",
        "0000003a7b22686f73746e616d65223a226e6f64652d62222c226e6f64655f6964223a322c2274797065223a227365745f686f73746e616d655f6f6b227d",
    ),
    (
        "reg-0017",
        "client->registry",
        "go",
        "0000001d7b226e6f64655f6964223a322c2274797065223a226c6f6f6b7570227d",
    ),
    (
        "reg-0018",
        "registry->client",
        "go",
        "000000d77b2261646472657373223a22303a303030302e303030302e30303032222c22686f73746e616d65223a226e6f64652d62222c226e6574776f726b73223a5b305d2c226e6f64655f6964223a322c22706f6c6f5f73636f7265223a302c227075626c6963223a747275652c227075626c69635f6b6579223a22454f433850756873362f75787730754262426c566d716a6731566a4c612b5749762f684830786e622b61343d222c227265616c5f61646472223a223132372e302e302e313a3339353231222c2274797065223a226c6f6f6b75705f6f6b227d",
    ),
    (
        "reg-0019",
        "client->registry",
        "go",
        "000000337b226c697374656e5f61646472223a223132372e302e302e313a3339353939222c2274797065223a227265676973746572227d",
    ),
    (
        "reg-0020",
        "registry->client",
        "go",
        "000000297b226572726f72223a2272657175657374206661696c6564222c2274797065223a226572726f72227d",
    ),
    (
        "reg-0021",
        "client->registry",
        "go",
        "0000002f7b22686f73746e616d65223a226e6f64652d62222c2274797065223a227265736f6c76655f686f73746e616d65227d",
    ),
    (
        "reg-0022",
        "registry->client",
        "go",
        "000000697b2261646472657373223a22303a303030302e303030302e30303032222c22686f73746e616d65223a226e6f64652d62222c226e6f64655f6964223a322c227075626c6963223a747275652c2274797065223a227265736f6c76655f686f73746e616d655f6f6b227d",
    ),
    (
        "reg-0024",
        "registry->client",
        "go",
        "0000003f7b226e6f64655f6964223a322c227265616c5f61646472223a223132372e302e302e313a3339353231222c2274797065223a227265736f6c76655f6f6b227d",
    ),
    (
        "reg-0025",
        "client->registry",
        "go",
        "000000877b226e6f64655f6964223a312c227369676e6174757265223a223032456746624a423379526633644979776534455848654c4b797971524878776162527a415574764e45646d59576272524a3077344a793337546165774953384a722f4d6b50446c3852474d455149305239336444413d3d222c2274797065223a22686561727462656174227d",
    ),
    (
        "reg-0026",
        "registry->client",
        "go",
        "000000297b2274696d65223a313739363331373535312c2274797065223a226865617274626561745f6f6b227d",
    ),
    (
        "reg-0027",
        "client->registry",
        "go",
        "0000008d7b226e6f64655f6964223a312c227369676e6174757265223a22366d32395536494f41525549437857336c4c7a6f5132667248336e79512f552b4372323769554d4e4e50766b6e557467654f65574e635362725645614f775864724f72344b5575573349357a75464f684b414e3643673d3d222c2274797065223a22706f6c6c5f68616e647368616b6573227d",
    ),
    (
        "reg-0028",
        "registry->client",
        "go",
        "0000003a7b227265717565737473223a5b5d2c22726573706f6e736573223a5b5d2c2274797065223a22706f6c6c5f68616e647368616b65735f6f6b227d",
    ),
    (
        "reg-0115",
        "client->registry",
        "go",
        "000000967b226e6f64655f6964223a322c22706565725f6964223a312c227369676e6174757265223a2237476550594175414b7264686c75506c6950342f3469316d574f4c686678574f2f61522f582f556f7972763541716169456c4e7058442b51456a5874436f4a6a6f726769575a73784965714d6c317a373869723644673d3d222c2274797065223a227265706f72745f7472757374227d",
    ),
    (
        "reg-0117",
        "registry->client",
        "go",
        "0000001a7b2274797065223a227265706f72745f74727573745f6f6b227d",
    ),
    (
        "reg-0118",
        "client->registry",
        "go",
        "000000a97b22616363657074223a747275652c226e6f64655f6964223a322c22706565725f6964223a312c227369676e6174757265223a224c3255674975534769522b6569464454512b44693872742f414a71577446303468506c54303031347a37622b6c69346952584e4135306361563777532f316a2b47486a6c546b434f4744326b6c4955342b704c5644513d3d222c2274797065223a22726573706f6e645f68616e647368616b65227d",
    ),
    (
        "reg-0119",
        "registry->client",
        "go",
        "000000397b22616363657074223a747275652c22706565725f6964223a312c2274797065223a22726573706f6e645f68616e647368616b655f6f6b227d",
    ),
    (
        "reg-0135",
        "client->registry",
        "go",
        "000000967b226e6f64655f6964223a322c227265717565737465725f6964223a312c227369676e6174757265223a2241755172414753634577725452715a357a44772f6f695734426f466f572f6d635446416c476e693364556d715666784d674641415566316e7459594a47504e6564547476667a376e4d694e76742f484b726c796f44413d3d222c2274797065223a227265736f6c7665227d",
    ),
    (
        "reg-0137",
        "client->registry",
        "go",
        "000000967b226e6f64655f6964223a322c22706565725f6964223a312c227369676e6174757265223a226b64624c49307347707742366b35582b6161366f3949753578642b48455939522b7849462b70564441652b556a394d68597457792f69413030584f4b54624a3259336969734d2f7a566a384a673031315a6e743743413d3d222c2274797065223a227265766f6b655f7472757374227d",
    ),
    (
        "reg-0171",
        "client->registry",
        "go",
        "000000c27b2266726f6d5f6e6f64655f6964223a312c226a757374696669636174696f6e223a2272656c617920706c65617365222c227369676e6174757265223a22647746355779793653664a5343627244456f62614a794472353934637437794b67666d53316c71756f5a50717a417a2b714a50536d5052594b506a2b4243474c4458726d4c4531374a39586a4566695a4864365442413d3d222c22746f5f6e6f64655f6964223a332c2274797065223a22726571756573745f68616e647368616b65227d",
    ),
    (
        "reg-0172",
        "registry->client",
        "go",
        "000000347b22737461747573223a2264656c697665726564222c2274797065223a22726571756573745f68616e647368616b655f6f6b227d",
    ),
    (
        "reg-0174",
        "registry->client",
        "go",
        "000000ba7b2261646472657373223a22303a303030302e303030302e30303033222c22686f73746e616d65223a226e6f64652d63222c226e6574776f726b73223a5b305d2c226e6f64655f6964223a332c22706f6c6f5f73636f7265223a302c227075626c6963223a66616c73652c227075626c69635f6b6579223a227070776739426d4b554e7a5975514f6d377770784c726d63426d634c42507a2b48413866385a43503971493d222c2274797065223a226c6f6f6b75705f6f6b227d",
    ),
    (
        "reg-0224",
        "registry->client",
        "go",
        "0000001a7b2274797065223a227265766f6b655f74727573745f6f6b227d",
    ),
    (
        "reg-0237",
        "client->registry",
        "go",
        "0000009e7b226e6f64655f6964223a322c227369676e6174757265223a2278445661417262563966775568697045417964492b6b4a346f7842387437774d50686b454e3651634f364b4a6b4b6136494252352b2f785547787a414c6a74394d427039696e4c5447742f424a3837503278427643513d3d222c2274616773223a5b22616c706861222c2262657461225d2c2274797065223a227365745f74616773227d",
    ),
    (
        "reg-0238",
        "registry->client",
        "go",
        "0000003a7b226e6f64655f6964223a322c2274616773223a5b22616c706861222c2262657461225d2c2274797065223a227365745f746167735f6f6b227d",
    ),
    (
        "reg-0241",
        "client->registry",
        "go",
        "0000009a7b22656e61626c6564223a747275652c226e6f64655f6964223a322c227369676e6174757265223a2241694c7a745458754c6739412b6e2b64524d6a6c2f754a3256684e704364664e71724c4564327551464e772b493844756c726e63563558626e6b4355594e4e50706d4830424f744d3545374f454438655764346944413d3d222c2274797065223a227365745f7461736b5f65786563227d",
    ),
    (
        "reg-0242",
        "registry->client",
        "go",
        "000000387b226e6f64655f6964223a322c227461736b5f65786563223a747275652c2274797065223a227365745f7461736b5f657865635f6f6b227d",
    ),
    (
        "reg-0259",
        "client->registry",
        "go",
        "000000887b226e6f64655f6964223a322c227369676e6174757265223a224c6b32744f67474b394c70535868553255413964653565456c6a694e4f657534325868454d50304d344f6f414e3950596452384264657267796d7632426651532f33457a5a4658717673544c675841396f505a7944773d3d222c2274797065223a2264657265676973746572227d",
    ),
    (
        "reg-0268",
        "registry->client",
        "go",
        "000000187b2274797065223a22646572656769737465725f6f6b227d",
    ),
    (
        "reg-0297",
        "client->registry",
        "harness",
        "0000008d7b2274797065223a20227265676973746572222c20227075626c69635f6b6579223a20227058784771433542783576362b494172387a434d6837384d6f2f446e7a7a532f44316733766a6b735a4d633d222c20226c697374656e5f61646472223a20223132372e302e302e313a3339363230222c2022686f73746e616d65223a202266616b652d70656572227d",
    ),
    (
        "reg-0298",
        "registry->client",
        "go",
        "000000a17b2261646472657373223a22303a303030302e303030302e30303033222c22686f73746e616d65223a2266616b652d70656572222c226e6574776f726b5f6964223a302c226e6f64655f6964223a332c227075626c69635f6b6579223a227058784771433542783576362b494172387a434d6837384d6f2f446e7a7a532f44316733766a6b735a4d633d222c2274797065223a2272656769737465725f6f6b227d",
    ),
    (
        "reg-0352",
        "registry->client",
        "go",
        "0000002b7b22626561636f6e5f6964223a312c2274797065223a22626561636f6e5f72656769737465725f6f6b227d",
    ),
    (
        "reg-0354",
        "registry->client",
        "go",
        "000000477b22626561636f6e73223a5b7b2261646472223a223132372e302e302e313a3339383130222c226964223a317d5d2c2274797065223a22626561636f6e5f6c6973745f6f6b227d",
    ),
    (
        "reg-0355",
        "client->registry",
        "go",
        "000000417b2261646472223a223132372e302e302e313a3339383131222c22626561636f6e5f6964223a322c2274797065223a22626561636f6e5f7265676973746572227d",
    ),
    (
        "reg-0357",
        "client->registry",
        "go",
        "000000167b2274797065223a22626561636f6e5f6c697374227d",
    ),
];

fn check_frame(id: &str, direction: &str, origin: &str, frame_hex: &str) {
    let frame = hex::decode(frame_hex).expect("capture hex");
    let mut decoder = FrameDecoder::default();
    decoder.push(&frame).expect("frame within limits");
    let body = decoder.next_frame().expect("one whole frame");
    assert!(decoder.next_frame().is_none(), "{id}: exactly one frame");
    assert!(!decoder.has_partial(), "{id}: no leftover bytes");

    let original: Value = serde_json::from_slice(&body).expect("captured body is json");
    let (emitted_value, emitted_frame, type_name) = if direction == "client->registry" {
        let request = Request::from_json(&body).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(
            !matches!(request, Request::Unknown(_)),
            "{id}: type must be known"
        );
        let mut frame = Vec::new();
        request.encode_frame(&mut frame).expect("encodes");
        (request.to_value(), frame, request.type_name().to_owned())
    } else {
        let response = Response::from_json(&body).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(
            !matches!(response, Response::Unknown(_)),
            "{id}: type must be known"
        );
        let mut frame = Vec::new();
        response.encode_frame(&mut frame).expect("encodes");
        (response.to_value(), frame, response.type_name().to_owned())
    };

    assert_eq!(
        type_name,
        original["type"].as_str().unwrap_or_default(),
        "{id}: type"
    );
    assert_eq!(emitted_value, original, "{id}: same fields and values");
    // Go marshals maps with sorted keys, as we do, so Go-originated frames are byte-identical.
    if origin == "go" {
        assert_eq!(
            hex::encode(&emitted_frame),
            frame_hex,
            "{id}: byte-identical frame"
        );
    }
}

#[test]
fn embedded_capture_frames_round_trip() {
    assert!(FRAMES.len() >= 39);
    for (id, direction, origin, frame_hex) in FRAMES {
        check_frame(id, direction, origin, frame_hex);
    }
}

#[test]
fn full_capture_file_round_trips_when_present() {
    let dir = capture_dir();
    let Ok(text) = std::fs::read_to_string(format!("{dir}/registry.jsonl")) else {
        eprintln!("registry.jsonl not found under {dir}; the embedded frames still ran");
        return;
    };
    let mut checked = 0;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let record: Value = serde_json::from_str(line).expect("jsonl line");
        let field = |name: &str| record[name].as_str().unwrap_or_default().to_owned();
        check_frame(
            &field("id"),
            &field("direction"),
            &field("origin"),
            &field("frame_hex"),
        );
        checked += 1;
    }
    assert!(checked >= 282, "checked {checked} frames");
}

#[test]
fn frames_split_at_every_byte_boundary_decode_identically() {
    let stream: Vec<u8> = FRAMES
        .iter()
        .flat_map(|(_, _, _, frame)| hex::decode(frame).expect("hex"))
        .collect();
    for chunk in [1, 2, 3, 5, 7, 64, 1000] {
        let mut decoder = FrameDecoder::default();
        let mut bodies = 0;
        for piece in stream.chunks(chunk) {
            decoder.push(piece).expect("within limits");
            while decoder.next_frame().is_some() {
                bodies += 1;
            }
        }
        assert_eq!(bodies, FRAMES.len(), "chunk size {chunk}");
    }
}

const FILE: &str = "registry.jsonl";

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

/// Every signed request the Go daemons sent verifies under our v0.5 verifier, with the key from
/// the daemon's identity file (needs `identities.json` beside the full capture).
#[test]
fn every_captured_signature_verifies_with_our_verifier() {
    let dir = capture_dir();
    let (Ok(text), Ok(identities)) = (
        std::fs::read_to_string(format!("{dir}/registry.jsonl")),
        std::fs::read_to_string(format!("{dir}/identities.json")),
    ) else {
        eprintln!("full capture or identities.json not under {dir}; skipped");
        return;
    };
    let identities: Value = serde_json::from_str(&identities).expect("identities json");
    let mut verified = 0;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let record: Value = serde_json::from_str(line).expect("jsonl line");
        let Some(signer) = record["signature_check"]["signer_node_id"].as_u64() else {
            continue;
        };
        let scenario = record["scenario"].as_str().unwrap_or_default();
        let daemons = identities["scenarios"][scenario]["daemons"]
            .as_object()
            .expect("scenario");
        let Some(key_b64) = daemons
            .values()
            .find(|daemon| daemon["node_id"].as_u64() == Some(signer))
            .and_then(|daemon| daemon["identity_public_key_b64"].as_str())
        else {
            continue;
        };
        let key_bytes = pilot_proto::wire::registry::Base64::decode(key_b64).expect("b64");
        let key = parse_key(&key_bytes.0).expect("valid key");
        let request = Request::from_value(record["json"].clone()).expect("request");
        let id = record["id"].as_str().unwrap_or_default();
        assert_eq!(verify_v05(&request, &key), Ok(()), "{id}");
        verified += 1;
    }
    assert!(verified >= 100, "verified {verified}");
}
