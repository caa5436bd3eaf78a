//! CPU cost of moving stream data: one megabyte through two [`Transport`]s joined in memory, and
//! the same megabyte through transport + tunnel seal + tunnel open (the node's real data path).
//!
//! Time is virtual and advances only when nothing is in flight, so what is measured is the
//! processing cost per byte (segmentation, ACK and SACK handling, reassembly, copies, and in the
//! second case AES-256-GCM), not link speed. Goodput over links of given bandwidth, RTT and loss
//! is a property of virtual time, not of this machine: it is computed by the
//! `transport_goodput` test and checked in as `docs/design/transport-goodput.md`.
//!
//! Run: `cargo bench -p pilot-proto --bench transport`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pilot_proto::identity::Identity;
use pilot_proto::rng::Rng;
use pilot_proto::transport::{ConnId, Transport, TransportConfig, TransportEvent};
use pilot_proto::tunnel::{Inbound, Tunnel, TunnelConfig};
use pilot_proto::wire::addr::{Addr, AddrPort};
use pilot_proto::wire::packet::PacketRepr;

const MEGABYTE: usize = 1024 * 1024;
const PORT: u16 = 1000;

fn main() {
    divan::main();
}

/// How packets travel between the two transports.
trait Path {
    /// Carries `packet` from side `from` (0 = A, 1 = B) and returns the bytes to hand to the
    /// other side's transport, if any.
    fn carry<'a>(
        &'a mut self,
        now: Instant,
        from: usize,
        packet: &'a mut Vec<u8>,
    ) -> Option<&'a [u8]>;
}

/// Direct: the serialized packet itself.
struct Direct;

impl Path for Direct {
    fn carry<'a>(&'a mut self, _: Instant, _: usize, packet: &'a mut Vec<u8>) -> Option<&'a [u8]> {
        Some(packet)
    }
}

/// Through two keyed tunnels: seal on one side, open on the other.
struct Sealed {
    tunnels: [Tunnel; 2],
    addrs: [SocketAddr; 2],
    frame: Vec<u8>,
}

impl Sealed {
    fn new(now: Instant) -> Self {
        let (a_id, b_id) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32]));
        let (a_key, b_key) = (a_id.verifying_key(), b_id.verifying_key());
        let addrs = [
            SocketAddr::from(([127, 0, 0, 1], 40_001)),
            SocketAddr::from(([127, 0, 0, 1], 40_002)),
        ];
        let mut a = Tunnel::new(TunnelConfig::default(), a_id, 1, Rng::from_seed([1; 32]));
        let mut b = Tunnel::new(TunnelConfig::default(), b_id, 2, Rng::from_seed([2; 32]));
        a.add_peer(now, 2, addrs[1], Some(b_key)).expect("add b");
        b.add_peer(now, 1, addrs[0], Some(a_key)).expect("add a");
        let mut sealed = Self {
            tunnels: [a, b],
            addrs,
            frame: Vec::new(),
        };
        sealed.key_exchange(now);
        sealed
    }

    /// Delivers the key exchange both ways until quiet (bounded).
    fn key_exchange(&mut self, now: Instant) {
        for _ in 0..16 {
            let mut moved = false;
            for from in 0..2 {
                while let Some(t) = self.tunnels[from].poll_transmit(now, &mut self.frame) {
                    let addr = self.addrs[from];
                    let _ =
                        self.tunnels[1 - from].handle_datagram(now, addr, &mut self.frame[..t.len]);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }
}

impl Path for Sealed {
    fn carry<'a>(
        &'a mut self,
        now: Instant,
        from: usize,
        packet: &'a mut Vec<u8>,
    ) -> Option<&'a [u8]> {
        let node = if from == 0 { 2 } else { 1 };
        self.tunnels[from].send(now, node, packet).ok()?;
        let transmit = self.tunnels[from].poll_transmit(now, &mut self.frame)?;
        let addr = self.addrs[from];
        match self.tunnels[1 - from].handle_datagram(now, addr, &mut self.frame[..transmit.len]) {
            Inbound::Packet { packet, .. } => Some(packet),
            _ => None,
        }
    }
}

/// Two connected transports and a data source.
struct Rig<P> {
    sides: [Transport; 2],
    path: P,
    client: ConnId,
    server: Option<ConnId>,
    now: Instant,
    buf: Vec<u8>,
    data: Vec<u8>,
    sink: Vec<u8>,
}

impl<P: Path> Rig<P> {
    #[allow(clippy::disallowed_methods)] // A benchmark needs some starting instant.
    fn new(make_path: impl FnOnce(Instant) -> P) -> Self {
        let now = Instant::now();
        let config = TransportConfig::default();
        let mut a = Transport::new(Addr::new(0, 1), config.clone(), Rng::from_seed([3; 32]));
        let mut b = Transport::new(Addr::new(0, 2), config, Rng::from_seed([4; 32]));
        b.listen(PORT).expect("listen");
        let client = a
            .connect(now, AddrPort::new(Addr::new(0, 2), PORT))
            .expect("dial");
        let mut rig = Self {
            sides: [a, b],
            path: make_path(now),
            client,
            server: None,
            now,
            buf: Vec::new(),
            data: vec![0x5a; MEGABYTE],
            sink: vec![0; 64 * 1024],
        };
        for _ in 0..100 {
            rig.exchange();
            let found = std::iter::from_fn(|| rig.sides[1].poll_event()).find_map(|e| match e {
                TransportEvent::Incoming { conn, .. } => Some(conn),
                _ => None,
            });
            if found.is_some() {
                rig.server = found;
                return rig;
            }
            rig.tick();
        }
        panic!("no handshake");
    }

    /// Moves every queued packet across until both sides are quiet (bounded).
    fn exchange(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for from in 0..2 {
                while self.sides[from]
                    .poll_packet(self.now, &mut self.buf)
                    .is_some()
                {
                    moved = true;
                    let now = self.now;
                    let Some(bytes) = self.path.carry(now, from, &mut self.buf) else {
                        continue;
                    };
                    let Ok(packet) = PacketRepr::decode(bytes) else {
                        continue;
                    };
                    self.sides[1 - from].handle_packet(now, &packet);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances virtual time to the next timer (or 1 ms) and services it.
    fn tick(&mut self) {
        let next = self.sides.iter().filter_map(Transport::poll_timeout).min();
        self.now = next
            .unwrap_or(self.now + Duration::from_millis(1))
            .max(self.now);
        for side in &mut self.sides {
            if side.poll_timeout().is_some_and(|t| t <= self.now) {
                side.handle_timeout(self.now);
            }
        }
    }

    /// Sends one megabyte A → B and reads it all at B.
    fn transfer(&mut self) -> usize {
        let (mut sent, mut received) = (0, 0);
        for _ in 0..1_000_000 {
            while sent < self.data.len() {
                match self.sides[0].send(self.now, self.client, &self.data[sent..]) {
                    Ok(n) if n > 0 => sent += n,
                    _ => break,
                }
            }
            self.exchange();
            let Some(server) = self.server else { break };
            while let Ok(n) = self.sides[1].recv(server, &mut self.sink) {
                received += n;
                if n == 0 {
                    break;
                }
            }
            if received >= self.data.len() {
                return received;
            }
            self.exchange();
            self.tick();
        }
        panic!("transfer did not finish");
    }
}

/// One megabyte through the stream alone.
#[divan::bench(sample_count = 20)]
fn stream_1mb(bencher: divan::Bencher<'_, '_>) {
    let mut rig = Rig::new(|_| Direct);
    bencher
        .counter(divan::counter::BytesCount::new(MEGABYTE))
        .bench_local(|| rig.transfer());
}

/// One megabyte through stream, tunnel seal and tunnel open, both directions (ACKs are sealed
/// too).
#[divan::bench(sample_count = 20)]
fn seal_stream_open_1mb(bencher: divan::Bencher<'_, '_>) {
    let mut rig = Rig::new(Sealed::new);
    bencher
        .counter(divan::counter::BytesCount::new(MEGABYTE))
        .bench_local(|| rig.transfer());
}
