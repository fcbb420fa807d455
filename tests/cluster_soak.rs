//! Soak (issue #12): three nodes under continuous load while one of them is killed (SIGKILL)
//! and restarted every few seconds. Every call completes or fails with a typed error within its
//! deadline (nothing hangs), and the survivors' memory stays flat.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pulsing_tests::{client, NodeProcess, Worker, WorkerRef};

const NODE: &str = env!("CARGO_BIN_EXE_test_node");
/// Each call's deadline.
const DEADLINE: Duration = Duration::from_secs(3);
/// How long past its deadline a call may take before it counts as hung (generous: this is a
/// correctness bound, not a latency one).
const HUNG: Duration = Duration::from_secs(10);
const RUN: Duration = Duration::from_secs(24);
const RESTART_EVERY: Duration = Duration::from_secs(3);
const CALLERS: usize = 12;

#[derive(Default)]
struct Tally {
    ok: [AtomicU64; 3],
    failed: [AtomicU64; 3],
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_one_restarting_every_few_seconds() {
    let a = NodeProcess::start(NODE, &["--name", "a", "--spawn", "worker-a"]);
    let b = NodeProcess::start(
        NODE,
        &["--name", "b", "--seed", &a.addr, "--spawn", "worker-b"],
    );
    let start_c = {
        let seed = a.addr.clone();
        move || {
            NodeProcess::start(
                NODE,
                &["--name", "c", "--seed", &seed, "--spawn", "worker-c"],
            )
        }
    };
    let mut c = start_c();
    let me = client(&a.addr).await;
    for name in ["worker-a", "worker-b", "worker-c"] {
        Worker::resolve_wait(&me, name, Duration::from_secs(20))
            .await
            .unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let (me, stop, tally) = (me.clone(), stop.clone(), tally.clone());
        callers.push(tokio::spawn(async move {
            let names = ["worker-a", "worker-b", "worker-c"];
            let mut refs: [Option<WorkerRef>; 3] = Default::default();
            let mut i = caller;
            while !stop.load(Ordering::Relaxed) {
                let which = i % 3;
                i += 1;
                let outcome = tokio::time::timeout(DEADLINE + HUNG, async {
                    let worker = match &refs[which] {
                        Some(w) => w.clone(),
                        None => {
                            let w = Worker::resolve(&me, names[which]).await?;
                            refs[which] = Some(w.clone());
                            w
                        }
                    };
                    let data = vec![which as u8; 1024];
                    worker.echo(data).timeout(DEADLINE).await
                })
                .await;
                match outcome {
                    Err(_) => panic!("a call to {} hung past its deadline", names[which]),
                    Ok(Ok(echoed)) => {
                        assert_eq!(echoed, vec![which as u8; 1024]);
                        tally.ok[which].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(_typed)) => {
                        // A typed error (`pulsing::Error`): resolve again next time.
                        refs[which] = None;
                        tally.failed[which].fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }

    // Warm up through one restart, then take the survivors' memory as the baseline.
    let started = tokio::time::Instant::now();
    let mut restarts = 0;
    let mut baseline = None;
    let mut peak = [0u64; 2];
    while started.elapsed() < RUN {
        tokio::time::sleep(RESTART_EVERY).await;
        c.kill();
        c = start_c();
        restarts += 1;
        let rss = [a.status_kib("VmRSS"), b.status_kib("VmRSS")];
        if restarts == 2 {
            baseline = Some(rss);
        } else if restarts > 2 {
            peak = [peak[0].max(rss[0]), peak[1].max(rss[1])];
        }
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.expect("no caller panicked (no call hung)");
    }
    let baseline = baseline.expect("at least two restarts");
    let counts = |t: &[AtomicU64; 3]| t.each_ref().map(|n| n.load(Ordering::Relaxed));
    eprintln!(
        "soak: {restarts} restarts; ok {:?}, typed errors {:?} (a, b, c); survivors' VmRSS \
         after warm-up {baseline:?} KiB, peak after {peak:?} KiB",
        counts(&tally.ok),
        counts(&tally.failed),
    );
    for (name, i) in [("a", 0), ("b", 1)] {
        assert!(
            tally.ok[i].load(Ordering::Relaxed) > 0,
            "no call to {name} succeeded"
        );
        assert!(
            peak[i] * 10 <= baseline[i] * 12,
            "node {name} grew from {} to {} KiB",
            baseline[i],
            peak[i]
        );
    }
    assert!(
        tally.ok[2].load(Ordering::Relaxed) > 0,
        "no call to c succeeded"
    );
    drop(me);
}
