//! Start/stop hooks, stopping one actor, shutting the system down.

mod support;

use std::future::{Future, IntoFuture};
use std::task::Poll;
use std::time::Duration;

use pulsing::prelude::*;
use support::{entries, system, Counter};

#[tokio::test]
async fn hooks_run_at_start_and_stop() {
    let sys = system().await;
    let counter = Counter::new(3);
    let log = counter.log.clone();
    let c = Counter::spawn(&sys, counter).await.unwrap();
    c.inc(1).await.unwrap();
    c.stop();
    c.stopped().await;
    assert_eq!(entries(&log), ["start 3", "inc 1", "stop 4"]);
    sys.shutdown().await;
}

#[tokio::test]
async fn stopping_fails_queued_and_later_calls_at_once_and_releases_the_name() {
    let sys = system().await;
    let counter = Counter::new(0);
    let (gate, entered) = (counter.gate.clone(), counter.entered.clone());
    let c = Counter::spawn_named(&sys, "c", counter).await.unwrap();
    let busy = support::occupy(&c, &entered).await;
    // Put five calls in the mailbox (one poll each sends them) behind the busy one.
    let mut queued: Vec<_> = (0..5)
        .map(|_| Box::pin(c.inc(1).no_timeout().into_future()))
        .collect();
    std::future::poll_fn(|cx| {
        for q in &mut queued {
            assert!(q.as_mut().poll(cx).is_pending());
        }
        Poll::Ready(())
    })
    .await;
    c.stop();
    gate.notify_one();
    assert_eq!(
        busy.await.unwrap().unwrap(),
        0,
        "the message in hand finishes"
    );
    for q in queued {
        assert!(matches!(q.await, Err(Error::Stopped { .. })));
    }
    c.stopped().await;
    assert!(!c.is_alive());
    let err = c.inc(1).no_timeout().await.unwrap_err();
    assert_eq!(err.to_string(), "Counter#1 \"c\" is stopped");
    assert!(matches!(
        Counter::resolve(&sys, "c").await,
        Err(Error::NotFound { .. })
    ));
    // The name is free again.
    Counter::spawn_named(&sys, "c", Counter::new(0))
        .await
        .unwrap();
    sys.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_every_actor_and_waits_for_them() {
    let sys = system().await;
    let mut logs = Vec::new();
    let mut refs = Vec::new();
    for i in 0..10 {
        let counter = Counter::new(i);
        logs.push(counter.log.clone());
        refs.push(Counter::spawn(&sys, counter).await.unwrap());
    }
    assert_eq!(sys.actor_count(), 10);
    sys.shutdown().await;
    assert_eq!(sys.actor_count(), 0);
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(
            entries(log).last().unwrap(),
            &format!("stop {i}"),
            "on_stop ran before shutdown returned"
        );
    }
    for r in &refs {
        assert!(matches!(r.inc(1).await, Err(Error::Stopped { .. })));
    }
    assert!(matches!(
        Counter::spawn(&sys, Counter::new(0)).await,
        Err(Error::SystemShutdown)
    ));
    sys.shutdown().await; // idempotent
}

#[tokio::test]
async fn shutdown_aborts_actors_still_busy_after_the_grace_period() {
    let sys = ActorSystem::builder()
        .shutdown_grace(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let counter = Counter::new(0);
    let entered = counter.entered.clone();
    let c = Counter::spawn(&sys, counter).await.unwrap();
    let stuck = support::occupy(&c, &entered).await;
    tokio::time::timeout(Duration::from_secs(5), sys.shutdown())
        .await
        .expect("shutdown does not hang");
    assert!(matches!(stuck.await.unwrap(), Err(Error::Stopped { .. })));
    assert!(!c.is_alive());
}

#[tokio::test]
async fn actors_live_until_stopped_even_without_refs() {
    let sys = system().await;
    let counter = Counter::new(0);
    let log = counter.log.clone();
    drop(Counter::spawn_named(&sys, "kept", counter).await.unwrap());
    let again = Counter::resolve(&sys, "kept").await.unwrap();
    assert_eq!(again.inc(1).await.unwrap(), 1);
    sys.shutdown().await;
    assert_eq!(entries(&log).last().unwrap(), "stop 1");
}
