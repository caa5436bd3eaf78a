//! Any beacon-stream byte sequence: unframing never panics, and the datagrams it yields frame
//! back to exactly the bytes consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_proto::wire::beacon_stream::{pop_frame, push_frame};

fuzz_target!(|data: &[u8]| {
    let mut inbox = data.to_vec();
    let mut again = Vec::new();
    while let Some(datagram) = pop_frame(&mut inbox) {
        assert!(push_frame(&mut again, &datagram), "a received frame always re-frames");
    }
    assert_eq!(&again[..], &data[..data.len() - inbox.len()], "re-framed bytes differ");
});
