//! A dynamic, language-neutral [`Value`] and serde conversions to and from it.
//!
//! `Value` is what crosses the boundary when an actor is called by method name
//! from Python or another language: arguments arrive as a `Value` and are
//! turned into typed Rust parameters with [`from_value`]; results go back
//! through [`to_value`].
//!
//! ```
//! use pulsing::value::{from_value, to_value, Value};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Point {
//!     x: i32,
//!     y: i32,
//! }
//!
//! let value = to_value(&Point { x: 1, y: 2 }).unwrap();
//! assert_eq!(value.get("x"), Some(&Value::Int(1)));
//! assert_eq!(value.to_string(), r#"{"x": 1, "y": 2}"#);
//!
//! let point: Point = from_value(value).unwrap();
//! assert_eq!(point, Point { x: 1, y: 2 });
//!
//! let err = from_value::<Point>(Value::from("oops")).unwrap_err();
//! assert_eq!(err.to_string(), r#"expected struct Point, found str "oops""#);
//! ```
//!
//! `Value` itself implements `Serialize`/`Deserialize` as an externally tagged
//! enum so that it survives non-self-describing formats such as postcard, and refuses (both
//! ways) to nest deeper than [`MAX_DEPTH`] lists and maps, so decoding a peer's bytes never
//! overflows the stack.
//! [`to_value`] and [`from_value`] recognise it, so converting a `Value` (or a
//! type containing one) is the identity rather than producing the tagged form.
//!
//! The arguments of a by-name call, [`Args`], live here too: `Value`s by position and keyword.
//!
//! A byte string is a [`Bytes`] (re-exported from the `bytes` crate): cloning one costs a
//! reference count, a `Value` decoded from a received message shares the message's buffer for a
//! byte string of 512 bytes or more that is at least half of that message (a large argument or
//! answer) instead of copying it, and a host (the Python package) can lend its own immutable
//! buffer with [`Bytes::from_owner`] instead of copying it into a `Value`. Sent in a frame of
//! 16 KiB or more, a byte string of 16 KiB or more is not copied into the frame either: the
//! connection writes it from its own buffer (`shared.rs`).
//!
//! ```
//! use pulsing::value::{Bytes, Value};
//!
//! let v = Value::bytes(vec![1, 2, 3]); // a `Vec<u8>` becomes `Bytes` without a copy
//! assert_eq!(v.as_bytes(), Some(&[1u8, 2, 3][..]));
//! assert_eq!(v, Value::Bytes(Bytes::from_static(&[1, 2, 3])));
//! ```

mod args;
mod bigint;
mod de;
mod landing;
mod nested;
#[cfg(test)]
mod props;
mod ser;
pub(crate) mod shared;

pub use args::Args;
pub use bigint::BIG_INT;
/// The byte-string type of [`Value::Bytes`]: the `bytes` crate's, re-exported so callers need
/// not depend on that crate themselves.
pub use bytes::Bytes;
pub(crate) use landing::{land, Landed};
pub use landing::{land_with, LandFn, Landing, LAND_FROM};
pub(crate) use nested::take_too_deep;
pub use nested::MAX_DEPTH;

use std::fmt;

use serde::de::{DeserializeOwned, Expected, Unexpected};
use serde::Serialize;

/// Name under which [`Value`] serializes itself; recognised by [`to_value`] and
/// [`from_value`] so that a `Value` converts to itself.
const VALUE_TOKEN: &str = "$pulsing::Value";

/// Maximum number of list items or map entries shown by `Display`.
const MAX_ITEMS: usize = 10;
/// Maximum number of bytes shown by `Display`.
const MAX_BYTES: usize = 32;
/// Maximum number of string characters shown by `Display`.
const MAX_CHARS: usize = 64;

/// A dynamically typed value exchanged with other languages.
///
/// A `Value` nests at most [`MAX_DEPTH`] lists and maps: deeper ones neither encode nor decode
/// (see `nested.rs`), so no peer can overflow a node's stack with one.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// The absence of a value (`None` in Python, `()` or `None` in Rust).
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// A byte string. Decoded from a received message, one of 512 bytes or more that is at
    /// least half of the message is a slice of the message's buffer, and keeps that buffer
    /// alive while it lives.
    Bytes(Bytes),
    /// An ordered list of values.
    List(Vec<Value>),
    /// Key/value pairs in insertion order; keys may be any value.
    Map(Vec<(Value, Value)>),
}

/// Converts any serializable value into a [`Value`].
///
/// Integers outside the `i64` range become `{"$int": "<digits>"}` maps ([`BIG_INT`]).
///
/// # Errors
/// A [`ValueError`] only for custom `Serialize` impls that report an error.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ValueError> {
    value.serialize(ser::Serializer)
}

/// Converts a [`Value`] into any deserializable type.
///
/// # Errors
/// A [`ValueError`] naming what was expected and what was found when the value does not have
/// the shape of `T`.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ValueError> {
    T::deserialize(value)
}

impl Value {
    /// Creates a [`Value::Bytes`] (from a `Vec<u8>`, a `String`, an array...: without a copy
    /// when it is a `Vec<u8>` already).
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Value::Bytes(Bytes::from(bytes.into()))
    }

    /// A short name for the kind of value: `"null"`, `"bool"`, `"int"`,
    /// `"float"`, `"str"`, `"bytes"`, `"list"` or `"map"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// Returns `true` for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The boolean, if this is a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The integer, if this is a [`Value::Int`].
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(n) => Some(n),
            _ => None,
        }
    }

    /// The number as a float, if this is a [`Value::Float`] or [`Value::Int`].
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(x) => Some(x),
            Value::Int(n) => Some(n as f64),
            _ => None,
        }
    }

    /// The string, if this is a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is a [`Value::Bytes`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The items, if this is a [`Value::List`].
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The entries, if this is a [`Value::Map`].
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// Looks up the entry with string key `key` in a [`Value::Map`].
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Describes the value for error messages, e.g. `int 5` or `str "abc"`.
    fn describe(&self) -> String {
        if let Some(digits) = bigint::digits(self) {
            let cut = digits
                .char_indices()
                .nth(MAX_CHARS)
                .map_or(digits.len(), |(i, _)| i);
            let more = if cut < digits.len() { "..." } else { "" };
            return format!("int {}{more}", &digits[..cut]);
        }
        match self {
            Value::Null => "None".to_owned(),
            other => format!("{} {other}", other.kind()),
        }
    }
}

impl fmt::Display for Value {
    /// A short, Python-like rendering meant for messages: long strings, byte
    /// strings, lists and maps are truncated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("None"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => {
                let cut = s.char_indices().nth(MAX_CHARS).map_or(s.len(), |(i, _)| i);
                let more = if cut < s.len() { "..." } else { "" };
                write!(f, "\"{}{more}\"", s[..cut].escape_debug())
            }
            Value::Bytes(b) => {
                let shown = &b[..b.len().min(MAX_BYTES)];
                let more = if b.len() > MAX_BYTES { "..." } else { "" };
                write!(f, "b\"{}{more}\"", shown.escape_ascii())
            }
            Value::List(items) => write_items(f, "[", "]", items, |f, v| write!(f, "{v}")),
            Value::Map(entries) => {
                write_items(f, "{", "}", entries, |f, (k, v)| write!(f, "{k}: {v}"))
            }
        }
    }
}

/// Writes at most [`MAX_ITEMS`] items, followed by a count of the rest.
fn write_items<T>(
    f: &mut fmt::Formatter<'_>,
    open: &str,
    close: &str,
    items: &[T],
    mut write_one: impl FnMut(&mut fmt::Formatter<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    f.write_str(open)?;
    for (i, item) in items.iter().take(MAX_ITEMS).enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_one(f, item)?;
    }
    if items.len() > MAX_ITEMS {
        write!(f, ", ... {} more", items.len() - MAX_ITEMS)?;
    }
    f.write_str(close)
}

macro_rules! from_via {
    ($variant:ident($target:ty): $($source:ty),*) => {$(
        impl From<$source> for Value {
            fn from(v: $source) -> Self {
                Value::$variant(<$target>::from(v))
            }
        }
    )*};
}

from_via!(Bool(bool): bool);
from_via!(Int(i64): i8, i16, i32, i64, u8, u16, u32);
from_via!(Float(f64): f32, f64);
from_via!(Str(String): &str, String);
from_via!(List(Vec<Value>): Vec<Value>);

impl From<Bytes> for Value {
    fn from(b: Bytes) -> Self {
        Value::Bytes(b)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Error returned by [`to_value`] and [`from_value`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    message: String,
}

impl ValueError {
    /// Creates an error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        ValueError {
            message: message.into(),
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// `expected {expected}, found {found}`.
    fn mismatch(found: &Value, expected: impl fmt::Display) -> Self {
        ValueError::new(format!("expected {expected}, found {}", found.describe()))
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValueError {}

impl serde::ser::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError::new(msg.to_string())
    }
}

impl serde::de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError::new(msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        ValueError::new(format!(
            "expected {exp}, found {}",
            describe_unexpected(unexp)
        ))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::invalid_type(unexp, exp)
    }

    fn invalid_length(len: usize, exp: &dyn Expected) -> Self {
        ValueError::new(format!("expected {exp}, found {}", elements(len)))
    }
}

/// `"1 element"`, `"3 elements"`.
fn elements(n: usize) -> String {
    format!("{n} element{}", if n == 1 { "" } else { "s" })
}

/// Renders serde's [`Unexpected`] the same way [`Value::describe`] does.
fn describe_unexpected(unexp: Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Bool(b) => Value::Bool(b).describe(),
        Unexpected::Signed(n) => format!("int {n}"),
        Unexpected::Unsigned(n) => format!("int {n}"),
        Unexpected::Float(x) => Value::Float(x).describe(),
        Unexpected::Char(c) => Value::Str(c.into()).describe(),
        Unexpected::Str(s) => Value::Str(s.into()).describe(),
        Unexpected::Bytes(b) => Value::bytes(b).describe(),
        Unexpected::Unit => "None".to_owned(),
        Unexpected::Seq => "list".to_owned(),
        Unexpected::Map => "map".to_owned(),
        other => other.to_string(),
    }
}

/// Random `Value`s for property tests, shared by every module that tests with them.
#[cfg(test)]
pub(crate) mod strategy {
    use super::Value;
    use proptest::prelude::*;

    /// Values up to three levels deep (floats are finite, so every value equals itself).
    pub(crate) fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            (-1e300..1e300f64).prop_map(Value::Float),
            ".{0,8}".prop_map(Value::Str),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::bytes),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{de::DeserializeOwned, Deserialize, Serialize};
    use std::collections::{BTreeMap, HashMap};
    use std::fmt::Debug;

    /// Asserts `T -> Value -> T` is lossless and returns the intermediate value.
    fn round_trip<T>(original: T) -> Value
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
    {
        let value = to_value(&original).unwrap();
        let back: T = from_value(value.clone()).unwrap();
        assert_eq!(back, original, "via {value}");
        value
    }

    fn map(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        name: String,
        tags: Vec<String>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Outer {
        id: u32,
        inner: Inner,
        maybe: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        skipped: Option<bool>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Empty,
        Circle(f64),
        Rect(f64, f64),
        Poly { sides: u8, closed: bool },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        label: String,
        payload: Value,
    }

    fn complex() -> Value {
        Value::List(vec![
            Value::Null,
            true.into(),
            (-7).into(),
            2.5.into(),
            "text".into(),
            Value::bytes(*b"\x00\xffab"),
            map(vec![
                ("nested", Value::List(vec![1.into(), Value::Map(vec![])])),
                ("k", Value::Null),
            ]),
            Value::Map(vec![(Value::Int(1), Value::bytes(vec![]))]),
        ])
    }

    #[test]
    fn primitives_round_trip() {
        assert_eq!(round_trip(()), Value::Null);
        assert_eq!(round_trip(true), Value::Bool(true));
        assert_eq!(round_trip(-5i8), Value::Int(-5));
        round_trip(i16::MIN);
        round_trip(i32::MAX);
        round_trip(i64::MIN);
        round_trip(i128::from(i64::MAX));
        round_trip(u8::MAX);
        round_trip(u16::MAX);
        round_trip(u32::MAX);
        assert_eq!(round_trip(i64::MAX as u64), Value::Int(i64::MAX));
        round_trip(7u128);
        round_trip(1.5f32);
        assert_eq!(round_trip(-0.25f64), Value::Float(-0.25));
        assert_eq!(round_trip('x'), Value::from("x"));
        assert_eq!(round_trip("hi".to_owned()), Value::from("hi"));
    }

    #[test]
    fn options() {
        assert_eq!(round_trip(None::<i32>), Value::Null);
        assert_eq!(round_trip(Some(3)), Value::Int(3));
        round_trip(Some(Some(String::new())));
    }

    #[test]
    fn byte_vectors() {
        let bytes = vec![0u8, 1, 255];
        assert_eq!(
            from_value::<Vec<u8>>(Value::bytes(bytes.clone())),
            Ok(bytes.clone())
        );
        let list = Value::List(vec![0.into(), 1.into(), 255.into()]);
        assert_eq!(from_value::<Vec<u8>>(list.clone()), Ok(bytes.clone()));
        assert_eq!(round_trip(bytes.clone()), list);
        let buf = serde_bytes::ByteBuf::from(bytes.clone());
        assert_eq!(round_trip(buf), Value::bytes(bytes.clone()));
        assert_eq!(from_value::<[u8; 3]>(Value::bytes(bytes)), Ok([0, 1, 255]));
    }

    #[test]
    fn tuples_and_collections() {
        assert_eq!(
            round_trip((1u8, "a".to_owned(), 2.0f64)),
            Value::List(vec![1.into(), "a".into(), 2.0.into()])
        );
        round_trip(vec![vec![1i64], vec![], vec![2, 3]]);
        round_trip(HashMap::from([
            ("a".to_owned(), 1i32),
            ("b".to_owned(), -2),
        ]));
        let value = round_trip(BTreeMap::from([
            (2i32, "two".to_owned()),
            (1, "one".to_owned()),
        ]));
        assert_eq!(
            value,
            Value::Map(vec![(1.into(), "one".into()), (2.into(), "two".into())])
        );
    }

    #[test]
    fn structs() {
        let outer = Outer {
            id: 9,
            inner: Inner {
                name: "n".into(),
                tags: vec!["t".into()],
            },
            maybe: None,
            skipped: None,
        };
        let value = round_trip(outer);
        let expected = map(vec![
            ("id", 9.into()),
            (
                "inner",
                map(vec![
                    ("name", "n".into()),
                    ("tags", Value::List(vec!["t".into()])),
                ]),
            ),
            ("maybe", Value::Null),
        ]);
        assert_eq!(value, expected);
        // Structs are also accepted positionally, as serde_json does.
        let positional = Value::List(vec!["n".into(), Value::List(vec![])]);
        assert_eq!(
            from_value::<Inner>(positional),
            Ok(Inner {
                name: "n".into(),
                tags: vec![]
            })
        );
    }

    #[test]
    fn enums() {
        assert_eq!(round_trip(Shape::Empty), Value::from("Empty"));
        assert_eq!(
            round_trip(Shape::Circle(1.0)),
            map(vec![("Circle", 1.0.into())])
        );
        assert_eq!(
            round_trip(Shape::Rect(1.0, 2.0)),
            map(vec![("Rect", Value::List(vec![1.0.into(), 2.0.into()]))])
        );
        assert_eq!(
            round_trip(Shape::Poly {
                sides: 3,
                closed: true
            }),
            map(vec![(
                "Poly",
                map(vec![("sides", 3.into()), ("closed", true.into())])
            )])
        );
    }

    #[test]
    fn value_is_identity() {
        let value = complex();
        assert_eq!(to_value(&value), Ok(value.clone()));
        assert_eq!(from_value::<Value>(value.clone()), Ok(value.clone()));
        for leaf in value.as_list().unwrap() {
            assert_eq!(to_value(leaf).as_ref(), Ok(leaf));
            assert_eq!(from_value::<Value>(leaf.clone()).as_ref(), Ok(leaf));
        }

        let items = vec![Value::Null, Value::from(1), complex()];
        assert_eq!(round_trip(items.clone()), Value::List(items));

        let holder = Holder {
            label: "x".into(),
            payload: complex(),
        };
        assert_eq!(
            round_trip(holder),
            map(vec![("label", "x".into()), ("payload", complex())])
        );
    }

    #[test]
    fn postcard_round_trip() {
        let value = complex();
        let bytes = postcard::to_stdvec(&value).unwrap();
        assert_eq!(postcard::from_bytes::<Value>(&bytes), Ok(value));
    }

    #[test]
    fn accessors_and_conversions() {
        let value = map(vec![("a", 1.into()), ("b", Some("s").into())]);
        assert_eq!(value.get("a").and_then(Value::as_i64), Some(1));
        assert_eq!(value.get("b").and_then(Value::as_str), Some("s"));
        assert_eq!(value.get("c"), None);
        assert_eq!(Value::from(None::<i32>), Value::Null);
        assert_eq!(Value::from(3u32).as_f64(), Some(3.0));
        assert_eq!(Value::from(1.5f32).as_i64(), None);
        assert_eq!(Value::bytes("ab").as_bytes(), Some(&b"ab"[..]));
        let kinds: Vec<_> = complex()
            .as_list()
            .unwrap()
            .iter()
            .map(Value::kind)
            .collect();
        assert_eq!(
            kinds,
            ["null", "bool", "int", "float", "str", "bytes", "map", "map"]
        );
    }

    #[test]
    fn display() {
        assert_eq!(
            complex().to_string(),
            concat!(
                r#"[None, True, -7, 2.5, "text", b"\x00\xffab", "#,
                r#"{"nested": [1, {}], "k": None}, {1: b""}]"#
            )
        );
        assert_eq!(Value::from("a\"b\n").to_string(), r#""a\"b\n""#);
        assert_eq!(
            Value::bytes([b'a'; 40]).to_string(),
            format!("b\"{}...\"", "a".repeat(32))
        );
        assert_eq!(
            Value::from("é".repeat(70)).to_string(),
            format!("\"{}...\"", "é".repeat(64))
        );
        let long: Vec<Value> = (0..12).map(Value::from).collect();
        assert_eq!(
            Value::List(long).to_string(),
            "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... 2 more]"
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn identity_and_postcard(value in crate::value::strategy::arb_value()) {
                prop_assert_eq!(to_value(&value), Ok(value.clone()));
                prop_assert_eq!(from_value::<Value>(value.clone()), Ok(value.clone()));
                let bytes = postcard::to_stdvec(&value).unwrap();
                prop_assert_eq!(postcard::from_bytes::<Value>(&bytes).unwrap(), value);
            }
        }
    }
}
