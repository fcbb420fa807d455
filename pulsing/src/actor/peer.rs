//! The peer reply slot: where the answer to a call served for another node goes.
//!
//! A peer's call costs no task and no future on the serving side: the connection's reader puts
//! the message in the mailbox with a [`PeerReply`] in its reply slot, and the actor's thread
//! encodes its answer into the `Response` frame and queues it for the connection's writer —
//! reader → actor → writer, one wake-up each. A typed answer of more than
//! [`SharedBytes::INLINE`] bytes is encoded straight into the frame
//! ([`TypedResponseRef`](crate::wire::TypedResponseRef)), with no buffer of its own.
//!
//! This file is the one place where `actor/` imports from a layer above it (`transport/`, and
//! `wire/` for the frame): the slot writes into the connection so that nothing has to wait for
//! the answer. ARCHITECTURE.md names this exception.

use std::sync::Arc;

use serde::Serialize;

use super::meta::HasMeta;
use crate::error::{Error, Result};
use crate::transport::Connection;
use crate::wire::{Payload, SharedBytes, TypedResponseRef};

/// Where the answer to a call served for a peer goes: straight to that peer's connection, so no
/// task or future waits for it. Only the runtime makes one. Dropped without an answer (its
/// actor stopped with the call still queued), it answers that the actor stopped.
pub struct PeerReply {
    conn: Arc<Connection>,
    id: u64,
    /// The actor, to name it if the call is dropped unanswered.
    actor: Arc<dyn HasMeta>,
    done: bool,
}

impl std::fmt::Debug for PeerReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerReply")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PeerReply {
    /// The answer to `conn`'s call `id` to `actor` (registered with `Connection::expect`).
    pub(crate) fn new(conn: Arc<Connection>, id: u64, actor: Arc<dyn HasMeta>) -> Self {
        PeerReply {
            conn,
            id,
            actor,
            done: false,
        }
    }

    /// Whether the peer cancelled the call (or the connection is gone).
    pub(crate) fn is_abandoned(&self) -> bool {
        !self.conn.is_serving(self.id)
    }

    /// Writes the answer to the peer.
    pub(crate) fn send(mut self, result: Result<Payload>) {
        self.done = true;
        self.conn.answer(self.id, result);
    }

    /// Writes a typed answer to the peer: a small value goes inline like any payload, a larger
    /// one is encoded straight into the response frame (one copy of it less).
    pub(crate) fn send_typed<T: Serialize>(mut self, result: Result<T>) {
        let value = match result {
            Ok(value) => value,
            Err(e) => return self.send(Err(e)),
        };
        match postcard::experimental::serialized_size(&value) {
            Ok(size) if size > SharedBytes::INLINE => {
                self.done = true;
                let response = TypedResponseRef {
                    id: self.id,
                    value: &value,
                    size,
                };
                self.conn.answer_with(self.id, &response);
            }
            _ => self.send(
                SharedBytes::encode(&value)
                    .map(Payload::Typed)
                    .map_err(|e| Error::Codec(e.to_string())),
            ),
        }
    }

    /// Lets go without answering: the call waits in a backlog and will get a new `PeerReply`.
    pub(crate) fn defer(mut self) {
        self.done = true;
    }
}

impl Drop for PeerReply {
    fn drop(&mut self) {
        if !self.done {
            self.conn
                .reply_dropped(self.id, self.actor.meta().stopped_error());
        }
    }
}
