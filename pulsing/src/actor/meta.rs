//! The facts about one actor that do not depend on its type: id, type name, name, settings, and
//! how errors and logs name it (`Counter#3 "counter"`).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::task::AbortHandle;

use super::interface::Interface;
use super::oneshot::Ticket;
use crate::error::Error;

/// A process-unique actor number, shown in error messages as `Counter#3`.
pub type ActorId = u64;

/// The facts about one actor that do not depend on its type.
#[derive(Debug)]
pub(crate) struct ActorMeta {
    pub(crate) id: ActorId,
    pub(crate) type_name: &'static str,
    /// `A::interface()`, or a hosted actor's own (see `hosted.rs`).
    pub(crate) interface: &'static Interface,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) call_timeout: Option<Duration>,
    /// Deadlines at least this long are kept by the system's sweeper (`sweep::swept_from`).
    pub(crate) swept_from: Duration,
    pub(crate) stream_buffer: usize,
    pub(crate) stopping: AtomicBool,
    pub(crate) abort: OnceLock<AbortHandle>,
    /// The ticket of the swept call whose `async` handler is waiting, for the sweeper (set by
    /// `HandlerCx::run_async` only once the handler returned `Pending`).
    pub(crate) running: Mutex<Option<Ticket>>,
}

impl ActorMeta {
    /// The slot of the running call's ticket.
    pub(crate) fn running(&self) -> MutexGuard<'_, Option<Ticket>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

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

/// Anything that knows which actor it is. A peer's reply slot keeps one (a cell, type-erased) so
/// that, dropped unanswered, it can name the actor in its `Stopped` answer; the label is only
/// formatted then, never on the way of a call.
pub(crate) trait HasMeta: Send + Sync + 'static {
    fn meta(&self) -> &ActorMeta;
}
