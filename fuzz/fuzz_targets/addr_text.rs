//! Any string: address and socket-address parsing never panics, and whatever parses prints
//! back to a string that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_proto::wire::addr::{Addr, AddrPort};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(addr) = text.parse::<Addr>() {
        assert_eq!(addr.to_string().parse::<Addr>(), Ok(addr));
    }
    if let Ok(sa) = text.parse::<AddrPort>() {
        assert_eq!(sa.to_string().parse::<AddrPort>(), Ok(sa));
    }
});
