//! The tunnel socket's batched I/O. Datagrams the agent emits back to back for one peer, of one
//! size, leave in one `sendmsg` with UDP segmentation offload (GSO): the kernel cuts the run
//! into datagrams, so a bulk stream costs one trip through the socket layer per run instead of
//! one per datagram. On receive, generic receive offload (GRO) hands over such runs in one read;
//! they are split here by their stride and given to the agent one datagram at a time.
//!
//! `quinn-udp` sets the socket options and builds the control messages. On a kernel or device
//! without offload it sends one datagram per call and reads one per buffer, which is what the
//! driver did before; the peers see the same datagrams either way.
//!
//! # Limitations
//!
//! - A run the kernel refuses (full send buffer) is dropped whole, like a single datagram was
//!   before, and so is every run until the reactor has seen the socket writable again: the
//!   transport retransmits what is lost. The driver does not wait for writability.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use pilot_proto::transmit::{TransmitRun, split_received};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// The largest run sent in one call, in bytes (a UDP payload is at most 65,507 bytes with its
/// headers; runs stay a little under).
const MAX_RUN_BYTES: usize = 64_000;
/// The receive buffer: a GRO read holds at most 64 KiB of datagrams.
const RECV_BUF: usize = 96 * 1024;

/// The tunnel socket with its offload state, the run being built and the receive buffer.
#[derive(Debug)]
pub(crate) struct UdpIo {
    socket: UdpSocket,
    state: UdpSocketState,
    run: TransmitRun,
    recv_buf: Vec<u8>,
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
        let run = TransmitRun::new(state.max_gso_segments(), MAX_RUN_BYTES);
        Ok(Self {
            socket,
            state,
            run,
            recv_buf: vec![0u8; RECV_BUF],
        })
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

    /// Sends the run being built, if any.
    pub(crate) fn flush(&mut self) {
        let Some((destination, contents, segment_size)) = self.run.contents() else {
            return;
        };
        let transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        let sent = self.socket.try_io(Interest::WRITABLE, || {
            self.state.try_send((&self.socket).into(), &transmit)
        });
        if let Err(e) = sent {
            // Limitation: a refused run is dropped whole; the transport retransmits.
            tracing::debug!(error = %e, datagrams = self.run.len(), "datagrams not sent");
        }
        self.run.clear();
        self.run.set_max_segments(self.state.max_gso_segments());
    }

    /// Waits until the socket may have datagrams to read.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Reads once without waiting and gives each datagram read to `each`. False when nothing
    /// was waiting (or the read failed).
    pub(crate) fn try_recv(&mut self, mut each: impl FnMut(SocketAddr, &mut [u8])) -> bool {
        let mut meta = [RecvMeta::default()];
        let read = self.socket.try_io(Interest::READABLE, || {
            let mut bufs = [IoSliceMut::new(&mut self.recv_buf)];
            self.state.recv((&self.socket).into(), &mut bufs, &mut meta)
        });
        if !matches!(read, Ok(1..)) {
            return false;
        }

        let [meta] = meta;
        for datagram in split_received(&mut self.recv_buf[..meta.len], meta.stride) {
            each(meta.addr, datagram);
        }
        true
    }
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
    use std::time::Duration;

    async fn bound() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.expect("bind")
    }

    /// Datagrams of `sizes`, each filled with its index.
    fn datagrams(sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, n)| vec![i as u8; *n])
            .collect()
    }

    #[tokio::test]
    async fn the_kernels_fragmentation_setting_is_kept() {
        let socket = bound().await;
        let before = rustix::net::sockopt::ip_mtu_discover(&socket).expect("get");
        let io = UdpIo::new(socket).expect("offload");
        let after = rustix::net::sockopt::ip_mtu_discover(&io.socket).expect("get");
        assert_eq!(before, after);
    }

    #[tokio::test]
    async fn runs_out_and_coalesced_reads_in_carry_every_datagram_in_order() {
        let mut tx = UdpIo::new(bound().await).expect("offload");
        let mut rx = UdpIo::new(bound().await).expect("offload");
        let dst = rx.socket.local_addr().expect("addr");
        let sent = datagrams(&[1200, 1200, 1200, 700, 1200, 1200, 90, 1300]);
        // Sends are tried only once the reactor has seen the socket writable.
        tx.socket.writable().await.expect("writable");
        for d in &sent {
            tx.push(dst, d);
        }
        tx.flush();

        let mut got = Vec::new();
        let reading = async {
            while got.len() < sent.len() {
                rx.readable().await.expect("readable");
                while rx.try_recv(|_, d| got.push(d.to_vec())) {}
            }
        };
        tokio::time::timeout(Duration::from_secs(5), reading)
            .await
            .expect("every datagram within 5 s");
        assert_eq!(got, sent);
    }
}
