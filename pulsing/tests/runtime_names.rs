//! Names: registering, resolving, waiting, and type checks.

mod support;

use std::time::Duration;

use pulsing::prelude::*;
use support::{system, Counter, CounterRef, Other};

#[tokio::test]
async fn a_taken_name_cannot_be_registered_again() {
    let sys = system().await;
    Counter::spawn_named(&sys, "n", Counter::new(0))
        .await
        .unwrap();
    let err = Counter::spawn_named(&sys, "n", Counter::new(0))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::NameTaken {
            name: "n".into(),
            holder: "Counter#1 \"n\"".into()
        }
    );
    assert_eq!(
        sys.actor_count(),
        1,
        "nothing was spawned for the refused name"
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn resolving_an_unknown_name_is_a_typed_error() {
    let sys = system().await;
    let err = Counter::resolve(&sys, "ghost").await.unwrap_err();
    assert_eq!(
        err,
        Error::NotFound {
            name: "ghost".into()
        }
    );
    assert!(matches!(
        sys.resolve_dyn("ghost").await,
        Err(Error::NotFound { .. })
    ));
    sys.shutdown().await;
}

#[tokio::test]
async fn resolving_with_the_wrong_type_says_what_is_there() {
    let sys = system().await;
    Other::spawn_named(&sys, "other", Other).await.unwrap();
    let err = Counter::resolve(&sys, "other").await.unwrap_err();
    // Both types by full identity (path and a key over path and method signatures).
    let (other, counter) = (
        <Other as Actor>::interface(),
        <Counter as Actor>::interface(),
    );
    assert_eq!(other.path, "runtime_names::support::Other");
    assert_eq!(
        err.to_string(),
        format!(
            "`other` is bound to an actor of type `{}#{}`, but type `{}#{}` was asked for",
            other.path, other.key, counter.path, counter.key
        )
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn resolve_wait_sees_a_name_that_appears_later() {
    let sys = system().await;
    let waiter = tokio::spawn({
        let sys = sys.clone();
        async move { Counter::resolve_wait(&sys, "late", Duration::from_secs(5)).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    Counter::spawn_named(&sys, "late", Counter::new(41))
        .await
        .unwrap();
    let c = waiter.await.unwrap().unwrap();
    assert_eq!(c.inc(1).await.unwrap(), 42);
    sys.shutdown().await;
}

#[tokio::test]
async fn resolve_wait_gives_up_with_a_typed_error() {
    let sys = system().await;
    let err = Counter::resolve_wait(&sys, "never", Duration::from_millis(30))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::ResolveTimeout {
            name: "never".into(),
            waited: Duration::from_millis(30)
        }
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn names_are_listed_and_a_proxy_knows_its_name() {
    let sys = system().await;
    let b = Counter::spawn_named(&sys, "b", Counter::new(0))
        .await
        .unwrap();
    Other::spawn_named(&sys, "a", Other).await.unwrap();
    Counter::spawn(&sys, Counter::new(0)).await.unwrap();
    assert_eq!(sys.names(), ["a", "b"]);
    assert_eq!(b.name(), Some("b"));
    let same: CounterRef = sys.resolve::<Counter>("b").await.unwrap().into();
    assert_eq!(same.actor_ref(), b.actor_ref());
    sys.shutdown().await;
}
