//! Byte queues (`VecDeque<u8>`) shared by the transport's receive buffer and the in-process
//! broker clients' outboxes: taking their front into a caller's buffer with slice copies.

use std::collections::VecDeque;

/// Moves up to `out.len()` bytes from the front of `queue` into `out`; returns the count.
pub(crate) fn take_front(queue: &mut VecDeque<u8>, out: &mut [u8]) -> usize {
    let count = out.len().min(queue.len());
    let (front, back) = queue.as_slices();
    let first = count.min(front.len());
    out[..first].copy_from_slice(&front[..first]);
    out[first..count].copy_from_slice(&back[..count - first]);

    queue.drain(..count);
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Taking the front in pieces of any size, from a queue that wraps, gives back every
        /// byte in order.
        #[test]
        fn pieces_of_any_size_come_out_in_order(
            pushes in proptest::collection::vec(1usize..40, 1..40),
            takes in proptest::collection::vec(0usize..50, 1..40),
        ) {
            let mut queue = VecDeque::with_capacity(16);
            let (mut pushed, mut got, mut next) = (Vec::new(), Vec::new(), 0u8);
            let mut takes = takes.iter().cycle();
            for len in pushes {
                for _ in 0..len {
                    queue.push_back(next);
                    pushed.push(next);
                    next = next.wrapping_add(1);
                }
                let mut out = vec![0u8; *takes.next().unwrap_or(&1)];
                let n = take_front(&mut queue, &mut out);
                proptest::prop_assert!(n <= out.len());
                got.extend_from_slice(&out[..n]);
            }
            let mut rest = vec![0u8; queue.len()];
            let n = take_front(&mut queue, &mut rest);
            got.extend_from_slice(&rest[..n]);
            proptest::prop_assert!(queue.is_empty());
            proptest::prop_assert_eq!(got, pushed);
        }
    }
}
