//! Who drives the runtime: the event loop's own thread while it waits, a driver thread otherwise.
//!
//! The runtime is a current-thread tokio runtime: its I/O, timers and tasks run on whichever one
//! thread holds its core (`Runtime::block_on`). An asyncio loop that has nothing to do takes the
//! core and waits in tokio's reactor itself ([`Driving::run`], called by `Bridge.idle` and
//! `Bridge.hold`), with the loop's own selector registered there too (`AsyncFd` over the
//! selector's file descriptor). So when a call's answer, or a call for one of the loop's actors,
//! reaches the socket, the thread it wakes is the loop's: it reads the frame, decodes it and
//! queues the event for Python without waking anyone else — one wake-up per side, as for an
//! asyncio TCP echo (issue #15; the alternatives measured are in docs/python.md).
//!
//! While no loop waits — Python runs, or no loop exists — the driver thread takes the core, but
//! only once nobody has held it for [`TAKE_OVER`]: a loop that comes back within that time (the
//! common case: a method ran, the loop waits again) finds the core free, so the hand-over costs
//! no wake-up. The driver keeps the core until a thread asks for it ([`Driving::run`] asks it
//! and waits, bounded by [`HAND_BACK`]), so gossip, failure detection and calls from `def`
//! workers never wait for Python much longer than [`TAKE_OVER`].
//!
//! The driver learns that the core was given back by looking every [`TAKE_OVER`] while a loop
//! keeps taking and giving it back, and sleeps (to be woken by the next give-back) only while
//! one thread holds it all along: so a loop's turn never pays a wake-up for the driver. Measured
//! over sequential calls between two processes: context switches per call 1.02–1.05 on the loop's
//! thread and 0.08–0.11 on the driver's (the asyncio echo: 1.0), against 1.19 and 0.28 when
//! every give-back woke a sleeping driver.
//!
//! `PULSING_DRIVE=off` runs the runtime on a worker thread of its own instead, as before (for
//! measurements: docs/python.md).

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Notify;

/// How long the core may go undriven before the driver thread takes it.
pub(crate) const TAKE_OVER: Duration = Duration::from_millis(1);

/// How long a thread that wants the core waits for the driver thread to give it back before it
/// gives up (and waits its usual way instead).
const HAND_BACK: Duration = Duration::from_millis(5);

/// How long [`Driving::stop`] waits for the driver thread to end.
const STOP_WAIT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Holder {
    Nobody,
    Driver,
    /// A loop's thread (or a blocking call from Python), in [`Driving::run`].
    Thread,
}

struct State {
    holder: Holder,
    /// When the core was last given back.
    released_at: Instant,
    /// The driver thread sleeps without a timeout (a thread holds the core): whoever gives the
    /// core back wakes it.
    driver_asleep: bool,
    /// How many times a thread took the core (the driver thread tells a loop that keeps
    /// taking it from one that holds it all along).
    takes: u64,
    /// Threads in [`Driving::take`] waiting for the driver thread to give the core back.
    handing_back: usize,
    stop: bool,
    /// The runtime, until [`Driving::stop`] hands it to its owner to shut down.
    runtime: Option<Arc<Runtime>>,
}

/// What [`Driving::take`] got.
enum Took {
    Core(Arc<Runtime>),
    /// Another thread drives.
    Busy,
    Stopped,
}

/// The runtime and who holds its core.
pub(crate) struct Driving {
    handle: Handle,
    state: Mutex<State>,
    changed: Condvar,
    /// Asks the driver thread to give the core back.
    release: Notify,
    /// The driver thread, and what it sends as it ends.
    driver: Mutex<Option<(JoinHandle<()>, std::sync::mpsc::Receiver<()>)>>,
}

impl Driving {
    /// Starts the driver thread for `runtime`.
    pub(crate) fn start(runtime: Arc<Runtime>) -> std::io::Result<Arc<Self>> {
        let driving = Arc::new(Driving {
            handle: runtime.handle().clone(),
            state: Mutex::new(State {
                runtime: Some(runtime),
                holder: Holder::Nobody,
                released_at: Instant::now(),
                driver_asleep: false,
                takes: 0,
                handing_back: 0,
                stop: false,
            }),
            changed: Condvar::new(),
            release: Notify::new(),
            driver: Mutex::new(None),
        });
        let d = driving.clone();
        let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("pulsing".into())
            .spawn(move || {
                d.drive();
                let _ = ended_tx.send(());
            })?;
        *driving.driver.lock().unwrap_or_else(|e| e.into_inner()) = Some((thread, ended));
        Ok(driving)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a change of the state, at most `timeout` if one is given.
    fn wait<'a>(
        &self,
        s: MutexGuard<'a, State>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        match timeout {
            Some(t) => {
                let waited = self.changed.wait_timeout(s, t);
                waited.unwrap_or_else(|e| e.into_inner()).0
            }
            None => self.changed.wait(s).unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// The driver thread: takes the core whenever nobody has held it for [`TAKE_OVER`], and
    /// drives the runtime until a thread asks for it.
    fn drive(&self) {
        let mut seen = 0;
        loop {
            let runtime = {
                let mut s = self.lock();
                loop {
                    if s.stop {
                        return;
                    }
                    if s.holder == Holder::Nobody {
                        let idle = s.released_at.elapsed();
                        if idle >= TAKE_OVER {
                            break;
                        }
                        s = self.wait(s, Some(TAKE_OVER - idle));
                    } else if s.takes != seen {
                        // A loop keeps taking and giving the core back: look again in
                        // `TAKE_OVER` rather than be woken at every give-back (a system call
                        // on the loop's thread, and a wake-up here, per turn of the loop).
                        seen = s.takes;
                        s = self.wait(s, Some(TAKE_OVER));
                    } else {
                        // Held all along since the last look: sleep until it is given back.
                        s.driver_asleep = true;
                        s = self.wait(s, None);
                        s.driver_asleep = false;
                    }
                }
                s.holder = Holder::Driver;
                // A request to give the core back that came before this take (from a thread
                // that then found the core free) is stale: drop it, or this turn would end at
                // once and leave the runtime undriven for another `TAKE_OVER`. A new request
                // needs the lock held here, and sees `Driver`.
                let _ = self.release.notified().now_or_never();
                s.runtime.clone().expect("stop ends this loop first")
            };
            runtime.block_on(self.release.notified());
            drop(runtime);
            self.give_back();
        }
    }

    fn give_back(&self) {
        let mut s = self.lock();
        s.holder = Holder::Nobody;
        s.released_at = Instant::now();
        // Only a sleeper needs a wake-up (a syscall): a driver waiting with a timeout sees the
        // change when it wakes. Woken after the lock is released, so it does not sleep again
        // on the lock at once (as `Jobs::push` in `handoff.rs`).
        let wake = s.driver_asleep || s.handing_back > 0 || s.stop;
        drop(s);
        if wake {
            self.changed.notify_all();
        }
    }

    /// Takes the core for this thread: at once if nobody holds it; from the driver thread if
    /// `reclaim` is given (it is asked, and awaited up to that long, at most [`HAND_BACK`]).
    fn take(&self, reclaim: Option<Duration>) -> Took {
        let mut s = self.lock();
        if s.stop {
            return Took::Stopped;
        }
        match (s.holder, reclaim) {
            (Holder::Nobody, _) => {}
            (Holder::Thread, _) | (Holder::Driver, None) => return Took::Busy,
            (Holder::Driver, Some(within)) => {
                self.release.notify_one();
                let deadline = Instant::now() + within.min(HAND_BACK);
                s.handing_back += 1;
                while s.holder == Holder::Driver && !s.stop {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    s = self.wait(s, Some(deadline - now));
                }
                s.handing_back -= 1;
                if s.stop {
                    return Took::Stopped;
                }
                if s.holder != Holder::Nobody {
                    return Took::Busy;
                }
            }
        }
        match s.runtime.clone() {
            Some(runtime) => {
                s.holder = Holder::Thread;
                s.takes += 1;
                Took::Core(runtime)
            }
            None => Took::Stopped,
        }
    }

    /// Runs `work` on this thread, driving the runtime meanwhile (see the module doc), if this
    /// thread can take the core, asking the driver thread for it and waiting for it at most
    /// `within` (and [`HAND_BACK`]); `None` (and `work` not run) if another thread drives.
    pub(crate) fn run<F: Future>(&self, work: F, within: Duration) -> Option<F::Output> {
        match self.take(Some(within)) {
            Took::Core(runtime) => Some(self.drive_here(&runtime, work)),
            Took::Busy | Took::Stopped => None,
        }
    }

    /// Runs `work` to completion from a thread outside the runtime (blocking): this thread
    /// drives while it waits if nobody else does, so a blocking call made while the loop runs
    /// Python does not wait for the driver thread's [`TAKE_OVER`]. `None` once the runtime is
    /// stopped (nobody would drive it).
    pub(crate) fn block_on<F: Future>(&self, work: F) -> Option<F::Output> {
        match self.take(None) {
            Took::Core(runtime) => Some(self.drive_here(&runtime, work)),
            Took::Busy => Some(self.handle.block_on(work)),
            Took::Stopped => None,
        }
    }

    fn drive_here<F: Future>(&self, runtime: &Runtime, work: F) -> F::Output {
        /// Gives the core back even if `work` panics.
        struct Held<'a>(&'a Driving);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                self.0.give_back();
            }
        }
        let _held = Held(self);
        crate::landing::for_python(|| runtime.block_on(work))
    }

    /// Stops the driver thread (it gives the core back first), waits for it, and hands the
    /// runtime over to be shut down: from then on nobody drives it.
    pub(crate) fn stop(&self) -> Option<Arc<Runtime>> {
        let runtime = {
            let mut s = self.lock();
            s.stop = true;
            s.runtime.take()
        };
        self.changed.notify_all();
        self.release.notify_one();
        let thread = self.driver.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((thread, ended)) = thread {
            // Bounded, as the runtime's own shutdown is: a task that blocks the driver thread
            // must not hang the interpreter's exit (the thread is then left behind).
            if ended.recv_timeout(STOP_WAIT).is_ok() {
                let _ = thread.join();
            }
        }
        runtime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driving() -> Arc<Driving> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Driving::start(Arc::new(rt)).unwrap()
    }

    #[test]
    fn a_blocking_call_after_stop_fails_instead_of_waiting_for_a_driver() {
        let d = driving();
        assert_eq!(d.block_on(async { 7 }), Some(7));
        let _runtime = d.stop();
        // Nobody drives a stopped runtime: waiting on it would hang.
        assert_eq!(d.block_on(async { 7 }), None);
        assert_eq!(d.run(async { 7 }, Duration::from_secs(1)), None);
    }

    #[test]
    fn work_is_not_run_when_the_driver_keeps_the_core() {
        let d = driving();
        let (started_tx, started) = std::sync::mpsc::channel();
        d.handle.spawn(async move {
            started_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(200)); // the driver thread, blocked
        });
        started.recv().unwrap(); // the driver took the core (after `TAKE_OVER`) and is busy
        let mut ran = false;
        assert_eq!(d.run(async { ran = true }, Duration::ZERO), None);
        assert!(!ran, "the work must not run when the core was not taken");
        d.stop();
    }
}
