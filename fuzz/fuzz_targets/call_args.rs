//! Fuzzes the argument decoding `#[pulsing::remote]` generates: a peer's typed call (postcard
//! bytes) and a by-name call (`Value` arguments, from any bytes that decode as such) to every
//! method of an actor with many parameter shapes. Each must become a call or a typed error,
//! never a panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use pulsing::__fuzz::{build_calls, on_runtime_stack};
use pulsing::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Shape {
    Dot,
    Circle(f32),
    Poly { points: Vec<Point> },
}

pub struct Shapes;

#[pulsing::remote]
impl Shapes {
    pub fn scalars(&self, a: i64, b: u8, c: bool, d: char, e: f32) -> i64 {
        a + i64::from(b) + i64::from(c) + i64::from(u32::from(d)) + e as i64
    }

    pub fn texts(&self, name: String, parts: Vec<String>, maybe: Option<String>) -> usize {
        name.len() + parts.len() + maybe.map_or(0, |m| m.len())
    }

    pub fn nested(&self, map: BTreeMap<String, Vec<Option<(u32, bool)>>>) -> usize {
        map.len()
    }

    pub fn structs(&self, point: Point, shape: Shape) -> f64 {
        let _ = shape;
        point.x
    }

    pub fn bytes(&self, data: serde_bytes::ByteBuf, raw: Vec<u8>) -> usize {
        data.len() + raw.len()
    }

    pub fn values(&self, v: Value, args: Vec<Value>) -> Value {
        let _ = args;
        v
    }

    pub fn none(&self) {}
}

const METHODS: [&str; 8] = ["scalars", "texts", "nested", "structs", "bytes", "values", "none", "x"];

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
