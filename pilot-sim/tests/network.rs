//! Link behaviour, partitions, holds, crashes and address changes, each checked against the
//! configured numbers and the stated times.

mod common;

use std::time::Duration;

use common::Pinger;
use pilot_sim::{
    Direction, DropReason, HostId, Iface, LinkConfig, NatConfig, NetId, Scenario, SeedChoice, Sim,
    SimBuilder, TraceKind,
};

const MS: Duration = Duration::from_millis(1);

/// `a` pings `b` every `interval` (b answers); both public, 10 ms links unless `link` is given.
fn pair(seed: u64, interval: Duration, link: Option<LinkConfig>) -> Sim {
    let mut builder = SimBuilder::new(seed);
    if let Some(link) = link {
        builder.default_link(link);
    }
    let b_addr = "203.0.113.11:4000".parse().unwrap();
    builder.host("a", NetId::INTERNET, Pinger::boxed(Some(b_addr), interval));
    builder.host("b", NetId::INTERNET, Pinger::boxed(None, interval));
    builder.build().unwrap()
}

fn pinger(sim: &Sim, host: usize) -> &Pinger {
    sim.machine::<Pinger>(HostId(host)).unwrap()
}

/// Returns (lower, upper) = mean +- 5 standard deviations of a binomial count.
fn binomial_bounds(trials: u64, p: f64) -> (f64, f64) {
    let mean = trials as f64 * p;
    let spread = 5.0 * (trials as f64 * p * (1.0 - p)).sqrt();
    (mean - spread, mean + spread)
}

#[test]
fn loss_rate_is_within_statistical_bounds() {
    let link = LinkConfig::with_latency(5 * MS).loss(0.2);
    Scenario::new("loss_rate_is_within_statistical_bounds")
        .without_capture()
        .run(
            |seed| pair(seed, MS, Some(link)),
            |sim| {
                sim.run_for(Duration::from_millis(20_000) - MS).unwrap();
                sim.act::<Pinger, _>(HostId(0), |a, _| a.next_ping = None)
                    .unwrap();
                sim.run_for(Duration::from_millis(50)).unwrap();
                let sent = pinger(sim, 0).sent;
                let seen = pinger(sim, 1).pings_seen as f64;
                // A ping crosses two lossy links: it survives with probability 0.8^2.
                let (low, high) = binomial_bounds(sent, 0.64);
                assert_eq!(sent, 20_000);
                assert!(
                    (low..=high).contains(&seen),
                    "{seen} pings seen, bounds {low}..{high}"
                );
                assert_eq!(
                    sim.stats().delivered + sim.stats().dropped(),
                    sim.stats().sent
                );
            },
        );
}

#[test]
fn duplication_rate_is_within_statistical_bounds() {
    // Only b's down-link duplicates, so each ping is seen twice with probability 0.1.
    Scenario::new("duplication_rate_is_within_statistical_bounds")
        .without_capture()
        .run(
            |seed| {
                let mut sim = pair(seed, MS, None);
                let dup = LinkConfig::with_latency(10 * MS).duplicate(0.1);
                sim.set_link(Iface::Host(HostId(1)), Direction::Down, dup);
                sim
            },
            |sim| {
                sim.run_for(Duration::from_millis(20_000) - MS).unwrap();
                sim.act::<Pinger, _>(HostId(0), |a, _| a.next_ping = None)
                    .unwrap();
                sim.run_for(Duration::from_millis(50)).unwrap();
                let sent = pinger(sim, 0).sent;
                let extra = pinger(sim, 1).pings_seen - sent;
                let (low, high) = binomial_bounds(sent, 0.1);
                assert!((low..=high).contains(&(extra as f64)), "{extra} duplicates");
            },
        );
}

#[test]
fn partition_and_heal_take_effect_at_the_stated_times() {
    Scenario::new("partition_and_heal_take_effect_at_the_stated_times").run(
        |seed| pair(seed, 10 * MS, None),
        |sim| {
            let epoch = sim.epoch();
            sim.schedule(epoch + 1000 * MS, |sim| sim.partition(HostId(0), HostId(1)));
            sim.schedule(epoch + 2000 * MS, |sim| sim.heal(HostId(0), HostId(1)));
            sim.run_for(3000 * MS).unwrap();

            // Pings take 20 ms; deliveries due inside [1 s, 2 s) are dropped, others arrive.
            let seen: Vec<Duration> = pinger(sim, 1)
                .ping_times
                .iter()
                .map(|t| *t - epoch)
                .collect();
            let before = seen.iter().filter(|t| **t < 1000 * MS).max().copied();
            let after = seen.iter().filter(|t| **t >= 1000 * MS).min().copied();
            assert_eq!(before, Some(990 * MS));
            assert_eq!(after, Some(2000 * MS));
            // 100 pings due inside, plus the pongs of the pings seen at 980 and 990 ms.
            assert_eq!(sim.stats().dropped_for(DropReason::Partitioned), 102);
        },
    );
}

#[test]
fn one_way_partition_cuts_one_direction_only() {
    Scenario::new("one_way_partition_cuts_one_direction_only").run(
        |seed| pair(seed, 10 * MS, None),
        |sim| {
            sim.partition_oneway(HostId(1), HostId(0));
            sim.run_for(1000 * MS).unwrap();
            // a's pings reach b, b's pongs never reach a.
            assert!(pinger(sim, 1).pings_seen >= 98);
            assert_eq!(pinger(sim, 0).pongs, 0);
        },
    );
}

#[test]
fn held_packets_arrive_together_on_release() {
    Scenario::new("held_packets_arrive_together_on_release").run(
        |seed| pair(seed, 10 * MS, None),
        |sim| {
            let epoch = sim.epoch();
            sim.schedule(epoch + 1000 * MS, |sim| sim.hold(HostId(0), HostId(1)));
            sim.schedule(epoch + 1500 * MS, |sim| sim.release(HostId(0), HostId(1)));
            sim.run_for(2000 * MS).unwrap();
            let b = pinger(sim, 1);
            let at_release = b
                .ping_times
                .iter()
                .filter(|t| **t - epoch == 1500 * MS)
                .count();
            let inside = b.ping_times.iter().filter(|t| {
                let at = **t - epoch;
                at > 1000 * MS && at < 1500 * MS
            });
            assert_eq!(inside.count(), 0);
            // Deliveries due at 1000..1490 ms (50 pings) plus the one due at 1500 ms.
            assert_eq!(at_release, 51);
            assert!(
                b.ping_seqs.windows(2).all(|pair| pair[0] < pair[1]),
                "held order is kept"
            );
            assert_eq!(sim.stats().dropped(), 0);
        },
    );
}

#[test]
fn crash_and_restart_replace_the_machine() {
    Scenario::new("crash_and_restart_replace_the_machine").run(
        |seed| pair(seed, 10 * MS, None),
        |sim| {
            sim.run_for(1000 * MS).unwrap();
            let first_seed = pinger(sim, 1).seed;
            sim.crash(HostId(1));
            assert!(!sim.is_up(HostId(1)));
            sim.run_for(1000 * MS).unwrap();
            assert_eq!(sim.stats().dropped_for(DropReason::HostDown), 100);

            sim.restart(HostId(1), SeedChoice::Same);
            let restarted = pinger(sim, 1);
            assert_eq!(
                (restarted.boot, restarted.pings_seen, restarted.seed),
                (1, 0, first_seed)
            );
            sim.run_for(500 * MS).unwrap();
            assert!(pinger(sim, 1).pings_seen >= 49);

            sim.restart(HostId(1), SeedChoice::Fresh);
            assert_ne!(pinger(sim, 1).seed, first_seed);
            assert_eq!(pinger(sim, 1).boot, 2);
        },
    );
}

#[test]
fn oversize_packets_are_dropped_by_mtu() {
    Scenario::new("oversize_packets_are_dropped_by_mtu").run(
        |seed| {
            let mut sim = pair(seed, 10 * MS, None);
            // 28 header bytes + "PING n" (6+ bytes) exceeds 33.
            sim.set_link(
                Iface::Host(HostId(1)),
                Direction::Down,
                LinkConfig::IDEAL.mtu(33),
            );
            sim
        },
        |sim| {
            // Pings sent at 0..90 ms reach b's down-link 10 ms later.
            sim.run_for(105 * MS).unwrap();
            assert_eq!(pinger(sim, 1).pings_seen, 0);
            assert_eq!(sim.stats().dropped_for(DropReason::TooBig), 10);
        },
    );
}

#[test]
fn reordering_lets_later_packets_overtake() {
    let reorder = LinkConfig::with_latency(5 * MS).reorder(0.3, 50 * MS);
    Scenario::new("reordering_lets_later_packets_overtake").run(
        |seed| pair(seed, 10 * MS, Some(reorder)),
        |sim| {
            sim.run_for(2000 * MS).unwrap();
            let seqs = &pinger(sim, 1).ping_seqs;
            let inversions = seqs.windows(2).filter(|pair| pair[0] > pair[1]).count();
            assert!(inversions > 10, "{inversions} inversions");
        },
    );
}

#[test]
fn bandwidth_limits_delivery_rate() {
    // 80 kbit/s: a 35-byte packet ("PING nnnn" + 28 header bytes is 37) takes about 3.5 ms.
    let slow = LinkConfig::IDEAL.bandwidth(80_000, 2_000);
    Scenario::new("bandwidth_limits_delivery_rate")
        .without_capture()
        .run(
            |seed| {
                let mut sim = pair(seed, MS, None);
                sim.set_link(Iface::Host(HostId(0)), Direction::Up, slow);
                sim
            },
            |sim| {
                sim.run_for(10_000 * MS).unwrap();
                let seen = pinger(sim, 1).pings_seen;
                // At most 10 s * 10 kB/s / 35 B = 2857 packets fit; the queue drops the rest.
                assert!((2_650..=2_860).contains(&seen), "{seen} pings through");
                assert!(sim.stats().dropped_for(DropReason::QueueFull) > 6_000);
            },
        );
}

#[test]
fn nat_address_change_and_reboot_force_new_mappings() {
    Scenario::new("nat_address_change_and_reboot_force_new_mappings").run(
        |seed| {
            let mut builder = SimBuilder::new(seed);
            let server = "203.0.113.200:4000".parse().unwrap();
            let s = builder.host("server", NetId::INTERNET, Pinger::boxed(None, 100 * MS));
            builder.host_mut(s).addr("203.0.113.200".parse().unwrap());
            let nat = builder.nat("nat", NetId::INTERNET, NatConfig::port_restricted_cone());
            builder.host(
                "client",
                nat.inside(),
                Pinger::boxed(Some(server), 100 * MS),
            );
            builder.build().unwrap()
        },
        |sim| {
            let nat = pilot_sim::NatId(0);
            sim.run_for(1000 * MS).unwrap();
            sim.set_nat_public_ip(nat, "198.51.100.5".parse().unwrap());
            sim.run_for(1000 * MS).unwrap();
            let server = pinger(sim, 0);
            assert_eq!(server.last_from.unwrap().to_string(), "198.51.100.5:4000");
            sim.reboot_nat(nat);
            sim.run_for(1000 * MS).unwrap();

            let mappings = sim
                .trace()
                .records()
                .iter()
                .filter(|record| matches!(record.kind, TraceKind::Mapped { .. }));
            assert_eq!(
                mappings.count(),
                3,
                "initial, after the address change, after reboot"
            );
            assert!(pinger(sim, 1).pongs >= 27);
        },
    );
}

#[test]
fn public_host_address_change_takes_effect() {
    Scenario::new("public_host_address_change_takes_effect").run(
        |seed| pair(seed, 10 * MS, None),
        |sim| {
            sim.run_for(500 * MS).unwrap();
            sim.set_host_ip(HostId(1), "203.0.113.77".parse().unwrap());
            sim.run_for(500 * MS).unwrap();
            // a keeps pinging the old address, which no longer routes anywhere.
            let pongs_before = pinger(sim, 0).pongs;
            sim.run_for(500 * MS).unwrap();
            assert_eq!(pinger(sim, 0).pongs, pongs_before);
            assert!(sim.stats().dropped_for(DropReason::NoRoute) >= 98);
            assert_eq!(
                sim.host_addr(HostId(1)).unwrap().to_string(),
                "203.0.113.77:4000"
            );
        },
    );
}

#[test]
fn seed_sweeps_run_every_seed() {
    let runs = std::cell::Cell::new(0);
    let hashes = std::cell::RefCell::new(std::collections::BTreeSet::new());
    Scenario::new("seed_sweeps_run_every_seed")
        .without_capture()
        .run_many(
            20,
            |seed| {
                pair(
                    seed,
                    10 * MS,
                    Some(LinkConfig::with_latency(5 * MS).jitter(5 * MS)),
                )
            },
            |sim| {
                sim.run_for(200 * MS).unwrap();
                runs.set(runs.get() + 1);
                hashes.borrow_mut().insert(sim.trace().hash());
                // 20 pings by 190 ms; round trips take 20 to 40 ms.
                assert!(pinger(sim, 0).pongs >= 15);
            },
        );
    if std::env::var_os(pilot_sim::SEED_ENV).is_none() {
        assert_eq!(runs.get(), 20);
        assert_eq!(hashes.borrow().len(), 20, "each seed gives its own run");
    }
}
