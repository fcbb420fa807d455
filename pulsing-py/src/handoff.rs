//! Hand-offs between the event loop and the `def` workers that spin briefly before sleeping.
//!
//! Waking a sleeping thread costs 15–30 µs on a small VM, which is most of a `def` call handed
//! to a worker thread and back. Both sides here spin for a bounded time first (with the GIL
//! released): the event loop waits a few microseconds for a short method's answer instead of
//! going to sleep on its selector ([`Slot`]), and the worker that handed it over catches the
//! loop's next call without being woken ([`JobQueue`]). Past the bound, each side falls back
//! to sleeping, so an idle process does not spin. [`HostQueue`] keeps one actor's `def` calls
//! in order, whether they come from this process or (queued by the runtime) from another.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pulsing::hosted::HostedCall;
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

/// A worker's job: the next callable of the pool's Python deque (kept there, so no Python
/// object ever sits in a structure the runtime's threads share), or "drain actor N's calls",
/// posted by the runtime.
enum Job {
    Local,
    Drain(u64),
}

/// The pool's queue, shared with the runtime's hosted Python actors.
#[derive(Default)]
pub(crate) struct Jobs {
    state: Mutex<JobState>,
    /// `state.queue.len()`, for spinning without the lock.
    len: AtomicUsize,
    wake: Condvar,
}

#[derive(Default)]
struct JobState {
    queue: VecDeque<Job>,
    /// Workers inside `get` (spinning or asleep).
    waiting: usize,
    /// Workers asleep on `wake`.
    sleeping: usize,
}

impl Jobs {
    fn lock(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job` (under `state`, the held lock); true if there are now more jobs than
    /// waiting workers.
    fn push(&self, mut state: MutexGuard<'_, JobState>, job: Job) -> bool {
        state.queue.push_back(job);
        self.len.store(state.queue.len(), Ordering::Release);
        if state.sleeping > 0 {
            self.wake.notify_one();
        }
        state.queue.len() > state.waiting
    }

    /// From the runtime: queues "drain actor `host`" only if a waiting worker will take it at
    /// once (only Python starts workers); false otherwise.
    pub(crate) fn offer_drain(&self, host: u64) -> bool {
        let state = self.lock();
        if state.queue.len() >= state.waiting {
            return false;
        }
        self.push(state, Job::Drain(host));
        true
    }

    fn pop(state: &mut JobState, len: &AtomicUsize) -> Option<Job> {
        let job = state.queue.pop_front()?;
        state.waiting -= 1;
        len.store(state.queue.len(), Ordering::Release);
        Some(job)
    }

    /// The next job, spinning first for `spin`, then asleep.
    fn take(&self, spin: Option<Duration>) -> Job {
        self.lock().waiting += 1;
        if let Some(spin) = spin {
            if spin_until(spin, || self.len.load(Ordering::Acquire) > 0) {
                if let Some(job) = Self::pop(&mut self.lock(), &self.len) {
                    return job;
                }
            }
        }
        let mut state = self.lock();
        loop {
            if let Some(job) = Self::pop(&mut state, &self.len) {
                return job;
            }
            state.sleeping += 1;
            state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            state.sleeping -= 1;
        }
    }
}

/// The `def` workers' job queue: `get` spins briefly before it sleeps.
#[pyclass(module = "pulsing._native", frozen)]
#[derive(Default)]
pub(crate) struct JobQueue {
    jobs: Arc<Jobs>,
}

impl JobQueue {
    /// The queue, for hosted actors to post drains into.
    pub(crate) fn shared(&self) -> Arc<Jobs> {
        self.jobs.clone()
    }
}

#[pymethods]
impl JobQueue {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Counts a callable just appended to the pool's deque, waking a sleeping worker if there
    /// is one. True if there are now more jobs than waiting workers (start one).
    fn put(&self) -> bool {
        self.jobs.push(self.jobs.lock(), Job::Local)
    }

    /// The next job, waited for with the GIL released: `None` (take the next callable from
    /// the deque), or the id of an actor whose calls to drain. `publish`: a claimed [`Slot`] to
    /// hand over first, once this thread no longer holds the GIL (so the waiting loop can take
    /// the GIL at once); the worker then spins for a while before it sleeps, as that loop's
    /// next call typically follows within microseconds.
    #[pyo3(signature = (publish=None))]
    fn get(&self, py: Python<'_>, publish: Option<Py<Slot>>) -> PyResult<Option<u64>> {
        let slot = publish.as_ref().map(|slot| slot.get());
        let job = py.detach(|| {
            if let Some(slot) = slot {
                slot.state.store(DONE, Ordering::Release);
            }
            self.jobs.take(slot.map(|_| WORKER_SPIN))
        });
        drop(publish); // with the GIL
        Ok(match job {
            Job::Local => None,
            Job::Drain(host) => Some(host),
        })
    }

    fn __len__(&self) -> usize {
        self.jobs.len.load(Ordering::Acquire)
    }

    /// How many workers are waiting for a job (spinning or asleep).
    fn waiting(&self) -> usize {
        self.jobs.lock().waiting
    }
}

/// One actor's queue of `def` calls, in arrival order: calls from this process (kept in a
/// Python deque; counted here) and calls through the runtime (kept here, as Rust values, so a
/// runtime thread can queue them without the GIL). One worker at a time drains it.
#[pyclass(module = "pulsing._native", frozen)]
#[derive(Default)]
pub(crate) struct HostQueue {
    calls: Arc<HostCalls>,
}

/// The shared part of a [`HostQueue`].
#[derive(Default)]
pub(crate) struct HostCalls {
    state: Mutex<HostState>,
}

#[derive(Default)]
struct HostState {
    queue: VecDeque<Entry>,
    /// A worker drains the queue (or is about to).
    busy: bool,
    closed: bool,
}

enum Entry {
    /// The next call from this process's deque.
    Local,
    Remote(HostedCall),
}

impl HostCalls {
    fn lock(&self) -> MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `entry`; true if nobody drains the queue yet (the caller gets it drained).
    fn push(&self, entry: Entry) -> bool {
        let mut state = self.lock();
        if state.closed && matches!(entry, Entry::Remote(_)) {
            return false; // dropped, and so answered `Stopped` (local calls still run, as queued)
        }
        state.queue.push_back(entry);
        !std::mem::replace(&mut state.busy, true)
    }

    /// From the runtime: queues a call; true if the queue now needs a worker to drain it.
    pub(crate) fn push_remote(&self, call: HostedCall) -> bool {
        self.push(Entry::Remote(call))
    }
}

impl HostQueue {
    /// The queue, for the actor's host in the runtime.
    pub(crate) fn shared(&self) -> Arc<HostCalls> {
        self.calls.clone()
    }
}

#[pymethods]
impl HostQueue {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Counts a call just appended to the Python deque; true if a drain must be started.
    fn push_local(&self) -> bool {
        self.calls.push(Entry::Local)
    }

    /// True while a worker drains the queue.
    fn busy(&self) -> bool {
        self.calls.lock().busy
    }

    /// The next call: `True` (take it from the Python deque), a tuple `(method, args, kwargs,
    /// reply)` for a call through the runtime, or `None`: the queue is empty, and no longer
    /// busy.
    fn next(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        loop {
            let entry = {
                let mut state = self.calls.lock();
                match state.queue.pop_front() {
                    Some(entry) => entry,
                    None => {
                        state.busy = false;
                        return Ok(py.None());
                    }
                }
            };
            match entry {
                Entry::Local => return Ok(true.into_pyobject(py)?.to_owned().into_any().unbind()),
                Entry::Remote(call) => {
                    // None: its arguments did not convert (already answered).
                    if let Some(parts) = crate::reply::call_parts(py, call)? {
                        let (method, args, kwargs, reply, _) = parts;
                        return Ok((method, args, kwargs, reply)
                            .into_pyobject(py)?
                            .into_any()
                            .unbind());
                    }
                }
            }
        }
    }

    /// Becomes busy if it is not (true): the caller runs a call itself (`@pul.inline`), then
    /// calls `leave`.
    fn try_enter(&self) -> bool {
        let mut state = self.calls.lock();
        !std::mem::replace(&mut state.busy, true)
    }

    /// After `try_enter`: true if calls came meanwhile (start a drain), else no longer busy.
    fn leave(&self) -> bool {
        !self.finish()
    }

    /// Stops being busy if nothing is queued (true); false if more calls wait.
    fn finish(&self) -> bool {
        let mut state = self.calls.lock();
        if state.queue.is_empty() {
            state.busy = false;
        }
        !state.busy
    }

    /// The actor stopped: queued calls through the runtime are answered `Stopped` (dropped),
    /// later ones at once.
    fn close(&self) {
        let remote: VecDeque<Entry> = {
            let mut state = self.calls.lock();
            state.closed = true;
            let (local, remote) = std::mem::take(&mut state.queue)
                .into_iter()
                .partition(|e| matches!(e, Entry::Local));
            state.queue = local;
            remote
        };
        drop(remote); // outside the lock: each reply answers as it drops
    }
}

const WAITING: u8 = 0;
const CLAIMED: u8 = 1;
const DONE: u8 = 2;
const GAVE_UP: u8 = 3;

/// One call's answer, waited for by the event loop for a bounded time.
///
/// The worker `claim`s it with the answer, then `publish`es it once it has let go of the GIL
/// ([`JobQueue::get`]), so the loop can take the GIL back at once; the loop `wait`s. Exactly one
/// of worker and loop wins: if the loop gave up first, `claim` returns false and the worker
/// delivers the answer the slow way. A claimed answer is the loop's: it waits a little more
/// for the publish, then takes the answer anyway.
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
        let mut answer = self.answer.lock().unwrap_or_else(|e| e.into_inner());
        *answer = Some((ok, value));
        let claimed = self
            .state
            .compare_exchange(WAITING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !claimed {
            *answer = None; // nobody here reads it: the worker delivers it the slow way
        }
        claimed
    }

    /// Hands a claimed answer to the waiting loop.
    fn publish(&self) {
        self.state.store(DONE, Ordering::Release);
    }

    /// Waits up to `micros` (GIL released) for the answer: `(ok, value)`, or None after giving
    /// up (the answer then comes the slow way). An answer claimed just then is waited for up
    /// to `micros` more.
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
            if gave_up.is_ok() {
                return false;
            }
            // Claimed meanwhile: the worker publishes within moments (or the GIL waits for it).
            spin_until(limit, published);
            true
        });
        if !done {
            return None;
        }
        self.answer.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
