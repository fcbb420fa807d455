//! What crosses from the runtime's threads to an event loop, and how it looks in Python.
//!
//! Tokio tasks push an [`Event`] (plain Rust data, never a Python object) into a loop's bridge;
//! the loop thread turns it into a tuple whose first item is an [`EventKind`] (as an int: the
//! Python side's `_bridge.EventKind` is an `IntEnum` built from this enum's values).

use std::sync::Arc;

use pulsing::hosted::HostedCall;
use pulsing::{DynRef, Error, Value, ValueStream};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::client::{PyDynRef, PyStream, StreamState};
use crate::convert::{error_tuple, to_py};
use crate::host::LoopCall;
use crate::reply::call_parts;

/// The kind of an event handed to Python: the first item of each tuple `Bridge.take` returns.
#[pyclass(module = "pulsing._native", eq, eq_int, frozen)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `(kind, token, ok, value_or_error)`: a call finished.
    Done = 0,
    /// `(kind, token, ok, obj_or_error)`: a resolved `DynRef` or an opened `Stream`.
    Obj = 1,
    /// `(kind, token, items, ended, error_or_None)`: a batch of stream items.
    Items = 2,
    /// `(kind, host, method, args, kwargs, reply, stream)`: a call for a Python actor.
    Incoming = 3,
    /// `(kind, host)`: the runtime stopped that actor.
    HostStopped = 4,
    /// `(kind, host)`: that actor's `def` calls need a worker.
    Drain = 5,
}

pub(crate) enum Event {
    /// A call finished.
    Done(u64, Result<Value, Error>),
    /// A call that yields an object finished (a resolved ref, an opened stream).
    Obj(u64, Result<Obj, Error>),
    /// A batch of stream items; `end`: the stream is over (with an error or not).
    Items(u64, Vec<Value>, Option<Option<Error>>),
    /// A call for a Python actor of this loop (counted until the loop has started it, for an
    /// actor that keeps its `def` calls in order with it: `host.rs`).
    Incoming(u64, HostedCall, Option<LoopCall>),
    /// A Python actor of this loop was stopped by the runtime (from a peer, or a Rust caller).
    HostStopped(u64),
    /// A Python actor's `def` calls need a worker to drain them (no worker was waiting).
    Drain(u64),
}

pub(crate) enum Obj {
    Ref(DynRef),
    Stream(ValueStream),
}

impl Event {
    /// The event as a Python tuple (see [`EventKind`]); `None` for a call whose arguments do not
    /// convert (it is already answered with the error).
    pub(crate) fn into_py(self, py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
        let tuple = match self {
            Event::Done(token, result) => match result {
                Ok(v) => match to_py(py, v) {
                    Ok(obj) => (EventKind::Done as u8, token, true, obj)
                        .into_pyobject(py)?
                        .into_any(),
                    Err(e) => {
                        let err = error_tuple(py, &Error::Codec(e.to_string()))?;
                        (EventKind::Done as u8, token, false, err)
                            .into_pyobject(py)?
                            .into_any()
                    }
                },
                Err(e) => (EventKind::Done as u8, token, false, error_tuple(py, &e)?)
                    .into_pyobject(py)?
                    .into_any(),
            },
            Event::Obj(token, result) => match result {
                Ok(Obj::Ref(r)) => {
                    let obj = Py::new(py, PyDynRef { inner: r })?;
                    (EventKind::Obj as u8, token, true, obj)
                        .into_pyobject(py)?
                        .into_any()
                }
                Ok(Obj::Stream(s)) => {
                    let obj = Py::new(
                        py,
                        PyStream {
                            inner: Arc::new(StreamState::new(s)),
                        },
                    )?;
                    (EventKind::Obj as u8, token, true, obj)
                        .into_pyobject(py)?
                        .into_any()
                }
                Err(e) => (EventKind::Obj as u8, token, false, error_tuple(py, &e)?)
                    .into_pyobject(py)?
                    .into_any(),
            },
            Event::Items(token, items, end) => {
                let list = PyList::empty(py);
                let mut failure = None;
                for item in items {
                    match to_py(py, item) {
                        Ok(obj) => list.append(obj)?,
                        Err(e) => {
                            failure = Some(Error::Codec(e.to_string()));
                            break;
                        }
                    }
                }
                let (ended, err) = match (failure, end) {
                    (Some(e), _) => (true, Some(e)),
                    (None, Some(e)) => (true, e),
                    (None, None) => (false, None),
                };
                let err = match err {
                    Some(e) => error_tuple(py, &e)?,
                    None => py.None(),
                };
                (EventKind::Items as u8, token, list, ended, err)
                    .into_pyobject(py)?
                    .into_any()
            }
            Event::HostStopped(host) => (EventKind::HostStopped as u8, host)
                .into_pyobject(py)?
                .into_any(),
            Event::Incoming(host, call, counted) => match call_parts(py, call, counted)? {
                Some((method, args, kwargs, reply, stream)) => (
                    EventKind::Incoming as u8,
                    host,
                    method,
                    args,
                    kwargs,
                    reply,
                    stream,
                )
                    .into_pyobject(py)?
                    .into_any(),
                None => return Ok(None),
            },
            Event::Drain(host) => (EventKind::Drain as u8, host).into_pyobject(py)?.into_any(),
        };
        Ok(Some(tuple))
    }
}
