//! Fuzzes the frame decoder: any bytes must give a frame or a `FrameError`, never a panic, and a
//! decoded frame must encode back to bytes that decode to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulsing::wire::{decode, encode, DEFAULT_MAX_FRAME};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(frame) = decode(bytes, DEFAULT_MAX_FRAME) {
        let again = encode(&frame);
        assert_eq!(decode(&again, DEFAULT_MAX_FRAME).ok(), Some(frame));
    }
});
