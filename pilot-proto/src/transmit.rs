//! Types that cross the driver boundary: what a state machine asks the driver to send.
//!
//! A `Transmit` holds only metadata; the bytes are written into a buffer the driver owns and
//! passes to `poll_transmit`, so the hot path allocates nothing.

use std::net::SocketAddr;

/// One UDP datagram the driver must send: `len` bytes at the start of the buffer it passed to
/// `poll_transmit`, to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a transmit must be sent or the protocol stalls"]
pub struct Transmit {
    /// Where to send the datagram.
    pub dst: SocketAddr,
    /// How many bytes of the caller's buffer make up the datagram.
    pub len: usize,
}

/// Datagrams for one destination gathered to leave in one send with UDP segmentation offload
/// (GSO): every datagram of a run has the run's segment size except the last, which may be
/// shorter. Drivers push each [`Transmit`] and send the run when [`TransmitRun::push`] says it
/// is complete, when the next datagram does not join it, and after the last `poll_transmit`.
///
/// Only bookkeeping lives here; the driver owns the socket and the send call.
#[derive(Debug, Clone)]
pub struct TransmitRun {
    bytes: Vec<u8>,
    dst: Option<SocketAddr>,
    segment: usize,
    segments: usize,
    max_segments: usize,
    max_bytes: usize,
}

impl TransmitRun {
    /// An empty run of at most `max_segments` datagrams (1 turns batching off) and
    /// `max_bytes` bytes in all.
    #[must_use]
    pub fn new(max_segments: usize, max_bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(max_bytes),
            dst: None,
            segment: 0,
            segments: 0,
            max_segments: max_segments.max(1),
            max_bytes,
        }
    }

    /// Changes the segment limit (the kernel can withdraw offload at run time); applies from
    /// the next run.
    pub fn set_max_segments(&mut self, max_segments: usize) {
        self.max_segments = max_segments.max(1);
    }

    /// Whether a datagram of `len` bytes for `dst` can join this run. An empty run takes any.
    #[must_use]
    pub fn accepts(&self, dst: SocketAddr, len: usize) -> bool {
        self.dst.is_none()
            || (self.dst == Some(dst)
                && len <= self.segment
                && self.bytes.len() + len <= self.max_bytes
                && self.segments < self.max_segments)
    }

    /// Appends `datagram`, which must be [accepted](TransmitRun::accepts) (otherwise the run
    /// is left as it was and `true` is returned so that the caller sends it first). True when
    /// the run must be sent now: it is full, or ended by a shorter datagram.
    pub fn push(&mut self, dst: SocketAddr, datagram: &[u8]) -> bool {
        if !self.accepts(dst, datagram.len()) {
            return true;
        }
        if self.dst.is_none() {
            self.dst = Some(dst);
            self.segment = datagram.len();
        }
        self.bytes.extend_from_slice(datagram);
        self.segments += 1;
        datagram.len() < self.segment
            || self.segments >= self.max_segments
            || self.bytes.len() + self.segment > self.max_bytes
    }

    /// The run to send: destination, the datagrams back to back, and the segment size when
    /// there is more than one datagram. `None` when empty.
    #[must_use]
    pub fn contents(&self) -> Option<(SocketAddr, &[u8], Option<usize>)> {
        let dst = self.dst?;
        let segment = (self.segments > 1).then_some(self.segment);
        Some((dst, &self.bytes, segment))
    }

    /// How many datagrams the run holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.segments
    }

    /// True when the run holds no datagram.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.segments == 0
    }

    /// Empties the run (after it was sent or dropped).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.dst = None;
        self.segment = 0;
        self.segments = 0;
    }
}

/// Splits what one read returned into datagrams: `stride` is the size of each (the receive
/// offload's segment size), the last may be shorter. A zero stride means one datagram.
pub fn split_received(bytes: &mut [u8], stride: usize) -> impl Iterator<Item = &mut [u8]> {
    let stride = if stride == 0 {
        bytes.len().max(1)
    } else {
        stride
    };
    bytes.chunks_mut(stride)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Sends runs the way a driver does and returns what left: (dst, datagrams).
    fn drive(run: &mut TransmitRun, input: &[(u16, Vec<u8>)]) -> Vec<(SocketAddr, Vec<Vec<u8>>)> {
        let mut sent = Vec::new();
        let mut send = |run: &mut TransmitRun| {
            if let Some((dst, bytes, segment)) = run.contents() {
                let parts = match segment {
                    Some(s) => bytes.chunks(s).map(<[u8]>::to_vec).collect(),
                    None => vec![bytes.to_vec()],
                };
                sent.push((dst, parts));
            }
            run.clear();
        };
        for (port, datagram) in input {
            if !run.accepts(addr(*port), datagram.len()) {
                send(run);
            }
            if run.push(addr(*port), datagram) {
                send(run);
            }
        }
        send(run);
        sent
    }

    #[test]
    fn equal_datagrams_to_one_peer_make_one_run() {
        let mut run = TransmitRun::new(64, 64_000);
        let input: Vec<_> = (0..10).map(|i| (1, vec![i; 1200])).collect();
        let sent = drive(&mut run, &input);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.len(), 10);
    }

    #[test]
    fn a_shorter_datagram_ends_the_run_and_a_longer_one_starts_another() {
        let mut run = TransmitRun::new(64, 64_000);
        let input = vec![
            (1, vec![1; 100]),
            (1, vec![2; 50]),
            (1, vec![3; 100]),
            (1, vec![4; 200]),
        ];
        let sent = drive(&mut run, &input);
        let sizes: Vec<Vec<usize>> = sent
            .iter()
            .map(|(_, d)| d.iter().map(Vec::len).collect())
            .collect();
        assert_eq!(sizes, vec![vec![100, 50], vec![100], vec![200]]);
    }

    #[test]
    fn limits_bound_a_run() {
        let mut run = TransmitRun::new(4, 64_000);
        let input: Vec<_> = (0..9).map(|_| (1, vec![0; 10])).collect();
        assert_eq!(drive(&mut run, &input).len(), 3);
        let mut run = TransmitRun::new(64, 1000);
        let input: Vec<_> = (0..9).map(|_| (1, vec![0; 300])).collect();
        assert_eq!(drive(&mut run, &input).len(), 3);
    }

    proptest! {
        /// Whatever the order, sizes and destinations, runs carry every datagram, unchanged,
        /// in order, to its own destination, within the limits.
        #[test]
        fn runs_carry_every_datagram_in_order(
            input in proptest::collection::vec(
                (1u16..4, proptest::collection::vec(any::<u8>(), 1..300)),
                0..200,
            ),
            max_segments in 1usize..70,
        ) {
            let mut run = TransmitRun::new(max_segments, 4000);
            let sent = drive(&mut run, &input);
            let mut flat = Vec::new();
            for (dst, datagrams) in &sent {
                prop_assert!(datagrams.len() <= max_segments);
                prop_assert!(datagrams.iter().map(Vec::len).sum::<usize>() <= 4000);
                flat.extend(datagrams.iter().map(|d| (dst.port(), d.clone())));
            }
            prop_assert_eq!(flat, input);
        }

        /// Splitting by stride gives back datagrams of that size, the last one shorter.
        #[test]
        fn split_received_covers_the_buffer(len in 0usize..5000, stride in 0usize..1500) {
            let mut bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let parts: Vec<Vec<u8>> =
                split_received(&mut bytes, stride).map(|p| p.to_vec()).collect();
            prop_assert_eq!(parts.concat(), (0..len).map(|i| i as u8).collect::<Vec<_>>());
            if stride > 0 {
                prop_assert!(parts.iter().all(|p| p.len() <= stride));
            }
        }
    }
}
