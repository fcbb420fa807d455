//! The one error type of every Pulsing call.
//!
//! A call on a proxy returns `Result<R, Error>` where `R` is the method's own return type. When the
//! method itself returns a `Result`, the two layers stay apart: the outer `Error` says the *call*
//! failed (actor stopped, timed out, panicked, ...), the inner one is the method's business error.
//!
//! ```
//! # use pulsing::Error;
//! let err = Error::NotFound { name: "counter".into() };
//! assert_eq!(err.to_string(), "no actor is named `counter`");
//! ```

use std::time::Duration;

/// Shorthand for `Result<T, pulsing::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a Pulsing operation failed.
///
/// Every variant names what it is about (the actor, the method, the name) so that a log line is
/// enough to act on. `actor` fields read like `Counter#3 "counter"`: type, local id, and name.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// No actor is registered under this name.
    #[error("no actor is named `{name}`")]
    NotFound {
        /// The name that was looked up.
        name: String,
    },
    /// No actor appeared under this name before the resolve deadline.
    #[error("no actor named `{name}` appeared within {waited:?}")]
    ResolveTimeout {
        /// The name that was looked up.
        name: String,
        /// How long the resolve waited.
        waited: Duration,
    },
    /// The name is already registered to another actor.
    #[error("the name `{name}` is already taken by {holder}")]
    NameTaken {
        /// The contested name.
        name: String,
        /// The actor that holds it.
        holder: String,
    },
    /// The name is bound to an actor of a different type than the one asked for. Types are
    /// told apart by identity (full path and method signatures, see
    /// [`Interface`](crate::Interface)), so both are shown as `path#key`.
    #[error(
        "`{name}` is bound to an actor of type `{found}`, but type `{expected}` was asked for"
    )]
    TypeMismatch {
        /// The name that was looked up.
        name: String,
        /// The actor type the caller asked for.
        expected: String,
        /// The actor type actually registered.
        found: String,
    },
    /// The call did not complete before its deadline. The call is abandoned: if the actor has not
    /// started it yet, it never will.
    #[error("{actor}.{method}() timed out after {after:?}")]
    Timeout {
        /// The actor called.
        actor: String,
        /// The method called.
        method: String,
        /// The deadline that expired.
        after: Duration,
    },
    /// The actor has stopped (or stopped before it could answer this call).
    #[error("{actor} is stopped")]
    Stopped {
        /// The stopped actor.
        actor: String,
    },
    /// `try_tell` found the mailbox full (awaited calls and `tell` wait instead).
    #[error("the mailbox of {actor} is full")]
    MailboxFull {
        /// The busy actor.
        actor: String,
    },
    /// The handler panicked while serving this call. The actor's supervision policy decides
    /// whether it stops or restarts.
    #[error("{actor}.{method}() panicked: {message}")]
    Panicked {
        /// The actor whose handler panicked.
        actor: String,
        /// The method that panicked.
        method: String,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// A by-name call named a method the actor does not have.
    #[error("{actor} has no remote method `{method}` (it has: {available})")]
    UnknownMethod {
        /// The actor type called.
        actor: String,
        /// The method name that was asked for.
        method: String,
        /// The methods it does have, comma-separated.
        available: String,
    },
    /// A by-name call's arguments do not fit the method's signature.
    #[error("bad arguments for {actor}.{signature}: {reason}")]
    BadArguments {
        /// The actor type called.
        actor: String,
        /// The method called.
        method: String,
        /// The method's signature, as written in its source.
        signature: String,
        /// What is wrong, naming the parameter.
        reason: String,
    },
    /// A value could not be converted to or from its wire or dynamic form.
    #[error("codec error: {0}")]
    Codec(String),
    /// No connection could be made to a node.
    #[error("cannot reach node at {addr}: {reason}")]
    Unreachable {
        /// The address dialled.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The handshake with a node failed (protocol version, cluster secret).
    #[error("node at {addr} refused: {reason}")]
    Refused {
        /// The peer's address.
        addr: String,
        /// Why the handshake failed.
        reason: String,
    },
    /// The connection to a node broke while the call or stream was in progress.
    #[error("connection to node {peer} lost: {reason}")]
    PeerLost {
        /// The peer's address.
        peer: String,
        /// Why the connection ended.
        reason: String,
    },
    /// The actor system has been shut down; nothing can be spawned or called through it.
    #[error("the actor system is shut down")]
    SystemShutdown,
    /// A hosted actor's method raised an exception (a Python actor, see
    /// [`hosted`](crate::hosted)); the actor keeps serving.
    #[error("{actor}.{method}() raised {kind}: {message}")]
    Raised {
        /// The actor whose method raised.
        actor: String,
        /// The method that raised.
        method: String,
        /// The exception's type name (`ValueError`).
        kind: String,
        /// The exception's message.
        message: String,
        /// The traceback as text, where the actor's language has one.
        traceback: String,
    },
    /// The called node already serves as many calls from this node as it accepts from one peer,
    /// and refused this one. A Pulsing caller never sees it: it keeps fewer calls in flight on a
    /// connection and waits for room instead.
    #[error("{actor}.{method}(): the node refused the call: {limit} calls from this node are in flight there")]
    Busy {
        /// The actor called.
        actor: String,
        /// The method called.
        method: String,
        /// How many calls the node serves for one peer at once.
        limit: usize,
    },
}

impl From<crate::value::ValueError> for Error {
    fn from(e: crate::value::ValueError) -> Self {
        Error::Codec(e.to_string())
    }
}
