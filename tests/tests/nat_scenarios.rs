//! NAT traversal scenarios through `pilot-sim`, each a seeded [`Scenario`] (a failure prints
//! its seed and the rerun command): keepalives hold a short NAT mapping open, a NAT reboot and
//! a public address change are recovered, lost first punches still end direct, relay is chosen
//! within 5 s when direct is impossible, and a relayed pair moves to direct once its NAT allows.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use pilot_proto::agent::{AgentEvent, PeerRoute};
use pilot_proto::node::NodeEvent;
use pilot_proto::wire::addr::Addr;
use pilot_sim::{DropReason, FaultRule, NatConfig, NatDrop, NatId, Scenario, Sim};
use pilot_tests::agent_host::AgentHost;
use pilot_tests::matrix::{A, B, Cell, Expected, NatKind, SourceMap, address, build_cell, run_sim};

const NAT_A: NatId = NatId(0);
const NAT_B: NatId = NatId(1);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn host(sim: &Sim, id: pilot_sim::HostId) -> &AgentHost {
    sim.machine::<AgentHost>(id).expect("agent host is running")
}

/// Connects a to b and checks the expected route was reached.
fn connect(sim: &mut Sim, want: Expected) -> (Addr, Addr) {
    let outcome = run_sim(sim, want);
    assert!(
        outcome.reached(want),
        "expected {}, got {outcome}",
        want.label()
    );
    (
        address(sim, A).expect("registered"),
        address(sim, B).expect("registered"),
    )
}

/// Sends a few bytes on a's established echo stream and checks they come back within 5 s.
fn assert_echo(sim: &mut Sim) {
    let stream = host(sim, A)
        .dialled
        .iter()
        .copied()
        .find(|s| host(sim, A).connected.contains_key(s))
        .expect("an established stream");
    let sent = sim.now();
    sim.act::<AgentHost, _>(A, |h, now| {
        h.agent.send(now, stream, b"ping").expect("send")
    });
    let readable = move |sim: &Sim| {
        host(sim, A).log.iter().any(|(at, event)| {
            let readable = matches!(
                event, AgentEvent::Node(NodeEvent::Readable { stream: s }) if *s == stream
            );
            *at >= sent && readable
        })
    };
    let ok = sim
        .run_until_true(sent + secs(5), readable)
        .unwrap_or(false);
    assert!(ok, "the echo stream answered within 5 s");
    let mut buf = [0u8; 16];
    let n = sim
        .act::<AgentHost, _>(A, |h, _| h.agent.recv(stream, &mut buf).unwrap_or(0))
        .unwrap_or(0);
    assert_eq!(&buf[..n], b"ping");
}

/// The last route change a reported for `peer` at or after `since`.
fn route_changes_since(sim: &Sim, peer: Addr, since: Instant) -> Vec<(Duration, PeerRoute)> {
    host(sim, A)
        .log
        .iter()
        .filter_map(|(at, event)| match event {
            AgentEvent::RouteChanged { peer: p, route } if *p == peer && *at >= since => {
                Some((at.saturating_duration_since(since), *route))
            }
            _ => None,
        })
        .collect()
}

fn cell(seed: u64, a: NatKind, b: NatKind, sources: &Rc<RefCell<Option<SourceMap>>>) -> Sim {
    let Cell {
        sim, sources: map, ..
    } = build_cell(seed, a, b, 0.0);
    *sources.borrow_mut() = Some(map);
    sim
}

#[test]
fn keepalives_hold_a_short_mapping_open() {
    let sources = Rc::new(RefCell::new(None));
    Scenario::new("keepalives_hold_a_short_mapping_open").run(
        |seed| {
            let mut sim = cell(
                seed,
                NatKind::PortRestricted,
                NatKind::PortRestricted,
                &sources,
            );
            let short = NatConfig::port_restricted_cone().timeout(secs(30));
            sim.set_nat_config(NAT_A, short);
            sim.set_nat_config(NAT_B, short);
            sim
        },
        |sim| {
            let (_, b) = connect(sim, Expected::Direct);
            let idle_from = sim.now();
            let nat_drops = |sim: &Sim| {
                [NatDrop::Filtered, NatDrop::NoMapping]
                    .into_iter()
                    .map(|drop| sim.stats().dropped_for(DropReason::Nat(drop)))
                    .sum::<u64>()
            };
            let before = nat_drops(sim);
            sim.run_for(secs(300)).expect("run");
            assert_eq!(
                nat_drops(sim),
                before,
                "no packet met an expired mapping or filter while idle"
            );
            assert!(
                route_changes_since(sim, b, idle_from).is_empty(),
                "the direct path never changed while idle"
            );
            assert!(matches!(host(sim, A).route(b), PeerRoute::Direct(_)));
            assert_echo(sim);
        },
    );
}

#[test]
fn nat_reboot_is_recovered() {
    let sources = Rc::new(RefCell::new(None));
    Scenario::new("nat_reboot_is_recovered").run(
        |seed| cell(seed, NatKind::PortRestricted, NatKind::Restricted, &sources),
        |sim| {
            let (_, b) = connect(sim, Expected::Direct);
            sim.reboot_nat(NAT_B);
            sim.run_for(secs(90)).expect("run");
            assert!(matches!(host(sim, A).route(b), PeerRoute::Direct(_)));
            assert_echo(sim);
        },
    );
}

#[test]
fn public_address_change_is_recovered() {
    let sources = Rc::new(RefCell::new(None));
    let map = sources.clone();
    Scenario::new("public_address_change_is_recovered").run(
        |seed| cell(seed, NatKind::FullCone, NatKind::PortRestricted, &sources),
        move |sim| {
            let (_, b) = connect(sim, Expected::Direct);
            let old = host(sim, B).agent.info().registered_endpoint;
            sim.set_nat_public_ip(NAT_B, [203, 0, 113, 77].into());
            if let Some(map) = map.borrow().as_ref() {
                for value in map.borrow_mut().values_mut() {
                    if *value != std::net::Ipv4Addr::new(203, 0, 113, 10) {
                        *value = [203, 0, 113, 77].into();
                    }
                }
            }
            let moved = sim.now();
            let reregistered = |sim: &Sim| {
                let info = host(sim, B).agent.info();
                info.registered_endpoint != old
                    && info
                        .registered_endpoint
                        .is_some_and(|e| e.ip() == std::net::Ipv4Addr::new(203, 0, 113, 77))
            };
            let ok = sim
                .run_until_true(moved + secs(60), reregistered)
                .expect("run");
            assert!(ok, "b registered its new public endpoint within 60 s");
            sim.run_for(secs(30)).expect("run");
            assert!(matches!(host(sim, A).route(b), PeerRoute::Direct(_)));
            assert_echo(sim);
        },
    );
}

#[test]
fn lost_first_punches_still_end_direct() {
    let sources = Rc::new(RefCell::new(None));
    Scenario::new("lost_first_punches_still_end_direct").run(
        |seed| {
            let mut sim = cell(
                seed,
                NatKind::PortRestricted,
                NatKind::PortRestricted,
                &sources,
            );
            sim.set_classifier(|bytes| match bytes.get(..4) {
                Some(b"PILP") => Some("punch"),
                Some(b"PILA") => Some("key-exchange"),
                _ => None,
            });
            sim.add_fault(FaultRule::dropping().class("punch").first(6));
            sim.add_fault(FaultRule::dropping().class("key-exchange").first(2));
            sim
        },
        |sim| {
            let (_, b) = connect(sim, Expected::Direct);
            assert!(
                sim.fault(0).is_some_and(|f| f.fired() == 6),
                "six punches were dropped"
            );
            assert!(
                sim.fault(1).is_some_and(|f| f.fired() == 2),
                "two key exchanges dropped"
            );
            assert!(matches!(host(sim, A).route(b), PeerRoute::Direct(_)));
            assert_echo(sim);
        },
    );
}

#[test]
fn relay_is_chosen_within_five_seconds_when_direct_is_impossible() {
    let sources = Rc::new(RefCell::new(None));
    Scenario::new("relay_is_chosen_within_five_seconds_when_direct_is_impossible").run(
        |seed| {
            cell(
                seed,
                NatKind::PortRestricted,
                NatKind::SymmetricRandom,
                &sources,
            )
        },
        |sim| {
            let registered = |sim: &Sim| address(sim, A).is_some() && address(sim, B).is_some();
            let deadline = sim.now() + secs(30);
            assert!(sim.run_until_true(deadline, registered).expect("run"));
            let b = address(sim, B).expect("registered");
            let dialled = sim.now();
            sim.act::<AgentHost, _>(A, |h, now| {
                h.connect(now, pilot_proto::wire::addr::AddrPort::new(b, 7))
            });
            let relayed = |sim: &Sim| host(sim, A).route(b) == PeerRoute::Relay;
            let ok = sim.run_until_true(dialled + secs(5), relayed).expect("run");
            assert!(ok, "relay chosen within 5 simulated seconds of the dial");
            let connected = |sim: &Sim| host(sim, A).any_dial_connected();
            assert!(
                sim.run_until_true(dialled + secs(30), connected)
                    .expect("run")
            );
            assert_echo(sim);
        },
    );
}

#[test]
fn relay_is_upgraded_to_direct_when_the_nat_allows() {
    let sources = Rc::new(RefCell::new(None));
    Scenario::new("relay_is_upgraded_to_direct_when_the_nat_allows").run(
        |seed| {
            cell(
                seed,
                NatKind::PortRestricted,
                NatKind::SymmetricRandom,
                &sources,
            )
        },
        |sim| {
            let (_, b) = connect(sim, Expected::Relay);
            sim.set_nat_config(NAT_B, NatConfig::full_cone());
            let changed = sim.now();
            let direct = |sim: &Sim| matches!(host(sim, A).route(b), PeerRoute::Direct(_));
            let ok = sim.run_until_true(changed + secs(90), direct).expect("run");
            assert!(
                ok,
                "the relayed pair went direct within 90 s of the NAT change"
            );
            assert_echo(sim);
        },
    );
}
