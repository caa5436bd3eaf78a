//! Beacon datagrams on a byte stream (a pilot-rs extension for nodes whose UDP to the beacon
//! is blocked; v0.5 has no such stream). Each datagram travels as a 2-byte big-endian length
//! followed by the datagram, in both directions.

/// Largest datagram a frame can carry.
pub const MAX_DATAGRAM: usize = u16::MAX as usize;

/// Appends `datagram` to `out` as one frame. Returns false, appending nothing, when the
/// datagram is longer than [`MAX_DATAGRAM`].
pub fn push_frame(out: &mut Vec<u8>, datagram: &[u8]) -> bool {
    let Ok(len) = u16::try_from(datagram.len()) else {
        return false;
    };
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(datagram);
    true
}

/// Removes and returns the first complete frame's datagram from `inbox`; `None` while the
/// frame at the front is still incomplete.
pub fn pop_frame(inbox: &mut Vec<u8>) -> Option<Vec<u8>> {
    let header: [u8; 2] = inbox.get(..2)?.try_into().ok()?;
    let len = usize::from(u16::from_be_bytes(header));
    let datagram = inbox.get(2..2 + len)?.to_vec();
    inbox.drain(..2 + len);
    Some(datagram)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn partial_frames_wait_for_their_bytes() {
        let mut inbox = vec![0, 3, b'a', b'b', b'c', 0, 2, b'x'];
        assert_eq!(pop_frame(&mut inbox), Some(b"abc".to_vec()));
        assert_eq!(pop_frame(&mut inbox), None);
        inbox.push(b'y');
        assert_eq!(pop_frame(&mut inbox), Some(b"xy".to_vec()));
        assert!(inbox.is_empty());
        assert!(!push_frame(&mut inbox, &vec![0; MAX_DATAGRAM + 1]));
        assert!(inbox.is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut inbox = bytes;
            while pop_frame(&mut inbox).is_some() {}
        }

        #[test]
        fn frames_come_back_whole(datagrams in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let mut wire = Vec::new();
            for d in &datagrams {
                prop_assert!(push_frame(&mut wire, d));
            }
            let mut back = Vec::new();
            while let Some(d) = pop_frame(&mut wire) {
                back.push(d);
            }
            prop_assert_eq!(back, datagrams);
            prop_assert!(wire.is_empty());
        }
    }
}
