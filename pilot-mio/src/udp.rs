//! The tunnel socket's batched I/O for the mio loop. The core's datagrams for one peer, of one
//! size, are gathered in a [`TransmitRun`] and leave in one `sendmsg` with UDP segmentation
//! offload (GSO); receive offload (GRO) hands over runs of datagrams in one read, split here by
//! their stride. `quinn-udp` sets the socket options and falls back to one datagram per call
//! where the kernel refuses offload; peers see the same datagrams either way.
//!
//! A run that meets a full send buffer waits in a bounded queue until the socket is writable
//! (the driver registers `WRITABLE` interest while [`UdpIo::has_queued`] is true).

use std::collections::VecDeque;
use std::io::{self, ErrorKind, IoSliceMut};
use std::net::SocketAddr;

use mio::net::UdpSocket;
use pilot_proto::transmit::{TransmitRun, split_received};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};

/// Datagrams waiting for a writable socket at most (counted inside their runs).
pub(crate) const MAX_QUEUED_DATAGRAMS: usize = 1024;
/// The largest run sent in one call, in bytes (under UDP's 65,507-byte payload limit).
const MAX_RUN_BYTES: usize = 64_000;
/// The receive buffer: a GRO read holds at most 64 KiB of datagrams.
const RECV_BUF: usize = 96 * 1024;

/// A run that waits for the socket: destination, datagrams back to back, segment size.
#[derive(Debug)]
struct Queued {
    dst: SocketAddr,
    bytes: Vec<u8>,
    segment: Option<usize>,
    datagrams: usize,
}

/// What one read returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// One read's datagrams were handed over.
    Some,
    /// Nothing is waiting.
    Empty,
    /// The read failed (for example an ICMP error surfacing); the socket stays usable.
    Failed,
}

/// The socket, its offload state, the run being built and the queue for a full socket.
#[derive(Debug)]
pub(crate) struct UdpIo {
    socket: UdpSocket,
    state: UdpSocketState,
    run: TransmitRun,
    queue: VecDeque<Queued>,
    queued_datagrams: usize,
    rx: Vec<u8>,
}

impl UdpIo {
    /// Takes over `socket` and turns on the offloads the kernel offers.
    pub(crate) fn new(socket: UdpSocket) -> io::Result<Self> {
        let state = offload_state(&socket)?;
        tracing::debug!(
            gso = state.max_gso_segments(),
            gro = state.gro_segments(),
            "tunnel socket offloads"
        );
        Ok(Self {
            run: TransmitRun::new(state.max_gso_segments(), MAX_RUN_BYTES),
            socket,
            state,
            queue: VecDeque::new(),
            queued_datagrams: 0,
            rx: vec![0u8; RECV_BUF],
        })
    }

    /// The socket, for registering it with the poll.
    pub(crate) fn socket_mut(&mut self) -> &mut UdpSocket {
        &mut self.socket
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// True while runs wait for the socket to become writable.
    pub(crate) fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Queues one datagram for `dst`: it joins the run being built, or the run is sent first.
    pub(crate) fn push(&mut self, dst: SocketAddr, datagram: &[u8]) {
        if !self.run.accepts(dst, datagram.len()) {
            self.flush();
        }
        if self.run.push(dst, datagram) {
            self.flush();
        }
    }

    /// Sends the run being built (or queues it behind runs already waiting).
    pub(crate) fn flush(&mut self) {
        let Some((dst, bytes, segment)) = self.run.contents() else {
            return;
        };
        let datagrams = self.run.len();
        if self.queue.is_empty() {
            match send(&self.socket, &self.state, dst, bytes, segment) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => tracing::debug!(error = %e, %dst, "udp send failed"),
                Ok(()) => return self.clear_run(),
            }
        }
        if self.queued_datagrams + datagrams <= MAX_QUEUED_DATAGRAMS {
            let bytes = bytes.to_vec();
            self.queue.push_back(Queued {
                dst,
                bytes,
                segment,
                datagrams,
            });
            self.queued_datagrams += datagrams;
        }
        // Limitation: past MAX_QUEUED_DATAGRAMS a run is dropped; the transport retransmits.
        self.clear_run();
    }

    fn clear_run(&mut self) {
        self.run.clear();
        self.run.set_max_segments(self.state.max_gso_segments());
    }

    /// Sends queued runs until the socket is full again or the queue is empty.
    pub(crate) fn send_queued(&mut self) {
        while let Some(q) = self.queue.front() {
            match send(&self.socket, &self.state, q.dst, &q.bytes, q.segment) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => tracing::debug!(error = %e, dst = %q.dst, "udp send failed"),
                Ok(()) => {}
            }
            self.queued_datagrams -= q.datagrams;
            self.queue.pop_front();
        }
    }

    /// Reads once without waiting and gives each datagram to `each`.
    pub(crate) fn recv(&mut self, mut each: impl FnMut(SocketAddr, &mut [u8])) -> Received {
        let mut meta = [RecvMeta::default()];
        let mut bufs = [IoSliceMut::new(&mut self.rx)];
        match self.state.recv((&self.socket).into(), &mut bufs, &mut meta) {
            Ok(0) => return Received::Empty,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Received::Empty,
            Err(e) if e.kind() == ErrorKind::Interrupted => return Received::Failed,
            Err(e) => {
                // ICMP errors surface on UDP sockets (ECONNREFUSED); the socket stays usable.
                tracing::debug!(error = %e, "udp receive error");
                return Received::Failed;
            }
        }

        let [meta] = meta;
        for datagram in split_received(&mut self.rx[..meta.len], meta.stride) {
            each(meta.addr, datagram);
        }
        Received::Some
    }
}

/// One send call: a single datagram, or a run with its segment size.
fn send(
    socket: &UdpSocket,
    state: &UdpSocketState,
    destination: SocketAddr,
    contents: &[u8],
    segment_size: Option<usize>,
) -> io::Result<()> {
    let transmit = Transmit {
        destination,
        ecn: None,
        contents,
        segment_size,
        src_ip: None,
    };
    state.try_send(socket.into(), &transmit)
}

/// Turns on the offloads the kernel offers for `socket`, keeping its path-MTU behaviour.
///
/// `quinn-udp` forbids IP fragmentation, which suits QUIC (it probes the path MTU itself). This
/// transport does not probe: a datagram larger than a path's MTU (a full segment on a tunnel
/// path under 1,500 bytes, or a large port datagram) relies on the kernel fragmenting it, so
/// the socket's previous setting is put back.
fn offload_state(socket: &UdpSocket) -> io::Result<UdpSocketState> {
    use rustix::net::sockopt;

    let v4 = sockopt::ip_mtu_discover(socket).ok();
    let v6 = sockopt::ipv6_mtu_discover(socket).ok();
    let state = UdpSocketState::new(socket.into())?;
    if let Some(v4) = v4 {
        sockopt::set_ip_mtu_discover(socket, v4)?;
    }
    if let Some(v6) = v6 {
        sockopt::set_ipv6_mtu_discover(socket, v6)?;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn bound() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("bind")
    }

    /// Datagrams of `sizes`, each filled with its index.
    fn datagrams(sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, n)| vec![i as u8; *n])
            .collect()
    }

    #[test]
    fn the_kernels_fragmentation_setting_is_kept() {
        let socket = bound();
        let before = rustix::net::sockopt::ip_mtu_discover(&socket).expect("get");
        let io = UdpIo::new(socket).expect("offload");
        let after = rustix::net::sockopt::ip_mtu_discover(&io.socket).expect("get");
        assert_eq!(before, after);
    }

    #[test]
    fn a_run_arrives_as_the_datagrams_pushed() {
        let mut io = UdpIo::new(bound()).expect("offload");
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let dst = rx.local_addr().expect("addr");
        let sent = datagrams(&[1200, 1200, 1200, 1200, 700, 1200, 90]);
        for d in &sent {
            io.push(dst, d);
        }
        io.flush();

        let mut buf = [0u8; 2048];
        for want in &sent {
            let n = rx.recv(&mut buf).expect("datagram");
            assert_eq!(&buf[..n], want.as_slice());
        }
    }

    #[test]
    fn coalesced_reads_are_split_back_into_datagrams() {
        let mut io = UdpIo::new(bound()).expect("offload");
        let to = io.local_addr().expect("addr");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let sent = datagrams(&[1000; 40]);
        for d in &sent {
            tx.send_to(d, to).expect("send");
        }

        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < sent.len() && Instant::now() < deadline {
            if io.recv(|_, d| got.push(d.to_vec())) == Received::Empty {
                std::thread::yield_now();
            }
        }
        assert_eq!(got, sent);
    }
}
