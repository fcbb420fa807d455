//! The runtime core: what an actor is, and the machinery that runs one.
//!
//! An actor is a value that lives on its own task and is reached only through messages. Its
//! **cell** ([`cell`]) holds the bounded [`mailbox`] and the facts that do not depend on its type
//! ([`meta`]); the [`runner`] takes one message at a time, calls the generated
//! [`Actor::handle`], and turns a panic over to the [`supervision`] policy. Each message carries
//! its **reply slot** ([`reply`]): a [`oneshot`] to a local caller (which the deadline
//! [`sweep`]er can expire), a stream channel (fed by the
//! [`pump`] task, consumed as a [`stream`]), or a peer's slot ([`peer`]) that writes the answer
//! straight into the connection. The [`registry`] maps this process's names to cells, and
//! [`interface`] describes what an actor offers to by-name callers.
//!
//! ```text
//!  caller ──► Cell { mailbox } ──► runner: handle(msg, HandlerCx) ──► reply slot ──► caller
//! ```
//!
//! You do not implement [`Actor`] by hand. Put `#[pulsing::remote]` on the inherent `impl` block
//! of your type: every `pub` method becomes a remote method, and the macro writes the message
//! enum, the typed proxy (`<Type>Ref`), the by-name dispatch table and the [`Interface`]:
//!
//! ```
//! use pulsing::prelude::*;
//!
//! pub struct Counter { value: i64 }
//!
//! #[pulsing::remote]
//! impl Counter {
//!     pub fn inc(&mut self, by: i64) -> i64 { self.value += by; self.value }
//! }
//!
//! assert_eq!(<Counter as Actor>::interface().method_names(), "inc");
//! ```
//!
//! This folder imports only from `value/`, `error.rs` and — for the peer reply slot alone —
//! `transport/` and `wire/` (see ARCHITECTURE.md, "Dependencies between folders").

pub(crate) mod cell;
pub(crate) mod handler;
pub(crate) mod interface;
pub(crate) mod mailbox;
pub(crate) mod meta;
pub(crate) mod oneshot;
pub(crate) mod panic;
pub(crate) mod peer;
pub(crate) mod pump;
pub(crate) mod registry;
pub(crate) mod reply;
pub(crate) mod runner;
pub(crate) mod stream;
pub(crate) mod supervision;
pub(crate) mod sweep;

use std::future::Future;

pub use handler::HandlerCx;
pub use interface::{Interface, MethodInfo, MethodKind, ParamInfo};
pub use meta::ActorId;
pub use panic::{Handled, Panic};
pub use reply::{DynPending, Pending, Reply, ReplyTo, StreamReply};
pub use stream::{ConvertedStream, ReplyStream, StreamEvent, ValueStream};
pub use supervision::{SpawnOptions, Supervision};

use crate::error::Result;
use crate::value::Args;

/// A type whose methods can be called through a mailbox, from this process or from another node.
///
/// Implemented by `#[pulsing::remote]`; the methods here are the contract between the generated
/// code and the runtime, and are hidden from the documentation of your type.
pub trait Actor: Send + Sized + 'static {
    /// The hidden message enum: one variant per remote method, carrying the arguments and a reply
    /// slot.
    type Message: Send + 'static;

    /// The description of this actor's remote methods.
    fn interface() -> &'static Interface;

    /// Runs the method a message names and answers its caller. Returns `Err` only when the
    /// handler panicked (the caller has already been told).
    #[doc(hidden)]
    fn handle<'a>(
        &'a mut self,
        msg: Self::Message,
        cx: &'a HandlerCx<'a>,
    ) -> impl Future<Output = Handled> + Send + 'a;

    /// Builds a message from a by-name call ([`Value`](crate::Value) arguments), and what the
    /// caller awaits for its answer.
    ///
    /// # Errors
    /// [`Error::UnknownMethod`](crate::Error::UnknownMethod) or
    /// [`Error::BadArguments`](crate::Error::BadArguments), naming the method and the expected
    /// signature.
    #[doc(hidden)]
    fn message_from_values(
        method: &str,
        args: Args,
        reply_to: ReplyTo,
    ) -> Result<(Self::Message, DynPending)>;

    /// Builds a message from a typed call of another node (the postcard-encoded argument tuple),
    /// and what the node awaits for the postcard-encoded answer.
    ///
    /// # Errors
    /// [`Error::UnknownMethod`](crate::Error::UnknownMethod) or
    /// [`Error::BadArguments`](crate::Error::BadArguments) when the bytes do not decode.
    #[doc(hidden)]
    fn message_from_bytes(
        method: &str,
        args: &[u8],
        reply_to: ReplyTo,
    ) -> Result<(Self::Message, Pending<Vec<u8>>)>;

    /// Shows the system's sweeper the long deadline of a queued message's call, if it has one
    /// (through the message's reply slot; see `actor/sweep.rs`).
    #[doc(hidden)]
    fn sweep(_msg: &Self::Message, _clock: &mut sweep::SweepClock) {}

    /// Runs once before the first message (and again after each restart).
    #[doc(hidden)]
    fn on_start(&mut self) -> impl Future<Output = ()> + Send + '_ {
        async {}
    }

    /// Runs once when the actor stops, after its last message.
    #[doc(hidden)]
    fn on_stop(&mut self) -> impl Future<Output = ()> + Send + '_ {
        async {}
    }
}
