//! Fuzzes the argument decoding `#[pulsing::remote]` generates: a peer's typed call (postcard
//! bytes) and a by-name call (`Value` arguments, from any bytes that decode as such) to every
//! method of an actor with many parameter shapes. Each must become a call or a typed error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulsing::__fuzz::{build_calls, on_runtime_stack};
use pulsing::prelude::*;

#[path = "../../pulsing/tests/support/shapes.rs"]
#[allow(dead_code)]
mod shapes;
use shapes::{Shapes, METHODS};

fuzz_target!(|input: &[u8]| {
    let Some((&which, rest)) = input.split_first() else {
        return;
    };
    let method = METHODS[usize::from(which) % METHODS.len()];
    let (args, values) = rest.split_at(rest.len() / 2);
    // By-name arguments: whatever list of `Value`s the second half decodes to.
    let values: Vec<Value> = postcard::from_bytes(values).unwrap_or_default();
    let args = args.to_vec();
    on_runtime_stack(move || {
        let _ = build_calls::<Shapes>(method, &args, Args::from(values));
    });
});
