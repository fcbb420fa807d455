//! The [`Actor`] trait: what `#[pulsing::remote]` implements for your type.
//!
//! You do not implement this trait by hand. Put `#[pulsing::remote]` on the inherent `impl` block
//! of your type: every `pub` method becomes a remote method, and the macro writes the message enum,
//! the typed proxy (`<Type>Ref`), the by-name dispatch table and the [`Interface`].

use std::future::Future;

use crate::__private::{Handled, HandlerCx};
use crate::dynamic::{Args, DynKind, DynPending, Pending};
use crate::interface::Interface;
use crate::Result;

/// A type whose methods can be called through a mailbox, locally or (later) from another node.
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

    /// Builds a message from a by-name call (the dynamic shim), and what the caller awaits for
    /// its answer. Errors name the method and the expected signature.
    #[doc(hidden)]
    fn dyn_message(method: &str, args: Args, kind: DynKind) -> Result<(Self::Message, DynPending)>;

    /// Builds a message from a remote typed call (postcard-encoded argument tuple), and what the
    /// node awaits for the postcard-encoded answer.
    #[doc(hidden)]
    fn remote_message(
        method: &str,
        args: &[u8],
        kind: DynKind,
    ) -> Result<(Self::Message, Pending<Vec<u8>>)>;

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
