//! Large received byte strings read straight into Python `bytes` objects.
//!
//! The runtime reads each large byte string of a message (a fragment of its own: see
//! `pulsing::value::land_with`) into a buffer this module's [`land`] hook provides: on a thread
//! that drives the runtime for Python (a loop waiting in `Bridge.idle`/`hold`, a blocking call;
//! [`for_python`]), a fresh `bytes` object of the right size, allocated under the GIL (taken
//! back for a moment: that thread gave it up only to wait) and written by the socket read with
//! the GIL released — nobody else can see the object yet. Converting the `Value::Bytes` to
//! Python then hands over that very object ([`adopt`]) instead of copying the megabyte into a
//! new one. On the driver thread (while Python runs) the hook declines, since taking the GIL
//! there would make the runtime wait for Python, and the bytes are copied as before.
//!
//! While it waits for the GIL, the reading thread holds no lock another thread could wait on
//! with the GIL held: the connection's write half is only ever tried by other threads
//! (`write_now`), and every call from Python that waits on the runtime releases the GIL first.
//!
//! A landed buffer is a `Bytes` whose owner holds a strong reference to the object; a registry
//! of the live ones (address, length, object) lets [`adopt`] find the object from the `Bytes`.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use pulsing::value::{Bytes, Landing, LAND_FROM};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

thread_local! {
    /// This thread drives the runtime on behalf of Python (it may take the GIL back).
    static FOR_PYTHON: Cell<bool> = const { Cell::new(false) };
}

/// How many byte strings were landed in a `bytes` object so far.
static LANDED_COUNT: AtomicU64 = AtomicU64::new(0);

/// The landed buffers alive: (address, length, the `bytes` object).
static LANDED: Mutex<Vec<(usize, usize, usize)>> = Mutex::new(Vec::new());

/// Installs [`land`] for this process's connections (once).
pub(crate) fn install() {
    pulsing::value::land_with(land);
}

/// Runs `drive` with this thread marked as driving for Python (see the module's docs).
pub(crate) fn for_python<T>(drive: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            FOR_PYTHON.with(|f| f.set(self.0));
        }
    }
    let _reset = Reset(FOR_PYTHON.with(|f| f.replace(true)));
    drive()
}

/// The hook: a fresh `bytes` of `len` bytes, on a thread driving for Python.
fn land(len: usize) -> Option<Box<dyn Landing>> {
    if !FOR_PYTHON.with(Cell::get) {
        return None;
    }
    let size = isize::try_from(len).ok()?;
    Python::attach(|py| {
        // SAFETY: a NULL source asks for an uninitialised object of `size` bytes; a new
        // reference or NULL (an error, cleared here: the default buffer is used instead).
        let object = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), size) };
        if object.is_null() {
            let _ = PyErr::take(py);
            return None;
        }
        // SAFETY: a new, owned reference to a `bytes`.
        let object: Py<PyBytes> =
            unsafe { Bound::from_owned_ptr(py, object).cast_into_unchecked() }.unbind();
        // SAFETY: the object is a `bytes`; its buffer is `len` bytes (plus a NUL) and lives
        // as long as the object.
        let data = unsafe { ffi::PyBytes_AsString(object.as_ptr()) }.cast::<u8>();
        LANDED_COUNT.fetch_add(1, Ordering::Relaxed);
        Some(Box::new(Landed { object, data, len }) as Box<dyn Landing>)
    })
}

/// A `bytes` object being written by the runtime, then the `Bytes` that shares its buffer.
struct Landed {
    object: Py<PyBytes>,
    data: *mut u8,
    len: usize,
}

// SAFETY: the object is referenced from here only until it is handed out, and its buffer is
// owned by it; `Py` is Send.
unsafe impl Send for Landed {}

// SAFETY: `buffer` is always the object's own `len` bytes, and `into_bytes` returns them.
unsafe impl Landing for Landed {
    fn buffer(&mut self) -> &mut [MaybeUninit<u8>] {
        // SAFETY: the object's buffer, `len` bytes, seen by nobody else before `into_bytes`.
        unsafe { std::slice::from_raw_parts_mut(self.data.cast(), self.len) }
    }

    unsafe fn into_bytes(self: Box<Self>) -> Bytes {
        let registered = (self.data as usize, self.len, self.object.as_ptr() as usize);
        lock().push(registered);
        Bytes::from_owner(*self)
    }
}

impl AsRef<[u8]> for Landed {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: written in full before it became a `Bytes`; immutable from then on.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl Drop for Landed {
    fn drop(&mut self) {
        let data = self.data as usize;
        lock().retain(|&(at, _, _)| at != data);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(usize, usize, usize)>> {
    LANDED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `bytes` object `b` is the whole buffer of, if it was landed in one.
pub(crate) fn adopt(py: Python<'_>, b: &Bytes) -> Option<Py<PyAny>> {
    if b.len() < LAND_FROM {
        return None;
    }
    let key = (b.as_ptr() as usize, b.len());
    let landed = lock();
    let &(_, _, object) = landed.iter().find(|&&(at, len, _)| (at, len) == key)?;
    // SAFETY: registered objects are alive (their `Landed`, which `b` keeps alive, holds a
    // strong reference); a new reference is taken under the GIL.
    Some(unsafe { Bound::from_borrowed_ptr(py, object as *mut ffi::PyObject) }.unbind())
}

/// How many received byte strings this process has read straight into a Python `bytes` (a
/// diagnostic for tests and benchmarks: the rest were copied).
#[pyfunction]
pub(crate) fn landed_count() -> u64 {
    LANDED_COUNT.load(Ordering::Relaxed)
}
