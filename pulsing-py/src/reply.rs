//! The answer objects handed to Python with a call that came through the runtime: [`PyReply`]
//! (answer a call once) and [`PySink`] (the producer side of a stream a Python actor serves,
//! bounded: `try_send` answers a [`SendResult`]).

use pulsing::hosted::{HostedCall, HostedReply, SinkSend, StreamSink};
use pulsing::{Error, Reply, Value};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::bridge::{spawn_done, Bridge};
use crate::convert::{to_py, to_value};
use crate::events::Event;
use crate::runtime::handle;

/// What [`PySink::try_send`] did with an item (returned as an int; the Python side's
/// `_serve.SendResult` is an `IntEnum` built from these values).
#[pyclass(module = "pulsing._native", eq, eq_int, frozen)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendResult {
    /// Sent.
    Sent = 0,
    /// The buffer is full: wait with `ready`, then send again.
    Full = 1,
    /// The consumer left.
    Closed = 2,
}

/// A call through the runtime as Python values: `(method, args, kwargs, reply, stream)`; None
/// if its arguments do not convert (then it is already answered with the error).
#[allow(clippy::type_complexity)]
pub(crate) fn call_parts<'py>(
    py: Python<'py>,
    call: HostedCall,
) -> PyResult<
    Option<(
        String,
        Bound<'py, PyTuple>,
        Bound<'py, PyDict>,
        Py<PyAny>,
        bool,
    )>,
> {
    let HostedCall {
        method,
        args,
        reply,
    } = call;
    let positional = PyList::empty(py);
    let kwargs = PyDict::new(py);
    let mut bad = None;
    for a in args.positional {
        match to_py(py, a) {
            Ok(o) => positional.append(o)?,
            Err(e) => bad = Some(e.to_string()),
        }
    }
    for (k, v) in args.keyword {
        match to_py(py, v) {
            Ok(o) => kwargs.set_item(k, o)?,
            Err(e) => bad = Some(e.to_string()),
        }
    }
    if let Some(reason) = bad {
        reply.fail(Error::Codec(format!("arguments of `{method}`: {reason}")));
        return Ok(None);
    }
    let stream = matches!(reply, HostedReply::Stream(_));
    let reply: Py<PyAny> = match reply {
        HostedReply::Call(r) => Py::new(py, PyReply { inner: Some(r) })?.into_any(),
        HostedReply::Stream(s) => Py::new(
            py,
            PySink {
                inner: Some(s),
                watcher: None,
            },
        )?
        .into_any(),
    };
    let args = PyTuple::new(py, positional.iter())?;
    Ok(Some((method, args, kwargs, reply, stream)))
}

/// The reply slot of one incoming call.
#[pyclass(module = "pulsing._native", name = "Reply")]
pub(crate) struct PyReply {
    inner: Option<Reply<Value>>,
}

#[pymethods]
impl PyReply {
    fn is_abandoned(&self) -> bool {
        self.inner.as_ref().is_none_or(|r| r.is_abandoned())
    }

    /// Answers with `value` (a conversion failure answers with a decode error).
    fn send(&mut self, value: &Bound<'_, PyAny>) {
        if let Some(reply) = self.inner.take() {
            reply.send(to_value(value).map_err(|e| Error::Codec(e.to_string())));
        }
    }

    /// Answers with an exception raised by the actor.
    fn raised(
        &mut self,
        actor: String,
        method: String,
        kind: String,
        message: String,
        traceback: String,
    ) {
        if let Some(reply) = self.inner.take() {
            reply.send(Err(Error::Raised {
                actor,
                method,
                kind,
                message,
                traceback,
            }));
        }
    }

    /// Answers that the actor has no such method.
    fn unknown(&mut self, actor: String, method: String, available: String) {
        if let Some(reply) = self.inner.take() {
            reply.send(Err(Error::UnknownMethod {
                actor,
                method,
                available,
            }));
        }
    }

    /// Answers that the arguments (or the kind of call) do not fit the method.
    fn bad_arguments(&mut self, actor: String, method: String, signature: String, reason: String) {
        if let Some(reply) = self.inner.take() {
            reply.send(Err(Error::BadArguments {
                actor,
                method,
                signature,
                reason,
            }));
        }
    }

    /// Answers that the actor has stopped.
    fn stopped(&mut self, actor: String) {
        if let Some(reply) = self.inner.take() {
            reply.send(Err(Error::Stopped { actor }));
        }
    }
}

/// The producer side of a stream served by a Python actor.
#[pyclass(module = "pulsing._native", name = "Sink")]
pub(crate) struct PySink {
    inner: Option<StreamSink>,
    watcher: Option<tokio::task::AbortHandle>,
}

impl PySink {
    fn finish(&mut self) -> Option<StreamSink> {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        self.inner.take()
    }
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

    /// Sends `item` if there is room: a [`SendResult`] (as an int).
    fn try_send(&self, item: &Bound<'_, PyAny>) -> PyResult<u8> {
        let Some(sink) = &self.inner else {
            return Ok(SendResult::Closed as u8);
        };
        let value = to_value(item)?;
        Ok(match sink.try_send(value) {
            SinkSend::Sent => SendResult::Sent,
            SinkSend::Full(_) => SendResult::Full,
            SinkSend::Closed => SendResult::Closed,
        } as u8)
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
        if let Some(sink) = self.finish() {
            handle()?.spawn(sink.end());
        }
        Ok(())
    }

    fn raised(
        &mut self,
        actor: String,
        method: String,
        kind: String,
        message: String,
        traceback: String,
    ) -> PyResult<()> {
        if let Some(sink) = self.finish() {
            handle()?.spawn(sink.fail(Error::Raised {
                actor,
                method,
                kind,
                message,
                traceback,
            }));
        }
        Ok(())
    }

    fn bad_arguments(
        &mut self,
        actor: String,
        method: String,
        signature: String,
        reason: String,
    ) -> PyResult<()> {
        if let Some(sink) = self.finish() {
            handle()?.spawn(sink.fail(Error::BadArguments {
                actor,
                method,
                signature,
                reason,
            }));
        }
        Ok(())
    }

    fn unknown(&mut self, actor: String, method: String, available: String) -> PyResult<()> {
        if let Some(sink) = self.finish() {
            handle()?.spawn(sink.fail(Error::UnknownMethod {
                actor,
                method,
                available,
            }));
        }
        Ok(())
    }
}
