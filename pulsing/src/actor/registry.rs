//! The names of this process's actors.
//!
//! One actor per name; registering a taken name fails; a stopped actor's name is released.
//! Waiters can block until a name appears (names arrive asynchronously once nodes gossip).
//!
//! **Lookups on the serving path** ([`Registry::get_cached`]) take no lock: each thread keeps
//! the last actor it looked up, good while the registry's generation (bumped by every bind and
//! release) is unchanged. A connection's reader serves call after call to the same few actors;
//! before, every call from every connection locked this one map and hashed the name.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::Notify;

use super::cell::AnyCell;
use super::meta::ActorId;
use crate::error::{Error, Result};

/// Name → actor, plus a signal for those waiting on a name.
pub(crate) struct Registry {
    names: Mutex<HashMap<Arc<str>, Arc<dyn AnyCell>>>,
    /// This registry among all (a thread's cached lookup names the registry it came from).
    id: u64,
    /// Bumped by every change of `names`, under its lock: a cached lookup of an older
    /// generation is not used.
    generation: AtomicU64,
    changed: Notify,
}

impl Default for Registry {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Registry {
            names: Mutex::default(),
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }
}

/// A thread's last lookup through [`Registry::get_cached`].
struct Cached {
    registry: u64,
    generation: u64,
    name: Arc<str>,
    /// Weak: a thread's cache never keeps a stopped actor alive.
    cell: Weak<dyn AnyCell>,
}

thread_local! {
    static LAST: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

impl Registry {
    fn names(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<dyn AnyCell>>> {
        // A panic cannot happen while the lock is held (only map operations), so poisoning is moot.
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds `name` to `cell`; fails with [`Error::NameTaken`] if it is bound.
    pub(crate) fn bind(&self, name: Arc<str>, cell: Arc<dyn AnyCell>) -> Result<()> {
        {
            let mut names = self.names();
            if let Some(holder) = names.get(&name) {
                return Err(Error::NameTaken {
                    name: name.to_string(),
                    holder: holder.meta().label(),
                });
            }
            names.insert(name, cell);
            self.generation.fetch_add(1, Ordering::Release);
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Releases `name` if it is still bound to actor `id`; says whether it was.
    pub(crate) fn release(&self, name: &str, id: ActorId) -> bool {
        let mut names = self.names();
        let bound = names.get(name).is_some_and(|c| c.meta().id == id);
        if bound {
            names.remove(name);
            self.generation.fetch_add(1, Ordering::Release);
        }
        bound
    }

    /// Completes at the next bind (call `enable` on it before looking, to miss none).
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// The actor bound to `name`, if any.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn AnyCell>> {
        self.names().get(name).cloned()
    }

    /// Like [`get`](Self::get), without a lock when this thread's last lookup was the same
    /// name and nothing was bound or released since.
    pub(crate) fn get_cached(&self, name: &str) -> Option<Arc<dyn AnyCell>> {
        let generation = self.generation.load(Ordering::Acquire);
        let hit = LAST.with_borrow(|last| {
            let last = last.as_ref()?;
            let fresh = last.registry == self.id && last.generation == generation;
            (fresh && &*last.name == name).then(|| last.cell.upgrade())?
        });
        if hit.is_some() {
            return hit;
        }
        let names = self.names();
        let (name, cell) = names.get_key_value(name)?;
        let cached = Cached {
            registry: self.id,
            // Read under the lock, which every change holds: this is the map's generation.
            generation: self.generation.load(Ordering::Acquire),
            name: name.clone(),
            cell: Arc::downgrade(cell),
        };
        let cell = cell.clone();
        drop(names);
        LAST.set(Some(cached));
        Some(cell)
    }

    /// All bound names, sorted.
    pub(crate) fn list(&self) -> Vec<String> {
        let mut names: Vec<String> = self.names().keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    pub(crate) fn clear(&self) {
        let mut names = self.names();
        names.clear();
        self.generation.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
#[allow(unreachable_pub)] // the test actor's generated items are `pub`
mod tests {
    use std::sync::Arc;

    use crate::actor::cell::AnyCell;
    use crate::prelude::*;
    use crate::ActorId;

    pub struct Tag;

    #[pulsing::remote]
    impl Tag {
        pub fn ping(&self) {}
    }

    fn id(cell: Option<Arc<dyn AnyCell>>) -> Option<ActorId> {
        cell.map(|cell| cell.meta().id)
    }

    #[tokio::test]
    async fn a_cached_lookup_follows_every_bind_and_release() {
        let system = ActorSystem::new().await.unwrap();
        let names = system.registry();
        let first = system.spawn_named("t", Tag).await.unwrap();
        assert_eq!(id(names.get_cached("t")), Some(first.id()));
        assert_eq!(id(names.get_cached("u")), None);
        // The old actor stays alive here, so a stale cache entry would still upgrade.
        let old = names.get("t").unwrap();
        assert!(names.release("t", first.id()));
        assert_eq!(id(names.get_cached("t")), None, "released");
        let second = system.spawn_named("t", Tag).await.unwrap();
        assert_eq!(id(names.get_cached("t")), Some(second.id()), "bound again");
        // Another system on the same thread, the same name: its own actor.
        let other = ActorSystem::new().await.unwrap();
        let third = other.spawn_named("t", Tag).await.unwrap();
        assert_eq!(id(other.registry().get_cached("t")), Some(third.id()));
        assert_eq!(id(names.get_cached("t")), Some(second.id()));
        // A cached actor that stopped is not handed out.
        second.stop();
        second.stopped().await;
        assert_eq!(id(names.get_cached("t")), None, "stopped");
        drop(old);
    }
}
