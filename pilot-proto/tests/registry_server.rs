//! Registry server behaviour: v0.5 compatibility, the hardened rules, limits, expiry,
//! persistence and the connection layer. Virtual time throughout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use pilot_proto::registry::{
    CloseReason, ConnectionId, ErrorCode, RegistryConfig, RegistryServer, SecurityMode,
    ServerEvent, SignatureForm, sign_request,
};
use pilot_proto::rng::Rng;
use pilot_proto::wire::registry::*;

const UNIX: u64 = 1_796_317_551;

#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    // Only offsets from this instant matter.
    Instant::now()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

struct Harness {
    server: RegistryServer,
    start: Instant,
    rng: Rng,
}

impl Harness {
    fn new(security: SecurityMode) -> Self {
        let start = epoch();
        let config = RegistryConfig {
            security,
            ..RegistryConfig::default()
        };
        Self {
            server: RegistryServer::new(config, start, UNIX),
            start,
            rng: Rng::from_seed([9; 32]),
        }
    }

    fn at(&self, secs: u64) -> Instant {
        self.start + Duration::from_secs(secs)
    }

    fn send(&mut self, secs: u64, source: &str, request: Request) -> Response {
        self.server
            .handle_request(self.at(secs), addr(source), request)
    }

    fn signed(
        &mut self,
        secs: u64,
        key: &SigningKey,
        form: SignatureForm,
        mut request: Request,
    ) -> Request {
        sign_request(&mut request, key, form, UNIX + secs, &mut self.rng);
        request
    }

    fn register(
        &mut self,
        secs: u64,
        source: &str,
        key: &SigningKey,
        form: SignatureForm,
    ) -> Response {
        let request = register_request(key, "0.0.0.0:4000");
        let request = self.signed(secs, key, form, request);
        self.send(secs, source, request)
    }
}

fn register_request(key: &SigningKey, listen: &str) -> Request {
    Request::Register(Register {
        public_key: Some(Base64(key.verifying_key().to_bytes().to_vec())),
        listen_addr: Some(listen.into()),
        ..Register::default()
    })
}

fn node_id(response: &Response) -> u32 {
    match response {
        Response::RegisterOk(ok) => ok.node_id,
        other => panic!("expected register_ok, got {other:?}"),
    }
}

fn error_code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error(reply) => reply.code.as_deref().and_then(ErrorCode::parse),
        _ => None,
    }
}

fn resolve(requester: u32, target: u32) -> Request {
    Request::Resolve(Resolve {
        node_id: target,
        requester_id: requester,
        ..Resolve::default()
    })
}

fn trust(kind: fn(TrustPair) -> Request, node: u32, peer: u32) -> Request {
    kind(TrustPair {
        node_id: node,
        peer_id: peer,
        ..TrustPair::default()
    })
}

#[test]
fn v05_flow_register_heartbeat_lookup_resolve() {
    let mut h = Harness::new(SecurityMode::Compat);
    let (a, b) = (key(1), key(2));
    let id_a = node_id(&h.register(0, "198.51.100.1:50000", &a, SignatureForm::V05));
    let id_b = node_id(&h.register(0, "198.51.100.2:50000", &b, SignatureForm::V05));
    assert_eq!((id_a, id_b), (1, 2));

    let heartbeat = Request::Heartbeat(NodeSigned {
        node_id: 1,
        ..NodeSigned::default()
    });
    let heartbeat = h.signed(10, &a, SignatureForm::V05, heartbeat);
    assert_eq!(
        h.send(10, "198.51.100.1:50000", heartbeat),
        Response::HeartbeatOk(HeartbeatOk {
            time: (UNIX + 10) as i64
        })
    );

    // Private by default: lookup hides the endpoint and resolve is refused without trust.
    let Response::LookupOk(lookup) = h.send(
        11,
        "203.0.113.9:1",
        Request::Lookup(NodeOnly { node_id: 2 }),
    ) else {
        panic!("lookup")
    };
    assert_eq!(
        (lookup.public, lookup.real_addr, lookup.address.as_str()),
        (false, None, "0:0000.0000.0002")
    );
    let denied = h.signed(12, &a, SignatureForm::V05, resolve(1, 2));
    assert_eq!(
        error_code(&h.send(12, "198.51.100.1:50000", denied)),
        Some(ErrorCode::Denied)
    );

    // v0.5: one side's report_trust unlocks the pair; the endpoint is source IP + offered port.
    let report = h.signed(
        13,
        &b,
        SignatureForm::V05,
        trust(Request::ReportTrust, 2, 1),
    );
    assert!(matches!(
        h.send(13, "198.51.100.2:50000", report),
        Response::ReportTrustOk(_)
    ));
    let allowed = h.signed(14, &a, SignatureForm::V05, resolve(1, 2));
    assert_eq!(
        h.send(14, "198.51.100.1:50000", allowed),
        Response::ResolveOk(ResolveOk {
            node_id: 2,
            real_addr: "198.51.100.2:4000".into()
        })
    );
}

#[test]
fn captured_go_heartbeat_signature_is_accepted() {
    let mut h = Harness::new(SecurityMode::Compat);
    let register = Request::from_json(
        br#"{"listen_addr":"127.0.0.2:39520","public_key":"JRQBP8m3QfqOjs22TzVT0xExxuzqQto1JrKeMmBS4Jk=","type":"register"}"#,
    )
    .expect("capture");
    assert_eq!(node_id(&h.send(0, "127.0.0.1:40000", register)), 1);
    let heartbeat = Request::from_json(
        br#"{"node_id":1,"signature":"02EgFbJB3yRf3dIywe4EXHeLKyyqRHxwabRzAUtvNEdmYWbrRJ0w4Jy37TaewIS8Jr/MkPDl8RGMEQI0R93dDA==","type":"heartbeat"}"#,
    )
    .expect("capture");
    assert!(matches!(
        h.send(5, "127.0.0.1:40000", heartbeat),
        Response::HeartbeatOk(_)
    ));
}

#[test]
fn proven_key_cannot_be_re_registered_without_proof() {
    let mut h = Harness::new(SecurityMode::Compat);
    let victim = key(3);
    let response = h.register(0, "198.51.100.1:1", &victim, SignatureForm::Both);
    let Response::RegisterOk(ok) = &response else {
        panic!("{response:?}")
    };
    assert_eq!(
        (ok.hardened, ok.real_addr.as_deref()),
        (Some(true), Some("198.51.100.1:4000"))
    );

    // An attacker replays the victim's public key, unsigned, from elsewhere.
    let hijack = register_request(&victim, "0.0.0.0:6666");
    assert_eq!(
        error_code(&h.send(1, "203.0.113.66:1", hijack)),
        Some(ErrorCode::ProofRequired)
    );

    // The v0.5 signature alone is no longer enough for this node either.
    let heartbeat = Request::Heartbeat(NodeSigned {
        node_id: 1,
        ..NodeSigned::default()
    });
    let v05 = h.signed(2, &victim, SignatureForm::V05, heartbeat.clone());
    assert_eq!(
        error_code(&h.send(2, "198.51.100.1:1", v05)),
        Some(ErrorCode::ProofRequired)
    );
    let proven = h.signed(3, &victim, SignatureForm::Hardened, heartbeat);
    assert!(matches!(
        h.send(3, "198.51.100.1:1", proven),
        Response::HeartbeatOk(_)
    ));
}

#[test]
fn hardened_proofs_are_single_use_fresh_and_bound_to_the_body() {
    let mut h = Harness::new(SecurityMode::Hardened);
    let a = key(4);
    assert_eq!(
        node_id(&h.register(0, "198.51.100.1:1", &a, SignatureForm::Hardened)),
        1
    );

    let visibility = Request::SetVisibility(SetVisibility {
        node_id: 1,
        public: false,
        ..SetVisibility::default()
    });
    let signed = h.signed(1, &a, SignatureForm::Hardened, visibility);
    assert!(matches!(
        h.send(1, "198.51.100.1:1", signed.clone()),
        Response::SetVisibilityOk(_)
    ));
    assert_eq!(
        error_code(&h.send(2, "198.51.100.1:1", signed.clone())),
        Some(ErrorCode::Replayed)
    );

    // Changing a field the v0.5 signature would not cover breaks the proof.
    let Request::SetVisibility(mut tampered) = signed else {
        unreachable!()
    };
    tampered.public = true;
    let response = h.send(3, "198.51.100.1:1", Request::SetVisibility(tampered));
    assert_eq!(error_code(&response), Some(ErrorCode::BadSignature));

    // A proof made 10 minutes ago is stale.
    let old = Request::Heartbeat(NodeSigned {
        node_id: 1,
        ..NodeSigned::default()
    });
    let old = h.signed(0, &a, SignatureForm::Hardened, old);
    assert_eq!(
        error_code(&h.send(600, "198.51.100.1:1", old)),
        Some(ErrorCode::Stale)
    );

    // Hardened mode refuses v0.5 daemons outright.
    let response = h.register(4, "198.51.100.7:1", &key(5), SignatureForm::V05);
    assert_eq!(error_code(&response), Some(ErrorCode::ProofRequired));
}

#[test]
fn protected_private_node_needs_its_own_trust_to_be_found() {
    let mut h = Harness::new(SecurityMode::Compat);
    let (private, asker, go_node) = (key(6), key(7), key(8));
    h.register(0, "198.51.100.1:1", &private, SignatureForm::Hardened);
    h.register(0, "198.51.100.2:1", &asker, SignatureForm::Hardened);
    h.register(0, "198.51.100.3:1", &go_node, SignatureForm::V05);
    let hostname = Request::SetHostname(SetHostname {
        node_id: 1,
        hostname: "quiet".into(),
        ..SetHostname::default()
    });
    let hostname = h.signed(1, &private, SignatureForm::Hardened, hostname);
    assert!(matches!(
        h.send(1, "198.51.100.1:1", hostname),
        Response::SetHostnameOk(_)
    ));

    // Anonymous and untrusted hostname lookups are refused.
    let anonymous = Request::ResolveHostname(ResolveHostname {
        hostname: "quiet".into(),
        ..ResolveHostname::default()
    });
    assert_eq!(
        error_code(&h.send(2, "203.0.113.1:1", anonymous)),
        Some(ErrorCode::Denied)
    );

    // The asker reports trust unilaterally; that does not unlock a protected node.
    let report = h.signed(
        3,
        &asker,
        SignatureForm::Hardened,
        trust(Request::ReportTrust, 2, 1),
    );
    assert!(matches!(
        h.send(3, "198.51.100.2:1", report),
        Response::ReportTrustOk(_)
    ));
    let attempt = h.signed(4, &asker, SignatureForm::Hardened, resolve(2, 1));
    assert_eq!(
        error_code(&h.send(4, "198.51.100.2:1", attempt)),
        Some(ErrorCode::Denied)
    );

    // Once the private node trusts the asker, both resolve paths work.
    let report = h.signed(
        5,
        &private,
        SignatureForm::Hardened,
        trust(Request::ReportTrust, 1, 2),
    );
    assert!(matches!(
        h.send(5, "198.51.100.1:1", report),
        Response::ReportTrustOk(_)
    ));
    let attempt = h.signed(6, &asker, SignatureForm::Hardened, resolve(2, 1));
    assert!(matches!(
        h.send(6, "198.51.100.2:1", attempt),
        Response::ResolveOk(_)
    ));
    let by_name = Request::ResolveHostname(ResolveHostname {
        hostname: "quiet".into(),
        requester_id: Some(2),
        auth: None,
    });
    let by_name = h.signed(7, &asker, SignatureForm::Hardened, by_name);
    assert!(matches!(
        h.send(7, "198.51.100.2:1", by_name),
        Response::ResolveHostnameOk(_)
    ));

    // A Go node's report_trust keeps v0.5 semantics for Go targets only.
    let report = h.signed(
        8,
        &go_node,
        SignatureForm::V05,
        trust(Request::ReportTrust, 3, 1),
    );
    assert!(matches!(
        h.send(8, "198.51.100.3:1", report),
        Response::ReportTrustOk(_)
    ));
    let attempt = h.signed(9, &go_node, SignatureForm::V05, resolve(3, 1));
    assert_eq!(
        error_code(&h.send(9, "198.51.100.3:1", attempt)),
        Some(ErrorCode::Denied)
    );
}

#[test]
fn registration_is_rate_limited_per_source_ip_but_known_keys_are_exempt() {
    let mut h = Harness::new(SecurityMode::Compat);
    for seed in 0..10 {
        assert!(matches!(
            h.register(0, "198.51.100.1:1", &key(100 + seed), SignatureForm::V05),
            Response::RegisterOk(_)
        ));
    }
    let eleventh = h.register(0, "198.51.100.1:1", &key(120), SignatureForm::V05);
    assert_eq!(error_code(&eleventh), Some(ErrorCode::RateLimited));
    assert!(matches!(
        h.register(0, "198.51.100.1:1", &key(100), SignatureForm::V05),
        Response::RegisterOk(_)
    ));
    assert!(matches!(
        h.register(0, "198.51.100.2:1", &key(121), SignatureForm::V05),
        Response::RegisterOk(_)
    ));
    assert!(matches!(
        h.register(7, "198.51.100.1:1", &key(122), SignatureForm::V05),
        Response::RegisterOk(_)
    ));
}

#[test]
fn silent_nodes_expire_and_get_their_id_back() {
    let mut h = Harness::new(SecurityMode::Compat);
    let a = key(10);
    assert_eq!(
        node_id(&h.register(0, "198.51.100.1:1", &a, SignatureForm::V05)),
        1
    );
    assert_eq!(
        node_id(&h.register(0, "198.51.100.2:1", &key(11), SignatureForm::V05)),
        2
    );

    // Node 1 heartbeats every 30 s; node 2 goes silent.
    for tick in 1..=8 {
        let heartbeat = Request::Heartbeat(NodeSigned {
            node_id: 1,
            ..NodeSigned::default()
        });
        let heartbeat = h.signed(tick * 30, &a, SignatureForm::V05, heartbeat);
        assert!(matches!(
            h.send(tick * 30, "198.51.100.1:1", heartbeat),
            Response::HeartbeatOk(_)
        ));
        h.server.handle_timeout(h.at(tick * 30));
    }
    assert_eq!(h.server.node_count(), 1);
    let lookup = h.send(
        241,
        "203.0.113.1:1",
        Request::Lookup(NodeOnly { node_id: 2 }),
    );
    assert_eq!(error_code(&lookup), Some(ErrorCode::NotFound));
    assert_eq!(
        node_id(&h.register(242, "198.51.100.2:1", &key(11), SignatureForm::V05)),
        2
    );
}

#[test]
fn state_survives_encode_and_recover() {
    let mut h = Harness::new(SecurityMode::Compat);
    let (a, b) = (key(12), key(13));
    h.register(0, "198.51.100.1:1", &a, SignatureForm::Both);
    h.register(0, "198.51.100.2:1", &b, SignatureForm::V05);
    let report = h.signed(
        1,
        &a,
        SignatureForm::Hardened,
        trust(Request::ReportTrust, 1, 2),
    );
    assert!(matches!(
        h.send(1, "198.51.100.1:1", report),
        Response::ReportTrustOk(_)
    ));
    assert!(h.server.is_dirty());

    let snapshot = h.server.encode_state(h.at(2));
    assert_eq!(
        snapshot,
        h.server.encode_state(h.at(2)),
        "deterministic encoding"
    );
    let config = RegistryConfig::default();
    let mut recovered =
        RegistryServer::recover(config.clone(), h.at(2), UNIX + 2, &snapshot).expect("recovers");
    assert_eq!(recovered.node_count(), 2);
    assert_eq!(recovered.encode_state(h.at(2)), snapshot);

    // The protection of the proven node survives the restart.
    let hijack = register_request(&a, "0.0.0.0:1");
    let response = recovered.handle_request(h.at(3), addr("203.0.113.5:1"), hijack);
    assert_eq!(error_code(&response), Some(ErrorCode::ProofRequired));
    assert!(RegistryServer::recover(config.clone(), h.at(2), UNIX, b"{not json").is_err());
    assert!(RegistryServer::recover(config, h.at(2), UNIX, br#"{"format":"other"}"#).is_err());
}

#[test]
fn relayed_handshake_round_trip_creates_mutual_trust() {
    let mut h = Harness::new(SecurityMode::Compat);
    let (a, c) = (key(14), key(15));
    h.register(0, "198.51.100.1:1", &a, SignatureForm::Hardened);
    h.register(0, "198.51.100.3:1", &c, SignatureForm::Hardened);
    let ask = Request::RequestHandshake(RequestHandshake {
        from_node_id: 1,
        to_node_id: 2,
        justification: "relay please".into(),
        ..RequestHandshake::default()
    });
    let ask = h.signed(1, &a, SignatureForm::Hardened, ask);
    assert!(matches!(
        h.send(1, "198.51.100.1:1", ask.clone()),
        Response::RequestHandshakeOk(_)
    ));
    let again = h.signed(1, &a, SignatureForm::Hardened, ask);
    assert_eq!(
        error_code(&h.send(1, "198.51.100.1:1", again)),
        Some(ErrorCode::TableFull)
    );

    let poll = Request::PollHandshakes(NodeSigned {
        node_id: 2,
        ..NodeSigned::default()
    });
    let poll = h.signed(2, &c, SignatureForm::Hardened, poll);
    let Response::PollHandshakesOk(inbox) = h.send(2, "198.51.100.3:1", poll) else {
        panic!("poll")
    };
    assert_eq!(inbox.requests.len(), 1);
    assert_eq!(
        (inbox.requests[0].from_node_id, inbox.requests[0].timestamp),
        (1, (UNIX + 1) as i64)
    );

    let accept = Request::RespondHandshake(RespondHandshake {
        node_id: 2,
        peer_id: 1,
        accept: true,
        ..RespondHandshake::default()
    });
    let accept = h.signed(3, &c, SignatureForm::Hardened, accept);
    assert!(matches!(
        h.send(3, "198.51.100.3:1", accept),
        Response::RespondHandshakeOk(_)
    ));
    let poll = Request::PollHandshakes(NodeSigned {
        node_id: 1,
        ..NodeSigned::default()
    });
    let poll = h.signed(4, &a, SignatureForm::Hardened, poll);
    let Response::PollHandshakesOk(answers) = h.send(4, "198.51.100.1:1", poll) else {
        panic!("poll")
    };
    assert_eq!(
        answers
            .responses
            .iter()
            .map(|r| (r.from_node_id, r.accept))
            .collect::<Vec<_>>(),
        vec![(2, true)]
    );

    // Both directions of trust now exist, so each can resolve the other.
    let forward = h.signed(5, &a, SignatureForm::Hardened, resolve(1, 2));
    assert!(matches!(
        h.send(5, "198.51.100.1:1", forward),
        Response::ResolveOk(_)
    ));
    let back = h.signed(5, &c, SignatureForm::Hardened, resolve(2, 1));
    assert!(matches!(
        h.send(5, "198.51.100.3:1", back),
        Response::ResolveOk(_)
    ));
}

#[test]
fn connection_layer_frames_answers_and_closes() {
    let mut h = Harness::new(SecurityMode::Compat);
    let conn = ConnectionId(7);
    h.server
        .handle_connect(h.at(0), conn, addr("198.51.100.1:5555"));
    let mut stream = Vec::new();
    register_request(&key(16), "0.0.0.0:4000")
        .encode_frame(&mut stream)
        .expect("frame");
    Request::Lookup(NodeOnly { node_id: 1 })
        .encode_frame(&mut stream)
        .expect("frame");
    for piece in stream.chunks(3) {
        h.server.handle_bytes(h.at(0), conn, piece);
    }

    let mut decoder = FrameDecoder::default();
    let mut buf = Vec::new();
    while let Some(transmit) = h.server.poll_transmit(&mut buf) {
        assert_eq!(transmit.conn, conn);
        decoder
            .push(&buf[..transmit.len])
            .expect("server frames are valid");
    }
    let types: Vec<String> = std::iter::from_fn(|| decoder.next_frame())
        .map(|body| {
            Response::from_json(&body)
                .expect("json")
                .type_name()
                .to_owned()
        })
        .collect();
    assert_eq!(types, ["register_ok", "lookup_ok"]);
    assert_eq!(h.server.poll_event(), Some(ServerEvent::StateDirty));

    // An oversize length closes the connection at once.
    h.server
        .handle_bytes(h.at(1), conn, &[0x7f, 0xff, 0xff, 0xff]);
    assert_eq!(
        h.server.poll_event(),
        Some(ServerEvent::Close {
            conn,
            reason: CloseReason::BadFraming
        })
    );

    // An idle connection is closed after 5 minutes.
    let idle = ConnectionId(8);
    h.server
        .handle_connect(h.at(10), idle, addr("198.51.100.2:5555"));
    assert!(h.server.poll_timeout().is_some_and(|t| t <= h.at(310)));
    h.server.handle_timeout(h.at(309));
    assert_eq!(h.server.poll_event(), None);
    h.server.handle_timeout(h.at(310));
    assert_eq!(
        h.server.poll_event(),
        Some(ServerEvent::Close {
            conn: idle,
            reason: CloseReason::Idle
        })
    );
    assert_eq!(h.server.connection_count(), 0);
}

mod untrusted {
    use proptest::prelude::*;

    use super::*;

    fn fields() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(serde_json::json!(null)),
            (0u32..6).prop_map(|n| serde_json::json!(n)),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            "[a-z0-9#=/+ -]{0,12}".prop_map(|s| serde_json::json!(s)),
            any::<bool>().prop_map(|b| serde_json::json!(b)),
            Just(serde_json::json!(["a", 1, null])),
        ]
    }

    proptest! {
        /// Arbitrary bytes and arbitrary requests of every known type never panic the server,
        /// and every answered frame is a valid response.
        #[test]
        fn arbitrary_input_never_panics(
            garbage in proptest::collection::vec(any::<u8>(), 0..256),
            requests in proptest::collection::vec((
                prop_oneof![
                    Just("register"), Just("heartbeat"), Just("lookup"), Just("resolve"),
                    Just("resolve_hostname"), Just("set_hostname"), Just("set_tags"),
                    Just("report_trust"), Just("revoke_trust"), Just("request_handshake"),
                    Just("poll_handshakes"), Just("respond_handshake"), Just("punch"),
                    Just("rotate_key"), Just("update_polo_score"), Just("set_polo_score"),
                    Just("list_nodes"), Just("create_network"), Just("beacon_register"),
                    Just("subscribe_replication"), Just("nonsense"),
                ],
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("node_id"), Just("peer_id"), Just("public_key"), Just("signature"),
                        Just("hostname"), Just("tags"), Just("delta"), Just("requester_id"),
                        Just("auth"), Just("addr"), Just("beacon_id"), Just("listen_addr"),
                    ],
                    fields(),
                    0..5,
                ),
            ), 0..12),
        ) {
            let mut h = Harness::new(SecurityMode::Compat);
            h.register(0, "198.51.100.1:1", &key(1), SignatureForm::V05);
            let conn = ConnectionId(1);
            h.server.handle_connect(h.at(0), conn, addr("198.51.100.9:9"));
            for (type_name, fields) in requests {
                let mut object: serde_json::Map<String, serde_json::Value> =
                    fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                object.insert("type".into(), serde_json::json!(type_name));
                let mut frame = Vec::new();
                let json = serde_json::to_vec(&object).expect("json");
                encode_frame(&json, &mut frame).expect("small");
                h.server.handle_bytes(h.at(1), conn, &frame);
            }
            h.server.handle_bytes(h.at(2), conn, &garbage);
            let mut decoder = FrameDecoder::default();
            let mut buf = Vec::new();
            while let Some(transmit) = h.server.poll_transmit(&mut buf) {
                decoder.push(&buf[..transmit.len]).expect("valid framing");
            }
            while let Some(body) = decoder.next_frame() {
                prop_assert!(Response::from_json(&body).is_ok());
            }
            h.server.handle_timeout(h.at(400));
        }
    }
}

#[test]
fn the_config_never_prints_its_admin_token() {
    let config = RegistryConfig {
        admin_token: Some("s3cret-admin".into()),
        ..RegistryConfig::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}
