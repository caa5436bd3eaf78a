//! Datagrams (protocol 0x02), network broadcast, and answering control pings (protocol 0x03).
//!
//! A datagram is one packet with flags, sequence, acknowledgement and window all zero, as v0.5
//! sends them. Received datagrams with a payload become [`TransportEvent::Datagram`] events,
//! whatever their destination port (v0.5 hands every datagram to every client); at most
//! `max_pending_datagrams` wait in the event queue, further ones are dropped and counted.

use std::time::Instant;

use super::{Queued, Transport};
use crate::transport::types::{DatagramError, TransportEvent};
use crate::wire::addr::{Addr, AddrPort};
use crate::wire::packet::{Flags, PacketRepr, Protocol};

impl Transport {
    /// Queues one datagram from `src_port` (0 picks a random ephemeral port) to `dst`.
    ///
    /// # Errors
    ///
    /// [`DatagramError::TooLarge`], [`DatagramError::Broadcast`] (use
    /// [`broadcast_datagram`](Self::broadcast_datagram)), [`DatagramError::QueueFull`],
    /// [`DatagramError::NoEphemeralPort`].
    pub fn send_datagram(
        &mut self,
        now: Instant,
        src_port: u16,
        dst: AddrPort,
        data: &[u8],
    ) -> Result<(), DatagramError> {
        if dst.addr.is_broadcast() {
            return Err(DatagramError::Broadcast);
        }
        self.check_datagram(data)?;
        let src_port = self.datagram_port(src_port)?;
        self.queue_datagram(src_port, dst, data)?;
        let _ = now;
        Ok(())
    }

    /// Sends one datagram to `dst_port` on every member of the network except this node (what
    /// v0.5's unreachable broadcast code does); `members` comes from the registry. Returns how
    /// many copies were queued; stops early if the queue fills.
    ///
    /// # Errors
    ///
    /// As [`send_datagram`](Self::send_datagram), for the size and port checks.
    // Limitation: the transport keeps no network membership, so broadcast needs the member
    // list from the caller (the registry's node list).
    pub fn broadcast_datagram(
        &mut self,
        now: Instant,
        src_port: u16,
        members: &[Addr],
        dst_port: u16,
        data: &[u8],
    ) -> Result<usize, DatagramError> {
        self.check_datagram(data)?;
        let src_port = self.datagram_port(src_port)?;
        let mut sent = 0;
        for &member in members {
            if member == self.local || member.is_broadcast() {
                continue;
            }
            if self
                .queue_datagram(src_port, AddrPort::new(member, dst_port), data)
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        let _ = now;
        Ok(sent)
    }

    pub(super) fn input_datagram(&mut self, packet: &PacketRepr<'_>) {
        if packet.payload.is_empty() {
            self.stats.packets_dropped += 1;
            return;
        }
        if self.pending_datagrams >= self.config.max_pending_datagrams {
            self.stats.datagrams_dropped += 1;
            return;
        }
        self.pending_datagrams += 1;
        self.stats.datagrams_received += 1;
        self.events.push_back(TransportEvent::Datagram {
            src: packet.src_addr_port(),
            dst_port: packet.dst_port,
            data: packet.payload.to_vec(),
        });
    }

    /// Control protocol: a ping to port 0 is answered with a pong carrying the same payload,
    /// sequence = ping sequence, ack = ping sequence + 1 (v0.5 §5.3). A packet with ACK set is
    /// a pong and is never answered, so two nodes cannot ping-pong forever as v0.5 can.
    pub(super) fn input_control(&mut self, packet: &PacketRepr<'_>) {
        if packet.dst_port != 0 || packet.flags.contains(Flags::ACK) {
            self.stats.packets_dropped += 1;
            return;
        }
        self.enqueue(Queued {
            dst: packet.src,
            protocol: Protocol::Control,
            flags: Flags::ACK,
            src_port: 0,
            dst_port: packet.src_port,
            seq: packet.seq,
            ack: packet.seq.wrapping_add(1),
            payload: packet.payload.to_vec(),
        });
    }

    fn check_datagram(&self, data: &[u8]) -> Result<(), DatagramError> {
        let max = self
            .config
            .max_datagram_size
            .min(crate::wire::packet::MAX_PAYLOAD_LEN);
        if data.len() > max {
            return Err(DatagramError::TooLarge {
                len: data.len(),
                max,
            });
        }
        Ok(())
    }

    fn datagram_port(&mut self, src_port: u16) -> Result<u16, DatagramError> {
        if src_port != 0 {
            return Ok(src_port);
        }
        self.ports
            .ephemeral(&mut self.rng)
            .ok_or(DatagramError::NoEphemeralPort)
    }

    fn queue_datagram(
        &mut self,
        src_port: u16,
        dst: AddrPort,
        data: &[u8],
    ) -> Result<(), DatagramError> {
        let queued = Queued {
            dst: dst.addr,
            protocol: Protocol::Datagram,
            flags: Flags::EMPTY,
            src_port,
            dst_port: dst.port,
            seq: 0,
            ack: 0,
            payload: data.to_vec(),
        };
        if !self.enqueue(queued) {
            return Err(DatagramError::QueueFull);
        }
        self.stats.datagrams_sent += 1;
        Ok(())
    }
}
