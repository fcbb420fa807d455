//! The names of this process's actors.
//!
//! One actor per name; registering a taken name fails; a stopped actor's name is released.
//! Waiters can block until a name appears (names arrive asynchronously once nodes gossip).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::actor_ref::{ActorId, AnyCell};
use crate::{Error, Result};

/// Name → actor, plus a signal for those waiting on a name.
#[derive(Default)]
pub(crate) struct Registry {
    names: Mutex<HashMap<Arc<str>, Arc<dyn AnyCell>>>,
    changed: Notify,
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
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Releases `name` if it is still bound to actor `id`.
    pub(crate) fn release(&self, name: &str, id: ActorId) {
        let mut names = self.names();
        if names.get(name).is_some_and(|c| c.meta().id == id) {
            names.remove(name);
        }
    }

    /// The actor bound to `name`, if any.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn AnyCell>> {
        self.names().get(name).cloned()
    }

    /// Waits up to `timeout` for `name` to be bound.
    pub(crate) async fn wait_for(&self, name: &str, timeout: Duration) -> Result<Arc<dyn AnyCell>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before looking, so a bind between the look and the wait is seen.
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if let Some(cell) = self.get(name) {
                return Ok(cell);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(Error::ResolveTimeout {
                    name: name.to_owned(),
                    waited: timeout,
                });
            }
        }
    }

    /// All bound names, sorted.
    pub(crate) fn list(&self) -> Vec<String> {
        let mut names: Vec<String> = self.names().keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    pub(crate) fn clear(&self) {
        self.names().clear();
    }
}
