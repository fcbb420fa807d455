//! Hand-offs between the event loop and the `def` workers: parked, spinning only while the
//! machine has a CPU to spare.
//!
//! A worker waits for its next job asleep on a condition variable ([`JobQueue`]); the event
//! loop, when a short method's answer is the only thing it waits for, waits for it parked on
//! the answer's [`Slot`] (GIL released, bounded) instead of going back to its selector, so the
//! worker's answer wakes the loop thread directly: one futex wake-up each way, and no socket
//! pair, selector turn or task step in between. Either side may spin briefly first, only as
//! `spin.rs` allows (never while other processes keep a CPU busy: a spinning thread would take
//! the very core that the thread it waits for needs, issue #15). [`HostQueue`] keeps one
//! actor's `def` calls in order, whether they come from this process or (queued by the
//! runtime) from another.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pulsing::hosted::HostedCall;
use pyo3::prelude::*;

/// How long a worker that just handed an answer to a holding loop may spin for its next job
/// (that loop's next call typically follows within microseconds); only while the machine has
/// a CPU to spare (`spin.rs`).
const WORKER_SPIN: Duration = Duration::from_micros(50);

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
    /// `state.queue.len()`, readable without the lock.
    len: AtomicUsize,
    wake: Condvar,
}

#[derive(Default)]
struct JobState {
    queue: VecDeque<Job>,
    /// Workers inside `get` (asleep or about to be).
    waiting: usize,
    /// Workers spinning for their next job: the first jobs are theirs, so waking a sleeping
    /// worker for them would only start a race that costs a wake-up (issue #15).
    spinning: usize,
    /// Workers asleep on `wake`.
    sleeping: usize,
}

impl Jobs {
    fn lock(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job` (under `state`, the held lock, which it releases), waking a sleeping worker
    /// only if there are more jobs than spinning workers; true if there are now more jobs than
    /// waiting workers.
    ///
    /// The worker is woken after the lock is released: woken under it, it would find the lock
    /// taken and sleep again on the mutex, and each side's unlock would then wake the other
    /// (four futex calls per job, counted with `strace` on a `def` call from another process,
    /// against two).
    fn push(&self, mut state: MutexGuard<'_, JobState>, job: Job) -> bool {
        state.queue.push_back(job);
        self.len.store(state.queue.len(), Ordering::Release);
        let wake = state.sleeping > 0 && state.queue.len() > state.spinning;
        let more = state.queue.len() > state.waiting;
        drop(state);
        if wake {
            // A worker counted in `sleeping` is inside `wait` (it released the lock there) or
            // about to check the queue again under the lock: either way it sees this job.
            self.wake.notify_one();
        }
        more
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

    /// Counts the calling worker as waiting (and spinning, if it will spin for up to `spin`),
    /// then runs `publish` (which hands its last answer over): so the loop, which puts its
    /// next call as soon as it has the answer, finds the worker counted and starts no other.
    /// Two workers would race for every job, a sleeping one woken for nothing each time
    /// (issue #15). The worker then [`Jobs::take`]s its next job with the returned [`Entered`].
    fn enter(&self, spin: Option<Duration>, publish: impl FnOnce()) -> Entered {
        {
            let mut state = self.lock();
            state.waiting += 1;
            state.spinning += usize::from(spin.is_some());
        }
        publish();
        Entered { spin }
    }

    /// The next job, for a worker counted by [`Jobs::enter`]: after spinning for up to its
    /// `spin` (see `spin.rs`), asleep until there is one.
    fn take(&self, entered: Entered) -> Job {
        if let Some(spin) = entered.spin {
            crate::spin::spin(spin, || self.len.load(Ordering::Acquire) > 0);
        }
        let mut state = self.lock();
        state.spinning -= usize::from(entered.spin.is_some());
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

/// A worker counted by [`Jobs::enter`], and how long it may spin (taken by [`Jobs::take`], so
/// the two counts always match).
struct Entered {
    spin: Option<Duration>,
}

/// The `def` workers' job queue.
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

    /// Counts a callable just appended to the pool's deque, waking a sleeping worker if no
    /// spinning one will take it. True if there are now more jobs than waiting workers (start
    /// one).
    fn put(&self) -> bool {
        self.jobs.push(self.jobs.lock(), Job::Local)
    }

    /// The next job, waited for with the GIL released: `None` (take the next callable from
    /// the deque), or the id of an actor whose calls to drain. `publish`: a claimed [`Slot`] to
    /// hand over first, once this thread no longer holds the GIL (so the waiting loop can take
    /// the GIL at once).
    #[pyo3(signature = (publish=None))]
    fn get(&self, py: Python<'_>, publish: Option<Py<Slot>>) -> PyResult<Option<u64>> {
        let slot = publish.as_ref().map(|slot| slot.get());
        let job = py.detach(|| {
            let entered = self.jobs.enter(slot.map(|_| WORKER_SPIN), || {
                if let Some(slot) = slot {
                    slot.set_state(DONE);
                }
            });
            self.jobs.take(entered)
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

    /// How many workers are waiting for a job.
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
                // Its caller has gone (timed out, cancelled): skipped, as a Rust actor does.
                Entry::Remote(call) if call.reply.is_abandoned() => continue,
                Entry::Remote(call) => {
                    // None: its arguments did not convert (already answered).
                    if let Some(parts) = crate::reply::call_parts(py, call, None)? {
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

/// One call's answer, waited for by the event loop for a bounded time (parked, not spinning).
///
/// The worker `claim`s it with the answer, then `publish`es it once it has let go of the GIL
/// ([`JobQueue::get`]), so the loop can take the GIL back at once; the loop `wait`s. Exactly one
/// of worker and loop wins: if the loop gave up first, `claim` returns false and the worker
/// delivers the answer the slow way. A claimed answer is the loop's: it waits a little more
/// for the publish, then takes the answer anyway.
#[pyclass(module = "pulsing._native", frozen)]
pub(crate) struct Slot {
    state: Mutex<u8>,
    /// `state == DONE`, for spinning without the lock.
    done: AtomicBool,
    changed: Condvar,
    answer: Mutex<Option<(bool, Py<PyAny>)>>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, u8> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: u8) {
        *self.lock() = state;
        self.done.store(state == DONE, Ordering::Release);
        self.changed.notify_one();
    }

    /// Parks until the state is no longer `from` or `deadline` passes; the state then.
    fn wait_while(&self, from: u8, deadline: Instant) -> (MutexGuard<'_, u8>, u8) {
        let mut state = self.lock();
        while *state == from {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let now = *state;
        (state, now)
    }
}

#[pymethods]
impl Slot {
    #[new]
    fn new() -> Self {
        Slot {
            state: Mutex::new(WAITING),
            done: AtomicBool::new(false),
            changed: Condvar::new(),
            answer: Mutex::new(None),
        }
    }

    /// Stores the answer; false if the waiter already gave up (then nobody reads it here).
    fn claim(&self, ok: bool, value: Py<PyAny>) -> bool {
        let mut answer = self.answer.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = self.lock();
        if *state != WAITING {
            return false; // nobody here reads it: the worker delivers it the slow way
        }
        *state = CLAIMED;
        *answer = Some((ok, value));
        true
    }

    /// Hands a claimed answer to the waiting loop.
    fn publish(&self) {
        self.set_state(DONE);
    }

    /// Waits up to `micros` (GIL released, parked) for the answer: `(ok, value)`, or None after
    /// giving up (the answer then comes the slow way). An answer claimed just then is waited
    /// for up to `micros` more.
    fn wait(&self, py: Python<'_>, micros: u64) -> Option<(bool, Py<PyAny>)> {
        let limit = Duration::from_micros(micros);
        let done = py.detach(|| {
            if crate::spin::spin(limit, || self.done.load(Ordering::Acquire)) {
                return true;
            }
            let (mut state, now) = self.wait_while(WAITING, Instant::now() + limit);
            if now == WAITING {
                *state = GAVE_UP;
                return false;
            }
            drop(state);
            // Claimed: the worker publishes within moments (or the GIL waits for it).
            drop(self.wait_while(CLAIMED, Instant::now() + limit));
            true
        });
        if !done {
            return None;
        }
        self.answer.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;

    use super::*;

    /// Polls `ready` for up to 10 s.
    fn until(mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready() {
            assert!(Instant::now() < deadline, "timed out");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// A worker thread asleep in `take` (not spinning); its job arrives on the receiver.
    fn sleeping_worker(jobs: &Arc<Jobs>) -> mpsc::Receiver<Job> {
        let (tx, rx) = mpsc::channel();
        let sleeping = jobs.lock().sleeping;
        let worker = jobs.clone();
        thread::spawn(move || {
            let entered = worker.enter(None, || ());
            let _ = tx.send(worker.take(entered));
        });
        until(|| jobs.lock().sleeping == sleeping + 1);
        rx
    }

    #[test]
    fn a_worker_handing_an_answer_over_counts_as_waiting_before_the_answer_shows() {
        let jobs = Jobs::default();
        let mut published = false;
        let entered = jobs.enter(Some(Duration::ZERO), || {
            let state = jobs.lock();
            assert_eq!((state.waiting, state.spinning), (1, 1));
            assert!(
                !jobs.push(state, Job::Local),
                "the loop's next call asks for no second worker"
            );
            published = true;
        });
        assert!(published);
        assert!(matches!(jobs.take(entered), Job::Local));
        let state = jobs.lock();
        assert_eq!((state.waiting, state.spinning), (0, 0));
    }

    #[test]
    fn a_job_for_a_spinning_worker_wakes_no_sleeping_one() {
        let jobs = Arc::new(Jobs::default());
        let sleeper = sleeping_worker(&jobs);
        // This thread: a worker that just answered and spins for its next job.
        let entered = jobs.enter(Some(Duration::from_secs(5)), || ());
        jobs.push(jobs.lock(), Job::Local);
        // A woken sleeper would take the job within this time (and cost a wake-up for it).
        thread::sleep(Duration::from_millis(50));
        assert_eq!(
            jobs.len.load(Ordering::Acquire),
            1,
            "the sleeper was woken and took the job"
        );
        assert!(matches!(jobs.take(entered), Job::Local));
        assert_eq!(jobs.lock().spinning, 0);
        // A job with nobody spinning wakes the sleeper.
        jobs.push(jobs.lock(), Job::Drain(7));
        let woken = sleeper.recv_timeout(Duration::from_secs(10));
        assert!(
            matches!(woken, Ok(Job::Drain(7))),
            "the sleeper was not woken"
        );
    }

    #[test]
    fn jobs_beyond_the_spinning_workers_wake_a_sleeping_one() {
        let jobs = Arc::new(Jobs::default());
        let sleeper = sleeping_worker(&jobs);
        let _spinner = jobs.enter(Some(Duration::from_secs(5)), || ()); // spins, never takes
        jobs.push(jobs.lock(), Job::Drain(1));
        jobs.push(jobs.lock(), Job::Drain(2)); // two jobs, one spinning worker: wake one
        let woken = sleeper.recv_timeout(Duration::from_secs(10));
        assert!(
            matches!(woken, Ok(Job::Drain(1))),
            "the sleeper was not woken"
        );
    }
}
