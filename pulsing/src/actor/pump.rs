//! The stream pump: the task that moves a streaming method's items to its consumer.
//!
//! The handler creates the stream and hands it here, so the actor's turn ends at once. The pump
//! sends `Opened`, then the items into a bounded channel (the consumer's pace holds the producer
//! back), then `End` or `Error`. Dropping the consumer closes the channel; the pump notices and
//! drops the producer. A shutdown of the system ends every open stream with
//! [`Error::SystemShutdown`].

use std::panic::AssertUnwindSafe;

use futures_core::Stream;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::panic::panic_message;
use super::stream::StreamEvent;
use crate::error::Error;

/// Spawns the task that moves `stream`'s items into `tx`.
///
/// Stops early when the consumer goes away or the system shuts down; a panic in the producer
/// becomes an error item.
pub(crate) fn spawn_pump<S>(
    stream: S,
    tx: mpsc::Sender<StreamEvent<S::Item>>,
    shutdown: CancellationToken,
    actor: String,
    method: &'static str,
) where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    tokio::spawn(async move {
        if tx.send(StreamEvent::Opened).await.is_err() {
            return;
        }
        let mut stream = std::pin::pin!(AssertUnwindSafe(stream).catch_unwind());
        loop {
            // An always-ready producer never lets the select below see the shutdown signal.
            if shutdown.is_cancelled() {
                let _ = tx.send(StreamEvent::Error(Error::SystemShutdown)).await;
                return;
            }
            let event = tokio::select! {
                biased;
                next = stream.next() => match next {
                    None => StreamEvent::End,
                    Some(Ok(item)) => StreamEvent::Item(item),
                    Some(Err(panic)) => StreamEvent::Error(Error::Panicked {
                        actor: actor.clone(),
                        method: method.to_owned(),
                        message: panic_message(&*panic),
                    }),
                },
                () = tx.closed() => return,
                () = shutdown.cancelled() => StreamEvent::Error(Error::SystemShutdown),
            };
            let last = !matches!(event, StreamEvent::Item(_));
            if tx.send(event).await.is_err() || last {
                return;
            }
        }
    });
}
