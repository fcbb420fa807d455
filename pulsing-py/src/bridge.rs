//! The bridge between Pulsing's threads and one asyncio event loop: one [`Bridge`] per loop.
//!
//! All asyncio bridging goes through it: Rust tasks (running on Pulsing's tokio runtime) never
//! touch Python objects. They push plain Rust [`Event`]s (a finished call's `Value`, a batch of
//! stream items, an incoming call for a Python actor) into the bridge's queue and write one byte
//! to a socket pair the loop watches (`add_reader`) — only when the queue was empty, so one
//! wake-up drains many completions. While the loop thread is parked in [`Bridge::hold`] (waiting
//! for one call's answer), a push wakes it directly instead: no byte, no selector turn. The
//! loop thread then takes the whole queue under the GIL ([`Bridge::take`]) and turns it into
//! Python objects. Because no Rust thread ever holds or
//! touches a Python object, the interpreter can finalize while tokio threads still run.
//!
//! This avoids pyo3-async-runtimes' per-await thread hops (design notes §6). The Python side is
//! `python/pulsing/_bridge.py`.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pulsing::{Error, Value};
use pyo3::prelude::*;
use pyo3::types::PyList;

use futures_util::future::{AbortHandle, Abortable};

use crate::events::Event;
use crate::runtime::handle;

pub(crate) struct BridgeInner {
    queue: Mutex<Queue>,
    /// Calls still running on the runtime, by token, so that a caller that gives up (its
    /// asyncio task cancelled) drops the call: a remote one then sends `Cancel`, and its actor
    /// skips it if it has not started, as for a Rust caller.
    running: Mutex<std::collections::HashMap<u64, AbortHandle>>,
    pending: AtomicBool,
    /// Wakes the loop thread while it holds (parked in [`Bridge::hold`]).
    held: Condvar,
    wake: UnixStream,
}

#[derive(Default)]
struct Queue {
    events: Vec<Event>,
    /// A byte was written to the socket pair and not read yet (`take` reads only then: one
    /// syscall less per answer that found the loop parked in `hold`).
    signalled: bool,
    /// The loop thread is parked in [`Bridge::hold`]: it takes the events itself, so a push
    /// wakes it directly instead of through the socket pair and the selector.
    holding: bool,
}

impl BridgeInner {
    fn running(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, AbortHandle>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, event: Event) {
        let holding = {
            let mut q = self.lock();
            let was_empty = q.events.is_empty();
            q.events.push(event);
            self.pending.store(true, Ordering::Release);
            if was_empty && !q.holding && !q.signalled {
                // Under the lock, so `take` knows whether to read it. Non-blocking; a full
                // socket buffer already holds a pending wake-up.
                q.signalled = true;
                let _ = (&self.wake).write(&[1]);
            }
            q.holding
        };
        if holding {
            self.held.notify_one();
        }
    }
}

/// The queue between Pulsing's threads and one asyncio event loop.
#[pyclass(module = "pulsing._native")]
pub(crate) struct Bridge {
    pub(crate) inner: Arc<BridgeInner>,
    read: UnixStream,
}

#[pymethods]
impl Bridge {
    #[new]
    fn new() -> PyResult<Self> {
        let (read, wake) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        wake.set_nonblocking(true)?;
        Ok(Bridge {
            inner: Arc::new(BridgeInner {
                queue: Mutex::new(Queue::default()),
                running: Mutex::default(),
                pending: Default::default(),
                held: Condvar::new(),
                wake,
            }),
            read,
        })
    }

    /// Waits up to `micros` (GIL released) for an event; true if one is pending. The thread
    /// parks (after spinning only while the machine has a CPU to spare: `spin.rs`); an event
    /// pushed meanwhile wakes it directly (one futex wake-up), not through the socket pair and
    /// the selector, and the caller then takes it (`take`).
    fn hold(&self, py: Python<'_>, micros: u64) -> bool {
        if self.inner.pending.load(Ordering::Acquire) {
            return true;
        }
        let inner = &self.inner;
        py.detach(|| {
            let limit = Duration::from_micros(micros);
            let deadline = Instant::now() + limit;
            if crate::spin::spin(limit, || inner.pending.load(Ordering::Acquire)) {
                return true;
            }
            let mut q = inner.lock();
            q.holding = true;
            while q.events.is_empty() {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                q = inner
                    .held
                    .wait_timeout(q, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            q.holding = false;
            !q.events.is_empty()
        })
    }

    /// The caller of call `token` gave up: the call is dropped if it still runs (no answer
    /// follows).
    fn cancel(&self, token: u64) {
        if let Some(running) = self.inner.running().remove(&token) {
            running.abort();
        }
    }

    /// The file descriptor the loop watches.
    fn fileno(&self) -> i32 {
        self.read.as_raw_fd()
    }

    /// Takes every pending event, as tuples whose first item is an
    /// [`EventKind`](crate::events::EventKind) (see there for each kind's tuple).
    fn take(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        let events = {
            let mut q = self.inner.lock();
            if std::mem::take(&mut q.signalled) {
                let mut buf = [0u8; 256];
                while let Ok(n) = (&self.read).read(&mut buf) {
                    if n < buf.len() {
                        break;
                    }
                }
            }
            self.inner.pending.store(false, Ordering::Release);
            std::mem::take(&mut q.events)
        };
        let out = PyList::empty(py);
        for event in events {
            if let Some(tuple) = event.into_py(py)? {
                out.append(tuple)?;
            }
        }
        Ok(out.unbind())
    }
}

/// Starts `work` on this thread and lets the runtime finish it once it is woken (see
/// `deferred.rs`); posts its result to `bridge` under `token`. The first step runs here, so a
/// call's request is queued before this returns: calls leave in the order they were made (a
/// task per call could start in any order).
pub(crate) fn spawn_done<F>(bridge: &Bridge, token: u64, work: F) -> PyResult<()>
where
    F: std::future::Future<Output = Result<Value, Error>> + Send + 'static,
{
    let inner = bridge.inner.clone();
    // Registered before the first poll and removed when the call ends (or by `cancel`), so no
    // entry outlives its call.
    let (abort, registration) = AbortHandle::new_pair();
    inner.running().insert(token, abort);
    crate::deferred::run(&handle()?, async move {
        let result = Abortable::new(work, registration).await;
        if inner.running().remove(&token).is_some() {
            if let Ok(result) = result {
                inner.push(Event::Done(token, result));
            }
        }
    });
    Ok(())
}
