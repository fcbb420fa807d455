//! Hand-offs between the event loop and the `def` workers that spin briefly before sleeping.
//!
//! Waking a sleeping thread costs 15–30 µs on a small VM, which is most of a `def` call handed
//! to a worker thread and back. Both sides here spin for a bounded time first (with the GIL
//! released): a worker that just finished a job catches the next one without being woken
//! ([`JobQueue`]), and the event loop waits a few microseconds for a short method's answer
//! instead of going to sleep on its selector ([`Slot`]). Past the bound, each side falls back
//! to sleeping, so an idle process does not spin.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// How long a worker that just handed an answer to a holding loop spins for its next job.
const WORKER_SPIN: Duration = Duration::from_micros(50);

/// Pure spinning before each wait also yields the core (another thread may need it to finish
/// the very work we wait for).
const PURE_SPIN: Duration = Duration::from_micros(2);

/// Spins until `done()` or `limit` has passed; true if `done()`.
pub(crate) fn spin_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut round = 0u32;
    loop {
        if done() {
            return true;
        }
        round = round.wrapping_add(1);
        if round.is_multiple_of(32) {
            let spent = start.elapsed();
            if spent >= limit {
                return false;
            }
            if spent >= PURE_SPIN {
                std::thread::yield_now();
            }
        }
        std::hint::spin_loop();
    }
}

/// A job queue for worker threads: `get` spins briefly before it sleeps.
#[pyclass(module = "pulsing._native", frozen)]
#[derive(Default)]
pub(crate) struct JobQueue {
    jobs: Mutex<VecDeque<Py<PyAny>>>,
    len: AtomicUsize,
    sleeping: AtomicUsize,
    wake: Condvar,
}

impl JobQueue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Py<PyAny>>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pop(&self) -> Option<Py<PyAny>> {
        let mut jobs = self.lock();
        let job = jobs.pop_front();
        self.len.store(jobs.len(), Ordering::Release);
        job
    }
}

#[pymethods]
impl JobQueue {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Queues `job`, waking a sleeping worker if there is one.
    fn put(&self, job: Py<PyAny>) {
        let mut jobs = self.lock();
        jobs.push_back(job);
        self.len.store(jobs.len(), Ordering::Release);
        drop(jobs);
        if self.sleeping.load(Ordering::Acquire) > 0 {
            self.wake.notify_one();
        }
    }

    /// The next job, waited for with the GIL released. `publish`: a claimed [`Slot`] to hand
    /// over first, once this thread no longer holds the GIL (so the waiting loop can take the
    /// GIL at once); the worker then spins for a while before it sleeps, as that loop's next
    /// call typically follows within microseconds.
    #[pyo3(signature = (publish=None))]
    fn get(&self, py: Python<'_>, publish: Option<Py<Slot>>) -> Py<PyAny> {
        py.detach(|| {
            let spin = publish.is_some();
            if let Some(slot) = publish {
                slot.get().state.store(DONE, Ordering::Release);
            }
            if spin && spin_until(WORKER_SPIN, || self.len.load(Ordering::Acquire) > 0) {
                if let Some(job) = self.pop() {
                    return job;
                }
            }
            let mut jobs = self.lock();
            loop {
                if let Some(job) = jobs.pop_front() {
                    self.len.store(jobs.len(), Ordering::Release);
                    return job;
                }
                // Counted under the lock, so `put` (which queues under it) cannot miss us.
                self.sleeping.fetch_add(1, Ordering::AcqRel);
                jobs = self.wake.wait(jobs).unwrap_or_else(|e| e.into_inner());
                self.sleeping.fetch_sub(1, Ordering::AcqRel);
            }
        })
    }

    fn __len__(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}

const WAITING: u8 = 0;
const CLAIMED: u8 = 1;
const DONE: u8 = 2;
const GAVE_UP: u8 = 3;

/// One call's answer, waited for by the event loop for a bounded time.
///
/// The worker `claim`s it with the answer, then `publish`es it (best once it has let go of the
/// GIL: [`JobQueue::get`]); the loop `wait`s. Exactly one of worker and loop wins: if the loop
/// gave up first, `claim` returns false and the worker delivers the answer the slow way. Once
/// claimed, the loop waits for the publish however long it takes (a moment).
#[pyclass(module = "pulsing._native", frozen)]
pub(crate) struct Slot {
    state: AtomicU8,
    answer: Mutex<Option<(bool, Py<PyAny>)>>,
}

#[pymethods]
impl Slot {
    #[new]
    fn new() -> Self {
        Slot {
            state: AtomicU8::new(WAITING),
            answer: Mutex::new(None),
        }
    }

    /// Stores the answer; false if the waiter already gave up (then nobody reads it here).
    fn claim(&self, ok: bool, value: Py<PyAny>) -> bool {
        *self.answer.lock().unwrap_or_else(|e| e.into_inner()) = Some((ok, value));
        self.state
            .compare_exchange(WAITING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Hands a claimed answer to the waiting loop.
    fn publish(&self) {
        self.state.store(DONE, Ordering::Release);
    }

    /// Waits up to `micros` (GIL released) for the answer: `(ok, value)`, or None after giving
    /// up (the answer then comes the slow way).
    fn wait(&self, py: Python<'_>, micros: u64) -> Option<(bool, Py<PyAny>)> {
        let limit = Duration::from_micros(micros);
        let done = py.detach(|| {
            let published = || self.state.load(Ordering::Acquire) == DONE;
            if spin_until(limit, published) {
                return true;
            }
            let gave_up =
                self.state
                    .compare_exchange(WAITING, GAVE_UP, Ordering::AcqRel, Ordering::Acquire);
            // Claimed meanwhile: the worker publishes within moments.
            gave_up.is_err() && spin_until(Duration::MAX, published)
        });
        if !done {
            return None;
        }
        self.answer.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
