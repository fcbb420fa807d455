//! `Serialize` and `Deserialize` for [`Value`], by hand, with a nesting limit.
//!
//! A `Value` is a tree, and serde walks trees by recursion: a derived `Deserialize` fed a list
//! nested a few thousand levels deep (a few KiB of postcard) overflows the thread's stack and
//! aborts the process. So both directions count the lists and maps they are inside of, and refuse
//! a `Value` nested deeper than [`MAX_DEPTH`] with an error instead: a peer's frame that does is
//! refused as malformed (`FrameError::TooDeep`), and a caller that tries to send one gets
//! `Error::Codec` before anything is sent, so a Rust caller cannot make a peer refuse its frames.
//!
//! The shapes are exactly those the derive produced (an externally tagged enum named
//! `$pulsing::Value`, variants in declaration order, `Bytes` as serde bytes, `Map` as a sequence
//! of pairs), so the wire format is unchanged and `to_value`/`from_value` still recognise it.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, EnumAccess, SeqAccess, VariantAccess, Visitor};
use serde::ser::{self, SerializeSeq, SerializeTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Bytes, Value, VALUE_TOKEN};

/// How many lists and maps a [`Value`] may nest: a list of scalars is depth 1.
pub const MAX_DEPTH: usize = 128;

const VARIANTS: &[&str] = &[
    "Null", "Bool", "Int", "Float", "Str", "Bytes", "List", "Map",
];

thread_local! {
    /// Set when a `Value` was refused for its depth, so the frame decoder can say so (postcard
    /// keeps no message for a custom error).
    static TOO_DEEP: Cell<bool> = const { Cell::new(false) };
}

/// Whether the last decoding on this thread refused a `Value` for its depth (and forgets it).
pub(crate) fn take_too_deep() -> bool {
    TOO_DEEP.with(|flag| flag.replace(false))
}

fn too_deep() -> String {
    format!("a Value nested more than {MAX_DEPTH} levels deep")
}

// ---------------------------------------------------------------- serialize

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        At(self, 0).serialize(serializer)
    }
}

/// A value inside `.1` lists or maps.
struct At<'a>(&'a Value, usize);

impl Serialize for At<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (name, depth) = (VALUE_TOKEN, self.1);
        match self.0 {
            Value::Null => s.serialize_unit_variant(name, 0, "Null"),
            Value::Bool(b) => s.serialize_newtype_variant(name, 1, "Bool", b),
            Value::Int(n) => s.serialize_newtype_variant(name, 2, "Int", n),
            Value::Float(x) => s.serialize_newtype_variant(name, 3, "Float", x),
            Value::Str(text) => s.serialize_newtype_variant(name, 4, "Str", text),
            Value::Bytes(b) => {
                super::shared::offer(b);
                s.serialize_newtype_variant(name, 5, "Bytes", serde_bytes::Bytes::new(b))
            }
            Value::List(_) | Value::Map(_) if depth >= MAX_DEPTH => {
                Err(ser::Error::custom(too_deep()))
            }
            Value::List(items) => {
                s.serialize_newtype_variant(name, 6, "List", &Items(items, depth))
            }
            Value::Map(entries) => {
                s.serialize_newtype_variant(name, 7, "Map", &Entries(entries, depth))
            }
        }
    }
}

/// A list's items, at the depth of the list.
struct Items<'a>(&'a [Value], usize);

impl Serialize for Items<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&At(item, self.1 + 1))?;
        }
        seq.end()
    }
}

/// A map's entries (a sequence of pairs), at the depth of the map.
struct Entries<'a>(&'a [(Value, Value)], usize);

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (k, v) in self.0 {
            seq.serialize_element(&Pair(k, v, self.1 + 1))?;
        }
        seq.end()
    }
}

struct Pair<'a>(&'a Value, &'a Value, usize);

impl Serialize for Pair<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut pair = s.serialize_tuple(2)?;
        pair.serialize_element(&At(self.0, self.2))?;
        pair.serialize_element(&At(self.1, self.2))?;
        pair.end()
    }
}

// -------------------------------------------------------------- deserialize

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Seed(0).deserialize(deserializer)
    }
}

/// Decodes a value inside `.0` lists or maps.
#[derive(Clone, Copy)]
struct Seed(usize);

impl<'de> DeserializeSeed<'de> for Seed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_enum(VALUE_TOKEN, VARIANTS, self)
    }
}

/// Which variant: by index (postcard) or by name (self-describing formats, `from_value`).
enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Bytes,
    List,
    Map,
}

impl Kind {
    fn from_index(i: u64) -> Option<Kind> {
        Some(match i {
            0 => Kind::Null,
            1 => Kind::Bool,
            2 => Kind::Int,
            3 => Kind::Float,
            4 => Kind::Str,
            5 => Kind::Bytes,
            6 => Kind::List,
            7 => Kind::Map,
            _ => return None,
        })
    }

    fn from_name(name: &str) -> Option<Kind> {
        VARIANTS
            .iter()
            .position(|v| *v == name)
            .and_then(|i| Kind::from_index(i as u64))
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KindVisitor;
        impl Visitor<'_> for KindVisitor {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Value variant")
            }
            fn visit_u64<E: de::Error>(self, i: u64) -> Result<Kind, E> {
                Kind::from_index(i).ok_or_else(|| {
                    E::invalid_value(de::Unexpected::Unsigned(i), &"a variant index 0 <= i < 8")
                })
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Kind, E> {
                Kind::from_name(name).ok_or_else(|| E::unknown_variant(name, VARIANTS))
            }
            fn visit_bytes<E: de::Error>(self, name: &[u8]) -> Result<Kind, E> {
                match std::str::from_utf8(name) {
                    Ok(name) => self.visit_str(name),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Bytes(name), &self)),
                }
            }
        }
        d.deserialize_identifier(KindVisitor)
    }
}

impl<'de> Visitor<'de> for Seed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Value")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (kind, variant) = data.variant::<Kind>()?;
        let nested = || {
            if self.0 >= MAX_DEPTH {
                TOO_DEEP.with(|flag| flag.set(true));
                Err(de::Error::custom(too_deep()))
            } else {
                Ok(self.0 + 1)
            }
        };
        Ok(match kind {
            Kind::Null => {
                variant.unit_variant()?;
                Value::Null
            }
            Kind::Bool => Value::Bool(variant.newtype_variant()?),
            Kind::Int => Value::Int(variant.newtype_variant()?),
            Kind::Float => Value::Float(variant.newtype_variant()?),
            Kind::Str => Value::Str(variant.newtype_variant()?),
            Kind::Bytes => Value::Bytes(variant.newtype_variant_seed(BytesSeed)?),
            Kind::List => Value::List(variant.newtype_variant_seed(ListSeed(nested()?))?),
            Kind::Map => Value::Map(variant.newtype_variant_seed(MapSeed(nested()?))?),
        })
    }
}

/// A byte string: borrowed from the buffer being decoded, a slice of the received message when it
/// is large and most of that message (`shared.rs`, `share_most`), else a copy; an owned buffer
/// is kept as it is.
struct BytesSeed;

impl<'de> DeserializeSeed<'de> for BytesSeed {
    type Value = Bytes;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Bytes, D::Error> {
        // Not `deserialize_byte_buf`: postcard lends the bytes only through this one.
        d.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for BytesSeed {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
        Ok(super::shared::share_most(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    /// Self-describing formats that write bytes as a list of numbers (as `serde_bytes` accepts).
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(PREALLOCATE));
        while let Some(byte) = seq.next_element::<u8>()? {
            out.push(byte);
        }
        Ok(Bytes::from(out))
    }
}

/// Items preallocated at most, whatever length a peer announces (the rest grows as it arrives).
const PREALLOCATE: usize = 1024;

/// A list whose items are at depth `.0`.
struct ListSeed(usize);

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = Vec<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of Values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(PREALLOCATE));
        while let Some(item) = seq.next_element_seed(Seed(self.0))? {
            items.push(item);
        }
        Ok(items)
    }
}

/// A map whose keys and values are at depth `.0`.
struct MapSeed(usize);

impl<'de> DeserializeSeed<'de> for MapSeed {
    type Value = Vec<(Value, Value)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for MapSeed {
    type Value = Vec<(Value, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of key/value pairs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(PREALLOCATE));
        while let Some(entry) = seq.next_element_seed(PairSeed(self.0))? {
            entries.push(entry);
        }
        Ok(entries)
    }
}

/// One `(key, value)` pair at depth `.0`.
struct PairSeed(usize);

impl<'de> DeserializeSeed<'de> for PairSeed {
    type Value = (Value, Value);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_tuple(2, self)
    }
}

impl<'de> Visitor<'de> for PairSeed {
    type Value = (Value, Value);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key/value pair")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let key = seq
            .next_element_seed(Seed(self.0))?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let value = seq
            .next_element_seed(Seed(self.0))?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        Ok((key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{from_value, to_value};

    /// `depth` lists, one inside the other, around `1`.
    fn nested(depth: usize) -> Value {
        let mut v = Value::Int(1);
        for _ in 0..depth {
            v = Value::List(vec![v]);
        }
        v
    }

    /// Postcard bytes of `depth` nested lists, written by hand (a `Value` that deep cannot be
    /// encoded): variant 6 (List), length 1, ..., then `Int(1)`.
    fn nested_bytes(depth: usize) -> Vec<u8> {
        let mut bytes = [6u8, 1].repeat(depth);
        bytes.extend([2, 2]); // Int, zigzag 1
        bytes
    }

    #[test]
    fn the_limit_is_exact_and_the_bytes_are_the_derived_ones() {
        let at_limit = nested(MAX_DEPTH);
        let bytes = postcard::to_stdvec(&at_limit).unwrap();
        assert_eq!(bytes, nested_bytes(MAX_DEPTH));
        assert_eq!(postcard::from_bytes::<Value>(&bytes).unwrap(), at_limit);
        assert!(postcard::to_stdvec(&nested(MAX_DEPTH + 1)).is_err());
        assert!(postcard::from_bytes::<Value>(&nested_bytes(MAX_DEPTH + 1)).is_err());
        assert!(take_too_deep());
        assert!(!take_too_deep());
        // Maps count too, keys as well as values.
        let mut map = Value::Null;
        for _ in 0..MAX_DEPTH {
            map = Value::Map(vec![(map, Value::Null)]);
        }
        let bytes = postcard::to_stdvec(&map).unwrap();
        assert_eq!(postcard::from_bytes::<Value>(&bytes).unwrap(), map);
        assert!(postcard::to_stdvec(&Value::Map(vec![(Value::Null, map)])).is_err());
    }

    #[test]
    fn a_hundred_thousand_levels_is_an_error_not_a_stack_overflow() {
        // Before the limit, about 8k levels overflowed a debug build's 2 MiB test thread.
        let err = postcard::from_bytes::<Value>(&nested_bytes(100_000)).unwrap_err();
        assert!(take_too_deep(), "{err}");
        // The same through serde_json-like self-describing paths: `from_value`, `to_value`.
        let deep = nested(MAX_DEPTH + 1);
        assert!(to_value(&deep).is_err());
        assert!(from_value::<Value>(deep).is_err());
    }

    #[test]
    fn from_value_and_to_value_still_recognise_values() {
        let v = Value::Map(vec![
            (
                "k".into(),
                Value::List(vec![Value::bytes(*b"ab"), 2.5.into()]),
            ),
            (Value::Int(3), Value::Null),
        ]);
        assert_eq!(from_value::<Value>(v.clone()), Ok(v.clone()));
        assert_eq!(to_value(&v), Ok(v.clone()));
        assert_eq!(
            from_value::<Value>(nested(MAX_DEPTH)),
            Ok(nested(MAX_DEPTH))
        );
    }
}
