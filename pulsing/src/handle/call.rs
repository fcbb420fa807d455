//! Call builders: what a proxy method returns before you `.await` it.
//!
//! `counter.inc(2)` builds a [`Call`]; nothing is sent until it is awaited (or told). On the way
//! you can set a per-call deadline or turn it into a fire-and-forget message:
//!
//! ```
//! # use pulsing::prelude::*;
//! # use std::time::Duration;
//! pub struct Counter { value: i64 }
//!
//! #[pulsing::remote]
//! impl Counter {
//!     pub fn inc(&mut self, by: i64) -> i64 { self.value += by; self.value }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pulsing::Result<()> {
//! let system = ActorSystem::builder().build().await?;
//! let counter = Counter::spawn(&system, Counter { value: 0 }).await?;
//! counter.inc(1).tell().await?;                                      // no reply wanted
//! let v = counter.inc(2).timeout(Duration::from_secs(1)).await?;     // own deadline
//! assert_eq!(v, 3);
//! # system.shutdown().await; Ok(()) }
//! ```
//!
//! # Cancel safety
//! Dropping a call future (or letting its deadline pass) abandons the call: if the actor has not
//! started it yet, it skips it. Told messages are never skipped.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Sleep;

use super::actor_ref::{ActorRef, Target};
use super::deadline::{self, deadline_builders, Deadline};
use crate::actor::cell::{Cell, Envelope};
use crate::actor::oneshot::{self, NoAnswer};
use crate::actor::reply::BoxFuture;
use crate::actor::{Actor, Reply, ReplyStream, StreamReply};
use crate::cluster::client::{decode_typed, encode_args, PeerActor, SentCall};
use crate::error::{Error, Result};
use crate::transport::{Attempt, OutArgs};
use crate::wire::Payload;

/// A typed call that has not been sent yet. Await it for the method's result, or [`tell`](Self::tell) it.
///
/// `Args` is the tuple of the method's arguments and `T` its return type.
///
/// # Errors
/// Awaited, it fails with [`Error::Stopped`] if the actor stopped before answering,
/// [`Error::Timeout`] when the deadline passes, [`Error::Panicked`] if the method panicked, and,
/// for an actor on another node, [`Error::PeerLost`], [`Error::Codec`] or the peer's own
/// [`Error::NotFound`] / [`Error::TypeMismatch`]. A method's own `Result` stays inside `T`.
#[must_use = "a call does nothing until it is awaited or told"]
pub struct Call<'a, A: Actor, Args, T> {
    call: Unsent<'a, A, Args, Reply<T>>,
}

/// What [`Call`] and [`StreamCall`] hold until they are sent: the target, the method, its
/// arguments, how to build the message around a reply slot `Slot`, and the deadline.
struct Unsent<'a, A: Actor, Args, Slot> {
    target: &'a ActorRef<A>,
    method: &'static str,
    args: Args,
    build: fn(Args, Slot) -> A::Message,
    deadline: Deadline,
}

impl<'a, A: Actor, Args, Slot> Unsent<'a, A, Args, Slot> {
    fn new(
        target: &'a ActorRef<A>,
        method: &'static str,
        args: Args,
        build: fn(Args, Slot) -> A::Message,
    ) -> Self {
        Unsent {
            target,
            method,
            args,
            build,
            deadline: Deadline::Default,
        }
    }
}

impl<'a, A: Actor, Args, T> Call<'a, A, Args, T> {
    #[doc(hidden)]
    pub fn new(
        target: &'a ActorRef<A>,
        method: &'static str,
        args: Args,
        build: fn(Args, Reply<T>) -> A::Message,
    ) -> Self {
        Call {
            call: Unsent::new(target, method, args, build),
        }
    }

    deadline_builders!(
        call.deadline,
        "no answer arrives (time waiting for mailbox space counts)"
    );

    /// Sends the call without waiting for its result. Waits while the mailbox is full
    /// (backpressure, nothing is dropped).
    ///
    /// # Errors
    /// [`Error::Stopped`] if the actor has stopped; for an actor on another node, also
    /// [`Error::Codec`] if the arguments do not encode and [`Error::PeerLost`] if the connection
    /// is gone.
    pub async fn tell(self) -> Result<()>
    where
        Args: Serialize,
    {
        match &self.call.target.target {
            Target::Local(cell) => {
                cell.enqueue((self.call.build)(self.call.args, Reply::ignore()))
                    .await
            }
            Target::Peer(peer) => {
                peer.tell(self.call.method, encode_args(&self.call.args))
                    .await
            }
        }
    }

    /// Sends the call without waiting for its result or for mailbox space.
    ///
    /// For an actor on another node the call is handed to a background task that queues it on
    /// the connection; errors are logged. There, the connection's window of calls in flight
    /// (`transport::connection::CALL_WINDOW`) stands for the mailbox: when it is full,
    /// `try_tell` reports [`Error::MailboxFull`].
    ///
    /// # Errors
    /// [`Error::MailboxFull`] if the mailbox (or the window) is full, [`Error::Stopped`] if the
    /// actor has stopped (an actor in this process only).
    pub fn try_tell(self) -> Result<()>
    where
        Args: Serialize,
    {
        let cell = match &self.call.target.target {
            Target::Local(cell) => cell,
            Target::Peer(peer) => {
                // The connection's window of calls in flight stands for the mailbox here.
                if !peer.has_room() {
                    return Err(Error::MailboxFull {
                        actor: peer.label(),
                    });
                }
                let peer = peer.clone();
                let (method, args) = (self.call.method, encode_args(&self.call.args));
                tokio::spawn(async move {
                    if let Err(e) = peer.tell(method, args).await {
                        tracing::warn!(error = %e, method, "a told remote call could not be sent");
                    }
                });
                return Ok(());
            }
        };
        let msg = (self.call.build)(self.call.args, Reply::ignore());
        let meta = &cell.meta;
        cell.mailbox
            .try_send(Envelope::Message(msg))
            .map_err(|e| match e {
                TrySendError::Full(_) => Error::MailboxFull {
                    actor: meta.label(),
                },
                TrySendError::Closed(_) => meta.stopped_error(),
            })
    }
}

impl<A: Actor, Args, T> std::fmt::Debug for Call<'_, A, Args, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("target", self.call.target)
            .field("method", &self.call.method)
            .field("deadline", &self.call.deadline)
            .finish()
    }
}

impl<'a, A, Args, T> IntoFuture for Call<'a, A, Args, T>
where
    A: Actor,
    Args: Serialize + Send + 'a,
    T: DeserializeOwned + Send + 'static,
{
    type Output = Result<T>;
    type IntoFuture = CallFuture<'a, A, T>;

    fn into_future(self) -> CallFuture<'a, A, T> {
        match &self.call.target.target {
            Target::Local(cell) => {
                let meta = &cell.meta;
                let timeout = self.call.deadline.resolve(meta.call_timeout);
                // A long deadline is kept by the system's sweeper: no timer, no clock read.
                let swept = timeout.filter(|after| *after >= meta.swept_from);
                let (tx, rx) = oneshot::channel(swept);
                let msg = (self.call.build)(self.call.args, Reply::call(tx));
                let envelope = Envelope::Message(msg);
                CallFuture {
                    inner: CallInner::Local {
                        cell,
                        method: self.call.method,
                        send: SendState::Unsent(envelope),
                        rx,
                        timeout,
                        swept: swept.is_some(),
                        timer: None,
                    },
                }
            }
            Target::Peer(peer) => {
                let timeout = self.call.deadline.resolve(peer.call_timeout);
                let method = self.call.method;
                let args = OutArgs::Typed(self.call.args);
                // Sent now if the connection has room: the future then holds only what waits
                // for the answer, and allocates nothing.
                let inner = match peer.try_call(method, true, args, timeout) {
                    Attempt::Sent(answer) => CallInner::Sent {
                        sent: SentCall::new(peer, answer, timeout),
                        method,
                        timeout,
                        decode: decode_typed::<T>,
                    },
                    Attempt::Done(outcome) => CallInner::Done {
                        result: Some(peer.result(method, timeout, outcome).and_then(decode_typed)),
                    },
                    Attempt::MustWait(args) => CallInner::Peer {
                        call: Box::pin(call_peer(peer, method, args, timeout)),
                    },
                };
                CallFuture { inner }
            }
        }
    }
}

/// A typed call to an actor on another node: postcard arguments in (encoded straight into the
/// request frame), postcard result out.
async fn call_peer<Args: Serialize, T: DeserializeOwned>(
    peer: &PeerActor,
    method: &str,
    args: OutArgs<Args>,
    timeout: Option<Duration>,
) -> Result<T> {
    let call = peer.call(method, true, args, timeout);
    let payload =
        deadline::on_connection(timeout, call, |after| peer.timeout_error(method, after)).await?;
    decode_typed(payload)
}

/// Where a local call's message is: not sent, waiting for mailbox room, or in the mailbox.
enum SendState<'a, M> {
    Unsent(Envelope<M>),
    /// The mailbox was full: waiting for room (the only case that allocates).
    Waiting(BoxFuture<'a, Result<(), mpsc::error::SendError<Envelope<M>>>>),
    Sent,
}

pin_project_lite::pin_project! {
    /// The future of an awaited [`Call`]: sends the message, then waits for the reply or the
    /// deadline. For an actor in this process it never allocates beyond its reply channel
    /// (unless the mailbox is full, or the call has a short deadline of its own: a timer).
    /// For an actor on another node the request is queued on the connection as the call
    /// becomes this future (`.await` does that first, or [`IntoFuture::into_future`]), when
    /// the connection has room: the future then only waits for the answer, and allocates
    /// nothing beyond its reply channel either. Dropping it cancels the call on the peer.
    #[must_use = "futures do nothing unless polled"]
    pub struct CallFuture<'a, A: Actor, T> {
        #[pin]
        inner: CallInner<'a, A, T>,
    }
}

pin_project_lite::pin_project! {
    #[project = CallInnerProj]
    enum CallInner<'a, A: Actor, T> {
        /// An actor in this process: straight into its mailbox.
        Local {
            cell: &'a Arc<Cell<A>>,
            method: &'static str,
            send: SendState<'a, A::Message>,
            rx: oneshot::Receiver<Result<T>>,
            timeout: Option<Duration>,
            // Whether the system's sweeper keeps the deadline (once the message is queued).
            swept: bool,
            // A short deadline's timer, or a swept one's while the mailbox is full.
            timer: Option<Pin<Box<Sleep>>>,
        },
        /// An actor on another node, the call sent: waiting for the answer.
        Sent {
            sent: SentCall<'a>,
            method: &'static str,
            timeout: Option<Duration>,
            decode: fn(Payload) -> Result<T>,
        },
        /// An actor on another node, the call refused before it was sent.
        Done {
            result: Option<Result<T>>,
        },
        /// An actor on another node whose connection had no room (or was lost) when the call
        /// was made: the whole call, waiting to be sent.
        Peer {
            call: BoxFuture<'a, Result<T>>,
        },
    }
}

impl<A: Actor, T> std::fmt::Debug for CallFuture<'_, A, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            CallInner::Local { cell, method, .. } => {
                write!(f, "CallFuture({}.{method})", cell.meta.label())
            }
            CallInner::Sent { method, .. } => write!(f, "CallFuture(remote .{method})"),
            CallInner::Done { .. } | CallInner::Peer { .. } => f.write_str("CallFuture(remote)"),
        }
    }
}

impl<A: Actor, T> Future for CallFuture<'_, A, T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let (cell, method, send, rx, timeout, swept, timer) = match self.project().inner.project() {
            CallInnerProj::Sent {
                sent,
                method,
                timeout,
                decode,
            } => {
                let outcome = std::task::ready!(Pin::new(&mut *sent).poll(cx));
                let result = sent.peer().result(method, *timeout, outcome);
                return Poll::Ready(result.and_then(*decode));
            }
            CallInnerProj::Done { result } => {
                return Poll::Ready(result.take().expect("a call future polled after it ended"))
            }
            CallInnerProj::Peer { call } => return call.as_mut().poll(cx),
            CallInnerProj::Local {
                cell,
                method,
                send,
                rx,
                timeout,
                swept,
                timer,
            } => (*cell, *method, send, rx, *timeout, *swept, timer),
        };
        let expired = |after: Duration| Err(cell.meta.timeout_error(method, after));
        loop {
            match std::mem::replace(send, SendState::Sent) {
                SendState::Unsent(envelope) => match cell.mailbox.try_send(envelope) {
                    Ok(()) => break,
                    Err(TrySendError::Full(envelope)) => {
                        *send = SendState::Waiting(Box::pin(cell.mailbox.send(envelope)));
                    }
                    Err(TrySendError::Closed(_)) => {
                        return Poll::Ready(Err(cell.meta.stopped_error()))
                    }
                },
                SendState::Waiting(mut sending) => match sending.as_mut().poll(cx) {
                    Poll::Ready(Ok(())) => break,
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(cell.meta.stopped_error())),
                    Poll::Pending => {
                        *send = SendState::Waiting(sending);
                        // Not in the mailbox yet, so not swept: a timer keeps the deadline.
                        return deadline::poll_timer(timer, timeout, cx).map(expired);
                    }
                },
                SendState::Sent => break,
            }
        }
        match Pin::new(rx).poll(cx) {
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(NoAnswer::Dropped)) => Poll::Ready(Err(cell.meta.stopped_error())),
            Poll::Ready(Err(NoAnswer::Expired)) => {
                Poll::Ready(expired(timeout.unwrap_or_default()))
            }
            Poll::Pending if swept && timer.is_none() => Poll::Pending,
            Poll::Pending => deadline::poll_timer(timer, timeout, cx).map(expired),
        }
    }
}

/// A streaming call that has not been sent yet. Await it to open the stream.
///
/// The deadline (per call or the system default) covers opening the stream, not its items.
///
/// # Errors
/// Awaited, it fails as a [`Call`] does if the stream cannot be opened; once open, failures
/// arrive as the stream's last item.
#[must_use = "a call does nothing until it is awaited"]
pub struct StreamCall<'a, A: Actor, Args, T> {
    call: Unsent<'a, A, Args, StreamReply<T>>,
}

impl<'a, A: Actor, Args, T> StreamCall<'a, A, Args, T> {
    #[doc(hidden)]
    pub fn new(
        target: &'a ActorRef<A>,
        method: &'static str,
        args: Args,
        build: fn(Args, StreamReply<T>) -> A::Message,
    ) -> Self {
        StreamCall {
            call: Unsent::new(target, method, args, build),
        }
    }

    deadline_builders!(call.deadline, "the stream is not open");
}

impl<A: Actor, Args, T> std::fmt::Debug for StreamCall<'_, A, Args, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCall")
            .field("target", self.call.target)
            .field("method", &self.call.method)
            .finish_non_exhaustive()
    }
}

impl<'a, A, Args, T> IntoFuture for StreamCall<'a, A, Args, T>
where
    A: Actor,
    Args: Serialize + Send + 'a,
    T: DeserializeOwned + Send + 'static,
{
    type Output = Result<ReplyStream<T>>;
    type IntoFuture = BoxFuture<'a, Result<ReplyStream<T>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let cell = match &self.call.target.target {
                Target::Local(cell) => cell,
                Target::Peer(peer) => {
                    let bytes = encode_args(&self.call.args)?;
                    let timeout = self.call.deadline.resolve(peer.call_timeout);
                    let open = peer.stream(
                        self.call.method,
                        Payload::Typed(bytes),
                        true,
                        decode_typed::<T>,
                        timeout,
                    );
                    return deadline::within(timeout, open, |after| {
                        peer.timeout_error(self.call.method, after)
                    })
                    .await;
                }
            };
            let meta = &cell.meta;
            let (tx, rx) = mpsc::channel(meta.stream_buffer);
            let msg = (self.call.build)(self.call.args, StreamReply::to(tx));
            let stream = ReplyStream::new(rx, Arc::from(meta.label()));
            let open = async {
                cell.enqueue(msg).await?;
                stream.opened().await
            };
            let timeout = self.call.deadline.resolve(meta.call_timeout);
            deadline::within(timeout, open, |after| {
                meta.timeout_error(self.call.method, after)
            })
            .await
        })
    }
}
