//! The stream transport through the real simulator: two hosts each run a tunnel and a
//! transport; stream packets are sealed, carried as UDP over lossy simulated links, opened and
//! reassembled. One megabyte must arrive byte-exact within a stated virtual-time bound, and no
//! sealed segment may exceed the links' 1,500-byte MTU. Seeds are printed by `Scenario` on
//! failure and replayed with `PILOT_SIM_SEED`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use pilot_proto::Transmit;
use pilot_proto::identity::Identity;
use pilot_proto::rng::Rng;
use pilot_proto::transport::{ConnId, Transport, TransportConfig, TransportEvent};
use pilot_proto::tunnel::{Inbound, Tunnel, TunnelConfig};
use pilot_proto::wire::addr::{Addr, AddrPort};
use pilot_proto::wire::packet::PacketRepr;
use pilot_sim::SimBuilder;
use pilot_sim::{
    DEFAULT_UDP_PORT, DropReason, HostContext, HostId, LinkConfig, Machine, NetId, Scenario, Sim,
};

const PORT: u16 = 1000;
const LEN: usize = 1024 * 1024;
const IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(203, 0, 113, 2)];

/// One host: a tunnel under a transport, plus a tiny application (send or receive LEN bytes).
struct StreamNode {
    tunnel: Tunnel,
    transport: Transport,
    sender: bool,
    conn: Option<ConnId>,
    data: Vec<u8>,
    sent: usize,
    received: Vec<u8>,
    eof: bool,
    frame: Vec<u8>,
    packet: Vec<u8>,
}

impl StreamNode {
    fn boxed(index: usize) -> impl FnMut(&HostContext) -> Box<dyn Machine> {
        move |ctx: &HostContext| Box::new(Self::new(index, ctx)) as Box<dyn Machine>
    }

    fn new(index: usize, ctx: &HostContext) -> Self {
        let node = index as u32 + 1;
        let peer = 1 - index;
        let identity = Identity::from_seed(&[node as u8; 32]);
        let peer_key = Identity::from_seed(&[peer as u8 + 1; 32]).verifying_key();
        let mut rng = Rng::from_seed(ctx.seed);
        let mut tunnel = Tunnel::new(TunnelConfig::default(), identity, node, rng.fork());
        let peer_addr = SocketAddr::from((IPS[peer], DEFAULT_UDP_PORT));
        tunnel
            .add_peer(ctx.now, peer as u32 + 1, peer_addr, Some(peer_key))
            .expect("add peer");
        let mut transport =
            Transport::new(Addr::new(0, node), TransportConfig::default(), rng.fork());
        let sender = index == 0;
        let mut conn = None;
        if sender {
            let dst = AddrPort::new(Addr::new(0, 2), PORT);
            conn = Some(transport.connect(ctx.now, dst).expect("dial"));
        } else {
            transport.listen(PORT).expect("listen");
        }
        let mut data = vec![0u8; LEN];
        Rng::from_seed([42; 32]).fill(&mut data);
        Self {
            tunnel,
            transport,
            sender,
            conn,
            data,
            sent: 0,
            received: Vec::new(),
            eof: false,
            frame: Vec::new(),
            packet: Vec::new(),
        }
    }

    /// The application: keep the send buffer full and close when done, or read everything.
    fn app(&mut self, now: Instant) {
        while let Some(event) = self.transport.poll_event() {
            if let TransportEvent::Incoming { conn, .. } = event {
                self.conn = Some(conn);
            }
        }
        let Some(conn) = self.conn else { return };
        if self.sender {
            while self.sent < LEN {
                match self.transport.send(now, conn, &self.data[self.sent..]) {
                    Ok(n) if n > 0 => self.sent += n,
                    _ => break,
                }
            }
            if self.sent == LEN {
                self.transport.close(now, conn);
            }
            return;
        }
        let mut chunk = [0u8; 16 * 1024];
        while let Ok(n) = self.transport.recv(conn, &mut chunk) {
            if n == 0 {
                self.eof = true;
                break;
            }
            self.received.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Machine for StreamNode {
    fn handle_datagram(&mut self, now: Instant, _: SocketAddr, from: SocketAddr, bytes: &[u8]) {
        self.frame.clear();
        self.frame.extend_from_slice(bytes);
        if let Inbound::Packet { packet, .. } =
            self.tunnel.handle_datagram(now, from, &mut self.frame)
            && let Ok(repr) = PacketRepr::decode(packet)
        {
            self.transport.handle_packet(now, &repr);
        }
        self.app(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.transport.poll_timeout().is_some_and(|t| t <= now) {
            self.transport.handle_timeout(now);
        }
        if self.tunnel.poll_timeout().is_some_and(|t| t <= now) {
            self.tunnel.handle_timeout(now);
        }
        self.app(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        for _ in 0..1024 {
            if let Some(transmit) = self.tunnel.poll_transmit(now, buf) {
                return Some(transmit);
            }
            let dst = self.transport.poll_packet(now, &mut self.packet)?;
            // A full tunnel queue drops the packet; the transport retransmits it.
            let _ = self.tunnel.send(now, dst.node, &self.packet);
        }
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [self.transport.poll_timeout(), self.tunnel.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }
}

fn build(seed: u64, link: LinkConfig) -> Sim {
    let mut builder = SimBuilder::new(seed);
    builder.default_link(link);
    for (index, ip) in IPS.iter().enumerate() {
        let host = builder.host(
            &format!("node{}", index + 1),
            NetId::INTERNET,
            StreamNode::boxed(index),
        );
        builder.host_mut(host).addr(*ip);
    }
    builder.build().expect("build")
}

fn transfer(name: &str, link: LinkConfig, bound: Duration) {
    Scenario::new(name).run(
        |seed| build(seed, link),
        |sim| {
            let deadline = sim.now() + bound;
            let done = sim
                .run_until_true(deadline, |sim| {
                    sim.machine::<StreamNode>(HostId(1)).is_some_and(|n| n.eof)
                })
                .expect("within the event budget");
            assert!(done, "not delivered within {bound:?} of virtual time");
            let sender = sim.machine::<StreamNode>(HostId(0)).expect("sender");
            let receiver = sim.machine::<StreamNode>(HostId(1)).expect("receiver");
            assert!(receiver.received == sender.data, "bytes differ");
            // Full segments, sealed, fit the 1,500-byte MTU: nothing is too big for the link.
            assert_eq!(sim.stats().dropped_for(DropReason::TooBig), 0);
            println!("{name}: delivered in {:?}", sim.elapsed());
        },
    );
}

#[test]
fn one_megabyte_sealed_over_a_clean_link() {
    let link = LinkConfig::with_latency(Duration::from_millis(10));
    transfer(
        "one_megabyte_sealed_over_a_clean_link",
        LinkConfig {
            bandwidth: Some(20_000_000),
            ..link
        },
        Duration::from_secs(10),
    );
}

#[test]
fn one_megabyte_sealed_under_loss_and_reordering() {
    let link = LinkConfig::with_latency(Duration::from_millis(10))
        .loss(0.03)
        .jitter(Duration::from_millis(2))
        .duplicate(0.01);
    let link = LinkConfig {
        bandwidth: Some(20_000_000),
        reorder: 0.02,
        reorder_delay: Duration::from_millis(5),
        ..link
    };
    transfer(
        "one_megabyte_sealed_under_loss_and_reordering",
        link,
        Duration::from_secs(60),
    );
}
