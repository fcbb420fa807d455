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

use crate::actor_ref::{ActorId, AnyCell, BoxFuture};
use crate::call::Deadline;
use crate::interface::Interface;
use crate::stream::ValueStream;
use crate::value::Value;
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
#[derive(Debug, Clone)]
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
}

/// What a by-name caller awaits once its message is in the mailbox. `Call` yields `None` if the
/// actor stopped before answering.
pub enum DynPending {
    /// The answer, converted to a [`Value`].
    Call(BoxFuture<'static, Option<Result<Value>>>),
    /// The stream, once open, with items converted to [`Value`]s.
    Stream(BoxFuture<'static, Result<ValueStream>>),
}

impl std::fmt::Debug for DynPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DynPending::Call(_) => "DynPending::Call",
            DynPending::Stream(_) => "DynPending::Stream",
        })
    }
}

/// An untyped handle to any actor: calls by method name with [`Value`] arguments.
#[derive(Clone)]
pub struct DynRef {
    cell: Arc<dyn AnyCell>,
}

impl DynRef {
    pub(crate) fn from_cell(cell: Arc<dyn AnyCell>) -> Self {
        DynRef { cell }
    }

    /// The actor's interface: its methods, their parameters and types.
    pub fn interface(&self) -> &'static Interface {
        self.cell.interface()
    }

    /// The actor's process-unique id.
    pub fn id(&self) -> ActorId {
        self.cell.meta().id
    }

    /// The name it was registered under, if any.
    pub fn name(&self) -> Option<&str> {
        self.cell.meta().name.as_deref()
    }

    /// Whether the actor is still running.
    pub fn is_alive(&self) -> bool {
        self.cell.is_alive()
    }

    /// Asks the actor to stop (see [`ActorRef::stop`](crate::ActorRef::stop)).
    pub fn stop(&self) {
        self.cell.request_stop();
    }

    /// Resolves once the actor has stopped.
    pub async fn stopped(&self) {
        self.cell.wait_stopped().await
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
        let meta = self.cell.meta();
        let kind = DynKind::Stream {
            buffer: meta.stream_buffer,
            actor: Arc::from(meta.label()),
        };
        let open = async {
            match self.cell.dyn_enqueue(&method, args.into(), kind).await? {
                DynPending::Stream(opened) => opened.await,
                DynPending::Call(_) => unreachable!("dyn_stream always yields a stream"),
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
        write!(f, "DynRef({})", self.cell.meta().label())
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
            let cell = &self.target.cell;
            let meta = cell.meta();
            let timeout = self.deadline.resolve(meta.call_timeout);
            let call = async {
                match cell
                    .dyn_enqueue(&self.method, self.args, DynKind::Call)
                    .await?
                {
                    DynPending::Call(answer) => {
                        answer.await.unwrap_or_else(|| Err(meta.stopped_error()))
                    }
                    DynPending::Stream(_) => unreachable!("dyn_call always yields one answer"),
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
