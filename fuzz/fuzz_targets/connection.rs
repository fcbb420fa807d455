//! Fuzzes a node's connection state machine from the first byte: each input is one in-memory
//! connection to a real node (`pulsing::__fuzz::drive`, the code an accepted socket runs) —
//! raw bytes where the WebSocket upgrade belongs, messages before login, or frames after a real
//! login — built from a structured description (`arbitrary`), so most inputs get past the
//! decoder into routing, serving, streams, credit and cancellation. Any panic anywhere in the
//! node (a task included) aborts, which libFuzzer reports as a crash.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pulsing::__fuzz::{drive, Message, Session};
use pulsing::prelude::*;
use pulsing::wire::{Frame, NodeId, Payload};

/// The actor the fuzzed calls reach.
pub struct Target {
    n: i64,
}

#[pulsing::remote]
impl Target {
    pub fn inc(&mut self, by: i64) -> i64 {
        self.n = self.n.wrapping_add(by);
        self.n
    }

    pub fn echo(&self, v: Value) -> Value {
        v
    }

    pub fn count(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
        futures_util::stream::iter(0..n.min(100_000))
    }

    pub fn endless(&self) -> impl Stream<Item = u64> + Send + 'static {
        futures_util::stream::iter(0..)
    }
}

#[derive(Arbitrary, Debug)]
enum Input {
    /// Bytes in place of the WebSocket upgrade.
    Raw(Vec<u8>),
    /// An upgrade, then messages (after a real login if `login`).
    Ws { login: bool, messages: Vec<Msg> },
}

#[derive(Arbitrary, Debug)]
enum Msg {
    Bytes(Vec<u8>),
    Frames(Vec<F>),
    /// A request whose argument is this many nested lists (written by hand).
    Deep(u16),
}

#[derive(Arbitrary, Debug)]
enum Actor {
    Target,
    Nobody,
    Named(String),
}

#[derive(Arbitrary, Debug)]
enum Method {
    Inc,
    Echo,
    Count,
    Endless,
    Describe,
    Stop,
    Named(String),
}

#[derive(Arbitrary, Debug)]
enum A {
    Dynamic(Vec<V>, Vec<(String, V)>),
    Typed(Vec<u8>),
    Value(V),
}

#[derive(Arbitrary, Debug)]
enum V {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<V>),
    Map(Vec<(V, V)>),
}

#[derive(Arbitrary, Debug)]
enum F {
    Request {
        id: u8,
        actor: Actor,
        typed: Option<String>,
        method: Method,
        args: A,
        credit: Option<u32>,
        deadline_ms: Option<u64>,
    },
    Response { id: u8, result: Result<V, String> },
    StreamItems { id: u8, items: Vec<V> },
    StreamEnd { id: u8, error: Option<String> },
    Credit { id: u8, items: u32 },
    Cancel { id: u8 },
    Gossip(Vec<u8>),
    Hello { version: u32, node: u64, addr: String },
    Leaving,
}

fn value(v: V) -> Value {
    match v {
        V::Null => Value::Null,
        V::Bool(b) => Value::Bool(b),
        V::Int(n) => Value::Int(n),
        V::Float(x) => Value::Float(x),
        V::Str(s) => Value::Str(s),
        V::Bytes(b) => Value::bytes(b),
        V::List(items) => Value::List(items.into_iter().map(value).collect()),
        V::Map(entries) => Value::Map(entries.into_iter().map(|(k, v)| (value(k), value(v))).collect()),
    }
}

fn frame(f: F) -> Frame {
    match f {
        F::Request { id, actor, typed, method, args, credit, deadline_ms } => Frame::Request {
            id: id.into(),
            actor: match actor {
                Actor::Target => "target".into(),
                Actor::Nobody => "nobody".into(),
                Actor::Named(s) => s.into(),
            },
            actor_id: None,
            expect_type: typed.map(Into::into),
            method: match method {
                Method::Inc => "inc".into(),
                Method::Echo => "echo".into(),
                Method::Count => "count".into(),
                Method::Endless => "endless".into(),
                Method::Describe => "$describe".into(),
                // `$stop` would stop the target for every later input: asked of nobody.
                Method::Stop => "$stop-not".into(),
                Method::Named(s) => s.into(),
            },
            args: match args {
                A::Dynamic(pos, kw) => Payload::Dynamic(Args {
                    positional: pos.into_iter().map(value).collect(),
                    keyword: kw.into_iter().map(|(k, v)| (k, value(v))).collect(),
                }),
                A::Typed(b) => Payload::Typed(b.into()),
                A::Value(v) => Payload::Value(value(v)),
            },
            credit,
            deadline_ms,
        },
        F::Response { id, result } => Frame::Response {
            id: id.into(),
            result: result.map(|v| Payload::Value(value(v))).map_err(Error::Codec),
        },
        F::StreamItems { id, items } => Frame::StreamItems {
            id: id.into(),
            items: items.into_iter().map(|v| Payload::Value(value(v))).collect(),
        },
        F::StreamEnd { id, error } => Frame::StreamEnd { id: id.into(), error: error.map(Error::Codec) },
        F::Credit { id, items } => Frame::Credit { id: id.into(), items },
        F::Cancel { id } => Frame::Cancel { id: id.into() },
        F::Gossip(b) => Frame::Gossip(b),
        F::Hello { version, node, addr } => Frame::Hello { version, node: NodeId(node), addr, nonce: [0; 32] },
        F::Leaving => Frame::Leaving,
    }
}

fn deep(depth: u16) -> Vec<u8> {
    let mut bytes = pulsing::wire::encode(&Frame::Request {
        id: 200,
        actor: "target".into(),
        actor_id: None,
        expect_type: None,
        method: "echo".into(),
        args: Payload::Dynamic(Args::from(vec![Value::Null])),
        credit: None,
        deadline_ms: None,
    });
    let tail = bytes.split_off(bytes.len() - 4);
    bytes.extend([6u8, 1].repeat(usize::from(depth) * 4));
    bytes.extend(tail);
    bytes
}

fn node() -> &'static (tokio::runtime::Runtime, ActorSystem) {
    static NODE: OnceLock<(tokio::runtime::Runtime, ActorSystem)> = OnceLock::new();
    NODE.get_or_init(|| {
        // A panic in any task of the node is a finding: abort so libFuzzer sees it.
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default_hook(info);
            std::process::abort();
        }));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let system = rt.block_on(async {
            let system = ActorSystem::builder().addr("127.0.0.1:0").build().await.unwrap();
            Target::spawn_named(&system, "target", Target { n: 0 }).await.unwrap();
            system
        });
        (rt, system)
    })
}

fuzz_target!(|input: Input| {
    let (rt, system) = node();
    let session = match input {
        Input::Raw(raw) => Session { raw: Some(raw), login: false, messages: Vec::new() },
        Input::Ws { login, messages } => Session {
            raw: None,
            login,
            messages: messages
                .into_iter()
                .map(|m| match m {
                    Msg::Bytes(b) => Message::Bytes(b),
                    Msg::Frames(fs) => Message::Frames(fs.into_iter().map(frame).collect()),
                    Msg::Deep(d) => Message::Bytes(deep(d)),
                })
                .collect(),
        },
    };
    rt.block_on(drive(system, session));
});
