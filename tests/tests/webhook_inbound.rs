//! Inbound webhook bridge end to end on loopback: a blocking HTTP client (ureq) posts signed
//! webhooks to the receiver hosted by this harness; a fake sink stands in for the event log.
//!
//! Every wait is bounded by a timeout; nothing sleeps to synchronise. The sink confirms before
//! the receiver answers, so once a client has its answer the sink's channel already holds the
//! event (which is what lets `try_recv` prove "no extra event").

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderName;
use pilot_tokio::webhook::inbound::{self, ConfigError};
use pilot_tokio::webhook::ratelimit::RateLimit;
use pilot_tokio::webhook::verify::{self, Secret};
use pilot_tokio::webhook::{
    EventSink, InboundConfig, InboundEvent, InboundHandle, PublishDone, PublishError,
    PublishRequest, Route, TopicRule, Verifier,
};
use tokio::sync::mpsc;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(10);

fn secret() -> Secret {
    Secret::from_standard(SECRET).unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A receiver with one Standard Webhooks route on `/events`.
fn standard_config() -> InboundConfig {
    let route = Route::new("/events", Verifier::StandardWebhooks(vec![secret()]));
    InboundConfig::new(loopback(), vec![route])
}

/// Starts a receiver whose sink confirms every event and forwards it to the returned channel.
async fn start_memory(
    config: InboundConfig,
) -> (InboundHandle, mpsc::UnboundedReceiver<InboundEvent>) {
    let (sink, mut requests) = mpsc::channel::<PublishRequest>(64);
    let (events_tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(PublishRequest { event, done }) = requests.recv().await {
            events_tx.send(event).unwrap();
            let _ = done.send(Ok(()));
        }
    });
    let handle = inbound::start(config, Arc::new(sink)).await.unwrap();
    (handle, events)
}

/// One blocking POST with a fresh agent (no pooled connection survives a server crash).
fn post_blocking(
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(u16, String), String> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(WAIT))
        .build();
    let agent: ureq::Agent = config.into();
    let mut request = agent.post(url);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let mut response = request.send(body).map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Ok((status, text))
}

async fn post(url: String, headers: Vec<(String, String)>, body: Vec<u8>) -> (u16, String) {
    let call = tokio::task::spawn_blocking(move || post_blocking(&url, &headers, &body));
    tokio::time::timeout(WAIT, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

fn standard_headers(id: &str, ts: u64, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        (
            "webhook-signature".into(),
            verify::sign_standard(&secret(), id, ts, body),
        ),
        ("content-type".into(), "application/json".into()),
    ]
}

/// A refused-request case: name, headers, body, expected status, expected reason.
type Case = (
    &'static str,
    Vec<(String, String)>,
    Vec<u8>,
    u16,
    &'static str,
);

fn url(handle: &InboundHandle, path: &str) -> String {
    format!("http://{}{path}", handle.local_addr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_delivery_is_published_once_even_when_the_provider_retries() {
    let (handle, mut events) = start_memory(standard_config()).await;
    for i in 0..10u32 {
        let id = format!("msg_{i}");
        let body = format!(r#"{{"n":{i}}}"#).into_bytes();
        let first = standard_headers(&id, unix_now(), &body);
        assert_eq!(
            post(url(&handle, "/events/orders"), first, body.clone())
                .await
                .0,
            200
        );
        // A provider retry: same id, new timestamp, new signature.
        let retry = standard_headers(&id, unix_now() + 1, &body);
        let (status, text) = post(url(&handle, "/events/orders"), retry, body.clone()).await;
        assert_eq!(
            (status, text.as_str()),
            (200, "duplicate delivery; already accepted\n")
        );
    }
    for i in 0..10u32 {
        let event = events.try_recv().expect("one event per delivery");
        assert_eq!(event.topic, "events.orders");
        assert_eq!(
            event.delivery_id.as_deref(),
            Some(format!("msg_{i}").as_str())
        );
        assert_eq!(event.payload.as_ref(), format!(r#"{{"n":{i}}}"#).as_bytes());
        assert_eq!(event.source, "events");
    }
    assert!(events.try_recv().is_err(), "retries must not become events");
    let stats = handle.stats();
    assert_eq!((stats.accepted, stats.duplicate), (10, 10));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_future_malformed_and_oversized_requests_are_refused() {
    let mut config = standard_config();
    config.max_body = 64;
    let (handle, mut events) = start_memory(config).await;
    let body = br#"{"ok":true}"#.to_vec();
    let now = unix_now();

    let forged = {
        let mut h = standard_headers("msg_forged", now, &body);
        h[2].1 = verify::sign_standard(
            &Secret::from_bytes(b"attacker").unwrap(),
            "msg_forged",
            now,
            &body,
        );
        h
    };
    let mut missing = standard_headers("msg_missing", now, &body);
    missing.remove(2);
    let cases: Vec<Case> = vec![
        (
            "forged",
            forged,
            body.clone(),
            401,
            "signature does not match\n",
        ),
        (
            "stale",
            standard_headers("msg_old", now - 600, &body),
            body.clone(),
            401,
            "timestamp too old\n",
        ),
        (
            "future",
            standard_headers("msg_new", now + 600, &body),
            body.clone(),
            401,
            "timestamp in the future\n",
        ),
        (
            "tampered",
            standard_headers("msg_t", now, &body),
            b"{\"ok\":false}".to_vec(),
            401,
            "signature does not match\n",
        ),
        (
            "missing",
            missing,
            body.clone(),
            400,
            "missing signature header\n",
        ),
        (
            "oversized",
            standard_headers("msg_big", now, &[b'x'; 65]),
            vec![b'x'; 65],
            413,
            "body exceeds the size limit\n",
        ),
    ];
    for (name, headers, body, status, reason) in cases {
        let answer = post(url(&handle, "/events"), headers, body).await;
        assert_eq!(answer, (status, reason.to_owned()), "case {name}");
    }
    let ok = standard_headers("msg_ok", now, &body);
    assert_eq!(
        post(url(&handle, "/nowhere"), ok.clone(), body.clone())
            .await
            .0,
        404
    );
    assert_eq!(
        post(url(&handle, "/events/bad~token"), ok, body).await.0,
        400
    );

    assert!(
        events.try_recv().is_err(),
        "nothing refused may be published"
    );
    let stats = handle.stats();
    assert_eq!(
        (stats.unauthorized, stats.malformed, stats.too_large),
        (4, 2, 1)
    );
    assert_eq!((stats.not_found, stats.accepted), (1, 0));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_over_its_rate_gets_429() {
    let mut config = standard_config();
    config.rate_limit = RateLimit {
        burst: 2,
        per_second: 0.0,
    };
    let (handle, _events) = start_memory(config).await;
    let body = b"{}".to_vec();
    for (i, expected) in [200, 200, 429].into_iter().enumerate() {
        let headers = standard_headers(&format!("msg_{i}"), unix_now(), &body);
        let (status, text) = post(url(&handle, "/events"), headers, body.clone()).await;
        assert_eq!(status, expected, "request {i}: {text}");
    }
    assert_eq!(handle.stats().rate_limited, 1);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_publish_is_answered_503_and_its_retry_is_published() {
    let calls = Arc::new(AtomicU32::new(0));
    let published = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let (calls, published) = (calls.clone(), published.clone());
        move |event: InboundEvent, done: PublishDone| match calls.fetch_add(1, Ordering::SeqCst) {
            0 => drop(done),
            1 => drop(done.send(Err(PublishError::Write("disk full".into())))),
            _ => {
                published.lock().unwrap().push(event);
                let _ = done.send(Ok(()));
            }
        }
    };
    let handle = inbound::start(standard_config(), Arc::new(sink))
        .await
        .unwrap();
    let body = b"{}".to_vec();
    for expected in [503, 503, 200, 200] {
        let headers = standard_headers("msg_same", unix_now(), &body);
        assert_eq!(
            post(url(&handle, "/events"), headers, body.clone()).await.0,
            expected
        );
    }
    assert_eq!(published.lock().unwrap().len(), 1, "published exactly once");
    let stats = handle.stats();
    assert_eq!(
        (stats.publish_failed, stats.accepted, stats.duplicate),
        (2, 1, 1)
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_and_github_routes_verify_their_own_formats() {
    let stripe_key = Secret::from_bytes(b"whsec_stripe_test").unwrap();
    let github_key = Secret::from_bytes(b"It's a Secret to Everybody").unwrap();
    let stripe = Route::new("/hooks/stripe", Verifier::Stripe(vec![stripe_key.clone()]));
    let github = Route {
        topic: TopicRule::Header(HeaderName::from_static("x-github-event")),
        ..Route::new("/hooks/github", Verifier::GitHub(vec![github_key.clone()]))
    };
    let (handle, mut events) =
        start_memory(InboundConfig::new(loopback(), vec![stripe, github])).await;

    let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#.to_vec();
    let header = verify::sign_stripe(&stripe_key, unix_now(), &body);
    let headers = vec![("stripe-signature".to_owned(), header)];
    for _ in 0..2 {
        assert_eq!(
            post(url(&handle, "/hooks/stripe"), headers.clone(), body.clone())
                .await
                .0,
            200
        );
    }
    let gh_body = b"Hello, World!".to_vec();
    let gh_headers = vec![
        (
            "x-hub-signature-256".to_owned(),
            verify::sign_github(&github_key, &gh_body),
        ),
        ("x-github-delivery".to_owned(), "d-1".to_owned()),
        ("x-github-event".to_owned(), "push".to_owned()),
    ];
    assert_eq!(
        post(
            url(&handle, "/hooks/github"),
            gh_headers.clone(),
            gh_body.clone()
        )
        .await
        .0,
        200
    );
    let wrong_route = post(url(&handle, "/hooks/stripe"), gh_headers, gh_body).await;
    assert_eq!(
        wrong_route.0, 400,
        "a GitHub request on the Stripe route lacks its header"
    );

    let first = events.try_recv().unwrap();
    assert_eq!(
        (first.topic.as_str(), first.delivery_id.as_deref()),
        ("hooks.stripe", Some("evt_1"))
    );
    let second = events.try_recv().unwrap();
    assert_eq!(
        (second.topic.as_str(), second.delivery_id.as_deref()),
        ("hooks.github.push", Some("d-1"))
    );
    assert!(events.try_recv().is_err());
    handle.shutdown().await;
}

#[tokio::test]
async fn configuration_refuses_what_would_expose_or_weaken_the_receiver() {
    let sink: Arc<dyn EventSink> = Arc::new(|_: InboundEvent, _: PublishDone| {});
    let public = InboundConfig::from_url("http://0.0.0.0:8080/events", Verifier::Unsigned).unwrap();
    let err = inbound::start(public.clone(), sink.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, ConfigError::NonLoopback(_)), "{err}");
    let allowed = InboundConfig {
        allow_non_loopback: true,
        ..public
    };
    let err = inbound::start(allowed, sink.clone()).await.unwrap_err();
    assert!(matches!(err, ConfigError::UnsignedNonLoopback), "{err}");
    let empty = InboundConfig::new(
        loopback(),
        vec![Route::new("/e", Verifier::StandardWebhooks(vec![]))],
    );
    assert!(matches!(
        inbound::start(empty, sink).await.unwrap_err(),
        ConfigError::NoSecrets(_)
    ));
    assert!(InboundConfig::from_url("https://localhost/events", Verifier::Unsigned).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_url_binds_exactly_the_given_loopback_address_and_path() {
    let sink = |_: InboundEvent, done: PublishDone| drop(done.send(Ok(())));
    let config = InboundConfig::from_url("http://localhost:0/events", Verifier::Unsigned).unwrap();
    let handle = inbound::start(config, Arc::new(sink)).await.unwrap();
    assert!(handle.local_addr().ip().is_loopback());
    let headers = vec![("webhook-id".to_owned(), "u1".to_owned())];
    assert_eq!(
        post(url(&handle, "/events"), headers.clone(), b"x".to_vec())
            .await
            .0,
        200
    );
    assert_eq!(
        post(url(&handle, "/events"), headers, b"x".to_vec())
            .await
            .0,
        200
    );
    assert_eq!(post(url(&handle, "/"), vec![], b"x".to_vec()).await.0, 404);
    assert_eq!((handle.stats().accepted, handle.stats().duplicate), (1, 1));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_during_the_first_publish_gets_409_and_a_silent_log_gets_503() {
    let (held_tx, mut held) = mpsc::unbounded_channel::<PublishDone>();
    let sink = move |_: InboundEvent, done: PublishDone| drop(held_tx.send(done));
    let mut config = standard_config();
    config.publish_timeout = Duration::from_secs(1);
    let handle = inbound::start(config, Arc::new(sink)).await.unwrap();
    let body = b"{}".to_vec();

    let first = tokio::spawn(post(
        url(&handle, "/events"),
        standard_headers("msg_a", unix_now(), &body),
        body.clone(),
    ));
    let done = tokio::time::timeout(WAIT, held.recv())
        .await
        .unwrap()
        .unwrap();
    let retry = post(
        url(&handle, "/events"),
        standard_headers("msg_a", unix_now(), &body),
        body.clone(),
    )
    .await;
    assert_eq!(
        retry,
        (409, "same delivery in progress; retry later\n".to_owned())
    );
    done.send(Ok(())).unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, first).await.unwrap().unwrap().0,
        200
    );

    // The log takes the event but never confirms: after the publish timeout, 503.
    let silent = post(
        url(&handle, "/events"),
        standard_headers("msg_b", unix_now(), &body),
        body,
    )
    .await;
    assert_eq!(silent.0, 503);
    let stats = handle.stats();
    assert_eq!(
        (stats.accepted, stats.in_progress, stats.publish_failed),
        (1, 1, 1)
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_cut_off_with_413() {
    let mut config = standard_config();
    config.max_body = 64;
    let (handle, mut events) = start_memory(config).await;
    let body = vec![b'x'; 4096];
    let headers = standard_headers("msg_chunked", unix_now(), &body);
    let target = url(&handle, "/events");
    let call = tokio::task::spawn_blocking(move || {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build();
        let agent: ureq::Agent = config.into();
        let mut request = agent.post(&target);
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        // A reader body has no Content-Length, so ureq sends it chunked.
        let reader = std::io::Cursor::new(body);
        request
            .send(ureq::SendBody::from_owned_reader(reader))
            .map(|r| r.status().as_u16())
    });
    let status = tokio::time::timeout(WAIT, call).await.unwrap().unwrap();
    // The server may answer before reading the rest; either the 413 arrives or the client sees
    // the connection closed under its upload. Neither may publish anything.
    if let Ok(status) = status {
        assert_eq!(status, 413);
    }
    assert_eq!(handle.stats().too_large, 1);
    assert!(events.try_recv().is_err());
    handle.shutdown().await;
}
