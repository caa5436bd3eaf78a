//! The packet path: from a machine's transmit, across links, routers and NATs, to a machine.
//!
//! A datagram becomes an IPv4/UDP packet at its sender, crosses the sender's up-link to its
//! network's router, and from there either the destination's down-link (same network), the
//! NAT that owns the network (out towards the parent network, or hairpinned back inside), or
//! nothing (no route). Routers and NATs act at the instant the packet reaches them, so NAT state
//! and timers are evaluated at the right virtual time. Every drop is traced with its reason.
//!
//! # Limitations
//!
//! - Limitation: datagrams are always sent from the host's first UDP port, because
//!   `pilot_proto::Transmit` names no source; other bound ports only receive.
//! - Limitation: IPv4 only; a transmit to an IPv6 address is dropped as `BadTransmit`.

use std::net::{SocketAddr, SocketAddrV4};

use pilot_proto::Transmit;

use crate::fault::{FaultAction, PacketFacts, Stage};
use crate::link::{Direction, LinkVerdict};
use crate::nat::NatDrop;
use crate::packet::{self, Endpoints};
use crate::queue::nanos;
use crate::sim::Iface;
use crate::sim::{Attach, Event, Packet, Sim};
use crate::trace::{DropReason, Place, TraceKind};
use crate::{HostId, NatId, NetId};

impl Sim {
    /// Turns a machine's transmit (payload in `payload[..transmit.len]`) into a packet on the
    /// host's up-link.
    pub(crate) fn send_datagram(&mut self, host: usize, transmit: Transmit, payload: &[u8]) {
        self.stats.sent += 1;
        let state = &self.hosts[host];
        // Limitation: the primary (first) port sends everything; `Transmit` has no source.
        let port = state.udp_ports.first().copied();
        let (Some(port), SocketAddr::V4(dst), Some(payload)) =
            (port, transmit.dst, payload.get(..transmit.len))
        else {
            self.count_drop(DropReason::BadTransmit);
            return;
        };
        let src = SocketAddrV4::new(state.addr, port);

        let mut bytes = self.pool.pop().unwrap_or_default();
        packet::build(&mut bytes, src, dst, payload);
        let class = self
            .classifier
            .as_ref()
            .and_then(|classify| classify(payload));
        let packet = Packet {
            bytes,
            origin: host,
            class,
        };
        self.record(
            class,
            TraceKind::Sent {
                host: HostId(host),
                src,
                dst,
                len: payload.len(),
            },
        );
        self.capture_host(host, &packet.bytes);
        self.send_with_faults(host, packet, src, dst);
    }

    /// Applies send-stage fault rules, then puts the packet on the host's up-link.
    fn send_with_faults(
        &mut self,
        host: usize,
        packet: Packet,
        src: SocketAddrV4,
        dst: SocketAddrV4,
    ) {
        let facts = PacketFacts {
            stage: Stage::Send,
            class: packet.class,
            from: HostId(host),
            to: None,
            payload: packet::payload(&packet.bytes),
        };
        let up = |sim: &mut Self, packet, at| {
            sim.transmit_link(Attach::Host(host), Direction::Up, packet, at)
        };
        match self.check_faults(&facts, src, dst) {
            Some((rule, FaultAction::Drop)) => {
                self.drop_packet(packet, DropReason::Fault(rule), Place::Host(HostId(host)))
            }
            Some((_, FaultAction::Delay(delay))) => up(self, packet, self.now_ns + nanos(delay)),
            Some((_, FaultAction::Duplicate)) => {
                let copy = self.copy_packet(&packet);
                up(self, packet, self.now_ns);
                up(self, copy, self.now_ns);
            }
            None => up(self, packet, self.now_ns),
        }
    }

    /// Puts a packet on one direction of an interface's link, entering it at `at`.
    pub(crate) fn transmit_link(
        &mut self,
        attach: Attach,
        direction: Direction,
        packet: Packet,
        at: u64,
    ) {
        let len = packet.bytes.len();
        let link = match (attach, direction) {
            (Attach::Host(host), Direction::Up) => &mut self.hosts[host].up,
            (Attach::Host(host), Direction::Down) => &mut self.hosts[host].down,
            (Attach::Nat(nat), Direction::Up) => &mut self.nats[nat].up,
            (Attach::Nat(nat), Direction::Down) => &mut self.nats[nat].down,
        };
        let reason = match link.transmit(at, len) {
            LinkVerdict::Arrives { first, second } => {
                return self.arrive_both(attach, direction, packet, first, second);
            }
            LinkVerdict::Lost => DropReason::Lost,
            LinkVerdict::TooBig => DropReason::TooBig,
            LinkVerdict::QueueFull => DropReason::QueueFull,
        };
        // A packet entering the link later than now is dropped (and traced) at that time.
        if at > self.now_ns {
            let place = self.link_place(attach, direction);
            self.queue.push(
                at,
                Event::Drop {
                    packet,
                    reason,
                    place,
                },
            );
        } else {
            self.drop_packet(packet, reason, self.link_place(attach, direction));
        }
    }

    fn arrive_both(
        &mut self,
        attach: Attach,
        direction: Direction,
        packet: Packet,
        first: u64,
        second: Option<u64>,
    ) {
        if let Some(second) = second {
            let copy = self.copy_packet(&packet);
            self.arrive(attach, direction, copy, second);
        }
        self.arrive(attach, direction, packet, first);
    }

    /// Schedules a packet's arrival at the far end of a link at `at`.
    ///
    /// A packet going up to a router that will hand it straight to a down-link without a queue
    /// (same network, no bandwidth limit) is put on that down-link now, entering it at `at`: the
    /// outcome is the same and it saves an event per hop. Packets that meet a NAT or a
    /// bandwidth-limited link are routed when they arrive.
    fn arrive(&mut self, attach: Attach, direction: Direction, packet: Packet, at: u64) {
        if direction == Direction::Up {
            let net = match attach {
                Attach::Host(host) => self.hosts[host].net,
                Attach::Nat(nat) => self.nats[nat].outside_net,
            };
            let next = packet::endpoints(&packet.bytes)
                .and_then(|ends| self.nets[net].addrs.get(ends.dst.ip()).copied())
                .filter(|next| self.down_link(*next).config.bandwidth.is_none());
            if let Some(next) = next {
                return self.transmit_link(next, Direction::Down, packet, at);
            }
        }
        let event = self.arrival(attach, direction, packet);
        self.queue.push(at, event);
    }

    /// Names the link an attachment's packet crosses in `direction`.
    fn link_place(&self, attach: Attach, direction: Direction) -> Place {
        let iface = match attach {
            Attach::Host(host) => Iface::Host(HostId(host)),
            Attach::Nat(nat) => Iface::Nat(NatId(nat)),
        };
        Place::Link(iface, direction)
    }

    fn down_link(&self, attach: Attach) -> &crate::link::Link {
        match attach {
            Attach::Host(host) => &self.hosts[host].down,
            Attach::Nat(nat) => &self.nats[nat].down,
        }
    }

    /// The event for a packet reaching the far end of a link.
    fn arrival(&self, attach: Attach, direction: Direction, packet: Packet) -> Event {
        match (attach, direction) {
            (Attach::Host(host), Direction::Up) => Event::Route {
                net: self.hosts[host].net,
                packet,
            },
            (Attach::Nat(nat), Direction::Up) => Event::Route {
                net: self.nats[nat].outside_net,
                packet,
            },
            (Attach::Host(host), Direction::Down) => Event::Deliver {
                host,
                packet,
                faults_checked: false,
            },
            (Attach::Nat(nat), Direction::Down) => Event::NatIn { nat, packet },
        }
    }

    /// A packet reached the router of network `net`.
    pub(crate) fn on_route(&mut self, net: usize, mut packet: Packet) {
        let Some(ends) = packet::endpoints(&packet.bytes) else {
            return self.drop_packet(packet, DropReason::Malformed, Place::Router(NetId(net)));
        };
        if let Some(&attach) = self.nets[net].addrs.get(ends.dst.ip()) {
            return self.transmit_link(attach, Direction::Down, packet, self.now_ns);
        }
        let Some(nat) = self.nets[net].nat else {
            return self.drop_packet(packet, DropReason::NoRoute, Place::Router(NetId(net)));
        };

        // Leaving the private network: the NAT maps the source (or loops the packet back).
        let outbound = match self.nats[nat].nat.outbound(self.now, ends.src, ends.dst) {
            Ok(outbound) => outbound,
            Err(why) => {
                return self.drop_packet(packet, DropReason::Nat(why), Place::Nat(NatId(nat)));
            }
        };
        if outbound.created {
            let kind = TraceKind::Mapped {
                nat: NatId(nat),
                internal: ends.src,
                external: outbound.external,
                remote: ends.dst,
            };
            self.record(packet.class, kind);
        }
        if ends.dst.ip() == &self.nats[nat].nat.public_ip() {
            return self.hairpin(nat, net, packet, outbound.external, ends);
        }
        packet::rewrite_src(&mut packet.bytes, outbound.external);
        self.capture_nat(nat, &packet.bytes);
        self.transmit_link(Attach::Nat(nat), Direction::Up, packet, self.now_ns);
    }

    /// A packet from inside a NAT to the NAT's own public address.
    fn hairpin(
        &mut self,
        nat: usize,
        net: usize,
        mut packet: Packet,
        external_src: SocketAddrV4,
        ends: Endpoints,
    ) {
        if !self.nats[nat].nat.config().hairpinning {
            return self.drop_packet(
                packet,
                DropReason::Nat(NatDrop::NoHairpin),
                Place::Nat(NatId(nat)),
            );
        }
        let internal = match self.nats[nat]
            .nat
            .inbound(self.now, ends.dst.port(), external_src)
        {
            Ok(internal) => internal,
            Err(why) => {
                return self.drop_packet(packet, DropReason::Nat(why), Place::Nat(NatId(nat)));
            }
        };
        packet::rewrite_src(&mut packet.bytes, external_src);
        packet::rewrite_dst(&mut packet.bytes, internal);
        match self.nets[net].addrs.get(internal.ip()).copied() {
            Some(attach) => self.transmit_link(attach, Direction::Down, packet, self.now_ns),
            None => self.drop_packet(packet, DropReason::NoRoute, Place::Router(NetId(net))),
        }
    }

    /// A packet reached a NAT's public side from its parent network.
    pub(crate) fn on_nat_inbound(&mut self, nat: usize, mut packet: Packet) {
        let Some(ends) = packet::endpoints(&packet.bytes) else {
            return self.drop_packet(packet, DropReason::Malformed, Place::Nat(NatId(nat)));
        };
        self.capture_nat(nat, &packet.bytes);
        let internal = match self.nats[nat]
            .nat
            .inbound(self.now, ends.dst.port(), ends.src)
        {
            Ok(internal) => internal,
            Err(why) => {
                return self.drop_packet(packet, DropReason::Nat(why), Place::Nat(NatId(nat)));
            }
        };
        packet::rewrite_dst(&mut packet.bytes, internal);
        let inside = NatId(nat).inside().0;
        match self.nets[inside].addrs.get(internal.ip()).copied() {
            Some(attach) => self.transmit_link(attach, Direction::Down, packet, self.now_ns),
            None => self.drop_packet(
                packet,
                DropReason::NoRoute,
                Place::Router(NatId(nat).inside()),
            ),
        }
    }

    /// A packet reached a host's interface: partitions, holds and delivery-stage faults apply,
    /// then the machine gets it.
    pub(crate) fn on_deliver(&mut self, host: usize, packet: Packet, faults_checked: bool) {
        if self.hosts[host].machine.is_none() {
            return self.drop_packet(packet, DropReason::HostDown, Place::Host(HostId(host)));
        }
        if self.is_blocked(packet.origin, host) {
            return self.drop_packet(packet, DropReason::Partitioned, Place::Host(HostId(host)));
        }
        if self.holds.contains(&(packet.origin, host)) {
            self.held.push((host, packet));
            return;
        }
        if !faults_checked && !self.faults.is_empty() {
            let Some(packet) = self.deliver_faults(host, packet) else {
                return;
            };
            return self.hand_to_machine(host, packet);
        }
        self.hand_to_machine(host, packet);
    }

    /// Applies delivery-stage fault rules; returns the packet if it is to be delivered now.
    fn deliver_faults(&mut self, host: usize, packet: Packet) -> Option<Packet> {
        let Some(ends) = packet::endpoints(&packet.bytes) else {
            // Left for the machine hand-off, which drops and traces it as malformed.
            return Some(packet);
        };
        let payload = packet::payload(&packet.bytes);
        let facts = PacketFacts {
            stage: Stage::Deliver,
            class: packet.class,
            from: HostId(packet.origin),
            to: Some(HostId(host)),
            payload,
        };
        match self.check_faults(&facts, ends.src, ends.dst) {
            None => Some(packet),
            Some((rule, FaultAction::Drop)) => {
                self.drop_packet(packet, DropReason::Fault(rule), Place::Host(HostId(host)));
                None
            }
            Some((_, FaultAction::Delay(delay))) => {
                let event = Event::Deliver {
                    host,
                    packet,
                    faults_checked: true,
                };
                self.queue.push(self.now_ns + nanos(delay), event);
                None
            }
            Some((_, FaultAction::Duplicate)) => {
                let copy = self.copy_packet(&packet);
                self.queue.push(
                    self.now_ns,
                    Event::Deliver {
                        host,
                        packet: copy,
                        faults_checked: true,
                    },
                );
                Some(packet)
            }
        }
    }

    fn hand_to_machine(&mut self, host: usize, packet: Packet) {
        let Some((ends, payload)) = packet::parse(&packet.bytes) else {
            return self.drop_packet(packet, DropReason::Malformed, Place::Host(HostId(host)));
        };
        let state = &self.hosts[host];
        if *ends.dst.ip() != state.addr {
            return self.drop_packet(packet, DropReason::NoRoute, Place::Host(HostId(host)));
        }
        if !state.udp_ports.contains(&ends.dst.port()) {
            return self.drop_packet(packet, DropReason::NoSocket, Place::Host(HostId(host)));
        }

        self.stats.delivered += 1;
        let kind = TraceKind::Delivered {
            host: HostId(host),
            src: ends.src,
            dst: ends.dst,
            len: payload.len(),
        };
        self.record(packet.class, kind);
        self.capture_host(host, &packet.bytes);
        if let Some(machine) = self.hosts[host].machine.as_deref_mut() {
            let (local, from) = (SocketAddr::V4(ends.dst), SocketAddr::V4(ends.src));
            machine.handle_datagram(self.now, local, from, payload);
        }
        self.recycle(packet);
        self.drive(host);
    }

    /// Returns the index and action of the first fault rule that fires on this packet.
    fn check_faults(
        &mut self,
        facts: &PacketFacts<'_>,
        src: SocketAddrV4,
        dst: SocketAddrV4,
    ) -> Option<(usize, FaultAction)> {
        if self.faults.is_empty() {
            return None;
        }
        let rng = &mut self.fault_rng;
        let (rule, action) = self
            .faults
            .iter_mut()
            .enumerate()
            .find_map(|(index, rule)| rule.check(facts, rng).map(|action| (index, action)))?;
        let name = match action {
            FaultAction::Drop => return Some((rule, action)),
            FaultAction::Delay(_) => "delay",
            FaultAction::Duplicate => "duplicate",
        };
        self.record(
            facts.class,
            TraceKind::Faulted {
                rule,
                action: name,
                src,
                dst,
            },
        );
        Some((rule, action))
    }

    pub(crate) fn drop_packet(&mut self, packet: Packet, reason: DropReason, place: Place) {
        self.count_drop(reason);
        let unknown = SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);
        let ends = packet::endpoints(&packet.bytes).unwrap_or(Endpoints {
            src: unknown,
            dst: unknown,
        });
        let len = packet.bytes.len().saturating_sub(packet::HEADER_LEN);
        self.record(
            packet.class,
            TraceKind::Dropped {
                reason,
                place,
                src: ends.src,
                dst: ends.dst,
                len,
            },
        );
        self.recycle(packet);
    }

    fn count_drop(&mut self, reason: DropReason) {
        *self.stats.drops.entry(reason).or_insert(0) += 1;
    }

    fn copy_packet(&mut self, packet: &Packet) -> Packet {
        let mut bytes = self.pool.pop().unwrap_or_default();
        bytes.clear();
        bytes.extend_from_slice(&packet.bytes);
        Packet {
            bytes,
            origin: packet.origin,
            class: packet.class,
        }
    }

    fn recycle(&mut self, packet: Packet) {
        if self.pool.len() < 4096 {
            self.pool.push(packet.bytes);
        }
    }

    fn capture_host(&mut self, host: usize, bytes: &[u8]) {
        let at = std::time::Duration::from_nanos(self.now_ns);
        if let Some(capture) = &mut self.hosts[host].capture {
            capture.push(at, bytes);
        }
    }

    fn capture_nat(&mut self, nat: usize, bytes: &[u8]) {
        let at = std::time::Duration::from_nanos(self.now_ns);
        if let Some(capture) = &mut self.nats[nat].capture {
            capture.push(at, bytes);
        }
    }
}
