//! Typed calls: results, business errors, tell, deadlines, ordering, backpressure.

mod support;

use std::future::IntoFuture;
use std::time::Duration;

use pulsing::prelude::*;
use support::{entries, system, Counter};

#[tokio::test]
async fn calls_reach_the_actor_and_return_its_results() {
    let sys = system().await;
    let c = Counter::spawn(&sys, Counter::new(0)).await.unwrap();
    assert_eq!(c.inc(2).await.unwrap(), 2);
    assert_eq!(c.inc(3).await.unwrap(), 5);
    assert_eq!(c.get().await.unwrap(), 5);
    assert_eq!(c.add_later(1, 1).await.unwrap(), 6);
    sys.shutdown().await;
}

#[tokio::test]
async fn business_errors_stay_inside_the_call_result() {
    let sys = system().await;
    let c = Counter::spawn(&sys, Counter::new(5)).await.unwrap();
    let outer: Result<Result<i64, String>, Error> = c.check(1).await;
    assert_eq!(outer, Ok(Err("5 > 1".to_string())));
    assert_eq!(c.check(10).await, Ok(Ok(5)));
    sys.shutdown().await;
}

#[tokio::test]
async fn concurrent_callers_lose_nothing() {
    let sys = system().await;
    let c = Counter::spawn(&sys, Counter::new(0)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..250 {
                c.inc(1).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(c.get().await.unwrap(), 2000);
    sys.shutdown().await;
}

#[tokio::test]
async fn one_callers_messages_are_handled_in_order() {
    let sys = system().await;
    let counter = Counter::new(0);
    let log = counter.log.clone();
    let c = Counter::spawn(&sys, counter).await.unwrap();
    for i in 0..50 {
        c.inc(i).tell().await.unwrap();
    }
    c.get().await.unwrap();
    let incs: Vec<String> = entries(&log)
        .into_iter()
        .filter(|e| e.starts_with("inc"))
        .collect();
    let expected: Vec<String> = (0..50).map(|i| format!("inc {i}")).collect();
    assert_eq!(incs, expected);
    sys.shutdown().await;
}

#[tokio::test]
async fn tell_delivers_without_waiting_for_the_result() {
    let sys = system().await;
    let c = Counter::spawn(&sys, Counter::new(0)).await.unwrap();
    c.inc(7).tell().await.unwrap();
    c.inc(1).try_tell().unwrap();
    assert_eq!(c.get().await.unwrap(), 8);
    sys.shutdown().await;
}

#[tokio::test]
async fn a_full_mailbox_makes_senders_wait_and_drops_nothing() {
    let sys = ActorSystem::builder()
        .mailbox_capacity(2)
        .build()
        .await
        .unwrap();
    let counter = Counter::new(0);
    let (gate, entered) = (counter.gate.clone(), counter.entered.clone());
    let c = Counter::spawn(&sys, counter).await.unwrap();
    // Occupy the actor, then fill its two mailbox slots.
    let blocked = support::occupy(&c, &entered).await;
    let mut told = 0;
    while c.inc(1).try_tell().is_ok() {
        told += 1;
    }
    assert!(matches!(
        c.inc(1).try_tell(),
        Err(Error::MailboxFull { .. })
    ));
    // These must wait for room, not fail or vanish.
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.inc(1).no_timeout().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        waiting.iter().all(|t| !t.is_finished()),
        "senders wait while the mailbox is full"
    );
    gate.notify_one();
    blocked.await.unwrap().unwrap();
    for t in waiting {
        t.await.unwrap().unwrap();
    }
    // The told increments that fitted plus 20 awaited ones: none lost.
    assert_eq!(
        told, 2,
        "the actor was busy, so both slots were free for told calls"
    );
    assert_eq!(c.get().await.unwrap(), told + 20);
    sys.shutdown().await;
}

#[tokio::test]
async fn a_per_call_timeout_fails_the_call_and_the_actor_keeps_serving() {
    let sys = system().await;
    let c = Counter::spawn(&sys, Counter::new(0)).await.unwrap();
    let err = c
        .add_later(1, 200)
        .timeout(Duration::from_millis(20))
        .await
        .unwrap_err();
    match &err {
        Error::Timeout { method, after, .. } => {
            assert_eq!(method, "add_later");
            assert_eq!(*after, Duration::from_millis(20));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        err.to_string().contains("add_later() timed out after 20ms"),
        "{err}"
    );
    assert_eq!(
        c.inc(1).await.unwrap(),
        2,
        "the slow call still ran; the actor still serves"
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn the_system_default_deadline_applies_to_every_call() {
    let sys = ActorSystem::builder()
        .call_timeout(Duration::from_millis(30))
        .build()
        .await
        .unwrap();
    let c = Counter::spawn(&sys, Counter::new(0)).await.unwrap();
    assert!(matches!(
        c.add_later(1, 300).await,
        Err(Error::Timeout { .. })
    ));
    assert_eq!(c.add_later(1, 300).no_timeout().await.unwrap(), 2);
    sys.shutdown().await;
}

#[tokio::test]
async fn an_abandoned_call_still_queued_is_skipped() {
    let sys = system().await;
    let counter = Counter::new(0);
    let (gate, entered) = (counter.gate.clone(), counter.entered.clone());
    let c = Counter::spawn(&sys, counter).await.unwrap();
    let blocked = support::occupy(&c, &entered).await;
    // Queued behind the blocked call; its caller gives up before the actor reaches it.
    let err = c
        .inc(100)
        .timeout(Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }));
    gate.notify_one();
    blocked.await.unwrap().unwrap();
    assert_eq!(
        c.get().await.unwrap(),
        0,
        "the timed-out call was never run"
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn calls_are_lazy_until_awaited() {
    let sys = system().await;
    let c = Counter::spawn(&sys, Counter::new(0)).await.unwrap();
    let call = c.inc(5);
    drop(call);
    let future = c.inc(1).into_future();
    drop(future);
    assert_eq!(c.get().await.unwrap(), 0);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_callers_on_many_threads_lose_nothing_even_through_a_tiny_mailbox() {
    let sys = ActorSystem::builder()
        .mailbox_capacity(2)
        .build()
        .await
        .unwrap();
    let c = Counter::spawn(&sys, Counter::new(0)).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                for _ in 0..500 {
                    c.inc(1).no_timeout().await.unwrap();
                    c.inc(1).tell().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(c.get().await.unwrap(), 16 * 500 * 2);
    sys.shutdown().await;
}
