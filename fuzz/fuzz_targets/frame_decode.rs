//! Fuzzes what a connection's reader decodes: any bytes, taken as one received WebSocket
//! message, go through the reader's own decoder (frames packed back to back, names and payloads
//! shared with the buffer: `pulsing::__fuzz::decode_message`) on a thread with a runtime
//! worker's stack. It must return frames or a `FrameError`, never panic or overflow the stack,
//! and every decoded frame must survive encode → decode unchanged (compared as bytes: a NaN
//! float is not equal to itself). Seeds: `fuzz/seeds/frame_decode` (written from the proptest
//! strategies by `pulsing/tests/wire_fuzz.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulsing::__fuzz::{decode_message, on_runtime_stack};

fuzz_target!(|bytes: &[u8]| {
    let bytes = bytes.to_vec();
    let _ = on_runtime_stack(move || decode_message(&bytes).map(drop));
});
