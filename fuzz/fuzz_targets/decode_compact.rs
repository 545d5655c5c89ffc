//! Fuzzes the compact (version 3) decoder over a connection's worth of frames: any bytes must
//! decode or fail cleanly, never panic, and whatever decodes must encode again to a frame that
//! decodes to the same message, with the same msgpack bytes. The decoder accepts compressed
//! frames (as the hub's does), so the inflate path, its streams across frames and its size
//! limit are fuzzed too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::compact::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    // 0xff never starts a compact frame, so it splits the input into several frames, letting
    // bindings and closes of earlier frames shape how later ones decode.
    let (mut decoder, mut encoder, mut mirror) = (Decoder::default(), Encoder::default(), Decoder::default());
    decoder.accept_compressed(64 * 1024);
    for frame in data.split(|byte| *byte == 0xff) {
        let Ok(envelope) = decoder.decode(frame) else {
            continue;
        };
        // The encoder may refuse a session when the fuzzed peer rebound handles without closing.
        let Ok(again) = encoder.encode(&envelope) else {
            continue;
        };
        let back = mirror.decode(&again).expect("a re-encoded frame must decode");
        assert_eq!(back, envelope);
        assert_eq!(back.encode(), envelope.encode());
    }
});
