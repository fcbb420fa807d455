//! Hosted actors: actors whose methods are known only at run time.
//!
//! A `#[pulsing::remote]` type knows its methods at compile time. An actor written in another
//! language (the Python package) does not: it is a [`Host`] that receives every by-name call as
//! a [`HostedCall`] (method name, [`Args`], reply slot) and answers it whenever it likes, with a
//! [`Value`] or a stream of them. The runtime gives it what every actor has: a mailbox, a name in
//! the registry and the cluster directory, a per-instance type name and [`Interface`], by-name
//! calls from this process ([`DynRef`]) and from peers.
//!
//! [`Host::dispatch`] runs on the actor's task and must not block: it hands the call over (to
//! another event loop, a queue) and returns, so the host decides itself how calls interleave.
//!
//! ```
//! use std::sync::Arc;
//! use pulsing::hosted::{self, Host, HostedCall, HostedMethod, HostedReply};
//! use pulsing::prelude::*;
//!
//! struct Upper;
//! impl Host for Upper {
//!     fn dispatch(&self, call: HostedCall) {
//!         if let HostedReply::Call(reply) = call.reply {
//!             match (call.method.as_str(), call.args.positional.first()) {
//!                 ("upper", Some(Value::Str(s))) => reply.send(Ok(Value::Str(s.to_uppercase()))),
//!                 _ => reply.send(Err(Error::Raised {
//!                     actor: "Upper".into(), method: call.method, kind: "TypeError".into(),
//!                     message: "upper(text: str)".into(), traceback: String::new(),
//!                 })),
//!             }
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pulsing::Result<()> {
//! let system = ActorSystem::builder().build().await?;
//! let iface = hosted::interface("Upper", vec![HostedMethod::call("upper", &["text"])]);
//! hosted::spawn(&system, SpawnOptions::new().name("upper"), iface, Arc::new(Upper)).await?;
//! let any = system.resolve_dyn("upper").await?;
//! assert_eq!(any.type_name(), "Upper");
//! assert_eq!(any.call("upper", Args::new().arg("hi")).await?, Value::from("HI"));
//! # system.shutdown().await; Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::actor::interface::{identity_key, key_str, methods_fingerprint, FINGERPRINT_START};
use crate::actor::{
    Actor, ConvertedStream, DynPending, Handled, HandlerCx, Interface, MethodInfo, MethodKind,
    ParamInfo, Pending, Reply, ReplyStream, ReplyTo, SpawnOptions, StreamEvent,
};
use crate::error::{Error, Result};
use crate::handle::DynRef;
use crate::system::ActorSystem;
use crate::value::{Args, Value};
use crate::wire::Payload;

/// The code behind a hosted actor.
pub trait Host: Send + Sync + 'static {
    /// Takes one call. Runs on the actor's task: hand the call over and return at once.
    fn dispatch(&self, call: HostedCall);

    /// The actor stopped (after its last call was dispatched).
    fn stopped(&self) {}
}

/// One by-name call to a hosted actor.
#[derive(Debug)]
pub struct HostedCall {
    /// The method called.
    pub method: String,
    /// Its arguments.
    pub args: Args,
    /// Where the answer goes.
    pub reply: HostedReply,
}

/// How a hosted call is answered.
#[derive(Debug)]
pub enum HostedReply {
    /// With one [`Value`] (or an error).
    Call(Reply<Value>),
    /// With a stream of them: call [`StreamSink::open`] first, then send items, then end.
    Stream(StreamSink),
}

impl HostedReply {
    /// Whether the caller has gone (timed out, or dropped its future or stream).
    pub fn is_abandoned(&self) -> bool {
        match self {
            HostedReply::Call(reply) => reply.is_abandoned(),
            HostedReply::Stream(sink) => sink.is_closed(),
        }
    }

    /// Fails the call (or the stream, before it opened).
    pub fn fail(self, error: Error) {
        match self {
            HostedReply::Call(reply) => reply.send(Err(error)),
            HostedReply::Stream(sink) => {
                let _ = sink.tx.try_send(StreamEvent::Error(error));
            }
        }
    }
}

/// The producer side of a hosted streaming call. The buffer between it and the consumer is
/// bounded: [`try_send`](Self::try_send) says when it is full, [`ready`](Self::ready) waits
/// for room. Dropping the sink without [`end`](Self::end) fails the stream with `Stopped`.
#[derive(Debug, Clone)]
pub struct StreamSink {
    tx: mpsc::Sender<StreamEvent<Slot>>,
    /// The actor's room this stream holds until its last sink is dropped.
    room: Option<Arc<OwnedSemaphorePermit>>,
}

/// A stream item in transit. The consumer-side conversion only gets `&T`; a `Cell` lets it
/// move the value out instead of cloning it (large byte strings are not copied again).
type Slot = std::cell::Cell<Option<Value>>;

fn take_slot(slot: &Slot) -> Result<Value> {
    slot.take()
        .ok_or_else(|| Error::Codec("a stream item was taken twice".into()))
}

/// What [`StreamSink::try_send`] did.
#[derive(Debug)]
pub enum SinkSend {
    /// The item is queued.
    Sent,
    /// The buffer is full: the item comes back; wait with [`StreamSink::ready`].
    Full(Value),
    /// The consumer has gone: stop producing.
    Closed,
}

impl StreamSink {
    /// Tells the consumer the stream exists. Call it once, before any item.
    pub fn open(&self) -> bool {
        self.tx.try_send(StreamEvent::Opened).is_ok()
    }

    /// Queues `item` if there is room.
    pub fn try_send(&self, item: Value) -> SinkSend {
        match self.tx.try_send(StreamEvent::Item(Slot::new(Some(item)))) {
            Ok(()) => SinkSend::Sent,
            Err(mpsc::error::TrySendError::Full(StreamEvent::Item(slot))) => {
                SinkSend::Full(slot.take().unwrap_or_default())
            }
            Err(_) => SinkSend::Closed,
        }
    }

    /// Waits until there is room for one item; `false` once the consumer has gone.
    pub async fn ready(&self) -> bool {
        self.tx.reserve().await.is_ok()
    }

    /// Ends the stream normally (waits for room in the buffer).
    pub async fn end(self) {
        let _ = self.tx.send(StreamEvent::End).await;
    }

    /// Ends the stream with `error`, after the items already sent.
    pub async fn fail(self, error: Error) {
        let _ = self.tx.send(StreamEvent::Error(error)).await;
    }

    /// Whether the consumer has gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves once the consumer has gone (to stop a producer that is waiting for something
    /// else than room in the buffer).
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// One method of a hosted actor's [`Interface`], before it is leaked to `'static`.
#[derive(Debug, Clone, Default)]
pub struct HostedMethod {
    /// The method's name.
    pub name: String,
    /// Parameter names and types (as text; `"Any"` when the language has none).
    pub params: Vec<(String, String)>,
    /// The return type, or the item type of a stream.
    pub returns: String,
    /// Whether it streams.
    pub stream: bool,
    /// Whether it is asynchronous.
    pub is_async: bool,
    /// Its documentation.
    pub doc: String,
}

impl HostedMethod {
    /// A plain method with untyped parameters `params`.
    pub fn call(name: &str, params: &[&str]) -> Self {
        HostedMethod {
            name: name.to_owned(),
            params: params
                .iter()
                .map(|p| ((*p).to_owned(), "Any".to_owned()))
                .collect(),
            returns: "Any".to_owned(),
            ..HostedMethod::default()
        }
    }
}

/// Builds a `'static` [`Interface`] named `actor`. The memory is never freed: build one per
/// actor class, not per instance.
pub fn interface(actor: &str, methods: Vec<HostedMethod>) -> &'static Interface {
    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }
    let methods: Vec<MethodInfo> = methods
        .into_iter()
        .map(|m| MethodInfo {
            name: leak(m.name),
            params: Box::leak(
                m.params
                    .into_iter()
                    .map(|(name, ty)| ParamInfo {
                        name: leak(name),
                        ty: leak(ty),
                    })
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            ),
            returns: leak(m.returns),
            kind: if m.stream {
                MethodKind::Stream
            } else {
                MethodKind::Call
            },
            is_async: m.is_async,
            mutates: true,
            doc: leak(m.doc),
        })
        .collect();
    let key = identity_key(actor, methods_fingerprint(&methods));
    let path = leak(actor.to_owned());
    Box::leak(Box::new(Interface {
        actor: path,
        path,
        key: leak(String::from_utf8_lossy(&key).into_owned()),
        methods: Box::leak(methods.into_boxed_slice()),
    }))
}

/// Spawns a hosted actor: `interface` gives its type name and methods, `host` runs them.
///
/// # Errors
/// [`Error::NameTaken`] if `options` names it and the name is bound, [`Error::SystemShutdown`]
/// once the system is shutting down.
pub async fn spawn(
    system: &ActorSystem,
    mut options: SpawnOptions,
    interface: &'static Interface,
    host: Arc<dyn Host>,
) -> Result<DynRef> {
    options.interface = Some(interface);
    let room = options.mailbox.unwrap_or(system.config().mailbox_capacity);
    let mut once = Some(Hosted {
        host,
        room: Arc::new(Semaphore::new(room)),
    });
    let actor = system.start(options, move || once.take()).await?;
    Ok(actor.to_dyn())
}

/// The runtime's side of a hosted actor.
///
/// The host answers calls whenever it likes, so handing every call over at once would move the
/// actor's queue out of its bounded mailbox into the host's (unbounded) one. Instead the actor
/// keeps at most its mailbox capacity of calls in the host's hands: each call holds one unit of
/// `room` until it is answered (or its stream ends); with none left, the actor waits, its
/// mailbox fills and callers wait for room as they do for any actor.
struct Hosted {
    host: Arc<dyn Host>,
    room: Arc<Semaphore>,
}

const HOSTED_KEY: [u8; 16] = identity_key("pulsing::hosted::Hosted", FINGERPRINT_START);

static HOSTED: Interface = Interface {
    actor: "Hosted",
    path: "pulsing::hosted::Hosted",
    key: key_str(&HOSTED_KEY),
    methods: &[],
};

impl Actor for Hosted {
    type Message = HostedCall;

    fn interface() -> &'static Interface {
        &HOSTED
    }

    async fn handle<'a>(&'a mut self, mut msg: HostedCall, _cx: &'a HandlerCx<'a>) -> Handled {
        if msg.reply.is_abandoned() {
            return Ok(());
        }
        let Ok(unit) = self.room.clone().acquire_owned().await else {
            return Ok(()); // never closed
        };
        // The caller may have gone while the actor waited for room.
        if msg.reply.is_abandoned() {
            return Ok(());
        }
        msg.reply = match msg.reply {
            HostedReply::Call(reply) => HostedReply::Call(reply.holding(unit)),
            HostedReply::Stream(mut sink) => {
                sink.room = Some(Arc::new(unit));
                HostedReply::Stream(sink)
            }
        };
        self.host.dispatch(msg);
        Ok(())
    }

    fn message_from_values(
        method: &str,
        args: Args,
        reply_to: ReplyTo,
    ) -> Result<(HostedCall, DynPending)> {
        let (reply, pending) = match reply_to {
            ReplyTo::Call => {
                let (tx, rx) = oneshot::channel();
                let answer: DynPending = Pending::Call(Box::pin(async move { rx.await.ok() }));
                (HostedReply::Call(Reply::to(tx)), answer)
            }
            ReplyTo::Peer(peer) => (
                HostedReply::Call(Reply::to_peer(peer, |peer, result| {
                    peer.send(result.map(Payload::Value))
                })),
                Pending::Responded,
            ),
            ReplyTo::Stream { buffer, actor } => {
                let (tx, rx) = mpsc::channel(buffer.max(1));
                let typed = ReplyStream::<Slot>::new(rx, actor);
                let opened: DynPending = Pending::Stream(Box::pin(async move {
                    Ok(ConvertedStream::from_typed(
                        typed.opened().await?,
                        take_slot,
                    ))
                }));
                let sink = StreamSink { tx, room: None };
                (HostedReply::Stream(sink), opened)
            }
        };
        let call = HostedCall {
            method: method.to_owned(),
            args,
            reply,
        };
        Ok((call, pending))
    }

    fn message_from_bytes(
        method: &str,
        _args: &[u8],
        _reply_to: ReplyTo,
    ) -> Result<(HostedCall, Pending<Vec<u8>>)> {
        Err(Error::Codec(format!(
            "`{method}`: a hosted actor takes by-name calls only, not typed ones"
        )))
    }

    fn on_stop(&mut self) -> impl Future<Output = ()> + Send + '_ {
        self.host.stopped();
        std::future::ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    struct Counting;
    impl Host for Counting {
        fn dispatch(&self, call: HostedCall) {
            match call.reply {
                HostedReply::Call(reply) => reply.send(Ok(Value::Str(call.method))),
                HostedReply::Stream(sink) => {
                    tokio::spawn(async move {
                        assert!(sink.open());
                        for i in 0..5 {
                            let mut item = Value::Int(i);
                            loop {
                                match sink.try_send(item) {
                                    SinkSend::Sent => break,
                                    SinkSend::Full(back) => {
                                        item = back;
                                        sink.ready().await;
                                    }
                                    SinkSend::Closed => return,
                                }
                            }
                        }
                        sink.fail(Error::Codec("late".into())).await;
                    });
                }
            }
        }
    }

    #[tokio::test]
    async fn hosted_calls_and_streams() {
        let system = ActorSystem::builder()
            .stream_buffer(1)
            .build()
            .await
            .unwrap();
        let iface = interface("Counting", vec![HostedMethod::call("any", &["x"])]);
        let any = spawn(
            &system,
            SpawnOptions::new().name("c"),
            iface,
            Arc::new(Counting),
        )
        .await
        .unwrap();
        assert_eq!(any.type_name(), "Counting");
        assert_eq!(any.interface().unwrap().methods[0].name, "any");
        let again = system.resolve_dyn("c").await.unwrap();
        assert_eq!(
            again.call("hello", Args::new()).await.unwrap(),
            Value::from("hello")
        );
        let items: Vec<_> = any.stream("s", Args::new()).await.unwrap().collect().await;
        assert_eq!(items.len(), 6);
        assert_eq!(items[4], Ok(Value::Int(4)));
        assert!(matches!(items[5], Err(Error::Codec(_))));
        system.shutdown().await;
    }

    /// Keeps every call it gets in hand until the test answers it.
    #[derive(Default)]
    struct Holding {
        in_hand: std::sync::Mutex<Vec<HostedCall>>,
        dispatched: std::sync::atomic::AtomicUsize,
    }
    impl Host for Arc<Holding> {
        fn dispatch(&self, call: HostedCall) {
            self.dispatched
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.in_hand.lock().unwrap().push(call);
        }
    }
    impl Holding {
        fn answer_one(&self) -> bool {
            let Some(call) = self.in_hand.lock().unwrap().pop() else {
                return false;
            };
            match call.reply {
                HostedReply::Call(reply) => reply.send(Ok(Value::Str(call.method))),
                HostedReply::Stream(sink) => drop(sink),
            }
            true
        }
        fn dispatched(&self) -> usize {
            self.dispatched.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn a_host_holds_at_most_its_mailbox_capacity_of_calls() {
        let system = ActorSystem::builder().build().await.unwrap();
        let host = Arc::new(Holding::default());
        let iface = interface("Holding", vec![HostedMethod::call("m", &[])]);
        let options = SpawnOptions::new().name("h").mailbox(3);
        let any = spawn(&system, options, iface, Arc::new(host.clone()))
            .await
            .unwrap();
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let any = any.clone();
                tokio::spawn(async move { any.call("m", Args::new()).await })
            })
            .collect();
        settle().await;
        // Three in the host's hands; the rest wait in (and for) the bounded mailbox.
        assert_eq!(host.dispatched(), 3);
        assert!(host.answer_one());
        settle().await;
        assert_eq!(
            host.dispatched(),
            4,
            "an answer makes room for one more call"
        );
        assert_eq!(host.in_hand.lock().unwrap().len(), 3);
        // A stream holds its unit until it ends.
        let stream = {
            let any = any.clone();
            tokio::spawn(async move { any.stream("s", Args::new()).await.map(|_| ()) })
        };
        while host.answer_one() {
            settle().await;
        }
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), Value::from("m"));
        }
        assert_eq!(host.dispatched(), 11, "ten calls and the stream, none lost");
        assert!(
            stream.await.unwrap().is_err(),
            "the dropped sink fails the stream"
        );
        system.shutdown().await;
    }
}
