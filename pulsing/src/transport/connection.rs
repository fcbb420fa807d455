//! One WebSocket connection to a peer node: a writer task, a reader task, and the bookkeeping that
//! multiplexes many concurrent calls and streams over it by request id.
//!
//! Requests, answers and stream items go through an [`Outbox`], which packs them into WebSocket
//! messages as they are queued. Control frames (credit, cancel, gossip) have an outbox of their
//! own, written first, so they never starve behind a large stream. When the connection ends,
//! every call and stream waiting on it fails at once with [`Error::PeerLost`](crate::Error::PeerLost).
//!
//! **Flow control, end to end.** A caller keeps at most [`CALL_WINDOW`] calls, told calls and
//! streams in flight on one connection; the next one waits for an answer to arrive (the same
//! backpressure a full mailbox gives a local caller). A told call's answer is awaited too, only to
//! free its place and to log it if it failed. The serving side holds at most [`SERVED_LIMIT`]
//! calls for a peer (twice the window: cancellations travel on the control lane and may lag) and
//! answers any beyond it at once with [`Error::Busy`](crate::Error::Busy), so no peer can grow a
//! node's memory with calls; a peer that stops reading its answers is dropped once
//! [`UNREAD_LIMIT`] bytes of them wait. A stream's items must stay within the credit its consumer
//! granted: items beyond it end that stream with an error. A request id already in use (a running
//! call or stream) closes the connection: it would orphan the running one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::by_id::{ById, Sharded};
use super::direct::Direct;
use super::handshake::{frame_kind, nonce, read_hello, Identity};
use super::inlet::{Inlet, LowWater};
use super::outbox::{NotQueued, Outbox};
use super::secure::{self, Opener, Params, MAX_HANDSHAKE_MESSAGE};
use super::writer::WriteHalf;
use crate::actor::oneshot;
use crate::error::{Error, Result};
use crate::wire::{
    decode_packed, decode_packed_fragments, encode, Frame, NoArgs, NodeId, Payload, RequestArgs,
    RequestRef, SharedBytes, SharedStr, PROTOCOL_VERSION,
};

/// How long establishing a connection may take, from the accepted socket (or the dial) to the
/// end of the handshake, a refusal's close included.
pub(crate) const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Calls, told calls and streams a caller keeps in flight on one connection at most; more wait
/// for room (see the module docs).
pub(crate) const CALL_WINDOW: usize = 2048;
/// Calls and streams a node serves for one peer at once at most; beyond it, `Error::Busy`. The
/// table of served calls is in shards by id and the limit holds per shard
/// ([`SERVED_PER_SHARD`]): a caller's ids are a counter, so its calls fill the shards evenly.
pub(crate) const SERVED_LIMIT: usize = 2 * CALL_WINDOW;
const SERVED_PER_SHARD: usize = SERVED_LIMIT / super::by_id::SHARDS;

/// How many calls a backlog's drainer takes under one lock.
pub(crate) const BACKLOG_CHUNK: usize = 64;
/// Bytes of answers waiting to be written beyond which a peer that does not read them is
/// dropped (or twice the frame limit, if larger: one answer may be that large).
const UNREAD_LIMIT: usize = 128 << 20;
/// How long the writer may still take to write its last frames once the connection has ended;
/// after that it gives up (a peer that never reads cannot hold the socket and the unsent data).
const WRITE_GRACE: Duration = Duration::from_secs(1);
/// The most stream credit a consumer can have granted at once (tokio's semaphore has a limit).
const MAX_CREDIT: usize = if (u32::MAX as usize) < tokio::sync::Semaphore::MAX_PERMITS {
    u32::MAX as usize
} else {
    tokio::sync::Semaphore::MAX_PERMITS
};

/// [`add_credit`], for the transport's tests.
#[cfg(test)]
pub(crate) fn add_credit_for_tests(credit: &tokio::sync::Semaphore, items: u32) {
    add_credit(credit, items);
}

/// A stream's credit semaphore with `initial` permits (at most [`MAX_CREDIT`]).
pub(crate) fn credit_semaphore(initial: u32) -> tokio::sync::Semaphore {
    tokio::sync::Semaphore::new((initial as usize).min(MAX_CREDIT))
}

/// Adds `items` of credit, never beyond [`MAX_CREDIT`] in all (beyond it tokio's semaphore
/// panics). Only the connection's reader adds, so checking first cannot race with another add.
fn add_credit(credit: &tokio::sync::Semaphore, items: u32) {
    let room = MAX_CREDIT.saturating_sub(credit.available_permits());
    credit.add_permits((items as usize).min(room));
}
/// The AEAD of every connection: AES-256-GCM (ring, hardware-accelerated); see `secure`.
const SUITE: secure::Suite = secure::Suite::AesGcm;

/// Which end of the connection we are: the handshake is not symmetric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// We dialed.
    Initiator,
    /// We accepted.
    Responder,
}

/// How often each side pings, and checks that it has heard from the peer.
const PING_EVERY: Duration = Duration::from_secs(1);
/// After this many checks in a row with nothing heard (pongs included), the peer is taken for
/// dead: a hung or vanished host is detected in about five seconds, even with no TCP reset.
const SILENT_CHECKS: u32 = 5;

/// A call arriving from the peer.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) id: u64,
    pub(crate) actor: SharedStr,
    /// The actor instance the caller addresses, if one (see `Frame::Request`).
    pub(crate) actor_id: Option<u64>,
    pub(crate) expect_type: Option<SharedStr>,
    pub(crate) method: SharedStr,
    pub(crate) args: Payload,
    /// `Some(initial credit)` for a stream.
    pub(crate) credit: Option<u32>,
}

/// What the node does with traffic that is not a reply to its own calls.
pub(crate) trait Inbound: Send + Sync + 'static {
    /// Serves a call; answer through `conn` (spawn for anything that waits).
    fn request(&self, conn: &Arc<Connection>, call: Incoming);
    /// Takes a gossip message.
    fn gossip(&self, conn: &Arc<Connection>, bytes: Vec<u8>);
    /// The peer said it is leaving the cluster.
    fn leaving(&self, conn: &Arc<Connection>);
    /// The connection has ended.
    fn closed(&self, conn: &Arc<Connection>);
}

/// One event of a stream the peer is sending us.
#[derive(Debug)]
pub(crate) enum StreamMsg {
    /// The peer opened the stream (`Ok`) or could not (`Err`).
    Opened(Result<()>),
    Items(Vec<Payload>),
    End(Option<Error>),
}

enum Waiting {
    Call {
        /// The same reply channel as a call in this process (no ticket: the reader sweeps
        /// these deadlines): 5–10% less CPU per call at 1024 in flight than tokio's oneshot,
        /// whose `Arc` and waker slot cost more read-modify-writes on a line both threads touch.
        tx: oneshot::Sender<Outcome>,
        /// For a deadline of [`SWEPT_DEADLINE`] or more: the reader's check (counted in
        /// `Connection::checks`) that expires it.
        expires: Option<u64>,
    },
    /// A told call: its answer only frees its place in the window (and is logged if it failed).
    Told,
    Stream {
        /// Holds at most the items of `credit` (the peer may not send more) and two events.
        tx: mpsc::UnboundedSender<StreamMsg>,
        /// Items the peer may still send: granted and not yet received.
        credit: u64,
    },
}

/// The caller's side of [`CALL_WINDOW`]: a count of calls in flight, and a wake-up for those
/// waiting for room. An atomic count, not a semaphore: taking and giving back a place costs one
/// atomic operation each, with no lock, unless someone waits.
#[derive(Debug, Default)]
struct Window {
    used: AtomicUsize,
    waiting: AtomicUsize,
    room: tokio::sync::Notify,
}

impl Window {
    fn try_take(&self) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < CALL_WINDOW).then_some(n + 1)
            })
            .is_ok()
    }

    /// Waits for a place; false if the connection closed first.
    async fn take(&self, closed: &Closed) -> bool {
        if self.try_take() {
            return true;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _counted = Uncount(&self.waiting);
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if closed.is_cancelled() {
                return false;
            }
            if self.try_take() {
                return true;
            }
            tokio::select! {
                () = room => {}
                () = closed.cancelled() => return false,
            }
        }
    }

    /// Calls, told calls and streams in flight.
    fn in_flight(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn give(&self) {
        self.used.fetch_sub(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.room.notify_one();
        }
    }
}

struct Uncount<'a>(&'a AtomicUsize);

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a call sent on a connection ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The peer answered (or the connection failed).
    Answered(Result<Payload>),
    /// Its deadline passed (a deadline of [`SWEPT_DEADLINE`] or more).
    Expired,
}

#[cfg(test)]
impl Outcome {
    /// The answer; panics if the call expired.
    pub(crate) fn answered(self) -> Result<Payload> {
        match self {
            Outcome::Answered(result) => result,
            Outcome::Expired => panic!("the call expired"),
        }
    }
}

/// Deadlines this long or longer are not armed as a timer per call, nor even read the clock:
/// the call is due at the reader's check (once a second, when it checks the peer is alive)
/// numbered `checks so far + ⌈deadline + 10 ms⌉ + 1`, so it fires never early and at most two
/// seconds late (≤ 20% of the deadline, 7% of the default 30 s). This saves a timer-wheel insertion and
/// removal per call (≈4% calls/s at 1024 in flight) and a clock read (≈4% of the caller's CPU).
/// Shorter deadlines get a precise timer from the caller.
pub(crate) const SWEPT_DEADLINE: Duration = Duration::from_secs(10);

/// Added to a swept deadline before counting its checks (see `Connection::call`).
const CHECK_SLACK: Duration = Duration::from_millis(10);

/// Why a request was not sent.
enum NotSent {
    /// The connection is gone.
    Lost,
    /// Its swept deadline passed while it waited for room in the window or the outbox.
    Expired,
    /// It does not encode (a `Value` nested too deep).
    Unencodable(String),
}

impl NotSent {
    fn into_error(self, conn: &Connection) -> Error {
        match self {
            NotSent::Unencodable(why) => Error::Codec(format!("the call does not encode: {why}")),
            NotSent::Lost | NotSent::Expired => conn.lost(),
        }
    }
}

/// What the reader does with a request the peer sent.
enum Admit {
    /// Serve it (it is recorded as `Served::Call`).
    Yes,
    /// Answer `Busy`: the peer has [`SERVED_LIMIT`] calls in flight here.
    Busy,
    /// Its id is in use: a protocol error.
    Repeated,
}

/// A stream or meta-call we are serving for the peer on a task, so `Cancel` and `Credit` can
/// reach it.
#[derive(Debug)]
pub(crate) struct Serving {
    pub(crate) abort: futures_util::future::AbortHandle,
    pub(crate) credit: Option<Arc<tokio::sync::Semaphore>>,
}

thread_local! {
    /// The connection (its address) and the id of the call this thread is posting, if any: see
    /// [`Connection::posting`].
    static POSTING: std::cell::Cell<(usize, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// What we serve for the peer, by request id.
#[derive(Debug)]
enum Served {
    /// A stream or meta-call on a task.
    Task(Serving),
    /// A call: in a backlog, on its way into its actor's mailbox, or in it; its `PeerReply`
    /// (`actor/peer.rs`) answers it.
    Call,
}

/// Whether the connection has ended: a cancellation token to wait on, and a flag for the checks
/// on every call (the token's own check takes a lock shared by every thread that checks it).
#[derive(Debug, Default)]
struct Closed {
    flag: AtomicBool,
    token: CancellationToken,
}

impl Closed {
    fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.token.cancel();
    }

    fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }
}

/// An open, authenticated connection to one peer.
pub(crate) struct Connection {
    pub(crate) peer: NodeId,
    pub(crate) peer_addr: String,
    /// Whether messages after the handshake are encrypted.
    pub(crate) encrypted: bool,
    /// Requests, answers, stream items: encoded and packed as they are queued, in order.
    outbox: Outbox,
    /// Credit, cancel, gossip, leaving: packed the same way, written before the outbox.
    control: Outbox,
    /// The socket's write half: the writer task's, lent to a thread that queues a lone frame
    /// (see `writer.rs`).
    write: Mutex<WriteHalf>,
    next_id: AtomicU64,
    /// How many times the reader has checked on the peer (once a second).
    checks: AtomicU64,
    /// Our calls in flight to the peer ([`CALL_WINDOW`]): one place per entry of `waiting`.
    window: Window,
    /// Answers queued beyond this many bytes mean the peer does not read them.
    unread_limit: usize,
    waiting: Mutex<ById<Waiting>>,
    serving: Sharded<Served>,
    /// Per actor name, the peer's calls waiting for room in that actor's mailbox, in order.
    backlogs: Mutex<HashMap<SharedStr, std::collections::VecDeque<Incoming>>>,
    /// How many backlogs exist: while none does (the usual case), calls skip the lock above.
    /// Only the reader starts backlogs, so it never misses one it must queue behind.
    backlog_count: AtomicUsize,
    /// Whether the peer ever cancelled a call: until it does, a served call's actor needs no
    /// lock to know the call is still wanted.
    cancelled_any: AtomicBool,
    closed: Closed,
    /// Cancelled [`WRITE_GRACE`] after the reader stopped: the writer gives up on its last words.
    abandoned: CancellationToken,
    /// Cancelled once the writer has stopped (after its last words).
    written: CancellationToken,
    reason: Mutex<Option<String>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Connection {
    /// Whether the connection has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Cancelled when the connection ends.
    pub(crate) fn closed_token(&self) -> CancellationToken {
        self.closed.token.clone()
    }

    fn lost(&self) -> Error {
        Error::PeerLost {
            peer: self.peer_addr.clone(),
            reason: lock(&self.reason)
                .clone()
                .unwrap_or_else(|| "connection closed".into()),
        }
    }

    /// Queues a data frame (replies, stream items); waits while the outbox is full.
    ///
    /// # Errors
    /// [`Error::Codec`] if the frame does not encode (nothing was sent), `PeerLost` if the
    /// connection is gone.
    pub(crate) async fn send(&self, frame: Frame) -> Result<()> {
        self.outbox
            .push_waiting(&frame, None)
            .await
            .map_err(|refused| match refused {
                NotQueued::Unencodable(why) => Error::Codec(format!("cannot encode: {why}")),
                NotQueued::Closed | NotQueued::TimedOut => self.lost(),
            })
    }

    /// Sends `message` (a ping, the close) after what the write half holds, and flushes.
    async fn send_message(&self, message: Message) -> std::result::Result<(), WsError> {
        let mut message = Some(message);
        std::future::poll_fn(|cx| lock(&self.write).poll_send(cx, &mut message)).await
    }

    /// After queuing the first frame of a batch: writes it from this thread if `alone` (nothing
    /// else is in flight, so no batch is coming) and the write half is idle; else wakes the
    /// writer. See `writer.rs`.
    fn write_or_wake(&self, alone: bool) {
        if alone {
            if let Ok(mut half) = self.write.try_lock() {
                if half.write_now(&self.control, &self.outbox) {
                    return;
                }
            }
        }
        self.outbox.wake_writer();
    }

    /// Queues a control frame; never waits. (Control frames hold no `Value`: they encode.)
    pub(crate) fn send_control(&self, frame: Frame) {
        let _ = self.control.push(&frame);
    }

    /// Removes what waits for `id`, giving its place in the window back.
    fn unwait(waiting: &mut ById<Waiting>, window: &Window, id: u64) -> Option<Waiting> {
        let removed = waiting.remove(&id);
        if removed.is_some() {
            window.give();
        }
        removed
    }

    /// Registers what waits for the answer (if anything) under a fresh id, then queues the
    /// request. If queuing fails, the registration is removed again. Waiting for room in the
    /// window or the outbox is rare and boxed: its state would make every call's future (and
    /// the copies of it) several times larger.
    async fn submit<X: serde::Serialize>(
        &self,
        call: Outgoing<'_, X>,
        waiting: Waiting,
        credit: Option<u32>,
    ) -> std::result::Result<u64, NotSent> {
        match self.try_submit(&call, waiting, credit) {
            Submitted::Sent(id) => Ok(id),
            Submitted::Refused(refused) => Err(refused),
            Submitted::MustWait(waiting) => {
                Box::pin(self.submit_waiting(call, waiting, credit)).await
            }
        }
    }

    /// [`submit`](Self::submit) without waiting: gives `waiting` back if the window or the
    /// outbox has no room now. Encoded here, from the borrowed names and arguments, straight
    /// into the outbox: no owned copies, and the caller's thread does the work rather than the
    /// connection's writer.
    fn try_submit<X: serde::Serialize>(
        &self,
        call: &Outgoing<'_, X>,
        waiting: Waiting,
        credit: Option<u32>,
    ) -> Submitted {
        if !self.window.try_take() {
            return Submitted::MustWait(waiting);
        }
        let id = match self.register(waiting) {
            Ok(id) => id,
            Err(refused) => return Submitted::Refused(refused),
        };
        let queued = self.try_push_request(call, id, credit);
        match queued {
            Some(queued) => match self.queued(id, queued) {
                Ok(id) => Submitted::Sent(id),
                Err(refused) => Submitted::Refused(refused),
            },
            // The outbox is full (rare): the caller waits, registered afresh.
            None => match Self::unwait(&mut lock(&self.waiting), &self.window, id) {
                Some(waiting) => Submitted::MustWait(waiting),
                // The connection ended meanwhile and told the waiter.
                None => Submitted::Refused(NotSent::Lost),
            },
        }
    }

    /// The slow path of [`submit`](Self::submit): waits for a place in the window and for room
    /// in the outbox, within a swept deadline.
    async fn submit_waiting<X: serde::Serialize>(
        &self,
        call: Outgoing<'_, X>,
        waiting: Waiting,
        credit: Option<u32>,
    ) -> std::result::Result<u64, NotSent> {
        // A swept deadline has no timer of its own: it bounds the waits for room here.
        let within = call.deadline.filter(|d| *d >= SWEPT_DEADLINE);
        if !self.window.try_take() {
            self.window_room(within).await?;
        }
        let id = self.register(waiting)?;
        let queued = self.try_push_request(&call, id, credit);
        let queued = match queued {
            Some(queued) => queued,
            // The outbox is full: wait with owned arguments (it wakes the writer itself).
            None => match call.args.to_payload() {
                Ok(args) => {
                    let request = call.request::<NoArgs>(id, RequestArgs::Payload(&args), credit);
                    self.outbox
                        .push_waiting(&request, within)
                        .await
                        .map(|()| false)
                }
                Err(why) => Err(NotQueued::Unencodable(why)),
            },
        };
        self.queued(id, queued)
    }

    /// Queues the request of `call` as `id` if the outbox has room now (`None`: full), encoded
    /// straight from the borrowed arguments.
    fn try_push_request<X: serde::Serialize>(
        &self,
        call: &Outgoing<'_, X>,
        id: u64,
        credit: Option<u32>,
    ) -> Option<std::result::Result<bool, NotQueued>> {
        match call.args.as_request() {
            Ok(args) => self
                .outbox
                .try_push_in_turn(&call.request(id, args, credit)),
            Err(why) => Some(Err(NotQueued::Unencodable(why))),
        }
    }

    /// Records `waiting` under a fresh id (its place in the window already taken).
    fn register(&self, waiting: Waiting) -> std::result::Result<u64, NotSent> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.waiting).insert(id, waiting);
        // `finish` sets `closed` before failing every waiter: a waiter added after that
        // would never be told, so check here.
        if self.is_closed() {
            Self::unwait(&mut lock(&self.waiting), &self.window, id);
            return Err(NotSent::Lost);
        }
        Ok(id)
    }

    /// After request `id` was pushed (or refused): writes or wakes the writer for the first
    /// frame of a batch; a refused request is unregistered.
    fn queued(
        &self,
        id: u64,
        queued: std::result::Result<bool, NotQueued>,
    ) -> std::result::Result<u64, NotSent> {
        match queued {
            Ok(first) => {
                if first {
                    self.write_or_wake(self.window.in_flight() == 1);
                }
                Ok(id)
            }
            Err(refused) => {
                Self::unwait(&mut lock(&self.waiting), &self.window, id);
                Err(match refused {
                    NotQueued::Closed => NotSent::Lost,
                    NotQueued::TimedOut => NotSent::Expired,
                    NotQueued::Unencodable(why) => NotSent::Unencodable(why),
                })
            }
        }
    }

    /// Waits for a place in the window (at most `within`, if given).
    async fn window_room(&self, within: Option<Duration>) -> std::result::Result<(), NotSent> {
        let room = self.window.take(&self.closed);
        match within {
            Some(limit) => match tokio::time::timeout(limit, room).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(NotSent::Lost),
                Err(_) => Err(NotSent::Expired),
            },
            None if room.await => Ok(()),
            None => Err(NotSent::Lost),
        }
    }

    /// Sends a call and waits for its reply. Dropping the future cancels the call on the peer.
    /// A deadline of [`SWEPT_DEADLINE`] or more is enforced here (`Expired`); a shorter one is
    /// the caller's to enforce.
    pub(crate) async fn call<X: serde::Serialize>(&self, call: Outgoing<'_, X>) -> Outcome {
        let (waiting, rx) = self.call_waiting(call.deadline);
        match self.submit(call, waiting, None).await {
            Ok(id) => Answer::new(self, id, rx).await,
            Err(refused) => self.refused(refused),
        }
    }

    /// [`call`](Self::call) without waiting to send: the answer to await if the call went out
    /// at once, else (no room in the window or the outbox now) its arguments back, to call
    /// again with [`call`](Self::call). A call refused outright is `Done`.
    pub(crate) fn try_call<X: serde::Serialize>(&self, call: Outgoing<'_, X>) -> Attempt<'_, X> {
        let (waiting, rx) = self.call_waiting(call.deadline);
        match self.try_submit(&call, waiting, None) {
            Submitted::Sent(id) => Attempt::Sent(Answer::new(self, id, rx)),
            Submitted::Refused(refused) => Attempt::Done(self.refused(refused)),
            Submitted::MustWait(_) => Attempt::MustWait(call.args),
        }
    }

    /// What waits for a call's answer, and the channel it arrives on. A swept deadline expires
    /// after a number of the reader's checks: whole checks, with a margin (a tick that runs a
    /// few ms late keeps its schedule; tokio's `Interval` only delays ticks more than 5 ms late).
    fn call_waiting(&self, deadline: Option<Duration>) -> (Waiting, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel(None);
        let expires = deadline.filter(|d| *d >= SWEPT_DEADLINE).map(|d| {
            let checks = d.saturating_add(CHECK_SLACK).as_secs().saturating_add(1);
            self.checks
                .load(Ordering::Relaxed)
                .saturating_add(checks)
                .saturating_add(1)
        });
        (Waiting::Call { tx, expires }, rx)
    }

    /// How a call that was not sent ends.
    fn refused(&self, refused: NotSent) -> Outcome {
        match refused {
            NotSent::Expired => Outcome::Expired,
            refused => Outcome::Answered(Err(refused.into_error(self))),
        }
    }

    /// Bytes queued for the peer and not yet written.
    #[cfg(test)]
    pub(crate) fn unsent_bytes(&self) -> usize {
        self.outbox.queued_bytes() + self.control.queued_bytes()
    }

    /// How many calls and streams wait for the peer.
    #[cfg(test)]
    pub(crate) fn waiting_calls(&self) -> usize {
        lock(&self.waiting).len()
    }

    /// Fails the calls whose swept deadline has passed, and cancels them on the peer.
    pub(crate) fn expire_calls(&self, check: u64) {
        let expired: Vec<(u64, Waiting)> = lock(&self.waiting)
            .extract_if(|_, w| matches!(w, Waiting::Call { expires: Some(at), .. } if *at <= check))
            .collect();
        for (id, waiting) in expired {
            self.window.give();
            if let Waiting::Call { tx, .. } = waiting {
                tx.send(Outcome::Expired);
            }
            self.send_control(Frame::Cancel { id });
        }
    }

    /// Sends a call whose reply nobody waits for: its `Response` only frees its place in the
    /// window, and is logged if it is an error. Waits while the window is full.
    pub(crate) async fn tell<X: serde::Serialize>(&self, call: Outgoing<'_, X>) -> Result<()> {
        self.submit(call, Waiting::Told, None)
            .await
            .map(drop)
            .map_err(|refused| refused.into_error(self))
    }

    /// Whether a call sent now would find room in the window (for `try_tell`).
    pub(crate) fn has_room(&self) -> bool {
        self.window.used.load(Ordering::SeqCst) < CALL_WINDOW
    }

    /// Opens a stream with `initial_credit` items of credit: returns its id and the channel its
    /// items arrive on. The caller grants more with [`grant`](Self::grant) and cancels with
    /// [`cancel`](Self::cancel).
    pub(crate) async fn open_stream<X: serde::Serialize>(
        &self,
        call: Outgoing<'_, X>,
        initial_credit: u32,
    ) -> Result<(u64, mpsc::UnboundedReceiver<StreamMsg>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let waiting = Waiting::Stream {
            tx,
            credit: u64::from(initial_credit),
        };
        let id = self
            .submit(call, waiting, Some(initial_credit))
            .await
            .map_err(|refused| refused.into_error(self))?;
        Ok((id, rx))
    }

    /// Lets the peer send `items` more items of stream `id`.
    pub(crate) fn grant(&self, id: u64, items: u32) {
        if let Some(Waiting::Stream { credit, .. }) = lock(&self.waiting).get_mut(&id) {
            *credit += u64::from(items);
        }
        self.send_control(Frame::Credit { id, items });
    }

    /// Gives up on call or stream `id`.
    pub(crate) fn cancel(&self, id: u64) {
        if Self::unwait(&mut lock(&self.waiting), &self.window, id).is_some() {
            self.send_control(Frame::Cancel { id });
        }
    }

    /// Records a stream or meta-call we serve on a task (in place of its `Call` entry), so
    /// the peer can cancel it (and grant credit to it).
    pub(crate) fn serving(&self, id: u64, serving: Serving) {
        self.serving
            .with(id, |table| table.insert(id, Served::Task(serving)));
    }

    /// Decides what to do with the peer's request `id`: it is recorded as a `Call` (so a
    /// `Cancel` reaches it and [`answer`](Self::answer) knows it is wanted) unless the peer
    /// already has [`SERVED_PER_SHARD`] in flight here in the shard of `id`, or `id` is in use.
    fn admit(&self, id: u64) -> Admit {
        self.serving.with(id, |serving| {
            let full = serving.len() >= SERVED_PER_SHARD;
            match serving.entry(id) {
                std::collections::hash_map::Entry::Occupied(_) => Admit::Repeated,
                std::collections::hash_map::Entry::Vacant(_) if full => Admit::Busy,
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(Served::Call);
                    Admit::Yes
                }
            }
        })
    }

    /// Whether the peer still waits for call `id` (it has not been answered or cancelled).
    pub(crate) fn is_serving(&self, id: u64) -> bool {
        if !self.cancelled_any.load(Ordering::Relaxed) {
            // A call cancelled at this very moment may still run: as if the cancel came later.
            return !self.is_closed();
        }
        self.serving.with(id, |serving| serving.contains_key(&id))
    }

    /// Runs `post`, which hands call `id` to its actor's mailbox: a reply slot of the call
    /// dropped on this thread meanwhile belongs to a post that failed, and is not answered
    /// ([`reply_dropped`](Self::reply_dropped)): whoever posts answers a failed post with its
    /// own error. Before, every call took a second lock of the served table to record that it
    /// was posted.
    pub(crate) fn posting<R>(&self, id: u64, post: impl FnOnce() -> R) -> R {
        struct Restore((usize, u64));
        impl Drop for Restore {
            fn drop(&mut self) {
                POSTING.set(self.0);
            }
        }
        let _restore = Restore(POSTING.replace((self as *const Connection as usize, id)));
        post()
    }

    /// Answers the peer's call `id`, unless it was cancelled or answered already. The encoding
    /// happens here, on the answering thread; the writer only writes the bytes.
    pub(crate) fn answer(&self, id: u64, result: Result<Payload>) {
        self.answer_with(id, &Frame::Response { id, result });
    }

    /// Like [`answer`](Self::answer), with the response already made (it must be a
    /// `Response` to `id`, such as a `TypedResponseRef`).
    pub(crate) fn answer_with<F: serde::Serialize + ?Sized>(&self, id: u64, response: &F) {
        if self
            .serving
            .with(id, |serving| serving.remove(&id))
            .is_none()
        {
            return;
        }
        let alone = self.serving.is_empty(id);
        self.push_answer(id, response, alone);
    }

    /// Queues an answer; one that does not encode (a `Value` nested too deep) is answered with
    /// that error instead. Drops the peer if it leaves too many answers unread. The answer to
    /// the only call being served (`alone`) is written at once by this thread, if it can.
    fn push_answer<F: serde::Serialize + ?Sized>(&self, id: u64, response: &F, alone: bool) {
        let queued = self
            .outbox
            .push_quietly(response)
            .or_else(|refused| match refused {
                NotQueued::Unencodable(why) => self.outbox.push_quietly(&Frame::Response {
                    id,
                    result: Err(Error::Codec(format!("the answer cannot be encoded: {why}"))),
                }),
                refused => Err(refused),
            });
        if queued == Ok(true) {
            self.write_or_wake(alone);
        }
        let unread = self.outbox.queued_bytes();
        if unread > self.unread_limit {
            self.close(&format!(
                "the peer does not read its answers ({} MiB unsent)",
                unread >> 20
            ));
        }
    }

    /// The reply slot of call `id` was dropped unanswered (its actor stopped with the call in
    /// its mailbox): answers with `error`. Not while the call is being posted on this thread
    /// ([`posting`](Self::posting)): the post failed, and the poster answers.
    pub(crate) fn reply_dropped(&self, id: u64, error: Error) {
        if POSTING.get() == (self as *const Connection as usize, id) {
            return;
        }
        let removed = self.serving.with(id, |serving| match serving.get(&id) {
            Some(Served::Call) => serving.remove(&id),
            _ => None,
        });
        if removed.is_some() {
            self.write_answer(id, Err(error));
        }
    }

    fn write_answer(&self, id: u64, result: Result<Payload>) {
        self.push_answer(id, &Frame::Response { id, result }, false);
    }

    /// Queues `call` behind the peer's earlier calls to the same actor that still wait for room
    /// in its mailbox, keeping their order; gives it back if there are none.
    pub(crate) fn behind_backlog(&self, call: Incoming) -> Option<Incoming> {
        if self.backlog_count.load(Ordering::Acquire) == 0 {
            return Some(call);
        }
        match lock(&self.backlogs).get_mut(&call.actor) {
            Some(backlog) => {
                backlog.push_back(call);
                None
            }
            None => Some(call),
        }
    }

    /// Starts the backlog of `call.actor` with `call`; whoever calls this drains it with
    /// [`next_in_backlog`](Self::next_in_backlog).
    pub(crate) fn start_backlog(&self, call: Incoming) {
        let actor = call.actor.clone();
        lock(&self.backlogs).insert(actor, std::collections::VecDeque::from([call]));
        self.backlog_count.fetch_add(1, Ordering::AcqRel);
    }

    /// Moves the next calls of `actor`'s backlog, up to [`BACKLOG_CHUNK`], to the end of
    /// `into`: one lock for many calls, taken while the reader adds more. False (and the
    /// backlog is gone) once it is empty or the connection has closed. Calls cancelled once
    /// moved are no longer dropped from the backlog (`unbacklog`): its drainer skips them, so
    /// a backlog holds at most [`SERVED_LIMIT`] + [`BACKLOG_CHUNK`] calls.
    pub(crate) fn next_in_backlog(
        &self,
        actor: &str,
        into: &mut std::collections::VecDeque<Incoming>,
    ) -> bool {
        let mut backlogs = lock(&self.backlogs);
        if let Some(backlog) = backlogs.get_mut(actor).filter(|_| !self.is_closed()) {
            let taken = backlog.len().min(BACKLOG_CHUNK);
            into.extend(backlog.drain(..taken));
            if taken > 0 {
                return true;
            }
        }
        if backlogs.remove(actor).is_some() {
            self.backlog_count.fetch_sub(1, Ordering::AcqRel);
        }
        false
    }

    /// Forgets a stream or meta-call we served.
    pub(crate) fn served(&self, id: u64) {
        self.serving.with(id, |serving| serving.remove(&id));
    }

    /// Drops the peer's call `id` from whichever backlog holds it (it was cancelled): a
    /// cancelled call must not keep its place, or request-and-cancel pairs could grow a backlog
    /// past [`SERVED_LIMIT`]. Only while backlogs exist, which is rare.
    fn unbacklog(&self, id: u64) {
        if self.backlog_count.load(Ordering::Acquire) == 0 {
            return;
        }
        for backlog in lock(&self.backlogs).values_mut() {
            if let Some(at) = backlog.iter().position(|c| c.id == id) {
                backlog.remove(at);
                return;
            }
        }
    }

    /// Closes the connection, telling the peer why.
    pub(crate) fn close(&self, reason: &str) {
        lock(&self.reason).get_or_insert_with(|| reason.to_owned());
        self.closed.cancel();
        self.outbox.close();
    }

    /// Resolves once the writer has stopped, its last frames sent.
    pub(crate) async fn written(&self) {
        self.written.cancelled().await;
    }

    fn finish(self: &Arc<Self>, inbound: &dyn Inbound) {
        self.closed.cancel();
        // Senders waiting for room fail now, even if the writer is stuck on a dead socket; and
        // the writer gets a moment for its last words, then gives up on them.
        self.outbox.close();
        let abandoned = self.abandoned.clone();
        tokio::spawn(async move {
            tokio::time::sleep(WRITE_GRACE).await;
            abandoned.cancel();
        });
        let waiting: Vec<Waiting> = lock(&self.waiting).drain().map(|(_, w)| w).collect();
        for w in waiting {
            match w {
                Waiting::Call { tx, .. } => {
                    tx.send(Outcome::Answered(Err(self.lost())));
                }
                Waiting::Told => {}
                Waiting::Stream { tx, .. } => {
                    let _ = tx.send(StreamMsg::End(Some(self.lost())));
                }
            }
        }
        for s in self.serving.drain() {
            if let Served::Task(task) = s {
                task.abort.abort();
            }
        }
        // Backlogged calls hold the peer's arguments: free them now.
        lock(&self.backlogs).clear();
        inbound.closed(self);
    }
}

/// A call to send: which actor, which method, with what, and how long the caller will wait.
#[derive(Debug)]
pub(crate) struct Outgoing<'a, X = NoArgs> {
    pub(crate) actor: &'a str,
    pub(crate) actor_id: Option<u64>,
    pub(crate) expect_type: Option<&'a str>,
    pub(crate) method: &'a str,
    pub(crate) args: OutArgs<X>,
    pub(crate) deadline: Option<Duration>,
}

/// A call's arguments: a payload, or a typed argument tuple that is encoded straight into the
/// request frame (no buffer of its own, so a 1 MiB argument is copied once, not twice).
#[derive(Debug)]
pub(crate) enum OutArgs<X = NoArgs> {
    Payload(Payload),
    Typed(X),
}

impl<X: serde::Serialize> OutArgs<X> {
    /// The arguments as they are queued: borrowed, with the size of a typed encoding.
    fn as_request(&self) -> std::result::Result<RequestArgs<'_, X>, String> {
        Ok(match self {
            OutArgs::Payload(payload) => RequestArgs::Payload(payload),
            OutArgs::Typed(value) => RequestArgs::Typed {
                value,
                size: postcard::experimental::serialized_size(value).map_err(|e| e.to_string())?,
            },
        })
    }

    /// The arguments as a payload (for a request that must wait for room, and so cannot
    /// borrow typed arguments across the wait: they need not be `Sync`).
    fn to_payload(&self) -> std::result::Result<std::borrow::Cow<'_, Payload>, String> {
        match self {
            OutArgs::Payload(payload) => Ok(std::borrow::Cow::Borrowed(payload)),
            OutArgs::Typed(value) => SharedBytes::encode(value)
                .map(|bytes| std::borrow::Cow::Owned(Payload::Typed(bytes)))
                .map_err(|e| e.to_string()),
        }
    }
}

impl<X> Outgoing<'_, X> {
    /// The request frame of this call under `id`, with `args`.
    fn request<'r, Y>(
        &'r self,
        id: u64,
        args: RequestArgs<'r, Y>,
        credit: Option<u32>,
    ) -> RequestRef<'r, Y> {
        RequestRef {
            id,
            actor: self.actor,
            actor_id: self.actor_id,
            expect_type: self.expect_type,
            method: self.method,
            args,
            credit,
            deadline_ms: self
                .deadline
                .map(|d| d.as_millis().min(u64::MAX as u128) as u64),
        }
    }
}

/// What [`Connection::submit`] did with a call.
enum Submitted {
    Sent(u64),
    Refused(NotSent),
    /// No room in the window or the outbox now: what was to wait for the answer, back.
    MustWait(Waiting),
}

/// What [`Connection::try_call`] did with a call.
#[derive(Debug)]
pub(crate) enum Attempt<'c, X> {
    /// Sent: its answer, to await.
    Sent(Answer<'c>),
    /// Refused outright (the connection is gone, the arguments do not encode).
    Done(Outcome),
    /// Not sent: no room now. The arguments, for [`Connection::call`].
    MustWait(OutArgs<X>),
}

/// The answer to a call sent on a connection. Dropping it before the answer came cancels the
/// call on the peer.
#[derive(Debug)]
pub(crate) struct Answer<'c> {
    conn: &'c Connection,
    id: u64,
    rx: oneshot::Receiver<Outcome>,
    settled: bool,
}

impl<'c> Answer<'c> {
    fn new(conn: &'c Connection, id: u64, rx: oneshot::Receiver<Outcome>) -> Self {
        Answer {
            conn,
            id,
            rx,
            settled: false,
        }
    }
}

impl Future for Answer<'_> {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = self.get_mut();
        let outcome = std::task::ready!(Pin::new(&mut this.rx).poll(cx));
        this.settled = true;
        Poll::Ready(outcome.unwrap_or_else(|_| Outcome::Answered(Err(this.conn.lost()))))
    }
}

impl Drop for Answer<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.conn.cancel(self.id);
        }
    }
}

/// Runs the handshake on a fresh WebSocket and starts the connection's tasks. Nothing but the
/// handshake's few small messages is read before the peer has proved the cluster secret; a
/// refusal is sent as the WebSocket close reason, and the whole of it, close included, ends by
/// `deadline` (the caller's: [`ESTABLISH_TIMEOUT`] from the accepted socket or the dial).
pub(crate) async fn establish<S>(
    ws: WebSocketStream<Direct<S>>,
    me: &Identity,
    role: Role,
    max_frame: usize,
    inbound: Arc<dyn Inbound>,
    deadline: tokio::time::Instant,
) -> std::result::Result<Arc<Connection>, String>
where
    S: AsyncRead + AsyncWrite + LowWater + Unpin + Send + 'static,
{
    let outlet = ws.get_ref().outlet();
    let inlet = ws.get_ref().inlet();
    let (mut sink, mut stream) = ws.split();
    let handshake = tokio::time::timeout_at(deadline, handshake(&mut sink, &mut stream, me, role));
    let (peer, peer_addr, channel) = match handshake.await {
        Ok(Ok(done)) => done,
        Ok(Err(reason)) => {
            let close = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Policy,
                // A close reason must fit a control frame (123 bytes).
                reason: truncate(&reason, 120).to_owned().into(),
            };
            let _ = tokio::time::timeout_at(deadline, sink.send(Message::Close(Some(close)))).await;
            return Err(reason);
        }
        Err(_) => return Err("handshake timed out".to_owned()),
    };
    // Logged in: from here on, fragmented messages are read beside tungstenite.
    inlet.open();
    let outbox = Outbox::default();
    let spare = outbox.spare.clone();
    let conn = Arc::new(Connection {
        peer,
        peer_addr,
        encrypted: channel.encrypted(),
        outbox,
        control: Outbox::default(),
        write: Mutex::new(WriteHalf::new(
            Box::pin(sink),
            channel.sealer,
            spare,
            outlet,
        )),
        next_id: AtomicU64::new(1),
        checks: AtomicU64::new(0),
        window: Window::default(),
        unread_limit: UNREAD_LIMIT.max(max_frame.saturating_mul(2)),
        waiting: Mutex::new(ById::default()),
        serving: Sharded::default(),
        backlogs: Mutex::new(HashMap::new()),
        backlog_count: AtomicUsize::new(0),
        cancelled_any: AtomicBool::new(false),
        closed: Closed::default(),
        abandoned: CancellationToken::new(),
        written: CancellationToken::new(),
        reason: Mutex::new(None),
    });
    let written = conn.written.clone().drop_guard();
    let writer = write_loop(conn.clone());
    tokio::spawn(async move {
        writer.await;
        drop(written);
    });
    tokio::spawn(read_loop(
        stream,
        inlet,
        channel.opener,
        conn.clone(),
        inbound,
        max_frame,
    ));
    Ok(conn)
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The handshake's messages (see the `secure` module for what each proves). Returns the peer's
/// id and advertised address, and the channel that seals everything after.
async fn handshake<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    stream: &mut SplitStream<WebSocketStream<S>>,
    me: &Identity,
    role: Role,
) -> std::result::Result<(NodeId, String, secure::Channel), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let secret = me.secret.as_deref();
    let params = Params {
        encrypt: me.encrypt && secret.is_some(),
    };
    let hello = encode(&me.hello(nonce()));
    send_now(sink, hello.clone()).await?;
    match role {
        Role::Initiator => {
            let (initiator, msg1) =
                secure::Initiator::start(SUITE, secret, PROTOCOL_VERSION, &hello, params);
            send_now(sink, msg1).await?;
            let hello_r = next_message(stream).await?;
            let (peer, peer_addr) = read_hello(&hello_r, me)?;
            let msg2 = next_message(stream).await?;
            let (channel, msg3) = initiator.finish(&msg2, &hello_r).map_err(|r| r.0)?;
            send_now(sink, msg3).await?;
            Ok((peer, peer_addr, channel))
        }
        Role::Responder => {
            let hello_i = next_message(stream).await?;
            let (peer, peer_addr) = read_hello(&hello_i, me)?;
            let msg1 = next_message(stream).await?;
            let (responder, msg2) = secure::Responder::answer(
                SUITE,
                secret,
                PROTOCOL_VERSION,
                &hello_i,
                &msg1,
                &hello,
                params,
            )
            .map_err(|r| r.0)?;
            send_now(sink, msg2).await?;
            let msg3 = next_message(stream).await?;
            let channel = responder.confirm(&msg3).map_err(|r| r.0)?;
            Ok((peer, peer_addr, channel))
        }
    }
}

async fn send_now<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    bytes: Vec<u8>,
) -> std::result::Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    sink.send(Message::Binary(bytes.into()))
        .await
        .map_err(|e| e.to_string())
}

/// The next handshake message: one binary WebSocket message of at most
/// [`MAX_HANDSHAKE_MESSAGE`] bytes. A close carries the peer's reason for refusing us.
async fn next_message<S>(
    stream: &mut SplitStream<WebSocketStream<S>>,
) -> std::result::Result<Vec<u8>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match stream.next().await {
            Some(Ok(Message::Binary(bytes))) if bytes.len() <= MAX_HANDSHAKE_MESSAGE => {
                return Ok(bytes.to_vec())
            }
            Some(Ok(Message::Binary(bytes))) => {
                return Err(format!(
                "protocol error: a handshake message of {} bytes (at most {MAX_HANDSHAKE_MESSAGE})",
                bytes.len()
            ))
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(Some(close)))) if !close.reason.is_empty() => {
                return Err(format!("the peer refused us: {}", close.reason))
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err("the peer closed the connection during the handshake".to_owned())
            }
            Some(Ok(_)) => return Err("protocol error: not a binary message".to_owned()),
            Some(Err(e)) => return Err(e.to_string()),
        }
    }
}

/// Writes queued frames, control frames first, then everything in the outbox, in one flush.
async fn write_loop(conn: Arc<Connection>) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let cancelled = conn.closed.token.clone();
    let cancelled = cancelled.cancelled();
    tokio::pin!(cancelled);
    // Every write gives up once the connection is abandoned: a peer that stops reading must not
    // keep this task, its socket and the unsent frames forever.
    let abandoned = conn.abandoned.clone();
    loop {
        let last = tokio::select! {
            biased;
            // Last words (a `Leaving`) go out before the close.
            () = &mut cancelled => true,
            () = conn.control.ready() => false,
            () = conn.outbox.ready() => false,
            _ = ping.tick() => {
                if !unless_abandoned(&abandoned, conn.send_message(Message::Ping(Default::default()))).await {
                    break;
                }
                continue;
            }
        };
        let data = (!last).then_some(&conn.outbox);
        let written =
            std::future::poll_fn(|cx| lock(&conn.write).poll_write(cx, &conn.control, data));
        if !unless_abandoned(&abandoned, written).await || last {
            break;
        }
    }
    // The peer learns why (a protocol error, a shutdown); a close reason fits 123 bytes.
    let reason = lock(&conn.reason).clone().unwrap_or_default();
    let close = tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: truncate(&reason, 120).to_owned().into(),
    };
    let _ = unless_abandoned(&abandoned, conn.send_message(Message::Close(Some(close)))).await;
    conn.control.discard();
    conn.outbox.discard();
    conn.closed.cancel();
}

/// Runs a write, unless the connection is abandoned first; true if it succeeded.
async fn unless_abandoned<E>(
    abandoned: &CancellationToken,
    io: impl std::future::Future<Output = std::result::Result<(), E>>,
) -> bool {
    tokio::select! {
        biased;
        () = abandoned.cancelled() => false,
        done = io => done.is_ok(),
    }
}

/// A message as read: one buffer, or (plain links only) the fragments `inlet.rs` read.
enum Received {
    One(bytes::Bytes),
    Fragments(Vec<bytes::Bytes>),
}

/// Reads frames and routes them: replies to waiting calls, requests to the node. A malformed or
/// oversize frame closes this connection with a logged reason; the node carries on.
async fn read_loop<S>(
    mut stream: SplitStream<WebSocketStream<S>>,
    inlet: Arc<Inlet>,
    mut opener: Opener,
    conn: Arc<Connection>,
    inbound: Arc<dyn Inbound>,
    max_frame: usize,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut check = tokio::time::interval(PING_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let closed = conn.closed.token.clone();
    let closed = closed.cancelled();
    tokio::pin!(closed);
    let (mut heard, mut heard_at_check, mut silent) = (0u64, 0u64, 0u32);
    let mut answers = Answers::default();
    let reason = 'read: loop {
        let mut message = tokio::select! {
            biased;
            () = &mut closed => break lock(&conn.reason).clone().unwrap_or_default(),
            // Before the stream, so a busy connection still checks once a second.
            _ = check.tick() => {
                conn.expire_calls(conn.checks.fetch_add(1, Ordering::Relaxed) + 1);
                if heard == heard_at_check {
                    silent += 1;
                    if silent >= SILENT_CHECKS {
                        break format!("nothing heard from the peer for {silent} s");
                    }
                } else {
                    (heard_at_check, silent) = (heard, 0);
                }
                continue;
            }
            message = stream.next() => message,
        };
        // Then every message already buffered, without going back through the select (the
        // select polls the stream with this task's waker again before it sleeps).
        loop {
            heard += 1;
            let bytes = match message {
                Some(Ok(Message::Binary(bytes))) => Some(bytes),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => None,
                Some(Ok(Message::Close(_))) | None => {
                    break 'read "the peer closed the connection".to_owned()
                }
                Some(Ok(Message::Text(_))) => {
                    break 'read "protocol error: text message".to_owned()
                }
                Some(Err(e)) => break 'read format!("transport error: {e}"),
            };
            if let Some(sealed) = bytes {
                let received = match inlet.claim(&sealed) {
                    Some(fragments) if opener.is_plain() => Ok(Received::Fragments(fragments)),
                    Some(fragments) => opener.open(fragments.concat().into()).map(Received::One),
                    None => opener.open(sealed).map(Received::One),
                };
                let received = match received {
                    Ok(received) => received,
                    Err(refused) => break 'read format!("bad message: {refused}"),
                };
                let mut routed = Ok(());
                let each = |frame| {
                    routed = route(&conn, &*inbound, frame, &mut answers);
                    routed.is_ok()
                };
                let decoded = match received {
                    Received::One(bytes) => decode_packed(&bytes, max_frame, each),
                    Received::Fragments(fragments) => {
                        decode_packed_fragments(fragments, max_frame, each)
                    }
                };
                answers.deliver(&conn);
                if let Err(e) = decoded {
                    break 'read format!("bad frame: {e}");
                }
                if let Err(reason) = routed {
                    break 'read reason;
                }
            }
            if conn.is_closed() {
                break;
            }
            match stream.next().now_or_never() {
                Some(next) => message = next,
                None => break,
            }
        }
    };
    tracing::info!(peer = %conn.peer_addr, node = %conn.peer, %reason, "connection closed");
    lock(&conn.reason).get_or_insert(reason);
    conn.finish(&*inbound);
}

fn route(
    conn: &Arc<Connection>,
    inbound: &dyn Inbound,
    frame: Frame,
    answers: &mut Answers,
) -> std::result::Result<(), String> {
    // Answers wait to be delivered together, but never behind a frame of another kind: a
    // stream's opening comes before its items (`stream_items_beyond_the_credit_…` fails
    // otherwise: the peer packs the opening and the items into one message).
    if !matches!(frame, Frame::Response { .. }) {
        answers.deliver(conn);
    }
    match frame {
        Frame::Request {
            id,
            actor,
            actor_id,
            expect_type,
            method,
            args,
            credit,
            deadline_ms: _,
        } => match conn.admit(id) {
            Admit::Yes => inbound.request(
                conn,
                Incoming {
                    id,
                    actor,
                    actor_id,
                    expect_type,
                    method,
                    args,
                    credit,
                },
            ),
            Admit::Busy => conn.write_answer(
                id,
                Err(Error::Busy {
                    actor: actor.to_string(),
                    method: method.to_string(),
                    limit: SERVED_LIMIT,
                }),
            ),
            Admit::Repeated => {
                return Err(format!(
                    "protocol error: request id {id} is already in use by a call or stream in \
                     progress"
                ))
            }
        },
        Frame::Response { id, result } => answers.arrived.push((id, result)),
        Frame::StreamItems { id, items } => {
            let mut waiting = lock(&conn.waiting);
            if let Some(Waiting::Stream { tx, credit }) = waiting.get_mut(&id) {
                match credit.checked_sub(items.len() as u64) {
                    Some(left) => {
                        *credit = left;
                        let _ = tx.send(StreamMsg::Items(items));
                    }
                    None => {
                        let error = Error::Codec(format!(
                            "protocol error: the peer sent {} stream items with credit for {credit}",
                            items.len()
                        ));
                        let _ = tx.send(StreamMsg::End(Some(error)));
                        Connection::unwait(&mut waiting, &conn.window, id);
                        drop(waiting);
                        conn.send_control(Frame::Cancel { id });
                    }
                }
            }
        }
        Frame::StreamEnd { id, error } => {
            let mut waiting = lock(&conn.waiting);
            if let Some(Waiting::Stream { .. }) = waiting.get(&id) {
                if let Some(Waiting::Stream { tx, .. }) =
                    Connection::unwait(&mut waiting, &conn.window, id)
                {
                    let _ = tx.send(StreamMsg::End(error));
                }
            }
        }
        Frame::Credit { id, items } => {
            let credit = conn.serving.with(id, |serving| match serving.get(&id) {
                Some(Served::Task(task)) => task.credit.clone(),
                _ => None,
            });
            if let Some(credit) = credit {
                add_credit(&credit, items);
            }
        }
        Frame::Cancel { id } => {
            // A call in a mailbox is skipped by its actor once it is not `serving`; one in a
            // backlog is dropped now.
            conn.cancelled_any.store(true, Ordering::Relaxed);
            match conn.serving.with(id, |serving| serving.remove(&id)) {
                Some(Served::Task(task)) => task.abort.abort(),
                Some(Served::Call) => conn.unbacklog(id),
                _ => {}
            }
        }
        Frame::Gossip(bytes) => inbound.gossip(conn, bytes),
        Frame::Leaving => {
            inbound.leaving(conn);
            return Err("the peer is leaving the cluster".to_owned());
        }
        other @ Frame::Hello { .. } => {
            return Err(format!(
                "protocol error: {} after the handshake",
                frame_kind(&other)
            ));
        }
    }
    Ok(())
}

/// The answers in one message from the peer, delivered together: the table of calls waiting
/// for them is locked once for them all, not once each (its lock is shared with the threads
/// that make calls). The buffers are kept from one message to the next.
#[derive(Default)]
struct Answers {
    arrived: Vec<(u64, Result<Payload>)>,
    /// Callers to wake, outside the lock: a caller may run on another thread at once.
    woken: Vec<(oneshot::Sender<Outcome>, Result<Payload>)>,
}

impl Answers {
    fn deliver(&mut self, conn: &Connection) {
        if self.arrived.is_empty() {
            return;
        }
        let mut waiting = lock(&conn.waiting);
        for (id, result) in self.arrived.drain(..) {
            match waiting.get(&id) {
                Some(Waiting::Call { .. }) => {
                    if let Some(Waiting::Call { tx, .. }) =
                        Connection::unwait(&mut waiting, &conn.window, id)
                    {
                        self.woken.push((tx, result));
                    }
                }
                Some(Waiting::Told) => {
                    Connection::unwait(&mut waiting, &conn.window, id);
                    if let Err(error) = result {
                        tracing::warn!(peer = %conn.peer_addr, %error, "a told call failed");
                    }
                }
                // For a stream, the response says whether it opened; one that did not is over.
                Some(Waiting::Stream { tx, .. }) => match result {
                    Ok(_) => {
                        let _ = tx.send(StreamMsg::Opened(Ok(())));
                    }
                    Err(e) => {
                        if let Some(Waiting::Stream { tx, .. }) =
                            Connection::unwait(&mut waiting, &conn.window, id)
                        {
                            let _ = tx.send(StreamMsg::Opened(Err(e)));
                        }
                    }
                },
                None => {}
            }
        }
        drop(waiting);
        for (tx, result) in self.woken.drain(..) {
            tx.send(Outcome::Answered(result));
        }
    }
}

/// The client side of a `__fuzz` session against `t`, over an in-memory stream (see
/// `src/fuzz.rs`).
pub(crate) async fn fuzz_session(
    t: &Arc<super::Transport>,
    raw: Option<Vec<u8>>,
    login: bool,
    messages: Vec<Vec<u8>>,
) {
    use tokio::io::AsyncWriteExt;
    const STEP: Duration = Duration::from_secs(2);
    let (mut client, server) = tokio::io::duplex(64 << 10);
    let served = {
        let t = t.clone();
        tokio::spawn(async move { t.serve_socket(server, "fuzz").await })
    };
    let finish = |served: tokio::task::JoinHandle<Option<Arc<Connection>>>| async move {
        let conn = tokio::time::timeout(ESTABLISH_TIMEOUT * 2, served).await;
        if let Ok(Ok(Some(conn))) = conn {
            // Closed, and its writer done (so nothing of the session is still in flight when a
            // leak checker looks).
            let _ = tokio::time::timeout(ESTABLISH_TIMEOUT, conn.closed.cancelled()).await;
            let _ = tokio::time::timeout(ESTABLISH_TIMEOUT, conn.written()).await;
        }
    };
    if let Some(bytes) = raw {
        let _ = tokio::time::timeout(STEP, client.write_all(&bytes)).await;
        drop(client);
        return finish(served).await;
    }
    let upgrade = tokio_tungstenite::client_async("ws://fuzz/pulsing", client);
    let Ok(Ok((ws, _))) = tokio::time::timeout(STEP, upgrade).await else {
        return finish(served).await;
    };
    let (mut sink, mut stream) = ws.split();
    let mut sealer = None;
    if login {
        let me = Identity {
            node: super::new_node_id(),
            addr: "127.0.0.1:1".to_owned(),
            secret: t.me.secret.clone(),
            encrypt: false,
        };
        let shaken = handshake(&mut sink, &mut stream, &me, Role::Initiator);
        match tokio::time::timeout(STEP, shaken).await {
            Ok(Ok((_, _, channel))) => sealer = Some(channel.sealer),
            _ => return finish(served).await,
        }
    }
    // Read whatever the node sends, so it never waits on us.
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    for message in messages {
        let message = match &mut sealer {
            Some(sealer) => sealer.seal(message),
            None => message.into(),
        };
        let sent = tokio::time::timeout(STEP, sink.send(Message::Binary(message))).await;
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
    }
    let _ = tokio::time::timeout(STEP, sink.close()).await;
    drop(sink);
    finish(served).await;
    drain.abort();
}
