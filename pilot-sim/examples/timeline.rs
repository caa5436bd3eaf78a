//! Runs a small hole-punching scenario and prints what happened as a timeline.
//!
//! Alice sits behind a home NAT (port-restricted cone) behind a carrier NAT; Bob sits behind a
//! full-cone NAT. Both register with a public beacon, learn each other's public address, and
//! punch. A fault rule drops the first punch; at 2.09 s Bob's NAT reboots and forgets his
//! mapping.
//!
//! ```text
//! cargo run -p pilot-sim --example timeline [PCAP_DIR]
//! ```
//!
//! The pcap files (one per host and per NAT) go to `PCAP_DIR`, or `target/sim-pcap/timeline`.
//! Set `PILOT_SIM_SEED` to change the seed.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pilot_proto::Transmit;
use pilot_sim::{FaultRule, HostContext, Machine, NatConfig, NatId, NetId, SimBuilder};

const BEACON: &str = "203.0.113.250:4000";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = SimBuilder::from_env(2026);
    builder
        .record_trace(true)
        .capture(true)
        .classifier(classify);
    builder.fault(FaultRule::dropping().class("punch").first(1));

    let beacon = builder.host("beacon", NetId::INTERNET, |_: &HostContext| {
        Box::new(Peer::beacon()) as Box<dyn Machine>
    });
    builder.host_mut(beacon).addr("203.0.113.250".parse()?);
    let carrier = builder.nat(
        "carrier",
        NetId::INTERNET,
        NatConfig::port_restricted_cone(),
    );
    let home = builder.nat("home", carrier.inside(), NatConfig::port_restricted_cone());
    let bob_nat = builder.nat("bob-nat", NetId::INTERNET, NatConfig::full_cone());
    builder.host("alice", home.inside(), |ctx: &HostContext| {
        Box::new(Peer::new(ctx)) as Box<_>
    });
    builder.host("bob", bob_nat.inside(), |ctx: &HostContext| {
        Box::new(Peer::new(ctx)) as Box<_>
    });

    let mut sim = builder.build()?;
    let reboot_at = sim.epoch() + Duration::from_millis(2_090);
    sim.schedule(reboot_at, move |sim| sim.reboot_nat(NatId(2)));
    sim.run_for(Duration::from_secs(3))?;

    println!(
        "seed {:#x} (rerun with PILOT_SIM_SEED={:#x})\n",
        sim.seed(),
        sim.seed()
    );
    print!("{}", sim.timeline());
    println!("\nstats: {:?}", sim.stats());
    println!("trace hash: {:#018x}", sim.trace().hash());

    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/sim-pcap/timeline")
        });
    for path in sim.write_pcaps(&dir)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn classify(payload: &[u8]) -> Option<&'static str> {
    match payload.split(|byte| *byte == b' ').next()? {
        b"HELLO" => Some("register"),
        b"PEER" => Some("introduce"),
        b"PUNCH" => Some("punch"),
        b"ACK" => Some("ack"),
        _ => None,
    }
}

/// One machine type plays both roles: the beacon introduces peers; a peer registers every
/// second until introduced, then punches every 250 ms and acknowledges punches.
struct Peer {
    is_beacon: bool,
    registered: Vec<SocketAddr>,
    peer: Option<SocketAddr>,
    next: Option<Instant>,
    outbox: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl Peer {
    fn beacon() -> Self {
        Self {
            is_beacon: true,
            registered: Vec::new(),
            peer: None,
            next: None,
            outbox: VecDeque::new(),
        }
    }

    fn new(ctx: &HostContext) -> Self {
        Self {
            is_beacon: false,
            next: Some(ctx.now),
            ..Self::beacon()
        }
    }

    fn beacon_datagram(&mut self, from: SocketAddr) {
        if !self.registered.contains(&from) {
            self.registered.push(from);
        }
        if let [a, b] = self.registered[..] {
            self.outbox.push_back((a, format!("PEER {b}").into_bytes()));
            self.outbox.push_back((b, format!("PEER {a}").into_bytes()));
        }
    }
}

impl Machine for Peer {
    fn handle_datagram(&mut self, now: Instant, _: SocketAddr, from: SocketAddr, bytes: &[u8]) {
        if self.is_beacon {
            return self.beacon_datagram(from);
        }
        if let Some(text) = bytes.strip_prefix(b"PEER ") {
            if self.peer.is_none() {
                self.peer = std::str::from_utf8(text)
                    .ok()
                    .and_then(|text| text.parse().ok());
                self.next = Some(now);
            }
        } else if bytes == b"PUNCH" {
            self.outbox.push_back((from, b"ACK".to_vec()));
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let (message, target, every) = match self.peer {
            Some(peer) => ("PUNCH", peer, Duration::from_millis(250)),
            None => (
                "HELLO",
                BEACON.parse().expect("valid address"),
                Duration::from_secs(1),
            ),
        };
        self.outbox.push_back((target, message.as_bytes().to_vec()));
        self.next = Some(now + every);
    }

    fn poll_transmit(&mut self, _: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let (dst, bytes) = self.outbox.pop_front()?;
        buf.extend_from_slice(&bytes);
        Some(Transmit {
            dst,
            len: bytes.len(),
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }
}
