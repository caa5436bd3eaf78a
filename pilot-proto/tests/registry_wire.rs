//! Registry framing and messages: byte vectors, the 1 MiB cap, unknown types, and property
//! tests (arbitrary bytes never panic; parse(emit(x)) == x).

use pilot_proto::wire::registry::{
    Auth, Base64, FrameDecoder, FrameError, MAX_FRAME_BODY, NodeSigned, Register, RegisterOk,
    Request, Response, SetTags, encode_frame,
};
use proptest::prelude::*;

/// `register` as the Go daemon sent it (capture reg-0001).
const REGISTER_FRAME: &str = "0000006f7b226c697374656e5f61646472223a223132372e302e302e323a3339353230222c227075626c69635f6b6579223a224a52514250386d335166714f6a733232547a56543078457878757a7151746f314a724b654d6d4253344a6b3d222c2274797065223a227265676973746572227d";

/// Its `register_ok` (capture reg-0002).
const REGISTER_OK_FRAME: &str = "0000008a7b2261646472657373223a22303a303030302e303030302e30303031222c226e6574776f726b5f6964223a302c226e6f64655f6964223a312c227075626c69635f6b6579223a224a52514250386d335166714f6a733232547a56543078457878757a7151746f314a724b654d6d4253344a6b3d222c2274797065223a2272656769737465725f6f6b227d";

const KEY_B64: &str = "JRQBP8m3QfqOjs22TzVT0xExxuzqQto1JrKeMmBS4Jk=";

#[test]
fn register_request_vector() {
    let request = Request::Register(Register {
        public_key: Some(Base64::decode(KEY_B64).expect("b64")),
        listen_addr: Some("127.0.0.2:39520".into()),
        ..Register::default()
    });
    let mut frame = Vec::new();
    request.encode_frame(&mut frame).expect("encodes");
    assert_eq!(hex::encode(&frame), REGISTER_FRAME);
}

#[test]
fn register_response_vector() {
    let response = Response::RegisterOk(RegisterOk {
        node_id: 1,
        network_id: 0,
        address: "0:0000.0000.0001".into(),
        public_key: Base64::decode(KEY_B64).expect("b64"),
        ..RegisterOk::default()
    });
    let mut frame = Vec::new();
    response.encode_frame(&mut frame).expect("encodes");
    assert_eq!(hex::encode(&frame), REGISTER_OK_FRAME);
    let body = &hex::decode(REGISTER_OK_FRAME).expect("hex")[4..];
    assert_eq!(Response::from_json(body).expect("parses"), response);
}

#[test]
fn oversize_length_is_rejected_before_any_body_byte_is_stored() {
    let mut decoder = FrameDecoder::default();
    let declared = MAX_FRAME_BODY + 1;
    let header = (declared as u32).to_be_bytes();
    assert_eq!(
        decoder.push(&header),
        Err(FrameError::TooLarge {
            declared,
            max: MAX_FRAME_BODY
        })
    );
    assert_eq!(decoder.push(b"{}"), Err(FrameError::Poisoned));
    assert!(decoder.next_frame().is_none());

    // Exactly the cap is fine.
    let mut decoder = FrameDecoder::default();
    decoder
        .push(&(MAX_FRAME_BODY as u32).to_be_bytes())
        .expect("at the cap");
    assert!(decoder.has_partial());
    assert!(encode_frame(&vec![b' '; MAX_FRAME_BODY + 1], &mut Vec::new()).is_err());
}

#[test]
fn unread_frames_are_bounded() {
    let mut decoder = FrameDecoder::default();
    let mut stream = Vec::new();
    for _ in 0..100 {
        encode_frame(b"{}", &mut stream).expect("tiny");
    }
    assert!(matches!(decoder.push(&stream), Err(FrameError::Backlog(_))));
}

#[test]
fn unknown_type_is_preserved() {
    let body = br#"{"type":"teleport","node_id":7,"where":"mars"}"#;
    let request = Request::from_json(body).expect("objects with a type parse");
    let Request::Unknown(unknown) = &request else {
        panic!("expected unknown")
    };
    assert_eq!(unknown.type_name, "teleport");
    assert_eq!(
        request.to_json(),
        br#"{"node_id":7,"type":"teleport","where":"mars"}"#.to_vec()
    );
    assert!(Request::from_json(br#"{"node_id":7}"#).is_err());
    assert!(Request::from_json(b"[1,2]").is_err());
    assert!(Request::from_json(br#"{"type":"heartbeat","node_id":"x"}"#).is_err());
}

#[test]
fn go_leniency_missing_ids_and_non_string_tags() {
    let heartbeat = Request::from_json(br#"{"type":"heartbeat"}"#).expect("parses");
    assert_eq!(heartbeat, Request::Heartbeat(NodeSigned::default()));
    let tags = Request::from_json(br#"{"type":"set_tags","node_id":2,"tags":["a",5,"b"]}"#)
        .expect("parses");
    let Request::SetTags(SetTags { tags, .. }) = tags else {
        panic!("set_tags")
    };
    assert_eq!(tags, vec!["a".to_owned(), "b".to_owned()]);
    let cleared =
        Response::from_json(br#"{"type":"set_tags_ok","node_id":2,"tags":null}"#).expect("parses");
    assert_eq!(
        cleared.to_json(),
        br#"{"node_id":2,"tags":null,"type":"set_tags_ok"}"#.to_vec()
    );
}

#[test]
fn v05_challenges_match_the_reference_table() {
    let heartbeat = Request::Heartbeat(NodeSigned {
        node_id: 9,
        ..NodeSigned::default()
    });
    assert_eq!(heartbeat.challenge(), Some((9, "heartbeat:9".to_owned())));
    let poll = Request::PollHandshakes(NodeSigned {
        node_id: 4,
        ..NodeSigned::default()
    });
    assert_eq!(poll.challenge(), Some((4, "poll_handshakes:4".to_owned())));
    let lookup = Request::from_json(br#"{"type":"lookup","node_id":1}"#).expect("parses");
    assert_eq!(lookup.challenge(), None);
}

fn arb_b64() -> impl Strategy<Value = Base64> {
    proptest::collection::vec(any::<u8>(), 0..70).prop_map(Base64)
}

fn arb_auth() -> impl Strategy<Value = Option<Auth>> {
    proptest::option::of(
        (any::<u64>(), arb_b64(), arb_b64()).prop_map(|(ts, nonce, sig)| Auth { ts, nonce, sig }),
    )
}

fn arb_request() -> impl Strategy<Value = Request> {
    let text = "[a-z0-9\\-:. ]{0,24}";
    prop_oneof![
        (
            proptest::option::of(arb_b64()),
            proptest::option::of(text),
            arb_auth()
        )
            .prop_map(
                |(public_key, listen_addr, auth)| Request::Register(Register {
                    public_key,
                    listen_addr,
                    auth,
                    ..Register::default()
                })
            ),
        (any::<u32>(), proptest::option::of(arb_b64()), arb_auth()).prop_map(
            |(node_id, signature, auth)| Request::Heartbeat(NodeSigned {
                node_id,
                signature,
                auth
            })
        ),
        (any::<u32>(), proptest::collection::vec(text, 0..4)).prop_map(|(node_id, tags)| {
            Request::SetTags(SetTags {
                node_id,
                tags,
                ..SetTags::default()
            })
        }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut decoder = FrameDecoder::new(256);
        let _ = decoder.push(&bytes);
        while let Some(body) = decoder.next_frame() {
            let _ = Request::from_json(&body);
            let _ = Response::from_json(&body);
        }
        let _ = Request::from_json(&bytes);
        let _ = Response::from_json(&bytes);
    }

    #[test]
    fn arbitrary_json_objects_never_panic(
        type_name in "(register|heartbeat|lookup|set_tags|resolve|punch|[a-z_]{0,12})",
        key in "[a-z_]{1,12}",
        value in prop_oneof![
            Just(serde_json::json!(null)),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            "[ -~]{0,16}".prop_map(|s| serde_json::json!(s)),
            Just(serde_json::json!([1, "a", null])),
        ],
    ) {
        let object = serde_json::json!({ "type": type_name, key: value });
        let body = serde_json::to_vec(&object).expect("json");
        if let Ok(request) = Request::from_json(&body) {
            // Whatever parses re-parses to the same message.
            prop_assert_eq!(Request::from_json(&request.to_json()).expect("re-parse"), request);
        }
        let _ = Response::from_json(&body);
    }

    #[test]
    fn requests_round_trip_through_frames(request in arb_request()) {
        let mut stream = Vec::new();
        request.encode_frame(&mut stream).expect("small");
        let mut decoder = FrameDecoder::default();
        decoder.push(&stream).expect("within limits");
        let body = decoder.next_frame().expect("whole frame");
        prop_assert_eq!(Request::from_json(&body).expect("parses"), request);
    }
}
