//! Zero-copy decoding: names and typed payloads that share the received frame's buffer.
//!
//! A received WebSocket message is one `Bytes` buffer. Decoded through `decode_shared` (in
//! `value/shared.rs`, which `Value`'s byte strings use too), the large strings ([`SharedStr`])
//! and typed payloads of its frames become slices of that buffer (a reference count, no
//! allocation, no copy) instead of owned copies, when they are at least half of it. Small parts
//! are not worth it: a string of up to 30 bytes (an actor or method name) is stored inline, and
//! a payload under 512 bytes is copied; nor are parts of a message packed with many others,
//! which would keep it all alive (why: `value/shared.rs`). Decoded from a plain `&[u8]`
//! ([`decode`](super::decode)), large parts are copied.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

pub(super) use crate::value::shared::decode_shared;
use crate::value::shared::share_most;

/// Immutable bytes, cheap to clone: up to 30 bytes inline (no allocation at all), longer ones
/// in a shared buffer — decoded from a frame, the frame's own when they are large.
#[derive(Clone)]
pub struct SharedBytes(Repr);

#[derive(Clone)]
enum Repr {
    Inline(u8, [u8; INLINE]),
    Shared(Bytes),
}

const INLINE: usize = 30;

impl SharedBytes {
    /// The longest bytes stored inline.
    pub(crate) const INLINE: usize = INLINE;

    fn inline(b: &[u8]) -> Option<Self> {
        let mut buf = [0; INLINE];
        buf.get_mut(..b.len())?.copy_from_slice(b);
        Some(SharedBytes(Repr::Inline(b.len() as u8, buf)))
    }

    /// `b` inline, or shared with the frame being decoded if it is most of it, or copied: a
    /// call waiting in a backlog holds its names and payload for long, and must not pin a
    /// message of many other calls (see `value/shared.rs`).
    fn decoded(b: &[u8]) -> Self {
        Self::inline(b).unwrap_or_else(|| SharedBytes(Repr::Shared(share_most(b))))
    }

    /// The postcard encoding of `value`: small ones are encoded in place, with no allocation.
    ///
    /// # Errors
    /// The serializer's error, for a `Serialize` impl that reports one.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> postcard::Result<Self> {
        let mut buf = [0; INLINE];
        match postcard::to_slice(value, &mut buf) {
            Ok(used) => {
                let len = used.len() as u8;
                Ok(SharedBytes(Repr::Inline(len, buf)))
            }
            Err(postcard::Error::SerializeBufferFull) => Ok(super::encode_exact(value)?.into()),
            Err(e) => Err(e),
        }
    }
}

impl Default for SharedBytes {
    fn default() -> Self {
        SharedBytes(Repr::Inline(0, [0; INLINE]))
    }
}

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(len, buf) => &buf[..*len as usize],
            Repr::Shared(b) => b,
        }
    }
}

impl From<Vec<u8>> for SharedBytes {
    fn from(v: Vec<u8>) -> Self {
        Self::inline(&v).unwrap_or_else(|| SharedBytes(Repr::Shared(Bytes::from(v))))
    }
}

impl From<&[u8]> for SharedBytes {
    fn from(b: &[u8]) -> Self {
        Self::inline(b).unwrap_or_else(|| SharedBytes(Repr::Shared(Bytes::copy_from_slice(b))))
    }
}

impl PartialEq for SharedBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for SharedBytes {}

impl std::hash::Hash for SharedBytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl Serialize for SharedBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Repr::Shared(b) = &self.0 {
            crate::value::shared::offer(b);
        }
        serializer.serialize_bytes(self)
    }
}

impl<'de> Deserialize<'de> for SharedBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = SharedBytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<SharedBytes, E> {
                Ok(SharedBytes::decoded(v))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<SharedBytes, E> {
                Ok(v.into())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<SharedBytes, E> {
                Ok(v.into())
            }
        }
        deserializer.deserialize_bytes(BytesVisitor)
    }
}

/// An immutable string, cheap to clone: [`SharedBytes`] that hold UTF-8.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SharedStr(SharedBytes);

impl SharedStr {
    /// The string.
    pub fn as_str(&self) -> &str {
        self
    }
}

impl Deref for SharedStr {
    type Target = str;

    fn deref(&self) -> &str {
        // SAFETY: every constructor takes the bytes of a `str` or `String`, so they are UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for SharedStr {
    // As `str` hashes, so maps keyed by `SharedStr` can be searched with a `&str`.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self
    }
}

impl From<&str> for SharedStr {
    fn from(s: &str) -> Self {
        SharedStr(s.as_bytes().into())
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> Self {
        SharedStr(s.into_bytes().into())
    }
}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl Serialize for SharedStr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

impl<'de> Deserialize<'de> for SharedStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = SharedStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<SharedStr, E> {
                Ok(SharedStr(SharedBytes::decoded(v.as_bytes())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SharedStr, E> {
                Ok(v.into())
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<SharedStr, E> {
                Ok(v.into())
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_encodings_stay_inline_and_decode_alike() {
        for value in [vec![1u8; 3], vec![2u8; 300]] {
            let encoded = SharedBytes::encode(&value).unwrap();
            assert_eq!(&*encoded, &postcard::to_stdvec(&value).unwrap()[..]);
            assert_eq!(matches!(encoded.0, Repr::Inline(..)), value.len() < INLINE);
            let back: Vec<u8> = postcard::from_bytes(&encoded).unwrap();
            assert_eq!(back, value);
        }
    }

    #[test]
    fn a_large_payload_shares_its_message_only_if_it_is_most_of_it() {
        let part = crate::value::shared::SHARE_FROM;
        // Alone in its message (as a large argument is): a slice of it.
        let alone = Bytes::from(vec![7u8; part + 40]);
        let shared = decode_shared(&alone, |b| SharedBytes::decoded(&b[40..]));
        assert!(matches!(&shared.0, Repr::Shared(b) if b.as_ptr() == alone[40..].as_ptr()));
        // One of many calls packed into a message: a copy, so a call that waits long in a
        // backlog does not keep the others' bytes alive.
        let packed = Bytes::from(vec![7u8; 8 * part]);
        let copied = decode_shared(&packed, |b| SharedBytes::decoded(&b[..part]));
        assert!(matches!(&copied.0, Repr::Shared(b) if b.as_ptr() != packed.as_ptr()));
        assert_eq!(&*copied, &packed[..part]);
    }

    #[test]
    fn strings_short_or_long_compare_and_hash_like_str() {
        let long = "a name longer than thirty bytes, stored in a buffer";
        for s in ["", "name", long] {
            let frame = Bytes::copy_from_slice(s.as_bytes());
            let decoded = decode_shared(&frame, |b| SharedStr(SharedBytes::decoded(b)));
            assert_eq!(decoded, SharedStr::from(s));
            assert_eq!(decoded.as_str(), s);
            let mut map = std::collections::HashMap::new();
            map.insert(decoded, 1);
            assert_eq!(map.get(s), Some(&1));
        }
    }
}
