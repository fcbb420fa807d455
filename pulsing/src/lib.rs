//! # Pulsing: typed actors for Rust (and Python)
//!
//! An **actor** is an object that lives on its own task and is reached only through messages: it
//! handles one message at a time, so its state needs no locks, and callers never touch it
//! directly. A **proxy** (`CounterRef`) is a cheap, cloneable handle whose methods look like the
//! actor's own, but send a message and await the reply. Pulsing writes the messages, the proxy and
//! the plumbing from one attribute on an ordinary `impl` block:
//!
//! ```
//! use pulsing::prelude::*;
//!
//! pub struct Counter { value: i64 }
//!
//! #[pulsing::remote]
//! impl Counter {
//!     /// Adds `by` and returns the new value.
//!     pub fn inc(&mut self, by: i64) -> i64 { self.value += by; self.value }
//!     /// The current value.
//!     pub async fn get(&self) -> i64 { self.value }
//!     /// A business error travels inside the call's own `Result`.
//!     pub fn check(&self, limit: i64) -> Result<(), String> {
//!         if self.value > limit { Err(format!("{} is over {limit}", self.value)) } else { Ok(()) }
//!     }
//!     /// Streams 1..=n.
//!     pub fn count_to(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
//!         futures_util::stream::iter(1..=n)
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> pulsing::Result<()> {
//!     let system = ActorSystem::builder().build().await?;
//!     let counter: CounterRef = Counter::spawn_named(&system, "counter", Counter { value: 0 }).await?;
//!     assert_eq!(counter.inc(2).await?, 2);
//!
//!     let same = Counter::resolve(&system, "counter").await?;
//!     assert_eq!(same.get().await?, 2);
//!     assert_eq!(same.check(1).await?, Err("2 is over 1".to_string()));   // two layers
//!
//!     let mut stream = counter.count_to(3).await?;
//!     while let Some(n) = stream.next().await {
//!         println!("{}", n?);
//!     }
//!     system.shutdown().await;
//!     Ok(())
//! }
//! ```
//!
//! Every `pub` method becomes a remote method; other methods stay private helpers. The macro also
//! writes a by-name dispatch table and an [`Interface`], so [`DynRef`] can call any actor with
//! [`Value`] arguments: the bridge the Python package and other languages use.
//!
//! ## Where to look
//! - [`ActorSystem`]: spawn, name, resolve, shut down.
//! - [`Call`]: what a proxy method returns; `.timeout(..)`, `.tell()`.
//! - [`ReplyStream`]: the consumer side of a streaming method.
//! - [`SpawnOptions`] and [`Supervision`]: names, mailbox size, restart on panic.
//! - [`Error`]: every way a call can fail.
//! - [`Builder::addr`] and [`Builder::seeds`]: make the system a node of a cluster. Nodes talk
//!   over WebSocket; membership and actor names spread by gossip, with no other service.
//!   `resolve` then finds actors on any node, and the proxy is the same.
//!   [`ActorSystem::members`] and [`ActorSystem::instances`] show what this node knows.
//! - [`hosted`]: actors whose methods are known only at run time (how the Python package hosts
//!   its actors).
//!
//! ## The attribute
//! `#[pulsing::remote]` goes on the inherent `impl` block of a (non-generic) type. For each `pub`
//! method taking `&self` or `&mut self` with owned, serializable arguments it generates:
//! - a variant of a hidden message enum;
//! - a method of the same name, arguments and docs on the proxy `<Type>Ref`, returning a [`Call`]
//!   (or a [`StreamCall`] for methods returning `impl Stream<Item = T> + Send + 'static`);
//! - an entry in the by-name dispatch table and in the [`Interface`].
//!
//! It also generates `Type::spawn(&system, value)`, `Type::spawn_named(&system, name, value)`,
//! `Type::spawn_with(&system, options, factory)`, `Type::resolve(&system, name)` and
//! `Type::resolve_wait(&system, name, timeout)`. Methods marked `#[on_start]` / `#[on_stop]`
//! (taking `&mut self`, sync or async) run when the actor starts (and restarts) and stops; they
//! are never remote methods, even when `pub`. A panic in `on_start` counts as a handler panic:
//! the supervision policy stops the actor (the default; `on_stop` then does not run) or builds a
//! fresh state and runs `on_start` again. A panic in `on_stop` is logged and the actor stops all
//! the same.
//!
//! The shapes at the edges:
//! - a method named with a raw identifier (`pub fn r#type(&self)`) is called `type` by name
//!   (from Python, [`DynRef`], the [`Interface`]); so is a raw parameter name as a keyword;
//! - `#[cfg(...)]` on a method applies to everything generated for it;
//! - at most 16 arguments per method (they travel as one tuple, serde's limit): group more in a
//!   struct;
//! - a remote method may not be named like a method of [`ActorRef`] (`stop`, `name`, `id`, ...),
//!   which the proxy dereferences to: it would hide it, so `worker.stop()` would send a message
//!   instead of stopping the actor. Rename it; it is a compile error;
//! - one `#[pulsing::remote]` block per type (other, plain `impl` blocks are fine): a second one
//!   is a compile error (the proxy and the `Actor` impl would be defined twice).
//!
//! An `async fn` method runs on the actor's task: the next message waits until it finishes. For
//! the future to be `Send`, `async fn(&self)` methods need the actor type to be `Sync`; use
//! `&mut self` if it is not.
//!
//! Arguments and results cross nodes postcard-encoded through serde. Serde treats a `Vec<u8>` as a
//! sequence of numbers, one at a time; for binary data, take and return `serde_bytes::ByteBuf`
//! (or mark the field `#[serde(with = "serde_bytes")]`), which is copied as a block — on this
//! project's machine a 1 MiB echo goes ≈2× faster (BENCHMARKS.md).

#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate self as pulsing;

// The layers, bottom to top (ARCHITECTURE.md has the map and the dependency table):
// value, error → wire → transport → actor → cluster → handle → system, hosted.
mod actor;
mod cluster;
mod error;
mod handle;
pub mod hosted;
mod system;
mod transport;
pub mod value;
pub mod wire;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use actor::{
    Actor, ActorId, ConvertedStream, DynPending, Interface, MethodInfo, MethodKind, ParamInfo,
    Pending, Reply, ReplyStream, ReplyTo, SpawnOptions, StreamEvent, StreamReply, Supervision,
    ValueStream,
};
pub use cluster::{Instance, Member};
pub use error::{Error, Result};
pub use handle::{ActorRef, Call, CallFuture, DynCall, DynRef, StreamCall, TypedRef};
pub use pulsing_macros::remote;
pub use system::{ActorSystem, Builder, Config};
pub use value::{Args, Value};

/// The former name of [`ReplyTo`].
#[doc(hidden)]
pub use actor::ReplyTo as DynKind;
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;

/// Everything a typical program needs: `use pulsing::prelude::*;`.
pub mod prelude {
    pub use crate::{
        remote, Actor, ActorRef, ActorSystem, Args, DynRef, Error, SpawnOptions, Supervision, Value,
    };
    pub use futures_core::Stream;
    pub use futures_util::StreamExt;
}

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
