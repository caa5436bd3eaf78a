//! Agent behaviour beyond routes, through `pilot-sim`: a private node refuses an untrusted
//! peer's stream and the dialler learns why; a run is reproducible from its seed.

use std::time::Duration;

use pilot_proto::agent::AgentEvent;
use pilot_proto::node::NodeEvent;
use pilot_proto::transport::CloseReason;
use pilot_proto::wire::addr::AddrPort;
use pilot_sim::{Scenario, Sim};
use pilot_tests::agent_host::AgentHost;
use pilot_tests::matrix::{
    A, B, Expected, NatKind, agent_config, build_cell, build_cell_with, run_sim,
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
fn assert_refused(sim: &Sim, a: pilot_proto::wire::addr::Addr) {
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
