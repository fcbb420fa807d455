//! An actor with many parameter shapes, for fuzzing the argument decoding `#[pulsing::remote]`
//! generates: used by `pulsing/tests/wire_fuzz.rs` and by the cargo-fuzz target
//! `fuzz/fuzz_targets/call_args.rs` (which includes this file by path).

use std::collections::BTreeMap;

use pulsing::prelude::*;
use serde::{Deserialize, Serialize};

/// The methods of [`Shapes`], and one it does not have.
pub const METHODS: [&str; 9] = [
    "scalars", "texts", "nested", "structs", "bytes", "values", "none", "stream", "nope",
];

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

/// An actor with many parameter shapes, for the generated decoding.
#[derive(Debug)]
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

    pub fn stream(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
        futures_util::stream::iter(0..n)
    }
}
