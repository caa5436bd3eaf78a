//! Registry client against the registry server, both in memory, over a byte pipe the test
//! carries. Virtual time; every loop is bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use pilot_proto::registry::{
    ClientConfig, ClientEvent, ConnectionId, ErrorCode, RegistryClient, RegistryConfig,
    RegistryError, RegistryServer, SecurityMode, SignatureForm,
};
use pilot_proto::rng::Rng;
use pilot_proto::wire::registry::Response;

const UNIX: u64 = 1_796_317_551;

#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    // Only offsets from this instant matter.
    Instant::now()
}

struct Pipe {
    server: RegistryServer,
    conn: ConnectionId,
    peer: SocketAddr,
}

impl Pipe {
    fn new(security: SecurityMode, now: Instant) -> Self {
        let config = RegistryConfig {
            security,
            ..RegistryConfig::default()
        };
        let server = RegistryServer::new(config, now, UNIX);
        let mut pipe = Self {
            server,
            conn: ConnectionId(1),
            peer: "198.51.100.4:40000".parse().expect("addr"),
        };
        pipe.server.handle_connect(now, pipe.conn, pipe.peer);
        pipe
    }

    /// Moves bytes both ways until quiet; returns the client's events.
    fn pump(&mut self, now: Instant, client: &mut RegistryClient) -> Vec<ClientEvent> {
        let mut buf = Vec::new();
        for _ in 0..16 {
            let mut moved = false;
            while let Some(len) = client.poll_bytes(&mut buf) {
                self.server.handle_bytes(now, self.conn, &buf[..len]);
                moved = true;
            }
            while let Some(transmit) = self.server.poll_transmit(&mut buf) {
                client.handle_bytes(now, &buf[..transmit.len]);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        std::iter::from_fn(|| client.poll_event()).collect()
    }
}

fn client(now: Instant, form: SignatureForm) -> RegistryClient {
    let config = ClientConfig {
        signature_form: form,
        ..ClientConfig::default()
    };
    let key = SigningKey::from_bytes(&[42; 32]);
    RegistryClient::new(config, now, UNIX, Some(key), Rng::from_seed([1; 32]))
}

fn response_types(events: &[ClientEvent]) -> Vec<Result<String, RegistryError>> {
    events
        .iter()
        .filter_map(|event| match event {
            ClientEvent::Response { result, .. } => Some(
                result
                    .clone()
                    .map(|response| response.type_name().to_owned()),
            ),
            _ => None,
        })
        .collect()
}

#[test]
fn register_then_signed_requests_succeed_in_order() {
    let start = epoch();
    let mut pipe = Pipe::new(SecurityMode::Compat, start);
    let mut client = client(start, SignatureForm::Both);
    client.handle_connected(start);
    client
        .register(
            start,
            Some("0.0.0.0:4000".into()),
            Some("alpha".into()),
            None,
        )
        .expect("queued");
    let events = pipe.pump(start, &mut client);
    assert_eq!(response_types(&events), vec![Ok("register_ok".to_owned())]);
    assert_eq!(client.node_id(), Some(1));
    // A compat server that saw a proof answers hardened, so v0.5 signatures stop.
    assert!(events.contains(&ClientEvent::ServerHardened));
    assert_eq!(client.signature_form(), SignatureForm::Hardened);

    let later = start + Duration::from_secs(30);
    client.heartbeat(later).expect("queued");
    client.set_visibility(later, true).expect("queued");
    client.resolve(later, 1).expect("queued");
    client.lookup(later, 99).expect("queued");
    let events = pipe.pump(later, &mut client);
    let types = response_types(&events);
    assert_eq!(
        types[..3],
        [
            Ok("heartbeat_ok".into()),
            Ok("set_visibility_ok".into()),
            Ok("resolve_ok".into())
        ]
    );
    assert_eq!(
        types[3],
        Err(RegistryError::Refused {
            code: Some(ErrorCode::NotFound),
            text: "request failed".into()
        })
    );
}

#[test]
fn v05_form_client_works_against_compat_and_is_refused_by_hardened() {
    let start = epoch();
    let mut compat = Pipe::new(SecurityMode::Compat, start);
    let mut go_like = client(start, SignatureForm::V05);
    go_like.handle_connected(start);
    go_like.register(start, None, None, None).expect("queued");
    go_like
        .heartbeat(start)
        .expect_err("no node id before register_ok");
    let events = compat.pump(start, &mut go_like);
    assert_eq!(response_types(&events), vec![Ok("register_ok".to_owned())]);
    assert_eq!(go_like.signature_form(), SignatureForm::V05);
    go_like.heartbeat(start).expect("queued");
    assert_eq!(
        response_types(&compat.pump(start, &mut go_like)),
        vec![Ok("heartbeat_ok".to_owned())]
    );

    let mut hardened = Pipe::new(SecurityMode::Hardened, start);
    let mut go_like = client(start, SignatureForm::V05);
    go_like.handle_connected(start);
    go_like.register(start, None, None, None).expect("queued");
    let types = response_types(&hardened.pump(start, &mut go_like));
    assert!(matches!(
        &types[0],
        Err(RegistryError::Refused {
            code: Some(ErrorCode::ProofRequired),
            ..
        })
    ));
}

#[test]
fn unanswered_request_times_out_and_asks_for_a_new_stream() {
    let start = epoch();
    let mut client = client(start, SignatureForm::Both);
    client.handle_connected(start);
    client.lookup(start, 1).expect("queued");
    let mut buf = Vec::new();
    assert!(client.poll_bytes(&mut buf).is_some());
    let deadline = client.poll_timeout().expect("armed");
    assert_eq!(deadline, start + Duration::from_secs(10));
    client.handle_timeout(deadline - Duration::from_millis(1));
    assert!(client.poll_event().is_none());
    client.handle_timeout(deadline);
    let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
    assert_eq!(response_types(&events), vec![Err(RegistryError::Timeout)]);
    assert_eq!(client.pending_count(), 0);
}

#[test]
fn broken_stream_retries_each_request_once() {
    let start = epoch();
    let mut pipe = Pipe::new(SecurityMode::Compat, start);
    let mut client = client(start, SignatureForm::Both);
    client.handle_connected(start);
    client.register(start, None, None, None).expect("queued");
    pipe.pump(start, &mut client);

    // A heartbeat is written, then the stream dies before the answer.
    client.heartbeat(start).expect("queued");
    let mut buf = Vec::new();
    assert!(client.poll_bytes(&mut buf).is_some());
    client.handle_disconnected(start);
    assert_eq!(client.poll_event(), Some(ClientEvent::Reconnect));

    // On the new stream it is sent again, with a fresh proof, and succeeds.
    pipe.server.handle_disconnect(start, pipe.conn);
    pipe.conn = ConnectionId(2);
    pipe.server.handle_connect(start, pipe.conn, pipe.peer);
    client.handle_connected(start);
    assert_eq!(
        response_types(&pipe.pump(start, &mut client)),
        vec![Ok("heartbeat_ok".to_owned())]
    );

    // A request whose second stream also dies fails.
    client.heartbeat(start).expect("queued");
    for _ in 0..2 {
        assert!(client.poll_bytes(&mut buf).is_some());
        client.handle_disconnected(start);
        client.handle_connected(start);
    }
    let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
    assert!(response_types(&events).contains(&Err(RegistryError::Disconnected)));
    assert!(Response::from_json(b"{}").is_err());
}

#[test]
fn heartbeats_poll_handshakes_and_reregister_after_three_failures() {
    let start = epoch();
    let mut pipe = Pipe::new(SecurityMode::Compat, start);
    let mut client = client(start, SignatureForm::Both);
    client.handle_connected(start);
    client.register(start, None, None, None).expect("queued");
    pipe.pump(start, &mut client);
    assert_eq!(client.poll_timeout(), Some(start + Duration::from_secs(30)));

    // Every 30 s: heartbeat, then poll_handshakes, both answered.
    let mut types = Vec::new();
    for tick in 1..=3u64 {
        let now = start + Duration::from_secs(30 * tick);
        client.handle_timeout(now);
        types.extend(response_types(&pipe.pump(now, &mut client)));
    }
    let expected: Vec<Result<String, RegistryError>> = ["heartbeat_ok", "poll_handshakes_ok"]
        .repeat(3)
        .into_iter()
        .map(|t| Ok(t.to_owned()))
        .collect();
    assert_eq!(types, expected);

    // The registry restarts empty: heartbeats fail, and the third failure asks to re-register.
    let restart = start + Duration::from_secs(95);
    pipe = Pipe::new(SecurityMode::Compat, restart);
    let mut reregister = 0;
    for tick in 4..=6u64 {
        let now = start + Duration::from_secs(30 * tick);
        client.handle_timeout(now);
        let events = pipe.pump(now, &mut client);
        reregister += events
            .iter()
            .filter(|e| **e == ClientEvent::ReRegister)
            .count();
        assert_eq!(reregister, usize::from(tick == 6));
    }
}
