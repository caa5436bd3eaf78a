//! Any ACK payload: SACK parsing never panics, and accepted blocks re-emit to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_proto::wire::sack::{Sack, SackRepr};

fuzz_target!(|data: &[u8]| {
    let Ok(view) = Sack::new_checked(data) else { return };
    let repr = SackRepr::parse(&view);

    let mut out = vec![0; repr.buffer_len()];
    repr.emit(&mut out).expect("sized by buffer_len");
    assert_eq!(&out[..], &data[..view.len()], "re-emitted SACK differs");
});
