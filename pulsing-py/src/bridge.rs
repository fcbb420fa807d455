//! The bridge between Pulsing's threads and one asyncio event loop: one [`Bridge`] per loop.
//!
//! All asyncio bridging goes through it: Rust tasks (running on Pulsing's tokio runtime) never
//! touch Python objects. They push plain Rust [`Event`]s (a finished call's `Value`, a batch of
//! stream items, an incoming call for a Python actor) into the bridge's queue. How the loop
//! learns of them depends on where its thread is:
//! - waiting in the runtime's reactor ([`Bridge::idle`], or [`Bridge::hold`] where loops drive
//!   the runtime: `drive.rs`): the push wakes that wait (`woken`; no system call when the pusher
//!   is the loop's own thread, the usual case);
//! - parked in [`Bridge::hold`] (loops that do not drive): the push wakes it directly;
//! - anywhere else: the push writes one byte to a socket pair the loop watches (`add_reader`),
//!   only when the queue was empty, so one wake-up drains many completions.
//!
//! The loop thread then takes the whole queue under the GIL ([`Bridge::take`]) and turns it into
//! Python objects. Because no Rust thread ever holds or touches a Python object, the interpreter
//! can finalize while tokio threads still run.
//!
//! This avoids pyo3-async-runtimes' per-await thread hops (design notes §6). The Python side is
//! `python/pulsing/_bridge.py` (and `_selector.py`, which makes the loop wait in [`Bridge::idle`]).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pulsing::{Error, Value};
use pyo3::prelude::*;
use pyo3::types::PyList;

use futures_util::future::{AbortHandle, Abortable};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use crate::drive::Driving;
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
    /// Wakes the loop thread while it drives the runtime ([`Bridge::idle`], [`Bridge::hold`]).
    woken: Notify,
    wake: UnixStream,
    /// Wake-ups so far, by way (`Bridge.wake_ups`): a byte through the socket pair, or a
    /// push while the loop thread drove the runtime.
    through_pair: AtomicU64,
    while_driving: AtomicU64,
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
    /// The loop thread drives the runtime while it waits ([`Bridge::idle`], [`Bridge::hold`]):
    /// a push wakes it through `woken` (no system call when the pusher is that same thread).
    driving: bool,
}

impl BridgeInner {
    /// A bridge's shared part, and the read end of its socket pair.
    fn new() -> std::io::Result<(Arc<Self>, UnixStream)> {
        let (read, wake) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        wake.set_nonblocking(true)?;
        let inner = Arc::new(BridgeInner {
            queue: Mutex::new(Queue::default()),
            running: Mutex::default(),
            pending: Default::default(),
            held: Condvar::new(),
            woken: Notify::new(),
            wake,
            through_pair: AtomicU64::new(0),
            while_driving: AtomicU64::new(0),
        });
        Ok((inner, read))
    }

    fn running(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, AbortHandle>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, event: Event) {
        let (holding, driving) = {
            let mut q = self.lock();
            let was_empty = q.events.is_empty();
            q.events.push(event);
            self.pending.store(true, Ordering::Release);
            if was_empty && !q.holding && !q.driving && !q.signalled {
                // Under the lock, so `take` knows whether to read it. Non-blocking; a full
                // socket buffer already holds a pending wake-up.
                q.signalled = true;
                let _ = (&self.wake).write(&[1]);
                self.through_pair.fetch_add(1, Ordering::Relaxed);
            }
            if was_empty && q.driving {
                self.while_driving.fetch_add(1, Ordering::Relaxed);
            }
            (q.holding, q.driving)
        };
        if holding {
            self.held.notify_one();
        }
        if driving {
            self.woken.notify_one();
        }
    }

    /// Drives the runtime on this (the loop's) thread until an event is pending, the loop's
    /// selector has something ready (if it is watched) or `limit` passes; `None` if another
    /// thread drives (and no event is pending).
    fn drive(
        &self,
        driving: &Driving,
        selector: Option<&AsyncFd<OwnedFd>>,
        limit: Duration,
    ) -> Option<Waited> {
        let deadline = tokio::time::Instant::now() + limit;
        {
            let mut q = self.lock();
            if !q.events.is_empty() {
                return Some(Waited::Event);
            }
            q.driving = true;
        }
        let ran = driving.run(
            async {
                let until = tokio::time::sleep_until(deadline);
                tokio::pin!(until);
                loop {
                    let woken = self.woken.notified();
                    tokio::pin!(woken);
                    woken.as_mut().enable();
                    if self.pending.load(Ordering::Acquire) {
                        return Waited::Event;
                    }
                    let ready = async {
                        match selector {
                            Some(fd) => {
                                if let Ok(mut ready) = fd.readable().await {
                                    ready.clear_ready();
                                }
                            }
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        biased;
                        _ = &mut woken => continue,
                        _ = ready => return Waited::Selector,
                        _ = &mut until => return Waited::Timeout,
                    }
                }
            },
            limit,
        );
        let mut q = self.lock();
        q.driving = false;
        // Events pushed while `driving` was set wrote no byte to the socket pair: report them
        // even if this thread could not drive, or the caller would wait for that byte forever.
        if !q.events.is_empty() {
            return Some(Waited::Event);
        }
        ran.map(|waited| match waited {
            Waited::Event => Waited::Timeout, // taken meanwhile: nothing is pending now
            other => other,
        })
    }
}

/// How a wait that drove the runtime ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Waited {
    /// An event is pending.
    Event,
    /// The loop's selector has something ready.
    Selector,
    Timeout,
}

/// The queue between Pulsing's threads and one asyncio event loop.
#[pyclass(module = "pulsing._native")]
pub(crate) struct Bridge {
    pub(crate) inner: Arc<BridgeInner>,
    read: UnixStream,
    /// Who drives the runtime (`None` with `PULSING_DRIVE=off`: the loop never does).
    driving: Option<Arc<Driving>>,
    /// The loop's selector (a descriptor of our own for it), registered with the runtime's
    /// reactor (`watch_selector`).
    selector: Option<AsyncFd<OwnedFd>>,
}

/// The longest one [`Bridge::idle`] drives: the loop thread then runs Python again, so a
/// signal (Ctrl-C) is handled within this time even when the loop waits with no timeout.
const IDLE_LIMIT: Duration = Duration::from_millis(100);

#[pymethods]
impl Bridge {
    #[new]
    fn new() -> PyResult<Self> {
        let (inner, read) = BridgeInner::new()?;
        Ok(Bridge {
            inner,
            read,
            driving: crate::runtime::driving()?,
            selector: None,
        })
    }

    /// Registers the loop's selector (its file descriptor) with the runtime's reactor, so that
    /// [`Bridge::idle`] can wait for the loop's own sockets and the runtime's at once; false if
    /// the runtime is not driven by loops (`PULSING_DRIVE=off`) or the descriptor cannot be
    /// watched. The bridge watches a duplicate of the descriptor, so closing the selector first
    /// is harmless; `unwatch_selector` releases it early.
    fn watch_selector(&mut self, fd: RawFd) -> bool {
        if self.driving.is_none() || fd < 0 {
            return false;
        }
        // SAFETY: `_native` is private; its one caller (`_selector.drive`) passes the open
        // descriptor of a live selector, borrowed only while `dup` makes our own.
        let Ok(own) = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned() else {
            return false; // e.g. no descriptor left: the loop waits as before
        };
        let Ok(runtime) = handle() else {
            return false;
        };
        let _runtime = runtime.enter();
        // SAFETY: the `AsyncFd` owns `own`: it stays open, the same description, as long as it.
        self.selector = unsafe { AsyncFd::register_with_interest(own, Interest::READABLE) }.ok();
        self.selector.is_some()
    }

    /// How the loop was woken for its events so far: `(through the socket pair, while it drove
    /// the runtime)` (the second: no system call, no selector turn; for tests and measurements).
    fn wake_ups(&self) -> (u64, u64) {
        (
            self.inner.through_pair.load(Ordering::Relaxed),
            self.inner.while_driving.load(Ordering::Relaxed),
        )
    }

    /// Stops watching the loop's selector (when it is closed).
    fn unwatch_selector(&mut self) {
        self.selector = None;
    }

    /// The loop has nothing to run: drives the runtime on this thread (GIL released) until an
    /// event is pending, the loop's selector has something ready, or `timeout` seconds pass
    /// (at most [`IDLE_LIMIT`]; `None`: no timeout). True if events are pending (the caller
    /// takes them: `take`), False if not; `None` if this thread could not drive (another one
    /// does): the caller waits in its selector as usual.
    #[pyo3(signature = (timeout=None))]
    fn idle(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<bool>> {
        let (Some(driving), Some(selector)) = (&self.driving, &self.selector) else {
            return Ok(None);
        };
        let limit = match timeout {
            Some(t) => crate::runtime::seconds(t)?.min(IDLE_LIMIT),
            None => IDLE_LIMIT,
        };
        let inner = &self.inner;
        let waited = py.detach(|| inner.drive(driving, Some(selector), limit));
        Ok(waited.map(|w| w == Waited::Event))
    }

    /// Waits up to `micros` (GIL released) for an event: True if one is pending (the caller
    /// takes it: `take`), False if none came in time, None if the loop's own selector got
    /// something to do first. Where loops drive the runtime, the thread waits in the runtime's
    /// reactor and reads the answer itself; otherwise it parks (after spinning only while the
    /// machine has a CPU to spare: `spin.rs`) and an event pushed meanwhile wakes it directly
    /// (one futex wake-up), not through the socket pair and the selector.
    fn hold(&self, py: Python<'_>, micros: u64) -> Option<bool> {
        if self.inner.pending.load(Ordering::Acquire) {
            return Some(true);
        }
        let inner = &self.inner;
        py.detach(|| {
            let limit = Duration::from_micros(micros);
            let deadline = Instant::now() + limit;
            if let Some(driving) = &self.driving {
                // Drive the runtime while waiting: the answer is read on this thread.
                match inner.drive(driving, self.selector.as_ref(), limit) {
                    Some(Waited::Event) => return Some(true),
                    Some(Waited::Timeout) => return Some(false),
                    Some(Waited::Selector) => return None,
                    None => {}
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if crate::spin::spin(left, || inner.pending.load(Ordering::Acquire)) {
                return Some(true);
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
            Some(!q.events.is_empty())
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A driven runtime whose driver thread holds the core and does not give it back for
    /// `busy` (one of its tasks blocks the thread).
    fn driver_busy_for(busy: Duration) -> Arc<Driving> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let rt = Arc::new(rt);
        let (started_tx, started) = std::sync::mpsc::channel();
        rt.spawn(async move {
            started_tx.send(()).unwrap();
            std::thread::sleep(busy);
        });
        let driving = Driving::start(rt).unwrap();
        started.recv().unwrap(); // the driver took the core and is blocked in the task
        driving
    }

    #[test]
    fn an_event_pushed_while_the_loop_fails_to_take_the_core_is_not_lost() {
        // The loop thread sets `driving` (so pushes write no byte to the socket pair), then asks
        // the busy driver thread for the core and gives up after `HAND_BACK`. An event pushed
        // meanwhile must be reported by `drive`, or signalled through the socket pair: otherwise
        // the loop would wait in its selector for a byte that never comes.
        let driving = driver_busy_for(Duration::from_millis(300));
        let (inner, _read) = BridgeInner::new().unwrap();
        let pusher = {
            let inner = inner.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1));
                inner.push(Event::HostStopped(7));
            })
        };
        let reported = inner.drive(&driving, None, Duration::from_millis(50));
        pusher.join().unwrap();
        let signalled = inner.lock().signalled;
        assert!(
            reported == Some(Waited::Event) || signalled,
            "drive returned {reported:?} and no byte was written for the pending event"
        );
        driving.stop();
    }

    #[test]
    fn the_loop_thread_reads_what_it_waits_for_itself() {
        // With the core free, `drive` runs the runtime on the calling thread: the task that
        // pushes the event runs here, and `drive` returns as soon as it is pushed.
        let rt = Arc::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        );
        let driving = Driving::start(rt.clone()).unwrap();
        let (inner, _read) = BridgeInner::new().unwrap();
        let here = std::thread::current().id();
        let ran_on = Arc::new(Mutex::new(None));
        {
            let (inner, ran_on) = (inner.clone(), ran_on.clone());
            rt.spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                *ran_on.lock().unwrap() = Some(std::thread::current().id());
                inner.push(Event::HostStopped(1));
            });
        }
        // Ask in a loop: the driver thread may have taken the core (after `TAKE_OVER`) before
        // this thread asks; `drive` then takes it back.
        let mut reported = None;
        for _ in 0..100 {
            reported = inner.drive(&driving, None, Duration::from_secs(5));
            if reported == Some(Waited::Event) {
                break;
            }
        }
        assert_eq!(reported, Some(Waited::Event));
        assert_eq!(
            *ran_on.lock().unwrap(),
            Some(here),
            "the task ran on the driving thread"
        );
        assert!(!inner.lock().signalled, "no byte through the socket pair");
        driving.stop();
    }
}
