//! Actors and helpers shared by the single-process integration tests (`mod support;` in each).
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pulsing::prelude::*;
use tokio::sync::Notify;

pub mod frames;
pub mod shapes;

/// A log the tests read to see what actors did.
pub type Log = Arc<Mutex<Vec<String>>>;

pub fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

pub fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

pub struct Counter {
    pub value: i64,
    pub log: Log,
    pub gate: Arc<Notify>,
    /// Notified when `wait_gate` is entered: the actor is then busy until the gate opens.
    pub entered: Arc<Notify>,
}

impl Counter {
    pub fn new(value: i64) -> Self {
        Counter {
            value,
            log: log(),
            gate: Arc::new(Notify::new()),
            entered: Arc::new(Notify::new()),
        }
    }
}

#[pulsing::remote]
impl Counter {
    /// Adds `by`.
    pub fn inc(&mut self, by: i64) -> i64 {
        self.value += by;
        self.log.lock().unwrap().push(format!("inc {by}"));
        self.value
    }

    pub async fn get(&self) -> i64 {
        self.value
    }

    pub async fn add_later(&mut self, by: i64, after_ms: u64) -> i64 {
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        self.value += by;
        self.value
    }

    /// Waits until the test opens the gate.
    pub async fn wait_gate(&mut self) -> i64 {
        self.entered.notify_one();
        self.gate.notified().await;
        self.value
    }

    pub fn check(&self, limit: i64) -> Result<i64, String> {
        if self.value > limit {
            Err(format!("{} > {limit}", self.value))
        } else {
            Ok(self.value)
        }
    }

    pub fn boom(&mut self, message: String) -> i64 {
        panic!("{message}");
    }

    pub fn count_to(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
        futures_util::stream::iter(1..=n)
    }

    #[on_start]
    fn started(&mut self) {
        self.log
            .lock()
            .unwrap()
            .push(format!("start {}", self.value));
    }

    #[on_stop]
    async fn stopping(&mut self) {
        self.log
            .lock()
            .unwrap()
            .push(format!("stop {}", self.value));
    }
}

/// An actor of another type, for type-mismatch tests.
pub struct Other;

#[pulsing::remote]
impl Other {
    pub fn ping(&self) -> String {
        "pong".into()
    }
}

/// A producer whose streams report how far they got and when they are dropped.
pub struct Producer {
    pub produced: Arc<AtomicUsize>,
    pub dropped: Arc<Notify>,
}

struct DropSignal(Arc<Notify>);
impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

#[pulsing::remote]
impl Producer {
    /// An endless stream of numbers.
    pub fn endless(&self) -> impl Stream<Item = u64> + Send + 'static {
        let produced = self.produced.clone();
        let signal = DropSignal(self.dropped.clone());
        futures_util::stream::unfold((0u64, signal), move |(i, signal)| {
            let produced = produced.clone();
            async move {
                produced.fetch_add(1, Ordering::SeqCst);
                Some((i, (i + 1, signal)))
            }
        })
    }

    /// `n` items, then a panic.
    pub fn fails_after(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
        futures_util::stream::iter(0..=n).map(move |i| {
            assert!(i < n, "producer failed after {n} items");
            i
        })
    }

    /// Panics before any stream exists.
    pub fn fails_at_once(&self) -> impl Stream<Item = u32> + Send + 'static {
        panic!("no stream today");
        #[allow(unreachable_code)]
        futures_util::stream::iter(0..0)
    }

    /// Built asynchronously.
    pub async fn later(&self, n: u32) -> impl Stream<Item = String> + Send + 'static {
        tokio::task::yield_now().await;
        futures_util::stream::iter((0..n).map(|i| format!("item {i}")))
    }
}

impl Producer {
    pub fn new() -> Self {
        Producer {
            produced: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(Notify::new()),
        }
    }
}

pub async fn system() -> ActorSystem {
    ActorSystem::builder().build().await.expect("system starts")
}

/// Starts `wait_gate` on `c` in a task and returns once the actor is inside it (busy).
pub async fn occupy(
    c: &CounterRef,
    entered: &Notify,
) -> tokio::task::JoinHandle<pulsing::Result<i64>> {
    let task = tokio::spawn({
        let c = c.clone();
        async move { c.wait_gate().no_timeout().await }
    });
    entered.notified().await;
    task
}

/// How long a test waits for a stream item (or a whole short stream) before it fails: a stream
/// has no default deadline, so a lost item would otherwise hang the test run.
pub const STREAM_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The next item of `stream`, or a panic after [`STREAM_WAIT`].
pub async fn next_item<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    use futures_util::StreamExt;
    within(stream.next()).await
}

/// `work`'s output, or a panic after [`STREAM_WAIT`].
pub async fn within<F: std::future::Future>(work: F) -> F::Output {
    tokio::time::timeout(STREAM_WAIT, work)
        .await
        .expect("no stream item within 30 s")
}
