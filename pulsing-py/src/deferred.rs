//! A call's future, polled first on the calling (Python) thread and handed to the runtime only
//! once it is woken.
//!
//! The first poll queues the request (and, for a lone call, writes it to the socket: see
//! `pulsing/src/transport/writer.rs`). Spawning a runtime task right after it, as before, woke a
//! parked runtime worker from the Python thread only to poll the future again and register a
//! waker: a cross-thread wake-up and a context switch per call, for nothing. Here the first poll
//! registers a waker of ours instead; when the answer arrives, the runtime thread that delivers
//! it wakes us, and we spawn the task there (on its own worker's queue: no other thread is woken),
//! which finishes the call at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use tokio::runtime::Handle;

type Work = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a deferred future is.
enum State {
    /// Being polled for the first time, on the calling thread.
    Polling,
    /// Woken while its first poll ran: the poller spawns it.
    WokenEarly,
    /// Waiting for a wake-up.
    Parked(Work),
    /// On the runtime (or finished).
    Spawned,
}

struct Deferred {
    state: Mutex<State>,
    runtime: Handle,
}

impl Deferred {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Wake for Deferred {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Spawned) {
            State::Parked(work) => {
                drop(state);
                self.runtime.spawn(work);
            }
            State::Polling => *state = State::WokenEarly,
            // Woken again before its poller saw the first wake-up, or a stale waker after the
            // task took over: nothing to do.
            other @ (State::WokenEarly | State::Spawned) => *state = other,
        }
    }
}

/// Polls `work` once here (inside the runtime's context); if it is not done, the runtime
/// finishes it once it is woken. `work` must be cancel-safe to drop on the runtime.
pub(crate) fn run(runtime: &Handle, work: impl Future<Output = ()> + Send + 'static) {
    let mut work: Work = Box::pin(work);
    let deferred = Arc::new(Deferred {
        state: Mutex::new(State::Polling),
        runtime: runtime.clone(),
    });
    let waker = Waker::from(deferred.clone());
    let first = {
        let _runtime = runtime.enter();
        work.as_mut().poll(&mut Context::from_waker(&waker))
    };
    if first.is_ready() {
        return;
    }
    let mut state = deferred.lock();
    match std::mem::replace(&mut *state, State::Spawned) {
        State::Polling => *state = State::Parked(work),
        // Woken while it was polled: the wake-up found nothing to spawn, so spawn it here.
        State::WokenEarly => {
            drop(state);
            runtime.spawn(work);
        }
        State::Parked(_) | State::Spawned => unreachable!("only this thread parks it"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Poll;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_ready_future_finishes_on_the_calling_thread() {
        let rt = runtime();
        let here = std::thread::current().id();
        let (tx, rx) = std::sync::mpsc::channel();
        run(rt.handle(), async move {
            tx.send(std::thread::current().id()).unwrap();
        });
        assert_eq!(rx.try_recv().unwrap(), here);
    }

    #[test]
    fn a_pending_future_finishes_on_the_runtime_once_woken() {
        let rt = runtime();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = polls.clone();
        run(rt.handle(), async move {
            counted.fetch_add(1, Ordering::SeqCst);
            done_tx.send(rx.await.unwrap()).unwrap();
        });
        // Not spawned yet: nothing polls it until it is woken.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(done_rx.try_recv().is_err());
        rt.spawn(async move { tx.send(7).unwrap() });
        let got = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        assert_eq!(got, 7);
        assert_eq!(polls.load(Ordering::SeqCst), 1, "the body started once");
    }

    #[test]
    fn a_wake_up_during_the_first_poll_is_not_lost() {
        let rt = runtime();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut first = true;
        run(
            rt.handle(),
            std::future::poll_fn(move |cx| {
                if std::mem::take(&mut first) {
                    // Woken (as by an answer on another thread) before this poll returns.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                done_tx.send(()).unwrap();
                Poll::Ready(())
            }),
        );
        done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("spawned by the poller");
    }

    #[test]
    fn a_future_woken_by_a_dropped_sender_runs_to_its_end() {
        let rt = runtime();
        struct Dropped(Arc<AtomicUsize>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let guard = Dropped(drops.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        run(rt.handle(), async move {
            let _guard = guard;
            let _ = rx.await;
        });
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        // The sender goes without sending: the receiver is woken, the task runs and ends.
        drop(tx);
        for _ in 0..1000 {
            if drops.load(Ordering::SeqCst) == 1 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the future was never dropped");
    }
}
