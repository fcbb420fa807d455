//! Frame encoding and defensive decoding.

use super::Frame;

/// The default maximum size of one frame: 64 MiB.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// Frames are packed into one WebSocket message up to this size: a message costs the WebSocket
/// layer far more than the few bytes of a small frame (+15–20% calls/s at 1024 in flight,
/// BENCHMARKS.md). A larger frame travels alone. A node's frame limit applies to each frame;
/// a message may always be this large.
pub(crate) const PACK_LIMIT: usize = 16 << 10;

/// Why bytes could not be decoded into a [`Frame`]. The connection that sent them is closed with
/// this reason; the node carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is larger than the limit; it was not decoded.
    #[error("frame of {size} bytes is over the {max}-byte limit")]
    TooLarge {
        /// The frame's size.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// The bytes are not a valid frame (truncated, corrupt, or from another protocol).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The frame holds a [`Value`](crate::Value) nested deeper than
    /// [`MAX_DEPTH`](crate::value::MAX_DEPTH) lists and maps; decoding stopped there.
    #[error("malformed frame: a Value nested more than {max} levels deep")]
    TooDeep {
        /// The limit in force.
        max: usize,
    },
}

/// The [`FrameError`] for a postcard error (the depth limit says so through a flag, since
/// postcard keeps no message for a custom error).
pub(super) fn malformed(e: postcard::Error) -> FrameError {
    if crate::value::take_too_deep() {
        FrameError::TooDeep {
            max: crate::value::MAX_DEPTH,
        }
    } else {
        FrameError::Malformed(e.to_string())
    }
}

/// Encodes a frame with postcard.
///
/// # Panics
/// If the frame holds a [`Value`](crate::Value) nested deeper than
/// [`MAX_DEPTH`](crate::value::MAX_DEPTH) (the only frames that do not encode); see
/// [`try_encode`] for those.
pub fn encode(frame: &Frame) -> Vec<u8> {
    try_encode(frame).expect("the frame holds no Value nested deeper than MAX_DEPTH")
}

/// Encodes a frame with postcard, or says why it cannot be: it holds a
/// [`Value`](crate::Value) nested deeper than [`MAX_DEPTH`](crate::value::MAX_DEPTH).
///
/// # Errors
/// [`FrameError::TooDeep`] for such a frame.
pub fn try_encode(frame: &Frame) -> Result<Vec<u8>, FrameError> {
    encode_exact(frame).map_err(|_| FrameError::TooDeep {
        max: crate::value::MAX_DEPTH,
    })
}

/// Postcard bytes in a buffer of exactly their size, measured first: encoding never regrows the
/// buffer (a regrowth copies everything so far), and the writer turns it into `Bytes` without
/// another allocation. Measuring costs less than the reallocations it saves, even for small
/// frames.
pub(crate) fn encode_exact<T: serde::Serialize + ?Sized>(value: &T) -> postcard::Result<Vec<u8>> {
    let size = postcard::experimental::serialized_size(value)?;
    let mut out = Vec::with_capacity(size);
    postcard::serialize_with_flavor(value, Append(&mut out))?;
    Ok(out)
}

/// A postcard flavor that appends to a buffer with `extend_from_slice` (one `memcpy` per
/// slice; postcard's own `to_extend` pushes byte by byte, ≈3× slower on a 1 MiB payload).
pub(crate) struct Append<'a>(pub(crate) &'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Encodes `value` after `bytes`, except its large byte strings (those offered while it is
/// serialized: `value/shared.rs`), which go to `shared` with the offset in `bytes` where each
/// belongs instead of being copied. The frame is `bytes` with each shared buffer put back in at its
/// offset.
///
/// # Errors
/// The serializer's error (a `Value` nested too deep, a `Serialize` impl that fails).
pub(crate) fn encode_gathered<T: serde::Serialize + ?Sized>(
    value: &T,
    bytes: &mut Vec<u8>,
    shared: &mut Vec<(usize, bytes::Bytes)>,
) -> postcard::Result<()> {
    crate::value::shared::gathering(|| {
        postcard::serialize_with_flavor(value, Gather { bytes, shared })
    })
}

/// [`Append`], leaving out offered byte strings (see [`encode_gathered`]).
struct Gather<'a> {
    bytes: &'a mut Vec<u8>,
    shared: &'a mut Vec<(usize, bytes::Bytes)>,
}

impl postcard::ser_flavors::Flavor for Gather<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.bytes.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, contents: &[u8]) -> postcard::Result<()> {
        let offered = (contents.len() >= crate::value::shared::GATHER_FROM)
            .then(|| crate::value::shared::take_offered(contents))
            .flatten();
        match offered {
            Some(buffer) => self.shared.push((self.bytes.len(), buffer)),
            None => self.bytes.extend_from_slice(contents),
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes the frames packed back to back in one received message, in order, handing each to
/// `each` until it returns false. Their names and typed payloads share the message's buffer
/// instead of being copied (see `shared.rs`). An empty message, or one that ends inside a
/// frame, is malformed; the frames before the fault have been handed over. `max` limits each
/// frame (a message of several frames may reach [`PACK_LIMIT`]).
pub(crate) fn decode_packed(
    bytes: &bytes::Bytes,
    max: usize,
    mut each: impl FnMut(Frame) -> bool,
) -> Result<(), FrameError> {
    if bytes.len() > max.max(PACK_LIMIT) {
        return Err(FrameError::TooLarge {
            size: bytes.len(),
            max,
        });
    }
    if bytes.is_empty() {
        return Err(FrameError::Malformed("empty message".into()));
    }
    let mut offset = 0;
    while offset < bytes.len() {
        let (frame, used) = super::shared::decode_shared(bytes, |b| {
            let rest = &b[offset..];
            postcard::take_from_bytes::<Frame>(rest)
                .map(|(frame, left)| (frame, rest.len() - left.len()))
        })
        .map_err(malformed)?;
        if used > max {
            return Err(FrameError::TooLarge { size: used, max });
        }
        offset += used;
        if !each(frame) {
            break;
        }
    }
    Ok(())
}

/// Decodes one frame, refusing anything over `max` bytes and any trailing garbage.
///
/// # Errors
/// [`FrameError::TooLarge`] over `max` bytes, [`FrameError::Malformed`] for bytes that are not
/// exactly one valid frame.
pub fn decode(bytes: &[u8], max: usize) -> Result<Frame, FrameError> {
    if bytes.len() > max {
        return Err(FrameError::TooLarge {
            size: bytes.len(),
            max,
        });
    }
    let (frame, rest) = postcard::take_from_bytes::<Frame>(bytes).map_err(malformed)?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} unexpected bytes after the frame",
            rest.len()
        )));
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::value::strategy::arb_value as value;
    use crate::value::{Args, Value};
    use crate::wire::{NodeId, Payload};
    use proptest::prelude::*;

    fn payload() -> impl Strategy<Value = Payload> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| Payload::Typed(b.into())),
            (
                proptest::collection::vec(value(), 0..3),
                proptest::collection::vec((".{0,6}", value()), 0..3)
            )
                .prop_map(|(positional, keyword)| Payload::Dynamic(Args {
                    positional,
                    keyword
                })),
            value().prop_map(Payload::Value),
        ]
    }

    fn error() -> impl Strategy<Value = Error> {
        prop_oneof![
            ".{0,12}".prop_map(|name| Error::NotFound { name }),
            (".{0,12}", ".{0,12}", ".{0,12}").prop_map(|(actor, method, message)| {
                Error::Panicked {
                    actor,
                    method,
                    message,
                }
            }),
            ".{0,12}".prop_map(|actor| Error::Stopped { actor }),
            Just(Error::SystemShutdown),
        ]
    }

    fn frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (any::<u32>(), any::<u64>(), ".{0,20}", any::<[u8; 32]>()).prop_map(
                |(version, node, addr, nonce)| Frame::Hello {
                    version,
                    node: NodeId(node),
                    addr,
                    nonce
                }
            ),
            (
                any::<u64>(),
                (".{0,12}", proptest::option::of(any::<u64>())),
                proptest::option::of(".{0,8}"),
                ".{0,12}",
                payload(),
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u64>())
            )
                .prop_map(
                    |(id, (actor, actor_id), expect_type, method, args, credit, deadline_ms)| {
                        Frame::Request {
                            id,
                            actor: actor.into(),
                            actor_id,
                            expect_type: expect_type.map(Into::into),
                            method: method.into(),
                            args,
                            credit,
                            deadline_ms,
                        }
                    }
                ),
            (
                any::<u64>(),
                prop_oneof![payload().prop_map(Ok), error().prop_map(Err)]
            )
                .prop_map(|(id, result)| Frame::Response { id, result }),
            (any::<u64>(), proptest::collection::vec(payload(), 0..4))
                .prop_map(|(id, items)| Frame::StreamItems { id, items }),
            (any::<u64>(), proptest::option::of(error()))
                .prop_map(|(id, error)| Frame::StreamEnd { id, error }),
            (any::<u64>(), any::<u32>()).prop_map(|(id, items)| Frame::Credit { id, items }),
            any::<u64>().prop_map(|id| Frame::Cancel { id }),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Frame::Gossip),
            Just(Frame::Leaving),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(frame in frame()) {
            let bytes = encode(&frame);
            prop_assert_eq!(decode(&bytes, DEFAULT_MAX_FRAME).unwrap(), frame);
        }

        #[test]
        fn a_borrowed_request_encodes_like_the_frame(
            id in any::<u64>(),
            actor in ".{0,12}",
            actor_id in proptest::option::of(any::<u64>()),
            expect_type in proptest::option::of(".{0,12}"),
            method in ".{0,12}",
            args in payload(),
            credit in proptest::option::of(any::<u32>()),
            deadline_ms in proptest::option::of(any::<u64>()),
        ) {
            let borrowed = postcard::to_stdvec(&crate::wire::RequestRef {
                id,
                actor: &actor,
                actor_id,
                expect_type: expect_type.as_deref(),
                method: &method,
                args: crate::wire::RequestArgs::<crate::wire::NoArgs>::Payload(&args),
                credit,
                deadline_ms,
            })
            .unwrap();
            let owned = encode(&Frame::Request {
                id,
                actor: actor.into(),
                actor_id,
                expect_type: expect_type.map(Into::into),
                method: method.into(),
                args,
                credit,
                deadline_ms,
            });
            prop_assert_eq!(borrowed, owned);
        }

        #[test]
        fn packed_frames_decode_in_order(frames in proptest::collection::vec(frame(), 1..6)) {
            let packed: Vec<u8> = frames.iter().flat_map(encode).collect();
            let packed = bytes::Bytes::from(packed);
            let mut got = Vec::new();
            decode_packed(&packed, DEFAULT_MAX_FRAME, |f| { got.push(f); true }).unwrap();
            prop_assert_eq!(&got, &frames);
            // Cut anywhere inside the last frame: an error, after the whole frames before it.
            let last = encode(frames.last().unwrap()).len();
            for cut in packed.len() - last + 1..packed.len() {
                let mut before = 0;
                let r = decode_packed(&packed.slice(..cut), DEFAULT_MAX_FRAME, |_| { before += 1; true });
                prop_assert!(r.is_err());
                prop_assert_eq!(before, frames.len() - 1);
            }
        }

        #[test]
        fn a_typed_response_encodes_like_the_frame(
            id in any::<u64>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..100),
            text in ".{0,40}",
            n in any::<u32>(),
        ) {
            let value = (serde_bytes::ByteBuf::from(bytes), text, n);
            let encoded = postcard::to_stdvec(&value).unwrap();
            let direct = encode_exact(&crate::wire::TypedResponseRef {
                id,
                value: &value,
                size: encoded.len(),
            })
            .unwrap();
            let framed = encode(&Frame::Response { id, result: Ok(Payload::Typed(encoded.into())) });
            prop_assert_eq!(direct, framed);
        }

        #[test]
        fn a_request_with_typed_arguments_encodes_like_the_frame(
            id in any::<u64>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..100),
            text in ".{0,40}",
            n in any::<u32>(),
            deadline_ms in proptest::option::of(any::<u64>()),
        ) {
            let value = (serde_bytes::ByteBuf::from(bytes), text, n);
            let encoded = postcard::to_stdvec(&value).unwrap();
            let direct = encode_exact(&crate::wire::RequestRef {
                id,
                actor: "a",
                actor_id: Some(3),
                expect_type: None,
                method: "m",
                args: crate::wire::RequestArgs::Typed { value: &value, size: encoded.len() },
                credit: None,
                deadline_ms,
            })
            .unwrap();
            let framed = encode(&Frame::Request {
                id,
                actor: "a".into(),
                actor_id: Some(3),
                expect_type: None,
                method: "m".into(),
                args: Payload::Typed(encoded.into()),
                credit: None,
                deadline_ms,
            });
            prop_assert_eq!(direct, framed);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes, DEFAULT_MAX_FRAME);
        }

        #[test]
        fn every_truncation_is_an_error(frame in frame()) {
            let bytes = encode(&frame);
            for cut in 0..bytes.len() {
                prop_assert!(decode(&bytes[..cut], DEFAULT_MAX_FRAME).is_err());
            }
        }
    }

    #[test]
    fn oversize_frames_are_refused_before_decoding() {
        let bytes = encode(&Frame::Gossip(vec![0; 1000]));
        assert_eq!(
            decode(&bytes, 100),
            Err(FrameError::TooLarge {
                size: bytes.len(),
                max: 100
            })
        );
    }

    /// A `Request` whose by-name argument is `depth` nested lists, written by hand: the
    /// encoder refuses to write one deeper than the limit.
    fn deep_request(depth: usize) -> Vec<u8> {
        let mut bytes = encode(&Frame::Request {
            id: 1,
            actor: "a".into(),
            actor_id: None,
            expect_type: None,
            method: "m".into(),
            args: Payload::Dynamic(Args::from(vec![Value::Null])),
            credit: None,
            deadline_ms: None,
        });
        // The frame ends with: args (Dynamic, 1 positional, Null, 0 keyword), credit, deadline.
        let null_at = bytes.len() - 4;
        assert_eq!(&bytes[null_at..], [0, 0, 0, 0]);
        let tail = bytes.split_off(null_at);
        bytes.extend([6u8, 1].repeat(depth));
        bytes.extend(&tail);
        bytes
    }

    #[test]
    fn a_deeply_nested_value_is_a_frame_error_not_a_stack_overflow() {
        let ok = deep_request(crate::value::MAX_DEPTH);
        assert!(decode(&ok, DEFAULT_MAX_FRAME).is_ok());
        for depth in [crate::value::MAX_DEPTH + 1, 10_000, 1_000_000] {
            let bytes = deep_request(depth);
            let too_deep = FrameError::TooDeep {
                max: crate::value::MAX_DEPTH,
            };
            assert_eq!(decode(&bytes, DEFAULT_MAX_FRAME), Err(too_deep.clone()));
            let packed = bytes::Bytes::from(
                encode(&Frame::Leaving)
                    .into_iter()
                    .chain(bytes)
                    .collect::<Vec<_>>(),
            );
            let mut before = 0;
            let r = decode_packed(&packed, DEFAULT_MAX_FRAME, |_| {
                before += 1;
                true
            });
            assert_eq!((r, before), (Err(too_deep), 1));
        }
        // The encoder refuses what the decoder would.
        let mut deep = Value::Null;
        for _ in 0..=crate::value::MAX_DEPTH {
            deep = Value::List(vec![deep]);
        }
        let frame = Frame::Response {
            id: 1,
            result: Ok(Payload::Value(deep)),
        };
        assert!(matches!(
            try_encode(&frame),
            Err(FrameError::TooDeep { .. })
        ));
    }

    /// Where each byte string of `value` lies: in `frame` (shared) or elsewhere (copied).
    fn shared_with(frame: &[u8], value: &Value, out: &mut Vec<(usize, bool)>) {
        match value {
            Value::Bytes(b) => {
                let range = frame.as_ptr_range();
                out.push((b.len(), range.contains(&b.as_ptr()) && !b.is_empty()));
            }
            Value::List(items) => items.iter().for_each(|v| shared_with(frame, v, out)),
            Value::Map(entries) => entries.iter().for_each(|(k, v)| {
                shared_with(frame, k, out);
                shared_with(frame, v, out);
            }),
            _ => {}
        }
    }

    /// Decodes `message` as the reader does and returns the byte strings of its by-name
    /// arguments and results: (length, whether it is a slice of the message).
    fn byte_strings_of(message: &bytes::Bytes) -> Vec<(usize, bool)> {
        let mut found = Vec::new();
        decode_packed(message, DEFAULT_MAX_FRAME, |frame| {
            match &frame {
                Frame::Request {
                    args: Payload::Dynamic(args),
                    ..
                } => {
                    args.positional
                        .iter()
                        .for_each(|v| shared_with(message, v, &mut found));
                    args.keyword
                        .iter()
                        .for_each(|(_, v)| shared_with(message, v, &mut found));
                }
                Frame::Response {
                    result: Ok(Payload::Value(v)),
                    ..
                } => shared_with(message, v, &mut found),
                other => panic!("{other:?}"),
            }
            true
        })
        .unwrap();
        found
    }

    fn request_with(args: Args) -> Frame {
        Frame::Request {
            id: 1,
            actor: "a".into(),
            actor_id: None,
            expect_type: None,
            method: "m".into(),
            args: Payload::Dynamic(args),
            credit: None,
            deadline_ms: None,
        }
    }

    #[test]
    fn a_large_byte_string_alone_in_its_message_shares_it() {
        // Small ones beside a large one: only the large one (most of the message) is shared.
        let sizes = [0, 1, 511, 512, 16 << 10, 1 << 20];
        let strings: Vec<Value> = sizes.iter().map(|&n| Value::bytes(vec![7u8; n])).collect();
        let nested = Value::List(strings.clone());
        let request = request_with(Args {
            positional: vec![],
            keyword: vec![("k".into(), Value::Map(vec![(1.into(), nested.clone())]))],
        });
        let response = Frame::Response {
            id: 1,
            result: Ok(Payload::Value(nested)),
        };
        for sent in [request, response] {
            let message = bytes::Bytes::from(encode(&sent));
            let found = byte_strings_of(&message);
            let expected: Vec<(usize, bool)> = sizes.iter().map(|&n| (n, n == 1 << 20)).collect();
            assert_eq!(found, expected);
            // Decoded from a plain slice, nothing is shared (the slice may not outlive it).
            let plain = decode(&message, DEFAULT_MAX_FRAME).unwrap();
            assert_eq!(plain, sent);
            let mut found = Vec::new();
            if let Frame::Response {
                result: Ok(Payload::Value(v)),
                ..
            } = &plain
            {
                shared_with(&message, v, &mut found);
            }
            assert!(found.iter().all(|&(_, shared)| !shared));
        }
    }

    #[test]
    fn byte_strings_packed_many_to_a_message_are_copied() {
        // Each would pin the whole message for as long as its call waits (a slow actor, a flood).
        let frames: Vec<u8> = (0..50)
            .flat_map(|_| {
                encode(&request_with(
                    Args::new().arg(Value::bytes(vec![7u8; 10_000])),
                ))
            })
            .collect();
        let found = byte_strings_of(&bytes::Bytes::from(frames));
        assert_eq!(found, vec![(10_000, false); 50]);
    }

    #[test]
    fn trailing_garbage_is_refused() {
        let mut bytes = encode(&Frame::Leaving);
        bytes.push(0);
        assert!(matches!(
            decode(&bytes, DEFAULT_MAX_FRAME),
            Err(FrameError::Malformed(_))
        ));
    }
}
