//! Every tunnel frame the Go v0.5 build (or the capture harness) put on the wire parses and
//! re-emits byte-identically; every captured PILA signature verifies; every PILS whose key the
//! capture publishes decrypts to the recorded packet and re-seals to the same bytes; and the
//! published fake-peer keys reproduce its PILA and its tunnel key.
//!
//! The captures are vendored under `tests/captures/` (copies of `pilot-v0.5/captures/`); set
//! `PILOT_CAPTURES` to read another copy. Identity keys come from `identities.json`.

use std::path::PathBuf;

use ed25519_dalek::{Signature, VerifyingKey};
use pilot_proto::crypto::{SessionCipher, TunnelKey, X25519Secret};
use pilot_proto::identity::Identity;
use pilot_proto::wire::tunnel::{
    AuthKeyExchangeRepr, Nonce, SEALED_HEADER_LEN, TunnelRepr, auth_signed_message,
};
use serde_json::Value;

/// Ed25519 keys of every daemon in the encrypted scenarios, and of the harness fake peer.
const KNOWN_SIGNING_KEYS: [&str; 5] = [
    "1c5d3880e08e495d85dc6925222ffd295eccb8d3ad5d46bc611125cb671fa96c",
    "918d1eb8e28c3a8213f899083666184f68bffaa8019221b13dbb3da29dfcf122",
    "a7a01ceee479fa9c1da1d2cc15b8da46bcd72cc7006a9160e97edc8dd4c7f0c5",
    "4e4a3cdc1a91731b456bf7d218653f72e8f6021fcffa17ee24b3376b217fac9c",
    "a57c46a82e41c79bfaf8802bf3308c87bf0ca3f0e7cf34bf0f5837be392c64c7",
];

// The fake peer's published test keys (identities.json, scenario "enc").
const FAKE_ED25519_SEED: &str = "fd00e73d919a252944c8613920ba8e070c3803100a37da71f7280733de064e81";
const FAKE_X25519_SECRET: &str = "0b41daef37ce792bb24428c1aba7a07aa3c64a12fbfa0d06d7eb137ab1cf99e2";
const FAKE_X25519_PUBLIC: &str = "1ae5617eed5a8e29c982e0713457889e1e4ecb91186466585744a2fbfbb7ce7a";
const NODE_A_X25519_PUBLIC: &str =
    "18da5202c7bb33d554007e1a5aaef98a62fef7d17c5ef9df989692a05e40693e";
const FAKE_TUNNEL_KEY: &str = "a9709575d69bf362b9432c376b6c82a95f964412ec41fbf28084d3a5947cd1a0";

fn captures_dir() -> PathBuf {
    match std::env::var_os("PILOT_CAPTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/captures"),
    }
}

fn tunnel_frames() -> Vec<Value> {
    let mut frames = Vec::new();
    for file in ["tunnel-encrypted.jsonl", "tunnel-plaintext.jsonl"] {
        let path = captures_dir().join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        frames.extend(
            text.lines()
                .map(|line| serde_json::from_str::<Value>(line).unwrap()),
        );
    }
    assert!(frames.len() >= 240, "only {} frames", frames.len());
    frames
}

fn bytes(value: &Value, key: &str) -> Vec<u8> {
    hex::decode(value[key].as_str().unwrap_or_else(|| panic!("no {key}"))).unwrap()
}

fn array<const N: usize>(text: &str) -> [u8; N] {
    hex::decode(text).unwrap().try_into().unwrap()
}

#[test]
fn every_frame_parses_and_reemits_identically() {
    let mut kinds = std::collections::BTreeMap::new();
    for frame in tunnel_frames() {
        let id = frame["id"].as_str().unwrap();
        let wire = bytes(&frame, "hex");
        let repr = TunnelRepr::parse(&wire).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            &repr.kind().magic(),
            frame["magic"].as_str().unwrap().as_bytes(),
            "{id}"
        );

        let mut out = vec![0xa5; repr.buffer_len()];
        assert_eq!(repr.emit(&mut out), Ok(wire.len()), "{id}");
        assert_eq!(out, wire, "{id}");
        check_fields(id, &repr, &frame);
        *kinds
            .entry(frame["magic"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(kinds.len(), 5, "{kinds:?}");
}

fn check_fields(id: &str, repr: &TunnelRepr<'_>, frame: &Value) {
    match repr {
        TunnelRepr::Sealed(sealed) => {
            assert_eq!(
                u64::from(sealed.sender),
                frame["sender_node_id"].as_u64().unwrap()
            );
            assert_eq!(
                sealed.nonce.to_bytes().to_vec(),
                bytes(frame, "nonce"),
                "{id}"
            );
            assert_eq!(
                sealed.nonce.counter,
                frame["nonce_counter"].as_u64().unwrap(),
                "{id}"
            );
        }
        TunnelRepr::AuthKeyExchange(auth) => {
            assert_eq!(
                u64::from(auth.sender),
                frame["node_id"].as_u64().unwrap(),
                "{id}"
            );
            assert_eq!(
                auth.signing_key.to_vec(),
                bytes(frame, "ed25519_pub"),
                "{id}"
            );
            assert_eq!(auth.signature.to_vec(), bytes(frame, "signature"), "{id}");
            assert_eq!(
                auth.signed_message().to_vec(),
                bytes(frame, "signed_message_hex")
            );
        }
        TunnelRepr::KeyExchange(key) => {
            assert_eq!(key.public_key.to_vec(), bytes(frame, "x25519_pub"), "{id}");
        }
        TunnelRepr::Plain(plain) => assert!(plain.packet.len() >= 34, "{id}"),
        TunnelRepr::Punch => {}
    }
}

#[test]
fn every_captured_pila_verifies_against_a_known_identity() {
    let mut verified = 0;
    for frame in tunnel_frames() {
        let wire = bytes(&frame, "hex");
        let Ok(TunnelRepr::AuthKeyExchange(auth)) = TunnelRepr::parse(&wire) else {
            continue;
        };
        assert!(KNOWN_SIGNING_KEYS.contains(&hex::encode(auth.signing_key).as_str()));
        let key = VerifyingKey::from_bytes(&auth.signing_key).unwrap();
        let signature = Signature::from_bytes(&auth.signature);
        let message = auth_signed_message(auth.sender, &auth.public_key);
        key.verify_strict(&message, &signature).unwrap();

        // One flipped signature bit must fail.
        let mut forged = auth.signature;
        forged[10] ^= 0x04;
        assert!(
            key.verify_strict(&message, &Signature::from_bytes(&forged))
                .is_err()
        );
        verified += 1;
    }
    assert!(verified >= 9, "only {verified} PILA");
}

#[test]
fn decryptable_pils_open_to_recorded_packets_and_reseal_identically() {
    let mut opened = 0;
    for frame in tunnel_frames() {
        let Some(key) = frame["aead_key"].as_str() else {
            continue;
        };
        let id = frame["id"].as_str().unwrap();
        let mut wire = bytes(&frame, "hex");
        let Ok(TunnelRepr::Sealed(sealed)) = TunnelRepr::parse(&wire) else {
            panic!("{id}")
        };
        let (sender, nonce) = (sealed.sender, sealed.nonce);

        let cipher = SessionCipher::new(&TunnelKey::from_bytes(array(key)));
        let plaintext = cipher
            .open_in_place(nonce, &mut wire[SEALED_HEADER_LEN..])
            .unwrap();
        assert_eq!(plaintext.to_vec(), bytes(&frame, "plaintext_hex"), "{id}");

        let mut resealed = Vec::new();
        cipher.seal_frame(
            sender,
            nonce,
            &bytes(&frame, "plaintext_hex"),
            &mut resealed,
        );
        assert_eq!(resealed, bytes(&frame, "hex"), "{id}");
        opened += 1;
    }
    assert!(opened >= 9, "only {opened} decryptable PILS");
}

#[test]
fn fake_peer_keys_reproduce_its_pila_and_tunnel_key() {
    let secret = X25519Secret::from_bytes(array(FAKE_X25519_SECRET));
    assert_eq!(hex::encode(secret.public_key()), FAKE_X25519_PUBLIC);
    let key = secret.agree(&array(NODE_A_X25519_PUBLIC)).unwrap();
    assert_eq!(hex::encode(key.as_bytes()), FAKE_TUNNEL_KEY);

    // Ed25519 is deterministic, so signing again reproduces the captured frame enc-0001.
    let identity = Identity::from_seed(&array(FAKE_ED25519_SEED));
    let public_key = secret.public_key();
    let signature = identity
        .sign(&auth_signed_message(3, &public_key))
        .to_bytes();
    let repr = TunnelRepr::AuthKeyExchange(AuthKeyExchangeRepr {
        sender: 3,
        public_key,
        signing_key: identity.public_key_bytes(),
        signature,
    });
    let mut out = [0u8; 136];
    repr.emit(&mut out).unwrap();
    let captured = tunnel_frames()
        .into_iter()
        .find(|f| f["id"] == "enc-0001")
        .unwrap();
    assert_eq!(out.to_vec(), bytes(&captured, "hex"));
}

#[test]
fn captured_nonce_counters_start_at_one_per_prefix() {
    let mut first = std::collections::BTreeMap::new();
    for frame in tunnel_frames() {
        let wire = bytes(&frame, "hex");
        let Ok(TunnelRepr::Sealed(sealed)) = TunnelRepr::parse(&wire) else {
            continue;
        };
        let Nonce { prefix, counter } = sealed.nonce;
        first.entry(prefix).or_insert(counter);
    }
    // Every prefix whose first frame is in the file starts at counter 1 (v0.5 pre-increments).
    assert!(
        first.values().filter(|&&counter| counter == 1).count() >= 4,
        "{first:?}"
    );
}

#[test]
fn tunnel_accepts_captured_go_pila_once_and_ignores_its_repeat() {
    use pilot_proto::rng::Rng;
    use pilot_proto::tunnel::{DropReason, Event, Inbound, Tunnel, TunnelConfig};

    // enc scenario: node-a (node 1) sent node-b (node 2) two identical PILA (enc-0015/0016).
    let frames = tunnel_frames();
    let frame = |id: &str| bytes(frames.iter().find(|f| f["id"] == id).unwrap(), "hex");
    let node_a_key = VerifyingKey::from_bytes(&array(KNOWN_SIGNING_KEYS[0])).unwrap();
    let node_a = std::net::SocketAddr::from(([127, 0, 0, 1], 39_610));

    #[allow(clippy::disallowed_methods)] // Only differences between instants matter.
    let now = std::time::Instant::now();
    let identity = Identity::from_seed(&[2; 32]);
    let mut tunnel = Tunnel::new(
        TunnelConfig::default(),
        identity,
        2,
        Rng::from_seed([2; 32]),
    );
    tunnel.add_peer(now, 1, node_a, Some(node_a_key)).unwrap();

    let (mut first, mut second) = (frame("enc-0015"), frame("enc-0016"));
    assert_eq!(
        tunnel.handle_datagram(now, node_a, &mut first),
        Inbound::Consumed
    );
    let repeat = tunnel.handle_datagram(now, node_a, &mut second);
    assert_eq!(repeat, Inbound::Dropped(DropReason::RepeatedKeyExchange));
    let keyed = std::iter::from_fn(|| tunnel.poll_event())
        .filter(|event| {
            matches!(
                event,
                Event::PeerKeyed {
                    node: 1,
                    rekeyed: false
                }
            )
        })
        .count();
    assert_eq!(keyed, 1);

    // The relay-enc run's node-a is also node 1 but has another identity: its genuine,
    // correctly signed PILA is refused because the key is not the registered one.
    let mut foreign = frame("enc-0066");
    let outcome = tunnel.handle_datagram(now, node_a, &mut foreign);
    assert_eq!(outcome, Inbound::Dropped(DropReason::WrongSigningKey));
    assert_eq!(tunnel.endpoint(1), Some(node_a));
}
