//! In-process benchmark: Pulsing's typed ask against the floor, a raw tokio mpsc + oneshot actor
//! with the same mailbox capacity, on the same tokio runtime (current-thread, then multi-thread
//! with 2 workers). Each run measures the three contenders in turn; rows print medians, the
//! Pulsing/raw ratio and the process CPU time per ask.
//!
//! Run: `cargo bench -p pulsing --bench local` (add `-- --quick` for a short run, `--current` or
//! `--multi` for one runtime, `--no-spawn` to skip the spawning rows).

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

#[derive(Clone, Copy)]
struct Settings {
    runs: usize,
    asks: usize,
    spawns: usize,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// CPU time of the whole process (every thread), from `CLOCK_PROCESS_CPUTIME_ID`.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One measured run: wall-clock and process CPU time for `n` operations.
#[derive(Clone, Copy)]
struct Sample {
    wall_ns: f64,
    cpu_ns: f64,
}

/// Times one run of `f` (which performs `n` operations), per operation.
async fn sample<Fut: Future<Output = ()>>(n: usize, f: Fut) -> Sample {
    let (cpu, start) = (cpu_time(), Instant::now());
    f.await;
    Sample {
        wall_ns: start.elapsed().as_nanos() as f64 / n as f64,
        cpu_ns: (cpu_time() - cpu).as_nanos() as f64 / n as f64,
    }
}

/// Like [`sample`], but skips the run (a dummy sample) if `--only` picked the other side.
async fn sample_of<Fut: Future<Output = ()>>(who: &str, n: usize, f: Fut) -> Sample {
    if !side(who) {
        return Sample {
            wall_ns: 1.0,
            cpu_ns: 1.0,
        };
    }
    sample(n, f).await
}

/// The three contenders of every row, measured in turn within each run (interleaved, so that the
/// machine's drift hits all three alike): Pulsing with its default deadline, Pulsing with
/// `.no_timeout()`, and the raw floor.
#[derive(Default)]
struct Trio {
    default: Vec<Sample>,
    no_timeout: Vec<Sample>,
    raw: Vec<Sample>,
}

impl Trio {
    fn wall(xs: &[Sample]) -> f64 {
        median(xs.iter().map(|s| s.wall_ns).collect())
    }

    fn cpu(xs: &[Sample]) -> f64 {
        median(xs.iter().map(|s| s.cpu_ns).collect())
    }

    /// Prints the row: latency rows as ns per ask, throughput rows as asks per second.
    fn print(&self, name: &str, throughput: bool) {
        let (d, q, r) = (
            Self::wall(&self.default),
            Self::wall(&self.no_timeout),
            Self::wall(&self.raw),
        );
        let cpu = |xs: &[Sample]| Self::cpu(xs);
        let show = |ns: f64| if throughput { 1e9 / ns } else { ns };
        let unit = if throughput { "asks/s" } else { "ns/ask" };
        // Time ratio for latency, throughput ratio (floor time / ours) for throughput.
        let ratio = |ours: f64| if throughput { r / ours } else { ours / r };
        let what = if throughput {
            "x of raw throughput"
        } else {
            "x of raw time"
        };
        println!(
            "{name:<40} {:>12.1} {:>12.1} {unit:<7} {:>5.2}{what:<20} cpu/ask {:>6.0} vs {:>6.0} ns",
            show(d),
            show(r),
            ratio(d),
            cpu(&self.default),
            cpu(&self.raw),
        );
        println!(
            "{:<40} {:>12.1} {:>12.1} {unit:<7} {:>5.2}{what:<20} cpu/ask {:>6.0} vs {:>6.0} ns  (no_timeout / default: {:.2}x time)",
            format!("{name} (no_timeout)"),
            show(q),
            show(r),
            ratio(q),
            cpu(&self.no_timeout),
            cpu(&self.raw),
            q / d,
        );
    }
}

/// Keeps `window` asks in flight from one task until `n` have completed.
async fn pipelined<F, Fut>(n: usize, window: usize, mut ask: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = i64>,
{
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
}

/// Eight callers per handle, each running `caller(handle, per_caller)` on its own task, until
/// all are done.
async fn fan_out<R, F, Fut>(refs: &[R], per_caller: usize, caller: F)
where
    R: Clone + Send + 'static,
    F: Fn(R, usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut tasks = Vec::new();
    for r in refs {
        for _ in 0..8 {
            tasks.push(tokio::spawn(caller(r.clone(), per_caller)));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn row(name: &str, pulsing: f64, raw: f64, unit: &str, higher_is_better: bool) {
    let ratio = pulsing / raw;
    let verdict = if higher_is_better {
        format!("{:.2}x of raw throughput", ratio)
    } else {
        format!("{:.2}x of raw time", ratio)
    };
    println!("{name:<40} {pulsing:>12.1} {raw:>12.1} {unit:<7} {verdict}");
}

/// Whether the row named `name` runs: all of them unless `--row <name>` picks one (`sequential`,
/// `64 in flight`, `1024 in flight`, `8 x 8`).
fn wanted(name: &str) -> bool {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--row") {
        Some(i) => args.get(i + 1).is_some_and(|row| row == name),
        None => true,
    }
}

/// Whether to measure `.no_timeout()` and the default deadline (`--only raw`/`--only pulsing`
/// skips the other side, for a profiler).
fn side(name: &str) -> bool {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--only") {
        Some(i) => args.get(i + 1).is_some_and(|only| only == name),
        None => true,
    }
}

/// The ask rows on the current runtime.
async fn asks(s: &Settings) {
    let system = ActorSystem::builder()
        .mailbox_capacity(1024)
        .build()
        .await
        .unwrap();
    let counter = Counter::spawn(&system, Counter { value: 0 }).await.unwrap();
    let raw = RawRef::spawn(1024);
    let (counter, raw) = (&counter, &raw);

    // Warm up both.
    for _ in 0..s.asks / 10 {
        counter.inc(1).await.unwrap();
        raw.inc(1).await;
    }

    // (1) Sequential ask latency.
    let n = s.asks;
    let mut t = Trio::default();
    for _ in 0..s.runs * usize::from(wanted("sequential")) {
        t.default.push(
            sample_of("pulsing", n, async {
                for _ in 0..n {
                    counter.inc(1).await.unwrap();
                }
            })
            .await,
        );
        t.no_timeout.push(
            sample_of("pulsing", n, async {
                for _ in 0..n {
                    counter.inc(1).no_timeout().await.unwrap();
                }
            })
            .await,
        );
        t.raw.push(
            sample_of("raw", n, async {
                for _ in 0..n {
                    raw.inc(1).await;
                }
            })
            .await,
        );
    }
    if wanted("sequential") {
        t.print("sequential ask", false);
    }

    // (2) Throughput, one caller with a window of asks in flight.
    for window in [64, 1024] {
        if !wanted(&format!("{window} in flight")) {
            continue;
        }
        let n = s.asks * 4;
        let mut t = Trio::default();
        for _ in 0..s.runs {
            t.default.push(
                sample_of(
                    "pulsing",
                    n,
                    pipelined(n, window, || async { counter.inc(1).await.unwrap() }),
                )
                .await,
            );
            t.no_timeout.push(
                sample_of(
                    "pulsing",
                    n,
                    pipelined(n, window, || async {
                        counter.inc(1).no_timeout().await.unwrap()
                    }),
                )
                .await,
            );
            t.raw
                .push(sample_of("raw", n, pipelined(n, window, || raw.inc(1))).await);
        }
        t.print(&format!("1 caller, {window} in flight"), true);
    }

    // (3) 8 actors x 8 callers, each caller sequential.
    if !wanted("8 x 8") {
        system.shutdown().await;
        return;
    }
    let mut actors: Vec<CounterRef> = Vec::new();
    for _ in 0..8 {
        actors.push(Counter::spawn(&system, Counter { value: 0 }).await.unwrap());
    }
    let raws: Vec<RawRef> = (0..8).map(|_| RawRef::spawn(1024)).collect();
    let per_caller = s.asks / 8;
    let n = per_caller * 64;
    let mut t = Trio::default();
    for _ in 0..s.runs {
        t.default.push(
            sample_of(
                "pulsing",
                n,
                fan_out(&actors, per_caller, |a: CounterRef, k| async move {
                    for _ in 0..k {
                        a.inc(1).await.unwrap();
                    }
                }),
            )
            .await,
        );
        t.no_timeout.push(
            sample_of(
                "pulsing",
                n,
                fan_out(&actors, per_caller, |a: CounterRef, k| async move {
                    for _ in 0..k {
                        a.inc(1).no_timeout().await.unwrap();
                    }
                }),
            )
            .await,
        );
        t.raw.push(
            sample_of(
                "raw",
                n,
                fan_out(&raws, per_caller, |a: RawRef, k| async move {
                    for _ in 0..k {
                        a.inc(1).await;
                    }
                }),
            )
            .await,
        );
    }
    t.print("8 actors x 8 callers", true);
    system.shutdown().await;
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
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let quick = has("--quick");
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
    // `--current` / `--multi` pick one runtime; `--soak` repeats the multi-thread rows (for a
    // profiler).
    let (current, multi) = match (has("--current"), has("--multi")) {
        (false, false) => (true, true),
        picked => picked,
    };
    println!(
        "Pulsing local benchmark: {} runs per row, interleaved, medians{}; ratios against the raw floor in the same run",
        settings.runs,
        if quick { " (quick)" } else { "" }
    );
    println!(
        "{:<40} {:>12} {:>12} {:<7} ratio",
        "workload", "pulsing", "raw floor", "unit"
    );
    if has("--spawn-only") {
        return current_thread().block_on(spawning(&settings));
    }
    if current {
        println!("-- tokio current-thread runtime");
        current_thread().block_on(asks(&settings));
    }
    if multi {
        println!("-- tokio multi-thread runtime, 2 workers");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        loop {
            // On a worker, as in a service: `block_on` would run the callers on this thread,
            // every ask then waking a parked worker across threads.
            rt.block_on(async { tokio::spawn(async move { asks(&settings).await }).await })
                .unwrap();
            if !has("--soak") {
                break;
            }
        }
    }
    if current && !has("--no-spawn") {
        println!("-- spawning (current-thread runtime)");
        current_thread().block_on(spawning(&settings));
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
