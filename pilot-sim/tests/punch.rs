//! Hole punching between two peers through every pair of NAT types, with a rendezvous beacon:
//! the outcome matrix RFC 4787 behaviour implies for a puncher that learns peer-reflexive
//! addresses but does not predict ports.

mod common;

use std::time::Duration;

use common::{Beacon, Puncher};
use pilot_sim::{HostId, NatConfig, NetId, Scenario, Sim, SimBuilder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Public,
    FullCone,
    Restricted,
    PortRestricted,
    Symmetric,
    SymmetricSequential,
}

const KINDS: [Kind; 6] = [
    Kind::Public,
    Kind::FullCone,
    Kind::Restricted,
    Kind::PortRestricted,
    Kind::Symmetric,
    Kind::SymmetricSequential,
];

impl Kind {
    fn config(self) -> Option<NatConfig> {
        match self {
            Self::Public => None,
            Self::FullCone => Some(NatConfig::full_cone()),
            Self::Restricted => Some(NatConfig::restricted_cone()),
            Self::PortRestricted => Some(NatConfig::port_restricted_cone()),
            Self::Symmetric => Some(NatConfig::symmetric()),
            Self::SymmetricSequential => Some(NatConfig::symmetric_sequential()),
        }
    }

    fn is_symmetric(self) -> bool {
        matches!(self, Self::Symmetric | Self::SymmetricSequential)
    }
}

/// Direct connectivity fails only when one side is symmetric and the other filters by port
/// (port-restricted or symmetric): no first packet can get through either filter.
fn expected_direct(a: Kind, b: Kind) -> bool {
    let port_filtering = |kind: Kind| kind == Kind::PortRestricted || kind.is_symmetric();
    !((a.is_symmetric() && port_filtering(b)) || (b.is_symmetric() && port_filtering(a)))
}

const BEACON: &str = "203.0.113.250:4000";

fn add_peer(builder: &mut SimBuilder, name: &str, net: NetId) -> HostId {
    builder.host(name, net, Puncher::boxed(BEACON.parse().unwrap()))
}

fn build_pair(seed: u64, a: Kind, b: Kind) -> Sim {
    let mut builder = SimBuilder::new(seed);
    let beacon = builder.host("beacon", NetId::INTERNET, |_: &_| {
        Box::new(Beacon::default())
    });
    builder
        .host_mut(beacon)
        .addr("203.0.113.250".parse().unwrap());
    for (name, kind) in [("a", a), ("b", b)] {
        let net = match kind.config() {
            Some(config) => builder
                .nat(&format!("nat-{name}"), NetId::INTERNET, config)
                .inside(),
            None => NetId::INTERNET,
        };
        add_peer(&mut builder, name, net);
    }
    builder.build().unwrap()
}

fn both_connected(sim: &Sim) -> bool {
    [HostId(1), HostId(2)]
        .iter()
        .all(|host| sim.machine::<Puncher>(*host).unwrap().connected())
}

#[test]
fn punch_matrix_matches_rfc4787_expectations() {
    let mut grid = String::new();
    for a in KINDS {
        for b in KINDS {
            let name = format!("punch_{a:?}_{b:?}");
            Scenario::new(&name).run(
                |seed| build_pair(seed, a, b),
                |sim| {
                    sim.run_for(Duration::from_secs(5)).unwrap();
                    let direct = both_connected(sim);
                    grid.push_str(&format!("{a:?} x {b:?}: {direct}\n"));
                    assert_eq!(direct, expected_direct(a, b), "{a:?} x {b:?}");
                },
            );
        }
    }
    assert_eq!(grid.lines().count(), 36);
}

#[test]
fn chained_nats_behave_as_their_strictest_layer() {
    for (carrier, expect) in [
        (NatConfig::port_restricted_cone(), true),
        (NatConfig::symmetric(), false),
    ] {
        let name = format!("chained_nat_{:?}", carrier.mapping);
        Scenario::new(&name).run(
            |seed| {
                let mut builder = SimBuilder::new(seed);
                let beacon = builder.host("beacon", NetId::INTERNET, |_: &_| {
                    Box::new(Beacon::default())
                });
                builder
                    .host_mut(beacon)
                    .addr("203.0.113.250".parse().unwrap());
                let cgn = builder.nat("cgn", NetId::INTERNET, carrier);
                let home = builder.nat("home", cgn.inside(), NatConfig::port_restricted_cone());
                add_peer(&mut builder, "a", home.inside());
                let other =
                    builder.nat("other", NetId::INTERNET, NatConfig::port_restricted_cone());
                add_peer(&mut builder, "b", other.inside());
                builder.build().unwrap()
            },
            |sim| {
                sim.run_for(Duration::from_secs(5)).unwrap();
                assert_eq!(both_connected(sim), expect);
            },
        );
    }
}

#[test]
fn peers_behind_one_nat_need_hairpinning() {
    for hairpinning in [true, false] {
        Scenario::new(&format!("hairpin_{hairpinning}")).run(
            |seed| {
                let mut builder = SimBuilder::new(seed);
                let beacon = builder.host("beacon", NetId::INTERNET, |_: &_| {
                    Box::new(Beacon::default())
                });
                builder
                    .host_mut(beacon)
                    .addr("203.0.113.250".parse().unwrap());
                let config = NatConfig::port_restricted_cone().hairpinning(hairpinning);
                let nat = builder.nat("nat", NetId::INTERNET, config);
                add_peer(&mut builder, "a", nat.inside());
                add_peer(&mut builder, "b", nat.inside());
                builder.build().unwrap()
            },
            |sim| {
                sim.run_for(Duration::from_secs(5)).unwrap();
                assert_eq!(both_connected(sim), hairpinning);
                let hairpin_drops = sim
                    .stats()
                    .dropped_for(pilot_sim::DropReason::Nat(pilot_sim::NatDrop::NoHairpin));
                assert_eq!(hairpin_drops > 0, !hairpinning);
                if hairpinning {
                    // Hairpinned packets carry the sender's external address as source.
                    let a = sim.machine::<Puncher>(HostId(1)).unwrap();
                    assert_eq!(a.peer.unwrap().ip().to_string(), "203.0.113.10");
                }
            },
        );
    }
}

#[test]
fn changing_a_nat_type_at_run_time_changes_the_outcome() {
    Scenario::new("changing_a_nat_type_at_run_time_changes_the_outcome").run(
        |seed| build_pair(seed, Kind::PortRestricted, Kind::Symmetric),
        |sim| {
            // Before the peers learn each other, make the symmetric side a full cone.
            sim.set_nat_config(pilot_sim::NatId(1), NatConfig::full_cone());
            sim.run_for(Duration::from_secs(5)).unwrap();
            assert!(both_connected(sim));
        },
    );
}
