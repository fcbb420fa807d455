//! The actor loop: one task per actor, one message at a time.
//!
//! The loop owns the actor's state, so handlers need no locks. It runs `on_start`, then takes
//! messages from the bounded mailbox in order until asked to stop; a panic is turned over to the
//! [`Supervisor`]. On the way out it runs `on_stop`. The system closes the actor's books around
//! this loop (name released, mailbox closed and drained so that every queued caller gets
//! [`Error::Stopped`](crate::Error::Stopped) at once), however the loop ends: see `system.rs`.

use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::cell::{Cell, Envelope};
use super::handler::HandlerCx;
use super::mailbox::Received;
use super::panic::{hook, Panic};
use super::supervision::Supervisor;
use super::Actor;

/// Runs one actor until it stops. `factory` yields its state: once, or again after each restart.
/// `shutdown` is the system's: streams the actor opens end when it is cancelled.
pub(crate) async fn run<A, F>(
    cell: &Cell<A>,
    mut factory: F,
    mut supervisor: Supervisor,
    shutdown: &CancellationToken,
) where
    A: Actor,
    F: FnMut() -> Option<A>,
{
    let cx = HandlerCx {
        meta: &cell.meta,
        shutdown,
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
        let envelope = match cell.mailbox.next().await {
            Some(Received::Message(envelope)) => envelope,
            Some(Received::Refill) => {
                cell.refill();
                continue;
            }
            None => break,
        };
        if cell.meta.stopping.load(Ordering::Acquire) {
            break;
        }
        let msg = match envelope {
            Envelope::Message(msg) => msg,
            Envelope::Stop => continue,
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
