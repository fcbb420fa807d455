//! Reply slots: how a handler's result travels back to whoever made the call.
//!
//! A message carries its reply slot: a oneshot sender for the typed result (none for `tell`), or a
//! bounded channel for a stream's items. Callers that want something else (a by-name caller wants
//! a [`Value`](crate::Value), a remote caller wants bytes) convert the typed result on their side,
//! so every call, whoever makes it, goes through the same message and the same handler. A slot is
//! one pointer wide, which keeps mailbox slots small.

use tokio::sync::{mpsc, oneshot};

use crate::{Error, Result};

/// Where the single answer of a call goes; empty for fire-and-forget.
#[derive(Debug)]
pub struct Reply<T>(Option<oneshot::Sender<Result<T>>>);

impl<T> Reply<T> {
    /// A slot answering `tx`.
    pub fn to(tx: oneshot::Sender<Result<T>>) -> Self {
        Reply(Some(tx))
    }

    /// A slot for a told call: nobody waits, errors are only logged.
    pub fn ignore() -> Self {
        Reply(None)
    }

    /// Whether the caller has gone (timed out or dropped its future). Such a call is skipped.
    pub fn is_abandoned(&self) -> bool {
        self.0.as_ref().is_some_and(|tx| tx.is_closed())
    }

    /// Delivers the result. A caller that has gone away is not an error.
    pub fn send(self, result: Result<T>) {
        match self.0 {
            Some(tx) => {
                let _ = tx.send(result);
            }
            None => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "a told (fire-and-forget) call failed");
                }
            }
        }
    }
}

/// One event of a stream reply. A stream always ends with `End` or `Error`; a channel that closes
/// without either means the actor stopped mid-stream.
#[derive(Debug)]
pub enum StreamEvent<T> {
    /// The actor ran the method and the stream exists.
    Opened,
    /// The next item.
    Item(T),
    /// The stream finished normally.
    End,
    /// The stream failed; nothing follows.
    Error(Error),
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

    /// Fails the stream before it opened (the only event, so the buffer always has room).
    pub(crate) fn fail(self, error: Error) {
        let _ = self.0.try_send(StreamEvent::Error(error));
    }

    pub(crate) fn into_sender(self) -> mpsc::Sender<StreamEvent<T>> {
        self.0
    }
}
