//! The reply slot of a typed call in this process: a oneshot channel that the deadline sweeper
//! can also end ([`Expiry`]).
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
//! A call with a long deadline (see `handle/deadline.rs`) carries a second handle on the same
//! allocation, a [`Ticket`], beside its message in the mailbox: the system's sweeper looks at
//! queued and running calls' tickets once per tick and expires the overdue ones. The ticket
//! records when the sweeper first saw the call, so no clock is read when a call is made.

use std::cell::UnsafeCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::sweep::SweepClock;

const SENT: u8 = 1;
const SENDER_GONE: u8 = 2;
const RECEIVER_GONE: u8 = 4;
const EXPIRED: u8 = 8;
/// The receiver's waker is in place (see the module docs).
const RX_WAKER: u8 = 16;
/// Every outcome: once one is set, the receiver never writes its waker again.
const SETTLED: u8 = SENT | SENDER_GONE | EXPIRED;

/// Why a receiver got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoAnswer {
    /// The sender was dropped unanswered (the actor stopped, or dropped the message).
    Dropped,
    /// The sweeper found the call's deadline passed.
    Expired,
}

struct Inner<T> {
    state: AtomicU8,
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
    fn wake(&self, before: u8) {
        if before & (RX_WAKER | RECEIVER_GONE) == RX_WAKER {
            // SAFETY: `RX_WAKER` was set when we settled the channel (acquire): the receiver
            // wrote the waker before, and will not write it again (see the `Sync` impl).
            if let Some(waker) = unsafe { &*self.waker.get() } {
                waker.wake_by_ref();
            }
        }
    }
}

/// Creates a reply channel; `deadline` is the call's deadline if the sweeper keeps it.
pub(crate) fn channel<T: Send + 'static>(deadline: Option<Duration>) -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        state: AtomicU8::new(0),
        value: UnsafeCell::new(None),
        waker: UnsafeCell::new(None),
        after_ns: deadline.map_or(u64::MAX, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
        }),
        seen: AtomicU64::new(0),
    });
    (
        Sender {
            inner: Some(inner.clone()),
            // Made here, where `T: Send + 'static` is known, so that `ticket` needs no bounds.
            ticket: deadline.map(|_| make_ticket::<T> as MakeTicket<T>),
        },
        Receiver { inner },
    )
}

fn make_ticket<T: Send + 'static>(inner: &Arc<Inner<T>>) -> Ticket {
    Ticket(inner.clone())
}

/// Makes the [`Ticket`] of a channel whose answer type is `T`.
type MakeTicket<T> = fn(&Arc<Inner<T>>) -> Ticket;

/// The actor's end: answers once.
pub(crate) struct Sender<T> {
    inner: Option<Arc<Inner<T>>>,
    /// Only for a call whose deadline the sweeper keeps.
    ticket: Option<MakeTicket<T>>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oneshot::Sender")
    }
}

impl<T> Sender<T> {
    /// The handle the sweeper uses to expire this call; `None` unless it keeps its deadline.
    pub(crate) fn ticket(&self) -> Option<Ticket> {
        Some((self.ticket?)(self.inner.as_ref()?))
    }

    /// Delivers the answer; it is dropped if nobody waits any more.
    pub(crate) fn send(mut self, value: T) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        // SAFETY: only this sender writes `value`, once, and before `SENT` is published; the
        // receiver reads it only after seeing `SENT`.
        unsafe { *inner.value.get() = Some(value) };
        let before = inner.state.fetch_or(SENT, Ordering::AcqRel);
        inner.wake(before);
    }

    /// Whether the answer can no longer reach anyone: the receiver was dropped or the deadline
    /// passed.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.as_ref().is_none_or(|inner| {
            inner.state.load(Ordering::Acquire) & (RECEIVER_GONE | EXPIRED) != 0
        })
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let before = inner.state.fetch_or(SENDER_GONE, Ordering::AcqRel);
            inner.wake(before);
        }
    }
}

/// The caller's end: resolves to the answer, or to why there is none.
pub(crate) struct Receiver<T> {
    inner: Arc<Inner<T>>,
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oneshot::Receiver")
    }
}

impl<T> Receiver<T> {
    fn settled(&self) -> Option<Result<T, NoAnswer>> {
        let state = self.inner.state.load(Ordering::Acquire);
        if state & SENT != 0 {
            // SAFETY: `SENT` was published (acquire) after the sender's only write; the sender
            // never touches `value` again and only this receiver takes it.
            let value = unsafe { (*self.inner.value.get()).take() };
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
        if let Some(done) = self.settled() {
            return Poll::Ready(done);
        }
        let inner = &*self.inner;
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
                return Poll::Ready(self.settled().unwrap_or(Err(NoAnswer::Dropped)));
            }
        }
        // SAFETY: `RX_WAKER` is clear and nothing was settled when we looked: nobody reads the
        // waker until we set the flag again, below.
        unsafe { *inner.waker.get() = Some(cx.waker().clone()) };
        let before = inner.state.fetch_or(RX_WAKER, Ordering::AcqRel);
        if before & SETTLED != 0 {
            // Settled meanwhile (the settler saw no waker and woke nobody): done now.
            return Poll::Ready(self.settled().unwrap_or(Err(NoAnswer::Dropped)));
        }
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Once answered, nobody looks at the flag any more (the sender is spent, the sweeper
        // sees a settled call): a load instead of a read-modify-write on the common path.
        if self.inner.state.load(Ordering::Relaxed) & SENT == 0 {
            self.inner.state.fetch_or(RECEIVER_GONE, Ordering::Release);
        }
    }
}

/// What the sweeper needs of a call's reply channel, whatever its answer type.
trait Expiry: Send + Sync {
    /// Notes the first sighting, or expires the call if its deadline has passed since then.
    fn check(&self, clock: &mut SweepClock);
}

impl<T: Send> Expiry for Inner<T> {
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
pub(crate) struct Ticket(Arc<dyn Expiry>);

impl Ticket {
    /// Notes the first sighting of the call, or expires it if its deadline has passed since.
    /// Never early: the call was sent before it was first seen.
    pub(crate) fn check(&self, clock: &mut SweepClock) {
        self.0.check(clock);
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
        let ticket = tx.ticket().unwrap();
        ticket.check(&mut SweepClock::new(epoch)); // first sighting
        ticket.check(&mut SweepClock::new(epoch)); // too soon
        assert!(!tx.is_closed());
        std::thread::sleep(Duration::from_millis(40));
        ticket.check(&mut SweepClock::new(epoch));
        assert!(tx.is_closed(), "expired: the actor would skip it");
        let answer = futures_util::FutureExt::now_or_never(rx);
        assert_eq!(answer, Some(Err(NoAnswer::Expired)));
    }

    #[test]
    fn an_answer_beats_a_late_expiry() {
        let (tx, rx) = channel::<u32>(Some(Duration::ZERO));
        let ticket = tx.ticket().unwrap();
        tx.send(1);
        let epoch = Instant::now();
        ticket.check(&mut SweepClock::new(epoch));
        ticket.check(&mut SweepClock::new(epoch));
        assert_eq!(futures_util::FutureExt::now_or_never(rx), Some(Ok(1)));
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
