//! Support code for the output of `#[pulsing::remote]`. Not a public API: it may change in any
//! release. The generated code calls these small helpers so that expansions stay short.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use futures_core::Stream;
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::actor::Actor;
use crate::actor_ref::ActorMeta;
use crate::dynamic::{Args, DynKind, DynPending, Pending, Respond};
use crate::interface::MethodInfo;
use crate::reply::{Reply, StreamReply};
use crate::stream::spawn_pump;
use crate::stream::{ConvertedStream, ReplyStream};
use crate::system::SystemInner;
use crate::value::{from_value, to_value, Value};
use crate::wire::Payload;
use crate::{Error, Result};
use tokio::sync::{mpsc, oneshot};

pub use crate::reply::{Reply as ReplySlot, StreamReply as StreamReplySlot};

/// What a handler reports to the actor loop: `Err` when it panicked.
pub type Handled = std::result::Result<(), Panic>;

/// A panic caught in a handler.
#[derive(Debug)]
pub struct Panic {
    /// The method that panicked.
    pub method: &'static str,
    /// The panic message.
    pub message: String,
}

/// What a handler can see of the actor it runs in.
#[derive(Debug)]
pub struct HandlerCx<'a> {
    pub(crate) meta: &'a ActorMeta,
    pub(crate) system: &'a Arc<SystemInner>,
}

impl HandlerCx<'_> {
    fn panicked(&self, method: &'static str, payload: &(dyn Any + Send)) -> (Error, Panic) {
        let message = panic_message(payload);
        let error = Error::Panicked {
            actor: self.meta.label(),
            method: method.to_owned(),
            message: message.clone(),
        };
        (error, Panic { method, message })
    }
}

/// Turns a panic payload into its message.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

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
    if reply.is_abandoned() {
        return Ok(());
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => {
            reply.send(Ok(value));
            Ok(())
        }
        Err(payload) => {
            let (error, panic) = cx.panicked(method, &*payload);
            reply.send(Err(error));
            Err(panic)
        }
    }
}

/// Runs an `async` method to completion on the actor's task and answers its caller.
pub async fn call_async<T, F: Future<Output = T>>(
    cx: &HandlerCx<'_>,
    method: &'static str,
    reply: Reply<T>,
    f: impl FnOnce() -> F,
) -> Handled {
    if reply.is_abandoned() {
        return Ok(());
    }
    match AssertUnwindSafe(async move { f().await })
        .catch_unwind()
        .await
    {
        Ok(value) => {
            reply.send(Ok(value));
            Ok(())
        }
        Err(payload) => {
            let (error, panic) = cx.panicked(method, &*payload);
            reply.send(Err(error));
            Err(panic)
        }
    }
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
    if reply.is_abandoned() {
        return Ok(());
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(stream) => {
            start_pump(cx, method, reply, stream);
            Ok(())
        }
        Err(payload) => {
            let (error, panic) = cx.panicked(method, &*payload);
            reply.fail(error);
            Err(panic)
        }
    }
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
    if reply.is_abandoned() {
        return Ok(());
    }
    match AssertUnwindSafe(async move { f().await })
        .catch_unwind()
        .await
    {
        Ok(stream) => {
            start_pump(cx, method, reply, stream);
            Ok(())
        }
        Err(payload) => {
            let (error, panic) = cx.panicked(method, &*payload);
            reply.fail(error);
            Err(panic)
        }
    }
}

fn start_pump<S>(cx: &HandlerCx<'_>, method: &'static str, reply: StreamReply<S::Item>, stream: S)
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    let shutdown = cx.system.shutdown_token.clone();
    spawn_pump(
        stream,
        reply.into_sender(),
        shutdown,
        cx.meta.label(),
        method,
    );
}

/// Runs a lifecycle hook, turning a panic into a [`Panic`].
pub async fn hook<F: Future<Output = ()>>(name: &'static str, f: F) -> Handled {
    AssertUnwindSafe(f)
        .catch_unwind()
        .await
        .map_err(|payload| Panic {
            method: name,
            message: panic_message(&*payload),
        })
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
pub fn dyn_call<A: Actor, T: Serialize + Send + 'static>(
    index: usize,
    kind: DynKind,
) -> Result<(Reply<T>, DynPending)> {
    call_slot::<A, T, Value>(index, kind, to_value_result, deliver_value::<T>)
}

/// Makes the stream slot of a by-name call to `A`'s streaming method number `index`, and the
/// stream that turns its typed items into [`Value`]s.
pub fn dyn_stream<A: Actor, T: Serialize + Send + 'static>(
    index: usize,
    kind: DynKind,
) -> Result<(StreamReply<T>, DynPending)> {
    stream_slot::<A, T, Value>(index, kind, to_value_result)
}

/// Like [`dyn_call`], for a remote caller: the answer becomes postcard bytes.
pub fn remote_call<A: Actor, T: Serialize + Send + 'static>(
    index: usize,
    kind: DynKind,
) -> Result<(Reply<T>, Pending<Vec<u8>>)> {
    call_slot::<A, T, Vec<u8>>(index, kind, encode_postcard, deliver_typed::<T>)
}

/// Like [`dyn_stream`], for a remote caller: items become postcard bytes.
pub fn remote_stream<A: Actor, T: Serialize + Send + 'static>(
    index: usize,
    kind: DynKind,
) -> Result<(StreamReply<T>, Pending<Vec<u8>>)> {
    stream_slot::<A, T, Vec<u8>>(index, kind, encode_postcard)
}

fn to_value_result<T: Serialize>(value: &T) -> Result<Value> {
    to_value(value).map_err(Error::from)
}

fn deliver_value<T: Serialize>(respond: Respond, result: Result<T>) {
    respond.send(result.and_then(|v| to_value_result(&v)).map(Payload::Value));
}

fn deliver_typed<T: Serialize>(respond: Respond, result: Result<T>) {
    respond.send_typed(result);
}

/// Decodes the postcard-encoded argument tuple of a remote call to `A`'s method number `index`.
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
    kind: DynKind,
    convert: fn(&T) -> Result<O>,
    deliver: fn(Respond, Result<T>),
) -> Result<(Reply<T>, Pending<O>)> {
    match kind {
        DynKind::Call => {
            let (tx, rx) = oneshot::channel::<Result<T>>();
            let pending = Box::pin(async move {
                let answer = rx.await.ok()?;
                Some(answer.and_then(|v| convert(&v)))
            });
            Ok((Reply::to(tx), Pending::Call(pending)))
        }
        DynKind::Respond(respond) => Ok((Reply::to_peer(respond, deliver), Pending::Responded)),
        DynKind::Stream { .. } => Err(kind_mismatch::<A>(
            index,
            "is not a streaming method: use `call`",
        )),
    }
}

fn stream_slot<A: Actor, T: Send + 'static, O: Send + 'static>(
    index: usize,
    kind: DynKind,
    convert: fn(&T) -> Result<O>,
) -> Result<(StreamReply<T>, Pending<O>)> {
    let DynKind::Stream { buffer, actor } = kind else {
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
