//! Reliable byte streams (the registry's TCP): connect, accept, ordered bytes, close, refusal
//! and resets on crash and partition.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pilot_proto::Transmit;
use pilot_sim::{
    HostContext, HostId, Machine, NatConfig, NetId, Scenario, Sim, SimBuilder, StreamCommand,
    StreamEvent, StreamId,
};

const MS: Duration = Duration::from_millis(1);
const REGISTRY: &str = "203.0.113.100:9000";

/// Records every stream event (with its time) and runs queued commands.
#[derive(Debug, Default)]
struct StreamMachine {
    log: Vec<(Duration, String)>,
    received: Vec<u8>,
    commands: VecDeque<(StreamCommand, Vec<u8>)>,
    echo: bool,
    start: Option<Instant>,
}

impl StreamMachine {
    fn factory(echo: bool) -> impl FnMut(&HostContext) -> Box<dyn Machine> {
        move |ctx| {
            Box::new(Self {
                echo,
                start: Some(ctx.now),
                ..Self::default()
            })
        }
    }

    fn queue(&mut self, command: StreamCommand, bytes: &[u8]) {
        self.commands.push_back((command, bytes.to_vec()));
    }

    fn send(&mut self, id: StreamId, bytes: &[u8]) {
        self.queue(
            StreamCommand::Send {
                id,
                len: bytes.len(),
            },
            bytes,
        );
    }

    fn events(&self) -> Vec<String> {
        self.log.iter().map(|(_, what)| what.clone()).collect()
    }
}

impl Machine for StreamMachine {
    fn handle_datagram(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, _: &[u8]) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_transmit(&mut self, _: Instant, _: &mut Vec<u8>) -> Option<Transmit> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn handle_stream(&mut self, now: Instant, event: StreamEvent<'_>) {
        let at = now - self.start.unwrap_or(now);
        let what = match event {
            StreamEvent::Connected { id } => format!("connected {id}"),
            StreamEvent::Accepted { id, local, .. } => format!("accepted {id} on {local}"),
            StreamEvent::Data { id, bytes } => {
                self.received.extend_from_slice(bytes);
                if self.echo {
                    self.send(id, bytes);
                }
                format!("data {id} {}", bytes.len())
            }
            StreamEvent::Closed { id } => format!("closed {id}"),
            StreamEvent::Refused { id } => format!("refused {id}"),
            StreamEvent::Reset { id } => format!("reset {id}"),
        };
        self.log.push((at, what));
    }

    fn poll_stream(&mut self, _: Instant, buf: &mut Vec<u8>) -> Option<StreamCommand> {
        let (command, bytes) = self.commands.pop_front()?;
        buf.extend_from_slice(&bytes);
        Some(command)
    }
}

/// A registry (echoing, listening on 9000) on the internet and a client behind a NAT.
fn build(seed: u64) -> Sim {
    let mut builder = SimBuilder::new(seed);
    let registry = builder.host("registry", NetId::INTERNET, StreamMachine::factory(true));
    builder
        .host_mut(registry)
        .addr("203.0.113.100".parse().unwrap())
        .listen(9000);
    let nat = builder.nat("nat", NetId::INTERNET, NatConfig::symmetric());
    builder.host("client", nat.inside(), StreamMachine::factory(false));
    builder.build().unwrap()
}

const REGISTRY_HOST: HostId = HostId(0);
const CLIENT: HostId = HostId(1);

fn client(sim: &Sim) -> &StreamMachine {
    sim.machine::<StreamMachine>(CLIENT).unwrap()
}

fn connect(sim: &mut Sim, id: u64, dst: &str) {
    let dst = dst.parse().unwrap();
    sim.act::<StreamMachine, _>(CLIENT, |m, _| {
        m.queue(
            StreamCommand::Connect {
                id: StreamId(id),
                dst,
            },
            &[],
        )
    })
    .unwrap();
}

#[test]
fn stream_connects_echoes_in_order_and_closes() {
    Scenario::new("stream_connects_echoes_in_order_and_closes").run(build, |sim| {
        sim.run_until(sim.epoch()).unwrap();
        connect(sim, 1, REGISTRY);
        // One way = client up 10 ms + NAT up 10 ms + registry down 10 ms.
        sim.run_for(89 * MS).unwrap();
        assert_eq!(client(sim).log, [(60 * MS, "connected s1".to_owned())]);
        let registry = sim.machine::<StreamMachine>(REGISTRY_HOST).unwrap();
        assert_eq!(registry.log[0].0, 30 * MS);
        assert!(
            registry.log[0]
                .1
                .starts_with("accepted a0 on 203.0.113.100:9000")
        );

        sim.act::<StreamMachine, _>(CLIENT, |m, _| {
            for chunk in 0..100u8 {
                m.send(StreamId(1), &[chunk; 3]);
            }
        });
        sim.run_for(200 * MS).unwrap();
        let expected: Vec<u8> = (0..100u8).flat_map(|chunk| [chunk; 3]).collect();
        assert_eq!(
            sim.machine::<StreamMachine>(REGISTRY_HOST)
                .unwrap()
                .received,
            expected
        );
        assert_eq!(client(sim).received, expected, "echo arrives in order");

        // A close reaches the peer after the bytes sent before it.
        sim.act::<StreamMachine, _>(CLIENT, |m, _| {
            m.send(StreamId(1), b"last");
            m.queue(StreamCommand::Close { id: StreamId(1) }, &[]);
        });
        sim.run_for(100 * MS).unwrap();
        let registry_events = sim
            .machine::<StreamMachine>(REGISTRY_HOST)
            .unwrap()
            .events();
        assert_eq!(
            registry_events[registry_events.len() - 2..],
            ["data a0 4", "closed a0"]
        );
    });
}

#[test]
fn stream_connect_is_refused_without_listener_or_host() {
    Scenario::new("stream_connect_is_refused_without_listener_or_host").run(build, |sim| {
        sim.run_until(sim.epoch()).unwrap();
        connect(sim, 1, "203.0.113.100:9001");
        connect(sim, 2, "203.0.113.99:9000");
        sim.run_for(100 * MS).unwrap();
        sim.crash(REGISTRY_HOST);
        connect(sim, 3, REGISTRY);
        sim.run_for(100 * MS).unwrap();
        assert_eq!(
            client(sim).events(),
            ["refused s2", "refused s1", "refused s3"]
        );
    });
}

#[test]
fn stream_resets_on_crash_and_partition() {
    Scenario::new("stream_resets_on_crash_and_partition").run(build, |sim| {
        sim.run_until(sim.epoch()).unwrap();
        connect(sim, 1, REGISTRY);
        sim.run_for(100 * MS).unwrap();
        sim.restart(REGISTRY_HOST, pilot_sim::SeedChoice::Same);
        sim.run_for(100 * MS).unwrap();
        assert_eq!(client(sim).events(), ["connected s1", "reset s1"]);

        connect(sim, 2, REGISTRY);
        sim.run_for(100 * MS).unwrap();
        sim.partition(CLIENT, REGISTRY_HOST);
        sim.act::<StreamMachine, _>(CLIENT, |m, _| m.send(StreamId(2), b"lost"));
        sim.run_for(100 * MS).unwrap();
        assert_eq!(client(sim).events()[2..], ["connected s2", "reset s2"]);

        connect(sim, 3, REGISTRY);
        sim.run_for(100 * MS).unwrap();
        assert_eq!(client(sim).events().last().unwrap(), "refused s3");
    });
}
