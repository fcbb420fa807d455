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

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actor::Actor;
use crate::actor_ref::{ActorId, ActorMeta, ActorRef, AnyCell, Cell};
use crate::dynamic::DynRef;
use crate::mailbox::Mailbox;
use crate::node::Node;
use crate::registry::Registry;
use crate::runner;
use crate::supervision::{SpawnOptions, Supervisor};
use crate::transport::{new_node_id, Inbound, Transport};
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
    /// Where to listen for peers (`"127.0.0.1:0"` picks a free port); `None`: no cluster.
    pub addr: Option<String>,
    /// The address peers should use to reach this node; default: the bound address, with a
    /// wildcard IP (`0.0.0.0`) replaced by the host's first non-loopback interface address.
    pub advertise: Option<String>,
    /// Nodes to contact when joining.
    pub seeds: Vec<String>,
    /// The cluster secret every node must prove (never sent). `None`: no authentication.
    pub secret: Option<Vec<u8>>,
    /// The largest frame accepted from a peer. Default 64 MiB.
    pub max_frame: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mailbox_capacity: 256,
            call_timeout: Some(Duration::from_secs(30)),
            stream_buffer: 32,
            shutdown_grace: Duration::from_secs(5),
            addr: None,
            advertise: None,
            seeds: Vec::new(),
            secret: None,
            max_frame: crate::wire::DEFAULT_MAX_FRAME,
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

    /// Listens for peers on `addr` (`"127.0.0.1:0"` picks a free port; read it back with
    /// [`ActorSystem::local_addr`]). Without it the system is standalone.
    pub fn addr(mut self, addr: impl Into<String>) -> Self {
        self.config.addr = Some(addr.into());
        self
    }

    /// The address peers should use to reach this node (when the bound one is not reachable).
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.config.advertise = Some(addr.into());
        self
    }

    /// Nodes to contact when joining the cluster.
    pub fn seeds<S: Into<String>>(mut self, seeds: impl IntoIterator<Item = S>) -> Self {
        self.config.seeds = seeds.into_iter().map(Into::into).collect();
        self
    }

    /// The cluster secret: peers must prove they know it (it is never sent).
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.config.secret = Some(secret.into());
        self
    }

    /// The largest frame accepted from a peer; a larger one closes that connection.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes;
        self
    }

    /// Starts the system on the current tokio runtime (and, with an address, joins the cluster).
    pub async fn build(self) -> Result<ActorSystem> {
        let config = self.config;
        let inner = Arc::new_cyclic(|me: &std::sync::Weak<SystemInner>| SystemInner {
            node: config
                .addr
                .as_ref()
                .map(|_| Arc::new(Node::new(me.clone(), config.seeds.clone()))),
            config: config.clone(),
            next_id: AtomicU64::new(1),
            registry: Registry::default(),
            actors: Mutex::new(Actors::default()),
            tracker: TaskTracker::new(),
            shutdown_token: CancellationToken::new(),
        });
        if let (Some(node), Some(addr)) = (&inner.node, &config.addr) {
            let inbound: Arc<dyn Inbound> = node.clone();
            let transport = Transport::start(
                addr,
                config.advertise.clone(),
                new_node_id(),
                config.secret.clone(),
                config.max_frame,
                Arc::downgrade(&inbound),
            )
            .await?;
            let _ = node.transport.set(transport);
            node.join().await;
        }
        Ok(ActorSystem { inner })
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
    pub(crate) registry: Registry,
    node: Option<Arc<Node>>,
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
            mailbox: Mailbox::new(capacity),
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
        let task = runner::run(cell.clone(), factory, supervisor, inner.clone());
        let handle = inner.tracker.spawn(task);
        let _ = cell.meta.abort.set(handle.abort_handle());
        Ok(ActorRef::local(cell))
    }

    /// The actor named `name`, as an `A`. Looks once: fails with [`Error::NotFound`] if the name
    /// is not bound now, or [`Error::TypeMismatch`] if it is bound to another actor type.
    pub async fn resolve<A: Actor>(&self, name: &str) -> Result<ActorRef<A>> {
        if let Some(cell) = self.inner.registry.get(name) {
            return downcast(name, cell);
        }
        let remote = self.find_remote(name).await?;
        let expected = A::interface().actor;
        if remote.type_name != expected {
            return Err(Error::TypeMismatch {
                name: name.to_owned(),
                expected: expected.to_owned(),
                found: remote.type_name.clone(),
            });
        }
        Ok(ActorRef::remote(remote))
    }

    /// Looks for `name` on the other nodes of the cluster (`NotFound` when standalone).
    async fn find_remote(&self, name: &str) -> Result<Arc<crate::remote::RemoteActor>> {
        match &self.inner.node {
            Some(node) => {
                let config = &self.inner.config;
                node.find(name, config.call_timeout, config.stream_buffer)
                    .await
            }
            None => Err(Error::NotFound {
                name: name.to_owned(),
            }),
        }
    }

    /// The address this node listens on (`None` when standalone).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.node.as_ref().map(|n| n.transport().local_addr())
    }

    /// This node's random id, fresh at every start (`None` when standalone).
    pub fn node_id(&self) -> Option<crate::wire::NodeId> {
        self.inner.node.as_ref().map(|n| n.transport().node())
    }

    /// The address this node advertises to peers (`None` when standalone).
    pub fn advertised_addr(&self) -> Option<String> {
        self.inner
            .node
            .as_ref()
            .map(|n| n.transport().advertised().to_owned())
    }

    /// Like [`resolve`](Self::resolve), but waits up to `timeout` for the name to appear.
    pub async fn resolve_wait<A: Actor>(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<ActorRef<A>> {
        if self.inner.node.is_none() {
            let cell = self.inner.registry.wait_for(name, timeout).await?;
            return downcast(name, cell);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.resolve::<A>(name).await {
                Err(Error::NotFound { .. }) if tokio::time::Instant::now() < deadline => {
                    let _ = tokio::time::timeout_at(
                        deadline,
                        self.inner
                            .registry
                            .wait_for(name, Duration::from_millis(50)),
                    )
                    .await;
                }
                Err(Error::NotFound { .. }) => {
                    return Err(Error::ResolveTimeout {
                        name: name.to_owned(),
                        waited: timeout,
                    })
                }
                other => return other,
            }
        }
    }

    /// The actor named `name`, for by-name calls whatever its type.
    pub async fn resolve_dyn(&self, name: &str) -> Result<DynRef> {
        match self.inner.registry.get(name) {
            Some(cell) => Ok(DynRef::from_cell(cell)),
            None => self.find_remote(name).await.map(DynRef::from_remote),
        }
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
        if let Some(node) = &inner.node {
            node.transport().shutdown();
        }
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
        .map(ActorRef::local)
        .map_err(|_| Error::TypeMismatch {
            name: name.to_owned(),
            expected: A::interface().actor.to_owned(),
            found: found.to_owned(),
        })
}
