//! An actor's mailbox: a bounded FIFO queue with many senders and one receiver (the actor loop).
//!
//! Why not `tokio::sync::mpsc`: its channel allocates a shared block of 32 message slots for every
//! actor up front (the bulk of an idle actor's memory), and only the receiver can close it. This
//! mailbox lives inline in the actor's cell, allocates its queue only when a message arrives,
//! and can be closed from the actor loop while senders hold plain references. Capacity is a tokio
//! [`Semaphore`]: a full mailbox makes `send` wait (backpressure), never drop.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use tokio::sync::mpsc::error::{SendError, TrySendError};
use tokio::sync::{Notify, Semaphore};

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
            self.mailbox.room.add_permits(1);
        }
    }
}

/// A bounded multi-producer, single-consumer queue.
pub(crate) struct Mailbox<M> {
    queue: Mutex<VecDeque<M>>,
    room: Semaphore,
    capacity: usize,
    receiver: AtomicWaker,
    closed: AtomicBool,
    on_close: Notify,
}

impl<M> std::fmt::Debug for Mailbox<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("room", &self.room.available_permits())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl<M> Mailbox<M> {
    /// An empty mailbox holding at most `capacity` messages.
    pub(crate) fn new(capacity: usize) -> Self {
        Mailbox {
            queue: Mutex::new(VecDeque::new()),
            room: Semaphore::new(capacity.max(1)),
            capacity: capacity.max(1),
            receiver: AtomicWaker::new(),
            closed: AtomicBool::new(false),
            on_close: Notify::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<M>> {
        // Only push/pop run under the lock: nothing can panic there.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a message for which room was already taken; gives the room back if closed.
    fn push(&self, msg: M) -> Result<(), M> {
        let was_empty = {
            let mut queue = self.queue();
            // Checked under the lock: `close` drains under the same lock, so nothing is pushed
            // after the drain and left behind.
            if self.closed.load(Ordering::Acquire) {
                drop(queue);
                self.room.add_permits(1);
                return Err(msg);
            }
            queue.push_back(msg);
            queue.len() == 1
        };
        // The receiver registers only when it finds the queue empty (under the lock), so only
        // the push that ends an empty queue needs to wake it: the others find it awake, or
        // woken, with this message still ahead of it.
        if was_empty {
            self.receiver.wake();
        }
        Ok(())
    }

    /// Runs `look` on the queued messages, under the lock; not at all when the mailbox is
    /// empty (seen without the lock: no message holds room).
    pub(crate) fn with_queued(&self, look: impl FnOnce(std::collections::vec_deque::Iter<'_, M>)) {
        if self.room.available_permits() >= self.capacity {
            return;
        }
        look(self.queue().iter());
    }

    /// Takes room for one message if there is some now (`Ok(None)`: full; `Err`: closed). The
    /// room goes back if the reservation is dropped unused.
    pub(crate) fn try_reserve(&self) -> Result<Option<Reserved<'_, M>>, ()> {
        if self.is_closed() {
            return Err(());
        }
        match self.room.try_acquire() {
            Ok(permit) => {
                permit.forget();
                Ok(Some(Reserved {
                    mailbox: self,
                    used: false,
                }))
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => Ok(None),
            Err(tokio::sync::TryAcquireError::Closed) => Err(()),
        }
    }

    /// Adds a message if there is room now.
    pub(crate) fn try_send(&self, msg: M) -> Result<(), TrySendError<M>> {
        if self.is_closed() {
            return Err(TrySendError::Closed(msg));
        }
        match self.room.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(tokio::sync::TryAcquireError::NoPermits) => return Err(TrySendError::Full(msg)),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(TrySendError::Closed(msg)),
        }
        self.push(msg).map_err(TrySendError::Closed)
    }

    /// Adds a message, waiting while the mailbox is full. Fails only if it is closed.
    ///
    /// Cancel safety: dropping the future before it completes leaves the message unsent.
    pub(crate) async fn send(&self, msg: M) -> Result<(), SendError<M>> {
        match self.room.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(SendError(msg)),
        }
        self.push(msg).map_err(SendError)
    }

    /// The next message; `None` once the mailbox is closed and empty. Only the actor loop calls it.
    pub(crate) async fn recv(&self) -> Option<M> {
        poll_fn(|cx| {
            let mut queue = self.queue();
            if let Some(msg) = queue.pop_front() {
                drop(queue);
                self.room.add_permits(1);
                return Poll::Ready(Some(msg));
            }
            if self.closed.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
            // Registered under the lock: a sender pushes under it too and wakes after, so its
            // wake-up cannot slip between our look and our registration.
            self.receiver.register(cx.waker());
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
            std::mem::take(&mut *queue)
        };
        self.room.close();
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
        got.sort();
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
}
