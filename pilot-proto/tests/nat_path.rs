//! NAT traversal decisions under virtual time: the dial plan, relay fallback and upgrade,
//! keepalives, recovery, and a property test over random event sequences.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pilot_proto::nat::{
    DialFailure, DialTiming, NatConfig, PathAction, PeerPath, Route, needs_reregistration,
    registration_endpoint,
};
use proptest::prelude::*;

#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    // Only offsets from this instant matter.
    Instant::now()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs timers until `until` (bounded), collecting (time offset, action).
fn run(
    path: &mut PeerPath,
    start: Instant,
    from: Instant,
    until: Instant,
) -> Vec<(Duration, PathAction)> {
    let mut out = Vec::new();
    let mut now = from;
    for _ in 0..10_000 {
        while let Some(action) = path.poll_action() {
            out.push((now - start, action));
        }
        match path.poll_timeout() {
            Some(at) if at <= until => {
                assert!(at >= now, "timer in the past");
                now = at;
                path.handle_timeout(now);
            }
            _ => return out,
        }
    }
    panic!("timer loop did not settle");
}

fn dial(config: NatConfig, start: Instant) -> PeerPath {
    let mut path = PeerPath::new(2, config);
    path.start(start);
    assert_eq!(path.poll_action(), Some(PathAction::Resolve));
    path.handle_resolved(start, addr("203.0.113.2:4000"));
    path
}

#[test]
fn clean_path_goes_direct_without_relay() {
    let start = epoch();
    let mut path = dial(NatConfig::default(), start);
    let early = run(&mut path, start, start, start + ms(100));
    assert_eq!(early[0].1, PathAction::RequestPunch);
    assert_eq!(
        early[1].1,
        PathAction::Probe {
            addr: addr("203.0.113.2:4000")
        }
    );

    path.handle_direct_rx(start + ms(120), addr("203.0.113.2:4000"));
    assert_eq!(
        path.poll_action(),
        Some(PathAction::UseDirect {
            addr: addr("203.0.113.2:4000")
        })
    );
    assert_eq!(path.route(), Route::Direct(addr("203.0.113.2:4000")));
    let later = run(
        &mut path,
        start,
        start + ms(120),
        start + Duration::from_secs(10),
    );
    assert!(
        later.iter().all(|(_, a)| *a != PathAction::UseRelay),
        "{later:?}"
    );
}

#[test]
fn v05_timing_probes_at_0_1_3_and_relays_at_7() {
    let start = epoch();
    let config = NatConfig {
        timing: DialTiming::V05,
        ..NatConfig::default()
    };
    let mut path = dial(config, start);
    let actions = run(&mut path, start, start, start + Duration::from_secs(7));
    let probes: Vec<Duration> = actions
        .iter()
        .filter(|(_, a)| matches!(a, PathAction::Probe { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        probes,
        vec![
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(3)
        ]
    );
    let relay = actions
        .iter()
        .find(|(_, a)| *a == PathAction::UseRelay)
        .map(|(t, _)| *t);
    assert_eq!(relay, Some(Duration::from_secs(7)));
}

#[test]
fn impossible_direct_relays_within_3s_then_keeps_punching_and_upgrades() {
    let start = epoch();
    let mut path = dial(NatConfig::default(), start);
    let actions = run(&mut path, start, start, start + Duration::from_secs(60));
    let relay = actions
        .iter()
        .find(|(_, a)| *a == PathAction::UseRelay)
        .map(|(t, _)| *t);
    assert_eq!(relay, Some(Duration::from_secs(3)));
    assert_eq!(path.route(), Route::Relay);

    // Punch requests continue after relaying, on a backoff capped at 30 s.
    let punches: Vec<Duration> = actions
        .iter()
        .filter(|(t, a)| *a == PathAction::RequestPunch && *t > Duration::from_secs(3))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(punches, [5, 9, 17, 33].map(Duration::from_secs).to_vec());
    let more = run(
        &mut path,
        start,
        start + Duration::from_secs(60),
        start + Duration::from_secs(200),
    );
    let gaps: Vec<u64> = more
        .iter()
        .filter(|(_, a)| *a == PathAction::RequestPunch)
        .map(|(t, _)| t.as_secs())
        .collect();
    assert!(gaps.windows(2).all(|w| w[1] - w[0] == 30), "{gaps:?}");

    // When a probe finally gets through (the NAT allowed it), the relay is left.
    let peer_seen_at = addr("203.0.113.2:4100");
    path.handle_punch_command(start + Duration::from_secs(201), peer_seen_at);
    path.handle_direct_rx(start + Duration::from_secs(201), peer_seen_at);
    assert_eq!(
        path.poll_action(),
        Some(PathAction::UseDirect { addr: peer_seen_at })
    );
    assert_eq!(path.route(), Route::Direct(peer_seen_at));
    let after = run(
        &mut path,
        start,
        start + Duration::from_secs(201),
        start + Duration::from_secs(230),
    );
    assert!(after.iter().all(|(_, a)| *a != PathAction::RequestPunch));
}

#[test]
fn keepalives_hold_the_mapping_and_a_silent_path_falls_back_then_recovers() {
    let start = epoch();
    let mut path = dial(NatConfig::default(), start);
    let direct = addr("203.0.113.2:4000");
    let dial_actions: Vec<PathAction> = std::iter::from_fn(|| path.poll_action()).collect();
    assert_eq!(
        dial_actions,
        vec![PathAction::RequestPunch, PathAction::Probe { addr: direct }]
    );
    path.handle_direct_rx(start, direct);
    assert_eq!(
        path.poll_action(),
        Some(PathAction::UseDirect { addr: direct })
    );

    // The peer keeps talking every 20 s: keepalives every 25 s, no revalidation.
    let mut now = start;
    let mut keepalives = Vec::new();
    for step in 1..=6u64 {
        let until = start + Duration::from_secs(20 * step);
        keepalives.extend(
            run(&mut path, start, now, until)
                .into_iter()
                .filter(|(_, a)| matches!(a, PathAction::Keepalive { .. }))
                .map(|(t, _)| t.as_secs()),
        );
        now = until;
        path.handle_direct_rx(now, direct);
    }
    assert_eq!(keepalives, vec![25, 50, 75, 100]);
    assert!(keepalives.windows(2).all(|w| w[1] - w[0] <= 25));

    // The peer's NAT reboots: silence. After 40 s the path is probed, 3 s later relayed and
    // the endpoint re-resolved; a new endpoint answers and the path is direct again.
    let silent = run(&mut path, start, now, now + Duration::from_secs(44));
    let kinds: Vec<PathAction> = silent
        .iter()
        .map(|(_, a)| *a)
        .filter(|a| !matches!(a, PathAction::Keepalive { .. }))
        .collect();
    assert_eq!(
        kinds[..2],
        [PathAction::RequestPunch, PathAction::Probe { addr: direct }]
    );
    assert!(kinds.contains(&PathAction::UseRelay) && kinds.contains(&PathAction::Resolve));
    let fallback = silent
        .iter()
        .find(|(_, a)| *a == PathAction::UseRelay)
        .map(|(t, _)| *t - (now - start));
    assert_eq!(fallback, Some(Duration::from_secs(43)));

    let moved = addr("203.0.113.2:61000");
    let later = now + Duration::from_secs(45);
    path.handle_resolved(later, moved);
    assert!(
        std::iter::from_fn(|| path.poll_action()).any(|a| a == PathAction::Probe { addr: moved })
    );
    path.handle_direct_rx(later, moved);
    assert_eq!(
        path.poll_action(),
        Some(PathAction::UseDirect { addr: moved })
    );
}

#[test]
fn own_address_change_re_punches_at_once() {
    let start = epoch();
    let mut path = dial(NatConfig::default(), start);
    let direct = addr("203.0.113.2:4000");
    let dial_actions: Vec<PathAction> = std::iter::from_fn(|| path.poll_action()).collect();
    assert_eq!(
        dial_actions,
        vec![PathAction::RequestPunch, PathAction::Probe { addr: direct }]
    );
    path.handle_direct_rx(start, direct);
    assert_eq!(
        path.poll_action(),
        Some(PathAction::UseDirect { addr: direct })
    );
    path.handle_local_endpoint_changed(start + Duration::from_secs(5));
    let actions: Vec<PathAction> = std::iter::from_fn(|| path.poll_action()).collect();
    assert_eq!(
        actions,
        vec![PathAction::RequestPunch, PathAction::Probe { addr: direct }]
    );
    // An answer on the same path settles it without a route change.
    path.handle_direct_rx(start + Duration::from_secs(5), direct);
    assert_eq!(path.poll_action(), None);
    assert_eq!(path.route(), Route::Direct(direct));
}

#[test]
fn without_a_beacon_the_dial_fails_at_29s_and_unresolvable_fails_at_once() {
    let start = epoch();
    let config = NatConfig {
        beacon_available: false,
        ..NatConfig::default()
    };
    let mut path = dial(config, start);
    let actions = run(&mut path, start, start, start + Duration::from_secs(60));
    assert!(
        actions
            .iter()
            .all(|(_, a)| *a != PathAction::RequestPunch && *a != PathAction::UseRelay)
    );
    assert_eq!(
        actions.last(),
        Some(&(
            Duration::from_secs(29),
            PathAction::Failed(DialFailure::Timeout)
        ))
    );

    let mut refused = PeerPath::new(3, NatConfig::default());
    refused.start(start);
    assert_eq!(refused.poll_action(), Some(PathAction::Resolve));
    refused.handle_resolve_failed(start);
    assert_eq!(
        refused.poll_action(),
        Some(PathAction::Failed(DialFailure::Unresolvable))
    );
}

#[test]
fn relayed_traffic_from_the_peer_is_answered_by_relay() {
    let start = epoch();
    let mut path = PeerPath::new(9, NatConfig::default());
    path.handle_relayed_rx(start);
    assert_eq!(path.poll_action(), Some(PathAction::UseRelay));
    assert_eq!(path.route(), Route::Relay);
}

#[test]
fn registration_uses_the_beacon_observed_endpoint() {
    let local = addr("0.0.0.0:0");
    let observed = addr("198.51.100.1:62000");
    assert_eq!(registration_endpoint(None, Some(observed), local), observed);
    assert_eq!(
        registration_endpoint(None, Some(addr("127.0.0.1:5000")), local),
        local
    );
    let fixed = addr("198.51.100.9:4000");
    assert_eq!(
        registration_endpoint(Some(fixed), Some(observed), local),
        fixed
    );
    assert!(needs_reregistration(
        Some(addr("198.51.100.1:61000")),
        observed
    ));
    assert!(!needs_reregistration(Some(observed), observed));
    assert!(!needs_reregistration(None, addr("0.0.0.0:1")));
}

#[test]
fn an_answer_after_revalidation_restarts_the_keepalive_from_now() {
    // Found by the proptest below: revalidation left the old keepalive deadline in place, so
    // after a long silence the path came back Direct with a timer far in the past.
    let start = epoch();
    let direct = addr("203.0.113.5:4001");
    let mut path = PeerPath::new(1, NatConfig::default());
    path.handle_direct_rx(start, direct);
    let mut now = start;
    for _ in 0..2 {
        now += Duration::from_secs(360);
        path.handle_timeout(now);
        path.handle_direct_rx(now, direct);
        while path.poll_action().is_some() {}
        let at = path
            .poll_timeout()
            .expect("a direct path keeps a keepalive timer");
        assert!(
            at > now,
            "timer {:?} is before now {:?}",
            at - start,
            now - start
        );
    }
}

#[derive(Debug, Clone)]
enum Input {
    Start,
    Resolved(u8),
    ResolveFailed,
    Punch(u8),
    DirectRx(u8),
    RelayedRx,
    LocalChanged,
    Advance(u16),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        Just(Input::Start),
        any::<u8>().prop_map(Input::Resolved),
        Just(Input::ResolveFailed),
        any::<u8>().prop_map(Input::Punch),
        any::<u8>().prop_map(Input::DirectRx),
        Just(Input::RelayedRx),
        Just(Input::LocalChanged),
        any::<u16>().prop_map(Input::Advance),
    ]
}

proptest! {
    #[test]
    fn random_inputs_never_panic_and_timers_never_lie_in_the_past(
        inputs in proptest::collection::vec(input(), 0..60),
        fast in any::<bool>(),
        beacon in any::<bool>(),
    ) {
        let start = epoch();
        let timing = if fast { DialTiming::Fast } else { DialTiming::V05 };
        let config = NatConfig { timing, beacon_available: beacon, ..NatConfig::default() };
        let mut path = PeerPath::new(1, config);
        let mut now = start;
        let endpoint = |n: u8| SocketAddr::from(([203, 0, 113, n % 8], 4000 + u16::from(n % 4)));
        for input in inputs {
            match input {
                Input::Start => path.start(now),
                Input::Resolved(n) => path.handle_resolved(now, endpoint(n)),
                Input::ResolveFailed => path.handle_resolve_failed(now),
                Input::Punch(n) => path.handle_punch_command(now, endpoint(n)),
                Input::DirectRx(n) => path.handle_direct_rx(now, endpoint(n)),
                Input::RelayedRx => path.handle_relayed_rx(now),
                Input::LocalChanged => path.handle_local_endpoint_changed(now),
                Input::Advance(ms) => {
                    now += Duration::from_millis(u64::from(ms) * 10);
                    path.handle_timeout(now);
                }
            }
            let mut drained = 0;
            while let Some(action) = path.poll_action() {
                drained += 1;
                prop_assert!(drained < 1000);
                if !beacon {
                    let beacon_needed =
                        action == PathAction::UseRelay || action == PathAction::RequestPunch;
                    prop_assert!(!beacon_needed);
                }
            }
            prop_assert!(path.candidates().len() <= pilot_proto::nat::MAX_CANDIDATES);
            if let Some(at) = path.poll_timeout() {
                // A due timer is handled at the next advance; it is never unboundedly far back.
                prop_assert!(at + Duration::from_secs(700) >= now);
            }
        }
    }
}
