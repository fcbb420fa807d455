//! Property tests of the mapping between Rust types and [`Value`] (issue #16), the Rust half of
//! the table in docs/python.md ("Values across the boundary"); the Python half is
//! `pulsing-py/tests/test_values.py`.

use std::collections::{BTreeMap, HashMap};

use proptest::collection::{hash_map, vec};
use proptest::prelude::*;
use serde::Deserialize;
use serde_bytes::ByteBuf;

use super::{from_value, to_value, Value};

/// Both NaN, or the same bits (so -0.0 is not 0.0).
fn same_f64(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

fn same_f32(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

/// Through a `Value` and its postcard encoding, as between two nodes.
fn over_the_wire(value: Value) -> Value {
    postcard::from_bytes(&postcard::to_stdvec(&value).unwrap()).unwrap()
}

proptest! {
    #[test]
    fn every_i128_and_u128_round_trips(i in any::<i128>(), u in any::<u128>()) {
        prop_assert_eq!(from_value::<i128>(over_the_wire(to_value(&i).unwrap())).unwrap(), i);
        prop_assert_eq!(from_value::<u128>(over_the_wire(to_value(&u).unwrap())).unwrap(), u);
    }

    /// A `u64` reads back as any integer type it fits, and is an error for the others.
    #[test]
    fn a_u64_fits_where_it_fits(n in any::<u64>()) {
        let value = over_the_wire(to_value(&n).unwrap());
        prop_assert_eq!(value.as_i64().is_some(), i64::try_from(n).is_ok());
        prop_assert_eq!(from_value::<u64>(value.clone()).unwrap(), n);
        prop_assert_eq!(from_value::<i64>(value.clone()).ok(), i64::try_from(n).ok());
        prop_assert_eq!(from_value::<u32>(value.clone()).ok(), u32::try_from(n).ok());
        prop_assert_eq!(from_value::<i128>(value.clone()).unwrap(), i128::from(n));
        prop_assert!(same_f64(from_value::<f64>(value).unwrap(), n as f64));
    }

    /// NaN, the infinities and -0.0 included.
    #[test]
    fn every_f64_round_trips_bit_for_bit(x in proptest::num::f64::ANY) {
        let back = from_value::<f64>(over_the_wire(to_value(&x).unwrap())).unwrap();
        prop_assert!(same_f64(back, x), "{x:?} came back as {back:?}");
    }

    #[test]
    fn every_f32_round_trips_bit_for_bit(x in proptest::num::f32::ANY) {
        let back = from_value::<f32>(over_the_wire(to_value(&x).unwrap())).unwrap();
        prop_assert!(same_f32(back, x), "{x:?} came back as {back:?}");
    }

    /// An `f64` read as an `f32` rounds; one too large for an `f32` is an error, not an infinity.
    #[test]
    fn f32_narrowing_rounds_or_refuses_overflow(x in proptest::num::f64::ANY) {
        let got = from_value::<f32>(Value::Float(x));
        if x.is_finite() && (x as f32).is_infinite() {
            let err = got.unwrap_err().to_string();
            prop_assert!(err.contains("too large for an f32"), "{err}");
        } else {
            prop_assert!(same_f32(got.unwrap(), x as f32));
        }
    }

    /// `serde_bytes` types are bytes; a plain `Vec<u8>` is a sequence of numbers to serde (so a
    /// list), and accepts bytes too.
    #[test]
    fn byte_buffers_are_bytes(b in vec(any::<u8>(), 0..64)) {
        let value = over_the_wire(to_value(&ByteBuf::from(b.clone())).unwrap());
        prop_assert_eq!(&value, &Value::bytes(b.clone()));
        prop_assert_eq!(from_value::<ByteBuf>(value.clone()).unwrap().into_vec(), b.clone());
        prop_assert_eq!(from_value::<Vec<u8>>(value).unwrap(), b.clone());
        let list: Vec<Value> = b.iter().map(|&x| Value::Int(x.into())).collect();
        prop_assert_eq!(to_value(&b).unwrap(), Value::List(list));
    }

    #[test]
    fn nested_tuple_keys_round_trip(
        m in hash_map((any::<i32>(), (any::<i32>(), any::<i32>())), ".{0,4}", 0..8)
    ) {
        let value = over_the_wire(to_value(&m).unwrap());
        prop_assert_eq!(from_value::<HashMap<(i32, (i32, i32)), String>>(value).unwrap(), m);
    }

    /// A map that repeats a key (another language may send one) keeps the last value.
    #[test]
    fn a_repeated_key_keeps_the_last_value(entries in vec((0u8..4, any::<i64>()), 0..16)) {
        let value = Value::Map(
            entries.iter().map(|&(k, v)| (Value::Int(k.into()), Value::Int(v))).collect(),
        );
        let expected: BTreeMap<u8, i64> = entries.into_iter().collect();
        prop_assert_eq!(from_value::<BTreeMap<u8, i64>>(value).unwrap(), expected);
    }
}

/// A struct, unlike a map, refuses a repeated field.
#[test]
fn a_repeated_field_is_an_error() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Point {
        x: i32,
    }
    let value = Value::Map(vec![("x".into(), 1.into()), ("x".into(), 2.into())]);
    let err = from_value::<Point>(value).unwrap_err();
    assert_eq!(err.to_string(), "duplicate field `x`");
}

#[test]
fn a_big_integer_that_does_not_fit_names_the_type_and_the_number() {
    let big = to_value(&u128::MAX).unwrap();
    assert_eq!(
        from_value::<u64>(big).unwrap_err().to_string(),
        "expected u64, found int 340282366920938463463374607431768211455"
    );
    let huge = Value::Map(vec![("$int".into(), "9".repeat(100).into())]);
    assert_eq!(
        from_value::<u128>(huge).unwrap_err().to_string(),
        format!("expected u128, found int {}...", "9".repeat(64))
    );
}
