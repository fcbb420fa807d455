//! Calling actors by name from Python: [`resolve`], the untyped [`PyDynRef`] (any actor, local
//! or remote, Rust or Python) and the consumer side of a stream ([`PyStream`]).
//!
//! Each call posts its answer to the caller's loop bridge under a token (see `bridge.rs`); a
//! call's first step runs on the calling thread, so calls made at once leave in order. Streams
//! are pushed to the loop in batches by one task per stream ([`PyStream::start`]): it waits for
//! an item, takes every ready one (up to `max`) and posts them, with no request per batch from
//! the loop, so batches that arrive while the loop is busy are taken in one wake-up. The loop
//! acknowledges what it consumed ([`PyStream::ack`]); the task pauses while `window` items are
//! unacknowledged (backpressure).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use pulsing::{DynRef, ValueStream};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::bridge::{spawn_done, Bridge};
use crate::convert::{to_args, to_py};
use crate::events::{Event, Obj};
use crate::runtime::{handle, seconds, system};

/// Resolves `name` (waiting up to `timeout` seconds if given; only an actor whose type is called
/// `type_name`, if given); posts a `DynRef` to the bridge.
#[pyfunction]
#[pyo3(signature = (bridge, token, name, timeout=None, type_name=None))]
pub(crate) fn resolve(
    bridge: &Bridge,
    token: u64,
    name: String,
    timeout: Option<f64>,
    type_name: Option<String>,
) -> PyResult<()> {
    let system = system()?;
    let inner = bridge.inner.clone();
    let timeout = timeout.map(seconds).transpose()?;
    handle()?.spawn(async move {
        // With a type name, only an actor of that type (`Class.resolve`, issue #16 bug 1).
        let result = match (timeout, type_name) {
            (Some(t), Some(ty)) => system.resolve_dyn_of_wait(&name, &ty, t).await,
            (None, Some(ty)) => system.resolve_dyn_of(&name, &ty).await,
            (Some(t), None) => system.resolve_dyn_wait(&name, t).await,
            (None, None) => system.resolve_dyn(&name).await,
        };
        inner.push(Event::Obj(token, result.map(Obj::Ref)));
    });
    Ok(())
}

/// An untyped handle to any actor (local or remote, Rust or Python): by-name calls.
#[pyclass(module = "pulsing._native", name = "DynRef")]
pub(crate) struct PyDynRef {
    pub(crate) inner: DynRef,
}

#[pymethods]
impl PyDynRef {
    #[getter]
    fn type_name(&self) -> String {
        self.inner.type_name().to_owned()
    }

    #[getter]
    fn name(&self) -> Option<String> {
        self.inner.name().map(str::to_owned)
    }

    fn is_alive(&self) -> bool {
        self.inner.is_alive()
    }

    fn stop(&self) -> PyResult<()> {
        let _guard = handle()?.enter();
        self.inner.stop();
        Ok(())
    }

    /// The interface of an actor in this process, as a `Value` map (`None` for a remote one).
    fn local_interface(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.inner.interface() {
            Some(iface) => {
                let v = pulsing::value::to_value(iface)
                    .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
                Ok(Some(to_py(py, v)?))
            }
            None => Ok(None),
        }
    }

    /// Calls `method`; posts the answer to the bridge.
    #[pyo3(signature = (bridge, token, method, args, kwargs=None, timeout=None))]
    fn call(
        &self,
        bridge: &Bridge,
        token: u64,
        method: String,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let timeout = timeout.map(seconds).transpose()?;
        let args = to_args(args, kwargs)?;
        let target = self.inner.clone();
        spawn_done(bridge, token, async move {
            let call = target.call(method, args);
            match timeout {
                Some(t) => call.timeout(t).await,
                None => call.await,
            }
        })
    }

    /// Opens the stream of `method`; posts a `Stream` to the bridge.
    #[pyo3(signature = (bridge, token, method, args, kwargs=None))]
    fn stream(
        &self,
        bridge: &Bridge,
        token: u64,
        method: String,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let args = to_args(args, kwargs)?;
        let target = self.inner.clone();
        let inner = bridge.inner.clone();
        handle()?.spawn(async move {
            let result = target.stream(method, args).await;
            inner.push(Event::Obj(token, result.map(Obj::Stream)));
        });
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.inner)
    }
}

/// The consumer side of a stream: fetches items in batches.
#[pyclass(module = "pulsing._native", name = "Stream")]
pub(crate) struct PyStream {
    pub(crate) inner: Arc<StreamState>,
}

pub(crate) struct StreamState {
    stream: tokio::sync::Mutex<Option<ValueStream>>,
    /// Set (and notified) by `close`: the pushing task gives up and drops the stream.
    closed: AtomicBool,
    close: tokio::sync::Notify,
    /// Items posted to the loop and not yet acknowledged as consumed.
    unacked: AtomicUsize,
    /// Notified by `ack`, for a pushing task paused by a full window.
    acked: tokio::sync::Notify,
}

impl StreamState {
    pub(crate) fn new(stream: ValueStream) -> Self {
        StreamState {
            stream: tokio::sync::Mutex::new(Some(stream)),
            closed: AtomicBool::new(false),
            close: tokio::sync::Notify::new(),
            unacked: AtomicUsize::new(0),
            acked: tokio::sync::Notify::new(),
        }
    }

    /// Stops the stream: the producer is cancelled (by dropping it) now or when a pending fetch
    /// notices.
    fn close(self: &Arc<Self>) {
        self.closed.store(true, Ordering::Release);
        self.close.notify_one();
        if let Ok(mut guard) = self.stream.try_lock() {
            guard.take();
        }
    }
}

#[pymethods]
impl PyStream {
    /// Starts pushing the stream's items to `bridge` under `token`: batches of up to `max`
    /// ready items, pausing while `window` items are unacknowledged. The last batch says the
    /// stream ended (with an error or not); a closed stream posts nothing more.
    fn start(&self, bridge: &Bridge, token: u64, max: usize, window: usize) -> PyResult<()> {
        let state = self.inner.clone();
        let inner = bridge.inner.clone();
        handle()?.spawn(async move {
            let mut guard = state.stream.lock().await;
            loop {
                let closed = || state.closed.load(Ordering::Acquire);
                while state.unacked.load(Ordering::Acquire) >= window && !closed() {
                    tokio::select! {
                        () = state.acked.notified() => {}
                        () = state.close.notified() => {}
                    }
                }
                let Some(s) = guard.as_mut().filter(|_| !closed()) else {
                    guard.take();
                    return;
                };
                let first = tokio::select! {
                    next = s.next() => Some(next),
                    () = state.close.notified() => None,
                };
                let Some(mut next) = first else {
                    guard.take();
                    return;
                };
                let mut items = Vec::new();
                let mut end = None;
                loop {
                    match next {
                        Some(Ok(v)) => items.push(v),
                        Some(Err(e)) => {
                            end = Some(Some(e));
                            break;
                        }
                        None => {
                            end = Some(None);
                            break;
                        }
                    }
                    if items.len() >= max {
                        break;
                    }
                    match s.next().now_or_never() {
                        Some(more) => next = more,
                        None => break,
                    }
                }
                state.unacked.fetch_add(items.len(), Ordering::AcqRel);
                let ended = end.is_some();
                inner.push(Event::Items(token, items, end));
                if ended {
                    guard.take();
                    return;
                }
            }
        });
        Ok(())
    }

    /// The loop consumed `n` more items: a paused pushing task may go on.
    fn ack(&self, n: usize) {
        self.inner.unacked.fetch_sub(n, Ordering::AcqRel);
        // Wakes a paused task; otherwise only stores a permit (no thread is woken).
        self.inner.acked.notify_one();
    }

    /// Stops the stream (the producer is cancelled).
    fn close(&self) {
        self.inner.close();
    }
}

impl Drop for PyStream {
    fn drop(&mut self) {
        self.inner.close();
    }
}
