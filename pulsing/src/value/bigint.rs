//! Integers beyond `i64`: `{"$int": "<decimal digits>"}`.
//!
//! [`Value::Int`] holds an `i64`, which covers what most languages call an int. A larger one (a
//! Rust `u64` above `i64::MAX`, an `i128`/`u128`, a Python int of any size) travels as a
//! one-entry map from [`BIG_INT`] to its decimal text, so it keeps every digit and needs no new
//! wire variant. [`to_value`](super::to_value) writes it for Rust integers outside `i64`;
//! [`from_value`](super::from_value) reads it into any integer type it fits (else an error
//! naming the type and the number), and into `f32`/`f64` by rounding; the Python package turns it
//! into a Python `int` and back.
//!
//! ```
//! use pulsing::value::{from_value, to_value, Value};
//!
//! let big = to_value(&u64::MAX).unwrap();
//! assert_eq!(big.to_string(), r#"{"$int": "18446744073709551615"}"#);
//! assert_eq!(from_value::<u64>(big.clone()).unwrap(), u64::MAX);
//! assert_eq!(from_value::<i128>(big.clone()).unwrap(), i128::from(u64::MAX));
//! let err = from_value::<i64>(big).unwrap_err();
//! assert_eq!(err.to_string(), "expected i64, found int 18446744073709551615");
//! ```

use std::fmt::Display;

use super::Value;

/// The key of the one-entry map that carries an integer outside the `i64` range.
pub const BIG_INT: &str = "$int";

/// A big integer, decoded: negative ones fit an `i128`, the others a `u128`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Wide {
    Negative(i128),
    Positive(u128),
}

impl Wide {
    /// As an `f64`, rounded.
    pub(super) fn as_f64(self) -> f64 {
        match self {
            Wide::Negative(n) => n as f64,
            Wide::Positive(n) => n as f64,
        }
    }
}

/// `{"$int": "<n>"}`.
pub(super) fn encode(n: impl Display) -> Value {
    Value::Map(vec![(
        Value::Str(BIG_INT.to_owned()),
        Value::Str(n.to_string()),
    )])
}

/// The digits of `value` if it is a big integer map (whether or not they fit 128 bits).
pub(super) fn digits(value: &Value) -> Option<&str> {
    match value {
        Value::Map(entries) => match entries.as_slice() {
            [(Value::Str(k), Value::Str(digits))] if k == BIG_INT => Some(digits),
            _ => None,
        },
        _ => None,
    }
}

/// The integer in a big integer map, if it is one and fits 128 bits.
pub(super) fn decode(value: &Value) -> Option<Wide> {
    let digits = digits(value)?;
    if digits.starts_with('-') {
        digits.parse().ok().map(Wide::Negative)
    } else {
        digits.parse().ok().map(Wide::Positive)
    }
}
