//! Any IPC byte stream: framing and command parsing never panic, and an accepted message
//! re-emits to the frame's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_proto::wire::ipc::{IpcFrame, IpcMessage};

fuzz_target!(|data: &[u8]| {
    let _ = IpcMessage::parse_body(data);
    let Ok(frame) = IpcFrame::new_checked(data) else { return };
    let Ok(msg) = IpcMessage::parse(&frame) else { return };

    let mut out = vec![0; msg.buffer_len()];
    msg.emit(&mut out).expect("a parsed message always re-encodes");
    assert_eq!(&out[..], &data[..frame.frame_len()], "re-emitted IPC frame differs");
});
