//! Typed calls and streams between two real processes on loopback: this test process is one
//! node, `test_node` (a separate OS process, port 0) the other.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use pulsing::prelude::*;
use pulsing_tests::{client, eventually, next_item, within, Clerk, NodeProcess, Worker, WorkerRef};
use tokio::io::AsyncWriteExt;

const NODE: &str = env!("CARGO_BIN_EXE_test_node");
const WAIT: Duration = Duration::from_secs(10);

/// Waits until the worker's node has dropped `count` of its streams: they ended, or a cancel
/// reached the producer (flow control alone would only hold it still, never drop it).
async fn dropped(w: &WorkerRef, count: u64) {
    eventually(WAIT, &format!("{count} streams dropped"), || async {
        w.dropped().await.is_ok_and(|n| n == count)
    })
    .await;
}

async fn worker(system: &ActorSystem) -> WorkerRef {
    Worker::resolve_wait(system, "worker", WAIT)
        .await
        .expect("the worker is found on the other node")
}

/// A server node in this process (a real WebSocket connection on loopback) whose `log` worker
/// has room for `mailbox` messages, a client node joined to it, and the client's proxy.
async fn in_process_pair(mailbox: usize) -> (ActorSystem, ActorSystem, WorkerRef) {
    let server = ActorSystem::builder()
        .addr("127.0.0.1:0")
        .mailbox_capacity(mailbox)
        .build()
        .await
        .unwrap();
    Worker::spawn_named(&server, "log", Worker::new("server"))
        .await
        .unwrap();
    let system = client(&server.advertised_addr().unwrap()).await;
    let log = Worker::resolve_wait(&system, "log", WAIT).await.unwrap();
    (server, system, log)
}

#[tokio::test]
async fn typed_calls_cross_processes_with_the_same_proxy() {
    let node = NodeProcess::start(NODE, &["--name", "node-a", "--spawn", "worker"]);
    let system = client(&node.addr).await;
    let w = worker(&system).await;
    assert!(!w.is_local());
    assert_eq!(
        w.process("hello".into()).await.unwrap(),
        "hello processed by node-a"
    );
    assert_eq!(
        w.refuse("no".into()).await.unwrap(),
        Err("no".to_string()),
        "business errors stay inside"
    );
    let big = vec![7u8; 1 << 20];
    assert_eq!(w.echo(big.clone()).await.unwrap(), big);
    // Hundreds of calls in flight on one connection simply queue and complete.
    let calls = (0..500).map(|i| w.process(format!("#{i}")).into_future());
    for (i, reply) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(reply.unwrap(), format!("#{i} processed by node-a"));
    }
    w.process("told".into()).tell().await.unwrap();
    system.shutdown().await;
}

#[tokio::test]
async fn streams_cross_processes_in_order_and_can_be_dropped() {
    let node = NodeProcess::start(NODE, &["--name", "node-a", "--spawn", "worker"]);
    let system = ActorSystem::builder()
        .addr("127.0.0.1:0")
        .seeds([node.addr.as_str()])
        .stream_buffer(16)
        .build()
        .await
        .unwrap();
    let w = worker(&system).await;
    let items: Vec<u32> =
        within(w.count(10_000).await.unwrap().map(|r| r.unwrap()).collect()).await;
    assert_eq!(items, (0..10_000).collect::<Vec<_>>());
    dropped(&w, 1).await;
    // Dropping a huge stream early cancels it: the producer's stream is dropped on its node;
    // the connection keeps serving.
    let mut s = w.count(u32::MAX).await.unwrap();
    assert_eq!(next_item(&mut s).await.unwrap().unwrap(), 0);
    drop(s);
    dropped(&w, 2).await;
    assert_eq!(
        w.process("after".into()).await.unwrap(),
        "after processed by node-a"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn remote_failures_are_typed_errors() {
    let node = NodeProcess::start(NODE, &["--name", "node-a", "--spawn", "worker"]);
    let system = client(&node.addr).await;
    let w = worker(&system).await;
    let err = w
        .slow(300)
        .timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(matches!(
        Worker::resolve(&system, "nobody").await,
        Err(Error::NotFound { .. })
    ));
    let err = Clerk::resolve(&system, "worker").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "`worker` is bound to an actor of type `{}`, but type `{}` was asked for",
            <Worker as Actor>::interface().identity(),
            <Clerk as Actor>::interface().identity()
        )
    );
    // By name, with Value arguments, across processes.
    let any = system.resolve_dyn("worker").await.unwrap();
    assert_eq!(
        any.call("process", Args::new().kwarg("text", "dyn"))
            .await
            .unwrap(),
        Value::from("dyn processed by node-a")
    );
    let err = any.call("process", Args::new().arg(3)).await.unwrap_err();
    assert!(
        err.to_string().contains("argument `text` must be `String`"),
        "{err}"
    );
    let err = any.call("nope", Args::new()).await.unwrap_err();
    assert!(matches!(err, Error::UnknownMethod { .. }), "{err}");
    // Last, since a panic stops the worker (default supervision).
    match w.boom().await {
        Err(Error::Panicked {
            method, message, ..
        }) => {
            assert_eq!(method, "boom");
            assert_eq!(message, "boom on node-a");
        }
        other => panic!("expected the remote panic, got {other:?}"),
    }
    system.shutdown().await;
}

#[tokio::test]
async fn a_killed_peer_fails_pending_calls_promptly() {
    let mut node = NodeProcess::start(NODE, &["--name", "node-a", "--spawn", "worker"]);
    let system = client(&node.addr).await;
    let w = worker(&system).await;
    let pending = tokio::spawn({
        let w = w.clone();
        async move { w.slow(60_000).no_timeout().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed_at = Instant::now();
    node.kill(); // SIGKILL
    let err = tokio::time::timeout(WAIT, pending)
        .await
        .expect("no hang")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::PeerLost { .. }), "{err}");
    // "At once": the kernel resets the connection of a killed process.
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(2), "PeerLost after {took:?}");
    let err = w.process("x".into()).await.unwrap_err();
    assert!(
        matches!(err, Error::PeerLost { .. } | Error::Unreachable { .. }),
        "calls to the dead node fail: {err}"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_wrong_cluster_secret_is_refused() {
    let node = NodeProcess::start(NODE, &["--secret", "right", "--spawn", "worker"]);
    let wrong = ActorSystem::builder()
        .addr("127.0.0.1:0")
        .seeds([node.addr.as_str()])
        .secret("wrong")
        .build()
        .await
        .unwrap();
    let err = Worker::resolve(&wrong, "worker").await.unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    let right = ActorSystem::builder()
        .addr("127.0.0.1:0")
        .seeds([node.addr.as_str()])
        .secret("right")
        .build()
        .await
        .unwrap();
    let worker = Worker::resolve(&right, "worker").await.unwrap();
    assert_eq!(
        worker.process("in".into()).await.unwrap(),
        "in processed by node"
    );
    wrong.shutdown().await;
    right.shutdown().await;
}

#[tokio::test]
async fn garbage_bytes_on_the_port_do_not_disturb_the_node() {
    let node = NodeProcess::start(NODE, &["--name", "node-a", "--spawn", "worker"]);
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0xffu8; 10_000][..],
        b"\x00",
    ] {
        let mut raw = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
        let _ = raw.write_all(garbage).await;
    }
    let system = client(&node.addr).await;
    assert_eq!(
        worker(&system).await.process("still".into()).await.unwrap(),
        "still processed by node-a"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_restarted_peer_is_reached_again_by_resolving_anew() {
    // Not port 0: the port is taken again after a kill, so it must be one that sibling tests
    // binding port 0 cannot be handed meanwhile.
    let bind = format!("127.0.0.1:{}", pulsing_tests::unshared_port());
    let mut first = NodeProcess::start(
        NODE,
        &["--addr", &bind, "--name", "first", "--spawn", "worker"],
    );
    let addr = first.addr.clone();
    let system = client(&addr).await;
    let old = worker(&system).await;
    assert_eq!(
        old.process("a".into()).await.unwrap(),
        "a processed by first"
    );
    first.kill();
    // The same address comes back with a new node.
    let _second = NodeProcess::start(
        NODE,
        &["--addr", &addr, "--name", "second", "--spawn", "worker"],
    );
    let err = old.process("b".into()).await.unwrap_err();
    assert!(
        matches!(err, Error::PeerLost { .. }),
        "the old proxy's actor died with its node: {err}"
    );
    let new = worker(&system).await;
    assert_eq!(
        new.process("c".into()).await.unwrap(),
        "c processed by second"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_slow_remote_consumer_holds_the_producer_back() {
    let node = NodeProcess::start(NODE, &["--spawn", "worker"]);
    let system = client(&node.addr).await;
    let w = worker(&system).await;
    let mut ticks = w.ticks().await.unwrap();
    for expected in 0..10 {
        assert_eq!(next_item(&mut ticks).await.unwrap().unwrap(), expected);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The credit window (1,024 with the default stream buffer: received, not yet taken) and the
    // serving node's batch buffer between the producer and the connection (256) bound how far
    // the producer may run ahead; without flow control it would have produced millions by now.
    let produced = w.produced().await.unwrap();
    assert!(
        produced < 10 + 1024 + 256 + 8,
        "the producer ran {produced} items ahead"
    );
    drop(ticks);
    dropped(&w, 1).await;
    system.shutdown().await;
}

#[tokio::test]
async fn a_hung_peer_is_detected_within_seconds_without_a_tcp_reset() {
    let node = NodeProcess::start(NODE, &["--spawn", "worker"]);
    let system = client(&node.addr).await;
    let w = worker(&system).await;
    // Idle but alive: pings keep the connection up well past the silence limit.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        w.process("still".into()).await.unwrap(),
        "still processed by node"
    );
    node.freeze();
    let frozen_at = Instant::now();
    let err = tokio::time::timeout(WAIT, w.process("stuck".into()).no_timeout())
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(matches!(err, Error::PeerLost { .. }), "{err}");
    let took = frozen_at.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "not declared dead too eagerly: {took:?}"
    );
    // Documented: "about five seconds" (five silent checks a second apart: 5-6 s), with room
    // for a loaded machine.
    assert!(
        took <= Duration::from_secs(9),
        "declared dead after {took:?}, not about five seconds"
    );
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_from_one_node_run_in_order_even_through_a_full_mailbox() {
    // In-process pair of nodes (a real WebSocket connection on loopback): the server's actor
    // has room for 2 messages while 300 calls arrive at once, so most wait in a backlog.
    let (server, system, log) = in_process_pair(2).await;
    // Sent in order without waiting for answers, so they pile up on the server.
    for i in 0..300 {
        log.record(i).tell().await.unwrap();
    }
    let any = system.resolve_dyn("log").await.unwrap();
    for i in 300..310 {
        any.call("record", pulsing::Args::new().arg(i))
            .await
            .unwrap();
    }
    assert_eq!(log.records().await.unwrap(), (0..310).collect::<Vec<u64>>());
    system.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_posted_from_a_backlog_in_batches_keep_their_order() {
    // The actor sleeps while 2,000 calls arrive: 8 fill its mailbox, the rest wait in the
    // connection's backlog. Once it wakes it empties its mailbox faster than the backlog's
    // drainer refills it, so the drainer finds room for several calls at a time and posts them
    // together (`post_batch`): they must still run in the order they were sent.
    // Bad calls in the middle of a batch get their own errors, and the batch goes on.
    let (server, system, log) = in_process_pair(8).await;
    let sleeper = log.clone();
    let slow = tokio::spawn(async move { sleeper.slow(300).await });
    tokio::time::sleep(Duration::from_millis(50)).await; // it is asleep in `slow` by now
    let any = system.resolve_dyn("log").await.unwrap();
    let mut bad = Vec::new();
    for i in 0..2_000 {
        log.record(i).tell().await.unwrap();
        if i % 500 == 250 {
            let (a, b) = (any.clone(), any.clone());
            bad.push(tokio::spawn(async move {
                a.call("no_such_method", pulsing::Args::new()).await
            }));
            bad.push(tokio::spawn(async move {
                b.call("record", pulsing::Args::new().arg("not a number"))
                    .await
            }));
        }
    }
    assert_eq!(slow.await.unwrap().unwrap(), 300);
    for (i, call) in bad.into_iter().enumerate() {
        match call.await.unwrap() {
            Err(pulsing::Error::UnknownMethod { .. }) if i % 2 == 0 => {}
            Err(pulsing::Error::BadArguments { .. }) if i % 2 == 1 => {}
            other => panic!("bad call {i}: {other:?}"),
        }
    }
    assert_eq!(
        log.records().await.unwrap(),
        (0..2_000).collect::<Vec<u64>>()
    );
    system.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_in_a_backlog_when_a_remote_actor_stops_fail_with_stopped() {
    // A mailbox of 2 behind a slow call: most of the 40 calls wait in the connection's backlog,
    // registered with the actor, when it is asked to stop. The actor's end hands the backlog
    // back to the connection, which answers each call `Stopped` at once.
    calls_queued_behind_a_slow_one_fail_with_stopped_on_stop(2, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_callers_keeping_a_mailbox_full_do_not_starve_a_peers_backlog() {
    // 16 callers in the server's own process keep a mailbox of 4 full without a gap (each call
    // takes the actor 1 ms, so a freed place is taken again long before the next is freed); a
    // peer's 20 calls wait in its backlog meanwhile. They must still be served while the local
    // load goes on: the actor takes the backlog's turn at least once per mailbox's worth of
    // messages, and a backlog that finds the local callers waiting for room queues with them.
    let (server, system, log) = in_process_pair(4).await;
    let local = Worker::resolve(&server, "log").await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let locals: Vec<_> = (0..16)
        .map(|_| {
            let (local, stop) = (local.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    local.slow(1).await.unwrap();
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let remote = futures_util::future::join_all((0..20).map(|i| log.record(i).into_future()));
    let served = tokio::time::timeout(Duration::from_secs(10), remote).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for local in locals {
        local.await.unwrap();
    }
    let served = served.expect("the peer's calls were served while the local load went on");
    assert!(served.iter().all(Result::is_ok), "{served:?}");
    assert_eq!(log.records().await.unwrap(), (0..20).collect::<Vec<u64>>());
    system.shutdown().await;
    server.shutdown().await;
}

/// A call that cannot be posted answers with its own error, also after waiting in a backlog:
/// an unknown method behind a full mailbox is `UnknownMethod`, not the `Stopped` its dropped
/// reply slot would say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_call_behind_a_full_mailbox_gets_its_own_error() {
    let (server, system, log) = in_process_pair(1).await;
    log.slow(300).tell().await.unwrap();
    log.record(1).tell().await.unwrap();
    let any = system.resolve_dyn("log").await.unwrap();
    for (method, args) in [
        ("no_such_method", pulsing::Args::new()),
        ("record", pulsing::Args::new().arg("not a number")),
    ] {
        match any.call(method, args).await {
            Err(pulsing::Error::UnknownMethod { .. }) if method == "no_such_method" => {}
            Err(pulsing::Error::BadArguments { .. }) if method == "record" => {}
            other => panic!("{method}: {other:?}"),
        }
    }
    assert_eq!(log.records().await.unwrap(), vec![1]);
    system.shutdown().await;
    server.shutdown().await;
}

/// A remote call is queued as it becomes its future, when its connection has room: the future
/// holds only the wait for the answer (no boxed send path), and the actor has the call before the
/// future is first polled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_call_is_queued_as_it_becomes_its_future() {
    let (server, system, log) = in_process_pair(16).await;
    let record = log.record(7).into_future();
    assert_eq!(format!("{record:?}"), "CallFuture(remote .record)");
    // A few words (136 bytes here, the size of the local variant); the send path was 2,112.
    assert!(std::mem::size_of_val(&record) <= 256);
    // Never polled yet, and already ahead of this later call on the connection.
    assert_eq!(log.records().await.unwrap(), vec![7]);
    record.await.unwrap();
    system.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_call_that_times_out_while_queued_is_never_run() {
    // The server's actor is busy for a second with room for 2 messages: of the 5 calls that
    // time out meanwhile, 2 wait in its mailbox and 3 in the connection's backlog. The caller's
    // `Cancel` must reach all of them, wherever they wait.
    let (server, system, log) = in_process_pair(2).await;
    // Sent first, so it runs first: calls from one node keep their order.
    log.slow(1000).tell().await.unwrap();
    let given_up = futures_util::future::join_all((1..=5).map(|i| {
        log.record(i)
            .timeout(Duration::from_millis(50))
            .into_future()
    }))
    .await;
    for result in given_up {
        assert!(
            matches!(result, Err(pulsing::Error::Timeout { .. })),
            "{result:?}"
        );
    }
    log.record(99).await.unwrap();
    assert_eq!(log.records().await.unwrap(), vec![99]);
    system.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_queued_when_a_remote_actor_stops_fail_with_stopped() {
    // The calls wait in the actor's mailbox behind a slow one when it is asked to stop: each
    // gets `Stopped` from its reply slot, promptly, rather than waiting for its deadline.
    calls_queued_behind_a_slow_one_fail_with_stopped_on_stop(256, 3).await;
}

/// `calls` calls to an actor with a mailbox of `mailbox`, queued behind a slow one when the
/// actor is asked to stop: each must fail with `Stopped`, promptly.
async fn calls_queued_behind_a_slow_one_fail_with_stopped_on_stop(mailbox: usize, calls: u64) {
    let (server, system, log) = in_process_pair(mailbox).await;
    log.slow(1000).tell().await.unwrap();
    let mut queued: Vec<_> = (0..calls)
        .map(|i| Box::pin(log.record(i).no_timeout().into_future()))
        .collect();
    // One poll each sends the requests, so they travel (in order) ahead of the stop.
    for call in &mut queued {
        assert!(futures_util::FutureExt::now_or_never(call.as_mut()).is_none());
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // they have arrived
    log.stop();
    for call in queued {
        let result = tokio::time::timeout(WAIT, call)
            .await
            .expect("answered, not left to hang");
        assert!(matches!(result, Err(Error::Stopped { .. })), "{result:?}");
    }
    system.shutdown().await;
    server.shutdown().await;
}
