//! The by-name handle: call any actor by method name with [`Value`] arguments ([`DynRef`]).
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

use super::deadline::{self, deadline_builders, Deadline};
use crate::actor::cell::AnyCell;
use crate::actor::interface::Interface;
use crate::actor::meta::ActorId;
use crate::actor::reply::{BoxFuture, Pending, ReplyTo};
use crate::actor::stream::{ConvertedStream, ValueStream};
use crate::cluster::client::{decode_value, value_reply, PeerActor, SentCall};
use crate::error::Result;
use crate::transport::{Attempt, OutArgs};
use crate::value::{Args, Value};
use crate::wire::{NoArgs, Payload};

/// An untyped handle to any actor, local or remote: calls by method name with [`Value`] arguments.
#[derive(Clone)]
pub struct DynRef {
    target: DynTarget,
}

#[derive(Clone)]
enum DynTarget {
    Local(Arc<dyn AnyCell>),
    Peer(Arc<PeerActor>),
}

impl DynRef {
    pub(crate) fn from_cell(cell: Arc<dyn AnyCell>) -> Self {
        DynRef {
            target: DynTarget::Local(cell),
        }
    }

    pub(crate) fn from_peer(peer: Arc<PeerActor>) -> Self {
        DynRef {
            target: DynTarget::Peer(peer),
        }
    }

    /// The actor's interface (its methods, their parameters and types), for an actor in this
    /// process; `None` for a remote one.
    pub fn interface(&self) -> Option<&'static Interface> {
        match &self.target {
            DynTarget::Local(cell) => Some(cell.interface()),
            DynTarget::Peer(_) => None,
        }
    }

    /// The actor's type name.
    pub fn type_name(&self) -> &str {
        match &self.target {
            DynTarget::Local(cell) => cell.meta().type_name,
            DynTarget::Peer(p) => &p.type_name,
        }
    }

    /// The actor's id on its node.
    pub fn id(&self) -> ActorId {
        match &self.target {
            DynTarget::Local(cell) => cell.meta().id,
            DynTarget::Peer(p) => p.id,
        }
    }

    /// The name it was registered under, if any.
    pub fn name(&self) -> Option<&str> {
        match &self.target {
            DynTarget::Local(cell) => cell.meta().name.as_deref(),
            DynTarget::Peer(p) => Some(&p.name),
        }
    }

    /// Whether the actor is still running (for a remote actor: whether its node is connected,
    /// no call found it stopped, and gossip still shows its name bound to it).
    pub fn is_alive(&self) -> bool {
        match &self.target {
            DynTarget::Local(cell) => cell.is_alive(),
            DynTarget::Peer(p) => p.is_alive(),
        }
    }

    /// Asks the actor to stop (see [`ActorRef::stop`](crate::ActorRef::stop)).
    pub fn stop(&self) {
        match &self.target {
            DynTarget::Local(cell) => cell.request_stop(),
            DynTarget::Peer(p) => p.stop(),
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

    /// Opens the stream of a streaming method; its items arrive as [`Value`]s. The system's
    /// default deadline covers the opening.
    ///
    /// # Errors
    /// [`Error::UnknownMethod`](crate::Error::UnknownMethod) or
    /// [`Error::BadArguments`](crate::Error::BadArguments) (also when `method` does not stream),
    /// and every way a [`DynCall`] can fail.
    pub async fn stream(
        &self,
        method: impl Into<String>,
        args: impl Into<Args>,
    ) -> Result<ValueStream> {
        let method = method.into();
        let cell = match &self.target {
            DynTarget::Local(cell) => cell,
            DynTarget::Peer(p) => {
                let open = p.stream(
                    &method,
                    Payload::Dynamic(args.into()),
                    false,
                    decode_value,
                    p.call_timeout,
                );
                let typed = deadline::within(p.call_timeout, open, |after| {
                    p.timeout_error(&method, after)
                })
                .await?;
                // The items arrive as `Value`s already: handed on as they are.
                return Ok(ConvertedStream::unconverted(typed));
            }
        };
        let meta = cell.meta();
        let reply_to = ReplyTo::Stream {
            buffer: meta.stream_buffer,
            actor: Arc::from(meta.label()),
        };
        let open = async {
            match cell.enqueue_values(&method, args.into(), reply_to).await? {
                Pending::Stream(opened) => opened.await,
                Pending::Call(_) | Pending::Responded => {
                    unreachable!("a stream slot always yields a stream")
                }
            }
        };
        deadline::within(meta.call_timeout, open, |after| {
            meta.timeout_error(&method, after)
        })
        .await
    }
}

impl std::fmt::Debug for DynRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            DynTarget::Local(cell) => write!(f, "DynRef({})", cell.meta().label()),
            DynTarget::Peer(p) => write!(f, "DynRef({})", p.label()),
        }
    }
}

/// A by-name call that has not been sent yet; await it for the result.
///
/// # Errors
/// Awaited, it fails with [`Error::UnknownMethod`](crate::Error::UnknownMethod) or
/// [`Error::BadArguments`](crate::Error::BadArguments) (naming the signature and the argument at
/// fault), and every way a typed [`Call`](crate::Call) can fail.
#[must_use = "a call does nothing until it is awaited"]
#[derive(Debug)]
pub struct DynCall<'a> {
    target: &'a DynRef,
    method: String,
    args: Args,
    deadline: Deadline,
}

impl DynCall<'_> {
    deadline_builders!(deadline, "no answer arrives");
}

impl<'a> IntoFuture for DynCall<'a> {
    type Output = Result<Value>;
    type IntoFuture = BoxFuture<'a, Result<Value>>;

    fn into_future(self) -> Self::IntoFuture {
        let cell = match &self.target.target {
            DynTarget::Local(cell) => cell,
            DynTarget::Peer(p) => return call_peer(p, self.method, self.args, self.deadline),
        };
        Box::pin(async move {
            let meta = cell.meta();
            let timeout = self.deadline.resolve(meta.call_timeout);
            let call = async {
                match cell
                    .enqueue_values(&self.method, self.args, ReplyTo::Call)
                    .await?
                {
                    Pending::Call(answer) => {
                        answer.await.unwrap_or_else(|| Err(meta.stopped_error()))
                    }
                    Pending::Stream(_) | Pending::Responded => {
                        unreachable!("a call slot always yields one answer")
                    }
                }
            };
            deadline::within(timeout, call, |after| {
                meta.timeout_error(&self.method, after)
            })
            .await
        })
    }
}

/// A by-name call to an actor on another node: sent now if its connection has room (the
/// future then holds only what waits for the answer), else sent by the future.
fn call_peer(
    p: &PeerActor,
    method: String,
    args: Args,
    deadline: Deadline,
) -> BoxFuture<'_, Result<Value>> {
    let timeout = deadline.resolve(p.call_timeout);
    let args = OutArgs::<NoArgs>::Payload(Payload::Dynamic(args));
    match p.try_call(&method, false, args, timeout) {
        Attempt::Sent(answer) => {
            let sent = SentCall::new(p, answer, timeout);
            Box::pin(async move { value_reply(p.result(&method, timeout, sent.await)?) })
        }
        Attempt::Done(outcome) => Box::pin(std::future::ready(
            p.result(&method, timeout, outcome).and_then(value_reply),
        )),
        Attempt::MustWait(args) => Box::pin(async move {
            let call = p.call(&method, false, args, timeout);
            let expired = |after| p.timeout_error(&method, after);
            value_reply(deadline::on_connection(timeout, call, expired).await?)
        }),
    }
}
