//! Any registry byte stream: the frame decoder and the message catalogue never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_proto::wire::registry::{FrameDecoder, Request, Response};

fuzz_target!(|data: &[u8]| {
    let _ = Request::from_json(data);
    let _ = Response::from_json(data);

    let mut decoder = FrameDecoder::default();
    if decoder.push(data).is_err() {
        return;
    }
    while let Some(body) = decoder.next_frame() {
        if let Ok(request) = Request::from_json(&body) {
            let _ = request.to_json();
        }
        let _ = Response::from_json(&body);
    }
});
