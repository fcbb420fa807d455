//! The dynamic shim: call any actor by method name with [`Value`] arguments.
//!
//! This is the bridge other languages use (the Python package, tools). A by-name call is decoded
//! against the actor's [`Interface`](crate::Interface) into the very same message a typed call
//! builds, and goes through the same mailbox and handler.
//!
//! ```
//! # use pulsing::prelude::*;
//! pub struct Counter { value: i64 }
//!
//! #[pulsing::remote]
//! impl Counter {
//!     pub fn inc(&mut self, by: i64) -> i64 { self.value += by; self.value }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pulsing::Result<()> {
//! let system = ActorSystem::builder().build().await?;
//! Counter::spawn_named(&system, "counter", Counter { value: 0 }).await?;
//!
//! let any = system.resolve_dyn("counter").await?;
//! assert_eq!(any.call("inc", Args::new().arg(2)).await?, Value::Int(2));
//! assert_eq!(any.call("inc", Args::new().kwarg("by", 3)).await?, Value::Int(5));
//!
//! let err = any.call("inc", Args::new().arg("two")).await.unwrap_err();
//! assert!(err.to_string().contains("argument `by` must be `i64`"));
//! # system.shutdown().await; Ok(()) }
//! ```

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::actor_ref::{ActorId, AnyCell, BoxFuture, STOP};
use crate::call::Deadline;
use crate::interface::Interface;
use crate::remote::{decode_value, RemoteActor};
use crate::stream::{ConvertedStream, ValueStream};
use crate::transport::Connection;
use crate::value::Value;
use crate::wire::{Payload, SharedBytes, TypedResponseRef};
use crate::Result;

/// The arguments of a by-name call: positional ones first, then keyword ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Args {
    /// Arguments matched to parameters in order.
    pub positional: Vec<Value>,
    /// Arguments matched to parameters by name.
    pub keyword: Vec<(String, Value)>,
}

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Args::default()
    }

    /// Adds a positional argument.
    pub fn arg(mut self, value: impl Into<Value>) -> Self {
        self.positional.push(value.into());
        self
    }

    /// Adds a keyword argument.
    pub fn kwarg(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.keyword.push((name.into(), value.into()));
        self
    }
}

impl From<Vec<Value>> for Args {
    fn from(positional: Vec<Value>) -> Self {
        Args {
            positional,
            keyword: Vec::new(),
        }
    }
}

/// What a by-name caller asks for: one answer, or a stream.
#[derive(Debug)]
pub enum DynKind {
    /// One answer.
    Call,
    /// A stream, with this much buffering; `actor` names the actor in errors.
    Stream {
        /// Items buffered between producer and consumer.
        buffer: usize,
        /// How errors name the actor.
        actor: Arc<str>,
    },
    /// One answer, for a peer: it goes straight to the peer's connection (made by the runtime
    /// when it serves a peer's call; the call then yields [`Pending::Responded`]).
    Respond(Respond),
}

/// Where the answer to a call served for a peer goes: straight to that peer's connection, so no
/// task or future waits for it. Only the runtime makes one. Dropped without an answer (its
/// actor stopped with the call still queued), it answers that the actor stopped.
pub struct Respond {
    conn: Arc<Connection>,
    id: u64,
    cell: Arc<dyn AnyCell>,
    done: bool,
}

impl std::fmt::Debug for Respond {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Respond")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Respond {
    /// The answer to `conn`'s call `id` to `cell` (registered with `Connection::expect`).
    pub(crate) fn new(conn: Arc<Connection>, id: u64, cell: Arc<dyn AnyCell>) -> Self {
        Respond {
            conn,
            id,
            cell,
            done: false,
        }
    }

    /// Whether the peer cancelled the call (or the connection is gone).
    pub(crate) fn is_abandoned(&self) -> bool {
        !self.conn.is_serving(self.id)
    }

    /// Writes the answer to the peer.
    pub(crate) fn send(mut self, result: Result<Payload>) {
        self.done = true;
        self.conn.answer(self.id, result);
    }

    /// Writes a typed answer to the peer: a small value goes inline like any payload, a larger
    /// one is encoded straight into the response frame (one copy of it less).
    pub(crate) fn send_typed<T: Serialize>(mut self, result: Result<T>) {
        let value = match result {
            Ok(value) => value,
            Err(e) => return self.send(Err(e)),
        };
        match postcard::experimental::serialized_size(&value) {
            Ok(size) if size > SharedBytes::INLINE => {
                self.done = true;
                let response = TypedResponseRef {
                    id: self.id,
                    value: &value,
                    size,
                };
                self.conn.answer_with(self.id, &response);
            }
            _ => self.send(
                SharedBytes::encode(&value)
                    .map(Payload::Typed)
                    .map_err(|e| crate::Error::Codec(e.to_string())),
            ),
        }
    }

    /// Lets go without answering: the call waits in a backlog and will get a new `Respond`.
    pub(crate) fn defer(mut self) {
        self.done = true;
    }
}

impl Drop for Respond {
    fn drop(&mut self) {
        if !self.done {
            self.conn
                .reply_dropped(self.id, self.cell.meta().stopped_error());
        }
    }
}

/// What a by-name or remote caller awaits once its message is in the mailbox, with the answer
/// converted to `O` (a [`Value`], or bytes). `Call` yields `None` if the actor stopped before
/// answering.
pub enum Pending<O> {
    /// The answer.
    Call(BoxFuture<'static, Option<Result<O>>>),
    /// The stream, once open.
    Stream(BoxFuture<'static, Result<ConvertedStream<O>>>),
    /// Nothing to wait for: the answer goes where [`DynKind::Respond`] said.
    Responded,
}

/// What a by-name caller awaits: answers as [`Value`]s.
pub type DynPending = Pending<Value>;

impl<O> std::fmt::Debug for Pending<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pending::Call(_) => "Pending::Call",
            Pending::Stream(_) => "Pending::Stream",
            Pending::Responded => "Pending::Responded",
        })
    }
}

/// An untyped handle to any actor, local or remote: calls by method name with [`Value`] arguments.
#[derive(Clone)]
pub struct DynRef {
    target: DynTarget,
}

#[derive(Clone)]
enum DynTarget {
    Local(Arc<dyn AnyCell>),
    Remote(Arc<RemoteActor>),
}

impl DynRef {
    pub(crate) fn from_cell(cell: Arc<dyn AnyCell>) -> Self {
        DynRef {
            target: DynTarget::Local(cell),
        }
    }

    pub(crate) fn from_remote(remote: Arc<RemoteActor>) -> Self {
        DynRef {
            target: DynTarget::Remote(remote),
        }
    }

    /// The actor's interface (its methods, their parameters and types), for an actor in this
    /// process; `None` for a remote one.
    pub fn interface(&self) -> Option<&'static Interface> {
        match &self.target {
            DynTarget::Local(cell) => Some(cell.interface()),
            DynTarget::Remote(_) => None,
        }
    }

    /// The actor's type name.
    pub fn type_name(&self) -> &str {
        match &self.target {
            DynTarget::Local(cell) => cell.meta().type_name,
            DynTarget::Remote(r) => &r.type_name,
        }
    }

    /// The actor's id on its node.
    pub fn id(&self) -> ActorId {
        match &self.target {
            DynTarget::Local(cell) => cell.meta().id,
            DynTarget::Remote(r) => r.id,
        }
    }

    /// The name it was registered under, if any.
    pub fn name(&self) -> Option<&str> {
        match &self.target {
            DynTarget::Local(cell) => cell.meta().name.as_deref(),
            DynTarget::Remote(r) => Some(&r.name),
        }
    }

    /// Whether the actor is still running (for a remote actor: whether its node is connected).
    pub fn is_alive(&self) -> bool {
        match &self.target {
            DynTarget::Local(cell) => cell.is_alive(),
            DynTarget::Remote(r) => !r.conn.is_closed(),
        }
    }

    /// Asks the actor to stop (see [`ActorRef::stop`](crate::ActorRef::stop)).
    pub fn stop(&self) {
        match &self.target {
            DynTarget::Local(cell) => cell.request_stop(),
            DynTarget::Remote(r) => {
                let r = r.clone();
                tokio::spawn(async move { r.call_dyn(STOP, Args::new(), None).await });
            }
        }
    }

    /// Calls `method` with `args`; await the result for the method's return value as a [`Value`].
    pub fn call(&self, method: impl Into<String>, args: impl Into<Args>) -> DynCall<'_> {
        DynCall {
            target: self,
            method: method.into(),
            args: args.into(),
            deadline: Deadline::Default,
        }
    }

    /// Opens the stream of a streaming method; its items arrive as [`Value`]s.
    pub async fn stream(
        &self,
        method: impl Into<String>,
        args: impl Into<Args>,
    ) -> Result<ValueStream> {
        let method = method.into();
        let cell = match &self.target {
            DynTarget::Local(cell) => cell,
            DynTarget::Remote(r) => {
                let typed = r
                    .stream(
                        &method,
                        Payload::Dynamic(args.into()),
                        false,
                        decode_value,
                        r.call_timeout,
                    )
                    .await?;
                // The items arrive as `Value`s already: handed on as they are.
                return Ok(ConvertedStream::unconverted(typed));
            }
        };
        let meta = cell.meta();
        let kind = DynKind::Stream {
            buffer: meta.stream_buffer,
            actor: Arc::from(meta.label()),
        };
        let open = async {
            match cell.dyn_enqueue(&method, args.into(), kind).await? {
                Pending::Stream(opened) => opened.await,
                Pending::Call(_) | Pending::Responded => {
                    unreachable!("dyn_stream always yields a stream")
                }
            }
        };
        with_deadline(meta.call_timeout, open, || {
            meta.timeout_error(&method, meta.call_timeout.unwrap_or_default())
        })
        .await
    }
}

impl std::fmt::Debug for DynRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            DynTarget::Local(cell) => write!(f, "DynRef({})", cell.meta().label()),
            DynTarget::Remote(r) => write!(f, "DynRef({})", r.label()),
        }
    }
}

/// A by-name call that has not been sent yet; await it for the result.
#[must_use = "a call does nothing until it is awaited"]
#[derive(Debug)]
pub struct DynCall<'a> {
    target: &'a DynRef,
    method: String,
    args: Args,
    deadline: Deadline,
}

impl DynCall<'_> {
    /// Fails with [`Error::Timeout`](crate::Error::Timeout) if no answer arrives within `after`.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.deadline = Deadline::After(after);
        self
    }

    /// Waits however long it takes.
    pub fn no_timeout(mut self) -> Self {
        self.deadline = Deadline::Never;
        self
    }
}

impl<'a> IntoFuture for DynCall<'a> {
    type Output = Result<Value>;
    type IntoFuture = BoxFuture<'a, Result<Value>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let cell = match &self.target.target {
                DynTarget::Local(cell) => cell,
                DynTarget::Remote(r) => {
                    let timeout = self.deadline.resolve(r.call_timeout);
                    return r.call_dyn(&self.method, self.args, timeout).await;
                }
            };
            let meta = cell.meta();
            let timeout = self.deadline.resolve(meta.call_timeout);
            let call = async {
                match cell
                    .dyn_enqueue(&self.method, self.args, DynKind::Call)
                    .await?
                {
                    Pending::Call(answer) => {
                        answer.await.unwrap_or_else(|| Err(meta.stopped_error()))
                    }
                    Pending::Stream(_) | Pending::Responded => {
                        unreachable!("dyn_call always yields one answer")
                    }
                }
            };
            with_deadline(timeout, call, || {
                meta.timeout_error(&self.method, timeout.unwrap_or_default())
            })
            .await
        })
    }
}

async fn with_deadline<T>(
    timeout: Option<Duration>,
    work: impl std::future::Future<Output = Result<T>>,
    on_timeout: impl FnOnce() -> crate::Error,
) -> Result<T> {
    match timeout {
        None => work.await,
        Some(after) => tokio::time::timeout(after, work)
            .await
            .unwrap_or_else(|_| Err(on_timeout())),
    }
}
