//! Reply slots: how a handler's result travels back to whoever made the call.
//!
//! A message carries its reply slot: a oneshot sender for the typed result (none for `tell`), or a
//! bounded channel for a stream's items. Callers that want something else (a by-name caller wants
//! a [`Value`](crate::Value), a remote caller wants bytes) convert the typed result on their side,
//! so every call, whoever makes it, goes through the same message and the same handler. A call
//! served for a peer is the exception: its slot converts the result and hands it straight to the
//! peer's connection ([`PeerReply`]), so nothing has to wait for it.
//!
//! A by-name or bytes caller says where the answer goes with a [`ReplyTo`]; the generated code
//! builds the message's slot from it and gives back what the caller awaits ([`Pending`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot as tokio_oneshot};

use super::oneshot;
use super::peer::PeerReply;
use super::stream::{ConvertedStream, StreamEvent};
use super::sweep::SweepClock;
use crate::error::{Error, Result};
use crate::value::Value;

/// A boxed, sendable future (the by-name path only; typed calls never box).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the answer of a by-name call, or of a typed call from another node, goes: to a caller
/// that awaits one answer, to a stream, or straight to a peer's connection.
#[derive(Debug)]
pub enum ReplyTo {
    /// One answer, awaited through [`Pending::Call`].
    Call,
    /// A stream, with this much buffering; `actor` names the actor in errors.
    Stream {
        /// Items buffered between producer and consumer.
        buffer: usize,
        /// How errors name the actor.
        actor: Arc<str>,
    },
    /// One answer, for a peer: it goes straight to the peer's connection (made by the runtime
    /// when it serves a peer's call; the call then yields [`Pending::Responded`]).
    Peer(PeerReply),
}

/// What a by-name or bytes caller awaits once its message is in the mailbox, with the answer
/// converted to `O` (a [`Value`], or bytes). `Call` yields `None` if the actor stopped before
/// answering.
pub enum Pending<O> {
    /// The answer.
    Call(BoxFuture<'static, Option<Result<O>>>),
    /// The stream, once open.
    Stream(BoxFuture<'static, Result<ConvertedStream<O>>>),
    /// Nothing to wait for: the answer goes where [`ReplyTo::Peer`] said.
    Responded,
}

/// What a by-name caller awaits: answers as [`Value`]s.
pub type DynPending = Pending<Value>;

impl<O> std::fmt::Debug for Pending<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pending::Call(_) => "Pending::Call",
            Pending::Stream(_) => "Pending::Stream",
            Pending::Responded => "Pending::Responded",
        })
    }
}

/// Where the single answer of a call goes; empty for fire-and-forget.
pub struct Reply<T>(Slot<T>);

enum Slot<T> {
    Ignore,
    Local(tokio_oneshot::Sender<Result<T>>),
    /// A typed call in this process (its deadline may be kept by the sweeper).
    Call(super::oneshot::Sender<Result<T>>),
    Peer(Box<dyn ToPeer<T>>),
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Slot::Ignore => "Reply::Ignore",
            Slot::Local(_) | Slot::Call(_) => "Reply::Local",
            Slot::Peer(_) => "Reply::Peer",
        })
    }
}

impl<T> Reply<T> {
    /// A slot answering `tx`.
    pub fn to(tx: tokio_oneshot::Sender<Result<T>>) -> Self {
        Reply(Slot::Local(tx))
    }

    /// A slot answering a typed call made in this process.
    pub(crate) fn call(tx: oneshot::Sender<Result<T>>) -> Self {
        Reply(Slot::Call(tx))
    }

    /// A slot for a told call: nobody waits, errors are only logged.
    pub fn ignore() -> Self {
        Reply(Slot::Ignore)
    }

    /// A slot answering a peer's call: `deliver` writes the result to the peer's connection.
    pub(crate) fn to_peer(respond: PeerReply, deliver: fn(PeerReply, Result<T>)) -> Self
    where
        T: 'static,
    {
        Reply(Slot::Peer(Box::new(ToConnection { respond, deliver })))
    }

    /// The same slot, keeping `guard` alive until the answer is sent (or the slot dropped): a
    /// hosted actor holds one unit of its room per call in hand this way.
    pub(crate) fn holding(self, guard: impl Send + Sync + 'static) -> Self
    where
        T: Send + 'static,
    {
        Reply(Slot::Peer(Box::new(Holding { reply: self, guard })))
    }

    /// Whether the caller has gone (timed out or dropped its future). Such a call is skipped.
    pub fn is_abandoned(&self) -> bool {
        match &self.0 {
            Slot::Ignore => false,
            Slot::Local(tx) => tx.is_closed(),
            Slot::Call(tx) => tx.is_closed(),
            Slot::Peer(to) => to.is_abandoned(),
        }
    }

    /// Shows the system's sweeper the long deadline of a queued call, if it has one (called
    /// through [`Actor::sweep`](super::Actor::sweep) under the mailbox's lock).
    #[doc(hidden)]
    pub fn sweep(&self, clock: &mut SweepClock)
    where
        T: Send,
    {
        if let Slot::Call(tx) = &self.0 {
            tx.sweep(clock);
        }
    }

    /// The sweeper's handle on the call's long deadline, if it has one (for a handler that
    /// waits).
    pub(crate) fn ticket(&self) -> Option<super::oneshot::Ticket> {
        match &self.0 {
            Slot::Call(tx) => tx.ticket(),
            _ => None,
        }
    }

    /// Delivers the result. A caller that has gone away is not an error.
    pub fn send(self, result: Result<T>) {
        match self.0 {
            Slot::Local(tx) => {
                let _ = tx.send(result);
            }
            Slot::Call(tx) => tx.send(result),
            Slot::Peer(to) => to.send(result),
            Slot::Ignore => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "a told (fire-and-forget) call failed");
                }
            }
        }
    }
}

/// A reply slot behind a box: a peer's (with the conversion of `T` erased), or one holding a
/// guard.
trait ToPeer<T>: Send + Sync {
    fn is_abandoned(&self) -> bool;
    fn send(self: Box<Self>, result: Result<T>);
}

struct ToConnection<T> {
    respond: PeerReply,
    deliver: fn(PeerReply, Result<T>),
}

impl<T> ToPeer<T> for ToConnection<T> {
    fn is_abandoned(&self) -> bool {
        self.respond.is_abandoned()
    }

    fn send(self: Box<Self>, result: Result<T>) {
        (self.deliver)(self.respond, result);
    }
}

struct Holding<T, G> {
    reply: Reply<T>,
    guard: G,
}

impl<T: Send, G: Send + Sync> ToPeer<T> for Holding<T, G> {
    fn is_abandoned(&self) -> bool {
        self.reply.is_abandoned()
    }

    fn send(self: Box<Self>, result: Result<T>) {
        let Holding { reply, guard } = *self;
        reply.send(result);
        drop(guard);
    }
}

/// Where the items of a streaming call go.
#[derive(Debug)]
pub struct StreamReply<T>(mpsc::Sender<StreamEvent<T>>);

impl<T> StreamReply<T> {
    /// A slot feeding `tx`.
    pub fn to(tx: mpsc::Sender<StreamEvent<T>>) -> Self {
        StreamReply(tx)
    }

    /// Whether the consumer has gone. Such a call is skipped.
    pub fn is_abandoned(&self) -> bool {
        self.0.is_closed()
    }

    /// A stream's opening keeps its deadline on the caller's side: nothing for the sweeper.
    #[doc(hidden)]
    pub fn sweep(&self, _clock: &mut SweepClock) {}

    /// Fails the stream before it opened (the only event, so the buffer always has room).
    pub(crate) fn fail(self, error: Error) {
        let _ = self.0.try_send(StreamEvent::Error(error));
    }

    pub(crate) fn into_sender(self) -> mpsc::Sender<StreamEvent<T>> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    /// Reply slots travel inside messages between threads, and the Python bridge keeps them in
    /// objects shared across threads.
    #[test]
    fn reply_slots_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Reply<crate::value::Value>>();
        check::<super::StreamReply<crate::value::Value>>();
    }
}
