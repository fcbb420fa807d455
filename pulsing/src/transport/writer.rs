//! A connection's write half, shared by its writer task and by the threads that queue frames.
//!
//! Normally the writer task writes: whoever queues the first frame of a batch wakes it, and it
//! writes everything queued by then in one flush. A frame that is alone on the connection (the
//! only call in flight, the answer to the only call being served) is written by the thread that
//! queued it instead, when the write half is idle: that saves waking the writer, which on a
//! sequential call is a cross-thread wake-up on each side and most of the difference to a raw
//! socket. Batches stay with the writer: writing each of many frames at once would cost a system
//! call per frame.
//!
//! A pack of [`PACK_LIMIT`] bytes or more is not handed to tungstenite, which would copy it into
//! its write buffer first: it goes to the socket's [`Outlet`] (`direct.rs`), written from its own
//! buffer, and nothing after it is handed to tungstenite until it is written, so the order holds.
//!
//! **Why this is safe to share.** The half sits behind a mutex that is only ever held during one
//! poll, never across an `.await`. A thread other than the writer task takes it with `try_lock`
//! and writes only while the half is idle (nothing held back, nothing unflushed), polling with a
//! no-op waker: if the socket or the read half makes it wait, it leaves the rest to the writer
//! task, which polls again with its own waker. While a write is pending no other thread polls
//! the socket, so the writer's registration for readiness is never replaced by a no-op.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures_util::Sink;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::direct::Outlet;
use super::outbox::{Outbox, Pack};
use super::secure::Sealer;
use super::spare::Spare;
use crate::wire::PACK_LIMIT;

/// The write half of a WebSocket, whatever its stream.
pub(super) type Socket = Pin<Box<dyn Sink<Message, Error = WsError> + Send>>;

/// The socket, the sealer of its messages, and what was taken from the outboxes and not yet
/// handed to the socket.
pub(super) struct WriteHalf {
    socket: Socket,
    sealer: Sealer,
    /// Where a large frame's buffer goes back once it is written.
    spare: Arc<Spare>,
    /// Where large frames go, past tungstenite's write buffer (`direct.rs`).
    direct: Arc<Outlet>,
    /// Packs taken from the outboxes that the socket was not ready for, in order.
    held: VecDeque<Pack>,
    /// Whether the socket holds messages not yet flushed.
    unflushed: bool,
}

impl std::fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteHalf")
            .field("held", &self.held.len())
            .field("unflushed", &self.unflushed)
            .finish_non_exhaustive()
    }
}

impl WriteHalf {
    pub(super) fn new(
        socket: Socket,
        sealer: Sealer,
        spare: Arc<Spare>,
        direct: Arc<Outlet>,
    ) -> WriteHalf {
        WriteHalf {
            socket,
            sealer,
            spare,
            direct,
            held: VecDeque::new(),
            unflushed: false,
        }
    }

    /// Whether no write is under way: nothing held back and nothing unflushed.
    pub(super) fn is_idle(&self) -> bool {
        self.held.is_empty() && !self.unflushed
    }

    /// Hands the socket everything held back, then everything queued (`control` first, then
    /// `data` if given), and flushes. Pending while the socket makes it wait; `cx` is woken
    /// when it can go on.
    pub(super) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        control: &Outbox,
        data: Option<&Outbox>,
    ) -> Poll<Result<(), WsError>> {
        if self.poll_feed(cx)?.is_pending() {
            return Poll::Pending;
        }
        self.held = control.take();
        if let Some(data) = data {
            self.held.extend(data.take());
        }
        if self.poll_feed(cx)?.is_pending() {
            return Poll::Pending;
        }
        self.poll_flush(cx)
    }

    /// Sends one message outside the packs (a ping, the close), after what is held back.
    pub(super) fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        message: &mut Option<Message>,
    ) -> Poll<Result<(), WsError>> {
        if self.poll_feed(cx)?.is_pending() {
            return Poll::Pending;
        }
        if let Some(next) = message.take() {
            match self.socket.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    self.socket.as_mut().start_send(next)?;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    *message = Some(next);
                    return Poll::Pending;
                }
            }
        }
        self.poll_flush(cx)
    }

    /// Writes what is queued from the calling thread, if the half is idle and the socket takes
    /// it all at once. False if the writer task must finish (or do) the work.
    pub(super) fn write_now(&mut self, control: &Outbox, data: &Outbox) -> bool {
        if !self.is_idle() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        matches!(
            self.poll_write(&mut cx, control, Some(data)),
            Poll::Ready(Ok(()))
        )
    }

    /// Moves held packs into the socket while it is ready. A pack of [`PACK_LIMIT`] bytes or
    /// more goes to the outlet instead (`direct.rs`), and is written whole before anything
    /// after it is handed to tungstenite.
    fn poll_feed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        loop {
            if self.direct.is_busy() {
                std::task::ready!(self.socket.as_mut().poll_flush(cx))?;
                if self.direct.is_busy() {
                    // tungstenite flushed nothing: the connection has closed.
                    return Poll::Ready(Err(WsError::ConnectionClosed));
                }
            }
            let Some(pack) = self.held.front() else {
                return Poll::Ready(Ok(()));
            };
            if pack.len() >= PACK_LIMIT {
                // Everything before it must be in tungstenite's buffer first, where the flush
                // that starts the direct message writes it out before starting it: the split
                // sink keeps the last message it was given in a slot of its own until its next
                // `poll_ready` or flush, and a flush may start the direct message (through
                // tungstenite's own `poll_ready`) before it empties that slot.
                std::task::ready!(self.socket.as_mut().poll_ready(cx))?;
                let pack = self.held.pop_front().expect("just seen");
                if self.sealer.encrypts() {
                    // The records are a buffer of our own: the outlet masks it where it is.
                    let sealed = Pack {
                        bytes: self.sealer.seal_pieces(&pack.pieces().collect::<Vec<_>>()),
                        shared: Vec::new(),
                    };
                    self.spare.give_back(pack.bytes);
                    self.direct.put(sealed, self.sealer.buffers());
                } else {
                    self.direct.put(pack, &self.spare);
                }
                self.unflushed = true;
                continue;
            }
            std::task::ready!(self.socket.as_mut().poll_ready(cx))?;
            let pack = self.held.pop_front().expect("just seen");
            let message = self.sealer.seal(pack.bytes);
            self.socket.as_mut().start_send(Message::Binary(message))?;
            self.unflushed = true;
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        if self.unflushed {
            std::task::ready!(self.socket.as_mut().poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::transport::secure::{Initiator, Params, Responder, Suite};

    /// A socket that is ready, or not, as the test says, and records what it was sent.
    #[derive(Clone, Default)]
    struct Fake {
        state: Arc<Mutex<FakeState>>,
    }

    #[derive(Default)]
    struct FakeState {
        blocked: bool,
        /// Messages started, and how many of them were flushed.
        sent: Vec<Vec<u8>>,
        flushed: usize,
        wakers: Vec<Waker>,
    }

    impl Fake {
        fn block(&self, blocked: bool) {
            let mut state = self.state.lock().unwrap();
            state.blocked = blocked;
            if !blocked {
                state.wakers.drain(..).for_each(Waker::wake);
            }
        }

        fn flushed(&self) -> Vec<Vec<u8>> {
            let state = self.state.lock().unwrap();
            state.sent[..state.flushed].to_vec()
        }

        fn poll_unblocked(&self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
            let mut state = self.state.lock().unwrap();
            if state.blocked {
                state.wakers.push(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        }
    }

    impl Sink<Message> for Fake {
        type Error = WsError;
        fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
            self.poll_unblocked(cx)
        }
        fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
            self.state
                .lock()
                .unwrap()
                .sent
                .push(item.into_data().to_vec());
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
            std::task::ready!(self.poll_unblocked(cx))?;
            let mut state = self.state.lock().unwrap();
            state.flushed = state.sent.len();
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
            self.poll_flush(cx)
        }
    }

    /// A write half over `fake`, with an unencrypted channel (so packs travel as they are).
    fn half(fake: &Fake) -> WriteHalf {
        half_over(Box::pin(fake.clone()), Arc::new(Outlet::new(false)))
    }

    /// A write half over `socket` and `outlet`, with an unencrypted channel.
    pub(in crate::transport) fn half_over(socket: Socket, outlet: Arc<Outlet>) -> WriteHalf {
        let (initiator, msg1) =
            Initiator::start(Suite::AesGcm, None, 1, b"i", Params { encrypt: false });
        let (_, msg2) = Responder::answer(
            Suite::AesGcm,
            None,
            1,
            b"i",
            &msg1,
            b"r",
            Params { encrypt: false },
        )
        .unwrap();
        let (channel, _) = initiator.finish(&msg2, b"r").unwrap();
        WriteHalf::new(socket, channel.sealer, Default::default(), outlet)
    }

    fn queue(outbox: &Outbox, frame: u32) {
        outbox.push_quietly(&frame).unwrap();
    }

    #[test]
    fn a_ready_socket_is_written_and_flushed_by_the_queuing_thread() {
        let fake = Fake::default();
        let mut half = half(&fake);
        let (control, data) = (Outbox::default(), Outbox::default());
        queue(&data, 1);
        queue(&control, 2);
        assert!(half.write_now(&control, &data));
        // Control first, each outbox as one pack; all flushed; nothing left behind.
        assert_eq!(fake.flushed(), vec![vec![2], vec![1]]);
        assert!(half.is_idle());
        assert!(data.take().is_empty() && control.take().is_empty());
    }

    #[test]
    fn a_socket_that_is_not_ready_leaves_the_write_to_the_writer_in_order() {
        let fake = Fake::default();
        let mut half = half(&fake);
        let (control, data) = (Outbox::default(), Outbox::default());
        fake.block(true);
        queue(&data, 1);
        assert!(!half.write_now(&control, &data), "it would have to wait");
        assert!(!half.is_idle(), "the pack is held back");
        // A later frame: no other thread writes while the half is busy.
        queue(&data, 2);
        assert!(!half.write_now(&control, &data));
        assert!(fake.flushed().is_empty());

        // The writer task polls with its own waker, which the socket wakes when ready.
        let woken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let waker = Waker::from(Arc::new(Flag(woken.clone())));
        let mut cx = Context::from_waker(&waker);
        assert!(half.poll_write(&mut cx, &control, Some(&data)).is_pending());
        fake.block(false);
        assert!(
            woken.load(std::sync::atomic::Ordering::SeqCst),
            "the writer is woken"
        );
        assert!(matches!(
            half.poll_write(&mut cx, &control, Some(&data)),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(
            fake.flushed(),
            vec![vec![1], vec![2]],
            "in the order queued"
        );
        assert!(half.is_idle());
    }

    #[test]
    fn a_message_outside_the_packs_goes_after_what_is_held() {
        let fake = Fake::default();
        let mut half = half(&fake);
        let (control, data) = (Outbox::default(), Outbox::default());
        fake.block(true);
        queue(&data, 1);
        assert!(!half.write_now(&control, &data));
        fake.block(false);
        let mut ping = Some(Message::Binary(vec![9].into()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            half.poll_send(&mut cx, &mut ping),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(fake.flushed(), vec![vec![1], vec![9]]);
    }
}
