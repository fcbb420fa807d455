//! Python objects <-> `pulsing::Value`.
//!
//! Plain data (None, bool, int, float, str, bytes, list, tuple, dict) becomes the language-neutral
//! `Value`; anything else is pickled into `{"$pickle": bytes}`. Tuples arrive as lists, except
//! inside dict keys (at any depth), which must be hashable. An int outside the `i64` range
//! travels as `{"$int": "<digits>"}` (`pulsing::value::BIG_INT`), which a Rust actor reads into
//! any integer type it fits. A dict that would read back as one of these marker maps is pickled.
//! The whole mapping is the table "Values across the boundary" in docs/python.md.
//!
//! **Pickle policy.** Unpickling runs code chosen by whoever made the bytes, so pickled values
//! cross processes only when this process joined with a cluster secret: every connection has
//! then proved the secret in the Noise handshake. Without one, converting an object that needs
//! pickle, or a `{"$pickle": ...}` value that arrived, fails with `PulsingPickleError` (which
//! names the type and says to set a secret); plain values keep working. Calls between actors of
//! one process never convert at all.
//!
//! **Byte strings without copies.** A `bytes` of [`LEND_FROM`] bytes or more is not copied into
//! its `Value`: the `Value::Bytes` borrows the object's own buffer ([`Lent`]: a strong reference
//! and the buffer's address, read while this thread holds the GIL; a `bytes` never changes or
//! moves), so the megabyte is copied once, into the outgoing frame. A `bytearray` can change
//! under the caller's feet, so it is copied. Coming back, a `Value::Bytes` decoded from a frame
//! is a slice of that frame (`pulsing::value`'s `shared.rs`) and becomes a `bytes` with one copy
//! (a `bytes` owns its memory), instead of the two through a `Vec` there were before.

use pulsing::value::{Bytes, BIG_INT};
use pulsing::{Error, Value};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};

/// The key that marks a pickled object.
pub(crate) const PICKLE: &str = "$pickle";

static PICKLE_ALLOWED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether pickled values may cross this process's boundary (`init` with a secret).
pub(crate) fn allow_pickle(allowed: bool) {
    PICKLE_ALLOWED.store(allowed, std::sync::atomic::Ordering::Release);
}

fn pickle_allowed() -> bool {
    PICKLE_ALLOWED.load(std::sync::atomic::Ordering::Acquire)
}

static PICKLE_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A `pulsing.PulsingPickleError` with `message`.
fn pickle_error(py: Python<'_>, message: String) -> PyErr {
    let class = PICKLE_ERROR.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("pulsing._errors")?
            .getattr("PulsingPickleError")?
            .unbind())
    });
    match class {
        Ok(class) => match class.bind(py).call1((message,)) {
            Ok(err) => PyErr::from_value(err),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

const SET_A_SECRET: &str = "set a cluster secret (pul.init(..., secret=...)) to send arbitrary \
     Python objects between processes; plain values (None, bool, int, float, str, bytes, list, \
     tuple, dict) need none";

static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn pickle_fn<'py>(
    py: Python<'py>,
    cell: &PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let f = cell.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("pickle")?.getattr(name)?.unbind())
    })?;
    Ok(f.bind(py).clone())
}

fn pickled(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    let py = obj.py();
    if !pickle_allowed() {
        let type_name = obj
            .get_type()
            .fully_qualified_name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".to_owned());
        return Err(pickle_error(
            py,
            format!("a {type_name} is not plain data and would need pickle: {SET_A_SECRET}"),
        ));
    }
    let dumps = pickle_fn(py, &DUMPS, "dumps")?;
    let bytes = dumps.call1((obj, 5))?;
    let bytes = bytes.cast::<PyBytes>()?;
    Ok(Value::Map(vec![(
        Value::Str(PICKLE.to_owned()),
        Value::Bytes(lend(bytes)),
    )]))
}

/// Byte strings at least this long are lent to their `Value`, shorter ones copied (a copy of a
/// few hundred bytes costs less than the shared owner `Bytes::from_owner` allocates; the same
/// threshold as a received frame's shared parts).
pub(crate) const LEND_FROM: usize = 512;

/// A `bytes` object's buffer, lent to a `Value::Bytes` for as long as any clone of it lives.
///
/// Holds a strong reference, so the object (and the buffer inside it) outlives the `Bytes`; a
/// `bytes` is immutable and never moves, so its buffer may be read on any thread without the
/// GIL. Dropped on a thread without the GIL (the runtime's, once the frame is written), the
/// reference is released by PyO3 the next time any thread enters Python.
struct Lent {
    _object: Py<PyBytes>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the buffer is immutable and owned by the object `_object` keeps alive; `Py` is Send.
unsafe impl Send for Lent {}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr`/`len` describe the buffer of `_object`, alive and immutable (see above).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// `b`'s contents as `Bytes`: its own buffer, lent (see [`Lent`]), or a copy if it is short.
fn lend(b: &Bound<'_, PyBytes>) -> Bytes {
    let data = b.as_bytes();
    if data.len() < LEND_FROM {
        return Bytes::copy_from_slice(data);
    }
    Bytes::from_owner(Lent {
        ptr: data.as_ptr(),
        len: data.len(),
        _object: b.clone().unbind(),
    })
}

/// Converts a Python object to a `Value` (pickling what is not plain data).
pub(crate) fn to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    to_value_depth(obj, 0)
}

fn to_value_depth(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if depth > 200 {
        return Err(PyValueError::new_err("value nested too deeply"));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // Exact types only: subclasses (enums, named tuples, ...) keep their type through pickle.
    if obj.is_exact_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.extract::<bool>()?));
    }
    if obj.is_exact_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::Int(i));
        }
        // Past Python's limit on int-to-text conversion (4300 digits by default): pickle.
        return match obj.str() {
            Ok(digits) => Ok(Value::Map(vec![(
                Value::Str(BIG_INT.to_owned()),
                Value::Str(digits.to_str()?.to_owned()),
            )])),
            Err(_) => pickled(obj),
        };
    }
    if obj.is_exact_instance_of::<PyFloat>() {
        return Ok(Value::Float(obj.extract::<f64>()?));
    }
    if let Ok(s) = obj.cast_exact::<PyString>() {
        return Ok(Value::Str(s.to_str()?.to_owned()));
    }
    if let Ok(b) = obj.cast_exact::<PyBytes>() {
        return Ok(Value::Bytes(lend(b)));
    }
    if let Ok(b) = obj.cast_exact::<PyByteArray>() {
        // Mutable: copied now, so a change after the call cannot reach the frame.
        return Ok(Value::bytes(b.to_vec()));
    }
    if let Ok(list) = obj.cast_exact::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for item in list.iter() {
            out.push(to_value_depth(&item, depth + 1)?);
        }
        return Ok(Value::List(out));
    }
    if let Ok(tuple) = obj.cast_exact::<PyTuple>() {
        let mut out = Vec::with_capacity(tuple.len());
        for item in tuple.iter() {
            out.push(to_value_depth(&item, depth + 1)?);
        }
        return Ok(Value::List(out));
    }
    if let Ok(dict) = obj.cast_exact::<PyDict>() {
        if dict.len() == 1 && (dict.contains(PICKLE)? || dict.contains(BIG_INT)?) {
            // Would read back as a pickled object: send the dict itself pickled.
            return pickled(obj);
        }
        let mut out = Vec::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            out.push((
                to_value_depth(&k, depth + 1)?,
                to_value_depth(&v, depth + 1)?,
            ));
        }
        return Ok(Value::Map(out));
    }
    pickled(obj)
}

/// Converts a `Value` to a Python object (unpickling `{"$pickle": bytes}`).
pub(crate) fn to_py(py: Python<'_>, value: Value) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Value::Null => py.None(),
        Value::Bool(b) => PyBool::new(py, b).to_owned().into_any().unbind(),
        Value::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        Value::Float(f) => PyFloat::new(py, f).into_any().unbind(),
        Value::Str(s) => PyString::new(py, &s).into_any().unbind(),
        Value::Bytes(b) => crate::landing::adopt(py, &b)
            .unwrap_or_else(|| PyBytes::new(py, &b).into_any().unbind()),
        Value::List(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any().unbind()
        }
        Value::Map(entries) => {
            if let [(Value::Str(k), Value::Str(digits))] = entries.as_slice() {
                if k == BIG_INT {
                    return Ok(py.get_type::<PyInt>().call1((digits.as_str(),))?.unbind());
                }
            }
            if let [(Value::Str(k), Value::Bytes(b))] = entries.as_slice() {
                if k == PICKLE {
                    if !pickle_allowed() {
                        return Err(pickle_error(
                            py,
                            format!(
                                "refused to unpickle a value from another process: this node \
                                 has no cluster secret, so its peers are not authenticated; \
                                 {SET_A_SECRET}"
                            ),
                        ));
                    }
                    let loads = pickle_fn(py, &LOADS, "loads")?;
                    return Ok(loads.call1((PyBytes::new(py, b),))?.unbind());
                }
            }
            // A repeated key keeps its last value, as in `dict(pairs)`.
            let dict = PyDict::new(py);
            for (k, v) in entries {
                dict.set_item(to_py_key(py, k)?, to_py(py, v)?)?;
            }
            dict.into_any().unbind()
        }
    })
}

/// A dict key: lists cannot be keys in Python, so they become tuples, at every depth.
fn to_py_key(py: Python<'_>, key: Value) -> PyResult<Py<PyAny>> {
    match key {
        Value::List(items) => {
            let items: PyResult<Vec<Py<PyAny>>> =
                items.into_iter().map(|i| to_py_key(py, i)).collect();
            Ok(PyTuple::new(py, items?)?.into_any().unbind())
        }
        other => to_py(py, other),
    }
}

/// Arguments of a by-name call from a Python tuple and dict.
pub(crate) fn to_args(
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<pulsing::Args> {
    let mut out = pulsing::Args {
        positional: Vec::with_capacity(args.len()),
        keyword: Vec::new(),
    };
    for a in args.iter() {
        out.positional.push(to_value(&a)?);
    }
    if let Some(kwargs) = kwargs {
        for (k, v) in kwargs.iter() {
            out.keyword.push((k.extract::<String>()?, to_value(&v)?));
        }
    }
    Ok(out)
}

/// A pulsing error as `(kind, message, fields)` for the Python side to raise as the right class.
pub(crate) fn error_tuple(py: Python<'_>, error: &Error) -> PyResult<Py<PyAny>> {
    let fields = PyDict::new(py);
    let kind = match error {
        Error::NotFound { name } => {
            fields.set_item("name", name)?;
            "NotFound"
        }
        Error::ResolveTimeout { name, waited } => {
            fields.set_item("name", name)?;
            fields.set_item("waited", waited.as_secs_f64())?;
            "ResolveTimeout"
        }
        Error::NameTaken { name, holder } => {
            fields.set_item("name", name)?;
            fields.set_item("holder", holder)?;
            "NameTaken"
        }
        Error::TypeMismatch {
            name,
            expected,
            found,
        } => {
            fields.set_item("name", name)?;
            fields.set_item("expected", expected)?;
            fields.set_item("found", found)?;
            "TypeMismatch"
        }
        Error::Timeout {
            actor,
            method,
            after,
        } => {
            fields.set_item("actor", actor)?;
            fields.set_item("method", method)?;
            fields.set_item("after", after.as_secs_f64())?;
            "Timeout"
        }
        Error::Stopped { actor } => {
            fields.set_item("actor", actor)?;
            "Stopped"
        }
        Error::MailboxFull { actor } => {
            fields.set_item("actor", actor)?;
            "MailboxFull"
        }
        Error::Panicked {
            actor,
            method,
            message,
        } => {
            fields.set_item("actor", actor)?;
            fields.set_item("method", method)?;
            fields.set_item("type_name", "panic")?;
            fields.set_item("message", message)?;
            fields.set_item("traceback", "")?;
            "Panicked"
        }
        Error::Raised {
            actor,
            method,
            kind,
            message,
            traceback,
        } => {
            fields.set_item("actor", actor)?;
            fields.set_item("method", method)?;
            fields.set_item("type_name", kind)?;
            fields.set_item("message", message)?;
            fields.set_item("traceback", traceback)?;
            "Raised"
        }
        Error::UnknownMethod {
            actor,
            method,
            available,
        } => {
            fields.set_item("actor", actor)?;
            fields.set_item("method", method)?;
            fields.set_item("available", available)?;
            "UnknownMethod"
        }
        Error::BadArguments {
            actor,
            method,
            signature,
            reason,
        } => {
            fields.set_item("actor", actor)?;
            fields.set_item("method", method)?;
            fields.set_item("signature", signature)?;
            fields.set_item("reason", reason)?;
            "BadArguments"
        }
        Error::Codec(_) => "Codec",
        Error::Unreachable { addr, .. } => {
            fields.set_item("addr", addr)?;
            "Unreachable"
        }
        Error::Refused { addr, .. } => {
            fields.set_item("addr", addr)?;
            "Refused"
        }
        Error::PeerLost { peer, .. } => {
            fields.set_item("peer", peer)?;
            "PeerLost"
        }
        Error::SystemShutdown => "SystemShutdown",
        Error::Busy {
            actor,
            method,
            limit,
        } => {
            fields.set_item("actor", actor)?;
            fields.set_item("method", method)?;
            fields.set_item("limit", limit)?;
            "Busy"
        }
        _ => "Other",
    };
    Ok((kind, error.to_string(), fields)
        .into_pyobject(py)?
        .into_any()
        .unbind())
}
