//! Deadlines of calls in this process (issue #14): long ones (the system default, or 10 s and
//! more) are kept by the system's sweeper instead of a timer per call, short explicit ones by a
//! timer. Both must give a typed `Timeout`, never early; the sweeper's at most a few ticks late.
//!
//! The systems here use a 1 s default, the shortest one the sweeper keeps (ticking every
//! 100 ms), so the tests are quick. Timing bounds are generous: machines are noisy.

mod support;

use std::time::{Duration, Instant};

use pulsing::prelude::*;
use support::Counter;

const DEFAULT: Duration = Duration::from_secs(1);
/// How late a swept deadline may fire here: two ticks (200 ms), plus plenty for a busy machine.
const SLACK: Duration = Duration::from_secs(3);

async fn system() -> ActorSystem {
    ActorSystem::builder()
        .call_timeout(DEFAULT)
        .build()
        .await
        .unwrap()
}

/// Awaits `call`, failing the test (instead of hanging) if no deadline ever fires.
async fn bounded<T>(call: impl std::future::IntoFuture<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = tokio::time::timeout(DEFAULT + SLACK * 3, call.into_future())
        .await
        .expect("the deadline never fired");
    (out, start.elapsed())
}

fn assert_on_time(elapsed: Duration, deadline: Duration) {
    assert!(
        elapsed >= deadline,
        "fired early: {elapsed:?} < {deadline:?}"
    );
    assert!(
        elapsed <= deadline + SLACK,
        "fired far too late: {elapsed:?} for {deadline:?}"
    );
}

async fn a_long_default_deadline_fires_as_a_typed_timeout_never_early() {
    let sys = system().await;
    let c = Counter::spawn(&sys, Counter::new(0)).await.unwrap();
    // Running: the handler awaits (an `async` method) past the deadline.
    let (result, elapsed) = bounded(c.add_later(1, 10_000)).await;
    match result {
        Err(Error::Timeout { method, after, .. }) => {
            assert_eq!(method, "add_later");
            assert_eq!(after, DEFAULT);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_on_time(elapsed, DEFAULT);
    sys.shutdown().await;
}

#[tokio::test]
async fn a_long_default_deadline_fires_on_the_current_thread_runtime() {
    a_long_default_deadline_fires_as_a_typed_timeout_never_early().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_default_deadline_fires_on_the_multi_thread_runtime() {
    a_long_default_deadline_fires_as_a_typed_timeout_never_early().await;
}

#[tokio::test]
async fn a_swept_call_still_queued_times_out_and_is_skipped() {
    let sys = system().await;
    let counter = Counter::new(0);
    let (gate, entered) = (counter.gate.clone(), counter.entered.clone());
    let c = Counter::spawn(&sys, counter).await.unwrap();
    let blocked = support::occupy(&c, &entered).await;
    // Queued behind the blocked call, with the system's (swept) default deadline.
    let (result, elapsed) = bounded(c.inc(100)).await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert_on_time(elapsed, DEFAULT);
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
async fn a_long_explicit_deadline_is_kept_while_waiting_for_mailbox_room() {
    let sys = ActorSystem::builder()
        .call_timeout(DEFAULT)
        .mailbox_capacity(1)
        .build()
        .await
        .unwrap();
    let counter = Counter::new(0);
    let (gate, entered) = (counter.gate.clone(), counter.entered.clone());
    let c = Counter::spawn(&sys, counter).await.unwrap();
    let blocked = support::occupy(&c, &entered).await;
    c.inc(1).tell().await.unwrap(); // fills the mailbox
    let (result, elapsed) = bounded(c.inc(100).timeout(DEFAULT * 2)).await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert_on_time(elapsed, DEFAULT * 2);
    gate.notify_one();
    blocked.await.unwrap().unwrap();
    assert_eq!(c.get().await.unwrap(), 1, "only the told call ran");
    sys.shutdown().await;
}

#[tokio::test]
async fn short_explicit_deadlines_stay_precise() {
    // The default 30 s system sweeps once a second: a 300 ms deadline must not wait for it.
    let sys = ActorSystem::builder()
        .shutdown_grace(Duration::from_millis(10))
        .build()
        .await
        .unwrap();
    let c = Counter::spawn(&sys, Counter::new(0)).await.unwrap();
    let short = Duration::from_millis(300);
    for _ in 0..3 {
        let (result, elapsed) = bounded(c.add_later(1, 5_000).timeout(short)).await;
        assert!(
            matches!(result, Err(Error::Timeout { after, .. }) if after == short),
            "{result:?}"
        );
        assert!(elapsed >= short, "fired early: {elapsed:?}");
        assert!(
            elapsed < short + Duration::from_millis(650),
            "a short deadline waited for the sweeper: {elapsed:?}"
        );
    }
    sys.shutdown().await;
}

/// Calls its partner, who calls it back: with both busy, the innermost call can never run.
#[derive(Debug)]
pub struct Bouncer {
    system: ActorSystem,
    partner: String,
}

#[pulsing::remote]
impl Bouncer {
    /// Bounces `hops` times between the two actors.
    pub async fn bounce(&self, hops: u32) -> Result<u32, String> {
        if hops == 0 {
            return Ok(0);
        }
        let partner = Bouncer::resolve(&self.system, &self.partner)
            .await
            .map_err(|e| e.to_string())?;
        match partner.bounce(hops - 1).await {
            Ok(answer) => answer.map(|n| n + 1),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_between_two_actors_becomes_a_timeout() {
    let sys = system().await;
    for (me, partner) in [("a", "b"), ("b", "a")] {
        let bouncer = Bouncer {
            system: sys.clone(),
            partner: partner.into(),
        };
        Bouncer::spawn_named(&sys, me, bouncer).await.unwrap();
    }
    let a = Bouncer::resolve(&sys, "a").await.unwrap();
    // a awaits b, b awaits a: a's second call waits in a's mailbox forever, but for deadlines.
    let (result, elapsed) = bounded(a.bounce(2)).await;
    match result {
        Err(Error::Timeout { .. }) => {}
        Ok(Err(inner)) if inner.contains("timed out") => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_on_time(elapsed, DEFAULT);
    // The deadlock is broken: both actors serve again.
    assert_eq!(a.bounce(1).await.unwrap(), Ok(1));
    sys.shutdown().await;
}
