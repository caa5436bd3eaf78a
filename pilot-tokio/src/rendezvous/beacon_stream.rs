//! Beacon streams: the beacon served over TCP, on the beacon's own port number, for nodes whose
//! UDP to the beacon is blocked (a pilot-rs extension; v0.5 beacons speak UDP only, and a v0.5
//! node never connects here).
//!
//! Each stream carries beacon datagrams framed as a 2-byte big-endian length and the datagram,
//! both ways (`pilot_proto::wire::beacon_stream`). The beacon sees every stream as a source address
//! of its own in `fd00::/64`, so its replies, punch commands and relay deliveries for that node
//! come back here and are framed onto the stream instead of sent over UDP.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::time::Instant;

use pilot_proto::beacon::BeaconServer;
use pilot_proto::wire::beacon_stream::{pop_frame, push_frame};
use tokio::sync::mpsc;

/// Beacon streams open at once at most; later ones are closed at once.
const MAX_STREAMS: usize = 1024;
/// Unframed bytes buffered per stream at most (a few largest datagrams).
const MAX_INBOX: usize = 4 * (2 + 65_535);
/// Frames queued towards one stream before it is closed as not reading.
pub(super) const WRITE_QUEUE: usize = 256;

/// One beacon stream as the rendezvous core sees it.
#[derive(Debug)]
struct Conn {
    source: SocketAddr,
    inbox: Vec<u8>,
    writer: mpsc::Sender<Vec<u8>>,
}

/// Every open beacon stream, by id and by the source address the beacon knows it as.
#[derive(Debug, Default)]
pub(super) struct BeaconStreams {
    conns: HashMap<u64, Conn>,
    by_source: HashMap<SocketAddr, u64>,
}

impl BeaconStreams {
    /// A stream was accepted; its frames go to `writer`.
    pub(super) fn opened(&mut self, id: u64, writer: mpsc::Sender<Vec<u8>>) {
        if self.conns.len() >= MAX_STREAMS {
            return tracing::debug!(id, "too many beacon streams; refused");
        }
        let source = source_for(id);
        let inbox = Vec::new();
        self.conns.insert(
            id,
            Conn {
                source,
                inbox,
                writer,
            },
        );
        self.by_source.insert(source, id);
    }

    /// Bytes arrived on a stream: each complete frame goes to the beacon.
    pub(super) fn bytes(&mut self, now: Instant, id: u64, bytes: &[u8], beacon: &mut BeaconServer) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.inbox.len() + bytes.len() > MAX_INBOX {
            tracing::debug!(id, "beacon stream sent an oversized frame; closed");
            return self.closed(id);
        }
        conn.inbox.extend_from_slice(bytes);
        while let Some(datagram) = pop_frame(&mut conn.inbox) {
            beacon.handle_datagram(now, conn.source, &datagram);
        }
    }

    /// A stream ended.
    pub(super) fn closed(&mut self, id: u64) {
        if let Some(conn) = self.conns.remove(&id) {
            self.by_source.remove(&conn.source);
        }
    }

    /// Sends a beacon datagram for `dst` down its stream. Returns false when `dst` is not a
    /// stream (send it over UDP).
    pub(super) fn route(&mut self, dst: SocketAddr, datagram: &[u8]) -> bool {
        let Some(&id) = self.by_source.get(&dst) else {
            return false;
        };
        let mut frame = Vec::with_capacity(2 + datagram.len());
        if !push_frame(&mut frame, datagram) {
            return true;
        }
        let full = self
            .conns
            .get(&id)
            .is_some_and(|c| c.writer.try_send(frame).is_err());
        if full {
            tracing::debug!(id, "beacon stream not reading; closed");
            self.closed(id);
        }
        true
    }
}

/// The address the beacon knows stream `id` by.
fn source_for(id: u64) -> SocketAddr {
    let [a, b, c, d] = [
        (id >> 48) as u16,
        (id >> 32) as u16,
        (id >> 16) as u16,
        id as u16,
    ];
    SocketAddr::from((Ipv6Addr::new(0xfd00, 0, 0, 0, a, b, c, d), 9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_has_its_own_source_and_replies_find_it() {
        let mut streams = BeaconStreams::default();
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, _rx2) = mpsc::channel(4);
        streams.opened(1, tx1);
        streams.opened(2, tx2);
        assert_ne!(source_for(1), source_for(2));
        assert!(streams.route(source_for(1), b"hi"));
        assert_eq!(rx1.try_recv().ok(), Some(vec![0, 2, b'h', b'i']));
        assert!(!streams.route("127.0.0.1:9".parse().expect("addr"), b"udp"));
        streams.closed(1);
        assert!(!streams.route(source_for(1), b"gone"));
    }
}
