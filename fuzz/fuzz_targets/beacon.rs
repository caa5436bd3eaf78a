//! Any datagram: beacon parsing never panics, and a parsed message can always be written back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_proto::wire::beacon::BeaconRepr;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = BeaconRepr::parse_bytes(data) else { return };

    let mut out = vec![0; msg.buffer_len()];
    msg.emit(&mut out).expect("a parsed beacon message re-encodes");
});
