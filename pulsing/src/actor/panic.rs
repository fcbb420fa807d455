//! Panics caught in handlers and hooks: a panic never takes the process down; it becomes an
//! error for its caller and a [`Panic`] for the runner, which asks the supervision policy what
//! to do next.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

/// What a handler reports to the actor loop: `Err` when it panicked.
pub type Handled = std::result::Result<(), Panic>;

/// A panic caught in a handler.
#[derive(Debug)]
pub struct Panic {
    /// The method that panicked.
    pub method: &'static str,
    /// The panic message.
    pub message: String,
}

/// Turns a panic payload into its message.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

/// Runs a lifecycle hook, turning a panic into a [`Panic`].
pub(crate) async fn hook<F: Future<Output = ()>>(name: &'static str, f: F) -> Handled {
    AssertUnwindSafe(f)
        .catch_unwind()
        .await
        .map_err(|payload| Panic {
            method: name,
            message: panic_message(&*payload),
        })
}
