//! Serving the calls and streams peers send: through the same mailboxes local calls use.
//!
//! A call costs no task: the connection's reader puts it in the mailbox when there is room and
//! the writer polls its answer (`Connection::respond`). Calls that find the mailbox full wait, in
//! order, in that actor's backlog on the connection, drained by one task. Streams and meta-calls
//! (`$describe`, `$stop`) run on a task of their own.

use std::sync::Arc;

use futures_core::Stream;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::Semaphore;

use crate::actor_ref::{AnyCell, DESCRIBE, STOP};
use crate::dynamic::{DynKind, Pending};
use crate::system::SystemInner;
use crate::transport::{Connection, Incoming, Serving};
use crate::wire::{Frame, Payload};
use crate::{Error, Result, Value};

type ItemStream = std::pin::Pin<Box<dyn Stream<Item = Result<Payload>> + Send>>;

/// Serves a call or stream the peer sent on `conn`.
pub(crate) fn request(system: Arc<SystemInner>, conn: &Arc<Connection>, call: Incoming) {
    if call.credit.is_none() && !call.method.starts_with('$') {
        // Calls to one actor keep their order: behind a backlog if it has one.
        let Some(call) = conn.behind_backlog(call) else {
            return;
        };
        match answer_now(&system, call) {
            Now::Answer((id, answer)) => conn.respond(id, answer),
            Now::Full(call) => {
                let actor = call.actor.clone();
                conn.start_backlog(call);
                tokio::spawn(drain_backlog(system, conn.clone(), actor));
            }
        }
        return;
    }
    let id = call.id;
    let credit = call.credit.map(|n| Arc::new(Semaphore::new(n as usize)));
    let (task, abort) =
        futures_util::future::abortable(serve(system, conn.clone(), call, credit.clone()));
    conn.serving(id, Serving { abort, credit });
    tokio::spawn(task);
}

/// A call in its actor's mailbox (with the future of its answer), or back because the mailbox
/// is full.
enum Now {
    Answer((u64, Answer)),
    Full(Incoming),
}

/// The future of a call's answer.
type Answer = BoxFuture<'static, Result<Payload>>;

/// Puts the calls of `actor`'s backlog on this connection in its mailbox, in order, waiting for
/// room each time; their answers go to the writer like any other.
async fn drain_backlog(system: Arc<SystemInner>, conn: Arc<Connection>, actor: String) {
    while let Some(call) = conn.next_in_backlog(&actor) {
        // Room freed while we waited is usually for several calls: take it without waiting.
        let (id, answer) = match answer_now(&system, call) {
            Now::Answer(answer) => answer,
            Now::Full(call) => (
                call.id,
                enqueue_waiting(&system, call)
                    .await
                    .unwrap_or_else(|e| Box::pin(std::future::ready(Err(e)))),
            ),
        };
        conn.respond(id, answer);
    }
}

/// Puts a call in its actor's mailbox, waiting for room; returns the future of its answer.
async fn enqueue_waiting(system: &SystemInner, call: Incoming) -> Result<Answer> {
    let cell = lookup(system, &call.actor, call.expect_type.as_deref())?;
    let pending = match call.args {
        Payload::Typed(bytes) => cell
            .remote_enqueue(&call.method, &bytes, DynKind::Call)
            .await
            .map(|p| answer_of(p, cell.clone(), Payload::Typed)),
        Payload::Dynamic(args) => cell
            .dyn_enqueue(&call.method, args, DynKind::Call)
            .await
            .map(|p| answer_of(p, cell.clone(), Payload::Value)),
        Payload::Value(_) => Err(not_args()),
    }?;
    Ok(pending)
}

fn not_args() -> Error {
    Error::Codec("call arguments must be Typed or Dynamic".into())
}

/// The future of the answer in `pending`, as a wire payload (`wrap`).
fn answer_of<O: Send + 'static>(
    pending: Pending<O>,
    cell: Arc<dyn AnyCell>,
    wrap: fn(O) -> Payload,
) -> Answer {
    let Pending::Call(answer) = pending else {
        unreachable!("a call slot always yields one answer")
    };
    Box::pin(async move {
        match answer.await {
            Some(result) => result.map(wrap),
            None => Err(cell.meta().stopped_error()),
        }
    })
}

/// Puts a call in its actor's mailbox right away if there is room, and returns the future of its
/// answer. The caller's deadline is enforced by the caller, which cancels the call when it
/// expires; so no timer here.
fn answer_now(system: &SystemInner, mut call: Incoming) -> Now {
    let id = call.id;
    let failed = |e: Error| Now::Answer((id, Box::pin(std::future::ready(Err(e)))));
    let cell = match lookup(system, &call.actor, call.expect_type.as_deref()) {
        Ok(cell) => cell,
        Err(e) => return failed(e),
    };
    match std::mem::replace(&mut call.args, Payload::Value(Value::Null)) {
        Payload::Typed(bytes) => {
            match cell.remote_try_enqueue(&call.method, &bytes, DynKind::Call) {
                Ok(Some(pending)) => Now::Answer((id, answer_of(pending, cell, Payload::Typed))),
                Ok(None) => {
                    call.args = Payload::Typed(bytes);
                    Now::Full(call)
                }
                Err(e) => failed(e),
            }
        }
        Payload::Dynamic(args) => match cell.dyn_try_enqueue(&call.method, args, DynKind::Call) {
            Ok(Ok(pending)) => Now::Answer((id, answer_of(pending, cell, Payload::Value))),
            Ok(Err(args)) => {
                call.args = Payload::Dynamic(args);
                Now::Full(call)
            }
            Err(e) => failed(e),
        },
        Payload::Value(_) => failed(not_args()),
    }
}

/// Serves one call or stream for a peer and answers it.
async fn serve(
    system: Arc<SystemInner>,
    conn: Arc<Connection>,
    call: Incoming,
    credit: Option<Arc<Semaphore>>,
) {
    let id = call.id;
    match credit {
        None => {
            let result = answer_meta(&system, call).await;
            let _ = conn.send(Frame::Response { id, result }).await;
        }
        Some(credit) => match open(&system, call).await {
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
                    let (batch, end) = next_batch(&mut items, &credit).await;
                    if !batch.is_empty()
                        && conn
                            .send(Frame::StreamItems { id, items: batch })
                            .await
                            .is_err()
                    {
                        break;
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

fn lookup(system: &SystemInner, name: &str, expect_type: Option<&str>) -> Result<Arc<dyn AnyCell>> {
    let cell = system.registry.get(name).ok_or_else(|| Error::NotFound {
        name: name.to_owned(),
    })?;
    if let Some(expected) = expect_type {
        let found = cell.meta().type_name;
        if found != expected {
            return Err(Error::TypeMismatch {
                name: name.to_owned(),
                expected: expected.to_owned(),
                found: found.to_owned(),
            });
        }
    }
    Ok(cell)
}

/// Answers a meta-call (`$describe`, `$stop`).
async fn answer_meta(system: &SystemInner, call: Incoming) -> Result<Payload> {
    let cell = lookup(system, &call.actor, call.expect_type.as_deref())?;
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

async fn open(system: &SystemInner, call: Incoming) -> Result<ItemStream> {
    let cell = lookup(system, &call.actor, call.expect_type.as_deref())?;
    let meta = cell.meta();
    let kind = DynKind::Stream {
        buffer: meta.stream_buffer,
        actor: Arc::from(meta.label()),
    };
    let opened: ItemStream = match call.args {
        Payload::Typed(bytes) => match cell.remote_enqueue(&call.method, &bytes, kind).await? {
            Pending::Stream(opened) => Box::pin(opened.await?.map(|r| r.map(Payload::Typed))),
            Pending::Call(_) => unreachable!("a stream slot always yields a stream"),
        },
        Payload::Dynamic(args) => match cell.dyn_enqueue(&call.method, args, kind).await? {
            Pending::Stream(opened) => Box::pin(opened.await?.map(|r| r.map(Payload::Value))),
            Pending::Call(_) => unreachable!("a stream slot always yields a stream"),
        },
        Payload::Value(_) => {
            return Err(Error::Codec(
                "call arguments must be Typed or Dynamic".into(),
            ))
        }
    };
    Ok(opened)
}
