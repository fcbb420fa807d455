//! The deadline of a call, and the three ways it is enforced.
//!
//! Every call has a deadline: the system's default (30 s unless configured), one set on the call
//! with `.timeout(d)`, or none with `.no_timeout()` ([`Deadline`]). Where the call waits decides
//! how the deadline is kept, at the least cost for each:
//! - a typed call to an actor in this process with a long deadline (the system's default if it
//!   is at least 1 s, and anything at least as long or of 10 s or more: `sweep::swept_from`)
//!   costs no timer and no clock read: the system's sweeper checks it once per tick, never
//!   early, at most about two ticks late (1 s ticks for the default 30 s; see
//!   `actor/sweep.rs`), and the call ends as `NoAnswer::Expired`. A shorter deadline, or a
//!   long one while the mailbox is full (the message is not queued yet), polls a boxed tokio
//!   timer armed on its first wait ([`poll_timer`]);
//! - a by-name call, and the opening of a stream, wrap their work in one tokio timer
//!   ([`within`]);
//! - a call to another node ([`on_connection`]) gets a timer only when its deadline is shorter
//!   than [`SWEPT_DEADLINE`](crate::transport::SWEPT_DEADLINE); longer ones cost no timer and no
//!   clock read: the connection's reader sweeps them once a second (never early, at most two
//!   seconds late) and the call ends as [`Outcome::Expired`].
//!
//! Expiry is always [`Error::Timeout`](crate::Error::Timeout), naming the actor, the method and
//! the deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

use crate::error::{Error, Result};
use crate::transport::{Outcome, SWEPT_DEADLINE};
use crate::wire::Payload;

/// The deadline of one call.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) enum Deadline {
    /// The system's default call timeout.
    #[default]
    Default,
    /// This many from the first poll.
    After(Duration),
    /// None at all.
    Never,
}

impl Deadline {
    /// The timeout this deadline means, given the system's `default`.
    pub(crate) fn resolve(self, default: Option<Duration>) -> Option<Duration> {
        match self {
            Deadline::Default => default,
            Deadline::After(d) => Some(d),
            Deadline::Never => None,
        }
    }
}

/// Writes the builder methods every call type shares (`timeout`, `no_timeout`) on a type whose
/// field `$($field).+` is its [`Deadline`]. `$what` ends the sentence "Fails with `Timeout` if
/// ...".
macro_rules! deadline_builders {
    ($($field:ident).+, $what:literal) => {
        #[doc = concat!(
                            "Fails with [`Error::Timeout`](crate::Error::Timeout) if ", $what,
                            " within `after`, instead of the system's default deadline."
                        )]
        pub fn timeout(mut self, after: std::time::Duration) -> Self {
            self.$($field).+ = $crate::handle::deadline::Deadline::After(after);
            self
        }

        /// Waits however long it takes, ignoring the system's default deadline.
        pub fn no_timeout(mut self) -> Self {
            self.$($field).+ = $crate::handle::deadline::Deadline::Never;
            self
        }
    };
}
pub(crate) use deadline_builders;

/// Arms the timer on first use and reports `Ready(after)` once `timeout` has passed.
pub(crate) fn poll_timer(
    timer: &mut Option<Pin<Box<Sleep>>>,
    timeout: Option<Duration>,
    cx: &mut Context<'_>,
) -> Poll<Duration> {
    let Some(after) = timeout else {
        return Poll::Pending;
    };
    timer
        .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)))
        .as_mut()
        .poll(cx)
        .map(|()| after)
}

/// Waits for `work`, failing with `expired(after)` once `timeout` has passed (one tokio timer;
/// none without a timeout).
pub(crate) async fn within<T>(
    timeout: Option<Duration>,
    work: impl Future<Output = Result<T>>,
    expired: impl FnOnce(Duration) -> Error,
) -> Result<T> {
    match timeout {
        None => work.await,
        Some(after) => tokio::time::timeout(after, work)
            .await
            .unwrap_or_else(|_| Err(expired(after))),
    }
}

/// Waits for `work`, a call sent on a connection with this `timeout` as its deadline: the
/// connection enforces long deadlines itself (they end as [`Outcome::Expired`]); short ones get a
/// timer here.
pub(crate) async fn on_connection(
    timeout: Option<Duration>,
    work: impl Future<Output = Outcome>,
    expired: impl FnOnce(Duration) -> Error,
) -> Result<Payload> {
    let outcome = match timeout {
        Some(after) if after < SWEPT_DEADLINE => tokio::time::timeout(after, work)
            .await
            .unwrap_or(Outcome::Expired),
        _ => work.await,
    };
    match outcome {
        Outcome::Answered(result) => result,
        Outcome::Expired => Err(expired(timeout.unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn in_process_and_remote_calls_sweep_from_the_same_length() {
        assert_eq!(
            crate::actor::sweep::LONG_DEADLINE,
            crate::transport::SWEPT_DEADLINE
        );
    }
}
