//! The cell of a running actor: its mailbox and its metadata, shared by every handle to it, and
//! its type-erased view ([`AnyCell`]) used by the registry, by shutdown, by by-name callers and
//! by peers' calls.
//!
//! Messages reach a cell in one of three forms: the typed message itself (a local typed call), a
//! method name with [`Args`] (a by-name call: [`AnyCell::enqueue_values`]), or a method name with
//! a postcard-encoded argument tuple (a typed call from another node:
//! [`AnyCell::enqueue_bytes`]). The last two are decoded by the generated code into the same
//! message the first one is, so every call ends in the same mailbox and the same handler.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::interface::Interface;
use super::mailbox::Mailbox;
use super::meta::{ActorMeta, HasMeta};
use super::reply::{BoxFuture, DynPending, Pending, ReplyTo};
use super::sweep::SweepClock;
use super::Actor;
use crate::error::Result;
use crate::value::Args;

/// What travels through a mailbox: a message, or a nudge that wakes an idle actor to stop.
pub(crate) enum Envelope<M> {
    Message(M),
    Stop,
}

/// The shared part of a running actor: its mailbox sender and its metadata.
pub(crate) struct Cell<A: Actor> {
    pub(crate) meta: ActorMeta,
    pub(crate) mailbox: Mailbox<Envelope<A::Message>>,
    /// Where calls wait for room in the mailbox (connections' backlogs), fetched by the actor
    /// loop when its mailbox runs empty; `None` once the loop has ended (see [`Overflow`]).
    overflow: std::sync::Mutex<Option<Vec<Box<dyn Overflow>>>>,
}

/// Calls that wait for room in an actor's mailbox somewhere else (a connection's backlog of
/// calls to this actor), registered with [`AnyCell::add_overflow`].
///
/// The actor loop itself fetches them when its mailbox runs empty, on its own thread: no task
/// hands them over, and the calls it posts meet no other thread at the mailbox's lock. At 1024
/// calls in flight to an actor with the default mailbox (half of them in a backlog), this took
/// the backlog's extra cost from 0.3 µs to a few hundredths of a µs per call (BENCHMARKS.md).
pub(crate) trait Overflow: Send {
    /// Puts waiting calls in the mailbox while it has room (the loop found it empty, or took a
    /// mailbox's worth of messages since the last refill).
    fn refill(&mut self) -> Refilled;
    /// Whatever still waits goes on elsewhere: other senders wait for room (see
    /// [`Refilled::HandOver`]), or the actor loop has ended (the mailbox is closed, so each call
    /// gets `Stopped`).
    fn hand_over(self: Box<Self>);
}

/// What a [`Overflow::refill`] left.
pub(crate) enum Refilled {
    /// Calls still wait: the mailbox is full again.
    More,
    /// None wait any more: the source is dropped.
    Done,
    /// It found no room while other senders wait for some: it is handed over, to wait with
    /// them (so that neither starves).
    HandOver,
}

impl<A: Actor> Cell<A> {
    /// A cell with an empty mailbox of `capacity`.
    pub(crate) fn new(meta: ActorMeta, capacity: usize) -> Self {
        Cell {
            meta,
            mailbox: Mailbox::new(capacity),
            overflow: std::sync::Mutex::new(Some(Vec::new())),
        }
    }

    fn overflow(&self) -> std::sync::MutexGuard<'_, Option<Vec<Box<dyn Overflow>>>> {
        self.overflow.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fetches the calls waiting in the registered overflows (the mailbox ran empty); those
    /// with calls left stay registered.
    pub(crate) fn refill(&self) {
        let Some(mut sources) = self.overflow().as_mut().map(std::mem::take) else {
            return;
        };
        let mut at = 0;
        while at < sources.len() {
            match sources[at].refill() {
                Refilled::More => at += 1,
                Refilled::Done => drop(sources.remove(at)),
                Refilled::HandOver => sources.remove(at).hand_over(),
            }
        }
        let mut overflow = self.overflow();
        match overflow.as_mut() {
            Some(registered) => {
                // Sources registered meanwhile stay after these (they are newer backlogs).
                sources.append(registered);
                *registered = sources;
                self.mailbox.set_refill(!registered.is_empty());
            }
            None => {
                drop(overflow);
                sources.into_iter().for_each(|source| source.hand_over());
            }
        }
    }

    /// The actor loop has ended: hands every registered overflow over (see
    /// [`Overflow::hand_over`]); later ones are handed over as they come.
    pub(crate) fn close_overflow(&self) {
        let sources = self.overflow().take();
        sources
            .into_iter()
            .flatten()
            .for_each(|source| source.hand_over());
    }

    /// Puts a message in the mailbox, waiting while it is full.
    pub(crate) async fn enqueue(&self, msg: A::Message) -> Result<()> {
        self.mailbox
            .send(Envelope::Message(msg))
            .await
            .map_err(|_| self.meta.stopped_error())
    }
}

/// The type-erased view of a [`Cell`], used by the registry, by shutdown, by by-name callers and
/// by peers' calls.
pub(crate) trait AnyCell: HasMeta {
    fn interface(&self) -> &'static Interface;
    fn request_stop(&self);
    fn is_alive(&self) -> bool;
    /// Builds the message of a by-name call and puts it in the mailbox, waiting for room.
    fn enqueue_values<'a>(
        &'a self,
        method: &'a str,
        args: Args,
        reply_to: ReplyTo,
    ) -> BoxFuture<'a, Result<DynPending>>;
    /// Builds the message of a typed call from its postcard bytes and puts it in the mailbox,
    /// waiting for room.
    fn enqueue_bytes<'a>(
        &'a self,
        method: &'a str,
        args: &'a [u8],
        reply_to: ReplyTo,
    ) -> BoxFuture<'a, Result<Pending<Vec<u8>>>>;
    /// Like `enqueue_bytes`, but only if the mailbox has room now (`Err(reply_to)` back when
    /// full).
    fn try_enqueue_bytes(
        &self,
        method: &str,
        args: &[u8],
        reply_to: ReplyTo,
    ) -> Result<std::result::Result<Pending<Vec<u8>>, ReplyTo>>;
    /// Like `enqueue_values`, but only if the mailbox has room now (`Err((args, reply_to))` back
    /// when full).
    fn try_enqueue_values(
        &self,
        method: &str,
        args: Args,
        reply_to: ReplyTo,
    ) -> Result<std::result::Result<DynPending, (Args, ReplyTo)>>;
    /// Takes room for up to `n` messages at once (0: full); fill it with `stage_*` and `commit`.
    ///
    /// # Errors
    /// `Stopped` once the mailbox is closed.
    fn reserve_many(&self, n: usize) -> Result<usize>;
    /// Builds the message of a typed call from its postcard bytes into `staged`.
    ///
    /// # Errors
    /// As `message_from_bytes`: an unknown method or bad arguments (its room stays unused).
    fn stage_bytes(
        &self,
        staged: &mut Staged,
        method: &str,
        args: &[u8],
        reply_to: ReplyTo,
    ) -> Result<()>;
    /// Builds the message of a by-name call into `staged`.
    ///
    /// # Errors
    /// As `message_from_values`.
    fn stage_values(
        &self,
        staged: &mut Staged,
        method: &str,
        args: Args,
        reply_to: ReplyTo,
    ) -> Result<()>;
    /// Puts the staged messages in the mailbox, in order, under one lock, into the `reserved`
    /// room; the room they did not use goes back.
    fn commit(&self, staged: &mut Staged, reserved: usize);
    /// Registers calls waiting for room in this actor's mailbox elsewhere: the actor loop
    /// fetches them once its mailbox runs empty (handed over at once if the loop has ended).
    fn add_overflow(&self, source: Box<dyn Overflow>);
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    /// Checks the long deadlines of this actor's calls, queued and running (see `sweep.rs`).
    fn sweep(&self, clock: &mut SweepClock);
}

/// Messages built for one actor's mailbox and not yet put in it (see [`AnyCell::commit`]): a
/// batch of calls that waited in a connection's backlog takes one lock of the mailbox for its
/// room and one for its messages, not two per call, so the drainer that fills the mailbox and
/// the actor that empties it rarely contend. Kept from one batch to the next (its buffer is).
#[derive(Default)]
pub(crate) struct Staged(Option<Box<dyn Any + Send>>);

impl Staged {
    /// The buffer of `A`'s messages (a fresh one if it held another actor type's).
    fn of<A: Actor>(&mut self) -> &mut Vec<Envelope<A::Message>> {
        let fits = self
            .0
            .as_ref()
            .is_some_and(|b| b.is::<Vec<Envelope<A::Message>>>());
        if !fits {
            self.0 = Some(Box::new(Vec::<Envelope<A::Message>>::new()));
        }
        match self.0.as_mut().and_then(|b| b.downcast_mut()) {
            Some(buffer) => buffer,
            None => unreachable!("the buffer was just made for `A`"),
        }
    }
}

impl<A: Actor> HasMeta for Cell<A> {
    fn meta(&self) -> &ActorMeta {
        &self.meta
    }
}

impl<A: Actor> AnyCell for Cell<A> {
    fn interface(&self) -> &'static Interface {
        self.meta.interface
    }

    fn request_stop(&self) {
        // The flag is read before every message; the nudge only wakes an idle actor, so a full
        // mailbox (a busy actor, which will read the flag soon) is fine.
        self.meta.stopping.store(true, Ordering::Release);
        let _ = self.mailbox.try_send(Envelope::Stop);
    }

    fn is_alive(&self) -> bool {
        !self.mailbox.is_closed()
    }

    fn enqueue_values<'a>(
        &'a self,
        method: &'a str,
        args: Args,
        reply_to: ReplyTo,
    ) -> BoxFuture<'a, Result<DynPending>> {
        Box::pin(async move {
            let (msg, pending) = A::message_from_values(method, args, reply_to)?;
            self.enqueue(msg).await?;
            Ok(pending)
        })
    }

    fn enqueue_bytes<'a>(
        &'a self,
        method: &'a str,
        args: &'a [u8],
        reply_to: ReplyTo,
    ) -> BoxFuture<'a, Result<Pending<Vec<u8>>>> {
        Box::pin(async move {
            let (msg, pending) = A::message_from_bytes(method, args, reply_to)?;
            self.enqueue(msg).await?;
            Ok(pending)
        })
    }

    fn try_enqueue_bytes(
        &self,
        method: &str,
        args: &[u8],
        reply_to: ReplyTo,
    ) -> Result<std::result::Result<Pending<Vec<u8>>, ReplyTo>> {
        let stopped = || self.meta.stopped_error();
        let Some(room) = self.mailbox.try_reserve().map_err(|()| stopped())? else {
            return Ok(Err(reply_to));
        };
        let (msg, pending) = A::message_from_bytes(method, args, reply_to)?;
        room.send(Envelope::Message(msg)).map_err(|_| stopped())?;
        Ok(Ok(pending))
    }

    fn try_enqueue_values(
        &self,
        method: &str,
        args: Args,
        reply_to: ReplyTo,
    ) -> Result<std::result::Result<DynPending, (Args, ReplyTo)>> {
        let stopped = || self.meta.stopped_error();
        let Some(room) = self.mailbox.try_reserve().map_err(|()| stopped())? else {
            return Ok(Err((args, reply_to)));
        };
        let (msg, pending) = A::message_from_values(method, args, reply_to)?;
        room.send(Envelope::Message(msg)).map_err(|_| stopped())?;
        Ok(Ok(pending))
    }

    fn reserve_many(&self, n: usize) -> Result<usize> {
        self.mailbox
            .try_reserve_many(n)
            .map_err(|()| self.meta.stopped_error())
    }

    fn stage_bytes(
        &self,
        staged: &mut Staged,
        method: &str,
        args: &[u8],
        reply_to: ReplyTo,
    ) -> Result<()> {
        // A peer's call answers through its reply slot: nothing to await (`Responded`).
        let (msg, _responded) = A::message_from_bytes(method, args, reply_to)?;
        staged.of::<A>().push(Envelope::Message(msg));
        Ok(())
    }

    fn stage_values(
        &self,
        staged: &mut Staged,
        method: &str,
        args: Args,
        reply_to: ReplyTo,
    ) -> Result<()> {
        let (msg, _responded) = A::message_from_values(method, args, reply_to)?;
        staged.of::<A>().push(Envelope::Message(msg));
        Ok(())
    }

    fn commit(&self, staged: &mut Staged, reserved: usize) {
        self.mailbox.push_reserved(staged.of::<A>(), reserved);
    }

    fn add_overflow(&self, source: Box<dyn Overflow>) {
        let mut overflow = self.overflow();
        match overflow.as_mut() {
            Some(sources) => {
                sources.push(source);
                drop(overflow);
                self.mailbox.set_refill(true);
            }
            None => {
                drop(overflow);
                source.hand_over();
            }
        }
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn sweep(&self, clock: &mut SweepClock) {
        self.mailbox.with_queued(|queued| {
            clock.enter();
            for envelope in queued {
                if let Envelope::Message(msg) = envelope {
                    A::sweep(msg, clock);
                }
            }
        });
        if let Some(ticket) = self.meta.running().as_ref() {
            clock.enter();
            ticket.check(clock);
        }
    }
}
