//! Promises of the remote path that had no test (issue #16): a full mailbox holds back only
//! calls to its own actor; streams on a connection that ends fail with `PeerLost`; a stream that
//! panics midway fails its consumer with the panic; a stream lives longer than `call_timeout`.

use std::future::IntoFuture;
use std::time::Duration;

use futures_util::FutureExt;
use pulsing::prelude::*;
use pulsing_tests::{client, NodeProcess, Worker, WorkerRef};

const NODE: &str = env!("CARGO_BIN_EXE_test_node");
const WAIT: Duration = Duration::from_secs(20);

async fn worker(system: &ActorSystem, name: &str) -> WorkerRef {
    Worker::resolve_wait(system, name, WAIT)
        .await
        .expect("the worker is found on the other node")
}

/// The stream's next item; fails the test instead of hanging it if none comes within `WAIT`.
async fn next<T>(s: &mut (impl futures_util::Stream<Item = T> + Unpin)) -> Option<T> {
    tokio::time::timeout(WAIT, s.next())
        .await
        .expect("the stream answers in time")
}

/// A node in this process (joined through `seed`, if any) whose actors have room for one
/// message each, serving `names`.
async fn server(names: &[&str], seed: Option<&str>) -> ActorSystem {
    let server = ActorSystem::builder()
        .addr("127.0.0.1:0")
        .seeds(seed)
        .mailbox_capacity(1)
        .build()
        .await
        .unwrap();
    for name in names {
        Worker::spawn_named(&server, *name, Worker::new(*name))
            .await
            .unwrap();
    }
    server
}

#[tokio::test]
async fn a_full_mailbox_holds_back_only_calls_to_its_own_actor() {
    let server = server(&["busy", "free"], None).await;
    let system = client(&server.advertised_addr().unwrap()).await;
    let (busy, free) = (worker(&system, "busy").await, worker(&system, "free").await);
    // One call runs (for a long time), one fills the mailbox, the rest wait for room: all on
    // the one connection between the two nodes.
    let mut held: Vec<_> = (0..4)
        .map(|_| {
            let busy = busy.clone();
            tokio::spawn(async move { busy.slow(2_000).no_timeout().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another actor on the same connection answers while they wait.
    for i in 0..10 {
        assert_eq!(
            free.process(format!("{i}")).await.unwrap(),
            format!("{i} processed by free")
        );
    }
    assert!(
        held.iter_mut().all(|h| h.now_or_never().is_none()),
        "the busy actor's calls were still held back"
    );
    for h in held {
        let answer = tokio::time::timeout(WAIT, h).await.expect("no hang");
        assert_eq!(answer.unwrap().unwrap(), 2_000);
    }
    system.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_calling_each_others_full_actors_at_once_both_finish() {
    // One connection between the nodes carries both directions; each side's actor has room
    // for one message and receives 20 calls at once while its node sends 20 to the other.
    let right = server(&["right"], None).await;
    let left = server(&["left"], right.advertised_addr().as_deref()).await;
    let to_right = Worker::resolve_wait(&left, "right", WAIT).await.unwrap();
    let to_left = Worker::resolve_wait(&right, "left", WAIT).await.unwrap();
    let calls = (0..20).map(|i| {
        let (a, b) = (to_right.clone(), to_left.clone());
        async move {
            let (x, y) = tokio::join!(
                a.absorb(vec![0; 1 << 16], 5).into_future(),
                b.absorb(vec![0; 1 << 16], 5).into_future()
            );
            assert_eq!(x.unwrap(), 1 << 16, "call {i} to right");
            assert_eq!(y.unwrap(), 1 << 16, "call {i} to left");
        }
    });
    tokio::time::timeout(WAIT, futures_util::future::join_all(calls))
        .await
        .expect("no deadlock between the two full mailboxes");
    left.shutdown().await;
    right.shutdown().await;
}

#[tokio::test]
async fn streams_waiting_on_a_connection_that_ends_fail_with_peer_lost() {
    let mut node = NodeProcess::start(NODE, &["--name", "a", "--spawn", "worker"]);
    let system = client(&node.addr).await;
    let w = worker(&system, "worker").await;
    let mut ticks = w.ticks().await.unwrap();
    assert_eq!(next(&mut ticks).await.unwrap().unwrap(), 0);
    // A second stream that has not produced yet: its producer waits for the actor, busy with a
    // slow call.
    let slow = tokio::spawn({
        let w = w.clone();
        async move { w.slow(60_000).no_timeout().await }
    });
    let waiting = tokio::spawn({
        let w = w.clone();
        async move {
            let mut s = w.count(3).no_timeout().await?;
            next(&mut s).await.expect("an item or an error")
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    node.kill();
    // The first stream may still hand out what arrived; then it fails, and so does the rest.
    let err = tokio::time::timeout(WAIT, async {
        loop {
            match next(&mut ticks).await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return e,
                None => panic!("the stream ended as if the producer had finished"),
            }
        }
    })
    .await
    .expect("no hang");
    assert!(matches!(err, Error::PeerLost { .. }), "{err}");
    let opened = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("no hang")
        .unwrap();
    assert!(matches!(opened, Err(Error::PeerLost { .. })), "{opened:?}");
    let slow = tokio::time::timeout(WAIT, slow).await.expect("no hang");
    assert!(matches!(slow.unwrap(), Err(Error::PeerLost { .. })));
    system.shutdown().await;
}

#[tokio::test]
async fn a_stream_that_panics_midway_fails_its_consumer_with_the_panic() {
    let node = NodeProcess::start(NODE, &["--name", "a", "--spawn", "worker"]);
    let system = client(&node.addr).await;
    let w = worker(&system, "worker").await;
    let mut s = w.count_then_panic(5).await.unwrap();
    for expected in 0..5 {
        assert_eq!(next(&mut s).await.unwrap().unwrap(), expected);
    }
    let err = next(&mut s).await.unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::Panicked { method, message, .. }
            if method == "count_then_panic" && message == "the stream broke after 5 items"),
        "{err:?}"
    );
    assert!(next(&mut s).await.is_none(), "nothing after the error");
    // The panic was the stream's, on its own task: the actor and the connection go on.
    assert_eq!(
        w.process("after".into()).await.unwrap(),
        "after processed by a"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_long_stream_outlives_call_timeout() {
    let node = NodeProcess::start(NODE, &["--name", "a", "--spawn", "worker"]);
    let timeout = Duration::from_millis(300);
    let system = ActorSystem::builder()
        .addr("127.0.0.1:0")
        .seeds([node.addr.as_str()])
        .call_timeout(timeout)
        .build()
        .await
        .unwrap();
    let w = worker(&system, "worker").await;
    // The deadline bounds opening the stream, not how long it runs.
    let mut ticks = w.ticks().await.unwrap();
    let start = tokio::time::Instant::now();
    let mut expected = 0;
    while start.elapsed() < timeout * 4 {
        assert_eq!(next(&mut ticks).await.unwrap().unwrap(), expected);
        expected += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(ticks);
    // A call is still bound by it.
    let err = w.slow(5_000).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    system.shutdown().await;
}
