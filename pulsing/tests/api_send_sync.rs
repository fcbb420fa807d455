//! Every public future, stream and handle is `Send` (and `Sync` where promised), so it can move
//! across tasks of a multi-threaded runtime.

mod support;

use std::future::IntoFuture;

use pulsing::prelude::*;
use support::{Counter, CounterRef};

fn send<T: Send>(_: &T) {}
fn send_sync<T: Send + Sync>(_: &T) {}
fn clone_debug<T: Clone + std::fmt::Debug>(_: &T) {}

#[tokio::test]
async fn futures_streams_and_handles_are_send() {
    let sys = support::system().await;
    send_sync(&sys);
    let c: CounterRef = Counter::spawn(&sys, Counter::new(0)).await.unwrap();
    send_sync(&c);
    clone_debug(&c);
    send_sync(c.actor_ref());
    send(&Counter::spawn(&sys, Counter::new(0)));
    send(&Counter::resolve(&sys, "x"));
    send(&c.inc(1).into_future());
    send(&c.get().into_future());
    send(&c.inc(1).tell());
    send(&c.count_to(3).into_future());
    let stream = c.count_to(3).await.unwrap();
    send(&stream);
    let d = c.to_dyn();
    send_sync(&d);
    send(&d.call("inc", Args::new().arg(1)).into_future());
    send(&d.stream("count_to", Args::new().arg(1)));
    send(&sys.shutdown());
    // And they really run on another thread.
    let handle = tokio::spawn(async move { c.inc(5).await });
    assert_eq!(handle.await.unwrap().unwrap(), 5);
    sys.shutdown().await;
}
