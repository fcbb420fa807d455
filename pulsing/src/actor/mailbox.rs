//! An actor's mailbox: a bounded FIFO queue with many senders and one receiver (the actor loop).
//!
//! Why not `tokio::sync::mpsc`: its channel allocates a shared block of 32 message slots for every
//! actor up front (the bulk of an idle actor's memory), and only the receiver can close it. This
//! mailbox lives inline in the actor's cell, allocates its queue only when a message arrives,
//! and can be closed from the actor loop while senders hold plain references. Every push and pop
//! takes the queue's lock once, and everything else they need lives under it: the count of room
//! taken (capacity), and the actor loop's waker (kept from one wait to the next; a sender wakes
//! it only if the loop went to sleep on an empty queue since it was last woken, with a clone
//! taken under the lock). So a message costs the lock, and the waker's clone when it wakes the
//! loop (an atomic room count and an `AtomicWaker` cost six more read-modify-writes per call).
//! A full mailbox makes `send` wait on a `Notify` (backpressure), never drop, and while senders
//! wait, newcomers queue behind them.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Poll, Waker};

use tokio::sync::mpsc::error::{SendError, TrySendError};
use tokio::sync::Notify;

/// Room taken in a mailbox for one message (see [`Mailbox::try_reserve`]).
pub(crate) struct Reserved<'a, M> {
    mailbox: &'a Mailbox<M>,
    used: bool,
}

impl<M> Reserved<'_, M> {
    /// Puts the message in the reserved room; fails only if the mailbox closed meanwhile.
    pub(crate) fn send(mut self, msg: M) -> Result<(), M> {
        self.used = true;
        self.mailbox.push(msg)
    }
}

impl<M> Drop for Reserved<'_, M> {
    fn drop(&mut self) {
        if !self.used {
            self.mailbox.give_back_room();
        }
    }
}

/// What the lock guards: the messages, the room taken, and the receiver's waker.
struct Queue<M> {
    items: VecDeque<M>,
    /// Room taken: messages queued, or about to be (reserved; at most `capacity`).
    taken: usize,
    /// The actor loop's waker, kept from one wait to the next (cloned only when it changes).
    waker: Option<Waker>,
    /// The actor loop found the queue empty and waits to be woken.
    asleep: bool,
    /// Calls wait elsewhere for this mailbox (a connection's backlog): the loop fetches them
    /// ([`Received::Refill`]) when it finds the queue empty, and at the latest after taking a
    /// mailbox's worth of messages, so that senders which keep the queue full cannot starve
    /// them.
    refill: bool,
    /// Messages taken since a refill was last asked for.
    since_refill: usize,
}

/// What the actor loop takes from its mailbox ([`Mailbox::next`]).
pub(crate) enum Received<M> {
    Message(M),
    /// The queue is empty and calls wait elsewhere for it: fetch them (see
    /// [`Mailbox::set_refill`]).
    Refill,
}

/// A bounded multi-producer, single-consumer queue.
pub(crate) struct Mailbox<M> {
    queue: Mutex<Queue<M>>,
    capacity: usize,
    /// Senders waiting for room; while there are some, newcomers queue behind them.
    waiting: AtomicUsize,
    room_freed: Notify,
    closed: AtomicBool,
    on_close: Notify,
}

impl<M> std::fmt::Debug for Mailbox<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("taken", &self.queue.try_lock().ok().map(|q| q.taken))
            .field("capacity", &self.capacity)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Counts a waiting sender for as long as it waits (also when its future is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<M> Mailbox<M> {
    /// An empty mailbox holding at most `capacity` messages.
    pub(crate) fn new(capacity: usize) -> Self {
        Mailbox {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                taken: 0,
                waker: None,
                asleep: false,
                refill: false,
                since_refill: 0,
            }),
            capacity: capacity.max(1),
            waiting: AtomicUsize::new(0),
            room_freed: Notify::new(),
            closed: AtomicBool::new(false),
            on_close: Notify::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue<M>> {
        // Only push/pop run under the lock: nothing can panic there.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes room for one message if there is some (under the lock). A sender that is not
    /// itself waiting gets none while others wait, so waiting senders are not starved by
    /// newcomers.
    fn take_room(&self, queue: &mut Queue<M>, waiter: bool) -> bool {
        if !waiter && self.waiting.load(Ordering::SeqCst) > 0 {
            return false;
        }
        if queue.taken >= self.capacity {
            return false;
        }
        queue.taken += 1;
        true
    }

    /// Wakes a waiting sender, if there is one, after room was given back (outside the lock).
    fn room_given_back(&self) {
        // The room was given back under the lock, and a waiting sender counts itself before it
        // takes the lock to look for room: either its look comes after our unlock and sees the
        // room, or its count happened before our lock, so this load sees it.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.room_freed.notify_one();
        }
    }

    /// Gives back the room of one message (a reservation dropped unused).
    fn give_back_room(&self) {
        self.queue().taken -= 1;
        self.room_given_back();
    }

    /// Appends a message for which room was taken, under the lock; the receiver's waker if it
    /// must be woken (after the lock is released: waking may unpark a thread).
    fn push_locked(queue: &mut Queue<M>, msg: M) -> Option<Waker> {
        queue.items.push_back(msg);
        // The receiver goes to sleep only when it finds the queue empty (under the lock), so
        // only the first push after that wakes it: the others find it awake, or woken, with
        // this message still ahead of it.
        if std::mem::take(&mut queue.asleep) {
            queue.waker.clone()
        } else {
            None
        }
    }

    /// Appends a message for which room was already reserved; gives the room back if closed.
    fn push(&self, msg: M) -> Result<(), M> {
        let mut queue = self.queue();
        // Checked under the lock: `close` drains under the same lock, so nothing is pushed
        // after the drain and left behind.
        if self.closed.load(Ordering::Acquire) {
            queue.taken -= 1;
            drop(queue);
            self.room_given_back();
            return Err(msg);
        }
        let wake = Self::push_locked(&mut queue, msg);
        drop(queue);
        if let Some(waker) = wake {
            waker.wake();
        }
        Ok(())
    }

    /// Runs `look` on the queued messages, under the lock; not at all when the mailbox is
    /// empty.
    pub(crate) fn with_queued(&self, look: impl FnOnce(std::collections::vec_deque::Iter<'_, M>)) {
        let queue = self.queue();
        if !queue.items.is_empty() {
            look(queue.items.iter());
        }
    }

    /// Takes room for one message if there is some now (`Ok(None)`: full; `Err`: closed). The
    /// room goes back if the reservation is dropped unused.
    pub(crate) fn try_reserve(&self) -> Result<Option<Reserved<'_, M>>, ()> {
        let mut queue = self.queue();
        if self.closed.load(Ordering::Acquire) {
            return Err(());
        }
        if !self.take_room(&mut queue, false) {
            return Ok(None);
        }
        Ok(Some(Reserved {
            mailbox: self,
            used: false,
        }))
    }

    /// Takes room for up to `n` messages at once, under one lock, by the rule of
    /// [`try_reserve`](Self::try_reserve): how many it took (0: full, or others wait for room;
    /// `Err`: closed). Fill it with [`push_reserved`](Self::push_reserved).
    pub(crate) fn try_reserve_many(&self, n: usize) -> Result<usize, ()> {
        let mut queue = self.queue();
        if self.closed.load(Ordering::Acquire) {
            return Err(());
        }
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return Ok(0);
        }
        let taken = n.min(self.capacity.saturating_sub(queue.taken));
        queue.taken += taken;
        Ok(taken)
    }

    /// Appends `msgs` (emptied) into `reserved` units of room taken by
    /// [`try_reserve_many`](Self::try_reserve_many), under one lock, and gives back the room
    /// they did not use. If the mailbox closed meanwhile, the messages are dropped (outside the
    /// lock) and all the room goes back.
    pub(crate) fn push_reserved(&self, msgs: &mut Vec<M>, reserved: usize) {
        debug_assert!(msgs.len() <= reserved, "more messages than room");
        let unused = reserved.saturating_sub(msgs.len());
        let mut queue = self.queue();
        if self.closed.load(Ordering::Acquire) {
            queue.taken -= reserved;
            drop(queue);
            self.room_given_back();
            // Dropped here, outside the lock: a reply slot may answer that the actor stopped.
            drop(std::mem::take(msgs));
            return;
        }
        queue.taken -= unused;
        let mut wake = None;
        for msg in msgs.drain(..) {
            wake = Self::push_locked(&mut queue, msg).or(wake);
        }
        drop(queue);
        if unused > 0 {
            self.room_given_back();
        }
        if let Some(waker) = wake {
            waker.wake();
        }
    }

    /// Adds a message if there is room now (closed: checked under the lock, as `close` drains
    /// under it).
    pub(crate) fn try_send(&self, msg: M) -> Result<(), TrySendError<M>> {
        let mut queue = self.queue();
        if self.closed.load(Ordering::Acquire) {
            return Err(TrySendError::Closed(msg));
        }
        if !self.take_room(&mut queue, false) {
            return Err(TrySendError::Full(msg));
        }
        let wake = Self::push_locked(&mut queue, msg);
        drop(queue);
        if let Some(waker) = wake {
            waker.wake();
        }
        Ok(())
    }

    /// Adds a message, waiting while the mailbox is full. Fails only if it is closed.
    ///
    /// Cancel safety: dropping the future before it completes leaves the message unsent.
    pub(crate) async fn send(&self, msg: M) -> Result<(), SendError<M>> {
        let msg = match self.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(msg)) => return Err(SendError(msg)),
            Err(TrySendError::Full(msg)) => msg,
        };
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        loop {
            let freed = self.room_freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            {
                let mut queue = self.queue();
                if self.closed.load(Ordering::Acquire) {
                    return Err(SendError(msg));
                }
                if self.take_room(&mut queue, true) {
                    let wake = Self::push_locked(&mut queue, msg);
                    drop(queue);
                    if let Some(waker) = wake {
                        waker.wake();
                    }
                    return Ok(());
                }
            }
            freed.await;
        }
    }

    /// Says whether calls wait elsewhere for this mailbox; setting it wakes a loop that went
    /// to sleep on an empty queue, so that it fetches them (no wake-up is lost: the loop looks
    /// at the flag under the same lock before it sleeps).
    pub(crate) fn set_refill(&self, pending: bool) {
        let mut queue = self.queue();
        queue.refill = pending;
        let wake = if pending && std::mem::take(&mut queue.asleep) {
            queue.waker.clone()
        } else {
            None
        };
        drop(queue);
        if let Some(waker) = wake {
            waker.wake();
        }
    }

    /// The next message; `None` once the mailbox is closed and empty. Only the actor loop calls it.
    #[cfg(test)]
    pub(crate) async fn recv(&self) -> Option<M> {
        loop {
            match self.next().await? {
                Received::Message(msg) => return Some(msg),
                Received::Refill => {}
            }
        }
    }

    /// The next message, or word that the queue is empty while calls wait elsewhere for it
    /// ([`set_refill`](Self::set_refill)); `None` once the mailbox is closed and empty. Only the
    /// actor loop calls it.
    pub(crate) async fn next(&self) -> Option<Received<M>> {
        poll_fn(|cx| {
            let mut queue = self.queue();
            let due =
                queue.refill && (queue.items.is_empty() || queue.since_refill >= self.capacity);
            if due && !self.closed.load(Ordering::Acquire) {
                queue.refill = false;
                queue.since_refill = 0;
                return Poll::Ready(Some(Received::Refill));
            }
            if let Some(msg) = queue.items.pop_front() {
                queue.taken -= 1;
                queue.since_refill += usize::from(queue.refill);
                drop(queue);
                self.room_given_back();
                return Poll::Ready(Some(Received::Message(msg)));
            }
            if self.closed.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
            // Under the lock: a sender pushes under it too and wakes after, so its wake-up
            // cannot slip between our look and our going to sleep.
            if !queue
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                queue.waker = Some(cx.waker().clone());
            }
            queue.asleep = true;
            Poll::Pending
        })
        .await
    }

    /// Closes the mailbox and returns what was still queued. Waiting senders fail; later sends
    /// fail at once.
    pub(crate) fn close(&self) -> VecDeque<M> {
        let left = {
            let mut queue = self.queue();
            self.closed.store(true, Ordering::Release);
            queue.waker = None; // the loop is done with it
            std::mem::take(&mut queue.items)
        };
        self.room_freed.notify_waiters();
        self.on_close.notify_waiters();
        left
    }

    /// Whether the mailbox is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once the mailbox is closed.
    pub(crate) async fn closed(&self) {
        loop {
            let notified = self.on_close.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn messages_arrive_in_order_and_room_comes_back() {
        let mb = Mailbox::new(2);
        mb.try_send(1).unwrap();
        mb.try_send(2).unwrap();
        assert!(matches!(mb.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(mb.recv().await, Some(1));
        mb.try_send(3).unwrap();
        assert_eq!(mb.recv().await, Some(2));
        assert_eq!(mb.recv().await, Some(3));
    }

    #[tokio::test]
    async fn room_taken_at_once_is_filled_in_order_and_the_rest_given_back() {
        let mb = Arc::new(Mailbox::new(4));
        mb.try_send(0).unwrap();
        assert_eq!(mb.try_reserve_many(10), Ok(3), "only the free room");
        assert!(
            matches!(mb.try_send(9), Err(TrySendError::Full(9))),
            "the room is taken"
        );
        mb.push_reserved(&mut vec![1, 2], 3);
        // The unused unit came back.
        mb.try_send(3).unwrap();
        assert_eq!(mb.try_reserve_many(1), Ok(0), "full");
        for want in 0..4 {
            assert_eq!(mb.recv().await, Some(want));
        }
        // A sender waiting for room goes first: no room is handed out in bulk past it.
        for i in 10..14 {
            mb.try_send(i).unwrap();
        }
        let waiting = tokio::spawn({
            let mb = mb.clone();
            async move { mb.send(99).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(mb.recv().await, Some(10));
        waiting.await.unwrap().unwrap();
        assert_eq!(mb.try_reserve_many(4), Ok(0));
    }

    #[tokio::test]
    async fn a_pending_refill_comes_when_the_queue_is_empty_or_a_mailboxful_later() {
        let mb = Arc::new(Mailbox::new(2));
        // Asleep on an empty queue: setting the flag wakes the loop with `Refill`.
        let sleeper = tokio::spawn({
            let mb = mb.clone();
            async move { matches!(mb.next().await, Some(Received::Refill)) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        mb.set_refill(true);
        assert!(tokio::time::timeout(Duration::from_secs(1), sleeper)
            .await
            .expect("woken")
            .unwrap());
        // Asked once; not again until set again.
        mb.try_send(1).unwrap();
        assert!(matches!(mb.next().await, Some(Received::Message(1))));
        // Pending while the queue never empties: due after a mailbox's worth (2) of messages.
        mb.set_refill(true);
        mb.try_send(2).unwrap();
        mb.try_send(3).unwrap();
        assert!(matches!(mb.next().await, Some(Received::Message(2))));
        mb.try_send(4).unwrap();
        assert!(matches!(mb.next().await, Some(Received::Message(3))));
        assert!(matches!(mb.next().await, Some(Received::Refill)));
        assert!(matches!(mb.next().await, Some(Received::Message(4))));
        // A closed mailbox asks for none.
        mb.set_refill(true);
        drop(mb.close());
        assert!(mb.next().await.is_none());
    }

    #[tokio::test]
    async fn a_mailbox_closed_after_room_was_taken_gives_it_all_back() {
        let mb = Mailbox::new(2);
        assert_eq!(mb.try_reserve_many(2), Ok(2));
        let left = mb.close();
        assert!(left.is_empty());
        let mut staged = vec![7];
        mb.push_reserved(&mut staged, 2);
        assert!(staged.is_empty(), "dropped, not queued");
        assert_eq!(mb.recv().await, None);
        assert_eq!(mb.try_reserve_many(1), Err(()));
    }

    #[tokio::test]
    async fn a_full_mailbox_makes_senders_wait_not_drop() {
        let mb = Arc::new(Mailbox::new(1));
        mb.try_send(0).unwrap();
        let senders: Vec<_> = (1..=50)
            .map(|i| {
                let mb = mb.clone();
                tokio::spawn(async move { mb.send(i).await.unwrap() })
            })
            .collect();
        let mut got = Vec::new();
        while got.len() < 51 {
            got.push(mb.recv().await.unwrap());
        }
        for s in senders {
            s.await.unwrap();
        }
        // Nothing dropped, and in order: waiting senders get room in the order they began to
        // wait (the semaphore is fair), so the queue stays FIFO through backpressure.
        assert_eq!(got, (0..=50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn closing_fails_waiting_and_later_senders_and_returns_the_rest() {
        let mb = Arc::new(Mailbox::new(1));
        mb.try_send("queued").unwrap();
        let waiting = tokio::spawn({
            let mb = mb.clone();
            async move { mb.send("waiting").await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let waiter = tokio::spawn({
            let mb = mb.clone();
            async move { mb.closed().await }
        });
        assert_eq!(mb.close(), ["queued"]);
        assert!(waiting.await.unwrap().is_err());
        assert!(matches!(mb.try_send("late"), Err(TrySendError::Closed(_))));
        assert!(mb.send("late").await.is_err());
        assert_eq!(mb.recv().await, None);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn a_waiting_receiver_is_woken_by_a_sender_on_another_thread() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async {
            let mb = Arc::new(Mailbox::new(8));
            let sender = tokio::spawn({
                let mb = mb.clone();
                async move {
                    for i in 0..100_000u32 {
                        mb.send(i).await.unwrap();
                    }
                }
            });
            for i in 0..100_000u32 {
                assert_eq!(mb.recv().await, Some(i));
            }
            sender.await.unwrap();
        });
    }

    #[test]
    fn senders_on_many_threads_neither_lose_nor_hang_when_some_give_up_waiting() {
        use std::sync::atomic::AtomicUsize;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mb = Arc::new(Mailbox::new(2));
            let sent = Arc::new(AtomicUsize::new(0));
            let senders: Vec<_> = (0..16)
                .map(|_| {
                    let (mb, sent) = (mb.clone(), sent.clone());
                    tokio::spawn(async move {
                        for i in 0..2_000u32 {
                            if i % 7 == 0 {
                                // Gives up waiting for room now and then (a dropped send).
                                let quick = Duration::from_micros(20);
                                if let Ok(done) = tokio::time::timeout(quick, mb.send(i)).await {
                                    done.unwrap();
                                    sent.fetch_add(1, Ordering::Relaxed);
                                }
                            } else {
                                mb.send(i).await.unwrap();
                                sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                })
                .collect();
            let receiver = tokio::spawn({
                let mb = mb.clone();
                async move {
                    let mut got = 0usize;
                    while let Ok(Some(_)) =
                        tokio::time::timeout(Duration::from_secs(2), mb.recv()).await
                    {
                        got += 1;
                    }
                    got
                }
            });
            for s in senders {
                tokio::time::timeout(Duration::from_secs(30), s)
                    .await
                    .expect("a sender hung")
                    .unwrap();
            }
            assert_eq!(receiver.await.unwrap(), sent.load(Ordering::Relaxed));
        });
    }
}
