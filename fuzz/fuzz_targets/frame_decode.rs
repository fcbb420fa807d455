//! Fuzzes the frame decoder: any bytes must give a frame or a `FrameError`, never a panic, and a
//! decoded frame must survive encode → decode unchanged (compared as bytes: a NaN float is not
//! equal to itself, but its bits round-trip).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulsing::wire::{decode, encode, DEFAULT_MAX_FRAME};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(frame) = decode(bytes, DEFAULT_MAX_FRAME) {
        let encoded = encode(&frame);
        let again = decode(&encoded, DEFAULT_MAX_FRAME).expect("an encoded frame decodes");
        assert_eq!(encode(&again), encoded);
    }
});
