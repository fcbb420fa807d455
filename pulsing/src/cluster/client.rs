//! The client side of calls to actors on other nodes: a remote [`ActorRef`](crate::ActorRef) or
//! [`DynRef`](crate::DynRef) holds a [`PeerActor`] and sends its calls over the connection to the
//! actor's node — typed calls as a postcard-encoded argument tuple, by-name calls as
//! [`Args`].
//!
//! The caller's task encodes the request itself, from borrowed names, straight into the
//! connection's outbox (see [`transport`](crate::transport)); the deadline travels with the
//! request and is enforced by the caller (the `handle/` layer), which cancels the
//! call when it expires. This file sets no timer.
//!
//! Streams cross the wire under a credit window: the request carries the first window
//! ([`stream_window`]: 32 × the stream buffer, at least 1,024 items), the consumer grants more
//! each time it has taken half a
//! window, so a slow consumer holds back the remote producer; the consumer's task takes the
//! items straight from the batches the reader received ([`items`](super::items)). Dropping the
//! consumer sends `Cancel`.
//!
//! The meta-methods every node answers for its actors, [`DESCRIBE`] and [`STOP`], are methods of
//! the client ([`PeerActor::describe`], [`PeerActor::stop`]).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Sleep;

use super::gossip::Members;
use super::items::{explain, PeerItems};
use super::{DESCRIBE, STOP};
use crate::actor::interface::Interface;
use crate::actor::meta::ActorId;
use crate::actor::stream::ReplyStream;
use crate::error::{Error, Result};
use crate::handle::deadline::poll_timer;
use crate::transport::{
    Answer, Attempt, Connection, OutArgs, Outcome, Outgoing, Transport, SWEPT_DEADLINE,
};
use crate::value::{Args, Value};
use crate::wire::{NoArgs, NodeId, Payload, SharedBytes};

/// An actor on another node, as seen from here: one instance, found by name and then addressed
/// by name *and* id, so a name now bound to another actor (stopped, then respawned) answers
/// `Stopped` instead of reaching the newcomer.
///
/// A lost connection is not the end: if gossip shows the actor's node live again and still
/// holding this actor (a paused process thawed, a partition healed), the next call dials it
/// again; the node is the same process and its actors never stopped.
#[derive(Debug)]
pub(crate) struct PeerActor {
    /// The connection the ref was resolved over; see [`PeerActor::conn`].
    pub(crate) first: Arc<Connection>,
    /// The connection that replaced `first` once it was lost.
    pub(crate) redialed: Mutex<Option<Arc<Connection>>>,
    /// To dial the node again.
    pub(crate) transport: Weak<Transport>,
    pub(crate) name: String,
    pub(crate) id: ActorId,
    /// The node holding it.
    pub(crate) node: NodeId,
    pub(crate) type_name: String,
    /// For a typed handle: the type the caller expects (its key travels with typed calls).
    pub(crate) expect: Option<&'static Interface>,
    /// Set once a call answered `Stopped`: the actor is gone for good.
    pub(crate) gone: AtomicBool,
    /// The cluster view, to tell whether the name still maps to this actor.
    pub(crate) view: Option<tokio::sync::watch::Receiver<Members>>,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) stream_buffer: usize,
}

impl PeerActor {
    /// `Counter#3 "counter" @ 127.0.0.1:9000`.
    pub(crate) fn label(&self) -> String {
        format!(
            "{}#{} {:?} @ {}",
            self.type_name, self.id, self.name, self.first.peer_addr
        )
    }

    /// The current connection to the actor's node: the first one while it is open (borrowed:
    /// no lock and no reference count touched per call on that path), else the one dialed
    /// since, which may be closed too.
    pub(crate) fn conn(&self) -> Cow<'_, Arc<Connection>> {
        if !self.first.is_closed() {
            return Cow::Borrowed(&self.first);
        }
        let redialed = self.redialed.lock().unwrap_or_else(|e| e.into_inner());
        Cow::Owned(redialed.as_ref().unwrap_or(&self.first).clone())
    }

    /// Whether the connection has room for one more call in flight.
    pub(crate) fn has_room(&self) -> bool {
        self.conn().has_room()
    }

    /// The connection for the next call. Once the current one is lost, it dials the node
    /// again, but only when gossip shows the node live and still holding this actor: a node
    /// that is dead (or not yet known to be alive again) fails the call at once with
    /// `PeerLost` through the closed connection, instead of a dial that waits for a hung host.
    async fn connection(&self) -> Cow<'_, Arc<Connection>> {
        let conn = self.conn();
        if !conn.is_closed() || self.gone.load(Ordering::Relaxed) || !self.listed() {
            return conn;
        }
        // Boxed: the dial's state would otherwise make every call's future larger.
        Cow::Owned(Box::pin(self.redial(conn.into_owned())).await)
    }

    async fn redial(&self, conn: Arc<Connection>) -> Arc<Connection> {
        let Some(transport) = self.transport.upgrade() else {
            return conn;
        };
        match transport.connect(&self.first.peer_addr).await {
            // Another node at that address (the process was replaced): its answers say the
            // actor is `Stopped`, as they should.
            Ok(fresh) => {
                tracing::info!(actor = %self.label(), "reconnected to the actor's node");
                *self.redialed.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
                fresh
            }
            Err(e) => {
                tracing::debug!(actor = %self.label(), error = %e, "could not reconnect");
                conn
            }
        }
    }

    /// Whether gossip shows the actor's node live and holding this actor under its name.
    fn listed(&self) -> bool {
        self.view.as_ref().is_some_and(|view| {
            super::directory::holds(&view.borrow(), self.node, &self.name, self.id)
        })
    }

    /// The error for a call to `method` whose deadline `after` passed.
    pub(crate) fn timeout_error(&self, method: &str, after: Duration) -> Error {
        Error::Timeout {
            actor: self.label(),
            method: method.to_owned(),
            after,
        }
    }

    /// Whether the actor is alive as far as this node knows: no call was answered `Stopped`,
    /// gossip shows its name bound to it, and the connection to its node is up (or, lost, can
    /// be dialed again: gossip shows the node live).
    pub(crate) fn is_alive(&self) -> bool {
        !self.gone.load(Ordering::Relaxed)
            && match &self.view {
                Some(_) => self.listed(),
                None => !self.conn().is_closed(),
            }
    }

    /// Notes what an answer tells about the actor; names the expected type in a mismatch.
    fn checked(&self, outcome: Outcome) -> Outcome {
        match outcome {
            Outcome::Answered(Err(e)) => {
                if matches!(e, Error::Stopped { .. }) {
                    self.gone.store(true, Ordering::Relaxed);
                }
                Outcome::Answered(Err(explain(self.expect, e)))
            }
            other => other,
        }
    }

    /// Whether `other` is the same actor over the same connection.
    pub(crate) fn is_same(&self, other: &PeerActor) -> bool {
        Arc::ptr_eq(&self.first, &other.first) && self.name == other.name && self.id == other.id
    }

    /// Sends a call (`typed`: checked against the actor's type by the peer) and waits for its
    /// outcome. `timeout` travels with the request; enforcing it is the caller's job (see
    /// `handle/deadline.rs`).
    pub(crate) async fn call<X: Serialize>(
        &self,
        method: &str,
        typed: bool,
        args: OutArgs<X>,
        timeout: Option<Duration>,
    ) -> Outcome {
        let conn = self.connection().await;
        let outcome = conn.call(self.outgoing(method, typed, args, timeout)).await;
        self.checked(outcome)
    }

    /// [`call`](Self::call) without waiting to send: sent at once over the open connection
    /// when it has room, so none of the send path's state stays in the caller's future.
    /// `MustWait` gives the arguments back (the connection is lost, or full now): then
    /// [`call`](Self::call) with them.
    pub(crate) fn try_call<X: Serialize>(
        &self,
        method: &str,
        typed: bool,
        args: OutArgs<X>,
        timeout: Option<Duration>,
    ) -> Attempt<'_, X> {
        if self.first.is_closed() {
            return Attempt::MustWait(args);
        }
        match self
            .first
            .try_call(self.outgoing(method, typed, args, timeout))
        {
            Attempt::Done(outcome) => Attempt::Done(self.checked(outcome)),
            attempt => attempt,
        }
    }

    /// A call's outcome as its result: `Expired` becomes a `Timeout` after `timeout`.
    pub(crate) fn result(
        &self,
        method: &str,
        timeout: Option<Duration>,
        outcome: Outcome,
    ) -> Result<Payload> {
        match outcome {
            Outcome::Answered(result) => result,
            Outcome::Expired => Err(self.timeout_error(method, timeout.unwrap_or_default())),
        }
    }

    /// `$describe`: the actor's type, id and interface, as its node sees them. Fails once the
    /// node no longer knows the actor (or the connection is gone).
    pub(crate) async fn describe(&self) -> Result<Value> {
        self.meta_call(DESCRIBE).await
    }

    /// `$stop`: asks the actor's node to stop it, in the background (returns at once).
    pub(crate) fn stop(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move { me.meta_call(STOP).await });
    }

    /// A meta-call, with no deadline.
    async fn meta_call(&self, method: &str) -> Result<Value> {
        match self
            .call::<NoArgs>(
                method,
                false,
                OutArgs::Payload(Payload::Dynamic(Args::new())),
                None,
            )
            .await
        {
            Outcome::Answered(result) => value_reply(result?),
            // Only a call with a deadline expires.
            Outcome::Expired => Err(self.timeout_error(method, Duration::ZERO)),
        }
    }

    /// Sends a call without waiting for its result.
    pub(crate) async fn tell(&self, method: &str, args: Result<SharedBytes>) -> Result<()> {
        let typed = Payload::Typed(args?);
        self.connection()
            .await
            .tell(self.outgoing(method, true, OutArgs::<NoArgs>::Payload(typed), None))
            .await
    }

    /// A request to this actor; `typed` requests are checked against its type by the peer.
    fn outgoing<'a, X>(
        &'a self,
        method: &'a str,
        typed: bool,
        args: OutArgs<X>,
        deadline: Option<Duration>,
    ) -> Outgoing<'a, X> {
        Outgoing {
            actor: &self.name,
            actor_id: Some(self.id),
            expect_type: if typed {
                self.expect.map(|i| i.key)
            } else {
                None
            },
            method,
            args,
            deadline,
        }
    }

    /// Opens a remote stream; its items arrive typed, through the same [`ReplyStream`] as local
    /// ones. `timeout` travels with the request; the caller enforces it on the opening.
    pub(crate) async fn stream<T: DeserializeOwned + Send + 'static>(
        &self,
        method: &str,
        args: Payload,
        expect_type: bool,
        decode: fn(Payload) -> Result<T>,
        timeout: Option<Duration>,
    ) -> Result<ReplyStream<T>> {
        // The first window of credit travels with the request itself.
        let window = stream_window(self.stream_buffer);
        let conn = self.connection().await;
        let (id, incoming) = conn
            .open_stream(
                self.outgoing(
                    method,
                    expect_type,
                    OutArgs::<NoArgs>::Payload(args),
                    timeout,
                ),
                window,
            )
            .await?;
        let items = PeerItems::new(conn.into_owned(), id, incoming, decode, self.expect, window);
        ReplyStream::from_events(Box::pin(items), Arc::from(self.label()))
            .opened()
            .await
    }
}

/// The credit window of a peer's stream: the items the producer may send before the consumer
/// has taken any. A credit round trip costs tens of microseconds here (wake-ups on both sides),
/// so the window must cover what the producer makes meanwhile: 256 items held a 100k-item
/// stream to 1.6–1.7 M items/s (0.43–0.48× a raw WebSocket stream), 1,024 gave 2.6–3.0 M
/// (0.75–0.81×) in alternating runs. It bounds what waits, received and not yet taken, in the
/// consumer: with large items, lower `Builder::stream_buffer`.
pub(crate) fn stream_window(stream_buffer: usize) -> u32 {
    u32::try_from(stream_buffer.saturating_mul(32).max(1024)).unwrap_or(u32::MAX)
}

/// Encodes a typed argument tuple (small ones without allocating).
pub(crate) fn encode_args<Args: Serialize>(args: &Args) -> Result<SharedBytes> {
    SharedBytes::encode(args).map_err(|e| Error::Codec(e.to_string()))
}

/// A call sent to a peer ([`PeerActor::try_call`]), waiting for its outcome: a short deadline
/// (under [`SWEPT_DEADLINE`]) is kept by a timer here, a long one by the connection. Notes what
/// the answer tells about the actor. Dropping it before the outcome cancels the call on the
/// peer.
#[derive(Debug)]
pub(crate) struct SentCall<'a> {
    peer: &'a PeerActor,
    answer: Answer<'a>,
    timeout: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<'a> SentCall<'a> {
    /// The actor called.
    pub(crate) fn peer(&self) -> &'a PeerActor {
        self.peer
    }

    pub(crate) fn new(peer: &'a PeerActor, answer: Answer<'a>, timeout: Option<Duration>) -> Self {
        SentCall {
            peer,
            answer,
            timeout: timeout.filter(|after| *after < SWEPT_DEADLINE),
            timer: None,
        }
    }
}

impl Future for SentCall<'_> {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = self.get_mut();
        if let Poll::Ready(outcome) = Pin::new(&mut this.answer).poll(cx) {
            return Poll::Ready(this.peer.checked(outcome));
        }
        poll_timer(&mut this.timer, this.timeout, cx).map(|_| Outcome::Expired)
    }
}

/// Decodes a typed (postcard) payload.
pub(crate) fn decode_typed<T: DeserializeOwned>(payload: Payload) -> Result<T> {
    match payload {
        Payload::Typed(bytes) => postcard::from_bytes(&bytes)
            .map_err(|e| Error::Codec(format!("cannot decode the reply: {e}"))),
        other => Err(Error::Codec(format!(
            "expected a typed reply, got {other:?}"
        ))),
    }
}

/// The answer of a by-name call, which must be a [`Value`].
pub(crate) fn value_reply(payload: Payload) -> Result<Value> {
    match payload {
        Payload::Value(v) => Ok(v),
        other => Err(Error::Codec(format!(
            "expected a Value reply, got {other:?}"
        ))),
    }
}

/// Decodes a by-name (Value) stream item.
pub(crate) fn decode_value(payload: Payload) -> Result<Value> {
    match payload {
        Payload::Value(v) => Ok(v),
        other => Err(Error::Codec(format!(
            "expected a Value item, got {other:?}"
        ))),
    }
}
