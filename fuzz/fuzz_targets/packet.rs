//! Any bytes: `Packet::new_checked` never panics, and an accepted packet re-emits to the bytes
//! it covers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_proto::wire::packet::{Packet, PacketRepr};

fuzz_target!(|data: &[u8]| {
    if let Ok(view) = Packet::new_unverified(data) {
        let _ = (view.flags(), view.protocol(), view.payload(), view.compute_checksum());
    }
    let Ok(repr) = PacketRepr::decode(data) else { return };

    let mut out = vec![0; repr.buffer_len()];
    let n = repr.emit(&mut out).expect("a parsed packet always fits its own buffer_len");
    assert_eq!(&out[..n], &data[..n], "re-emitted packet differs");
});
