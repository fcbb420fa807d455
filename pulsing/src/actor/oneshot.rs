//! The reply slot of a typed call in this process, and of any call to another node (its
//! connection's reader sends the answer): a oneshot channel that the deadline sweeper can also
//! end ([`Expiry`]).
//!
//! One allocation per call, like tokio's oneshot, and one waker (only the receiver waits). Four
//! flags in one byte say what happened: the answer was sent, the sender was dropped unanswered,
//! the receiver was dropped, or the call's deadline passed. The answer wins over everything
//! else: a call answered before the sweeper noticed its deadline gets its answer. The sender sees
//! an expired or abandoned call as closed, so the actor skips it if it has not started it.
//!
//! A fifth flag in the same byte says the receiver's waker is in place (as in tokio's oneshot):
//! the receiver writes its waker only while the flag is clear and no outcome is set, then sets
//! it; whoever sets an outcome while the flag is set wakes that waker by reference. A receiver
//! polled again with a waker that wakes the same task changes nothing. So a call costs one waker
//! clone and no lock word besides the state (an `AtomicWaker` took four read-modify-writes).
//!
//! The handles count themselves in the same word, above the flags (not an `Arc`): the channel
//! is born with the count of its handles, so making the sender and the ticket costs no
//! read-modify-write, and a receiver dropped unanswered says so in the step that lets go.
//!
//! A call with a long deadline (see `handle/deadline.rs`) records it in its channel. The system's
//! sweeper reaches a queued call's channel through the message's sender ([`Sender::sweep`], by
//! reference, under the mailbox's lock) and a running `async` call's through a [`Ticket`] (a
//! counted handle, made only when the handler first waits); once per tick it expires the
//! overdue ones. The channel records when the sweeper first saw the call, so no clock is read
//! when a call is made. (A queued call used to carry a counted ticket beside its message: one
//! more read-modify-write per call, which made the default deadline 5–7% slower than
//! `.no_timeout()` on the 8 × 8 rows of `benches/local.rs`.)

use std::cell::UnsafeCell;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::sweep::SweepClock;

const SENT: usize = 1;
const SENDER_GONE: usize = 2;
const RECEIVER_GONE: usize = 4;
const EXPIRED: usize = 8;
/// The receiver's waker is in place (see the module docs).
const RX_WAKER: usize = 16;
/// Every outcome: once one is set, the receiver never writes its waker again.
const SETTLED: usize = SENT | SENDER_GONE | EXPIRED;
/// One handle (sender, receiver or ticket), counted above the flags.
const HANDLE: usize = 1 << 8;

/// Why a receiver got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoAnswer {
    /// The sender was dropped unanswered (the actor stopped, or dropped the message).
    Dropped,
    /// The sweeper found the call's deadline passed.
    Expired,
}

struct Inner<T> {
    /// The flags, and above them the count of live handles.
    state: AtomicUsize,
    /// Written once by the sender before it sets `SENT`; taken by the receiver after it sees it.
    value: UnsafeCell<Option<T>>,
    /// Written by the receiver only while `RX_WAKER` is clear and nothing is settled; read (to
    /// wake it) only by whoever saw `RX_WAKER` set when it settled the channel.
    waker: UnsafeCell<Option<Waker>>,
    /// The deadline, for the sweeper (nanoseconds; unused without a ticket).
    after_ns: u64,
    /// When the sweeper first saw the call (its clock, in nanoseconds; 0: not yet).
    seen: AtomicU64,
}

// SAFETY: `value` is written only by the one `Sender` before it publishes `SENT` (release), and
// read only by the one `Receiver` after it observed `SENT` (acquire); otherwise it is only
// dropped with the last handle. `waker` is written only by the receiver while `RX_WAKER` is
// clear and published by setting it (release); others read it (by reference) only after their
// read-modify-write saw `RX_WAKER` set (acquire), and the receiver clears the flag, seeing their
// outcome, before it would write again — so it never does. So sharing `Inner` between threads
// needs only `T: Send` (a `Waker` is `Send + Sync`).
unsafe impl<T: Send> Sync for Inner<T> {}

impl<T> Inner<T> {
    fn expire(&self) {
        let before = self.state.fetch_or(EXPIRED, Ordering::AcqRel);
        if before & (SENT | RECEIVER_GONE | EXPIRED) == 0 {
            self.wake(before);
        }
    }

    /// Wakes the receiver after setting an outcome, if its waker was in place (`before`: the
    /// state before the outcome was set).
    fn wake(&self, before: usize) {
        if before & (RX_WAKER | RECEIVER_GONE) == RX_WAKER {
            // SAFETY: `RX_WAKER` was set when we settled the channel (acquire): the receiver
            // wrote the waker before, and will not write it again (see the `Sync` impl).
            if let Some(waker) = unsafe { &*self.waker.get() } {
                waker.wake_by_ref();
            }
        }
    }
}

/// Lets go of one handle on `inner`, setting `flags` (not set before, and only ever set by this
/// handle) in the same step; frees the channel if it was the last.
///
/// # Safety
/// `inner` is a live channel and the caller's handle on it is not used again.
unsafe fn release<T>(inner: NonNull<Inner<T>>, flags: usize) {
    // SAFETY: the caller's handle keeps the channel alive until this step.
    let before = unsafe { inner.as_ref() }
        .state
        .fetch_sub(HANDLE - flags, Ordering::AcqRel);
    if before & !(HANDLE - 1) == HANDLE {
        // SAFETY: that was the last handle (acquire: every other handle's use came before);
        // the channel was made by `Box::new` in `channel`.
        drop(unsafe { Box::from_raw(inner.as_ptr()) });
    }
}

/// Creates a reply channel; `deadline` is the call's deadline if the sweeper keeps it.
pub(crate) fn channel<T: Send + 'static>(deadline: Option<Duration>) -> (Sender<T>, Receiver<T>) {
    let handles = 2;
    let inner = NonNull::from(Box::leak(Box::new(Inner {
        state: AtomicUsize::new(handles * HANDLE),
        value: UnsafeCell::new(None),
        waker: UnsafeCell::new(None),
        after_ns: deadline.map_or(u64::MAX, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
        }),
        seen: AtomicU64::new(0),
    })));
    (
        Sender {
            inner: Some(inner),
            // Made here, where `T: Send + 'static` is known, so that `ticket` needs no bounds.
            ticket: deadline.map(|_| make_ticket::<T> as MakeTicket<T>),
        },
        Receiver { inner },
    )
}

/// Counts one more handle and makes it a [`Ticket`].
fn make_ticket<T: Send + 'static>(inner: NonNull<Inner<T>>) -> Ticket {
    // SAFETY: called through a live sender, whose handle keeps the channel alive; the new
    // handle is counted before it exists (as `Arc::clone`, relaxed).
    unsafe { inner.as_ref() }
        .state
        .fetch_add(HANDLE, Ordering::Relaxed);
    Ticket(inner)
}

/// Makes the [`Ticket`] of a channel whose answer type is `T`.
type MakeTicket<T> = fn(NonNull<Inner<T>>) -> Ticket;

/// The actor's end: answers once.
pub(crate) struct Sender<T> {
    /// `None` once answered.
    inner: Option<NonNull<Inner<T>>>,
    /// Only for a call whose deadline the sweeper keeps.
    ticket: Option<MakeTicket<T>>,
}

// SAFETY: a handle on a channel whose `Inner` is `Sync` for `T: Send` (see there), as an `Arc`
// would be.
unsafe impl<T: Send> Send for Sender<T> {}
// SAFETY: as above; `&Sender` only reads the state.
unsafe impl<T: Send> Sync for Sender<T> {}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oneshot::Sender")
    }
}

impl<T> Sender<T> {
    /// The handle the sweeper uses to expire this call; `None` unless it keeps its deadline.
    pub(crate) fn ticket(&self) -> Option<Ticket> {
        Some((self.ticket?)(self.inner?))
    }

    /// Shows the sweeper this call's long deadline, if it has one: notes the first sighting,
    /// or expires the call if its deadline has passed since.
    pub(crate) fn sweep(&self, clock: &mut SweepClock)
    where
        T: Send,
    {
        if let Some(inner) = self.inner {
            // SAFETY: our handle keeps the channel alive.
            let inner = unsafe { inner.as_ref() };
            if inner.after_ns != u64::MAX {
                inner.check(clock);
            }
        }
    }

    /// Delivers the answer; it is dropped if nobody waits any more.
    pub(crate) fn send(mut self, value: T) {
        let Some(ptr) = self.inner.take() else {
            return;
        };
        // SAFETY: our handle keeps the channel alive until we release it below.
        let inner = unsafe { ptr.as_ref() };
        // SAFETY: only this sender writes `value`, once, and before `SENT` is published; the
        // receiver reads it only after seeing `SENT`.
        unsafe { *inner.value.get() = Some(value) };
        let before = inner.state.fetch_or(SENT, Ordering::AcqRel);
        // Woken before letting go: the receiver may free the channel as soon as we have.
        inner.wake(before);
        // SAFETY: our handle, not used again.
        unsafe { release(ptr, 0) };
    }

    /// Whether the answer can no longer reach anyone: the receiver was dropped or the deadline
    /// passed.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.is_none_or(|inner| {
            // SAFETY: our handle keeps the channel alive.
            let state = unsafe { inner.as_ref() }.state.load(Ordering::Acquire);
            state & (RECEIVER_GONE | EXPIRED) != 0
        })
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(ptr) = self.inner.take() {
            // SAFETY: our handle keeps the channel alive until we release it.
            let inner = unsafe { ptr.as_ref() };
            let before = inner.state.fetch_or(SENDER_GONE, Ordering::AcqRel);
            inner.wake(before);
            // SAFETY: our handle, not used again.
            unsafe { release(ptr, 0) };
        }
    }
}

/// The caller's end: resolves to the answer, or to why there is none.
pub(crate) struct Receiver<T> {
    inner: NonNull<Inner<T>>,
}

// SAFETY: as for `Sender`.
unsafe impl<T: Send> Send for Receiver<T> {}
// SAFETY: as for `Sender`; `&Receiver` allows nothing.
unsafe impl<T: Send> Sync for Receiver<T> {}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oneshot::Receiver")
    }
}

impl<T> Receiver<T> {
    fn inner(&self) -> &Inner<T> {
        // SAFETY: our handle keeps the channel alive.
        unsafe { self.inner.as_ref() }
    }

    fn settled(&mut self) -> Option<Result<T, NoAnswer>> {
        let state = self.inner().state.load(Ordering::Acquire);
        if state & SENT != 0 {
            // SAFETY: `SENT` was published (acquire) after the sender's only write; the sender
            // never touches `value` again and only this receiver takes it.
            let value = unsafe { (*self.inner().value.get()).take() };
            return Some(value.ok_or(NoAnswer::Dropped));
        }
        if state & EXPIRED != 0 {
            return Some(Err(NoAnswer::Expired));
        }
        if state & SENDER_GONE != 0 {
            return Some(Err(NoAnswer::Dropped));
        }
        None
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, NoAnswer>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(done) = this.settled() {
            return Poll::Ready(done);
        }
        // SAFETY: our handle keeps the channel alive.
        let inner = unsafe { this.inner.as_ref() };
        if inner.state.load(Ordering::Acquire) & RX_WAKER != 0 {
            // SAFETY: while `RX_WAKER` is set, the waker is only read (here and by wakers).
            let same = unsafe { &*inner.waker.get() }
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()));
            if same {
                // Whoever settles the channel now sees the flag and wakes this task.
                return Poll::Pending;
            }
            let before = inner.state.fetch_and(!RX_WAKER, Ordering::AcqRel);
            if before & SETTLED != 0 {
                return Poll::Ready(this.settled().unwrap_or(Err(NoAnswer::Dropped)));
            }
        }
        // SAFETY: `RX_WAKER` is clear and nothing was settled when we looked: nobody reads the
        // waker until we set the flag again, below.
        unsafe { *inner.waker.get() = Some(cx.waker().clone()) };
        let before = inner.state.fetch_or(RX_WAKER, Ordering::AcqRel);
        if before & SETTLED != 0 {
            // Settled meanwhile (the settler saw no waker and woke nobody): done now.
            return Poll::Ready(this.settled().unwrap_or(Err(NoAnswer::Dropped)));
        }
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Once answered, nobody looks at the flag any more (the sender is spent, the sweeper
        // sees a settled call); unanswered, the flag is set in the step that lets go.
        let flags = if self.inner().state.load(Ordering::Relaxed) & SENT == 0 {
            RECEIVER_GONE
        } else {
            0
        };
        // SAFETY: our handle, not used again.
        unsafe { release(self.inner, flags) };
    }
}

/// What the sweeper needs of a call's reply channel, whatever its answer type.
trait Expiry: Send + Sync {
    /// Notes the first sighting, or expires the call if its deadline has passed since then.
    fn check(&self, clock: &mut SweepClock);
    /// Lets go of one handle; `true` if it was the last (the caller frees the channel).
    fn release(&self) -> bool;
}

impl<T: Send> Expiry for Inner<T> {
    fn release(&self) -> bool {
        self.state.fetch_sub(HANDLE, Ordering::AcqRel) & !(HANDLE - 1) == HANDLE
    }

    fn check(&self, clock: &mut SweepClock) {
        if self.state.load(Ordering::Acquire) & (SETTLED | RECEIVER_GONE) != 0 {
            return; // answered, dropped or expired already: nothing to do
        }
        match self.seen.load(Ordering::Relaxed) {
            0 => self.seen.store(clock.now(), Ordering::Relaxed),
            seen => {
                if clock.start().saturating_sub(seen) >= self.after_ns {
                    self.expire();
                }
            }
        }
    }
}

/// The sweeper's handle on a call with a long deadline (see the module docs).
pub(crate) struct Ticket(NonNull<dyn Expiry>);

// SAFETY: a handle on a channel, which is `Send + Sync` (`Expiry`'s bounds).
unsafe impl Send for Ticket {}
// SAFETY: as above; `&Ticket` only checks the deadline.
unsafe impl Sync for Ticket {}

impl Ticket {
    /// Notes the first sighting of the call, or expires it if its deadline has passed since.
    /// Never early: the call was sent before it was first seen.
    pub(crate) fn check(&self, clock: &mut SweepClock) {
        // SAFETY: our handle keeps the channel alive.
        unsafe { self.0.as_ref() }.check(clock);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // SAFETY: our handle keeps the channel alive until this step.
        if unsafe { self.0.as_ref() }.release() {
            // SAFETY: that was the last handle; the channel was made by `Box::new`.
            drop(unsafe { Box::from_raw(self.0.as_ptr()) });
        }
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket")
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    #[tokio::test]
    async fn an_answer_arrives_and_a_dropped_sender_says_so() {
        let (tx, rx) = channel::<u32>(None);
        assert!(!tx.is_closed());
        tx.send(7);
        assert_eq!(rx.await, Ok(7));
        let (tx, rx) = channel::<u32>(None);
        drop(tx);
        assert_eq!(rx.await, Err(NoAnswer::Dropped));
    }

    #[tokio::test]
    async fn a_dropped_receiver_closes_the_sender() {
        let (tx, rx) = channel::<String>(None);
        drop(rx);
        assert!(tx.is_closed());
        tx.send("nobody listens".into()); // dropped with the channel, no leak (miri-style check)
    }

    #[test]
    fn the_sweeper_expires_only_after_the_deadline_since_its_first_sighting() {
        let epoch = Instant::now();
        let (tx, rx) = channel::<u32>(Some(Duration::from_millis(30)));
        // Queued: the sweeper reaches it through the message's sender.
        tx.sweep(&mut SweepClock::new(epoch)); // first sighting
        tx.sweep(&mut SweepClock::new(epoch)); // too soon
        assert!(!tx.is_closed());
        std::thread::sleep(Duration::from_millis(40));
        tx.sweep(&mut SweepClock::new(epoch));
        assert!(tx.is_closed(), "expired: the actor would skip it");
        let answer = futures_util::FutureExt::now_or_never(rx);
        assert_eq!(answer, Some(Err(NoAnswer::Expired)));
    }

    #[test]
    fn a_channel_without_a_swept_deadline_is_never_expired_by_the_sweeper() {
        let epoch = Instant::now();
        let (tx, _rx) = channel::<u32>(None);
        tx.sweep(&mut SweepClock::new(epoch));
        std::thread::sleep(Duration::from_millis(5));
        tx.sweep(&mut SweepClock::new(epoch));
        assert!(!tx.is_closed());
        assert!(
            tx.ticket().is_none(),
            "no ticket for a waiting handler either"
        );
    }

    #[test]
    fn an_answer_beats_a_late_expiry() {
        let (tx, rx) = channel::<u32>(Some(Duration::ZERO));
        // The one a waiting handler shows the sweeper: counted on its own.
        let ticket = tx.ticket().unwrap();
        tx.send(1);
        let epoch = Instant::now();
        ticket.check(&mut SweepClock::new(epoch));
        ticket.check(&mut SweepClock::new(epoch));
        assert_eq!(futures_util::FutureExt::now_or_never(rx), Some(Ok(1)));
    }

    #[test]
    fn the_last_handle_frees_the_channel_and_its_answer_whatever_the_order() {
        // The answer is an `Arc`: its count says whether the channel dropped it exactly once.
        let answer = std::sync::Arc::new(());
        for order in 0..6 {
            for answered in [false, true] {
                let (tx, rx) = channel(Some(Duration::from_secs(30)));
                let running = tx.ticket(); // a waiting handler's ticket
                let tx = if answered {
                    tx.send(answer.clone());
                    None
                } else {
                    Some(tx)
                };
                let mut handles: Vec<Box<dyn FnOnce()>> = vec![
                    Box::new(move || drop(tx)),
                    Box::new(move || drop(rx)),
                    Box::new(move || drop(running)),
                ];
                // Each of the six orders of the three drops.
                let first = handles.remove(order / 2);
                let second = handles.remove(order % 2);
                first();
                second();
                handles.pop().unwrap()();
                assert_eq!(std::sync::Arc::strong_count(&answer), 1);
            }
        }
    }

    #[test]
    fn a_receiver_polled_with_another_waker_wakes_that_one() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (a, b) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let (tx, mut rx) = channel::<u32>(None);
        let mut poll = |w: &Waker| Pin::new(&mut rx).poll(&mut Context::from_waker(w));
        assert!(poll(&wa).is_pending());
        assert!(poll(&wa).is_pending()); // same waker: nothing changes
        assert!(poll(&wb).is_pending()); // another task now waits
        tx.send(5);
        assert_eq!(b.0.load(Ordering::Relaxed), 1);
        assert_eq!(a.0.load(Ordering::Relaxed), 0);
        assert_eq!(poll(&wb), Poll::Ready(Ok(5)));
    }

    #[test]
    fn answers_cross_threads() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async {
            for i in 0..20_000u32 {
                let (tx, rx) = channel::<u32>(None);
                tokio::spawn(async move { tx.send(i) });
                assert_eq!(rx.await, Ok(i));
            }
        });
    }
}
