//! Long deadlines of calls in this process, kept by one sweeper per system instead of a timer per
//! call.
//!
//! A call whose deadline is long (see [`swept_from`]) records it in its reply channel. Once per
//! [`tick`], the system's sweeper task looks at every actor: its queued calls, through each
//! message's reply slot (`Actor::sweep`, generated; under the mailbox's lock, only if the mailbox
//! is not empty), and the call its handler is awaiting, if any (through its
//! [`Ticket`](super::oneshot::Ticket)). The first time it sees a call it notes the time;
//! once the deadline has passed since then, it expires the call: the caller wakes with
//! `Error::Timeout`, and the actor skips the call if it has not started it.
//!
//! So a call pays no clock read, no timer and no extra reference: the same as `.no_timeout()`.
//! Expiry is never early (the call was sent before it was first seen) and at most about two
//! ticks late (one until it is first seen, one until the check after its deadline), later only
//! if the runtime is too busy to run the sweeper. Short deadlines keep a tokio timer and are
//! precise.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

/// Deadlines at least this long are swept whatever the system's default (the same threshold as
/// calls to other nodes, `transport::SWEPT_DEADLINE`).
pub(crate) const LONG_DEADLINE: Duration = Duration::from_secs(10);

/// A default deadline shorter than this keeps a timer per call (it would need a fast sweeper).
const SHORTEST_SWEPT_DEFAULT: Duration = Duration::from_secs(1);

/// The shortest deadline a system with this default call timeout sweeps: its default (if at
/// least a second) and anything at least as long, and every deadline of [`LONG_DEADLINE`] or
/// more.
pub(crate) fn swept_from(default: Option<Duration>) -> Duration {
    match default {
        Some(d) if d >= SHORTEST_SWEPT_DEFAULT => d.min(LONG_DEADLINE),
        _ => LONG_DEADLINE,
    }
}

/// How often the sweeper of a system with this default call timeout runs: a tenth of the
/// shortest swept deadline (1 s for the default 30 s, 100 ms for a default of 1 s).
pub(crate) fn tick(default: Option<Duration>) -> Duration {
    swept_from(default) / 10
}

/// The sweeper's clock during one sweep: the time the sweep started (to decide expiry: reading
/// it early only makes expiry later), and, read lazily after each lock is taken, the time of a
/// first sighting (read after the lock, so it is later than the send of every call seen under
/// it). Times are nanoseconds since `epoch`, plus one (0 means "not seen yet").
#[derive(Debug)]
pub struct SweepClock {
    epoch: Instant,
    start: u64,
    now: Option<u64>,
}

impl SweepClock {
    /// A clock for one sweep.
    pub(crate) fn new(epoch: Instant) -> Self {
        SweepClock {
            epoch,
            start: since(epoch, Instant::now()),
            now: None,
        }
    }

    /// When the sweep started.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// Forgets the time read under the previous lock: call right after taking a lock.
    pub(crate) fn enter(&mut self) {
        self.now = None;
    }

    /// The time now (read once per [`enter`](Self::enter)).
    pub(crate) fn now(&mut self) -> u64 {
        let epoch = self.epoch;
        *self.now.get_or_insert_with(|| since(epoch, Instant::now()))
    }
}

fn since(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_nanos())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

/// Runs a sweeper: calls `sweep` with a fresh clock once per `every`, until it returns `false`.
pub(crate) async fn run(every: Duration, mut sweep: impl FnMut(&mut SweepClock) -> bool) {
    let epoch = Instant::now();
    let mut ticks = tokio::time::interval_at(epoch + every, every);
    // A late tick is not made up for with a burst: ticks stay at least `every` apart.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !sweep(&mut SweepClock::new(epoch)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_and_long_deadlines_are_swept_short_ones_are_not() {
        let thirty = Some(Duration::from_secs(30));
        assert_eq!(swept_from(thirty), LONG_DEADLINE);
        assert_eq!(tick(thirty), Duration::from_secs(1));
        let two = Some(Duration::from_secs(2));
        assert_eq!(swept_from(two), Duration::from_secs(2));
        assert_eq!(tick(two), Duration::from_millis(200));
        // A very short default keeps precise timers; long explicit deadlines are still swept.
        assert_eq!(swept_from(Some(Duration::from_millis(30))), LONG_DEADLINE);
        assert_eq!(swept_from(None), LONG_DEADLINE);
    }
}
