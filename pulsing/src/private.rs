//! Support code for the output of `#[pulsing::remote]`. Not a public API: it may change in any
//! release. The generated code calls these small helpers so that expansions stay short; the
//! runtime itself never imports from here (what both need lives in `actor/`).

use std::future::Future;

use futures_core::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::actor::peer::PeerReply;
use crate::actor::{Actor, ConvertedStream, DynPending, MethodInfo, Pending, ReplyStream, ReplyTo};
use crate::error::{Error, Result};
use crate::value::{from_value, to_value, Args, Value};
use crate::wire::Payload;

pub use crate::actor::interface::{identity_key, key_str, methods_fingerprint};
pub use crate::actor::sweep::SweepClock;
pub use crate::actor::{Handled, HandlerCx, Panic};
pub use crate::actor::{Reply as ReplySlot, StreamReply as StreamReplySlot};

use crate::actor::{Reply, StreamReply};

/// Marker for types that may cross an actor boundary: arguments, results and stream items.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent to or from an actor",
    label = "used in a remote method here",
    note = "arguments, results and stream items of remote methods must implement `serde::Serialize`, `serde::de::DeserializeOwned` and `Send`: add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`"
)]
pub trait Wire: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Wire for T {}

/// Checks at compile time that `T` may cross an actor boundary; the macro spans the call at the
/// offending type so the error points there.
pub const fn assert_wire<T: Wire>() {}

/// Runs a synchronous method and answers its caller; a panic becomes an error for the caller.
pub fn call_sync<T>(
    cx: &HandlerCx<'_>,
    method: &'static str,
    reply: Reply<T>,
    f: impl FnOnce() -> T,
) -> Handled {
    cx.run(method, reply, f)
}

/// Runs an `async` method to completion on the actor's task and answers its caller.
pub async fn call_async<T, F: Future<Output = T>>(
    cx: &HandlerCx<'_>,
    method: &'static str,
    reply: Reply<T>,
    f: impl FnOnce() -> F,
) -> Handled {
    cx.run_async(method, reply, f).await
}

/// Runs a streaming method and hands its stream to a pump task.
pub fn stream_sync<S>(
    cx: &HandlerCx<'_>,
    method: &'static str,
    reply: StreamReply<S::Item>,
    f: impl FnOnce() -> S,
) -> Handled
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    cx.run(method, reply, f)
}

/// Runs an `async` streaming method, then hands its stream to a pump task.
pub async fn stream_async<S, F>(
    cx: &HandlerCx<'_>,
    method: &'static str,
    reply: StreamReply<S::Item>,
    f: impl FnOnce() -> F,
) -> Handled
where
    F: Future<Output = S>,
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    cx.run_async(method, reply, f).await
}

/// The error for a by-name call to a method `A` does not have.
pub fn unknown_method<A: Actor>(method: &str) -> Error {
    let iface = A::interface();
    Error::UnknownMethod {
        actor: iface.actor.to_owned(),
        method: method.to_owned(),
        available: iface.method_names(),
    }
}

/// Decodes the [`Value`] arguments of a by-name call against one method's parameters.
///
/// Positional arguments fill parameters in order; keyword arguments fill them by name. Every
/// error names the method, its signature and the parameter at fault.
#[derive(Debug)]
pub struct ArgDecoder {
    actor: &'static str,
    method: &'static MethodInfo,
    slots: Vec<Option<Value>>,
    next: usize,
}

impl ArgDecoder {
    /// Matches `args` to the parameters of `A`'s method number `index`.
    ///
    /// # Errors
    /// [`Error::BadArguments`] for too many arguments, an unknown keyword or a parameter given
    /// twice.
    pub fn new<A: Actor>(index: usize, args: Args) -> Result<Self> {
        let iface = A::interface();
        let method = &iface.methods[index];
        let mut decoder = ArgDecoder {
            actor: iface.actor,
            method,
            slots: Vec::new(),
            next: 0,
        };
        let params = method.params;
        if args.positional.len() > params.len() {
            return Err(decoder.error(format!(
                "takes {} argument{} but {} were given",
                params.len(),
                if params.len() == 1 { "" } else { "s" },
                args.positional.len()
            )));
        }
        let mut slots: Vec<Option<Value>> = args.positional.into_iter().map(Some).collect();
        slots.resize_with(params.len(), || None);
        for (key, value) in args.keyword {
            let Some(at) = params.iter().position(|p| p.name == key) else {
                return Err(decoder.error(format!("unexpected keyword argument `{key}`")));
            };
            if slots[at].is_some() {
                return Err(decoder.error(format!("got multiple values for argument `{key}`")));
            }
            slots[at] = Some(value);
        }
        decoder.slots = slots;
        Ok(decoder)
    }

    /// Decodes the next parameter as a `T`. A missing argument is fine when `T` accepts null
    /// (an `Option`), so optional parameters may be left out.
    ///
    /// # Errors
    /// [`Error::BadArguments`] naming the parameter, its type and why the value does not fit.
    pub fn take<T: DeserializeOwned>(&mut self) -> Result<T> {
        let at = self.next;
        self.next += 1;
        let p = &self.method.params[at];
        match self.slots[at].take() {
            Some(value) => from_value(value)
                .map_err(|e| self.error(format!("argument `{}` must be `{}`: {e}", p.name, p.ty))),
            None => from_value(Value::Null)
                .map_err(|_| self.error(format!("missing argument `{}: {}`", p.name, p.ty))),
        }
    }

    fn error(&self, reason: String) -> Error {
        Error::BadArguments {
            actor: self.actor.to_owned(),
            method: self.method.name.to_owned(),
            signature: self.method.signature(),
            reason,
        }
    }
}

/// Makes the reply slot of a by-name call to `A`'s method number `index`, and the future that
/// turns its typed answer into a [`Value`].
///
/// # Errors
/// [`Error::BadArguments`] if the caller asked for a stream.
pub fn value_call<A: Actor, T: Serialize + Send + 'static>(
    index: usize,
    reply_to: ReplyTo,
) -> Result<(Reply<T>, DynPending)> {
    call_slot::<A, T, Value>(index, reply_to, to_value_result, deliver_value::<T>)
}

/// Makes the stream slot of a by-name call to `A`'s streaming method number `index`, and the
/// stream that turns its typed items into [`Value`]s.
///
/// # Errors
/// [`Error::BadArguments`] if the caller asked for one answer.
pub fn value_stream<A: Actor, T: Serialize + Send + 'static>(
    index: usize,
    reply_to: ReplyTo,
) -> Result<(StreamReply<T>, DynPending)> {
    stream_slot::<A, T, Value>(index, reply_to, to_value_result)
}

/// Like [`value_call`], for a typed call from another node: the answer becomes postcard bytes.
///
/// # Errors
/// [`Error::BadArguments`] if the caller asked for a stream.
pub fn bytes_call<A: Actor, T: Serialize + Send + 'static>(
    index: usize,
    reply_to: ReplyTo,
) -> Result<(Reply<T>, Pending<Vec<u8>>)> {
    call_slot::<A, T, Vec<u8>>(index, reply_to, encode_postcard, deliver_typed::<T>)
}

/// Like [`value_stream`], for a typed call from another node: items become postcard bytes.
///
/// # Errors
/// [`Error::BadArguments`] if the caller asked for one answer.
pub fn bytes_stream<A: Actor, T: Serialize + Send + 'static>(
    index: usize,
    reply_to: ReplyTo,
) -> Result<(StreamReply<T>, Pending<Vec<u8>>)> {
    stream_slot::<A, T, Vec<u8>>(index, reply_to, encode_postcard)
}

fn to_value_result<T: Serialize>(value: &T) -> Result<Value> {
    to_value(value).map_err(Error::from)
}

fn deliver_value<T: Serialize>(peer: PeerReply, result: Result<T>) {
    peer.send(result.and_then(|v| to_value_result(&v)).map(Payload::Value));
}

fn deliver_typed<T: Serialize>(peer: PeerReply, result: Result<T>) {
    peer.send_typed(result);
}

/// Decodes the postcard-encoded argument tuple of a remote call to `A`'s method number `index`.
///
/// # Errors
/// [`Error::BadArguments`] when the bytes do not decode (the caller runs another version).
pub fn decode_args<A: Actor, Args: DeserializeOwned>(index: usize, bytes: &[u8]) -> Result<Args> {
    postcard::from_bytes(bytes).map_err(|e| {
        let actor = A::interface().actor;
        bad_arguments::<A>(
            index,
            format!("the arguments do not decode ({e}): does the caller run another version of `{actor}`?"),
        )
    })
}

fn encode_postcard<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    crate::wire::encode_exact(value).map_err(|e| Error::Codec(e.to_string()))
}

fn call_slot<A: Actor, T: Send + 'static, O: Send + 'static>(
    index: usize,
    reply_to: ReplyTo,
    convert: fn(&T) -> Result<O>,
    deliver: fn(PeerReply, Result<T>),
) -> Result<(Reply<T>, Pending<O>)> {
    match reply_to {
        ReplyTo::Call => {
            let (tx, rx) = oneshot::channel::<Result<T>>();
            let pending = Box::pin(async move {
                let answer = rx.await.ok()?;
                Some(answer.and_then(|v| convert(&v)))
            });
            Ok((Reply::to(tx), Pending::Call(pending)))
        }
        ReplyTo::Peer(peer) => Ok((Reply::to_peer(peer, deliver), Pending::Responded)),
        ReplyTo::Stream { .. } => Err(kind_mismatch::<A>(
            index,
            "is not a streaming method: use `call`",
        )),
    }
}

fn stream_slot<A: Actor, T: Send + 'static, O: Send + 'static>(
    index: usize,
    reply_to: ReplyTo,
    convert: fn(&T) -> Result<O>,
) -> Result<(StreamReply<T>, Pending<O>)> {
    let ReplyTo::Stream { buffer, actor } = reply_to else {
        return Err(kind_mismatch::<A>(
            index,
            "is a streaming method: use `stream`",
        ));
    };
    let (tx, rx) = mpsc::channel(buffer);
    let typed = ReplyStream::<T>::new(rx, actor);
    let opened =
        Box::pin(async move { Ok(ConvertedStream::from_typed(typed.opened().await?, convert)) });
    Ok((StreamReply::to(tx), Pending::Stream(opened)))
}

fn kind_mismatch<A: Actor>(index: usize, reason: &str) -> Error {
    let name = A::interface().methods[index].name;
    bad_arguments::<A>(index, format!("`{name}` {reason}"))
}

/// `BadArguments` for `A`'s method number `index`.
fn bad_arguments<A: Actor>(index: usize, reason: String) -> Error {
    let iface = A::interface();
    let method = &iface.methods[index];
    Error::BadArguments {
        actor: iface.actor.to_owned(),
        method: method.name.to_owned(),
        signature: method.signature(),
        reason,
    }
}
