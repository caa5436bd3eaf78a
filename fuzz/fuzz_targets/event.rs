//! Any stream prefix: event-frame parsing never panics, and an accepted frame re-emits to its
//! own bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_proto::wire::event::{EventFrame, EventRepr, frame_len};

fuzz_target!(|data: &[u8]| {
    let _ = frame_len(data);
    let Ok(frame) = EventFrame::new_checked(data) else { return };
    let repr = EventRepr::parse(&frame);

    let mut out = vec![0; repr.buffer_len()];
    let n = repr.emit(&mut out).expect("sized by buffer_len");
    assert_eq!(&out[..n], &data[..frame.frame_len()], "re-emitted event frame differs");
});
