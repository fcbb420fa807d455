//! Streaming replies, the consumer side: [`ReplyStream`] (typed items) and [`ConvertedStream`]
//! (items converted for a by-name or remote caller).
//!
//! A streaming method returns a `Send + 'static` stream. The actor's turn ends as soon as the
//! stream exists; a separate task (the [pump](super::pump)) moves items into a bounded buffer, so
//! a slow consumer holds back the producer and never the actor. Dropping the [`ReplyStream`]
//! stops the pump and drops the producer.
//!
//! ```
//! # use pulsing::prelude::*;
//! pub struct Ticker;
//!
//! #[pulsing::remote]
//! impl Ticker {
//!     pub fn count_to(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
//!         futures_util::stream::iter(1..=n)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pulsing::Result<()> {
//! let system = ActorSystem::builder().build().await?;
//! let ticker = Ticker::spawn(&system, Ticker).await?;
//! let mut items = ticker.count_to(3).await?;
//! let mut seen = Vec::new();
//! while let Some(item) = items.next().await {
//!     seen.push(item?);
//! }
//! assert_eq!(seen, [1, 2, 3]);
//! # system.shutdown().await; Ok(()) }
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_core::Stream;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::value::Value;

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

/// The items of a streaming call, in order, each a `Result`: an `Err` item ends the stream.
///
/// Ends with `None` after the producer's last item. If the producer fails (an error, a panic, the
/// actor stopping) the stream yields that error once, then `None`. Dropping it cancels the producer.
#[must_use = "a stream does nothing unless polled; dropping it cancels the producer"]
pub struct ReplyStream<T> {
    events: Events<T>,
    actor: Arc<str>,
    done: bool,
}

/// Where a stream's events come from: the pump's channel (an actor in this process), or
/// another source (a peer's batches, `cluster/items.rs`).
enum Events<T> {
    Channel(mpsc::Receiver<StreamEvent<T>>),
    Source(Pin<Box<dyn Stream<Item = StreamEvent<T>> + Send + Sync>>),
}

impl<T> std::fmt::Debug for ReplyStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyStream")
            .field("actor", &self.actor)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T> ReplyStream<T> {
    pub(crate) fn new(rx: mpsc::Receiver<StreamEvent<T>>, actor: Arc<str>) -> Self {
        ReplyStream {
            events: Events::Channel(rx),
            actor,
            done: false,
        }
    }

    /// A stream whose events come from `events` (which ends after `End` or `Error`).
    pub(crate) fn from_events(
        events: Pin<Box<dyn Stream<Item = StreamEvent<T>> + Send + Sync>>,
        actor: Arc<str>,
    ) -> Self {
        ReplyStream {
            events: Events::Source(events),
            actor,
            done: false,
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<StreamEvent<T>>> {
        match &mut self.events {
            Events::Channel(rx) => rx.poll_recv(cx),
            Events::Source(source) => source.as_mut().poll_next(cx),
        }
    }

    /// Waits for the `Opened` event: the actor has run the method and the stream exists.
    pub(crate) async fn opened(mut self) -> Result<Self> {
        match std::future::poll_fn(|cx| self.poll_event(cx)).await {
            Some(StreamEvent::Opened) => Ok(self),
            Some(StreamEvent::Error(e)) => Err(e),
            Some(StreamEvent::Item(_) | StreamEvent::End) => {
                unreachable!("a stream pump always sends Opened first")
            }
            None => Err(Error::Stopped {
                actor: self.actor.to_string(),
            }),
        }
    }
}

impl<T> Stream for ReplyStream<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            let event = ready!(self.poll_event(cx));
            return Poll::Ready(match event {
                Some(StreamEvent::Item(item)) => Some(Ok(item)),
                Some(StreamEvent::Opened) => continue,
                Some(StreamEvent::End) => {
                    self.done = true;
                    None
                }
                Some(StreamEvent::Error(e)) => {
                    self.done = true;
                    Some(Err(e))
                }
                None => {
                    self.done = true;
                    Some(Err(Error::Stopped {
                        actor: self.actor.to_string(),
                    }))
                }
            });
        }
    }
}

/// The items of a stream, each converted from its typed form (to a [`Value`] for by-name callers,
/// to bytes for remote ones). A failed conversion ends the stream with its error.
#[must_use = "a stream does nothing unless polled; dropping it cancels the producer"]
pub struct ConvertedStream<O> {
    inner: Pin<Box<dyn Stream<Item = Result<O>> + Send>>,
}

/// A stream of [`Value`] items: what a by-name streaming call yields, whatever the item type.
pub type ValueStream = ConvertedStream<Value>;

impl<O: Send + 'static> ConvertedStream<O> {
    /// A stream whose items already have the wanted form (no conversion, no copy).
    pub(crate) fn unconverted(stream: ReplyStream<O>) -> Self {
        ConvertedStream {
            inner: Box::pin(stream),
        }
    }

    /// Converts each item of a typed stream with `convert`.
    pub(crate) fn from_typed<T: Send + 'static>(
        typed: ReplyStream<T>,
        convert: fn(&T) -> Result<O>,
    ) -> Self {
        let converted = typed.scan(false, move |failed, item| {
            let item = (!*failed).then(|| item.and_then(|v| convert(&v)));
            *failed = !matches!(item, Some(Ok(_)));
            std::future::ready(item)
        });
        ConvertedStream {
            inner: Box::pin(converted),
        }
    }
}

impl<O> Stream for ConvertedStream<O> {
    type Item = Result<O>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl<O> std::fmt::Debug for ConvertedStream<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConvertedStream")
    }
}
