//! What a handler runs with: the [`HandlerCx`] the runner passes to the generated
//! [`Actor::handle`](super::Actor::handle), and the one guarded runner every method goes
//! through.
//!
//! For each message the generated code calls one of four small helpers in `pulsing::__private`
//! (`call_sync`, `call_async`, `stream_sync`, `stream_async`); all four end here. The runner
//! skips a call whose caller has gone (timed out or dropped its future), runs the method under
//! `catch_unwind`, and hands the result to the reply slot ([`Answer`]): the value to a call's
//! slot, the stream to a [pump](super::pump). A panic becomes [`Error::Panicked`] for the caller
//! and a [`Panic`] for the runner.

use std::any::Any;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};

use futures_core::Stream;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::meta::ActorMeta;
use super::oneshot::Ticket;
use super::panic::{panic_message, Handled, Panic};
use super::pump::spawn_pump;
use super::reply::{Reply, StreamReply};
use crate::error::Error;

/// What a handler can see of the actor it runs in.
#[derive(Debug)]
pub struct HandlerCx<'a> {
    pub(crate) meta: &'a ActorMeta,
    /// Cancelled when the system shuts down: ends the streams the actor's methods opened.
    pub(crate) shutdown: &'a CancellationToken,
}

/// A reply slot a handler's result of type `V` goes into: a call's [`Reply`] (the value), or a
/// stream's [`StreamReply`] (the stream, handed to a pump).
pub(crate) trait Answer<V> {
    /// Whether the caller has gone: the method is not run.
    fn is_abandoned(&self) -> bool;
    /// The sweeper's handle on the call's long deadline, if it has one.
    fn ticket(&self) -> Option<Ticket> {
        None
    }
    /// Delivers what the method returned.
    fn deliver(self, cx: &HandlerCx<'_>, method: &'static str, value: V);
    /// Fails the call (the method panicked).
    fn fail(self, error: Error);
}

impl<T> Answer<T> for Reply<T> {
    fn is_abandoned(&self) -> bool {
        Reply::is_abandoned(self)
    }

    fn ticket(&self) -> Option<Ticket> {
        Reply::ticket(self)
    }

    fn deliver(self, _cx: &HandlerCx<'_>, _method: &'static str, value: T) {
        self.send(Ok(value));
    }

    fn fail(self, error: Error) {
        self.send(Err(error));
    }
}

impl<S> Answer<S> for StreamReply<S::Item>
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    fn is_abandoned(&self) -> bool {
        StreamReply::is_abandoned(self)
    }

    fn deliver(self, cx: &HandlerCx<'_>, method: &'static str, stream: S) {
        let shutdown = cx.shutdown.clone();
        spawn_pump(
            stream,
            self.into_sender(),
            shutdown,
            cx.meta.label(),
            method,
        );
    }

    fn fail(self, error: Error) {
        StreamReply::fail(self, error);
    }
}

impl HandlerCx<'_> {
    /// Runs a synchronous method for the caller behind `slot`.
    pub(crate) fn run<V, R: Answer<V>>(
        &self,
        method: &'static str,
        slot: R,
        f: impl FnOnce() -> V,
    ) -> Handled {
        if slot.is_abandoned() {
            return Ok(());
        }
        self.settle(method, slot, catch_unwind(AssertUnwindSafe(f)))
    }

    /// Runs an `async` method to completion on the actor's task for the caller behind `slot`.
    pub(crate) async fn run_async<V, R: Answer<V>, F: Future<Output = V>>(
        &self,
        method: &'static str,
        slot: R,
        f: impl FnOnce() -> F,
    ) -> Handled {
        if slot.is_abandoned() {
            return Ok(());
        }
        let mut running = std::pin::pin!(AssertUnwindSafe(async move { f().await }).catch_unwind());
        // While the method waits, the sweeper may need to expire the call (a deadlock): show
        // it the call's ticket, if the call has a long deadline. Most methods finish in one go
        // and never touch that lock.
        let mut shown = false;
        let outcome = poll_fn(|task| {
            let poll = running.as_mut().poll(task);
            if poll.is_pending() && !shown {
                shown = true;
                if let Some(ticket) = slot.ticket() {
                    *self.meta.running() = Some(ticket);
                }
            }
            poll
        })
        .await;
        if shown {
            self.meta.running().take();
        }
        self.settle(method, slot, outcome)
    }

    /// Hands what the method returned (or its panic) to `slot`.
    fn settle<V, R: Answer<V>>(
        &self,
        method: &'static str,
        slot: R,
        outcome: std::thread::Result<V>,
    ) -> Handled {
        match outcome {
            Ok(value) => {
                slot.deliver(self, method, value);
                Ok(())
            }
            Err(payload) => {
                let (error, panic) = self.panicked(method, &*payload);
                slot.fail(error);
                Err(panic)
            }
        }
    }

    fn panicked(&self, method: &'static str, payload: &(dyn Any + Send)) -> (Error, Panic) {
        let message = panic_message(payload);
        let error = Error::Panicked {
            actor: self.meta.label(),
            method: method.to_owned(),
            message: message.clone(),
        };
        (error, Panic { method, message })
    }
}
