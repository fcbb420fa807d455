//! In-process benchmark: Pulsing's typed ask against the floor, a raw tokio mpsc + oneshot actor,
//! on the same current-thread tokio runtime. Prints medians and the Pulsing/raw ratio.
//!
//! Run: `cargo bench -p pulsing --bench local` (add `-- --quick` for a short run).

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use pulsing::ActorSystem;
use tokio::sync::{mpsc, oneshot};

/// Counts live heap bytes, to measure memory per actor.
struct Counting;
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The Pulsing actor under test.
#[derive(Debug)]
pub struct Counter {
    value: i64,
}

#[pulsing::remote]
impl Counter {
    /// Adds `by` and returns the new value.
    pub fn inc(&mut self, by: i64) -> i64 {
        self.value += by;
        self.value
    }
}

/// The floor: a hand-written actor on a raw bounded mpsc with a oneshot per ask.
#[derive(Clone)]
struct RawRef(mpsc::Sender<(i64, oneshot::Sender<i64>)>);

impl RawRef {
    fn spawn(capacity: usize) -> RawRef {
        let (tx, mut rx) = mpsc::channel::<(i64, oneshot::Sender<i64>)>(capacity);
        tokio::spawn(async move {
            let mut value = 0;
            while let Some((by, reply)) = rx.recv().await {
                value += by;
                let _ = reply.send(value);
            }
        });
        RawRef(tx)
    }

    async fn inc(&self, by: i64) -> i64 {
        let (tx, rx) = oneshot::channel();
        self.0.send((by, tx)).await.unwrap();
        rx.await.unwrap()
    }
}

struct Settings {
    runs: usize,
    asks: usize,
    spawns: usize,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// Median of `runs` timings of `f`, each returning elapsed time for `n` operations, as ns/op.
async fn ns_per_op<F, Fut>(runs: usize, n: usize, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Duration>,
{
    let mut samples = Vec::new();
    for _ in 0..runs {
        samples.push(f().await.as_nanos() as f64 / n as f64);
    }
    median(samples)
}

/// Keeps `window` asks in flight from one task until `n` have completed.
async fn pipelined<F, Fut>(n: usize, window: usize, mut ask: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = i64>,
{
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0;
    while sent < window.min(n) {
        in_flight.push(ask());
        sent += 1;
    }
    while in_flight.next().await.is_some() {
        if sent < n {
            in_flight.push(ask());
            sent += 1;
        }
    }
    start.elapsed()
}

/// Eight callers per handle, each running `caller(handle, per_caller)` on its own task; returns
/// the elapsed time once all are done.
async fn fan_out<R, F, Fut>(refs: &[R], per_caller: usize, caller: F) -> Duration
where
    R: Clone + Send + 'static,
    F: Fn(R, usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for r in refs {
        for _ in 0..8 {
            tasks.push(tokio::spawn(caller(r.clone(), per_caller)));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn row(name: &str, pulsing: f64, raw: f64, unit: &str, higher_is_better: bool) {
    let ratio = pulsing / raw;
    let verdict = if higher_is_better {
        format!("{:.2}x of raw throughput", ratio)
    } else {
        format!("{:.2}x of raw time", ratio)
    };
    println!("{name:<44} {pulsing:>12.1} {raw:>12.1} {unit:<10} {verdict}");
}

async fn run(s: Settings) {
    if std::env::args().any(|a| a == "--spawn-only") {
        return spawning(&s).await;
    }
    let system = ActorSystem::builder()
        .mailbox_capacity(1024)
        .build()
        .await
        .unwrap();
    let counter = Counter::spawn(&system, Counter { value: 0 }).await.unwrap();
    let raw = RawRef::spawn(1024);
    println!(
        "{:<44} {:>12} {:>12} {:<10} ratio",
        "workload", "pulsing", "raw floor", "unit"
    );

    // Warm up both.
    for _ in 0..s.asks / 10 {
        counter.inc(1).await.unwrap();
        raw.inc(1).await;
    }

    // (1) Sequential ask latency.
    let p = ns_per_op(s.runs, s.asks, || async {
        let start = Instant::now();
        for _ in 0..s.asks {
            counter.inc(1).await.unwrap();
        }
        start.elapsed()
    })
    .await;
    let p_nodl = ns_per_op(s.runs, s.asks, || async {
        let start = Instant::now();
        for _ in 0..s.asks {
            counter.inc(1).no_timeout().await.unwrap();
        }
        start.elapsed()
    })
    .await;
    let r = ns_per_op(s.runs, s.asks, || async {
        let start = Instant::now();
        for _ in 0..s.asks {
            raw.inc(1).await;
        }
        start.elapsed()
    })
    .await;
    row(
        "sequential ask (default 30 s deadline)",
        p,
        r,
        "ns/ask",
        false,
    );
    row("sequential ask (no deadline)", p_nodl, r, "ns/ask", false);

    // (2) Throughput, one caller with a window of asks in flight.
    for window in [64, 1024] {
        let n = s.asks * 4;
        let p = 1e9
            / ns_per_op(s.runs, n, || {
                pipelined(n, window, || async { counter.inc(1).await.unwrap() })
            })
            .await;
        let r = 1e9 / ns_per_op(s.runs, n, || pipelined(n, window, || raw.inc(1))).await;
        let q = 1e9
            / ns_per_op(s.runs, n, || {
                pipelined(n, window, || async {
                    counter.inc(1).no_timeout().await.unwrap()
                })
            })
            .await;
        row(
            &format!("1 caller, {window} in flight"),
            p,
            r,
            "asks/s",
            true,
        );
        row(
            &format!("1 caller, {window} in flight (no deadline)"),
            q,
            r,
            "asks/s",
            true,
        );
    }

    // 8 actors x 8 callers, each caller sequential.
    let actors: Vec<CounterRef> = {
        let mut v = Vec::new();
        for _ in 0..8 {
            v.push(Counter::spawn(&system, Counter { value: 0 }).await.unwrap());
        }
        v
    };
    let raws: Vec<RawRef> = (0..8).map(|_| RawRef::spawn(1024)).collect();
    let per_caller = s.asks / 8;
    let n = per_caller * 64;
    let p = 1e9
        / ns_per_op(s.runs, n, || {
            fan_out(&actors, per_caller, |a: CounterRef, k| async move {
                for _ in 0..k {
                    a.inc(1).await.unwrap();
                }
            })
        })
        .await;
    let q = 1e9
        / ns_per_op(s.runs, n, || {
            fan_out(&actors, per_caller, |a: CounterRef, k| async move {
                for _ in 0..k {
                    a.inc(1).no_timeout().await.unwrap();
                }
            })
        })
        .await;
    let r = 1e9
        / ns_per_op(s.runs, n, || {
            fan_out(&raws, per_caller, |a: RawRef, k| async move {
                for _ in 0..k {
                    a.inc(1).await;
                }
            })
        })
        .await;
    row("8 actors x 8 callers", p, r, "asks/s", true);
    row("8 actors x 8 callers (no deadline)", q, r, "asks/s", true);
    system.shutdown().await;
    spawning(&s).await;
}

/// (3) Spawning: time and live heap bytes per actor.
async fn spawning(s: &Settings) {
    let mut p_time = Vec::new();
    let mut p_mem = Vec::new();
    let mut r_time = Vec::new();
    let mut r_mem = Vec::new();
    for _ in 0..s.runs.min(5) {
        let system = ActorSystem::builder().build().await.unwrap();
        let mut refs = Vec::with_capacity(s.spawns);
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let start = Instant::now();
        for i in 0..s.spawns {
            refs.push(
                Counter::spawn(&system, Counter { value: i as i64 })
                    .await
                    .unwrap(),
            );
        }
        p_time.push(start.elapsed().as_nanos() as f64 / s.spawns as f64);
        let bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;
        p_mem.push(
            (bytes as f64 - (refs.capacity() * size_of::<CounterRef>()) as f64) / s.spawns as f64,
        );
        // Let every actor start (run its task once) before tearing down.
        refs.last().unwrap().inc(0).await.unwrap();
        drop(refs);
        system.shutdown().await;

        let mut raws = Vec::with_capacity(s.spawns);
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let start = Instant::now();
        for _ in 0..s.spawns {
            raws.push(RawRef::spawn(256));
        }
        r_time.push(start.elapsed().as_nanos() as f64 / s.spawns as f64);
        let bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;
        r_mem.push(
            (bytes as f64 - (raws.capacity() * size_of::<RawRef>()) as f64) / s.spawns as f64,
        );
        raws.last().unwrap().inc(0).await;
        drop(raws);
        tokio::task::yield_now().await;
    }
    row(
        &format!("spawn {} actors: time per actor", s.spawns),
        median(p_time),
        median(r_time),
        "ns",
        false,
    );
    row(
        &format!("spawn {} actors: heap per actor", s.spawns),
        median(p_mem),
        median(r_mem),
        "bytes",
        false,
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let settings = if quick {
        Settings {
            runs: 3,
            asks: 20_000,
            spawns: 10_000,
        }
    } else {
        Settings {
            runs: 7,
            asks: 200_000,
            spawns: 100_000,
        }
    };
    println!(
        "Pulsing local benchmark: tokio current-thread runtime, {} runs per row, medians{}",
        settings.runs,
        if quick { " (quick)" } else { "" }
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(settings));
}
