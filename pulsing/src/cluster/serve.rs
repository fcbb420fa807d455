//! The server side of calls from other nodes: serving the calls and streams peers send, through
//! the same mailboxes local calls use.
//!
//! A call costs no task and no future: the connection's reader puts it in the mailbox when there
//! is room, with a reply slot ([`PeerReply`]) that encodes the actor's answer and queues it for
//! the connection's writer. Calls that find the mailbox full wait, in order, in that actor's backlog
//! on the connection, which the actor itself empties into its mailbox when the mailbox runs
//! empty. A `Cancel` from the peer reaches a call wherever it waits (backlog or mailbox): its
//! actor skips it. Streams and meta-calls (`$describe`, `$stop`) run on a task of their own.
//!
//! **Calls.** The reader looks the actor up in the [`Registry`], checks the type a typed call
//! expects, and builds the message with the generated decoder (`message_from_bytes` for a
//! postcard argument tuple, `message_from_values` for by-name [`Args`](crate::Args)) — the same
//! message variant a local call builds, in the same mailbox. The connection records each served
//! call by id; a reply slot dropped unanswered (its actor stopped) answers `Stopped`, except one
//! dropped while its call is being posted on this thread ([`Connection::posting`]): that post
//! failed, and answers with its own error — never both, with one lock per call fewer than
//! recording the posted state. A
//! call that finds the mailbox full joins that actor's backlog on the connection: calls from one
//! node run in the order they arrived, and a full mailbox holds back only calls to that actor —
//! never the reader, which must keep routing replies (blocking it could deadlock two nodes
//! calling each other). (Serving used to hand the writer a boxed future per call; the peer
//! reply slot is ≈25% more calls/s at 1024 in flight.)
//!
//! **Backlogs.** Starting one registers it with its actor ([`Overflow`]): whenever the actor
//! finds its mailbox empty — and at the latest after a mailbox's worth of messages — it moves
//! the backlog's calls into its mailbox on its own thread, as many at once as there is room for
//! ([`Staged`]: one lock for their room, one for their messages). Before, a task per backlog
//! did this and met the actor at the mailbox's lock for every call: at 1024 calls in flight to
//! an actor with the default mailbox, 10–15% more CPU per call. Two cases still go to such a
//! task ([`Backlog::drain_on_a_task`]): a backlog that finds other senders waiting for room
//! queues with them (so that neither starves), and the actor's end hands its backlogs over
//! (the task answers each call `Stopped`).
//!
//! **Streams.** The node sends at most as many items as the consumer granted (its first window
//! travels with the request), batching whatever is ready into one `StreamItems` frame (≤ 256
//! items, ≈256 KiB), and ends with `StreamEnd { error }`.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_core::Stream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::Semaphore;

use super::{DESCRIBE, STOP};
use crate::actor::cell::{AnyCell, Overflow, Refilled, Staged};
use crate::actor::peer::PeerReply;
use crate::actor::registry::Registry;
use crate::actor::reply::{BoxFuture, Pending, ReplyTo};
use crate::error::{Error, Result};
use crate::transport::{credit_semaphore, Connection, Incoming, Serving};
use crate::value::Value;
use crate::wire::{Frame, Payload, SharedStr};

type ItemStream = std::pin::Pin<Box<dyn Stream<Item = Result<Payload>> + Send>>;

/// Serves a call or stream the peer sent on `conn`.
pub(crate) fn request(registry: Arc<Registry>, conn: &Arc<Connection>, call: Incoming) {
    // The connection's reader has recorded the call (`Served::Call`) before handing it here.
    if call.credit.is_none() && !call.method.starts_with('$') {
        // Calls to one actor keep their order: behind a backlog if it has one.
        let Some(call) = conn.behind_backlog(call) else {
            return;
        };
        if let Some((call, cell)) = post_now(&registry, conn, call) {
            let actor = call.actor.clone();
            conn.start_backlog(call);
            // Its actor fetches it when its mailbox runs empty.
            cell.add_overflow(Box::new(Backlog::new(registry, conn.clone(), actor)));
        }
        return;
    }
    let id = call.id;
    let credit = call.credit.map(|n| Arc::new(credit_semaphore(n)));
    let (task, abort) =
        futures_util::future::abortable(serve(registry, conn.clone(), call, credit.clone()));
    conn.serving(id, Serving { abort, credit });
    tokio::spawn(task);
}

/// The backlog of one actor on one connection, and the calls taken from it and not yet posted:
/// drained by the actor itself as an [`Overflow`] while it can, else by a task of its own.
struct Backlog {
    registry: Arc<Registry>,
    conn: Arc<Connection>,
    actor: SharedStr,
    chunk: VecDeque<Incoming>,
    staged: Staged,
}

impl Backlog {
    fn new(registry: Arc<Registry>, conn: Arc<Connection>, actor: SharedStr) -> Self {
        Backlog {
            registry,
            conn,
            actor,
            chunk: VecDeque::new(),
            staged: Staged::default(),
        }
    }

    /// Takes the next calls into `chunk`; false once the backlog is gone (empty, or the
    /// connection closed) and nothing is left in hand.
    fn next(&mut self) -> bool {
        !self.chunk.is_empty() || self.conn.next_in_backlog(&self.actor, &mut self.chunk)
    }

    /// Posts what the mailbox has room for now: how many messages went in; `None` when it has
    /// no room for the next call.
    fn post_batch(&mut self) -> Option<usize> {
        post_batch(
            &self.registry,
            &self.conn,
            &mut self.chunk,
            &mut self.staged,
        )
    }

    /// Drains the backlog on a task of its own, in order: as many calls at once as there is room
    /// for, else the first waits for room among the mailbox's other waiting senders. Calls the
    /// peer cancelled meanwhile are dropped here.
    fn drain_on_a_task(mut self) {
        tokio::spawn(async move {
            while self.next() {
                if self.post_batch().is_some() {
                    continue;
                }
                if let Some(call) = self.chunk.pop_front() {
                    post_waiting(&self.registry, &self.conn, call).await;
                }
            }
        });
    }
}

impl Overflow for Backlog {
    fn refill(&mut self) -> Refilled {
        let mut posted = 0;
        while self.next() {
            if let Some(n) = self.post_batch() {
                posted += n;
                continue;
            }
            if posted > 0 {
                return Refilled::More; // the mailbox is full again: more when it runs empty
            }
            // An empty mailbox with no room for us: other senders wait for room. Queue with
            // them, on a task, so that neither they nor this backlog starve.
            return Refilled::HandOver;
        }
        Refilled::Done
    }

    fn hand_over(self: Box<Self>) {
        // The mailbox is closed: the task answers each call that the actor stopped.
        self.drain_on_a_task();
    }
}

/// Posts the calls at the front of `chunk` that its actor's mailbox has room for now, in
/// order, taking the mailbox's lock once for their room and once for their messages
/// ([`Staged`]); a call that fails (unknown actor, method or arguments) is answered with its
/// error. How many messages went into the mailbox; `None`, posting nothing, if it has no room
/// for the first call.
fn post_batch(
    registry: &Registry,
    conn: &Arc<Connection>,
    chunk: &mut VecDeque<Incoming>,
    staged: &mut Staged,
) -> Option<usize> {
    while chunk.front().is_some_and(|call| !conn.is_serving(call.id)) {
        chunk.pop_front();
    }
    let first = chunk.front()?;
    let cell = lookup(registry, first).and_then(|cell| Ok((cell.reserve_many(chunk.len())?, cell)));
    let (room, cell) = match cell {
        Ok((0, _)) => return None,
        Ok(found) => found,
        Err(e) => {
            if let Some(call) = chunk.pop_front() {
                conn.answer(call.id, Err(e));
            }
            return Some(0);
        }
    };
    let mut posted = 0;
    let mut used = 0;
    while used < room {
        let Some(call) = chunk.front() else {
            break;
        };
        if !conn.is_serving(call.id) {
            chunk.pop_front();
            continue;
        }
        // A call that addresses another instance, or expects another type, ends the batch
        // (the next batch answers it).
        if !lookup(registry, call).is_ok_and(|found| Arc::ptr_eq(&found, &cell)) {
            break;
        }
        let Some(mut call) = chunk.pop_front() else {
            break;
        };
        used += 1;
        let id = call.id;
        // A reply slot dropped while its message is built is that call failing: answered here.
        let staged_ok = conn.posting(id, || {
            let reply_to = reply_to(conn, id, &cell);
            match &mut call.args {
                Payload::Typed(bytes) => cell.stage_bytes(staged, &call.method, bytes, reply_to),
                Payload::Dynamic(args) => {
                    cell.stage_values(staged, &call.method, std::mem::take(args), reply_to)
                }
                Payload::Value(_) => {
                    drop(reply_to);
                    Err(not_args())
                }
            }
        });
        match staged_ok {
            Ok(()) => posted += 1,
            Err(e) => conn.answer(id, Err(e)),
        }
    }
    cell.commit(staged, room);
    Some(posted)
}

/// The reply slot of call `id` to `cell`: it answers on `conn`.
fn reply_to(conn: &Arc<Connection>, id: u64, cell: &Arc<dyn AnyCell>) -> ReplyTo {
    ReplyTo::Peer(PeerReply::new(conn.clone(), id, cell.clone()))
}

/// Puts a call in its actor's mailbox right away if there is room; gives it back, with its
/// actor, when the mailbox is full. The actor's reply goes straight to the connection. The caller's deadline is
/// enforced by the caller, which cancels the call when it expires; so no timer here.
fn post_now(
    registry: &Registry,
    conn: &Arc<Connection>,
    mut call: Incoming,
) -> Option<(Incoming, Arc<dyn AnyCell>)> {
    let id = call.id;
    let cell = match lookup(registry, &call) {
        Ok(cell) => cell,
        Err(e) => {
            conn.answer(id, Err(e));
            return None;
        }
    };
    // A reply slot dropped in here is the post failing: answered below, not by the slot.
    let full = conn.posting(id, || {
        let reply_to = reply_to(conn, id, &cell);
        match &mut call.args {
            Payload::Typed(bytes) => cell
                .try_enqueue_bytes(&call.method, bytes, reply_to)
                .map(|posted| posted.err()),
            Payload::Dynamic(args) => cell
                .try_enqueue_values(&call.method, std::mem::take(args), reply_to)
                .map(|posted| {
                    posted.err().map(|(back, reply_to)| {
                        *args = back;
                        reply_to
                    })
                }),
            Payload::Value(_) => Err(not_args()),
        }
    });
    match full {
        Ok(None) => None,
        Ok(Some(reply_to)) => {
            if let ReplyTo::Peer(reply) = reply_to {
                reply.defer();
            }
            Some((call, cell))
        }
        Err(e) => {
            conn.answer(id, Err(e));
            None
        }
    }
}

/// Puts a call in its actor's mailbox, waiting for room.
async fn post_waiting(registry: &Registry, conn: &Arc<Connection>, mut call: Incoming) {
    let id = call.id;
    let cell = match lookup(registry, &call) {
        Ok(cell) => cell,
        Err(e) => return conn.answer(id, Err(e)),
    };
    // Each step of the post runs under `posting`: a reply slot dropped in it is the post
    // failing, answered below. (Making the future runs nothing: it holds the reply slot.)
    let reply_to = reply_to(conn, id, &cell);
    let posted = match &mut call.args {
        Payload::Typed(bytes) => {
            let post = cell.enqueue_bytes(&call.method, bytes, reply_to);
            posting(conn, id, post).await.map(drop)
        }
        Payload::Dynamic(args) => {
            let post = cell.enqueue_values(&call.method, std::mem::take(args), reply_to);
            posting(conn, id, post).await.map(drop)
        }
        Payload::Value(_) => conn.posting(id, || {
            drop(reply_to);
            Err(not_args())
        }),
    };
    if let Err(e) = posted {
        conn.answer(id, Err(e));
    }
}

/// Runs `post` (a post of call `id` that may wait) with each of its steps under
/// [`Connection::posting`].
async fn posting<T>(conn: &Connection, id: u64, mut post: BoxFuture<'_, T>) -> T {
    std::future::poll_fn(|cx| conn.posting(id, || post.as_mut().poll(cx))).await
}

fn not_args() -> Error {
    Error::Codec("call arguments must be Typed or Dynamic".into())
}

/// Serves one call or stream for a peer and answers it.
async fn serve(
    registry: Arc<Registry>,
    conn: Arc<Connection>,
    call: Incoming,
    credit: Option<Arc<Semaphore>>,
) {
    let id = call.id;
    match credit {
        None => {
            let result = answer_meta(&registry, call).await;
            let _ = conn.send(Frame::Response { id, result }).await;
        }
        Some(credit) => match open(&registry, call).await {
            Err(e) => {
                let _ = conn.send(Frame::Response { id, result: Err(e) }).await;
            }
            Ok(mut items) => {
                if conn
                    .send(Frame::Response {
                        id,
                        result: Ok(Payload::Value(Value::Null)),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                loop {
                    let (batch, mut end) = next_batch(&mut items, &credit).await;
                    if !batch.is_empty() {
                        match conn.send(Frame::StreamItems { id, items: batch }).await {
                            Ok(()) => {}
                            // An item that does not encode (a `Value` nested too deep) ends the
                            // stream with that error; the consumer is not left waiting.
                            Err(e @ Error::Codec(_)) => end = Some(Some(e)),
                            Err(_) => break,
                        }
                    }
                    if let Some(error) = end {
                        let _ = conn.send(Frame::StreamEnd { id, error }).await;
                        break;
                    }
                }
            }
        },
    }
    conn.served(id);
}

/// Items per `StreamItems` frame at most, and roughly how many bytes.
const MAX_BATCH_ITEMS: usize = 256;
const MAX_BATCH_BYTES: usize = 256 << 10;

/// Waits for one item the consumer has credit for, then takes every further item that is ready
/// at once, within the credit and the batch limits. `end` is `Some` once the stream is over.
async fn next_batch(
    items: &mut ItemStream,
    credit: &Semaphore,
) -> (Vec<Payload>, Option<Option<Error>>) {
    match credit.acquire().await {
        Ok(permit) => permit.forget(),
        Err(_) => return (Vec::new(), Some(None)),
    }
    let mut batch = Vec::new();
    let mut bytes = 0;
    let mut next = items.next().await;
    loop {
        match next {
            Some(Ok(item)) => {
                bytes += approx_size(&item);
                batch.push(item);
            }
            Some(Err(e)) => return (batch, Some(Some(e))),
            None => return (batch, Some(None)),
        }
        if batch.len() >= MAX_BATCH_ITEMS || bytes >= MAX_BATCH_BYTES {
            return (batch, None);
        }
        let Ok(permit) = credit.try_acquire() else {
            return (batch, None);
        };
        match items.next().now_or_never() {
            Some(more) => {
                permit.forget();
                next = more;
            }
            // Not ready: send what we have; the unused permit goes back.
            None => return (batch, None),
        }
    }
}

fn approx_size(item: &Payload) -> usize {
    match item {
        Payload::Typed(bytes) => bytes.len(),
        Payload::Dynamic(_) | Payload::Value(_) => 64,
    }
}

/// The actor a call addresses: by name, and if the call names one, only that instance (else
/// `Stopped`: the caller's actor is gone, even if the name is bound again); of the type the
/// call expects (its identity key), if it is typed.
fn lookup(registry: &Registry, call: &Incoming) -> Result<Arc<dyn AnyCell>> {
    let name = &*call.actor;
    let Some(cell) = registry.get_cached(name) else {
        return Err(match call.actor_id {
            Some(id) => Error::Stopped {
                actor: format!("#{id} {name:?}"),
            },
            None => Error::NotFound {
                name: name.to_owned(),
            },
        });
    };
    let meta = cell.meta();
    if let Some(id) = call.actor_id {
        if meta.id != id {
            return Err(Error::Stopped {
                actor: format!("{}#{id} {name:?}", meta.type_name),
            });
        }
    }
    if let Some(expected) = call.expect_type.as_deref() {
        if meta.interface.key != expected {
            return Err(Error::TypeMismatch {
                name: name.to_owned(),
                expected: expected.to_owned(),
                found: meta.interface.identity(),
            });
        }
    }
    Ok(cell)
}

/// Answers a meta-call (`$describe`, `$stop`).
async fn answer_meta(registry: &Registry, call: Incoming) -> Result<Payload> {
    let cell = lookup(registry, &call)?;
    match call.method.as_str() {
        DESCRIBE => {
            let meta = cell.meta();
            Ok(Payload::Value(Value::Map(vec![
                ("type".into(), meta.type_name.into()),
                ("id".into(), Value::Int(meta.id as i64)),
                // What the actor offers, for callers that only know its name (Python, tools).
                (
                    "interface".into(),
                    crate::value::to_value(cell.interface()).unwrap_or_default(),
                ),
            ])))
        }
        STOP => {
            cell.request_stop();
            Ok(Payload::Value(Value::Null))
        }
        other => Err(Error::UnknownMethod {
            actor: cell.meta().type_name.to_owned(),
            method: other.to_owned(),
            available: format!("{DESCRIBE}, {STOP}"),
        }),
    }
}

async fn open(registry: &Registry, call: Incoming) -> Result<ItemStream> {
    let cell = lookup(registry, &call)?;
    let meta = cell.meta();
    // The buffer between the producer's pump and this task holds a whole batch: the pump fills
    // it while a batch is written, and the next batch goes with one wake-up instead of one per
    // `stream_buffer` items. What crosses the wire is still bounded by the consumer's credit.
    let reply_to = ReplyTo::Stream {
        buffer: meta.stream_buffer.max(MAX_BATCH_ITEMS),
        actor: Arc::from(meta.label()),
    };
    let opened: ItemStream = match call.args {
        Payload::Typed(bytes) => match cell.enqueue_bytes(&call.method, &bytes, reply_to).await? {
            Pending::Stream(opened) => {
                Box::pin(opened.await?.map(|r| r.map(|b| Payload::Typed(b.into()))))
            }
            Pending::Call(_) | Pending::Responded => {
                unreachable!("a stream slot always yields a stream")
            }
        },
        Payload::Dynamic(args) => match cell.enqueue_values(&call.method, args, reply_to).await? {
            Pending::Stream(opened) => Box::pin(opened.await?.map(|r| r.map(Payload::Value))),
            Pending::Call(_) | Pending::Responded => {
                unreachable!("a stream slot always yields a stream")
            }
        },
        Payload::Value(_) => {
            return Err(Error::Codec(
                "call arguments must be Typed or Dynamic".into(),
            ))
        }
    };
    Ok(opened)
}
