//! Agent behaviour beyond routes, through `pilot-sim`: a private node refuses an untrusted
//! peer's stream and the dialler learns why; a run is reproducible from its seed.

use std::time::Duration;

use pilot_proto::agent::AgentEvent;
use pilot_proto::node::NodeEvent;
use pilot_proto::transport::CloseReason;
use pilot_proto::trust::TrustEvent;
use pilot_proto::wire::addr::{Addr, AddrPort};
use pilot_sim::{Scenario, Sim};
use pilot_tests::agent_host::AgentHost;
use pilot_tests::matrix::{
    A, B, Expected, NatKind, address, agent_config, build_cell, build_cell_with, run_sim,
};

fn host(sim: &Sim, id: pilot_sim::HostId) -> &AgentHost {
    sim.machine::<AgentHost>(id).expect("agent host is running")
}

#[test]
fn private_node_refuses_untrusted_stream_with_a_reason() {
    Scenario::new("private_node_refuses_untrusted_stream_with_a_reason").run(
        |seed| {
            let mut private = agent_config();
            private.public = false;
            let configs = (private, agent_config());
            build_cell_with(
                seed,
                NatKind::FullCone,
                NatKind::PortRestricted,
                0.0,
                configs,
            )
            .sim
        },
        |sim| {
            let outcome = run_sim(sim, Expected::Direct);
            assert!(outcome.reached(Expected::Direct), "{outcome}");
            let a = host(sim, A).address.expect("registered");
            sim.act::<AgentHost, _>(A, |h, _| h.agent.listen(1000).expect("listen"));
            sim.act::<AgentHost, _>(B, |h, now| h.connect(now, AddrPort::new(a, 1000)));
            sim.run_for(Duration::from_secs(5)).expect("run");

            assert_refused(sim, a);
        },
    );
}

/// The dialler (b) learned why, its stream was reset, and the private node (a) kept the stream
/// from its application.
fn assert_refused(sim: &Sim, a: Addr) {
    let refused = host(sim, B).log.iter().find_map(|(_, event)| match event {
        AgentEvent::Refused { peer, reason } if *peer == a => Some(reason.clone()),
        _ => None,
    });
    let reason = refused.expect("the dialler was told it was refused");
    assert!(
        reason.contains("private"),
        "reason names the cause: {reason}"
    );
    // The transport completes its handshake before the application layer decides, so
    // the dialler sees the stream open and then reset.
    let reset = host(sim, B).log.iter().any(|(_, event)| {
        matches!(
            event,
            AgentEvent::Node(NodeEvent::Closed {
                reason: CloseReason::Reset,
                ..
            })
        )
    });
    assert!(reset, "the refused stream was reset");
    let seen = host(sim, A)
        .log
        .iter()
        .any(|(_, event)| matches!(event, AgentEvent::RefusedInbound { port: 1000, .. }));
    assert!(seen, "the private node reported the refusal");
    let incoming = host(sim, A).log.iter().any(|(_, event)| {
        matches!(
            event,
            AgentEvent::Node(NodeEvent::Incoming { port: 1000, .. })
        )
    });
    assert!(!incoming, "the application never saw the untrusted stream");
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut cell = build_cell(seed, NatKind::Restricted, NatKind::SymmetricRandom, 0.03);
        let outcome = run_sim(&mut cell.sim, Expected::Direct);
        assert!(outcome.reached(Expected::Direct), "{outcome}");
        cell.sim.run_for(Duration::from_secs(30)).expect("run");
        (cell.sim.trace().hash(), cell.sim.stats().delivered)
    };
    let seed = pilot_sim::seed_from_env(0x5eed);
    assert_eq!(run(seed), run(seed), "seed {seed:#x} must reproduce");
}

#[test]
fn registers_the_endpoint_the_beacon_observed() {
    Scenario::new("registers_the_endpoint_the_beacon_observed").run(
        |seed| build_cell(seed, NatKind::SymmetricRandom, NatKind::Public, 0.0).sim,
        |sim| {
            let registered = |sim: &Sim| address(sim, A).is_some();
            assert!(
                sim.run_until_true(sim.now() + Duration::from_secs(10), registered)
                    .expect("run")
            );
            let info = host(sim, A).agent.info();
            let local = sim.host_addr(A).expect("host address");
            assert!(info.observed_endpoint.is_some(), "the beacon answered");
            assert_eq!(info.registered_endpoint, info.observed_endpoint);
            assert_ne!(
                info.registered_endpoint,
                Some(local),
                "not the private bind address"
            );
        },
    );
}

#[test]
fn registry_stream_loss_is_recovered() {
    Scenario::new("registry_stream_loss_is_recovered").run(
        |seed| build_cell(seed, NatKind::PortRestricted, NatKind::FullCone, 0.0).sim,
        |sim| {
            let registered = |sim: &Sim| address(sim, A).is_some();
            assert!(
                sim.run_until_true(sim.now() + Duration::from_secs(10), registered)
                    .expect("run")
            );
            let connects = |sim: &Sim| {
                let log = &host(sim, A).log;
                log.iter()
                    .filter(|(_, e)| matches!(e, AgentEvent::ConnectRegistry))
                    .count()
            };
            let before = connects(sim);
            sim.partition(A, pilot_tests::matrix::RENDEZVOUS);
            sim.run_for(Duration::from_secs(40)).expect("run");
            sim.heal_all();
            sim.run_for(Duration::from_secs(120)).expect("run");
            assert!(
                connects(sim) > before,
                "the agent asked for a new registry stream"
            );
            // Still registered and reachable: b can dial a through the registry.
            let outcome_a = host(sim, A).address.expect("registered");
            sim.act::<AgentHost, _>(B, |h, now| h.connect(now, AddrPort::new(outcome_a, 7)));
            let connected = |sim: &Sim| host(sim, B).any_dial_connected();
            assert!(
                sim.run_until_true(sim.now() + Duration::from_secs(30), connected)
                    .expect("run")
            );
        },
    );
}

/// A full-cone and a port-restricted node that reach each other directly.
fn direct_cell(seed: u64) -> Sim {
    build_cell(seed, NatKind::FullCone, NatKind::PortRestricted, 0.0).sim
}

/// Runs until the direct tunnel is up; returns A's and B's addresses.
fn tunnel_up(sim: &mut Sim) -> (Addr, Addr) {
    let outcome = run_sim(sim, Expected::Direct);
    assert!(outcome.reached(Expected::Direct), "{outcome}");
    (address(sim, A).expect("a"), address(sim, B).expect("b"))
}

#[test]
fn trust_handshake_goes_over_the_tunnel_in_seconds() {
    Scenario::new("trust_handshake_goes_over_the_tunnel_in_seconds").run(direct_cell, |sim| {
        let (a, b) = tunnel_up(sim);
        sim.act::<AgentHost, _>(A, |h, now| h.agent.handshake(now, b, "hello").expect("ask"));
        let pending = move |sim: &Sim| {
            host(sim, B).log.iter().any(|(_, e)| {
                    matches!(e, AgentEvent::Trust(TrustEvent::Pending { peer }) if *peer == a.node)
                })
        };
        let asked = sim.now();
        assert!(
            sim.run_until_true(asked + Duration::from_secs(3), pending)
                .expect("run")
        );
        sim.act::<AgentHost, _>(B, |h, now| h.agent.approve(now, a).expect("approve"));
        let trusted = move |sim: &Sim| host(sim, A).agent.trust().is_trusted(b.node);
        assert!(
            sim.run_until_true(sim.now() + Duration::from_secs(3), trusted)
                .expect("run")
        );
        assert!(host(sim, B).agent.trust().is_trusted(a.node));
    });
}

#[test]
fn a_revoke_reaches_the_peer_before_the_tunnel_drops() {
    Scenario::new("a_revoke_reaches_the_peer_before_the_tunnel_drops").run(direct_cell, |sim| {
        let (a, b) = tunnel_up(sim);
        sim.act::<AgentHost, _>(A, |h, now| h.agent.handshake(now, b, "hello").expect("ask"));
        sim.act::<AgentHost, _>(B, |h, now| h.agent.handshake(now, a, "hi").expect("ask"));
        let mutual = move |sim: &Sim| {
            host(sim, A).agent.trust().is_trusted(b.node)
                && host(sim, B).agent.trust().is_trusted(a.node)
        };
        let limit = sim.now() + Duration::from_secs(5);
        assert!(
            sim.run_until_true(limit, mutual).expect("run"),
            "mutual trust"
        );

        sim.act::<AgentHost, _>(A, |h, now| h.agent.revoke(now, b).expect("revoke"));
        let revoked = move |sim: &Sim| {
            host(sim, B).log.iter().any(|(_, e)| {
                matches!(e, AgentEvent::Trust(TrustEvent::RevokedByPeer { peer })
                        if *peer == a.node)
            })
        };
        let limit = sim.now() + Duration::from_secs(5);
        assert!(
            sim.run_until_true(limit, revoked).expect("run"),
            "B heard the revoke"
        );
        assert!(!host(sim, B).agent.trust().is_trusted(a.node));

        let tunnel_gone = move |sim: &Sim| {
            let keyed = |h: &AgentHost, p| h.agent.node().is_some_and(|n| n.is_peer_keyed(p));
            !keyed(host(sim, A), b)
        };
        let limit = sim.now() + Duration::from_secs(60);
        assert!(
            sim.run_until_true(limit, tunnel_gone).expect("run"),
            "A dropped the tunnel"
        );
    });
}
