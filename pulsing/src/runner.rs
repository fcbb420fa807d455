//! The actor loop: one task per actor, one message at a time.
//!
//! The loop owns the actor's state, so handlers need no locks. It runs `on_start`, then takes
//! messages from the bounded mailbox in order until asked to stop; a panic is turned over to the
//! [`Supervisor`]. On the way out it runs `on_stop`, releases the name, and closes and drains the
//! mailbox so that every queued caller gets [`Error::Stopped`](crate::Error::Stopped) at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::__private::{hook, HandlerCx, Panic};
use crate::actor::Actor;
use crate::actor_ref::{Cell, Envelope};
use crate::supervision::Supervisor;
use crate::system::SystemInner;

/// Runs one actor until it stops. `factory` yields its state: once, or again after each restart.
pub(crate) async fn run<A, F>(
    cell: Arc<Cell<A>>,
    mut factory: F,
    mut supervisor: Supervisor,
    system: Arc<SystemInner>,
) where
    A: Actor,
    F: FnMut() -> Option<A>,
{
    let _closing = Closing {
        cell: &cell,
        system: &system,
    };
    let cx = HandlerCx {
        meta: &cell.meta,
        system: &system,
    };
    let mut current = factory();
    let mut started = false;
    while let Some(actor) = current.as_mut() {
        if !started {
            match hook("on_start", actor.on_start()).await {
                Ok(()) => started = true,
                Err(panic) => {
                    current = recover(&cx, &mut supervisor, &mut factory, panic);
                    continue;
                }
            }
        }
        let Some(envelope) = cell.mailbox.recv().await else {
            break;
        };
        if cell.meta.stopping.load(Ordering::Acquire) {
            break;
        }
        let Envelope::Message(msg) = envelope else {
            continue;
        };
        if let Err(panic) = actor.handle(msg, &cx).await {
            current = recover(&cx, &mut supervisor, &mut factory, panic);
            started = false;
        }
    }
    if let (Some(actor), true) = (current.as_mut(), started) {
        if let Err(panic) = hook("on_stop", actor.on_stop()).await {
            tracing::warn!(actor = %cell.meta.label(), message = %panic.message, "on_stop panicked");
        }
    }
    tracing::debug!(actor = %cell.meta.label(), "stopped");
}

/// Closes an actor's books when its loop ends, however it ends (returned or aborted by a
/// shutdown): no more messages, name released, and every queued caller told `Stopped`.
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
    }
}

/// Logs a panic and asks the supervisor for a fresh state (`None`: stop).
fn recover<A, F: FnMut() -> Option<A>>(
    cx: &HandlerCx<'_>,
    supervisor: &mut Supervisor,
    factory: &mut F,
    panic: Panic,
) -> Option<A> {
    let restart = supervisor.should_restart();
    tracing::warn!(
        actor = %cx.meta.label(),
        method = panic.method,
        message = %panic.message,
        restart,
        "handler panicked"
    );
    if restart {
        factory()
    } else {
        None
    }
}
