//! Decoding a message read as several fragments, without joining them.
//!
//! A sender cuts a message at the edges of its large byte strings (`transport/direct.rs`), so
//! each of them arrives as one whole fragment, read into a buffer of its own
//! (`transport/inlet.rs`). postcard reads such a message through [`Fragments`], a flavor that
//! hands out a byte string as a slice of the fragment holding it, and the string is then shared
//! with that fragment (`value/shared.rs`) instead of copied. A message cut elsewhere (not by a
//! Pulsing sender: any cut is valid WebSocket) is decoded from the point of the first item that
//! spans two fragments on, with the rest joined: the same frames either way, one copy more.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::codec::{decode_packed, malformed, FrameError, PACK_LIMIT};
use super::Frame;
use crate::value::shared::decode_shared_fragments;

/// Decodes the frames packed in the message read as `fragments` (see [`decode_packed`]).
pub(crate) fn decode_packed_fragments(
    fragments: Vec<Bytes>,
    max: usize,
    mut each: impl FnMut(Frame) -> bool,
) -> Result<(), FrameError> {
    let size: usize = fragments.iter().map(Bytes::len).sum();
    if size > max.max(PACK_LIMIT) {
        return Err(FrameError::TooLarge { size, max });
    }
    let fragments: Arc<[Bytes]> = fragments.into_iter().filter(|f| !f.is_empty()).collect();
    if fragments.len() <= 1 {
        let one = fragments.first().cloned().unwrap_or_default();
        return decode_packed(&one, max, each);
    }
    let mut at = Cursor::default();
    let joined_from = decode_shared_fragments(&fragments, || {
        while !at.is_end(&fragments) {
            let mut de = postcard::Deserializer::from_flavor(Flavor {
                fragments: &fragments,
                at,
                spanned: false,
            });
            let decoded = serde::Deserialize::deserialize(&mut de);
            let flavor = de.finalize().map_err(malformed)?;
            let frame = match decoded {
                Ok(frame) => frame,
                Err(_) if flavor.spanned => return Ok(Some(at)),
                Err(e) => return Err(malformed(e)),
            };
            let used = at.distance(flavor.at, &fragments);
            if used > max {
                return Err(FrameError::TooLarge { size: used, max });
            }
            at = flavor.at.settled(&fragments);
            if !each(frame) {
                return Ok(None);
            }
        }
        Ok(None)
    })?;
    match joined_from {
        Some(from) => decode_packed(&from.rest(&fragments), max, each),
        None => Ok(()),
    }
}

/// A position in the fragments: fragment `index`, byte `offset` within it.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
struct Cursor {
    index: usize,
    offset: usize,
}

impl Cursor {
    fn is_end(&self, fragments: &[Bytes]) -> bool {
        self.index == fragments.len()
    }

    /// Past any fragment this cursor has read to the end of.
    fn settled(mut self, fragments: &[Bytes]) -> Self {
        while self.index < fragments.len() && self.offset == fragments[self.index].len() {
            (self.index, self.offset) = (self.index + 1, 0);
        }
        self
    }

    /// Bytes from `self` to `to`.
    fn distance(&self, to: Cursor, fragments: &[Bytes]) -> usize {
        let before =
            |c: &Cursor| fragments[..c.index].iter().map(Bytes::len).sum::<usize>() + c.offset;
        before(&to) - before(self)
    }

    /// Everything from here on, joined into one buffer.
    fn rest(&self, fragments: &[Bytes]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.distance(
            Cursor {
                index: fragments.len(),
                offset: 0,
            },
            fragments,
        ));
        out.extend_from_slice(&fragments[self.index][self.offset..]);
        for fragment in &fragments[self.index + 1..] {
            out.extend_from_slice(fragment);
        }
        out.freeze()
    }
}

/// postcard's input: the fragments, read in order; an item must lie within one fragment.
struct Flavor<'de> {
    fragments: &'de [Bytes],
    at: Cursor,
    /// An item would have spanned two fragments (not an error in the message).
    spanned: bool,
}

impl<'de> postcard::de_flavors::Flavor<'de> for Flavor<'de> {
    type Remainder = Self;
    type Source = &'de [Bytes];

    fn pop(&mut self) -> postcard::Result<u8> {
        Ok(self.try_take_n(1)?[0])
    }

    fn size_hint(&self) -> Option<usize> {
        let end = Cursor {
            index: self.fragments.len(),
            offset: 0,
        };
        Some(self.at.distance(end, self.fragments))
    }

    fn try_take_n(&mut self, ct: usize) -> postcard::Result<&'de [u8]> {
        let at = self.at.settled(self.fragments);
        let Some(fragment) = self.fragments.get(at.index) else {
            return if ct == 0 {
                Ok(&[])
            } else {
                Err(postcard::Error::DeserializeUnexpectedEnd)
            };
        };
        // `ct` is a length read from the message: it may be anything.
        let taken = at
            .offset
            .checked_add(ct)
            .and_then(|end| fragment.get(at.offset..end));
        let Some(taken) = taken else {
            self.spanned = at.index + 1 < self.fragments.len();
            return Err(postcard::Error::DeserializeUnexpectedEnd);
        };
        self.at = Cursor {
            index: at.index,
            offset: at.offset + ct,
        };
        Ok(taken)
    }

    fn finalize(self) -> postcard::Result<Self> {
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode, Payload};
    use crate::Value;

    fn frames(fragments: Vec<Bytes>) -> Result<Vec<Frame>, FrameError> {
        let mut out = vec![];
        decode_packed_fragments(fragments, 1 << 24, |f| {
            out.push(f);
            true
        })?;
        Ok(out)
    }

    fn answer(bytes: Vec<u8>) -> Frame {
        Frame::Response {
            id: 9,
            result: Ok(Payload::Value(Value::Bytes(bytes.into()))),
        }
    }

    /// A `Response` whose byte string is a fragment of its own, packed after a small frame.
    fn cut_at_the_string(len: usize) -> (Vec<Bytes>, Vec<Frame>, Bytes) {
        let string: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let first = Frame::Cancel { id: 1 };
        let second = answer(string.clone());
        let mut message = encode(&first);
        message.extend(encode(&second));
        let at = message.len() - len;
        let message = Bytes::from(message);
        let string = message.slice(at..);
        (
            vec![message.slice(..at), string.clone()],
            vec![first, second],
            string,
        )
    }

    #[test]
    fn a_string_that_is_a_fragment_is_shared_not_copied() {
        let (fragments, expected, string) = cut_at_the_string(40_000);
        let got = frames(fragments).unwrap();
        assert_eq!(got, expected);
        let Frame::Response {
            result: Ok(Payload::Value(Value::Bytes(b))),
            ..
        } = &got[1]
        else {
            unreachable!()
        };
        assert_eq!(b.as_ptr(), string.as_ptr(), "the fragment itself");
    }

    #[test]
    fn a_message_cut_anywhere_decodes_to_the_same_frames() {
        let (fragments, expected, _) = cut_at_the_string(3_000);
        let whole: Vec<u8> = fragments.concat();
        for cuts in [vec![1], vec![5, 6, 7], vec![2, 3000], vec![whole.len() - 1]] {
            let mut pieces = vec![];
            let mut from = 0;
            for cut in cuts.iter().copied().chain([whole.len()]) {
                pieces.push(Bytes::copy_from_slice(&whole[from..cut]));
                pieces.push(Bytes::new());
                from = cut;
            }
            assert_eq!(frames(pieces).unwrap(), expected, "cut at {cuts:?}");
        }
    }

    #[test]
    fn truncated_or_oversize_fragments_are_refused() {
        let (mut fragments, _, _) = cut_at_the_string(3_000);
        let last = fragments.pop().unwrap();
        fragments.push(last.slice(..last.len() - 1));
        assert!(matches!(frames(fragments), Err(FrameError::Malformed(_))));
        let (fragments, _, _) = cut_at_the_string(3_000);
        let refused = decode_packed_fragments(fragments, 100, |_| true);
        assert!(matches!(refused, Err(FrameError::TooLarge { .. })));
        assert!(matches!(frames(vec![]), Err(FrameError::Malformed(_))));
        // A length near `usize::MAX` in a message of several fragments.
        let mut lying = encode(&Frame::Cancel { id: 1 });
        lying.extend([
            2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        let fragments = vec![Bytes::from(lying), Bytes::from_static(b"rest")];
        assert!(frames(fragments).is_err());
    }
}
