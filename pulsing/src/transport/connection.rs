//! One WebSocket connection to a peer node: a writer task, a reader task, and the bookkeeping that
//! multiplexes many concurrent calls and streams over it by request id.
//!
//! Requests, answers and stream items go through an [`Outbox`], which packs them into WebSocket
//! messages as they are queued. Control frames (credit, cancel, gossip) have an outbox of their
//! own, written first, so they never starve behind a large stream. When the connection ends,
//! every call and stream waiting on it fails at once with [`Error::PeerLost`](crate::Error::PeerLost).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::handshake::{frame_kind, nonce, read_hello, Identity};
use super::outbox::{NotQueued, Outbox};
use super::secure::{self, Opener, Params, Sealer, MAX_HANDSHAKE_MESSAGE};
use crate::error::{Error, Result};
use crate::wire::{
    decode_packed, encode, Frame, NodeId, Payload, RequestRef, SharedStr, PROTOCOL_VERSION,
};

/// How long the handshake may take before the connection is dropped, its close included.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
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
        tx: oneshot::Sender<Outcome>,
        /// For a deadline of [`SWEPT_DEADLINE`] or more: the reader's check (counted in
        /// `Connection::checks`) that expires it.
        expires: Option<u64>,
    },
    Stream(mpsc::UnboundedSender<StreamMsg>),
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
    /// Its swept deadline passed while it waited for room in the outbox.
    Expired,
}

/// A stream or meta-call we are serving for the peer on a task, so `Cancel` and `Credit` can
/// reach it.
#[derive(Debug)]
pub(crate) struct Serving {
    pub(crate) abort: futures_util::future::AbortHandle,
    pub(crate) credit: Option<Arc<tokio::sync::Semaphore>>,
}

/// What we serve for the peer, by request id.
#[derive(Debug)]
enum Served {
    /// A stream or meta-call on a task.
    Task(Serving),
    /// A call on its way into its actor's mailbox (or waiting in a backlog); its
    /// `PeerReply` (`actor/peer.rs`) answers it.
    Posting,
    /// A call in its actor's mailbox.
    Posted,
    /// A call whose reply slot was dropped before [`Connection::posted`]: answered with this
    /// error then, unless the enqueueing failed and answers with its own.
    Dropped(Error),
}

/// Calls by id. Ids are a counter chosen by the caller, so a multiply spreads them over the
/// table's bits (+2–3% calls/s over SipHash at 1024 in flight). The ids in `serving` come from
/// an authenticated peer; one that picked colliding ids would slow only its own connection.
type ById<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a `u64` id.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
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
    next_id: AtomicU64,
    /// How many times the reader has checked on the peer (once a second).
    checks: AtomicU64,
    waiting: Mutex<ById<Waiting>>,
    serving: Mutex<ById<Served>>,
    /// Per actor name, the peer's calls waiting for room in that actor's mailbox, in order.
    backlogs: Mutex<HashMap<SharedStr, std::collections::VecDeque<Incoming>>>,
    /// How many backlogs exist: while none does (the usual case), calls skip the lock above.
    /// Only the reader starts backlogs, so it never misses one it must queue behind.
    backlog_count: AtomicUsize,
    /// Whether the peer ever cancelled a call: until it does, a served call's actor needs no
    /// lock to know the call is still wanted.
    cancelled_any: AtomicBool,
    closed: CancellationToken,
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

    fn lost(&self) -> Error {
        Error::PeerLost {
            peer: self.peer_addr.clone(),
            reason: lock(&self.reason)
                .clone()
                .unwrap_or_else(|| "connection closed".into()),
        }
    }

    /// Queues a data frame (replies, stream items); waits while the outbox is full.
    pub(crate) async fn send(&self, frame: Frame) -> Result<()> {
        self.outbox
            .push_waiting(&frame, None)
            .await
            .map_err(|_| self.lost())
    }

    /// Queues a control frame; never waits.
    pub(crate) fn send_control(&self, frame: Frame) {
        self.control.push(&frame);
    }

    /// Registers what waits for the answer (if anything) under a fresh id, then sends the
    /// request. If sending fails, the registration is removed again.
    async fn submit(
        &self,
        call: Outgoing<'_>,
        waiting: Option<Waiting>,
        credit: Option<u32>,
    ) -> std::result::Result<u64, NotSent> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Some(waiting) = waiting {
            lock(&self.waiting).insert(id, waiting);
            // `finish` sets `closed` before failing every waiter: a waiter added after that
            // would never be told, so check here.
            if self.is_closed() {
                lock(&self.waiting).remove(&id);
                return Err(NotSent::Lost);
            }
        }
        // Encoded here, from the borrowed names, straight into the outbox: no owned copies, and
        // the caller's task does the work rather than the connection's one writer.
        let request = RequestRef {
            id,
            actor: call.actor,
            actor_id: call.actor_id,
            expect_type: call.expect_type,
            method: call.method,
            args: &call.args,
            credit,
            deadline_ms: call
                .deadline
                .map(|d| d.as_millis().min(u64::MAX as u128) as u64),
        };
        // A swept deadline has no timer of its own: it bounds the (rare) wait for room here.
        let within = call.deadline.filter(|d| *d >= SWEPT_DEADLINE);
        if let Err(refused) = self.outbox.push_waiting(&request, within).await {
            lock(&self.waiting).remove(&id);
            return Err(match refused {
                NotQueued::Closed => NotSent::Lost,
                NotQueued::TimedOut => NotSent::Expired,
            });
        }
        Ok(id)
    }

    /// Sends a call and waits for its reply. Dropping the future cancels the call on the peer.
    /// A deadline of [`SWEPT_DEADLINE`] or more is enforced here (`Expired`); a shorter one is
    /// the caller's to enforce.
    pub(crate) async fn call(&self, call: Outgoing<'_>) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let expires = call.deadline.filter(|d| *d >= SWEPT_DEADLINE).map(|d| {
            // Whole checks, with a margin: a tick that runs a few ms late keeps its schedule
            // (tokio's `Interval` only delays ticks more than 5 ms late).
            let checks = d.saturating_add(CHECK_SLACK).as_secs().saturating_add(1);
            self.checks
                .load(Ordering::Relaxed)
                .saturating_add(checks)
                .saturating_add(1)
        });
        let id = match self
            .submit(call, Some(Waiting::Call { tx, expires }), None)
            .await
        {
            Ok(id) => id,
            Err(NotSent::Lost) => return Outcome::Answered(Err(self.lost())),
            Err(NotSent::Expired) => return Outcome::Expired,
        };
        let guard = CancelOnDrop { conn: self, id };
        let outcome = rx
            .await
            .unwrap_or_else(|_| Outcome::Answered(Err(self.lost())));
        std::mem::forget(guard);
        outcome
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
            if let Waiting::Call { tx, .. } = waiting {
                let _ = tx.send(Outcome::Expired);
            }
            self.send_control(Frame::Cancel { id });
        }
    }

    /// Sends a call whose reply nobody waits for (its `Response` is dropped on arrival).
    pub(crate) async fn tell(&self, call: Outgoing<'_>) -> Result<()> {
        self.submit(call, None, None)
            .await
            .map(drop)
            .map_err(|_| self.lost())
    }

    /// Opens a stream with `initial_credit` items of credit: returns its id and the channel its
    /// items arrive on. The caller grants more with [`grant`](Self::grant) and cancels with
    /// [`cancel`](Self::cancel).
    pub(crate) async fn open_stream(
        &self,
        call: Outgoing<'_>,
        initial_credit: u32,
    ) -> Result<(u64, mpsc::UnboundedReceiver<StreamMsg>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self
            .submit(call, Some(Waiting::Stream(tx)), Some(initial_credit))
            .await
            .map_err(|_| self.lost())?;
        Ok((id, rx))
    }

    /// Lets the peer send `items` more items of stream `id`.
    pub(crate) fn grant(&self, id: u64, items: u32) {
        self.send_control(Frame::Credit { id, items });
    }

    /// Gives up on call or stream `id`.
    pub(crate) fn cancel(&self, id: u64) {
        if lock(&self.waiting).remove(&id).is_some() {
            self.send_control(Frame::Cancel { id });
        }
    }

    /// Records a stream or meta-call we serve on a task, so the peer can cancel it (and grant
    /// credit to it).
    pub(crate) fn serving(&self, id: u64, serving: Serving) {
        lock(&self.serving).insert(id, Served::Task(serving));
    }

    /// Records a call of the peer's that is about to go into an actor's mailbox, so a `Cancel`
    /// reaches it (its actor then skips it) and [`answer`](Self::answer) knows it is wanted.
    pub(crate) fn expect(&self, id: u64) {
        lock(&self.serving).insert(id, Served::Posting);
    }

    /// Whether the peer still waits for call `id` (it has not been answered or cancelled).
    pub(crate) fn is_serving(&self, id: u64) -> bool {
        if !self.cancelled_any.load(Ordering::Relaxed) {
            // A call cancelled at this very moment may still run: as if the cancel came later.
            return !self.is_closed();
        }
        lock(&self.serving).contains_key(&id)
    }

    /// Call `id` is in its actor's mailbox: from now on, a dropped reply slot answers at once.
    pub(crate) fn posted(&self, id: u64) {
        let mut serving = lock(&self.serving);
        match serving.get_mut(&id) {
            Some(state @ Served::Posting) => *state = Served::Posted,
            Some(Served::Dropped(_)) => {
                let Some(Served::Dropped(error)) = serving.remove(&id) else {
                    unreachable!()
                };
                drop(serving);
                self.write_answer(id, Err(error));
            }
            _ => {}
        }
    }

    /// Answers the peer's call `id`, unless it was cancelled or answered already. The encoding
    /// happens here, on the answering thread; the writer only writes the bytes.
    pub(crate) fn answer(&self, id: u64, result: Result<Payload>) {
        self.answer_with(id, &Frame::Response { id, result });
    }

    /// Like [`answer`](Self::answer), with the response already made (it must be a
    /// `Response` to `id`, such as a `TypedResponseRef`).
    pub(crate) fn answer_with<F: serde::Serialize + ?Sized>(&self, id: u64, response: &F) {
        if lock(&self.serving).remove(&id).is_some() {
            self.outbox.push(response);
        }
    }

    /// The reply slot of call `id` was dropped unanswered (its actor stopped, or the call could
    /// not be enqueued): answers with `error` once the call is known to be in the mailbox.
    pub(crate) fn reply_dropped(&self, id: u64, error: Error) {
        let mut serving = lock(&self.serving);
        match serving.get_mut(&id) {
            Some(state @ Served::Posting) => *state = Served::Dropped(error),
            Some(Served::Posted) => {
                serving.remove(&id);
                drop(serving);
                self.write_answer(id, Err(error));
            }
            _ => {}
        }
    }

    fn write_answer(&self, id: u64, result: Result<Payload>) {
        self.outbox.push(&Frame::Response { id, result });
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

    /// The next call of `actor`'s backlog; `None` (and the backlog is gone) once it is empty or
    /// the connection has closed.
    pub(crate) fn next_in_backlog(&self, actor: &str) -> Option<Incoming> {
        let mut backlogs = lock(&self.backlogs);
        let next = backlogs
            .get_mut(actor)
            .and_then(|b| b.pop_front())
            .filter(|_| !self.is_closed());
        if next.is_none() && backlogs.remove(actor).is_some() {
            self.backlog_count.fetch_sub(1, Ordering::AcqRel);
        }
        next
    }

    /// Forgets a stream or meta-call we served.
    pub(crate) fn served(&self, id: u64) {
        lock(&self.serving).remove(&id);
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
        // Senders waiting for room fail now, even if the writer is stuck on a dead socket.
        self.outbox.close();
        let waiting: Vec<Waiting> = lock(&self.waiting).drain().map(|(_, w)| w).collect();
        for w in waiting {
            match w {
                Waiting::Call { tx, .. } => {
                    let _ = tx.send(Outcome::Answered(Err(self.lost())));
                }
                Waiting::Stream(tx) => {
                    let _ = tx.send(StreamMsg::End(Some(self.lost())));
                }
            }
        }
        for (_, s) in lock(&self.serving).drain() {
            if let Served::Task(task) = s {
                task.abort.abort();
            }
        }
        inbound.closed(self);
    }
}

/// A call to send: which actor, which method, with what, and how long the caller will wait.
#[derive(Debug)]
pub(crate) struct Outgoing<'a> {
    pub(crate) actor: &'a str,
    pub(crate) actor_id: Option<u64>,
    pub(crate) expect_type: Option<&'a str>,
    pub(crate) method: &'a str,
    pub(crate) args: Payload,
    pub(crate) deadline: Option<Duration>,
}

/// Cancels a call whose caller gave up (its future was dropped).
struct CancelOnDrop<'a> {
    conn: &'a Connection,
    id: u64,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        self.conn.cancel(self.id);
    }
}

/// Runs the handshake on a fresh WebSocket and starts the connection's tasks. Nothing but the
/// handshake's few small messages is read before the peer has proved the cluster secret; a
/// refusal is sent as the WebSocket close reason, and the whole of it, close included, takes at
/// most [`HANDSHAKE_TIMEOUT`].
pub(crate) async fn establish<S>(
    ws: WebSocketStream<S>,
    me: &Identity,
    role: Role,
    max_frame: usize,
    inbound: Arc<dyn Inbound>,
) -> std::result::Result<Arc<Connection>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
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
    let conn = Arc::new(Connection {
        peer,
        peer_addr,
        encrypted: channel.encrypted(),
        outbox: Outbox::default(),
        control: Outbox::default(),
        next_id: AtomicU64::new(1),
        checks: AtomicU64::new(0),
        waiting: Mutex::new(ById::default()),
        serving: Mutex::new(ById::default()),
        backlogs: Mutex::new(HashMap::new()),
        backlog_count: AtomicUsize::new(0),
        cancelled_any: AtomicBool::new(false),
        closed: CancellationToken::new(),
        written: CancellationToken::new(),
        reason: Mutex::new(None),
    });
    let written = conn.written.clone().drop_guard();
    let writer = write_loop(sink, channel.sealer, conn.clone());
    tokio::spawn(async move {
        writer.await;
        drop(written);
    });
    tokio::spawn(read_loop(
        stream,
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
async fn write_loop<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut sealer: Sealer,
    conn: Arc<Connection>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let cancelled = conn.closed.clone();
    let cancelled = cancelled.cancelled();
    tokio::pin!(cancelled);
    'write: loop {
        let last = tokio::select! {
            biased;
            // Last words (a `Leaving`) go out before the close.
            () = &mut cancelled => true,
            () = conn.control.ready() => false,
            () = conn.outbox.ready() => false,
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let mut packs = conn.control.take();
        if !last {
            packs.extend(conn.outbox.take());
        }
        for pack in packs {
            if sink
                .feed(Message::Binary(sealer.seal(pack).into()))
                .await
                .is_err()
            {
                break 'write;
            }
        }
        if sink.flush().await.is_err() || last {
            break;
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    conn.control.close();
    conn.outbox.close();
    conn.closed.cancel();
}

/// Reads frames and routes them: replies to waiting calls, requests to the node. A malformed or
/// oversize frame closes this connection with a logged reason; the node carries on.
async fn read_loop<S>(
    mut stream: SplitStream<WebSocketStream<S>>,
    mut opener: Opener,
    conn: Arc<Connection>,
    inbound: Arc<dyn Inbound>,
    max_frame: usize,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut check = tokio::time::interval(PING_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let closed = conn.closed.clone();
    let closed = closed.cancelled();
    tokio::pin!(closed);
    let (mut heard, mut heard_at_check, mut silent) = (0u64, 0u64, 0u32);
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
                let bytes = match opener.open(sealed) {
                    Ok(bytes) => bytes,
                    Err(refused) => break 'read format!("bad message: {refused}"),
                };
                let mut routed = Ok(());
                let decoded = decode_packed(&bytes, max_frame, |frame| {
                    routed = route(&conn, &*inbound, frame);
                    routed.is_ok()
                });
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
) -> std::result::Result<(), String> {
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
        } => {
            inbound.request(
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
            );
        }
        Frame::Response { id, result } => {
            let mut waiting = lock(&conn.waiting);
            match waiting.get(&id) {
                Some(Waiting::Call { .. }) => {
                    if let Some(Waiting::Call { tx, .. }) = waiting.remove(&id) {
                        let _ = tx.send(Outcome::Answered(result));
                    }
                }
                // For a stream, the response says whether it opened.
                Some(Waiting::Stream(tx)) => {
                    let _ = tx.send(StreamMsg::Opened(result.map(|_| ())));
                }
                None => {}
            }
        }
        Frame::StreamItems { id, items } => {
            if let Some(Waiting::Stream(tx)) = lock(&conn.waiting).get(&id) {
                let _ = tx.send(StreamMsg::Items(items));
            }
        }
        Frame::StreamEnd { id, error } => {
            if let Some(Waiting::Stream(tx)) = lock(&conn.waiting).remove(&id) {
                let _ = tx.send(StreamMsg::End(error));
            }
        }
        Frame::Credit { id, items } => {
            let credit = match lock(&conn.serving).get(&id) {
                Some(Served::Task(task)) => task.credit.clone(),
                _ => None,
            };
            if let Some(credit) = credit {
                credit.add_permits(items as usize);
            }
        }
        Frame::Cancel { id } => {
            // A call in a mailbox or backlog is skipped by its actor once it is not `serving`.
            conn.cancelled_any.store(true, Ordering::Relaxed);
            if let Some(Served::Task(task)) = lock(&conn.serving).remove(&id) {
                task.abort.abort();
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
