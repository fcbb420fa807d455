//! The consumer side of a peer's stream: [`PeerItems`] turns the batches the connection's reader
//! receives (`StreamMsg`) into the events of a [`ReplyStream`](crate::actor::stream::ReplyStream)
//! in the consumer's own task — no task in between, no channel send per item.
//!
//! The reader hands over one batch (`StreamItems`, up to 256 items) with one wake-up; the
//! consumer decodes each item as it takes it and grants the peer more credit each time it has
//! taken half a window. What waits here is bounded by the credit: the reader ends a stream whose
//! peer sends more than it was granted. Dropping the stream before its end cancels it on the
//! connection.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;

use crate::actor::interface::Interface;
use crate::actor::stream::StreamEvent;
use crate::error::{Error, Result};
use crate::transport::{Connection, StreamMsg};
use crate::wire::Payload;

/// The events of stream `id` on `conn`, decoded with `decode`.
pub(crate) struct PeerItems<T> {
    conn: Arc<Connection>,
    id: u64,
    incoming: mpsc::UnboundedReceiver<StreamMsg>,
    /// The rest of the batch being taken.
    batch: VecDeque<Payload>,
    decode: fn(Payload) -> Result<T>,
    /// The type a typed caller expects (to name it in a type mismatch).
    expect: Option<&'static Interface>,
    window: u32,
    since_grant: u32,
    /// The stream ended (or failed): nothing to cancel on drop.
    over: bool,
}

impl<T> PeerItems<T> {
    pub(crate) fn new(
        conn: Arc<Connection>,
        id: u64,
        incoming: mpsc::UnboundedReceiver<StreamMsg>,
        decode: fn(Payload) -> Result<T>,
        expect: Option<&'static Interface>,
        window: u32,
    ) -> Self {
        PeerItems {
            conn,
            id,
            incoming,
            batch: VecDeque::new(),
            decode,
            expect,
            window,
            since_grant: 0,
            over: false,
        }
    }

    fn end(&mut self, event: StreamEvent<T>) -> Poll<Option<StreamEvent<T>>> {
        self.over = true;
        Poll::Ready(Some(event))
    }
}

impl<T> Stream for PeerItems<T> {
    type Item = StreamEvent<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamEvent<T>>> {
        let this = self.get_mut();
        if this.over {
            return Poll::Ready(None);
        }
        loop {
            if let Some(payload) = this.batch.pop_front() {
                return match (this.decode)(payload) {
                    Ok(item) => {
                        this.since_grant += 1;
                        if this.since_grant >= this.window / 2 {
                            this.conn.grant(this.id, this.since_grant);
                            this.since_grant = 0;
                        }
                        Poll::Ready(Some(StreamEvent::Item(item)))
                    }
                    Err(e) => {
                        this.conn.cancel(this.id);
                        this.end(StreamEvent::Error(e))
                    }
                };
            }
            let msg = match this.incoming.poll_recv(cx) {
                Poll::Ready(msg) => msg,
                Poll::Pending => return Poll::Pending,
            };
            return match msg {
                Some(StreamMsg::Opened(Ok(()))) => Poll::Ready(Some(StreamEvent::Opened)),
                Some(StreamMsg::Opened(Err(e))) => {
                    let e = explain(this.expect, e);
                    this.end(StreamEvent::Error(e))
                }
                Some(StreamMsg::Items(items)) => {
                    this.batch = items.into();
                    continue;
                }
                Some(StreamMsg::End(None)) => this.end(StreamEvent::End),
                Some(StreamMsg::End(Some(e))) => this.end(StreamEvent::Error(e)),
                None => {
                    let lost = Error::PeerLost {
                        peer: this.conn.peer_addr.clone(),
                        reason: "connection closed".into(),
                    };
                    this.end(StreamEvent::Error(lost))
                }
            };
        }
    }
}

impl<T> Drop for PeerItems<T> {
    fn drop(&mut self) {
        if !self.over {
            self.conn.cancel(self.id);
        }
    }
}

/// A type mismatch reported by the peer names the expected type by the key we sent: show our
/// full identity instead.
pub(crate) fn explain(expect: Option<&'static Interface>, e: Error) -> Error {
    match e {
        Error::TypeMismatch {
            name,
            expected,
            found,
        } => Error::TypeMismatch {
            name,
            expected: expect.map_or(expected, Interface::identity),
            found,
        },
        other => other,
    }
}
