//! Whether a thread that waits for another may spin briefly before it parks, and for how long.
//!
//! Every wait in this crate that is on a call's path (the loop holding for an answer,
//! `Bridge::hold`; the loop holding for a `def` worker, `Slot::wait`; a worker that just handed
//! an answer over, waiting for the next job) parks on a condition variable: one futex wake-up
//! when the answer comes. It may first spin for [`budget`] — only while the machine has a CPU
//! to spare. Spinning pays only when the thread it waits for has a CPU of its own: on a 2-vCPU
//! machine where another process keeps a CPU busy, a spinning waiter takes the very core that
//! the awaited thread (tokio's, a peer's, a worker) needs, and the call gets slower and dearer
//! (issue #15; docs/python.md, "Waiting without spinning").
//!
//! "Busy" is measured, not guessed: at most every [`SAMPLE`], the CPU time the whole machine
//! spent (`/proc/stat`) less this process's own (`/proc/self/stat`, so our own spinning does
//! not count) over the last interval; when other processes used more than [`BUSY_SHARE`] of
//! one CPU, nobody here spins until the next sample says otherwise.
//!
//! `PULSING_SPIN_US` sets the budget (default [`DEFAULT_SPIN_US`]; `0`: never spin).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// The spin budget when `PULSING_SPIN_US` is unset.
const DEFAULT_SPIN_US: u64 = 50;

/// How often the machine's load is sampled (by whichever thread asks first).
const SAMPLE: Duration = Duration::from_millis(50);

/// Other processes' CPU use (in CPUs) from which the machine counts as busy.
const BUSY_SHARE: f64 = 0.25;

static BUDGET_US: AtomicU64 = AtomicU64::new(u64::MAX);
static BUSY: AtomicBool = AtomicBool::new(true);

struct Sample {
    at: Option<Instant>,
    /// Machine busy ticks (all CPUs) and this process's ticks at `at`.
    machine: u64,
    own: u64,
}

static LAST: Mutex<Sample> = Mutex::new(Sample {
    at: None,
    machine: 0,
    own: 0,
});

fn configured_us() -> u64 {
    let us = BUDGET_US.load(Ordering::Relaxed);
    if us != u64::MAX {
        return us;
    }
    let us = std::env::var("PULSING_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SPIN_US);
    BUDGET_US.store(us, Ordering::Relaxed);
    us
}

/// How long a waiter may spin now: the configured budget, or zero while the machine is busy.
pub(crate) fn budget() -> Duration {
    let us = configured_us();
    if us == 0 || machine_busy() {
        return Duration::ZERO;
    }
    Duration::from_micros(us)
}

/// Whether other processes kept more than [`BUSY_SHARE`] of a CPU busy over the last sample
/// (true until a first interval was measured, and wherever `/proc` cannot tell).
pub(crate) fn machine_busy() -> bool {
    if let Ok(mut last) = LAST.try_lock() {
        let now = Instant::now();
        if last.at.is_none_or(|at| now.duration_since(at) >= SAMPLE) {
            if let (Some(machine), Some(own)) = (machine_ticks(), own_ticks()) {
                if let Some(at) = last.at {
                    let ticks_per_s = 100.0; // USER_HZ: /proc's unit on every Linux
                    let elapsed = now.duration_since(at).as_secs_f64() * ticks_per_s;
                    let others = machine.saturating_sub(last.machine) as f64
                        - own.saturating_sub(last.own) as f64;
                    BUSY.store(others / elapsed > BUSY_SHARE, Ordering::Relaxed);
                }
                *last = Sample {
                    at: Some(now),
                    machine,
                    own,
                };
            }
        }
    }
    BUSY.load(Ordering::Relaxed)
}

/// Busy ticks of all CPUs (everything but idle and iowait), from `/proc/stat`.
fn machine_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let total: u64 = fields.iter().sum();
    Some(total - fields.get(3)? - fields.get(4)?)
}

/// This process's user + system ticks, from `/proc/self/stat`.
fn own_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Spins for up to [`budget`] (capped at `limit`) until `done()`; true if it became done. Each
/// round yields the core, so a thread that needs it can run.
pub(crate) fn spin(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let limit = budget().min(limit);
    if limit.is_zero() {
        return done();
    }
    let start = Instant::now();
    let mut round = 0u32;
    loop {
        if done() {
            return true;
        }
        round = round.wrapping_add(1);
        if round.is_multiple_of(32) {
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::yield_now();
        }
        std::hint::spin_loop();
    }
}

/// Whether a waiter may spin now (`PULSING_SPIN_US` is not 0 and the machine is not busy);
/// for the benchmark and the tests.
#[pyfunction]
pub(crate) fn spin_allowed() -> bool {
    !budget().is_zero()
}
