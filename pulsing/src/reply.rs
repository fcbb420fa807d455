//! Reply slots: how a handler's result travels back to whoever made the call.
//!
//! A message carries its reply slot. Typed callers get the value itself (no copy, no encoding);
//! by-name callers get it converted to a [`Value`]; `tell` needs no answer at all. All three end
//! in the same handler: there is one call path.

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::value::{to_value, Value};
use crate::{Error, Result};

/// Where the single answer of a call goes.
#[derive(Debug)]
pub enum Reply<T> {
    /// A typed caller in this process.
    Typed(oneshot::Sender<Result<T>>),
    /// A by-name caller, which wants a [`Value`].
    Value(oneshot::Sender<Result<Value>>),
    /// Fire-and-forget: nobody waits. Errors are only logged.
    Ignore,
}

impl<T: Serialize> Reply<T> {
    /// Whether the caller has gone (timed out or dropped its future). Such a call is skipped.
    pub fn is_abandoned(&self) -> bool {
        match self {
            Reply::Typed(tx) => tx.is_closed(),
            Reply::Value(tx) => tx.is_closed(),
            Reply::Ignore => false,
        }
    }

    /// Delivers the result. A caller that has gone away is not an error.
    pub fn send(self, result: Result<T>) {
        match self {
            Reply::Typed(tx) => {
                let _ = tx.send(result);
            }
            Reply::Value(tx) => {
                let _ = tx.send(result.and_then(|v| to_value(&v).map_err(Error::from)));
            }
            Reply::Ignore => {
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
pub enum StreamReply<T> {
    /// A typed consumer in this process.
    Typed(mpsc::Sender<StreamEvent<T>>),
    /// A by-name consumer, which wants [`Value`] items.
    Value(mpsc::Sender<StreamEvent<Value>>),
}

impl<T> StreamReply<T> {
    /// Whether the consumer has gone. Such a call is skipped.
    pub fn is_abandoned(&self) -> bool {
        match self {
            StreamReply::Typed(tx) => tx.is_closed(),
            StreamReply::Value(tx) => tx.is_closed(),
        }
    }

    /// Fails the stream before it opened (the only event, so the buffer always has room).
    pub(crate) fn fail(self, error: Error) {
        match self {
            StreamReply::Typed(tx) => {
                let _ = tx.try_send(StreamEvent::Error(error));
            }
            StreamReply::Value(tx) => {
                let _ = tx.try_send(StreamEvent::Error(error));
            }
        }
    }
}
