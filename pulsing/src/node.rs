//! A node: this process's presence in a cluster. It serves calls that arrive from peers by
//! putting them in the same mailboxes local calls use, and finds actors on peers by name.
//!
//! Finding names: for now a node asks its known peers (its seeds and every node connected to it)
//! whether they hold a name; the gossiped name directory of design-notes §5 will replace this
//! lookup behind the same `resolve` API.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures_core::Stream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::Semaphore;

use crate::actor_ref::{AnyCell, DESCRIBE, STOP};
use crate::dynamic::{DynKind, Pending};
use crate::remote::RemoteActor;
use crate::system::SystemInner;
use crate::transport::{Connection, Inbound, Incoming, Outgoing, Serving, Transport};
use crate::wire::{Frame, Payload};
use crate::{Args, Error, Result, Value};

/// This process's cluster membership: its transport and the peers it knows.
pub(crate) struct Node {
    pub(crate) transport: OnceLock<Arc<Transport>>,
    system: Weak<SystemInner>,
    seeds: Vec<String>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("transport", &self.transport.get())
            .finish_non_exhaustive()
    }
}

type ItemStream = std::pin::Pin<Box<dyn Stream<Item = Result<Payload>> + Send>>;

impl Node {
    pub(crate) fn new(system: Weak<SystemInner>, seeds: Vec<String>) -> Node {
        Node {
            transport: OnceLock::new(),
            system,
            seeds,
        }
    }

    pub(crate) fn transport(&self) -> &Arc<Transport> {
        self.transport
            .get()
            .expect("the transport starts with the node")
    }

    /// Every peer address this node knows (its seeds and every node connected to it, either
    /// way), except its own.
    pub(crate) fn peers(&self) -> Vec<String> {
        let transport = self.transport();
        let mut peers: BTreeSet<String> = self.seeds.iter().cloned().collect();
        peers.extend(transport.connected_addrs());
        peers.remove(transport.advertised());
        peers.into_iter().collect()
    }

    /// Dials every seed (best effort: a seed that is not up yet is retried on the next lookup).
    pub(crate) async fn join(&self) {
        for addr in self.peers() {
            if let Err(e) = self.transport().connect(&addr).await {
                tracing::info!(%addr, error = %e, "seed not reachable yet");
            }
        }
    }

    /// Asks the known peers for an actor named `name`.
    pub(crate) async fn find(
        &self,
        name: &str,
        call_timeout: Option<Duration>,
        stream_buffer: usize,
    ) -> Result<Arc<RemoteActor>> {
        let mut refused = None;
        for addr in self.peers() {
            let conn = match self.transport().connect(&addr).await {
                Ok(conn) => conn,
                Err(e) => {
                    refused = Some(e);
                    continue;
                }
            };
            let described = conn
                .call(Outgoing {
                    actor: name,
                    expect_type: None,
                    method: DESCRIBE,
                    args: Payload::Dynamic(Args::new()),
                    deadline: Some(Duration::from_secs(5)),
                })
                .await;
            let Ok(Payload::Value(info)) = described else {
                continue;
            };
            let type_name = info
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let id = info.get("id").and_then(Value::as_i64).unwrap_or_default() as u64;
            return Ok(Arc::new(RemoteActor {
                conn,
                name: name.to_owned(),
                id,
                type_name,
                call_timeout,
                stream_buffer,
            }));
        }
        // Nobody reachable has it; if a peer refused us (wrong secret or version), say so.
        Err(match refused {
            Some(e @ Error::Refused { .. }) => e,
            _ => Error::NotFound {
                name: name.to_owned(),
            },
        })
    }
}

impl Inbound for Node {
    fn request(&self, conn: &Arc<Connection>, call: Incoming) {
        let Some(system) = self.system.upgrade() else {
            let conn = conn.clone();
            tokio::spawn(async move {
                let _ = conn
                    .send(Frame::Response {
                        id: call.id,
                        result: Err(Error::SystemShutdown),
                    })
                    .await;
            });
            return;
        };
        let id = call.id;
        let credit = call.credit.map(|n| Arc::new(Semaphore::new(n as usize)));
        let (task, abort) =
            futures_util::future::abortable(serve(system, conn.clone(), call, credit.clone()));
        conn.serving(id, Serving { abort, credit });
        tokio::spawn(task);
    }

    fn gossip(&self, _conn: &Arc<Connection>, _bytes: Vec<u8>) {}

    fn closed(&self, _conn: &Arc<Connection>) {}
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
            let result = answer(&system, call).await;
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

async fn answer(system: &SystemInner, call: Incoming) -> Result<Payload> {
    let cell = lookup(system, &call.actor, call.expect_type.as_deref())?;
    match call.method.as_str() {
        DESCRIBE => {
            let meta = cell.meta();
            return Ok(Payload::Value(Value::Map(vec![
                ("type".into(), meta.type_name.into()),
                ("id".into(), Value::Int(meta.id as i64)),
            ])));
        }
        STOP => {
            cell.request_stop();
            return Ok(Payload::Value(Value::Null));
        }
        _ => {}
    }
    let label = cell.meta().label();
    let method = call.method.clone();
    let work = async {
        match call.args {
            Payload::Typed(bytes) => match cell
                .remote_enqueue(&call.method, &bytes, DynKind::Call)
                .await?
            {
                Pending::Call(answer) => answer.await.map(|r| r.map(Payload::Typed)),
                Pending::Stream(_) => unreachable!("a call slot always yields one answer"),
            },
            Payload::Dynamic(args) => {
                match cell.dyn_enqueue(&call.method, args, DynKind::Call).await? {
                    Pending::Call(answer) => answer.await.map(|r| r.map(Payload::Value)),
                    Pending::Stream(_) => unreachable!("a call slot always yields one answer"),
                }
            }
            Payload::Value(_) => Some(Err(Error::Codec(
                "call arguments must be Typed or Dynamic".into(),
            ))),
        }
        .unwrap_or_else(|| {
            Err(Error::Stopped {
                actor: label.clone(),
            })
        })
    };
    match call.deadline {
        None => work.await,
        Some(after) => tokio::time::timeout(after, work)
            .await
            .unwrap_or(Err(Error::Timeout {
                actor: label,
                method,
                after,
            })),
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
