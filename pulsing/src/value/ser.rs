//! A `serde::Serializer` that produces a [`Value`].

use std::fmt::Display;

use serde::ser::{self, Serialize};

use super::{Bytes, Value, ValueError, VALUE_TOKEN};

type Result<T> = std::result::Result<T, ValueError>;

/// Serializes any `Serialize` type into a [`Value`], following serde_json's
/// conventions for enums (externally tagged, as single-entry maps).
#[derive(Debug, Clone, Copy)]
pub(super) struct Serializer;

/// An integer: [`Value::Int`] when it fits an `i64`, else a `{"$int": "<digits>"}` map.
fn int<N: TryInto<i64> + Display + Copy>(n: N) -> Result<Value> {
    Ok(n.try_into()
        .map(Value::Int)
        .unwrap_or_else(|_| super::bigint::encode(n)))
}

/// `{variant: content}`, the externally tagged form of a non-unit variant.
fn tagged(variant: &str, content: Value) -> Value {
    Value::Map(vec![(Value::Str(variant.to_owned()), content)])
}

/// Undoes the `Value::Map` payload encoding (a list of `[key, value]` pairs).
fn pairs_to_map(pairs: Value) -> Result<Value> {
    let Value::List(pairs) = pairs else {
        return Ok(pairs);
    };
    pairs
        .into_iter()
        .map(|pair| match pair {
            Value::List(kv) => match <[Value; 2]>::try_from(kv) {
                Ok([k, v]) => Ok((k, v)),
                Err(kv) => Err(ValueError::mismatch(&Value::List(kv), "a key/value pair")),
            },
            other => Err(ValueError::mismatch(&other, "a key/value pair")),
        })
        .collect::<Result<_>>()
        .map(Value::Map)
}

/// Defines the scalar `Serializer` methods: `method(arg: type) => result`.
macro_rules! scalars {
    ($($method:ident($($arg:ident: $ty:ty)?) => $value:expr;)*) => {$(
        fn $method(self $(, $arg: $ty)?) -> Result<Value> { $value }
    )*};
}

impl ser::Serializer for Serializer {
    type Ok = Value;
    type Error = ValueError;
    type SerializeSeq = SeqSerializer;
    type SerializeTuple = SeqSerializer;
    type SerializeTupleStruct = SeqSerializer;
    type SerializeTupleVariant = VariantSerializer<SeqSerializer>;
    type SerializeMap = MapSerializer;
    type SerializeStruct = MapSerializer;
    type SerializeStructVariant = VariantSerializer<MapSerializer>;

    scalars! {
        serialize_bool(v: bool) => Ok(Value::Bool(v));
        serialize_i8(v: i8) => int(v);
        serialize_i16(v: i16) => int(v);
        serialize_i32(v: i32) => int(v);
        serialize_i64(v: i64) => Ok(Value::Int(v));
        serialize_i128(v: i128) => int(v);
        serialize_u8(v: u8) => int(v);
        serialize_u16(v: u16) => int(v);
        serialize_u32(v: u32) => int(v);
        serialize_u64(v: u64) => int(v);
        serialize_u128(v: u128) => int(v);
        serialize_f32(v: f32) => Ok(Value::Float(v.into()));
        serialize_f64(v: f64) => Ok(Value::Float(v));
        serialize_char(v: char) => Ok(Value::Str(v.into()));
        serialize_str(v: &str) => Ok(Value::Str(v.to_owned()));
        serialize_bytes(v: &[u8]) => Ok(Value::Bytes(Bytes::copy_from_slice(v)));
        serialize_none() => Ok(Value::Null);
        serialize_unit() => Ok(Value::Null);
        serialize_unit_struct(_name: &'static str) => Ok(Value::Null);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value> {
        value.serialize(self)
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value> {
        if name == VALUE_TOKEN {
            // The only unit variant of `Value` is `Null`.
            return Ok(Value::Null);
        }
        Ok(Value::Str(variant.to_owned()))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value> {
        let content = value.serialize(self)?;
        if name != VALUE_TOKEN {
            return Ok(tagged(variant, content));
        }
        // A `Value` serializing itself: every payload maps onto the matching
        // variant directly, except `Map`, whose entries arrive as pairs.
        match variant {
            "Map" => pairs_to_map(content),
            _ => Ok(content),
        }
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSerializer> {
        Ok(SeqSerializer {
            items: Vec::with_capacity(len.unwrap_or(0)),
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<SeqSerializer> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<SeqSerializer> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantSerializer<SeqSerializer>> {
        Ok(VariantSerializer {
            variant,
            inner: self.serialize_seq(Some(len))?,
        })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<MapSerializer> {
        Ok(MapSerializer {
            entries: Vec::with_capacity(len.unwrap_or(0)),
            key: None,
        })
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<MapSerializer> {
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantSerializer<MapSerializer>> {
        Ok(VariantSerializer {
            variant,
            inner: self.serialize_map(Some(len))?,
        })
    }
}

/// Collects sequences, tuples and tuple structs into a [`Value::List`].
#[derive(Debug)]
pub(super) struct SeqSerializer {
    items: Vec<Value>,
}

impl SeqSerializer {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.items.push(value.serialize(Serializer)?);
        Ok(())
    }
}

/// `SerializeSeq`, `SerializeTuple` and `SerializeTupleStruct` all build a list.
macro_rules! list_impls {
    ($($trait:ident::$method:ident),*) => {$(
        impl ser::$trait for SeqSerializer {
            type Ok = Value;
            type Error = ValueError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
                self.push(value)
            }
            fn end(self) -> Result<Value> {
                Ok(Value::List(self.items))
            }
        }
    )*};
}

list_impls!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

/// Collects maps and structs into a [`Value::Map`].
#[derive(Debug)]
pub(super) struct MapSerializer {
    entries: Vec<(Value, Value)>,
    key: Option<Value>,
}

impl ser::SerializeMap for MapSerializer {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.key = Some(key.serialize(Serializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let key = self
            .key
            .take()
            .ok_or_else(|| ValueError::new("map value serialized before its key"))?;
        self.entries.push((key, value.serialize(Serializer)?));
        Ok(())
    }
    fn end(self) -> Result<Value> {
        Ok(Value::Map(self.entries))
    }
}

impl ser::SerializeStruct for MapSerializer {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<()> {
        self.entries
            .push((Value::Str(name.to_owned()), value.serialize(Serializer)?));
        Ok(())
    }
    fn end(self) -> Result<Value> {
        Ok(Value::Map(self.entries))
    }
}

/// Wraps a tuple or struct variant's content as `{variant: content}`.
#[derive(Debug)]
pub(super) struct VariantSerializer<S> {
    variant: &'static str,
    inner: S,
}

impl ser::SerializeTupleVariant for VariantSerializer<SeqSerializer> {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.inner.push(value)
    }
    fn end(self) -> Result<Value> {
        Ok(tagged(self.variant, Value::List(self.inner.items)))
    }
}

impl ser::SerializeStructVariant for VariantSerializer<MapSerializer> {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<()> {
        ser::SerializeStruct::serialize_field(&mut self.inner, name, value)
    }
    fn end(self) -> Result<Value> {
        Ok(tagged(self.variant, Value::Map(self.inner.entries)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::to_value;
    use super::*;
    use serde::Serialize;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Meters(f32);

    #[derive(Serialize)]
    struct Pair(i32, &'static str);

    #[derive(Serialize)]
    struct Partial {
        kept: u8,
        #[serde(skip)]
        _skipped: u8,
        #[serde(skip_serializing_if = "Option::is_none")]
        absent: Option<u8>,
    }

    #[test]
    fn shapes() {
        assert_eq!(to_value(&Unit), Ok(Value::Null));
        assert_eq!(to_value(&Meters(0.5)), Ok(Value::Float(0.5)));
        assert_eq!(
            to_value(&Pair(1, "a")),
            Ok(Value::List(vec![1.into(), "a".into()]))
        );
        assert_eq!(
            to_value(&serde_bytes::Bytes::new(b"ab")),
            Ok(Value::bytes("ab"))
        );
        let partial = Partial {
            kept: 1,
            _skipped: 2,
            absent: None,
        };
        assert_eq!(
            to_value(&partial),
            Ok(Value::Map(vec![("kept".into(), 1.into())]))
        );
        let keys = BTreeMap::from([((1, 2), true)]);
        assert_eq!(
            to_value(&keys),
            Ok(Value::Map(vec![(
                Value::List(vec![1.into(), 2.into()]),
                true.into()
            )]))
        );
    }

    #[test]
    fn integer_range() {
        assert_eq!(to_value(&(i64::MAX as u64)), Ok(Value::Int(i64::MAX)));
        assert_eq!(to_value(&i128::from(i64::MIN)), Ok(Value::Int(i64::MIN)));
        let big = |digits: &str| Value::Map(vec![(Value::from("$int"), Value::from(digits))]);
        assert_eq!(to_value(&u64::MAX), Ok(big("18446744073709551615")));
        assert_eq!(
            to_value(&vec![0u128, u128::MAX]),
            Ok(Value::List(vec![
                Value::Int(0),
                big("340282366920938463463374607431768211455")
            ]))
        );
        assert_eq!(
            to_value(&i128::MIN),
            Ok(big("-170141183460469231731687303715884105728"))
        );
    }
}
