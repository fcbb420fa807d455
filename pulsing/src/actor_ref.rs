//! Handles to running actors: the typed [`ActorRef`] and the cell it points at.
//!
//! An actor is a task that owns its state and a bounded mailbox. An [`ActorRef<A>`] is a cheap,
//! cloneable handle to that mailbox; the generated `<Type>Ref` proxies wrap one and dereference to
//! it, so `counter.stop()` and `counter.id()` work on every proxy.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::task::AbortHandle;

use crate::actor::Actor;
use crate::dynamic::{Args, DynKind, DynPending, DynRef, Pending};
use crate::interface::Interface;
use crate::mailbox::Mailbox;
use crate::remote::RemoteActor;
use crate::{Error, Result};

/// A process-unique actor number, shown in error messages as `Counter#3`.
pub type ActorId = u64;

/// What travels through a mailbox: a message, or a nudge that wakes an idle actor to stop.
pub(crate) enum Envelope<M> {
    Message(M),
    Stop,
}

/// The facts about one actor that do not depend on its type.
#[derive(Debug)]
pub(crate) struct ActorMeta {
    pub(crate) id: ActorId,
    pub(crate) type_name: &'static str,
    /// `A::interface()`, or a hosted actor's own (see `hosted.rs`).
    pub(crate) interface: &'static Interface,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) stream_buffer: usize,
    pub(crate) stopping: AtomicBool,
    pub(crate) abort: OnceLock<AbortHandle>,
}

impl ActorMeta {
    /// `Counter#3 "counter"`: how errors and logs name this actor.
    pub(crate) fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{}#{} {:?}", self.type_name, self.id, name),
            None => format!("{}#{}", self.type_name, self.id),
        }
    }

    pub(crate) fn stopped_error(&self) -> Error {
        Error::Stopped {
            actor: self.label(),
        }
    }

    pub(crate) fn timeout_error(&self, method: &str, after: Duration) -> Error {
        Error::Timeout {
            actor: self.label(),
            method: method.to_owned(),
            after,
        }
    }
}

/// The shared part of a running actor: its mailbox sender and its metadata.
pub(crate) struct Cell<A: Actor> {
    pub(crate) meta: ActorMeta,
    pub(crate) mailbox: Mailbox<Envelope<A::Message>>,
}

impl<A: Actor> Cell<A> {
    /// Puts a message in the mailbox, waiting while it is full.
    pub(crate) async fn enqueue(&self, msg: A::Message) -> Result<()> {
        self.mailbox
            .send(Envelope::Message(msg))
            .await
            .map_err(|_| self.meta.stopped_error())
    }
}

/// A boxed, sendable future (the dynamic path only; typed calls never box).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The type-erased view of a [`Cell`], used by the registry, by shutdown and by [`DynRef`].
pub(crate) trait AnyCell: Send + Sync + 'static {
    fn meta(&self) -> &ActorMeta;
    fn interface(&self) -> &'static Interface;
    fn request_stop(&self);
    fn is_alive(&self) -> bool;
    fn dyn_enqueue<'a>(
        &'a self,
        method: &'a str,
        args: Args,
        kind: DynKind,
    ) -> BoxFuture<'a, Result<DynPending>>;
    fn remote_enqueue<'a>(
        &'a self,
        method: &'a str,
        args: &'a [u8],
        kind: DynKind,
    ) -> BoxFuture<'a, Result<Pending<Vec<u8>>>>;
    /// Like `remote_enqueue`, but only if the mailbox has room now (`Err(kind)` back when full).
    fn remote_try_enqueue(
        &self,
        method: &str,
        args: &[u8],
        kind: DynKind,
    ) -> Result<std::result::Result<Pending<Vec<u8>>, DynKind>>;
    /// Like `dyn_enqueue`, but only if the mailbox has room now (`Err((args, kind))` back when
    /// full).
    fn dyn_try_enqueue(
        &self,
        method: &str,
        args: Args,
        kind: DynKind,
    ) -> Result<std::result::Result<DynPending, (Args, DynKind)>>;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<A: Actor> AnyCell for Cell<A> {
    fn meta(&self) -> &ActorMeta {
        &self.meta
    }

    fn interface(&self) -> &'static Interface {
        self.meta.interface
    }

    fn request_stop(&self) {
        // The flag is read before every message; the nudge only wakes an idle actor, so a full
        // mailbox (a busy actor, which will read the flag soon) is fine.
        self.meta.stopping.store(true, Ordering::Release);
        let _ = self.mailbox.try_send(Envelope::Stop);
    }

    fn is_alive(&self) -> bool {
        !self.mailbox.is_closed()
    }

    fn dyn_enqueue<'a>(
        &'a self,
        method: &'a str,
        args: Args,
        kind: DynKind,
    ) -> BoxFuture<'a, Result<DynPending>> {
        Box::pin(async move {
            let (msg, pending) = A::dyn_message(method, args, kind)?;
            self.enqueue(msg).await?;
            Ok(pending)
        })
    }

    fn remote_enqueue<'a>(
        &'a self,
        method: &'a str,
        args: &'a [u8],
        kind: DynKind,
    ) -> BoxFuture<'a, Result<Pending<Vec<u8>>>> {
        Box::pin(async move {
            let (msg, pending) = A::remote_message(method, args, kind)?;
            self.enqueue(msg).await?;
            Ok(pending)
        })
    }

    fn remote_try_enqueue(
        &self,
        method: &str,
        args: &[u8],
        kind: DynKind,
    ) -> Result<std::result::Result<Pending<Vec<u8>>, DynKind>> {
        let stopped = || self.meta.stopped_error();
        let Some(room) = self.mailbox.try_reserve().map_err(|()| stopped())? else {
            return Ok(Err(kind));
        };
        let (msg, pending) = A::remote_message(method, args, kind)?;
        room.send(Envelope::Message(msg)).map_err(|_| stopped())?;
        Ok(Ok(pending))
    }

    fn dyn_try_enqueue(
        &self,
        method: &str,
        args: Args,
        kind: DynKind,
    ) -> Result<std::result::Result<DynPending, (Args, DynKind)>> {
        let stopped = || self.meta.stopped_error();
        let Some(room) = self.mailbox.try_reserve().map_err(|()| stopped())? else {
            return Ok(Err((args, kind)));
        };
        let (msg, pending) = A::dyn_message(method, args, kind)?;
        room.send(Envelope::Message(msg)).map_err(|_| stopped())?;
        Ok(Ok(pending))
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// A typed handle to a running actor of type `A`, in this process or on another node.
///
/// Cheap to clone (one reference count). Calls go through the generated proxy (`CounterRef`),
/// which dereferences to this type for the operations every actor shares.
pub struct ActorRef<A: Actor> {
    pub(crate) target: Target<A>,
}

/// Where the actor behind an [`ActorRef`] lives.
pub(crate) enum Target<A: Actor> {
    Local(Arc<Cell<A>>),
    Remote(Arc<RemoteActor>),
}

impl<A: Actor> ActorRef<A> {
    pub(crate) fn local(cell: Arc<Cell<A>>) -> Self {
        ActorRef {
            target: Target::Local(cell),
        }
    }

    pub(crate) fn remote(remote: Arc<RemoteActor>) -> Self {
        ActorRef {
            target: Target::Remote(remote),
        }
    }

    /// The actor's id on its own node.
    pub fn id(&self) -> ActorId {
        match &self.target {
            Target::Local(cell) => cell.meta.id,
            Target::Remote(r) => r.id,
        }
    }

    /// The name it was registered under, if any.
    pub fn name(&self) -> Option<&str> {
        match &self.target {
            Target::Local(cell) => cell.meta.name.as_deref(),
            Target::Remote(r) => Some(&r.name),
        }
    }

    /// Whether the actor lives in this process.
    pub fn is_local(&self) -> bool {
        matches!(self.target, Target::Local(_))
    }

    /// Whether the actor is still running, as far as this process knows (for a remote actor:
    /// whether the connection to its node is up).
    pub fn is_alive(&self) -> bool {
        match &self.target {
            Target::Local(cell) => cell.is_alive(),
            Target::Remote(r) => !r.conn.is_closed(),
        }
    }

    /// Asks the actor to stop after the message it is handling now. Messages still queued fail
    /// with [`Error::Stopped`](crate::Error::Stopped); its name is released. Returns at once;
    /// await [`stopped`](Self::stopped) to wait for the end.
    pub fn stop(&self) {
        match &self.target {
            Target::Local(cell) => cell.request_stop(),
            Target::Remote(r) => {
                let r = r.clone();
                tokio::spawn(async move { r.call_dyn(STOP, crate::Args::new(), None).await });
            }
        }
    }

    /// Resolves once the actor has stopped and its mailbox is closed (for a remote actor: once
    /// its node no longer knows it, or the connection is gone).
    pub async fn stopped(&self) {
        match &self.target {
            Target::Local(cell) => cell.mailbox.closed().await,
            Target::Remote(r) => loop {
                if r.call_dyn(DESCRIBE, crate::Args::new(), None)
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            },
        }
    }

    /// An untyped handle for by-name calls with [`Value`](crate::Value) arguments.
    pub fn to_dyn(&self) -> DynRef {
        match &self.target {
            Target::Local(cell) => DynRef::from_cell(cell.clone()),
            Target::Remote(r) => DynRef::from_remote(r.clone()),
        }
    }

    /// The default deadline of calls through this handle, from the system's configuration.
    pub fn call_timeout(&self) -> Option<Duration> {
        match &self.target {
            Target::Local(cell) => cell.meta.call_timeout,
            Target::Remote(r) => r.call_timeout,
        }
    }

    /// How errors name this actor.
    pub(crate) fn label(&self) -> String {
        match &self.target {
            Target::Local(cell) => cell.meta.label(),
            Target::Remote(r) => r.label(),
        }
    }
}

/// The meta-method a node answers with an actor's type and id.
pub(crate) const DESCRIBE: &str = "$describe";
/// The meta-method that stops an actor from another node.
pub(crate) const STOP: &str = "$stop";

impl<A: Actor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef {
            target: match &self.target {
                Target::Local(cell) => Target::Local(cell.clone()),
                Target::Remote(r) => Target::Remote(r.clone()),
            },
        }
    }
}

impl<A: Actor> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorRef({})", self.label())
    }
}

impl<A: Actor> PartialEq for ActorRef<A> {
    fn eq(&self, other: &Self) -> bool {
        match (&self.target, &other.target) {
            (Target::Local(a), Target::Local(b)) => Arc::ptr_eq(a, b),
            (Target::Remote(a), Target::Remote(b)) => {
                Arc::ptr_eq(&a.conn, &b.conn) && a.name == b.name && a.id == b.id
            }
            _ => false,
        }
    }
}

impl<A: Actor> Eq for ActorRef<A> {}

/// Implemented by every generated proxy (`CounterRef`), so generic code can resolve and spawn
/// proxies: `system.resolve::<CounterRef>("counter")`.
pub trait TypedRef: From<ActorRef<Self::Actor>> + Clone + Send + Sync + 'static {
    /// The actor type behind the proxy.
    type Actor: Actor;
    /// The underlying untyped-by-proxy handle.
    fn actor_ref(&self) -> &ActorRef<Self::Actor>;
}
