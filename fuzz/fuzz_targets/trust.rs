//! Any port-444 message: trust-handshake parsing never panics, and a parsed message encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_proto::wire::trust::TrustMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = TrustMessage::parse(data) {
        let _ = msg.to_json();
    }
});
