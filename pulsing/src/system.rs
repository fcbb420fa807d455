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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actor::cell::{AnyCell, Cell};
use crate::actor::meta::{ActorId, ActorMeta};
use crate::actor::registry::Registry;
use crate::actor::runner;
use crate::actor::supervision::{SpawnOptions, Supervisor};
use crate::actor::sweep;
use crate::actor::Actor;
use crate::cluster::client::PeerActor;
use crate::cluster::directory::{Instance, Member};
use crate::cluster::gossip::GossipConfig;
use crate::cluster::node::Node;
use crate::error::{Error, Result};
use crate::handle::{ActorRef, DynRef};
use crate::transport::{new_node_id, Inbound, Transport};

/// Settings of an [`ActorSystem`]; build one with [`ActorSystem::builder`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Mailbox capacity of each actor (senders wait when it is full). Default 256.
    pub mailbox_capacity: usize,
    /// Deadline of every call unless the call sets its own; `None` waits forever. Default 30 s.
    ///
    /// In this process, a default of 1 s or more costs no timer per call: the system's sweeper
    /// keeps it, checking every tenth of it (at most every second), so a call times out never
    /// early and at most about two such ticks late. Shorter deadlines use a timer per call.
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
    /// The cluster secret every node must prove (never sent). `None`: no authentication, no
    /// encryption, and only language-neutral values between processes.
    pub secret: Option<Vec<u8>>,
    /// With a secret: whether messages between nodes are encrypted after the handshake (they
    /// are if either side asks). Default `true`. Without a secret there is nothing to key it on,
    /// and traffic is cleartext.
    pub encrypt: bool,
    /// The largest frame accepted from a peer. Default 64 MiB.
    pub max_frame: usize,
    /// How often this node gossips with a few others. A `kill -9`ed member is declared dead
    /// after about 12 of its mean heartbeat intervals (3 s at the default 250 ms).
    pub gossip_interval: Duration,
    /// How long `resolve` waits, right after joining, to hear from the cluster before it
    /// decides a name does not exist. Default 5 s.
    pub join_timeout: Duration,
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
            encrypt: true,
            max_frame: crate::wire::DEFAULT_MAX_FRAME,
            gossip_interval: GossipConfig::default().interval,
            join_timeout: Duration::from_secs(5),
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

    /// Items buffered between a streaming method and its consumer (at least 1). Across nodes,
    /// a stream's credit window is 32 times this (at least 1,024 items): that many items may
    /// wait in the consumer's node, received and not yet taken, so lower it for large items.
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

    /// The address peers should use to reach this node (when the bound one is not reachable):
    /// `host:port`, where the host may be a name (`"node-3.internal:7000"`) that peers resolve,
    /// and port 0 stands for the port that was bound.
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.config.advertise = Some(addr.into());
        self
    }

    /// Nodes to contact when joining the cluster.
    pub fn seeds<S: Into<String>>(mut self, seeds: impl IntoIterator<Item = S>) -> Self {
        self.config.seeds = seeds.into_iter().map(Into::into).collect();
        self
    }

    /// The cluster secret: peers must prove they know it (it is never sent). Connections are
    /// then mutually authenticated and encrypted (the Noise protocol, `NNpsk0` with AES-GCM),
    /// and arbitrary (pickled) Python objects may cross between processes.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn f() -> pulsing::Result<()> {
    /// let system = pulsing::ActorSystem::builder()
    ///     .addr("0.0.0.0:8000")
    ///     .secret(std::env::var("PULSING_SECRET").expect("a cluster secret"))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.config.secret = Some(secret.into());
        self
    }

    /// With a secret, whether to encrypt messages after the (always authenticated) handshake.
    /// `false` saves the cipher's CPU on a network you trust: anyone on the path can then read
    /// calls and inject messages into a connection. A connection is encrypted if either side
    /// asks. Default `true`.
    pub fn encryption(mut self, on: bool) -> Self {
        self.config.encrypt = on;
        self
    }

    /// The largest frame accepted from a peer; a larger one closes that connection.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes;
        self
    }

    /// How often this node gossips (at least 10 ms).
    pub fn gossip_interval(mut self, interval: Duration) -> Self {
        self.config.gossip_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How long `resolve` waits, right after joining, to hear from the cluster.
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.config.join_timeout = timeout;
        self
    }

    /// Starts the system on the current tokio runtime (and, with an address, joins the cluster).
    ///
    /// # Errors
    /// With an address: [`Error::Unreachable`] if it cannot be bound or the advertised address
    /// does not resolve, or the error of starting gossip.
    pub async fn build(self) -> Result<ActorSystem> {
        let config = self.config;
        let registry = Arc::new(Registry::default());
        let inner = Arc::new(SystemInner {
            node: config
                .addr
                .as_ref()
                .map(|_| Arc::new(Node::new(Arc::downgrade(&registry)))),
            config: config.clone(),
            next_id: AtomicU64::new(1),
            registry,
            actors: Mutex::new(Actors::default()),
            tracker: TaskTracker::new(),
            shutdown_token: CancellationToken::new(),
        });
        tokio::spawn(sweep::run(sweep::tick(config.call_timeout), {
            let system = Arc::downgrade(&inner);
            move |clock| system.upgrade().is_some_and(|system| system.sweep(clock))
        }));
        if let (Some(node), Some(addr)) = (&inner.node, &config.addr) {
            let inbound: Arc<dyn Inbound> = node.clone();
            let transport = Transport::start(
                addr,
                config.advertise.clone(),
                new_node_id(),
                config.secret.clone(),
                config.encrypt,
                config.max_frame,
                Arc::downgrade(&inbound),
            )
            .await?;
            let gossip = GossipConfig {
                interval: config.gossip_interval,
                ..GossipConfig::default()
            };
            node.start(transport, config.seeds.clone(), &gossip).await?;
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
    registry: Arc<Registry>,
    node: Option<Arc<Node>>,
    actors: Mutex<Actors>,
    tracker: TaskTracker,
    shutdown_token: CancellationToken,
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

    /// Checks the long deadlines of every actor's calls (see `actor/sweep.rs`); `false` once
    /// the system is shut down. The table stays locked meanwhile (spawns wait): one look at a
    /// few atomics per actor, and at the queue of those with queued calls.
    fn sweep(&self, clock: &mut sweep::SweepClock) -> bool {
        if self.shutdown_token.is_cancelled() {
            return false;
        }
        for cell in self.actors().live.values() {
            cell.sweep(clock);
        }
        true
    }

    /// Drops a stopped actor from the books: its name and its shutdown entry.
    fn forget(&self, meta: &ActorMeta) {
        if let Some(name) = &meta.name {
            if self.registry.release(name, meta.id) {
                if let Some(node) = &self.node {
                    node.directory().retract(name);
                }
            }
        }
        self.actors().live.remove(&meta.id);
    }
}

/// Closes an actor's books when its task ends, however it ends (its loop returned, or a shutdown
/// aborted it): no more messages, name released, and every queued caller told `Stopped`.
struct Closing<'a, A: Actor> {
    cell: &'a Cell<A>,
    system: &'a SystemInner,
}

impl<A: Actor> Drop for Closing<'_, A> {
    fn drop(&mut self) {
        self.cell.meta.stopping.store(true, Ordering::Release);
        self.system.forget(&self.cell.meta);
        // Dropping what was still queued drops its reply slots: those callers get `Stopped` now.
        drop(self.cell.mailbox.close());
        // Calls still waiting in connections' backlogs are answered there (`Stopped`).
        self.cell.close_overflow();
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
    ///
    /// # Errors
    /// None in practice: the default configuration is standalone (see [`Builder::build`]).
    pub async fn new() -> Result<ActorSystem> {
        Builder::default().build().await
    }

    /// The configuration this system runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Spawns `actor` with default options.
    ///
    /// # Errors
    /// [`Error::SystemShutdown`] once [`shutdown`](Self::shutdown) has begun.
    pub async fn spawn<A: Actor>(&self, actor: A) -> Result<ActorRef<A>> {
        let mut once = Some(actor);
        self.start(SpawnOptions::new(), move || once.take()).await
    }

    /// Spawns `actor` under `name`.
    ///
    /// # Errors
    /// [`Error::NameTaken`] if the name is bound in this system, [`Error::SystemShutdown`] once
    /// shutdown has begun.
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
    ///
    /// # Errors
    /// As [`spawn_named`](Self::spawn_named) when `options` names the actor, else as
    /// [`spawn`](Self::spawn).
    pub async fn spawn_with<A: Actor>(
        &self,
        options: SpawnOptions,
        mut factory: impl FnMut() -> A + Send + 'static,
    ) -> Result<ActorRef<A>> {
        self.start(options, move || Some(factory())).await
    }

    pub(crate) async fn start<A, F>(
        &self,
        options: SpawnOptions,
        mut factory: F,
    ) -> Result<ActorRef<A>>
    where
        A: Actor,
        F: FnMut() -> Option<A> + Send + 'static,
    {
        let inner = &self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let capacity = options.mailbox.unwrap_or(inner.config.mailbox_capacity);
        let interface = options.interface.unwrap_or_else(A::interface);
        let cell = Arc::new(Cell::new(
            ActorMeta {
                id,
                type_name: interface.actor,
                interface,
                name: options.name.map(Arc::from),
                call_timeout: inner.config.call_timeout,
                swept_from: sweep::swept_from(inner.config.call_timeout),
                stream_buffer: inner.config.stream_buffer,
                stopping: AtomicBool::new(false),
                abort: OnceLock::new(),
                running: std::sync::Mutex::new(None),
            },
            capacity,
        ));
        {
            let mut actors = inner.actors();
            if actors.closed {
                return Err(Error::SystemShutdown);
            }
            if let Some(name) = &cell.meta.name {
                inner.registry.bind(name.clone(), cell.clone())?;
                if let Some(node) = &inner.node {
                    node.directory().publish(name, id, cell.meta.interface);
                }
            }
            actors.live.insert(id, cell.clone());
        }
        let supervisor = Supervisor::new(options.supervision);
        let (me, system) = (cell.clone(), inner.clone());
        // The books are closed when the loop ends, and also when a shutdown aborts the task.
        let task = async move {
            let _closing = Closing {
                cell: &me,
                system: &system,
            };
            runner::run(&me, &mut factory, supervisor, &system.shutdown_token).await;
        };
        let handle = inner.tracker.spawn(task);
        let _ = cell.meta.abort.set(handle.abort_handle());
        Ok(ActorRef::local(cell))
    }

    /// This process's actor named `name`, if it is an `A`; else the type mismatch (if another
    /// type holds the name here) for the caller to report when no remote `A` exists either.
    fn local_of<A: Actor>(&self, name: &str) -> std::result::Result<ActorRef<A>, Option<Error>> {
        match self
            .inner
            .registry
            .get(name)
            .map(|cell| downcast(name, cell))
        {
            Some(Ok(found)) => Ok(found),
            Some(Err(mismatch)) => Err(Some(mismatch)),
            None => Err(None),
        }
    }

    /// The actor named `name`, as an `A`: a local one of that type if there is one, else a live
    /// one of that type on another node. Other actors under the same name (of another type, in
    /// this process or another) are passed over, not an error, as long as one of type `A` exists.
    ///
    /// In a cluster, a node that has not yet heard from any other member (it just started)
    /// first waits up to [`Config::join_timeout`] for gossip; after that it looks once. Use
    /// [`resolve_wait`](Self::resolve_wait) to wait for a name that may appear later.
    ///
    /// # Errors
    /// [`Error::NotFound`] if no member has the name (or, when this node could not join, why
    /// its peers refused it), [`Error::TypeMismatch`] if the name is bound to another actor type,
    /// [`Error::Unreachable`] if no node holding it can be reached.
    pub async fn resolve<A: Actor>(&self, name: &str) -> Result<ActorRef<A>> {
        let local = match self.local_of::<A>(name) {
            Ok(found) => return Ok(found),
            Err(mismatch) => mismatch,
        };
        self.await_join().await;
        prefer_local_mismatch(local, self.resolve_remote::<A>(name).await)
    }

    async fn resolve_remote<A: Actor>(&self, name: &str) -> Result<ActorRef<A>> {
        let expected = A::interface();
        let instances = self.remote_instances(name);
        let (matching, other): (Vec<_>, Vec<_>) =
            instances.into_iter().partition(|i| i.key == expected.key);
        if matching.is_empty() {
            return Err(match other.first() {
                Some(found) => Error::TypeMismatch {
                    name: name.to_owned(),
                    expected: expected.identity(),
                    found: format!("{}#{}", found.path, found.key),
                },
                None => self.not_found(name),
            });
        }
        self.connect_remote(name, &matching, Some(expected))
            .await
            .map(ActorRef::peer)
    }

    /// `NotFound`, unless this node could not join because peers refused it (then why).
    fn not_found(&self, name: &str) -> Error {
        let refusal = self.inner.node.as_ref().and_then(|node| {
            if node.directory().has_peers() {
                None
            } else {
                node.transport().last_refusal()
            }
        });
        refusal.unwrap_or_else(|| Error::NotFound {
            name: name.to_owned(),
        })
    }

    /// Right after joining, waits (up to the join timeout) until gossip shows another member.
    async fn await_join(&self) {
        let Some(node) = &self.inner.node else { return };
        let config = &self.inner.config;
        let alone = config
            .seeds
            .iter()
            .all(|s| node.transport().advertised() == s.as_str());
        let directory = node.directory();
        if alone || directory.has_peers() {
            return;
        }
        let mut changes = directory.watch();
        let _ = tokio::time::timeout(config.join_timeout, async {
            // Gossip changes wake us; a refused handshake does not, so look again now and then.
            while !directory.has_peers() && node.transport().last_refusal().is_none() {
                let poll = tokio::time::timeout(Duration::from_millis(50), changes.changed());
                if let Ok(Err(_)) = poll.await {
                    return; // the node is stopping
                }
            }
        })
        .await;
    }

    /// This node's transport, if it is a cluster node (for `__fuzz`).
    pub(crate) fn transport(&self) -> Option<Arc<crate::transport::Transport>> {
        self.inner
            .node
            .as_ref()
            .map(|node| node.transport().clone())
    }

    fn remote_instances(&self, name: &str) -> Vec<Instance> {
        match &self.inner.node {
            Some(node) => node.directory().remote_instances(name),
            None => Vec::new(),
        }
    }

    async fn connect_remote(
        &self,
        name: &str,
        instances: &[Instance],
        expect: Option<&'static crate::actor::Interface>,
    ) -> Result<Arc<PeerActor>> {
        let node = self.inner.node.as_ref().ok_or_else(|| Error::NotFound {
            name: name.to_owned(),
        })?;
        let config = &self.inner.config;
        node.connect_to(
            name,
            instances,
            config.call_timeout,
            config.stream_buffer,
            expect,
        )
        .await
    }

    /// Every instance of `name` in the cluster: the local one first (if any), then those on
    /// other live members.
    pub fn instances(&self, name: &str) -> Vec<Instance> {
        let mut all = Vec::new();
        if let Some(cell) = self.inner.registry.get(name) {
            let meta = cell.meta();
            if let Some(node) = &self.inner.node {
                all.push(Instance {
                    node: node.transport().node(),
                    addr: node.addr(),
                    actor: meta.id,
                    type_name: meta.type_name.to_owned(),
                    path: meta.interface.path.to_owned(),
                    key: meta.interface.key.to_owned(),
                    is_local: true,
                });
            }
        }
        all.extend(self.remote_instances(name));
        all
    }

    /// The live members of the cluster, this node included (empty when standalone).
    pub fn members(&self) -> Vec<Member> {
        match &self.inner.node {
            Some(node) => node.directory().members(),
            None => Vec::new(),
        }
    }

    /// This system's names (for the registry's own tests).
    #[cfg(test)]
    pub(crate) fn registry(&self) -> &Registry {
        &self.inner.registry
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

    /// Like [`resolve`](Self::resolve), but waits up to `timeout` for the name to appear here
    /// or anywhere in the cluster.
    ///
    /// # Errors
    /// [`Error::ResolveTimeout`] if it does not appear in time; otherwise as
    /// [`resolve`](Self::resolve) (a type mismatch does not wait).
    pub async fn resolve_wait<A: Actor>(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<ActorRef<A>> {
        self.wait_for(name, timeout, || async {
            let local = match self.local_of::<A>(name) {
                Ok(found) => return Ok(found),
                Err(mismatch) => mismatch,
            };
            prefer_local_mismatch(local, self.resolve_remote::<A>(name).await)
        })
        .await
    }

    /// Retries `look` whenever a name is bound here or the cluster view changes, while it
    /// says `NotFound`, until `timeout`.
    async fn wait_for<T, F, Fut>(&self, name: &str, timeout: Duration, look: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut cluster = self.inner.node.as_ref().map(|n| n.directory().watch());
        loop {
            let bound = self.inner.registry.changed();
            let mut bound = std::pin::pin!(bound);
            bound.as_mut().enable();
            match look().await {
                Err(Error::NotFound { .. }) => {}
                other => return other,
            }
            // Resolves to `true` if the cluster view has gone (the node is stopping).
            let changed = async {
                match cluster.as_mut() {
                    Some(view) => {
                        tokio::select! {
                            changed = view.changed() => changed.is_err(),
                            () = bound => false,
                        }
                    }
                    None => {
                        bound.await;
                        false
                    }
                }
            };
            match tokio::time::timeout_at(deadline, changed).await {
                Err(_) => {
                    return Err(Error::ResolveTimeout {
                        name: name.to_owned(),
                        waited: timeout,
                    })
                }
                Ok(true) => cluster = None,
                Ok(false) => {}
            }
        }
    }

    /// The actor named `name`, for by-name calls whatever its type (local first, then a live
    /// one on another node).
    ///
    /// # Errors
    /// As [`resolve`](Self::resolve), without the type check.
    pub async fn resolve_dyn(&self, name: &str) -> Result<DynRef> {
        if let Some(cell) = self.inner.registry.get(name) {
            return Ok(DynRef::from_cell(cell));
        }
        self.await_join().await;
        self.resolve_dyn_remote(name).await
    }

    async fn resolve_dyn_remote(&self, name: &str) -> Result<DynRef> {
        let instances = self.remote_instances(name);
        if instances.is_empty() {
            return Err(self.not_found(name));
        }
        self.connect_remote(name, &instances, None)
            .await
            .map(DynRef::from_peer)
    }

    /// Like [`resolve_dyn`](Self::resolve_dyn), but only an actor whose type is called
    /// `type_name` ([`DynRef::type_name`]: a Rust type's name, a Python class's qualified name):
    /// a local one if there is one, else a live one of that type on another node. How a
    /// language without compile-time types (Python's `Class.resolve(name)`) asks for
    /// [`resolve`](Self::resolve)'s promise.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] if the name is bound only to actors of other types; otherwise as
    /// [`resolve_dyn`](Self::resolve_dyn).
    pub async fn resolve_dyn_of(&self, name: &str, type_name: &str) -> Result<DynRef> {
        let local = self.inner.registry.get(name);
        if let Some(cell) = &local {
            if cell.meta().type_name == type_name {
                return Ok(DynRef::from_cell(cell.clone()));
            }
        }
        self.await_join().await;
        self.resolve_dyn_of_remote(name, type_name, local.is_some())
            .await
    }

    /// Like [`resolve_dyn_of`](Self::resolve_dyn_of), waiting up to `timeout` for the name to
    /// appear (a type mismatch does not wait).
    ///
    /// # Errors
    /// [`Error::ResolveTimeout`] if it does not appear in time; otherwise as
    /// [`resolve_dyn_of`](Self::resolve_dyn_of).
    pub async fn resolve_dyn_of_wait(
        &self,
        name: &str,
        type_name: &str,
        timeout: Duration,
    ) -> Result<DynRef> {
        self.wait_for(name, timeout, || async {
            let local = self.inner.registry.get(name);
            if let Some(cell) = &local {
                if cell.meta().type_name == type_name {
                    return Ok(DynRef::from_cell(cell.clone()));
                }
            }
            self.resolve_dyn_of_remote(name, type_name, local.is_some())
                .await
        })
        .await
    }

    async fn resolve_dyn_of_remote(
        &self,
        name: &str,
        type_name: &str,
        other_here: bool,
    ) -> Result<DynRef> {
        let (matching, other): (Vec<_>, Vec<_>) = self
            .remote_instances(name)
            .into_iter()
            .partition(|i| i.type_name == type_name);
        if matching.is_empty() {
            let found = match (other_here, other.first()) {
                (true, _) => self
                    .inner
                    .registry
                    .get(name)
                    .map(|cell| cell.meta().type_name.to_owned()),
                (false, found) => found.map(|i| i.type_name.clone()),
            };
            return Err(match found {
                Some(found) => Error::TypeMismatch {
                    name: name.to_owned(),
                    expected: type_name.to_owned(),
                    found,
                },
                None => self.not_found(name),
            });
        }
        self.connect_remote(name, &matching, None)
            .await
            .map(DynRef::from_peer)
    }

    /// Like [`resolve_dyn`](Self::resolve_dyn), but waits up to `timeout` for the name to appear.
    ///
    /// # Errors
    /// [`Error::ResolveTimeout`] if it does not appear in time; otherwise as
    /// [`resolve_dyn`](Self::resolve_dyn).
    pub async fn resolve_dyn_wait(&self, name: &str, timeout: Duration) -> Result<DynRef> {
        self.wait_for(name, timeout, || async {
            if let Some(cell) = self.inner.registry.get(name) {
                return Ok(DynRef::from_cell(cell));
            }
            self.resolve_dyn_remote(name).await
        })
        .await
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
            node.leave().await;
        }
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_shut_down(&self) -> bool {
        self.inner.actors().closed
    }
}

/// The answer of a typed resolve that found, in this process, an actor of another type under
/// the name: the remote answer if it found one of the right type (or failed for another
/// reason than "none of that type"), else the local mismatch.
fn prefer_local_mismatch<T>(local: Option<Error>, remote: Result<T>) -> Result<T> {
    match (local, remote) {
        (Some(mismatch), Err(Error::NotFound { .. } | Error::TypeMismatch { .. })) => Err(mismatch),
        (_, remote) => remote,
    }
}

fn downcast<A: Actor>(name: &str, cell: Arc<dyn AnyCell>) -> Result<ActorRef<A>> {
    let found = cell.meta().interface;
    cell.into_any()
        .downcast::<Cell<A>>()
        .map(ActorRef::local)
        .map_err(|_| Error::TypeMismatch {
            name: name.to_owned(),
            expected: A::interface().identity(),
            found: found.identity(),
        })
}
