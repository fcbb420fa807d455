//! The wire format between nodes: postcard-encoded [`Frame`]s carried in binary WebSocket messages,
//! one or more frames back to back per message (a writer packs the small frames that are ready
//! together; [`decode`] takes one frame).
//!
//! One connection per pair of nodes carries everything: the handshake, calls and their replies,
//! stream items under a credit window, cancellations, and gossip. Frames name methods by *name*,
//! never by enum index, so adding a method never breaks an older peer.
//!
//! Decoding is defensive: a frame larger than the configured limit is refused before any decoding,
//! a [`Value`](crate::Value) nested deeper than [`MAX_DEPTH`](crate::value::MAX_DEPTH) is refused
//! where it starts (no recursion past it, so no stack overflow), and malformed or truncated bytes
//! give a [`FrameError`], never a panic. The decoder has a
//! property test (encode → decode is the identity), a random-bytes robustness test, and a fuzz
//! target (`fuzz/`).
//!
//! ```
//! use pulsing::wire::{decode, encode, Frame, DEFAULT_MAX_FRAME};
//!
//! let frame = Frame::Cancel { id: 7 };
//! let bytes = encode(&frame);
//! assert_eq!(decode(&bytes, DEFAULT_MAX_FRAME).unwrap(), frame);
//! assert!(decode(&bytes[..0], DEFAULT_MAX_FRAME).is_err());
//! ```

mod codec;
mod fragments;
mod frame;
mod shared;

pub use codec::{decode, encode, try_encode, FrameError, DEFAULT_MAX_FRAME};
pub(crate) use codec::{decode_packed, encode_exact, encode_gathered, Append, PACK_LIMIT};
pub(crate) use fragments::decode_packed_fragments;
pub use frame::{Frame, NodeId, Payload, PROTOCOL_VERSION};
pub(crate) use frame::{NoArgs, RequestArgs, RequestRef, TypedResponseRef};
pub use shared::{SharedBytes, SharedStr};
