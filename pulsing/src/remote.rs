//! Client side of calls to actors on other nodes: a remote [`ActorRef`](crate::ActorRef) holds a
//! [`RemoteActor`] and sends typed calls as postcard bytes over the connection to the actor's node.
//!
//! Streams cross the wire under a credit window: the consumer grants as many items as its buffer
//! holds and grants more as it takes them, so a slow consumer holds back the remote producer.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::reply::StreamEvent;
use crate::stream::ReplyStream;
use crate::transport::{Connection, Outcome, Outgoing, StreamMsg, SWEPT_DEADLINE};
use crate::wire::{Payload, SharedBytes};
use crate::{Error, Result, Value};

/// An actor on another node, as seen from here.
#[derive(Debug)]
pub(crate) struct RemoteActor {
    pub(crate) conn: Arc<Connection>,
    pub(crate) name: String,
    pub(crate) id: u64,
    pub(crate) type_name: String,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) stream_buffer: usize,
}

impl RemoteActor {
    /// `Counter#3 "counter" @ 127.0.0.1:9000`.
    pub(crate) fn label(&self) -> String {
        format!(
            "{}#{} {:?} @ {}",
            self.type_name, self.id, self.name, self.conn.peer_addr
        )
    }

    /// A typed call: postcard arguments in, postcard result out.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        args: Result<SharedBytes>,
        timeout: Option<Duration>,
    ) -> Result<T> {
        let typed = Payload::Typed(args?);
        let call = self.conn.call(self.outgoing(method, true, typed, timeout));
        let payload = self.with_deadline(method, timeout, call).await?;
        decode_typed(payload)
    }

    /// A by-name call with [`Value`] arguments.
    pub(crate) async fn call_dyn(
        &self,
        method: &str,
        args: crate::Args,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        let call = self
            .conn
            .call(self.outgoing(method, false, Payload::Dynamic(args), timeout));
        match self.with_deadline(method, timeout, call).await? {
            Payload::Value(v) => Ok(v),
            other => Err(Error::Codec(format!(
                "expected a Value reply, got {other:?}"
            ))),
        }
    }

    /// Sends a call without waiting for its result.
    pub(crate) async fn tell(&self, method: &str, args: Result<SharedBytes>) -> Result<()> {
        let typed = Payload::Typed(args?);
        self.conn
            .tell(self.outgoing(method, true, typed, None))
            .await
    }

    /// A request to this actor; `typed` requests are checked against its type by the peer.
    fn outgoing<'a>(
        &'a self,
        method: &'a str,
        typed: bool,
        args: Payload,
        deadline: Option<Duration>,
    ) -> Outgoing<'a> {
        Outgoing {
            actor: &self.name,
            expect_type: typed.then_some(self.type_name.as_str()),
            method,
            args,
            deadline,
        }
    }

    /// Waits for `work` (a call on the connection), failing with `Timeout` after `timeout`: the
    /// connection enforces long deadlines itself; short ones get a timer here.
    async fn with_deadline(
        &self,
        method: &str,
        timeout: Option<Duration>,
        work: impl std::future::Future<Output = Outcome>,
    ) -> Result<Payload> {
        let outcome = match timeout {
            Some(after) if after < SWEPT_DEADLINE => tokio::time::timeout(after, work)
                .await
                .unwrap_or(Outcome::Expired),
            _ => work.await,
        };
        match outcome {
            Outcome::Answered(result) => result,
            Outcome::Expired => Err(Error::Timeout {
                actor: self.label(),
                method: method.to_owned(),
                after: timeout.unwrap_or_default(),
            }),
        }
    }

    /// Opens a remote stream; its items arrive typed, through the same [`ReplyStream`] as local ones.
    pub(crate) async fn stream<T: DeserializeOwned + Send + 'static>(
        &self,
        method: &str,
        args: Payload,
        expect_type: bool,
        decode: fn(Payload) -> Result<T>,
        timeout: Option<Duration>,
    ) -> Result<ReplyStream<T>> {
        let open = async {
            // The first window of credit travels with the request itself.
            let window = (self.stream_buffer * 8).max(256) as u32;
            let (id, mut incoming) = self
                .conn
                .open_stream(self.outgoing(method, expect_type, args, timeout), window)
                .await?;
            // Room for half a window: a whole batch is handed over without a wake-up per item
            // (the window still bounds what is in flight; credit follows what is handed over).
            let (tx, rx) = mpsc::channel(self.stream_buffer.max(window as usize / 2));
            let conn = self.conn.clone();
            tokio::spawn(async move {
                let mut since_grant = 0u32;
                loop {
                    let msg = tokio::select! {
                        msg = incoming.recv() => msg,
                        () = tx.closed() => {
                            conn.cancel(id);
                            return;
                        }
                    };
                    let (items, end) = match msg {
                        Some(StreamMsg::Opened(Ok(()))) => {
                            if tx.send(StreamEvent::Opened).await.is_err() {
                                conn.cancel(id);
                                return;
                            }
                            continue;
                        }
                        Some(StreamMsg::Opened(Err(e))) => {
                            (Vec::new(), Some(StreamEvent::Error(e)))
                        }
                        Some(StreamMsg::Items(items)) => (items, None),
                        Some(StreamMsg::End(None)) => (Vec::new(), Some(StreamEvent::End)),
                        Some(StreamMsg::End(Some(e))) => (Vec::new(), Some(StreamEvent::Error(e))),
                        None => (
                            Vec::new(),
                            Some(StreamEvent::Error(Error::PeerLost {
                                peer: conn.peer_addr.clone(),
                                reason: "connection closed".into(),
                            })),
                        ),
                    };
                    for payload in items {
                        let event = match decode(payload) {
                            Ok(item) => StreamEvent::Item(item),
                            Err(e) => {
                                conn.cancel(id);
                                let _ = tx.send(StreamEvent::Error(e)).await;
                                return;
                            }
                        };
                        if tx.send(event).await.is_err() {
                            conn.cancel(id);
                            return;
                        }
                        since_grant += 1;
                        if since_grant >= window / 2 {
                            conn.grant(id, since_grant);
                            since_grant = 0;
                        }
                    }
                    if let Some(end) = end {
                        let _ = tx.send(end).await;
                        return;
                    }
                }
            });
            ReplyStream::new(rx, Arc::from(self.label())).opened().await
        };
        match timeout {
            None => open.await,
            Some(after) => tokio::time::timeout(after, open).await.unwrap_or_else(|_| {
                Err(Error::Timeout {
                    actor: self.label(),
                    method: method.to_owned(),
                    after,
                })
            }),
        }
    }
}

/// Encodes a typed argument tuple (small ones without allocating).
pub(crate) fn encode_args<Args: Serialize>(args: &Args) -> Result<SharedBytes> {
    SharedBytes::encode(args).map_err(|e| Error::Codec(e.to_string()))
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

/// Decodes a by-name (Value) payload.
pub(crate) fn decode_value(payload: Payload) -> Result<Value> {
    match payload {
        Payload::Value(v) => Ok(v),
        other => Err(Error::Codec(format!(
            "expected a Value item, got {other:?}"
        ))),
    }
}
