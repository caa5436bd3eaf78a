//! Two-node ping scenarios: the first users of the simulator API.

mod common;

use std::time::Duration;

use common::Pinger;
use pilot_sim::{DropReason, NatConfig, NetId, Scenario, Sim, SimBuilder};

const INTERVAL: Duration = Duration::from_millis(100);

/// A server on the internet and a client on `client_net`; returns (sim, client, server).
fn client_server(seed: u64, nat: Option<NatConfig>) -> (Sim, pilot_sim::HostId, pilot_sim::HostId) {
    let mut builder = SimBuilder::new(seed);
    let server_addr = "203.0.113.200:4000".parse().unwrap();
    let server = builder.host("server", NetId::INTERNET, Pinger::boxed(None, INTERVAL));
    builder
        .host_mut(server)
        .addr("203.0.113.200".parse().unwrap());
    let client_net = match nat {
        Some(config) => builder.nat("nat", NetId::INTERNET, config).inside(),
        None => NetId::INTERNET,
    };
    let client = builder.host(
        "client",
        client_net,
        Pinger::boxed(Some(server_addr), INTERVAL),
    );
    (builder.build().unwrap(), client, server)
}

#[test]
fn public_to_public_ping_round_trips_in_one_rtt() {
    let scenario = Scenario::new("public_to_public_ping_round_trips_in_one_rtt");
    scenario.run(
        |seed| client_server(seed, None).0,
        |sim| {
            sim.run_for(Duration::from_millis(1_050)).unwrap();
            let client = sim.machine::<Pinger>(pilot_sim::HostId(1)).unwrap();
            // Pings at 0, 100, ..., 1000 ms; each pong arrives 40 ms later (4 links of 10 ms).
            assert_eq!(client.sent, 11);
            assert_eq!(client.pongs, 11);
            let first = client.pong_times[0] - sim.epoch();
            assert_eq!(first, Duration::from_millis(40));
        },
    );
}

#[test]
fn ping_crosses_every_nat_type_outbound() {
    let configs = [
        ("full_cone", NatConfig::full_cone()),
        ("restricted", NatConfig::restricted_cone()),
        ("port_restricted", NatConfig::port_restricted_cone()),
        ("symmetric", NatConfig::symmetric()),
        ("symmetric_sequential", NatConfig::symmetric_sequential()),
        (
            "hairpin_cone",
            NatConfig::port_restricted_cone().hairpinning(true),
        ),
    ];
    for (name, config) in configs {
        let scenario = Scenario::new(&format!("ping_crosses_nat_{name}"));
        scenario.run(
            |seed| client_server(seed, Some(config)).0,
            |sim| {
                // Pings at 0, 100, ..., 1900 ms; round trips take 60 ms (six 10 ms links).
                sim.run_for(Duration::from_millis(1_980)).unwrap();
                let client = sim.machine::<Pinger>(pilot_sim::HostId(1)).unwrap();
                assert_eq!(client.pongs, client.sent, "{name}: every ping answered");
                assert_eq!(client.pongs, 20, "{name}");
                let server = sim.machine::<Pinger>(pilot_sim::HostId(0)).unwrap();
                let seen = server.last_from.unwrap();
                assert_eq!(
                    seen.ip().to_string(),
                    "203.0.113.10",
                    "{name}: NAT public address"
                );
                assert_eq!(sim.stats().dropped(), 0);
            },
        );
    }
}

#[test]
fn blocked_udp_firewall_drops_everything() {
    Scenario::new("blocked_udp_firewall_drops_everything").run(
        |seed| client_server(seed, Some(NatConfig::udp_blocked())).0,
        |sim| {
            // Pings at 0, 100, ..., 900 ms, each dropped at the NAT 10 ms later.
            sim.run_for(Duration::from_millis(950)).unwrap();
            let client = sim.machine::<Pinger>(pilot_sim::HostId(1)).unwrap();
            assert_eq!(client.pongs, 0);
            let firewall = DropReason::Nat(pilot_sim::NatDrop::Firewall);
            assert_eq!(sim.stats().dropped_for(firewall), client.sent);
        },
    );
}

#[test]
fn unsolicited_ping_into_a_nat_is_dropped() {
    let mut builder = SimBuilder::new(3);
    let nat = builder.nat("nat", NetId::INTERNET, NatConfig::full_cone());
    let inside = builder.host("inside", nat.inside(), Pinger::boxed(None, INTERVAL));
    // The outside host pings the NAT's public address and the inside host's private address.
    let nat_public = "203.0.113.10:4000".parse().unwrap();
    builder.host(
        "outside",
        NetId::INTERNET,
        Pinger::boxed(Some(nat_public), INTERVAL),
    );
    builder.host(
        "stray",
        NetId::INTERNET,
        Pinger::boxed(Some("10.1.0.10:4000".parse().unwrap()), INTERVAL),
    );
    let mut sim = builder.build().unwrap();
    sim.run_for(Duration::from_millis(950)).unwrap();
    assert_eq!(sim.machine::<Pinger>(inside).unwrap().pings_seen, 0);
    let stats = sim.stats();
    assert_eq!(
        stats.dropped_for(DropReason::Nat(pilot_sim::NatDrop::NoMapping)),
        10
    );
    assert_eq!(stats.dropped_for(DropReason::NoRoute), 10);
}

#[test]
fn same_seed_gives_same_trace_hash() {
    let run = |seed: u64| {
        let mut builder = SimBuilder::new(seed);
        let lossy = pilot_sim::LinkConfig::with_latency(Duration::from_millis(5))
            .jitter(Duration::from_millis(20))
            .loss(0.1)
            .duplicate(0.05);
        builder.default_link(lossy);
        let server = builder.host("server", NetId::INTERNET, Pinger::boxed(None, INTERVAL));
        let _ = server;
        let nat = builder.nat("nat", NetId::INTERNET, NatConfig::symmetric());
        for index in 0..4 {
            let target = "203.0.113.10:4000".parse().unwrap();
            let net = if index % 2 == 0 {
                nat.inside()
            } else {
                NetId::INTERNET
            };
            builder.host(
                &format!("client{index}"),
                net,
                Pinger::boxed(Some(target), INTERVAL),
            );
        }
        let mut sim = builder.build().unwrap();
        sim.run_for(Duration::from_secs(30)).unwrap();
        (sim.trace().hash(), sim.trace().len(), sim.stats().clone())
    };
    let seed = pilot_sim::seed_from_env(0x5eed);
    let (first, second) = (run(seed), run(seed));
    assert_eq!(first, second, "seed {seed:#x} must reproduce exactly");
    assert!(
        first.1 > 1000,
        "the scenario did something: {} records",
        first.1
    );
    assert_ne!(first.0, run(seed + 1).0, "another seed gives another run");
}

#[test]
fn datagrams_reach_the_socket_they_are_addressed_to() {
    let mut builder = SimBuilder::new(5);
    let server = builder.host("server", NetId::INTERNET, Pinger::boxed(None, INTERVAL));
    builder
        .host_mut(server)
        .addr("203.0.113.200".parse().unwrap())
        .udp_ports(&[4000, 5000]);
    let to_second = "203.0.113.200:5000".parse().unwrap();
    let to_unbound = "203.0.113.200:6000".parse().unwrap();
    builder.host(
        "a",
        NetId::INTERNET,
        Pinger::boxed(Some(to_second), INTERVAL),
    );
    builder.host(
        "b",
        NetId::INTERNET,
        Pinger::boxed(Some(to_unbound), INTERVAL),
    );
    let mut sim = builder.build().unwrap();
    sim.run_for(Duration::from_millis(450)).unwrap();

    // The second port receives (replies leave from the primary port); the unbound one drops.
    let a = sim.machine::<Pinger>(pilot_sim::HostId(1)).unwrap();
    assert_eq!((a.sent, a.pongs), (5, 5));
    assert_eq!(a.last_from.unwrap().to_string(), "203.0.113.200:4000");
    assert_eq!(sim.stats().dropped_for(DropReason::NoSocket), 5);
    assert_eq!(
        sim.host_addr(server).unwrap().to_string(),
        "203.0.113.200:4000"
    );
}
