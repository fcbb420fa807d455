//! The frames two nodes exchange.

use serde::{Deserialize, Serialize};

use super::{SharedBytes, SharedStr};

use crate::error::Error;
use crate::value::Args;

/// The protocol version this build speaks; the handshake refuses any other.
pub const PROTOCOL_VERSION: u32 = 4;

/// A node's identity: random per process start, so a restarted node is a new member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The arguments or result of a call, as it crosses the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    /// Postcard bytes of the typed argument tuple or result: Rust caller to Rust actor.
    Typed(SharedBytes),
    /// Self-describing arguments of a by-name call (Python, tools).
    Dynamic(Args),
    /// A self-describing result of a by-name call.
    Value(crate::value::Value),
}

/// One message between two nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// First message of each side, in cleartext: who I am. Its shape never changes, so a node of
    /// another protocol version can say which version it speaks. The Noise handshake that
    /// follows binds it (see the transport's `secure` module). Always variant 0.
    Hello {
        /// Must equal [`PROTOCOL_VERSION`].
        version: u32,
        /// The sender's id.
        node: NodeId,
        /// The address peers should use to reach the sender.
        addr: String,
        /// Random bytes: two `Hello`s are never alike, even from one node.
        nonce: [u8; 32],
    },
    /// A call of `method` on the actor named `actor`.
    Request {
        /// Chosen by the caller, unique per connection.
        id: u64,
        /// The target actor's name.
        actor: SharedStr,
        /// The id of the actor the caller resolved, if it addresses one instance: a call to a
        /// name now bound to another actor (stopped, then respawned) fails with `Stopped`.
        actor_id: Option<u64>,
        /// The identity key of the actor type the caller expects (`Interface::key`: a hash of
        /// its full path and method signatures), checked so a wrong type is a clear error.
        expect_type: Option<SharedStr>,
        /// The method's name.
        method: SharedStr,
        /// The arguments.
        args: Payload,
        /// `Some(n)`: the caller wants a stream of items, and may take `n` before granting more
        /// with [`Frame::Credit`]. `None`: one reply.
        credit: Option<u32>,
        /// Milliseconds the caller will wait. Informational: the caller enforces it and sends
        /// [`Frame::Cancel`] when it expires, which drops the call on the callee.
        deadline_ms: Option<u64>,
    },
    /// The reply to request `id`.
    Response {
        /// The request's id.
        id: u64,
        /// The result, or why the call failed.
        result: Result<Payload, Error>,
    },
    /// The next items of stream `id`, in order (a batch: as many as were ready and allowed by
    /// the consumer's credit).
    StreamItems {
        /// The request's id.
        id: u64,
        /// The items.
        items: Vec<Payload>,
    },
    /// The end of stream `id`, with the error that ended it, if any.
    StreamEnd {
        /// The request's id.
        id: u64,
        /// `None` for a normal end.
        error: Option<Error>,
    },
    /// The consumer of stream `id` can take `items` more.
    Credit {
        /// The request's id.
        id: u64,
        /// How many more items may be sent.
        items: u32,
    },
    /// The caller gave up on request or stream `id`.
    Cancel {
        /// The request's id.
        id: u64,
    },
    /// A membership gossip message (opaque to the transport).
    Gossip(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Sent before a graceful close: the sender is leaving the cluster.
    Leaving,
}

/// A [`Frame::Request`] from borrowed parts, so a caller can encode it without copying the
/// names into owned strings, nor typed arguments into a buffer of their own: it encodes to
/// exactly the same bytes (a test checks it).
#[derive(Debug)]
pub(crate) struct RequestRef<'a, X = NoArgs> {
    pub(crate) id: u64,
    pub(crate) actor: &'a str,
    pub(crate) actor_id: Option<u64>,
    pub(crate) expect_type: Option<&'a str>,
    pub(crate) method: &'a str,
    pub(crate) args: RequestArgs<'a, X>,
    pub(crate) credit: Option<u32>,
    pub(crate) deadline_ms: Option<u64>,
}

/// The arguments of a [`RequestRef`]: a payload, or a typed argument tuple `value` whose
/// postcard encoding is `size` bytes long, encoded straight into the frame as the
/// `Payload::Typed` of that encoding.
#[derive(Debug)]
pub(crate) enum RequestArgs<'a, X> {
    Payload(&'a Payload),
    Typed { value: &'a X, size: usize },
}

/// The type of typed arguments for requests that have none (a payload instead).
#[derive(Debug)]
pub(crate) enum NoArgs {}

impl Serialize for NoArgs {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        match *self {}
    }
}

impl<X: Serialize> Serialize for RequestArgs<'_, X> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RequestArgs::Payload(payload) => payload.serialize(serializer),
            RequestArgs::Typed { value, size } => serializer.serialize_newtype_variant(
                "Payload",
                0,
                "Typed",
                &Prefixed {
                    size: *size,
                    value: *value,
                },
            ),
        }
    }
}

/// `Frame::Request`'s position among `Frame`'s variants (postcard encodes the position).
const REQUEST_VARIANT: u32 = 1;
/// `Frame::Response`'s position among `Frame`'s variants.
const RESPONSE_VARIANT: u32 = 2;

/// A successful `Frame::Response` whose typed payload is `value`, encoded straight into the
/// frame rather than into a buffer of its own first: `size` is the length of `value`'s postcard
/// encoding. Encodes to exactly the bytes of `Frame::Response { id, result:
/// Ok(Payload::Typed(postcard(value))) }` (a test checks it).
#[derive(Debug)]
pub(crate) struct TypedResponseRef<'a, T> {
    pub(crate) id: u64,
    pub(crate) value: &'a T,
    pub(crate) size: usize,
}

impl<T: Serialize> Serialize for TypedResponseRef<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        let mut v =
            serializer.serialize_struct_variant("Frame", RESPONSE_VARIANT, "Response", 2)?;
        v.serialize_field("id", &self.id)?;
        v.serialize_field("result", &OkTyped(self))?;
        v.end()
    }
}

/// `Ok(Payload::Typed(..))` of a [`TypedResponseRef`].
struct OkTyped<'r, 'a, T>(&'r TypedResponseRef<'a, T>);

impl<T: Serialize> Serialize for OkTyped<'_, '_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_variant("Result", 0, "Ok", &Typed(self.0))
    }
}

/// `Payload::Typed(..)` of a [`TypedResponseRef`].
struct Typed<'r, 'a, T>(&'r TypedResponseRef<'a, T>);

impl<T: Serialize> Serialize for Typed<'_, '_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let prefixed = Prefixed {
            size: self.0.size,
            value: self.0.value,
        };
        serializer.serialize_newtype_variant("Payload", 0, "Typed", &prefixed)
    }
}

/// The bytes of `value`'s postcard encoding (`size` long), without making them: postcard
/// writes bytes as their length then the bytes, so the length followed by the value itself
/// encodes the same.
struct Prefixed<'a, T> {
    size: usize,
    value: &'a T,
}

impl<T: Serialize> Serialize for Prefixed<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = serializer.serialize_tuple(2)?;
        t.serialize_element(&(self.size as u64))?;
        t.serialize_element(self.value)?;
        t.end()
    }
}

impl<X: Serialize> Serialize for RequestRef<'_, X> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        let mut v = serializer.serialize_struct_variant("Frame", REQUEST_VARIANT, "Request", 8)?;
        v.serialize_field("id", &self.id)?;
        v.serialize_field("actor", self.actor)?;
        v.serialize_field("actor_id", &self.actor_id)?;
        v.serialize_field("expect_type", &self.expect_type)?;
        v.serialize_field("method", self.method)?;
        v.serialize_field("args", &self.args)?;
        v.serialize_field("credit", &self.credit)?;
        v.serialize_field("deadline_ms", &self.deadline_ms)?;
        v.end()
    }
}
