//! `Values`: a Rust actor with one method per row of the value mapping (docs/python.md, "Values
//! across the boundary"), called from Python by `pulsing-py/tests/test_values.py`. Every
//! `test_node` runs one, named `values-<NODE>`.

use std::collections::HashMap;

use pulsing::Value;
use serde_bytes::ByteBuf;

/// Echoes values through typed parameters.
#[derive(Debug)]
pub struct Values;

#[pulsing::remote]
impl Values {
    /// Any value, back as it came.
    pub fn value(&self, v: Value) -> Value {
        v
    }

    pub fn u64(&self, n: u64) -> u64 {
        n
    }

    pub fn i64(&self, n: i64) -> i64 {
        n
    }

    pub fn i128(&self, n: i128) -> i128 {
        n
    }

    pub fn u128(&self, n: u128) -> u128 {
        n
    }

    pub fn f32(&self, x: f32) -> f32 {
        x
    }

    pub fn f64(&self, x: f64) -> f64 {
        x
    }

    /// `serde_bytes`: bytes both ways.
    pub fn bytes(&self, b: ByteBuf) -> ByteBuf {
        b
    }

    /// A plain `Vec<u8>`: a sequence of numbers to serde, so a list of ints back.
    pub fn vec_u8(&self, b: Vec<u8>) -> Vec<u8> {
        b
    }

    /// A map that repeats a key, as another language may send one: `{1: "first", 1: "last"}`.
    pub fn repeated_key(&self) -> Value {
        Value::Map(vec![
            (Value::Int(1), Value::from("first")),
            (Value::Int(1), Value::from("last")),
        ])
    }

    pub fn tuple_keys(
        &self,
        m: HashMap<(i32, (i32, i32)), String>,
    ) -> HashMap<(i32, (i32, i32)), String> {
        m
    }
}
