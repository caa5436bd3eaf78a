//! Fault rules aimed at packet kinds, and the failure artefacts of a scenario.

mod common;

use std::time::Duration;

use common::Pinger;
use pilot_sim::{DropReason, FaultRule, HostId, NetId, Scenario, Sim, SimBuilder};

const MS: Duration = Duration::from_millis(1);
const CLIENT: HostId = HostId(0);
const SERVER: HostId = HostId(1);

fn classify(payload: &[u8]) -> Option<&'static str> {
    match payload.get(..4)? {
        b"PING" => Some("ping"),
        b"PONG" => Some("pong"),
        _ => None,
    }
}

fn build(seed: u64, rules: Vec<FaultRule>) -> Sim {
    let mut builder = SimBuilder::new(seed);
    builder.classifier(classify);
    for rule in rules {
        builder.fault(rule);
    }
    let server = "203.0.113.11:4000".parse().unwrap();
    builder.host(
        "client",
        NetId::INTERNET,
        Pinger::boxed(Some(server), 10 * MS),
    );
    builder.host("server", NetId::INTERNET, Pinger::boxed(None, 10 * MS));
    builder.build().unwrap()
}

fn pinger(sim: &Sim, host: HostId) -> &Pinger {
    sim.machine::<Pinger>(host).unwrap()
}

#[test]
fn drop_the_first_pings_at_send() {
    let rules = vec![FaultRule::dropping().class("ping").first(3).at_send()];
    Scenario::new("drop_the_first_pings_at_send").run(
        |seed| build(seed, rules),
        |sim| {
            sim.run_for(95 * MS).unwrap();
            assert_eq!(pinger(sim, SERVER).ping_seqs, [4, 5, 6, 7, 8]);
            let rule = sim.fault(0).unwrap();
            assert_eq!((rule.matched(), rule.fired()), (10, 3));
            assert_eq!(sim.stats().dropped_for(DropReason::Fault(0)), 3);
        },
    );
}

#[test]
fn delay_every_pong() {
    let rules = vec![FaultRule::delaying(50 * MS).class("pong")];
    Scenario::new("delay_every_pong").run(
        |seed| build(seed, rules),
        |sim| {
            sim.run_for(500 * MS).unwrap();
            let client = pinger(sim, CLIENT);
            let first = client.pong_times[0] - sim.epoch();
            // 40 ms round trip plus the 50 ms hold at delivery.
            assert_eq!(first, 90 * MS);
            assert_eq!(client.pongs, 42);
        },
    );
}

#[test]
fn drop_thirty_percent_of_pongs() {
    let rules = vec![FaultRule::dropping().class("pong").to(CLIENT).chance(0.3)];
    Scenario::new("drop_thirty_percent_of_pongs")
        .without_capture()
        .run(
            |seed| build(seed, rules),
            |sim| {
                sim.run_for(50_000 * MS - MS).unwrap();
                sim.act::<Pinger, _>(CLIENT, |p, _| p.next_ping = None);
                sim.run_for(100 * MS).unwrap();
                let client = pinger(sim, CLIENT);
                assert_eq!(client.sent, 5_000);
                // Mean 3500, standard deviation about 32: five of them either way.
                let pongs = client.pongs as f64;
                assert!((3_338.0..=3_662.0).contains(&pongs), "{pongs} pongs");
                assert_eq!(sim.fault(0).unwrap().matched(), 5_000);
            },
        );
}

#[test]
fn duplicate_and_payload_predicate_rules() {
    let rules = vec![
        FaultRule::duplicating()
            .payload(|bytes| bytes == b"PING 2")
            .to(SERVER),
        // A send-stage rule cannot know the destination host, so it never matches.
        FaultRule::dropping().at_send().to(SERVER),
    ];
    Scenario::new("duplicate_and_payload_predicate_rules").run(
        |seed| build(seed, rules),
        |sim| {
            sim.run_for(45 * MS).unwrap();
            assert_eq!(pinger(sim, SERVER).ping_seqs, [1, 2, 2, 3]);
            assert_eq!(sim.fault(1).unwrap().matched(), 0);
            let timeline = sim.timeline();
            assert!(timeline.contains("fault   203.0.113.10:4000 -> 203.0.113.11:4000 rule 0"));
            assert!(timeline.contains("[ping]"), "classes label the timeline");
        },
    );
}

#[test]
fn failing_scenario_writes_pcaps_and_timeline() {
    let scenario = Scenario::new("deliberately_failing_scenario").seed(77);
    let dir = scenario.artifact_dir();
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = std::panic::catch_unwind(|| {
        scenario.run(
            |seed| build(seed, Vec::new()),
            |sim| {
                sim.run_for(100 * MS).unwrap();
                panic!("deliberate failure to exercise the harness");
            },
        );
    });
    assert!(outcome.is_err(), "the harness re-raises the failure");
    for file in ["client.pcap", "server.pcap", "timeline.txt"] {
        assert!(
            dir.join(file).exists(),
            "{file} written to {}",
            dir.display()
        );
    }
    let pcap = std::fs::read(dir.join("client.pcap")).unwrap();
    assert_eq!(&pcap[..4], &0xa1b2_3c4d_u32.to_le_bytes());
    // 24-byte header, then one 16-byte record header + 34-byte packet per send or receive.
    assert!(pcap.len() > 24 + 16 * 10);
    let timeline = std::fs::read_to_string(dir.join("timeline.txt")).unwrap();
    assert!(timeline.contains("client   send    203.0.113.10:4000 -> 203.0.113.11:4000"));
}
