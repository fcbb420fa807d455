//! The answer objects handed to Python with a call that came through the runtime: [`PyReply`]
//! (answer a call once) and, for a streaming call, a [`PySink`] (`sink.rs`).

use pulsing::hosted::{HostedCall, HostedReply};
use pulsing::{Error, Reply, Value};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::convert::{to_py, to_value};
use crate::host::LoopCall;
use crate::sink::PySink;

/// A call through the runtime as Python values: `(method, args, kwargs, reply, stream)`; None
/// if its arguments do not convert (then it is already answered with the error).
#[allow(clippy::type_complexity)]
pub(crate) fn call_parts<'py>(
    py: Python<'py>,
    call: HostedCall,
    counted: Option<LoopCall>,
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
        drop(counted); // answered now (see `PyReply::take`)
        reply.fail(Error::Codec(format!("arguments of `{method}`: {reason}")));
        return Ok(None);
    }
    let stream = matches!(reply, HostedReply::Stream(_));
    let reply: Py<PyAny> = match reply {
        HostedReply::Call(r) => Py::new(
            py,
            PyReply {
                inner: Some(r),
                counted,
            },
        )?
        .into_any(),
        HostedReply::Stream(s) => Py::new(py, PySink::new(s))?.into_any(),
    };
    let args = PyTuple::new(py, positional.iter())?;
    Ok(Some((method, args, kwargs, reply, stream)))
}

/// The reply slot of one incoming call.
#[pyclass(module = "pulsing._native", name = "Reply")]
pub(crate) struct PyReply {
    inner: Option<Reply<Value>>,
    /// The call counted on its way through the loop (`host.rs`), until it has started
    /// ([`PyReply::placed`]) or is answered.
    counted: Option<LoopCall>,
}

impl PyReply {
    /// The reply slot, if not answered yet; the call stops counting as on its way through
    /// the loop (before the answer leaves, so the caller's next call finds it answered).
    fn take(&mut self) -> Option<Reply<Value>> {
        self.counted = None;
        self.inner.take()
    }
}

#[pymethods]
impl PyReply {
    /// The call has started (run inline, queued for the actor's workers, or awaiting): calls
    /// that come after it can no longer overtake it, so it stops counting as on its way
    /// through the loop.
    fn placed(&mut self) {
        self.counted = None;
    }

    fn is_abandoned(&self) -> bool {
        self.inner.as_ref().is_none_or(|r| r.is_abandoned())
    }

    /// Answers with `value` (a conversion failure answers with a decode error).
    fn send(&mut self, value: &Bound<'_, PyAny>) {
        if let Some(reply) = self.take() {
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
        if let Some(reply) = self.take() {
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
        if let Some(reply) = self.take() {
            reply.send(Err(Error::UnknownMethod {
                actor,
                method,
                available,
            }));
        }
    }

    /// Answers that the arguments (or the kind of call) do not fit the method.
    fn bad_arguments(&mut self, actor: String, method: String, signature: String, reason: String) {
        if let Some(reply) = self.take() {
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
        if let Some(reply) = self.take() {
            reply.send(Err(Error::Stopped { actor }));
        }
    }
}
