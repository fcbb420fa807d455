//! What happens to an actor when one of its handlers panics, and how an actor is spawned.
//!
//! A panic never takes the process down: the caller whose message panicked gets
//! [`Error::Panicked`](crate::Error::Panicked), and the actor's [`Supervision`] policy decides
//! whether it stops (the default) or is rebuilt from its factory and carries on with the same
//! mailbox, name and handles.
//!
//! ```
//! # use pulsing::prelude::*;
//! # use std::time::Duration;
//! #[derive(Default)]
//! pub struct Flaky { calls: u32 }
//!
//! #[pulsing::remote]
//! impl Flaky {
//!     pub fn work(&mut self, fail: bool) -> u32 {
//!         assert!(!fail, "asked to fail");
//!         self.calls += 1;
//!         self.calls
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pulsing::Result<()> {
//! let system = ActorSystem::builder().build().await?;
//! let options = SpawnOptions::new().restart(3, Duration::from_secs(10));
//! let flaky = Flaky::spawn_with(&system, options, Flaky::default).await?;
//! assert_eq!(flaky.work(false).await?, 1);
//! assert!(matches!(flaky.work(true).await, Err(Error::Panicked { .. })));
//! assert_eq!(flaky.work(false).await?, 1); // a fresh instance from the factory
//! # system.shutdown().await; Ok(()) }
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// What to do with an actor whose handler (or start hook) panicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Supervision {
    /// Stop the actor: queued and later calls fail with [`Error::Stopped`](crate::Error::Stopped).
    #[default]
    Stop,
    /// Replace the actor's state with a fresh one from its factory and go on, at most
    /// `max_restarts` times within any `within` window; one more panic stops it.
    Restart {
        /// How many restarts the window allows.
        max_restarts: u32,
        /// The sliding window.
        within: Duration,
    },
}

/// How to spawn an actor: its name, mailbox size and supervision policy.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SpawnOptions {
    pub(crate) name: Option<String>,
    pub(crate) mailbox: Option<usize>,
    pub(crate) supervision: Supervision,
    /// A hosted actor's own interface (and type name), instead of `A::interface()`.
    pub(crate) interface: Option<&'static super::interface::Interface>,
}

impl SpawnOptions {
    /// Anonymous, the system's mailbox size, stopped on panic.
    pub fn new() -> Self {
        SpawnOptions::default()
    }

    /// Registers the actor under `name`; spawning fails if the name is taken.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// This actor's mailbox capacity (at least 1), instead of the system default.
    pub fn mailbox(mut self, capacity: usize) -> Self {
        self.mailbox = Some(capacity.max(1));
        self
    }

    /// Restarts the actor from its factory after a panic, at most `max_restarts` times `within`
    /// a sliding window.
    pub fn restart(mut self, max_restarts: u32, within: Duration) -> Self {
        self.supervision = Supervision::Restart {
            max_restarts,
            within,
        };
        self
    }

    /// Sets the supervision policy.
    pub fn supervision(mut self, policy: Supervision) -> Self {
        self.supervision = policy;
        self
    }
}

/// Applies a [`Supervision`] policy to a sequence of panics.
#[derive(Debug)]
pub(crate) struct Supervisor {
    policy: Supervision,
    recent: VecDeque<Instant>,
}

impl Supervisor {
    pub(crate) fn new(policy: Supervision) -> Self {
        Supervisor {
            policy,
            recent: VecDeque::new(),
        }
    }

    /// Records a panic; `true` means restart, `false` means stop.
    pub(crate) fn should_restart(&mut self) -> bool {
        let Supervision::Restart {
            max_restarts,
            within,
        } = self.policy
        else {
            return false;
        };
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > within)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= max_restarts as usize {
            return false;
        }
        self.recent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn restart_budget_refills_after_the_window() {
        let mut s = Supervisor::new(Supervision::Restart {
            max_restarts: 2,
            within: Duration::from_secs(10),
        });
        assert!(s.should_restart());
        assert!(s.should_restart());
        assert!(!s.should_restart(), "third panic within the window stops");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(s.should_restart(), "old restarts age out of the window");
    }

    #[test]
    fn stop_policy_never_restarts() {
        assert!(!Supervisor::new(Supervision::Stop).should_restart());
    }
}
