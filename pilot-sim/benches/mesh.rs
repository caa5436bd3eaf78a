//! Simulator speed: packet deliveries per second of wall time in a 10-host scenario (four
//! public hosts and six hosts behind three NATs), each host keeping eight pings in flight.
//! The target is at least 1,000,000 deliveries per second.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use divan::counter::ItemsCount;
use pilot_proto::Transmit;
use pilot_sim::{HostContext, LinkConfig, Machine, NatConfig, NetId, Sim, SimBuilder};

fn main() {
    divan::main();
}

const PUBLIC_HOSTS: u8 = 4;
const IN_FLIGHT: usize = 8;
const PAYLOAD: [u8; 64] = [0x42; 64];

/// Answers pings, and sends a new ping to the next public host for every answer it gets.
struct Flood {
    targets: Vec<SocketAddr>,
    next_target: usize,
    pending: Vec<(SocketAddr, bool)>,
}

impl Flood {
    fn new(_: &HostContext) -> Self {
        let targets = (0..PUBLIC_HOSTS)
            .map(|index| SocketAddr::from(([203, 0, 113, 100 + index], 4000)))
            .collect();
        let mut flood = Self {
            targets,
            next_target: 0,
            pending: Vec::new(),
        };
        for _ in 0..IN_FLIGHT {
            flood.queue_ping();
        }
        flood
    }

    fn queue_ping(&mut self) {
        let target = self.targets[self.next_target % self.targets.len()];
        self.next_target += 1;
        self.pending.push((target, true));
    }
}

impl Machine for Flood {
    fn handle_datagram(&mut self, _: Instant, _: SocketAddr, from: SocketAddr, bytes: &[u8]) {
        match bytes.first() {
            Some(1) => self.pending.push((from, false)),
            Some(_) => self.queue_ping(),
            None => {}
        }
    }

    fn handle_timeout(&mut self, _: Instant) {}

    fn poll_transmit(&mut self, _: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let (dst, is_ping) = self.pending.pop()?;
        buf.extend_from_slice(&PAYLOAD);
        buf[0] = if is_ping { 1 } else { 2 };
        Some(Transmit {
            dst,
            len: PAYLOAD.len(),
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

fn build() -> Sim {
    let mut builder = SimBuilder::new(1);
    builder.default_link(
        LinkConfig::with_latency(Duration::from_millis(1)).jitter(Duration::from_micros(200)),
    );
    for index in 0..PUBLIC_HOSTS {
        let host = builder.host(
            &format!("public{index}"),
            NetId::INTERNET,
            |ctx: &HostContext| Box::new(Flood::new(ctx)) as Box<dyn Machine>,
        );
        builder
            .host_mut(host)
            .addr([203, 0, 113, 100 + index].into());
    }
    let configs = [
        NatConfig::full_cone(),
        NatConfig::port_restricted_cone(),
        NatConfig::symmetric(),
    ];
    for (index, config) in configs.into_iter().enumerate() {
        let nat = builder.nat(&format!("nat{index}"), NetId::INTERNET, config);
        for member in 0..2 {
            builder.host(
                &format!("nat{index}-host{member}"),
                nat.inside(),
                |ctx: &HostContext| Box::new(Flood::new(ctx)) as Box<dyn Machine>,
            );
        }
    }
    builder.build().expect("the benchmark topology is valid")
}

const VIRTUAL_TIME: Duration = Duration::from_millis(500);

/// Deliveries in one run: runs are deterministic, so one measurement holds for all.
fn deliveries_per_run() -> u64 {
    let mut sim = build();
    sim.run_for(VIRTUAL_TIME).expect("within the event budget");
    sim.stats().delivered
}

#[divan::bench(sample_count = 10)]
fn ten_host_mesh(bencher: divan::Bencher<'_, '_>) {
    let deliveries = deliveries_per_run();
    bencher
        .counter(ItemsCount::new(deliveries as usize))
        .with_inputs(build)
        .bench_local_values(|mut sim| {
            sim.run_for(VIRTUAL_TIME).expect("within the event budget");
            divan::black_box(sim.stats().delivered)
        });
}
