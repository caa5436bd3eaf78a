//! Any stream prefix: data-exchange framing never panics, and an accepted frame re-emits to
//! its own bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_proto::wire::dataexchange::{DataFrame, DataFrameRepr, frame_len};

fuzz_target!(|data: &[u8]| {
    let _ = frame_len(data);
    let Ok(view) = DataFrame::new_checked(data) else { return };
    let repr = DataFrameRepr::parse(&view).expect("parse of a checked view cannot fail");

    let mut out = vec![0; repr.buffer_len()];
    repr.emit(&mut out).expect("sized by buffer_len");
    assert_eq!(&out[..], &data[..view.frame_len()], "re-emitted frame differs");
});
