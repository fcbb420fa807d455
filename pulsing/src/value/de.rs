//! `serde::Deserializer` for an owned [`Value`].

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{
    self, DeserializeSeed, EnumAccess, Expected, IntoDeserializer, Unexpected, VariantAccess,
    Visitor,
};
use serde::forward_to_deserialize_any;

use super::bigint::{self, Wide};
use super::{elements, Value, ValueError, VALUE_TOKEN};

type Result<T> = std::result::Result<T, ValueError>;

/// `expected <what the visitor expects>, found <value>`.
fn invalid<'de, V: Visitor<'de>>(found: &Value, visitor: V) -> ValueError {
    ValueError::mismatch(found, &visitor as &dyn Expected)
}

/// Visits `items` as a sequence, failing if the visitor leaves any unread.
fn visit_seq<'de, I, V>(items: I, visitor: V) -> Result<V::Value>
where
    I: IntoIterator,
    I::Item: IntoDeserializer<'de, ValueError>,
    V: Visitor<'de>,
{
    let mut seq = SeqDeserializer::new(items.into_iter());
    let out = visitor.visit_seq(&mut seq)?;
    seq.end()?;
    Ok(out)
}

/// Visits `entries` as a map, failing if the visitor leaves any unread.
fn visit_entries<'de, V: Visitor<'de>>(
    entries: Vec<(Value, Value)>,
    visitor: V,
) -> Result<V::Value> {
    let mut map = MapDeserializer::<_, ValueError>::new(entries.into_iter());
    let out = visitor.visit_map(&mut map)?;
    map.end()?;
    Ok(out)
}

/// The integer in `value` as a `T`: from an [`Value::Int`] or a big integer map, if it fits.
fn integer<T>(value: &Value) -> Option<T>
where
    T: TryFrom<i64> + TryFrom<i128> + TryFrom<u128>,
{
    match value {
        Value::Int(n) => T::try_from(*n).ok(),
        big => match bigint::decode(big)? {
            Wide::Negative(n) => T::try_from(n).ok(),
            Wide::Positive(n) => T::try_from(n).ok(),
        },
    }
}

/// A float, an int or a big integer map as an `f64` (integers rounded).
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Float(x) => Some(*x),
        Value::Int(n) => Some(*n as f64),
        big => bigint::decode(big).map(Wide::as_f64),
    }
}

/// Integer targets are range-checked against the requested type; an integer outside `i64`
/// arrives as a big integer map (`bigint.rs`).
macro_rules! deserialize_int {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            match integer::<$ty>(&self) {
                Some(n) => visitor.$visit(n),
                None => Err(invalid(&self, visitor)),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Value {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match bigint::decode(&self) {
            Some(Wide::Negative(n)) => return visitor.visit_i128(n),
            Some(Wide::Positive(n)) => return visitor.visit_u128(n),
            None => {}
        }
        match self {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Int(n) => visitor.visit_i64(n),
            Value::Float(x) => visitor.visit_f64(x),
            Value::Str(s) => visitor.visit_string(s),
            Value::Bytes(b) => visitor.visit_byte_buf(Vec::from(b)),
            Value::List(items) => visit_seq(items, visitor),
            Value::Map(entries) => visit_entries(entries, visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self {
            Value::Bool(b) => visitor.visit_bool(b),
            other => Err(invalid(&other, visitor)),
        }
    }

    deserialize_int! {
        deserialize_i8 => i8, visit_i8;
        deserialize_i16 => i16, visit_i16;
        deserialize_i32 => i32, visit_i32;
        deserialize_i64 => i64, visit_i64;
        deserialize_i128 => i128, visit_i128;
        deserialize_u8 => u8, visit_u8;
        deserialize_u16 => u16, visit_u16;
        deserialize_u32 => u32, visit_u32;
        deserialize_u64 => u64, visit_u64;
        deserialize_u128 => u128, visit_u128;
    }

    /// Rounds to the nearest `f32`; NaN and the infinities stay what they are, but a finite
    /// number too large for an `f32` is an error rather than an infinity.
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let Some(x) = number(&self) else {
            return Err(invalid(&self, visitor));
        };
        let narrow = x as f32;
        if x.is_finite() && !narrow.is_finite() {
            return Err(ValueError::new(format!(
                "expected f32, found {} (too large for an f32)",
                self.describe()
            )));
        }
        visitor.visit_f32(narrow)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match number(&self) {
            Some(x) => visitor.visit_f64(x),
            None => Err(invalid(&self, visitor)),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if let Value::Str(s) = &self {
            let mut chars = s.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                return visitor.visit_char(c);
            }
        }
        Err(invalid(&self, visitor))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self {
            Value::Str(s) => visitor.visit_string(s),
            other => Err(invalid(&other, visitor)),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_byte_buf(visitor)
    }

    /// Accepts bytes, or a list of integers in `0..=255`.
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self {
            Value::Bytes(b) => visitor.visit_byte_buf(Vec::from(b)),
            Value::List(items) => {
                let bytes = items
                    .into_iter()
                    .map(|item| match item {
                        Value::Int(n) if (0..=255).contains(&n) => Ok(n as u8),
                        other => Err(ValueError::mismatch(&other, "a byte (int 0..=255)")),
                    })
                    .collect::<Result<Vec<u8>>>()?;
                visitor.visit_byte_buf(bytes)
            }
            other => Err(invalid(&other, visitor)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self {
            Value::Null => visitor.visit_unit(),
            other => Err(invalid(&other, visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    /// Accepts a list, or bytes (yielding their `u8` elements).
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self {
            Value::List(items) => visit_seq(items, visitor),
            Value::Bytes(b) => visit_seq(b, visitor),
            other => Err(invalid(&other, visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        let found = match &self {
            Value::List(items) if items.len() == len => None,
            Value::Bytes(b) if b.len() == len => None,
            Value::List(items) => Some(format!("a list of {}", items.len())),
            Value::Bytes(b) => Some(format!("bytes of length {}", b.len())),
            other => Some(other.describe()),
        };
        if let Some(found) = found {
            let message = format!("expected a tuple of {}, found {found}", elements(len));
            return Err(ValueError::new(message));
        }
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self {
            Value::Map(entries) => visit_entries(entries, visitor),
            other => Err(invalid(&other, visitor)),
        }
    }

    /// Accepts a map keyed by field name, or a list of fields in order.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self {
            Value::Map(entries) => visit_entries(entries, visitor),
            Value::List(items) => visit_seq(items, visitor),
            other => Err(invalid(&other, visitor)),
        }
    }

    /// Accepts a variant name (unit variants) or a single-entry map
    /// `{variant: content}`.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        if name == VALUE_TOKEN {
            return visitor.visit_enum(as_value_variant(self));
        }
        match self {
            Value::Str(_) => visitor.visit_enum(EnumDeserializer {
                variant: self,
                content: None,
            }),
            Value::Map(mut entries) if entries.len() == 1 => {
                let (variant, content) = entries.pop().expect("length checked");
                visitor.visit_enum(EnumDeserializer {
                    variant,
                    content: Some(content),
                })
            }
            other => Err(ValueError::mismatch(
                &other,
                format_args!("enum {name} (a variant name or a single-entry map)"),
            )),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! { identifier }
}

/// Presents a `Value` as its own variant so that `Value`'s derived
/// `Deserialize` reconstructs it unchanged (the inverse of the special case in
/// the serializer).
fn as_value_variant(value: Value) -> EnumDeserializer {
    let variant = match value {
        Value::Null => "Null",
        Value::Bool(_) => "Bool",
        Value::Int(_) => "Int",
        Value::Float(_) => "Float",
        Value::Str(_) => "Str",
        Value::Bytes(_) => "Bytes",
        Value::List(_) => "List",
        Value::Map(_) => "Map",
    };
    let content = match value {
        Value::Null => None,
        // The derived impl expects `Vec<(Value, Value)>`: a list of pairs.
        Value::Map(entries) => Some(Value::List(
            entries
                .into_iter()
                .map(|(k, v)| Value::List(vec![k, v]))
                .collect(),
        )),
        other => Some(other),
    };
    EnumDeserializer {
        variant: Value::Str(variant.to_owned()),
        content,
    }
}

impl<'de> IntoDeserializer<'de, ValueError> for Value {
    type Deserializer = Value;

    fn into_deserializer(self) -> Value {
        self
    }
}

/// An externally tagged enum: the variant identifier and its content, which
/// is `None` when only the variant name was given.
struct EnumDeserializer {
    variant: Value,
    content: Option<Value>,
}

impl<'de> EnumAccess<'de> for EnumDeserializer {
    type Error = ValueError;
    type Variant = VariantDeserializer;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self::Variant)> {
        let variant = seed.deserialize(self.variant)?;
        Ok((variant, VariantDeserializer(self.content)))
    }
}

/// The content of an enum variant.
struct VariantDeserializer(Option<Value>);

impl VariantDeserializer {
    fn content(self, expected: &str) -> Result<Value> {
        self.0
            .ok_or_else(|| de::Error::invalid_type(Unexpected::UnitVariant, &expected))
    }
}

impl<'de> VariantAccess<'de> for VariantDeserializer {
    type Error = ValueError;

    fn unit_variant(self) -> Result<()> {
        match self.0 {
            None | Some(Value::Null) => Ok(()),
            Some(other) => Err(ValueError::mismatch(&other, "a unit variant")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self.content("newtype variant")?)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_tuple(self.content("tuple variant")?, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let content = self.content("struct variant")?;
        de::Deserializer::deserialize_struct(content, "", fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::super::from_value;
    use super::*;
    use serde::de::DeserializeOwned;
    use serde::Deserialize;
    use std::collections::HashMap;

    fn error<T: DeserializeOwned + std::fmt::Debug>(value: Value) -> String {
        from_value::<T>(value).unwrap_err().to_string()
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Config {
        name: String,
        retries: u8,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    enum Mode {
        Off,
        Level(u8),
    }

    fn config(name: Value, retries: Value) -> Value {
        Value::Map(vec![("name".into(), name), ("retries".into(), retries)])
    }

    #[test]
    fn wrong_type() {
        assert_eq!(
            error::<i64>("abc".into()),
            r#"expected i64, found str "abc""#
        );
        assert_eq!(error::<String>(5.into()), "expected a string, found int 5");
        assert_eq!(error::<bool>(Value::Null), "expected a boolean, found None");
        assert_eq!(
            error::<Vec<i32>>(Value::Map(vec![])),
            "expected a sequence, found map {}"
        );
        assert_eq!(
            error::<Config>(Value::List(vec![1.into(), 2.into()])),
            "expected a string, found int 1"
        );
        assert_eq!(
            error::<Config>(config(Value::bytes("x"), 1.into())),
            r#"expected a string, found bytes b"x""#
        );
        assert_eq!(
            error::<char>("ab".into()),
            r#"expected a character, found str "ab""#
        );
        assert_eq!(from_value::<char>("é".into()), Ok('é'));
    }

    #[test]
    fn numbers() {
        assert_eq!(error::<u8>(300.into()), "expected u8, found int 300");
        assert_eq!(error::<u64>((-1).into()), "expected u64, found int -1");
        assert_eq!(error::<i8>(Value::Int(-129)), "expected i8, found int -129");
        assert_eq!(
            error::<Config>(config("a".into(), 256.into())),
            "expected u8, found int 256"
        );
        assert_eq!(error::<i64>(1.5.into()), "expected i64, found float 1.5");
        assert_eq!(error::<u32>(2.0.into()), "expected u32, found float 2.0");
        assert_eq!(from_value::<f64>(3.into()), Ok(3.0));
        assert_eq!(from_value::<f32>(3.into()), Ok(3.0));
        assert_eq!(from_value::<u128>(7.into()), Ok(7));
        assert_eq!(error::<u128>((-7).into()), "expected u128, found int -7");
    }

    #[test]
    fn tuples_and_bytes() {
        let three = Value::List(vec![1.into(), 2.into(), 3.into()]);
        assert_eq!(
            error::<(i32, i32)>(three.clone()),
            "expected a tuple of 2 elements, found a list of 3"
        );
        assert_eq!(
            error::<(i32,)>(Value::Null),
            "expected a tuple of 1 element, found None"
        );
        assert_eq!(
            error::<[u8; 2]>(Value::bytes("abc")),
            "expected a tuple of 2 elements, found bytes of length 3"
        );
        assert_eq!(from_value::<(u8, u8, u8)>(three), Ok((1, 2, 3)));
        let bad = Value::List(vec![1.into(), 256.into()]);
        assert_eq!(
            error::<serde_bytes::ByteBuf>(bad),
            "expected a byte (int 0..=255), found int 256"
        );
        assert_eq!(
            from_value::<serde_bytes::ByteBuf>(Value::List(vec![7.into()])),
            Ok(serde_bytes::ByteBuf::from(vec![7]))
        );
    }

    #[test]
    fn structs_and_enums() {
        assert_eq!(
            error::<Config>(Value::Map(vec![("name".into(), "a".into())])),
            "missing field `retries`"
        );
        assert_eq!(
            error::<Config>("x".into()),
            r#"expected struct Config, found str "x""#
        );
        assert_eq!(
            error::<Config>(Value::List(vec!["a".into()])),
            "expected struct Config with 2 elements, found 1 element"
        );
        assert_eq!(from_value::<Mode>("Off".into()), Ok(Mode::Off));
        let level = Value::Map(vec![("Level".into(), 3.into())]);
        assert_eq!(from_value::<Mode>(level), Ok(Mode::Level(3)));
        assert_eq!(
            error::<Mode>("Level".into()),
            "expected newtype variant, found unit variant"
        );
        assert_eq!(
            error::<Mode>("On".into()),
            "unknown variant `On`, expected `Off` or `Level`"
        );
        assert_eq!(
            error::<Mode>(Value::Map(vec![])),
            "expected enum Mode (a variant name or a single-entry map), found map {}"
        );
        let counts = Value::Map(vec![("a".into(), 1.into())]);
        assert_eq!(
            from_value::<HashMap<String, u8>>(counts),
            Ok(HashMap::from([("a".to_owned(), 1)]))
        );
    }
}
