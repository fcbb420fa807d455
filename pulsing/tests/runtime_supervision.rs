//! Panics in handlers: the caller gets an error, the policy decides the actor's fate.

mod support;

use std::time::Duration;

use pulsing::prelude::*;
use support::{entries, log, next_item, system, Counter};

#[tokio::test]
async fn a_panic_is_an_error_for_its_caller_and_stops_the_actor_by_default() {
    let sys = system().await;
    let c = Counter::spawn_named(&sys, "fragile", Counter::new(0))
        .await
        .unwrap();
    let err = c.boom("kaboom".into()).await.unwrap_err();
    assert_eq!(
        err,
        Error::Panicked {
            actor: "Counter#1 \"fragile\"".into(),
            method: "boom".into(),
            message: "kaboom".into()
        }
    );
    c.stopped().await;
    assert!(matches!(c.inc(1).await, Err(Error::Stopped { .. })));
    assert!(matches!(
        Counter::resolve(&sys, "fragile").await,
        Err(Error::NotFound { .. })
    ));
    sys.shutdown().await;
}

#[tokio::test]
async fn restart_rebuilds_the_state_and_keeps_mailbox_name_and_refs() {
    let sys = system().await;
    let shared = log();
    let factory = {
        let shared = shared.clone();
        move || Counter {
            log: shared.clone(),
            ..Counter::new(100)
        }
    };
    let options = SpawnOptions::new()
        .name("phoenix")
        .restart(5, Duration::from_secs(60));
    let c = Counter::spawn_with(&sys, options, factory).await.unwrap();
    assert_eq!(c.inc(1).await.unwrap(), 101);
    // A panic followed, in the same mailbox, by a queued call: the queued call reaches the new state.
    let (panicked, after) =
        tokio::join!(c.boom("once".into()).into_future(), c.inc(1).into_future());
    assert!(matches!(panicked, Err(Error::Panicked { .. })));
    assert_eq!(
        after.unwrap(),
        101,
        "the fresh state from the factory served the queued call"
    );
    let by_name = Counter::resolve(&sys, "phoenix").await.unwrap();
    assert_eq!(by_name.get().await.unwrap(), 101);
    assert_eq!(
        entries(&shared)
            .iter()
            .filter(|e| e.starts_with("start"))
            .count(),
        2,
        "on_start ran again"
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn too_many_restarts_within_the_window_stop_the_actor() {
    let sys = system().await;
    let options = SpawnOptions::new().restart(2, Duration::from_secs(60));
    let c = Counter::spawn_with(&sys, options, || Counter::new(0))
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(matches!(
            c.boom("again".into()).await,
            Err(Error::Panicked { .. })
        ));
    }
    c.stopped().await;
    assert!(matches!(c.inc(1).await, Err(Error::Stopped { .. })));
    sys.shutdown().await;
}

#[tokio::test]
async fn panics_in_streams_reach_the_consumer() {
    let sys = system().await;
    let p = support::Producer::spawn(&sys, support::Producer::new())
        .await
        .unwrap();
    let mut s = p.fails_after(3).await.unwrap();
    for i in 0..3 {
        assert_eq!(next_item(&mut s).await.unwrap().unwrap(), i);
    }
    match next_item(&mut s).await.unwrap() {
        Err(Error::Panicked {
            method, message, ..
        }) => {
            assert_eq!(method, "fails_after");
            assert_eq!(message, "producer failed after 3 items");
        }
        other => panic!("expected the producer's panic, got {other:?}"),
    }
    assert!(next_item(&mut s).await.is_none());
    // A stream's own panic does not hurt the actor (the stream runs outside its turn).
    assert!(p.is_alive());
    // A panic while creating the stream is the handler's panic.
    assert!(matches!(
        p.fails_at_once().await,
        Err(Error::Panicked { .. })
    ));
    sys.shutdown().await;
}

use std::future::IntoFuture;
