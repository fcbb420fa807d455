//! The producer side of a stream a Python actor serves: [`PySink`], which hands items to the
//! runtime in batches.
//!
//! Each item the runtime's stream buffer receives wakes the runtime task that forwards it to
//! the connection when that task waits — a thread wake-up per item or per few items, which was
//! most of a served stream's CPU (issue #15). So `try_send` keeps up to [`BATCH`] items here
//! and passes them on together: when the batch is full, and when the loop calls `flush` (the
//! Python side schedules it with `call_soon` when a batch starts, so items are never held
//! past the producer's next suspension). Items keep their order; `try_send` says `Full` (the
//! item is not taken) only while a full batch cannot be passed on, and `ready` waits for room.
//! Ending the stream passes on what is left first.

use std::collections::VecDeque;

use pulsing::hosted::{SinkSend, StreamSink};
use pulsing::{Error, Value};
use pyo3::prelude::*;

use crate::bridge::{spawn_done, Bridge};
use crate::convert::to_value;
use crate::events::Event;
use crate::runtime::handle;

/// Items kept before they are passed on to the runtime together.
const BATCH: usize = 64;

/// What [`PySink::try_send`] did with an item (returned as an int; the Python side's
/// `_serve.SendResult` is an `IntEnum` built from these values).
#[pyclass(module = "pulsing._native", eq, eq_int, frozen)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendResult {
    /// Taken.
    Sent = 0,
    /// The buffer is full: wait with `ready`, then send again.
    Full = 1,
    /// The consumer left.
    Closed = 2,
}

/// The producer side of a stream served by a Python actor.
#[pyclass(module = "pulsing._native", name = "Sink")]
pub(crate) struct PySink {
    inner: Option<StreamSink>,
    /// Items taken and not yet passed on, in order.
    batch: VecDeque<Value>,
    watcher: Option<tokio::task::AbortHandle>,
}

impl PySink {
    pub(crate) fn new(sink: StreamSink) -> Self {
        PySink {
            inner: Some(sink),
            batch: VecDeque::new(),
            watcher: None,
        }
    }

    /// Passes on what the runtime's buffer has room for; `Closed` if the consumer left.
    fn pass_on(&mut self) -> SendResult {
        let Some(sink) = &self.inner else {
            self.batch.clear();
            return SendResult::Closed;
        };
        while let Some(item) = self.batch.pop_front() {
            match sink.try_send(item) {
                SinkSend::Sent => {}
                SinkSend::Full(item) => {
                    self.batch.push_front(item);
                    return SendResult::Full;
                }
                SinkSend::Closed => {
                    self.batch.clear();
                    return SendResult::Closed;
                }
            }
        }
        SendResult::Sent
    }

    /// Stops watching and gives up the sink with the items still to pass on.
    fn finish(&mut self) -> Option<(StreamSink, VecDeque<Value>)> {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        let batch = std::mem::take(&mut self.batch);
        self.inner.take().map(|sink| (sink, batch))
    }

    /// Ends the stream (passing on the last items first) with `error`, or normally.
    fn end_with(&mut self, error: Option<Error>) -> PyResult<()> {
        if let Some((sink, batch)) = self.finish() {
            handle()?.spawn(async move {
                if !pass_all(&sink, batch).await {
                    return;
                }
                match error {
                    Some(e) => sink.fail(e).await,
                    None => sink.end().await,
                }
            });
        }
        Ok(())
    }
}

/// Passes on every item, waiting for room as needed; false once the consumer has gone.
async fn pass_all(sink: &StreamSink, batch: VecDeque<Value>) -> bool {
    for mut item in batch {
        loop {
            match sink.try_send(item) {
                SinkSend::Sent => break,
                SinkSend::Full(back) => {
                    if !sink.ready().await {
                        return false;
                    }
                    item = back;
                }
                SinkSend::Closed => return false,
            }
        }
    }
    true
}

impl Drop for PySink {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
    }
}

#[pymethods]
impl PySink {
    fn open(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.open())
    }

    /// Takes `item` if there is room: a [`SendResult`] (as an int). A full batch is passed on.
    fn try_send(&mut self, item: &Bound<'_, PyAny>) -> PyResult<u8> {
        if self.inner.is_none() {
            return Ok(SendResult::Closed as u8);
        }
        if self.batch.len() >= BATCH {
            match self.pass_on() {
                SendResult::Closed => return Ok(SendResult::Closed as u8),
                _ if self.batch.len() >= BATCH => return Ok(SendResult::Full as u8),
                _ => {}
            }
        }
        self.batch.push_back(to_value(item)?);
        if self.batch.len() >= BATCH && self.pass_on() == SendResult::Closed {
            return Ok(SendResult::Closed as u8);
        }
        Ok(SendResult::Sent as u8)
    }

    /// Passes on the items taken so far, as far as there is room: a [`SendResult`] (as an
    /// int; `Full`: some are left, wait with `ready` and flush again).
    fn flush(&mut self) -> u8 {
        self.pass_on() as u8
    }

    /// Posts `True` to the bridge once there is room (`False` if the consumer left).
    fn ready(&self, bridge: &Bridge, token: u64) -> PyResult<()> {
        let sink = self.inner.clone();
        spawn_done(bridge, token, async move {
            Ok(Value::Bool(match sink {
                Some(s) => s.ready().await,
                None => false,
            }))
        })
    }

    /// Posts `None` to the bridge once the consumer has gone (until the stream ends here).
    fn watch_closed(&mut self, bridge: &Bridge, token: u64) -> PyResult<()> {
        let Some(sink) = self.inner.clone() else {
            return Ok(());
        };
        let inner = bridge.inner.clone();
        let task = handle()?.spawn(async move {
            sink.closed().await;
            inner.push(Event::Done(token, Ok(Value::Null)));
        });
        self.watcher = Some(task.abort_handle());
        Ok(())
    }

    fn end(&mut self) -> PyResult<()> {
        self.end_with(None)
    }

    fn raised(
        &mut self,
        actor: String,
        method: String,
        kind: String,
        message: String,
        traceback: String,
    ) -> PyResult<()> {
        self.end_with(Some(Error::Raised {
            actor,
            method,
            kind,
            message,
            traceback,
        }))
    }

    fn bad_arguments(
        &mut self,
        actor: String,
        method: String,
        signature: String,
        reason: String,
    ) -> PyResult<()> {
        self.end_with(Some(Error::BadArguments {
            actor,
            method,
            signature,
            reason,
        }))
    }

    fn unknown(&mut self, actor: String, method: String, available: String) -> PyResult<()> {
        self.end_with(Some(Error::UnknownMethod {
            actor,
            method,
            available,
        }))
    }
}
