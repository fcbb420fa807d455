//! What callers hold: handles to actors and the calls made through them.
//!
//! - [`ActorRef<A>`](ActorRef) ([`actor_ref`]): the typed handle every generated proxy
//!   (`CounterRef`) wraps; the actor is in this process (its cell) or on another node (the
//!   cluster client).
//! - [`Call`] / [`StreamCall`] ([`call`]): what a proxy method returns; nothing is sent until it
//!   is awaited (or told). A local typed call goes straight into the mailbox without boxing or
//!   serializing; a call to another node goes through the cluster client.
//! - [`DynRef`] / [`DynCall`] ([`dyn_ref`]): by-name calls with [`Value`](crate::Value)
//!   arguments, for any actor, local or remote.
//! - [`deadline`]: the one deadline type all of them use, and how it is enforced.
//!
//! ```
//! # use pulsing::prelude::*;
//! # use std::time::Duration;
//! pub struct Counter { value: i64 }
//!
//! #[pulsing::remote]
//! impl Counter {
//!     pub fn inc(&mut self, by: i64) -> i64 { self.value += by; self.value }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pulsing::Result<()> {
//! let system = ActorSystem::builder().build().await?;
//! let counter = Counter::spawn_named(&system, "counter", Counter { value: 0 }).await?;
//! assert_eq!(counter.inc(1).timeout(Duration::from_secs(1)).await?, 1);   // typed
//! let any = counter.to_dyn();
//! assert_eq!(any.call("inc", Args::new().arg(2)).no_timeout().await?, Value::Int(3)); // by name
//! # system.shutdown().await; Ok(()) }
//! ```
//!
//! This folder imports from `actor/`, the cluster client (`cluster/client.rs`), `transport/`
//! (a call's outcome on a connection) and the bottom layers; nothing imports it but
//! `system.rs`, `hosted.rs` and `__private`.

pub(crate) mod actor_ref;
pub(crate) mod call;
pub(crate) mod deadline;
pub(crate) mod dyn_ref;

pub use actor_ref::{ActorRef, TypedRef};
pub use call::{Call, CallFuture, StreamCall};
pub use dyn_ref::{DynCall, DynRef};
