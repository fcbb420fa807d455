//! The [`ActorSystem`]: spawns actors, names them, finds them, and shuts them all down.
//!
//! ```
//! # use pulsing::prelude::*;
//! # use std::time::Duration;
//! pub struct Echo;
//!
//! #[pulsing::remote]
//! impl Echo {
//!     pub fn echo(&self, text: String) -> String { text }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pulsing::Result<()> {
//! let system = ActorSystem::builder()
//!     .mailbox_capacity(64)
//!     .call_timeout(Duration::from_secs(5))
//!     .build()
//!     .await?;
//! Echo::spawn_named(&system, "echo", Echo).await?;
//! let echo = Echo::resolve(&system, "echo").await?;
//! assert_eq!(echo.echo("hi".into()).await?, "hi");
//! assert!(matches!(Echo::resolve(&system, "nobody").await, Err(Error::NotFound { .. })));
//! system.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actor::Actor;
use crate::actor_ref::{ActorId, ActorMeta, ActorRef, AnyCell, Cell};
use crate::dynamic::DynRef;
use crate::registry::Registry;
use crate::runner;
use crate::supervision::{SpawnOptions, Supervisor};
use crate::{Error, Result};

/// Settings of an [`ActorSystem`]; build one with [`ActorSystem::builder`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Mailbox capacity of each actor (senders wait when it is full). Default 256.
    pub mailbox_capacity: usize,
    /// Deadline of every call unless the call sets its own; `None` waits forever. Default 30 s.
    pub call_timeout: Option<Duration>,
    /// Items buffered between a streaming method and its consumer. Default 32.
    pub stream_buffer: usize,
    /// How long `shutdown` lets actors finish before aborting them. Default 5 s.
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mailbox_capacity: 256,
            call_timeout: Some(Duration::from_secs(30)),
            stream_buffer: 32,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Builds an [`ActorSystem`].
#[derive(Debug, Default)]
#[must_use]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// Mailbox capacity of each actor (at least 1).
    pub fn mailbox_capacity(mut self, capacity: usize) -> Self {
        self.config.mailbox_capacity = capacity.max(1);
        self
    }

    /// Default deadline of every call.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = Some(timeout);
        self
    }

    /// Calls wait for their answer however long it takes, unless they set their own deadline.
    pub fn no_call_timeout(mut self) -> Self {
        self.config.call_timeout = None;
        self
    }

    /// Items buffered between a streaming method and its consumer (at least 1).
    pub fn stream_buffer(mut self, items: usize) -> Self {
        self.config.stream_buffer = items.max(1);
        self
    }

    /// How long `shutdown` waits for actors before aborting them.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// Starts the system on the current tokio runtime.
    pub async fn build(self) -> Result<ActorSystem> {
        Ok(ActorSystem {
            inner: Arc::new(SystemInner {
                config: self.config,
                next_id: AtomicU64::new(1),
                registry: Registry::default(),
                actors: Mutex::new(Actors::default()),
                tracker: TaskTracker::new(),
                shutdown_token: CancellationToken::new(),
            }),
        })
    }
}

/// Every live actor, for shutdown; `closed` once shutdown began.
#[derive(Default)]
struct Actors {
    closed: bool,
    live: HashMap<ActorId, Arc<dyn AnyCell>>,
}

/// The state shared by a system and all its actors.
pub(crate) struct SystemInner {
    config: Config,
    next_id: AtomicU64,
    registry: Registry,
    actors: Mutex<Actors>,
    tracker: TaskTracker,
    pub(crate) shutdown_token: CancellationToken,
}

impl std::fmt::Debug for SystemInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemInner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SystemInner {
    fn actors(&self) -> MutexGuard<'_, Actors> {
        self.actors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops a stopped actor from the books: its name and its shutdown entry.
    pub(crate) fn forget(&self, meta: &ActorMeta) {
        if let Some(name) = &meta.name {
            self.registry.release(name, meta.id);
        }
        self.actors().live.remove(&meta.id);
    }
}

/// A set of actors on one tokio runtime: the entry point of Pulsing.
///
/// Cheap to clone; every clone is the same system.
#[derive(Clone, Debug)]
pub struct ActorSystem {
    inner: Arc<SystemInner>,
}

impl ActorSystem {
    /// A builder with the default [`Config`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A system with the default [`Config`].
    pub async fn new() -> Result<ActorSystem> {
        Builder::default().build().await
    }

    /// The configuration this system runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Spawns `actor` with default options.
    pub async fn spawn<A: Actor>(&self, actor: A) -> Result<ActorRef<A>> {
        let mut once = Some(actor);
        self.start(SpawnOptions::new(), move || once.take()).await
    }

    /// Spawns `actor` under `name`; fails with [`Error::NameTaken`] if the name is bound.
    pub async fn spawn_named<A: Actor>(
        &self,
        name: impl Into<String>,
        actor: A,
    ) -> Result<ActorRef<A>> {
        let mut once = Some(actor);
        self.start(SpawnOptions::new().name(name), move || once.take())
            .await
    }

    /// Spawns an actor built by `factory` with `options`. With a restart policy, the factory
    /// builds a fresh state after each panic.
    pub async fn spawn_with<A: Actor>(
        &self,
        options: SpawnOptions,
        mut factory: impl FnMut() -> A + Send + 'static,
    ) -> Result<ActorRef<A>> {
        self.start(options, move || Some(factory())).await
    }

    async fn start<A, F>(&self, options: SpawnOptions, factory: F) -> Result<ActorRef<A>>
    where
        A: Actor,
        F: FnMut() -> Option<A> + Send + 'static,
    {
        let inner = &self.inner;
        let id = inner
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let capacity = options.mailbox.unwrap_or(inner.config.mailbox_capacity);
        let (tx, rx) = mpsc::channel(capacity);
        let cell = Arc::new(Cell {
            meta: ActorMeta {
                id,
                type_name: A::interface().actor,
                name: options.name.map(Arc::from),
                call_timeout: inner.config.call_timeout,
                stream_buffer: inner.config.stream_buffer,
                stopping: AtomicBool::new(false),
                abort: OnceLock::new(),
            },
            tx,
        });
        {
            let mut actors = inner.actors();
            if actors.closed {
                return Err(Error::SystemShutdown);
            }
            if let Some(name) = &cell.meta.name {
                inner.registry.bind(name.clone(), cell.clone())?;
            }
            actors.live.insert(id, cell.clone());
        }
        let supervisor = Supervisor::new(options.supervision);
        let task = runner::run(cell.clone(), rx, factory, supervisor, inner.clone());
        let handle = inner.tracker.spawn(task);
        let _ = cell.meta.abort.set(handle.abort_handle());
        Ok(ActorRef { cell })
    }

    /// The actor named `name`, as an `A`. Looks once: fails with [`Error::NotFound`] if the name
    /// is not bound now, or [`Error::TypeMismatch`] if it is bound to another actor type.
    pub async fn resolve<A: Actor>(&self, name: &str) -> Result<ActorRef<A>> {
        let cell = self
            .inner
            .registry
            .get(name)
            .ok_or_else(|| Error::NotFound {
                name: name.to_owned(),
            })?;
        downcast(name, cell)
    }

    /// Like [`resolve`](Self::resolve), but waits up to `timeout` for the name to appear.
    pub async fn resolve_wait<A: Actor>(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<ActorRef<A>> {
        let cell = self.inner.registry.wait_for(name, timeout).await?;
        downcast(name, cell)
    }

    /// The actor named `name`, for by-name calls whatever its type.
    pub async fn resolve_dyn(&self, name: &str) -> Result<DynRef> {
        self.inner
            .registry
            .get(name)
            .map(DynRef::from_cell)
            .ok_or_else(|| Error::NotFound {
                name: name.to_owned(),
            })
    }

    /// Like [`resolve_dyn`](Self::resolve_dyn), but waits up to `timeout` for the name to appear.
    pub async fn resolve_dyn_wait(&self, name: &str, timeout: Duration) -> Result<DynRef> {
        let cell = self.inner.registry.wait_for(name, timeout).await?;
        Ok(DynRef::from_cell(cell))
    }

    /// The names bound in this system, sorted.
    pub fn names(&self) -> Vec<String> {
        self.inner.registry.list()
    }

    /// How many actors are running.
    pub fn actor_count(&self) -> usize {
        self.inner.actors().live.len()
    }

    /// Stops every actor and waits for them: each finishes the message in hand, runs `on_stop`,
    /// and fails its queued calls with [`Error::Stopped`]. Actors still busy after the grace
    /// period are aborted. Later spawns fail with [`Error::SystemShutdown`]. Idempotent.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        let live: Vec<Arc<dyn AnyCell>> = {
            let mut actors = inner.actors();
            actors.closed = true;
            actors.live.values().cloned().collect()
        };
        for cell in &live {
            cell.request_stop();
        }
        inner.shutdown_token.cancel();
        inner.tracker.close();
        let grace = inner.config.shutdown_grace;
        if tokio::time::timeout(grace, inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "actors still busy after the shutdown grace period: aborting them"
            );
            for cell in &live {
                if let Some(abort) = cell.meta().abort.get() {
                    abort.abort();
                }
            }
            inner.tracker.wait().await;
        }
        inner.registry.clear();
        inner.actors().live.clear();
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_shut_down(&self) -> bool {
        self.inner.actors().closed
    }
}

fn downcast<A: Actor>(name: &str, cell: Arc<dyn AnyCell>) -> Result<ActorRef<A>> {
    let found = cell.meta().type_name;
    cell.into_any()
        .downcast::<Cell<A>>()
        .map(|cell| ActorRef { cell })
        .map_err(|_| Error::TypeMismatch {
            name: name.to_owned(),
            expected: A::interface().actor.to_owned(),
            found: found.to_owned(),
        })
}
