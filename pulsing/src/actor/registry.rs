//! The names of this process's actors.
//!
//! One actor per name; registering a taken name fails; a stopped actor's name is released.
//! Waiters can block until a name appears (names arrive asynchronously once nodes gossip).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::cell::AnyCell;
use super::meta::ActorId;
use crate::error::{Error, Result};

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

    /// Releases `name` if it is still bound to actor `id`; says whether it was.
    pub(crate) fn release(&self, name: &str, id: ActorId) -> bool {
        let mut names = self.names();
        let bound = names.get(name).is_some_and(|c| c.meta().id == id);
        if bound {
            names.remove(name);
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
