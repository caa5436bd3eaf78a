//! Any datagram: tunnel-frame parsing never panics, and an accepted frame re-emits to the bytes
//! it covers (receivers ignore bytes after a PILK, PILA or PILP).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_proto::wire::tunnel::TunnelRepr;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = TunnelRepr::parse(data) else { return };

    let mut out = vec![0; frame.buffer_len()];
    let n = frame.emit(&mut out).expect("sized by buffer_len");
    assert_eq!(&out[..n], &data[..n], "re-emitted tunnel frame differs");
});
