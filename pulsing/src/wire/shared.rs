//! Zero-copy decoding: names and typed payloads that share the received frame's buffer.
//!
//! A received WebSocket message is one `Bytes` buffer. Decoded through [`decode_shared`], the
//! large strings ([`SharedStr`]) and typed payloads of its frames become slices of that buffer
//! (a reference count, no allocation, no copy) instead of owned copies. Small parts are not
//! worth it: a string of up to 30 bytes (an actor or method name) is stored inline, and a
//! payload under [`SHARE_FROM`] bytes is copied — measured at 1024 calls in flight, sharing
//! every part made threads contend on the buffer's reference count (≈5% of the CPU) for no
//! gain. Decoded from a plain `&[u8]` ([`decode`](super::decode)), large parts are copied.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

thread_local! {
    /// The frame being decoded by [`decode_shared`] on this thread, if any.
    static FRAME: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Runs `decode` with `frame` as the buffer borrowed parts are shared from.
pub(super) fn decode_shared<T>(frame: &Bytes, decode: impl FnOnce(&[u8]) -> T) -> T {
    struct Reset(Option<Bytes>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            FRAME.with(|f| *f.borrow_mut() = previous);
        }
    }
    let _reset = Reset(FRAME.with(|f| f.borrow_mut().replace(frame.clone())));
    decode(frame)
}

/// Parts at least this long are shared with the frame rather than copied.
const SHARE_FROM: usize = 512;

/// `part` as a slice of the frame being decoded if it is large and lies in it; otherwise a copy.
fn share(part: &[u8]) -> Bytes {
    if part.len() < SHARE_FROM {
        return Bytes::copy_from_slice(part);
    }
    FRAME.with(|f| match &*f.borrow() {
        Some(frame) if within(frame, part) => frame.slice_ref(part),
        _ => Bytes::copy_from_slice(part),
    })
}

fn within(frame: &[u8], part: &[u8]) -> bool {
    let range = frame.as_ptr_range();
    let start = part.as_ptr();
    range.start <= start && start.wrapping_add(part.len()) <= range.end
}

/// An immutable string, cheap to clone: up to 30 bytes inline, longer ones in a shared buffer
/// (decoded from a frame, the frame's own).
#[derive(Clone)]
pub struct SharedStr(Repr);

#[derive(Clone)]
enum Repr {
    Inline(u8, [u8; INLINE]),
    Shared(Bytes),
}

const INLINE: usize = 30;

impl SharedStr {
    /// The string.
    pub fn as_str(&self) -> &str {
        self
    }

    fn inline(s: &str) -> Option<Self> {
        let mut buf = [0; INLINE];
        buf.get_mut(..s.len())?.copy_from_slice(s.as_bytes());
        Some(SharedStr(Repr::Inline(s.len() as u8, buf)))
    }

    /// `s` inline, or shared with the frame being decoded.
    fn decoded(s: &str) -> Self {
        Self::inline(s).unwrap_or_else(|| SharedStr(Repr::Shared(share(s.as_bytes()))))
    }
}

impl Default for SharedStr {
    fn default() -> Self {
        SharedStr(Repr::Inline(0, [0; INLINE]))
    }
}

impl Deref for SharedStr {
    type Target = str;

    fn deref(&self) -> &str {
        let bytes = match &self.0 {
            Repr::Inline(len, buf) => &buf[..*len as usize],
            Repr::Shared(b) => b,
        };
        // SAFETY: every constructor takes the bytes of a `str` or `String`, so they are UTF-8.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SharedStr {}

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
        Self::inline(s)
            .unwrap_or_else(|| SharedStr(Repr::Shared(Bytes::copy_from_slice(s.as_bytes()))))
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> Self {
        Self::inline(&s).unwrap_or_else(|| SharedStr(Repr::Shared(Bytes::from(s.into_bytes()))))
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
                Ok(SharedStr::decoded(v))
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

/// Serde for a `Bytes` field encoded as bytes (like `serde_bytes`), shared from the frame when
/// decoded through [`decode_shared`].
pub(super) mod bytes_field {
    use super::*;

    pub(in crate::wire) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub(in crate::wire) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
                Ok(share(v))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes::copy_from_slice(v))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes::from(v))
            }
        }
        d.deserialize_bytes(BytesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_decoded_parts_share_the_frame_small_ones_are_copied() {
        let frame = Bytes::from(vec![b'x'; 4 * SHARE_FROM]);
        let (large, small) =
            decode_shared(&frame, |b| (share(&b[2..2 + SHARE_FROM]), share(&b[2..10])));
        assert_eq!(large.as_ptr(), frame[2..].as_ptr(), "a slice, not a copy");
        assert_ne!(small.as_ptr(), frame[2..].as_ptr());
        assert_eq!(
            share(&frame[2..2 + SHARE_FROM]),
            large,
            "outside a decode: a copy"
        );
    }

    #[test]
    fn strings_short_or_long_compare_and_hash_like_str() {
        let long = "a name longer than thirty bytes, stored in a buffer";
        for s in ["", "name", long] {
            let frame = Bytes::copy_from_slice(s.as_bytes());
            let decoded = decode_shared(&frame, |b| {
                SharedStr::decoded(std::str::from_utf8(b).unwrap())
            });
            assert_eq!(decoded, SharedStr::from(s));
            assert_eq!(decoded.as_str(), s);
            let mut map = std::collections::HashMap::new();
            map.insert(decoded, 1);
            assert_eq!(map.get(s), Some(&1));
        }
    }
}
