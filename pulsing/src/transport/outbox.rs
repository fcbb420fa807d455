//! The frames waiting to be written on a connection, packed as they are queued.
//!
//! A sender encodes its frame straight into the pack at the back of the queue (a buffer of up
//! to [`PACK_LIMIT`] bytes that the writer sends as one WebSocket message), under a short lock:
//! no buffer per frame, no channel per frame, and no copy into a pack later. The writer takes
//! every pack at once. A frame of [`PACK_LIMIT`] bytes or more is encoded outside the lock into
//! a pack of its own.
//!
//! **Why packs.** Each pack is one binary WebSocket message (up to 16 KiB; a larger frame travels
//! alone), because a message costs the WebSocket layer far more than a small frame's bytes:
//! packing gave +15–20% calls/s at 1024 in flight, and encoding straight into the pack (no
//! buffer and no channel operation per frame) another +10% (protocol version 2). The reader
//! decodes a message's frames in order.
//!
//! **Room.** Senders wait while more than 1 MiB is queued ([`Outbox::push_waiting`]); answers
//! never wait (an actor must not block on the network). While any sender waits, newcomers queue
//! behind it at a first-in, first-out gate, so calls keep their order; the gate is only touched
//! while someone waits, so the common path takes no extra lock.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Notify;

use super::spare::Spare;
use crate::wire::PACK_LIMIT;
use crate::wire::{encode_gathered, Append};

/// Bytes queued beyond which [`Outbox::push_waiting`] waits for the writer.
const ROOM: usize = 1 << 20;

/// One WebSocket message's worth of encoded frames.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Pack {
    /// The frames, back to back; for a lone frame of a pack or more, without its large byte
    /// strings, which...
    pub(super) bytes: Vec<u8>,
    /// ...go in at these offsets of `bytes`, in order (`wire::encode_gathered`).
    pub(super) shared: Vec<(usize, Bytes)>,
}

impl Pack {
    fn new(bytes: Vec<u8>) -> Pack {
        Pack {
            bytes,
            shared: Vec::new(),
        }
    }

    /// The message's length.
    pub(super) fn len(&self) -> usize {
        self.bytes.len() + self.shared.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// Where the message's pieces are, in order (empty ones left out).
    pub(super) fn layout(&self) -> impl Iterator<Item = Piece> + '_ {
        let ends =
            (self.shared.iter().enumerate()).map(|(i, (at, _))| (*at, Some(Piece::Shared(i))));
        let ends = ends.chain(std::iter::once((self.bytes.len(), None)));
        let mut from = 0;
        ends.flat_map(move |(to, shared)| {
            let own = Piece::Own(from..to);
            from = to;
            [Some(own), shared]
        })
        .flatten()
        .filter(|piece| !self.piece(piece).is_empty())
    }

    /// The bytes of `piece`.
    pub(super) fn piece(&self, piece: &Piece) -> &[u8] {
        match piece {
            Piece::Own(range) => &self.bytes[range.clone()],
            Piece::Shared(i) => &self.shared[*i].1,
        }
    }

    /// The message's pieces, in order.
    pub(super) fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.layout().map(|piece| self.piece(&piece))
    }
}

/// Where one piece of a [`Pack`]'s message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    /// These bytes of `bytes`.
    Own(std::ops::Range<usize>),
    /// `shared[i]`.
    Shared(usize),
}

/// Why the outbox did not queue a frame.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NotQueued {
    /// The connection is closed.
    Closed,
    /// The outbox stayed full for as long as the sender would wait.
    TimedOut,
    /// The frame does not encode (it holds a `Value` nested deeper than `MAX_DEPTH`, or a
    /// `Serialize` impl failed): nothing of it was queued.
    Unencodable(String),
}

/// The connection's queue of encoded frames.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer when the queue stops being empty.
    ready: Notify,
    /// Wakes senders waiting for room.
    room: Notify,
    /// Where senders that must wait queue up: first in, first out, so that no sender (and no
    /// newcomer) overtakes one that came before it. Untouched while nobody waits.
    gate: tokio::sync::Mutex<()>,
    /// Buffers for frames of a pack or more, used again (see `spare.rs`).
    pub(super) spare: std::sync::Arc<Spare>,
}

#[derive(Debug, Default)]
struct State {
    packs: VecDeque<Pack>,
    bytes: usize,
    closed: bool,
    /// Senders in [`Outbox::push_waiting`]'s slow path: while there are any, newcomers queue
    /// behind them.
    waiting: usize,
}

/// Whether a sender goes ahead of those waiting for room, and what it does if it may not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Queues whatever the room (answers: an actor never waits for the network).
    Always,
    /// Queues only in turn; otherwise gives up, not counted as waiting.
    OrGiveUp,
    /// Queues only in turn; otherwise is counted as waiting, under the same lock, so that no
    /// newcomer overtakes it.
    OrWait,
}

/// What [`Outbox::queue`] did.
enum Queued {
    /// Queued; true if the outbox was empty before (the writer must be woken, or the frame
    /// written by whoever queued it).
    Yes(bool),
    Not(NotQueued),
    /// Not queued: the sender must wait (counted in `waiting` if it asked to be).
    Wait,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `frame` without waiting (for answers: an actor never waits for the network).
    pub(super) fn push<T: Serialize + ?Sized>(&self, frame: &T) -> Result<(), NotQueued> {
        if self.push_quietly(frame)? {
            self.wake_writer();
        }
        Ok(())
    }

    /// Like [`push`](Self::push), without waking the writer: true if the outbox was empty, and
    /// then the caller must either write it or [`wake_writer`](Self::wake_writer).
    pub(super) fn push_quietly<T: Serialize + ?Sized>(&self, frame: &T) -> Result<bool, NotQueued> {
        match self.queue(frame, Turn::Always) {
            Queued::Yes(first) => Ok(first),
            Queued::Not(why) => Err(why),
            Queued::Wait => unreachable!("only a sender in turn waits"),
        }
    }

    /// Queues `frame` if the outbox has room and nobody waits for it, without waking the
    /// writer (see [`push_quietly`](Self::push_quietly)); `None` if the sender must wait (use
    /// [`push_waiting`](Self::push_waiting)).
    pub(super) fn try_push_in_turn<T: Serialize + ?Sized>(
        &self,
        frame: &T,
    ) -> Option<Result<bool, NotQueued>> {
        match self.queue(frame, Turn::OrGiveUp) {
            Queued::Yes(first) => Some(Ok(first)),
            Queued::Not(why) => Some(Err(why)),
            Queued::Wait => None,
        }
    }

    /// Wakes the writer to take what is queued.
    pub(super) fn wake_writer(&self) {
        self.ready.notify_one();
    }

    /// Queues `frame`; unless `turn` is `Always`, only if the outbox has room and no sender is
    /// waiting.
    fn queue<T: Serialize + ?Sized>(&self, frame: &T, turn: Turn) -> Queued {
        let unencodable = |e: postcard::Error| Queued::Not(NotQueued::Unencodable(e.to_string()));
        let size = match postcard::experimental::serialized_size(frame) {
            Ok(size) => size,
            Err(e) => return unencodable(e),
        };
        let alone = match (size >= PACK_LIMIT).then(|| self.encode_alone(frame, size)) {
            Some(Err(e)) => return unencodable(e),
            Some(Ok(bytes)) => Some(bytes),
            None => None,
        };
        let mut state = self.lock();
        let not_queued = if state.closed {
            Some(Queued::Not(NotQueued::Closed))
        } else if turn != Turn::Always && (state.waiting > 0 || state.bytes > ROOM) {
            state.waiting += usize::from(turn == Turn::OrWait);
            Some(Queued::Wait)
        } else {
            None
        };
        if let Some(not_queued) = not_queued {
            drop(state);
            if let Some(pack) = alone {
                self.spare.give_back(pack.bytes);
            }
            return not_queued;
        }
        let was_empty = state.packs.is_empty();
        match alone {
            Some(pack) => state.packs.push_back(pack),
            None => {
                let fits = state
                    .packs
                    .back()
                    .is_some_and(|pack| pack.len() + size <= PACK_LIMIT);
                if !fits {
                    state
                        .packs
                        .push_back(Pack::new(Vec::with_capacity(size.max(1024))));
                }
                let Some(Pack { bytes: pack, .. }) = state.packs.back_mut() else {
                    unreachable!("a pack was just ensured")
                };
                pack.reserve(size);
                let start = pack.len();
                if let Err(e) = postcard::serialize_with_flavor(frame, Append(pack)) {
                    // Measured fine but failed now (a `Serialize` that changed its mind): take
                    // the partial frame back out.
                    pack.truncate(start);
                    return unencodable(e);
                }
            }
        }
        state.bytes += size;
        Queued::Yes(was_empty)
    }

    /// Encodes a frame of `size` bytes (a pack or more) into a pack of its own, in a spare
    /// buffer, leaving its large byte strings where they are (`wire::encode_gathered`).
    fn encode_alone<T: Serialize + ?Sized>(
        &self,
        frame: &T,
        size: usize,
    ) -> postcard::Result<Pack> {
        let mut pack = Pack::new(self.spare.take(size));
        match encode_gathered(frame, &mut pack.bytes, &mut pack.shared) {
            Ok(()) if pack.bytes.len() < PACK_LIMIT => {
                // Most of the frame was gathered: its own few bytes move to a buffer their
                // size, and the spare one goes back at once rather than when it is written.
                let own = pack.bytes.to_vec();
                self.spare
                    .give_back(std::mem::replace(&mut pack.bytes, own));
                Ok(pack)
            }
            Ok(()) => Ok(pack),
            Err(e) => {
                self.spare.give_back(pack.bytes);
                Err(e)
            }
        }
    }

    /// Queues `frame`, first waiting (at most `within`, if given) while more than [`ROOM`]
    /// bytes are queued. Senders go in the order they came.
    pub(super) async fn push_waiting<T: Serialize + ?Sized>(
        &self,
        frame: &T,
        within: Option<Duration>,
    ) -> Result<(), NotQueued> {
        match self.queue(frame, Turn::OrWait) {
            Queued::Yes(first) => {
                if first {
                    self.wake_writer();
                }
                return Ok(());
            }
            Queued::Not(why) => return Err(why),
            Queued::Wait => {}
        }
        // Rare: wait for our turn at the gate, then for the writer to make room.
        let _counted = WaitingSender(self);
        let queued = async {
            let _turn = self.gate.lock().await;
            self.room().await;
            self.push_now(frame)
        };
        match within {
            Some(limit) => tokio::time::timeout(limit, queued)
                .await
                .unwrap_or(Err(NotQueued::TimedOut)),
            None => queued.await,
        }
    }

    fn push_now<T: Serialize + ?Sized>(&self, frame: &T) -> Result<(), NotQueued> {
        // (Our turn: no `in_turn` check.)
        self.push(frame)
    }

    /// Resolves once at most [`ROOM`] bytes are queued, or the outbox is closed.
    async fn room(&self) {
        loop {
            // Registered before checking again, so no wake-up is lost.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let state = self.lock();
                if state.closed || state.bytes <= ROOM {
                    return;
                }
            }
            room.await;
        }
    }

    /// Resolves when there may be packs to take.
    pub(super) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Takes every queued pack, in order.
    pub(super) fn take(&self) -> VecDeque<Pack> {
        let mut state = self.lock();
        let was_full = state.bytes > ROOM;
        state.bytes = 0;
        let packs = std::mem::take(&mut state.packs);
        drop(state);
        if was_full {
            self.room.notify_waiters();
        }
        packs
    }

    /// Refuses further frames and releases waiting senders.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.room.notify_waiters();
    }

    /// Closes and drops whatever was never written: a connection that is gone keeps no
    /// unsent data (its `Arc` may live on in a handle or a dial slot).
    pub(super) fn discard(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.packs = VecDeque::new();
        state.bytes = 0;
        drop(state);
        self.room.notify_waiters();
    }

    /// Bytes queued and not yet taken by the writer.
    pub(super) fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// A sender counted in `State::waiting` until it has queued its frame or given up.
struct WaitingSender<'a>(&'a Outbox);

impl Drop for WaitingSender<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode_exact, Frame, DEFAULT_MAX_FRAME};

    #[test]
    fn small_frames_share_a_pack_large_ones_travel_alone() {
        let outbox = Outbox::default();
        for id in 0..3 {
            assert_eq!(outbox.push(&Frame::Cancel { id }), Ok(()));
        }
        assert_eq!(outbox.push(&Frame::Gossip(vec![7; PACK_LIMIT])), Ok(()));
        assert_eq!(outbox.push(&Frame::Cancel { id: 9 }), Ok(()));
        let packs = outbox.take();
        assert_eq!(packs.len(), 3);
        assert_eq!(
            packs[0].bytes,
            [0, 1, 2]
                .map(|id| encode_exact(&Frame::Cancel { id }).unwrap())
                .concat()
        );
        assert_eq!(
            decode(&packs[1].bytes, DEFAULT_MAX_FRAME).unwrap(),
            Frame::Gossip(vec![7; PACK_LIMIT])
        );
        assert!(outbox.take().is_empty());
        outbox.close();
        assert_eq!(outbox.push(&Frame::Leaving), Err(NotQueued::Closed));
    }

    #[test]
    fn a_lone_frames_large_byte_strings_are_shared_not_copied() {
        use crate::value::Value;
        let big = Bytes::from(vec![5; 100_000]);
        let small = Bytes::from(vec![6; 1000]);
        let value = Value::List(vec![
            Value::Bytes(big.clone()),
            Value::Null,
            Value::Bytes(small),
            Value::Bytes(big.clone()),
        ]);
        let outbox = Outbox::default();
        outbox.push(&value).unwrap();
        outbox.push(&Frame::Cancel { id: 1 }).unwrap();
        let mut packs = outbox.take();
        assert_eq!(packs.len(), 2, "nothing is packed after a lone frame");
        let pack = packs.pop_front().unwrap();
        // The two large strings are the caller's own memory; the small one was copied, and
        // the frame's own bytes are in a buffer their size (the spare one went back).
        assert_eq!(pack.shared.len(), 2);
        assert!(pack.bytes.capacity() < PACK_LIMIT);
        assert!(outbox.spare.take(0).capacity() >= encode_exact(&value).unwrap().len());
        assert!(pack.shared.iter().all(|(_, b)| b.as_ptr() == big.as_ptr()));
        let whole = encode_exact(&value).unwrap();
        assert_eq!(pack.len(), whole.len());
        assert_eq!(
            pack.pieces().count(),
            4,
            "own, big, own (with the small one), big"
        );
        assert_eq!(pack.pieces().collect::<Vec<_>>().concat(), whole);
    }

    #[tokio::test]
    async fn a_full_outbox_holds_senders_until_the_writer_takes_it() {
        let outbox = std::sync::Arc::new(Outbox::default());
        assert_eq!(outbox.push(&Frame::Gossip(vec![0; ROOM + 1])), Ok(()));
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.push_waiting(&Frame::Leaving, None).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(outbox.take().len(), 1);
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert_eq!(outbox.take().len(), 1);
        // Full again: a sender with a limit gives up; closing releases the others.
        assert_eq!(outbox.push(&Frame::Gossip(vec![0; ROOM + 1])), Ok(()));
        let limited = outbox.push_waiting(&Frame::Leaving, Some(Duration::from_millis(20)));
        assert_eq!(limited.await, Err(NotQueued::TimedOut));
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.push_waiting(&Frame::Leaving, None).await }
        });
        tokio::task::yield_now().await;
        outbox.close();
        assert_eq!(waiting.await.unwrap(), Err(NotQueued::Closed));
    }

    #[tokio::test]
    async fn senders_go_in_the_order_they_came() {
        let outbox = std::sync::Arc::new(Outbox::default());
        assert_eq!(outbox.push(&Frame::Gossip(vec![0; ROOM + 1])), Ok(()));
        let mut senders = Vec::new();
        for id in 0..10 {
            let outbox = outbox.clone();
            senders.push(tokio::spawn(async move {
                outbox.push_waiting(&Frame::Cancel { id }, None).await
            }));
            tokio::task::yield_now().await; // it is waiting before the next one comes
        }
        assert_eq!(outbox.take().len(), 1); // room for all of them at once
                                            // A newcomer finds room, but still queues behind those that waited.
        let late = outbox.clone();
        senders.push(tokio::spawn(async move {
            late.push_waiting(&Frame::Cancel { id: 99 }, None).await
        }));
        for sender in senders {
            assert_eq!(sender.await.unwrap(), Ok(()));
        }
        let mut ids = Vec::new();
        for pack in outbox.take() {
            crate::wire::decode_packed(&pack.bytes.into(), DEFAULT_MAX_FRAME, |frame| {
                if let Frame::Cancel { id } = frame {
                    ids.push(id);
                }
                true
            })
            .unwrap();
        }
        assert_eq!(ids, (0..10).chain([99]).collect::<Vec<_>>());
    }
}
