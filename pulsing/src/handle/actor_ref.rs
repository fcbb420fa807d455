//! The typed handle to an actor: [`ActorRef<A>`], local or on another node.
//!
//! An actor is a task that owns its state and a bounded mailbox. An [`ActorRef<A>`] is a cheap,
//! cloneable handle to that mailbox, or to the connection to the actor's node; the generated
//! `<Type>Ref` proxies wrap one and dereference to it, so `counter.stop()` and `counter.id()`
//! work on every proxy.
//!
//! ```
//! # use pulsing::prelude::*;
//! pub struct Echo;
//!
//! #[pulsing::remote]
//! impl Echo {
//!     pub fn echo(&self, text: String) -> String { text }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pulsing::Result<()> {
//! let system = ActorSystem::builder().build().await?;
//! let echo = Echo::spawn(&system, Echo).await?;
//! assert!(echo.is_local() && echo.is_alive());
//! echo.stop();
//! echo.stopped().await;
//! assert!(!echo.is_alive());
//! # system.shutdown().await; Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::dyn_ref::DynRef;
use crate::actor::cell::{AnyCell, Cell};
use crate::actor::meta::ActorId;
use crate::actor::Actor;
use crate::cluster::client::PeerActor;

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
    /// An actor on another node: calls go over the connection to it.
    Peer(Arc<PeerActor>),
}

impl<A: Actor> ActorRef<A> {
    pub(crate) fn local(cell: Arc<Cell<A>>) -> Self {
        ActorRef {
            target: Target::Local(cell),
        }
    }

    pub(crate) fn peer(peer: Arc<PeerActor>) -> Self {
        ActorRef {
            target: Target::Peer(peer),
        }
    }

    /// The actor's id on its own node.
    pub fn id(&self) -> ActorId {
        match &self.target {
            Target::Local(cell) => cell.meta.id,
            Target::Peer(p) => p.id,
        }
    }

    /// The name it was registered under, if any.
    pub fn name(&self) -> Option<&str> {
        match &self.target {
            Target::Local(cell) => cell.meta.name.as_deref(),
            Target::Peer(p) => Some(&p.name),
        }
    }

    /// Whether the actor lives in this process.
    pub fn is_local(&self) -> bool {
        matches!(self.target, Target::Local(_))
    }

    /// Whether the actor is still running, as far as this process knows (for a remote actor:
    /// whether its node is connected, no call found it stopped, and gossip still shows its
    /// name bound to it).
    pub fn is_alive(&self) -> bool {
        match &self.target {
            Target::Local(cell) => cell.is_alive(),
            Target::Peer(p) => p.is_alive(),
        }
    }

    /// Asks the actor to stop after the message it is handling now. Messages still queued fail
    /// with [`Error::Stopped`](crate::Error::Stopped); its name is released. Returns at once;
    /// await [`stopped`](Self::stopped) to wait for the end.
    pub fn stop(&self) {
        match &self.target {
            Target::Local(cell) => cell.request_stop(),
            Target::Peer(p) => p.stop(),
        }
    }

    /// Resolves once the actor has stopped and its mailbox is closed (for a remote actor: once
    /// its node no longer knows it, or the connection is gone).
    pub async fn stopped(&self) {
        match &self.target {
            Target::Local(cell) => cell.mailbox.closed().await,
            Target::Peer(p) => loop {
                if p.describe().await.is_err() {
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
            Target::Peer(p) => DynRef::from_peer(p.clone()),
        }
    }

    /// The default deadline of calls through this handle, from the system's configuration.
    pub fn call_timeout(&self) -> Option<Duration> {
        match &self.target {
            Target::Local(cell) => cell.meta.call_timeout,
            Target::Peer(p) => p.call_timeout,
        }
    }

    /// How errors name this actor.
    pub(crate) fn label(&self) -> String {
        match &self.target {
            Target::Local(cell) => cell.meta.label(),
            Target::Peer(p) => p.label(),
        }
    }
}

impl<A: Actor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef {
            target: match &self.target {
                Target::Local(cell) => Target::Local(cell.clone()),
                Target::Peer(p) => Target::Peer(p.clone()),
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
            (Target::Peer(a), Target::Peer(b)) => a.is_same(b),
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
