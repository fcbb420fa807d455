//! Shapes of `#[pulsing::remote]` blocks at the edge of what the macro supports (issue #16):
//! raw identifiers, `#[cfg]` methods, 16 arguments, `pub` hooks, and hooks that panic. The
//! shapes it refuses have compile-fail cases in `ui-tests/tests/fail/`.
#![allow(missing_docs, missing_debug_implementations)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pulsing::prelude::*;
use support::{entries, log, system, Log};

pub struct Edges {
    log: Log,
}

#[pulsing::remote]
impl Edges {
    /// A keyword as a name: Python and `DynRef` call it `type`.
    pub fn r#type(&self, r#in: u32) -> u32 {
        r#in + 1
    }

    #[cfg(any())]
    pub fn compiled_out(&self, x: NotEvenAType) -> u32 {
        x
    }

    #[cfg(test)]
    pub fn compiled_in(&self) -> String {
        "in".into()
    }

    /// After a compiled-out method: its row in the interface table moved up by one.
    pub fn last(&self, word: String) -> String {
        word
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sixteen(
        &self,
        a0: u8,
        a1: u8,
        a2: u8,
        a3: u8,
        a4: u8,
        a5: u8,
        a6: u8,
        a7: u8,
        a8: u8,
        a9: u8,
        a10: u8,
        a11: u8,
        a12: u8,
        a13: u8,
        a14: u8,
        a15: u8,
    ) -> u32 {
        [
            a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15,
        ]
        .iter()
        .map(|&a| u32::from(a))
        .sum()
    }

    /// `pub`, but a hook: the runtime calls it, callers cannot.
    #[on_start]
    pub fn started(&mut self) {
        self.log.lock().unwrap().push("started".into());
    }
}

#[tokio::test]
async fn a_raw_identifier_is_called_by_its_bare_name() {
    let sys = system().await;
    let e = Edges::spawn_named(&sys, "edges", Edges { log: log() })
        .await
        .unwrap();
    assert_eq!(e.r#type(1).await.unwrap(), 2);
    let by_name = sys.resolve_dyn("edges").await.unwrap();
    assert_eq!(
        by_name
            .call("type", Args::new().kwarg("in", 41))
            .await
            .unwrap(),
        Value::Int(42)
    );
    let method = <Edges as Actor>::interface().method("type").unwrap();
    assert_eq!(method.signature(), "type(in: u32) -> u32");
    sys.shutdown().await;
}

#[tokio::test]
async fn cfg_methods_exist_only_when_compiled_in() {
    let iface = <Edges as Actor>::interface();
    assert_eq!(
        iface.method_names(),
        "type, compiled_in, last, sixteen",
        "no `compiled_out`, and no hook"
    );
    let sys = system().await;
    let e = Edges::spawn_named(&sys, "edges", Edges { log: log() })
        .await
        .unwrap();
    assert_eq!(e.compiled_in().await.unwrap(), "in");
    let by_name = sys.resolve_dyn("edges").await.unwrap();
    // The by-name decoder of `last` reads `last`'s row, not the one `compiled_out` would have had.
    assert_eq!(
        by_name.call("last", Args::new().arg("w")).await.unwrap(),
        Value::Str("w".into())
    );
    let err = by_name.call("last", Args::new().arg(1)).await.unwrap_err();
    assert!(
        matches!(&err, Error::BadArguments { method, signature, .. }
            if method == "last" && signature == "last(word: String) -> String"),
        "{err}"
    );
    assert!(matches!(
        by_name.call("compiled_out", Args::new().arg(1)).await,
        Err(Error::UnknownMethod { .. })
    ));
    sys.shutdown().await;
}

#[tokio::test]
async fn sixteen_arguments_travel_typed_and_by_name() {
    let sys = system().await;
    let e = Edges::spawn_named(&sys, "edges", Edges { log: log() })
        .await
        .unwrap();
    assert_eq!(
        e.sixteen(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
            .await
            .unwrap(),
        136
    );
    let args = (1..=16).fold(Args::new(), |args, i| args.arg(i));
    let by_name = sys.resolve_dyn("edges").await.unwrap();
    assert_eq!(
        by_name.call("sixteen", args).await.unwrap(),
        Value::Int(136)
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn a_pub_hook_runs_as_a_hook_and_is_not_a_remote_method() {
    let sys = system().await;
    let shared = log();
    let e = Edges::spawn_named(
        &sys,
        "edges",
        Edges {
            log: shared.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!(e.compiled_in().await.unwrap(), "in");
    assert_eq!(entries(&shared), ["started"]);
    let by_name = sys.resolve_dyn("edges").await.unwrap();
    assert!(matches!(
        by_name.call("started", Args::new()).await,
        Err(Error::UnknownMethod { .. })
    ));
    assert!(<Edges as Actor>::interface().method("started").is_none());
    sys.shutdown().await;
}

/// An actor whose `on_start` panics while `start_panics` is above zero (each panic counts it
/// down), and whose `on_stop` panics if `stop_panics`.
pub struct Fragile {
    start_panics: Arc<AtomicUsize>,
    stop_panics: bool,
    log: Log,
}

#[pulsing::remote]
impl Fragile {
    pub fn ping(&self) -> u32 {
        self.log.lock().unwrap().push("ping".into());
        1
    }

    #[on_start]
    fn start(&mut self) {
        self.log.lock().unwrap().push("start".into());
        let left = self.start_panics.load(Ordering::SeqCst);
        if left > 0 {
            self.start_panics.store(left - 1, Ordering::SeqCst);
            panic!("start failed");
        }
    }

    #[on_stop]
    async fn stop_hook(&mut self) {
        self.log.lock().unwrap().push("stop".into());
        if self.stop_panics {
            panic!("stop failed");
        }
    }
}

fn fragile(start_panics: usize, stop_panics: bool, log: &Log) -> Fragile {
    Fragile {
        start_panics: Arc::new(AtomicUsize::new(start_panics)),
        stop_panics,
        log: log.clone(),
    }
}

/// Documented: a panic in `on_start` counts as a handler panic; by default the actor stops
/// (and its `on_stop` does not run: it never started), callers get `Stopped`, the name is free.
#[tokio::test]
async fn a_panicking_on_start_stops_the_actor_by_default() {
    let sys = system().await;
    let shared = log();
    let f = Fragile::spawn_named(&sys, "fragile", fragile(1, false, &shared))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), f.stopped())
        .await
        .expect("the actor stops");
    assert!(!f.is_alive());
    assert!(matches!(f.ping().await, Err(Error::Stopped { .. })));
    assert!(matches!(
        Fragile::resolve(&sys, "fragile").await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(entries(&shared), ["start"], "no message ran, no on_stop");
    sys.shutdown().await;
}

/// Documented: with a restart policy, the factory builds a fresh state and `on_start` runs again.
#[tokio::test]
async fn a_panicking_on_start_is_restarted_under_a_restart_policy() {
    let sys = system().await;
    let shared = log();
    let panics = Arc::new(AtomicUsize::new(2));
    let factory = {
        let (shared, panics) = (shared.clone(), panics.clone());
        move || Fragile {
            start_panics: panics.clone(),
            stop_panics: false,
            log: shared.clone(),
        }
    };
    let options = SpawnOptions::new()
        .name("phoenix")
        .restart(5, Duration::from_secs(60));
    let f = Fragile::spawn_with(&sys, options, factory).await.unwrap();
    assert_eq!(f.ping().await.unwrap(), 1);
    assert_eq!(entries(&shared), ["start", "start", "start", "ping"]);
    sys.shutdown().await;
}

/// Documented: a panic in `on_stop` is logged; the actor is stopped all the same.
#[tokio::test]
async fn a_panicking_on_stop_still_stops_the_actor_and_frees_its_name() {
    let sys = system().await;
    let shared = log();
    let f = Fragile::spawn_named(&sys, "fragile", fragile(0, true, &shared))
        .await
        .unwrap();
    assert_eq!(f.ping().await.unwrap(), 1);
    f.stop();
    tokio::time::timeout(Duration::from_secs(5), f.stopped())
        .await
        .expect("the actor stops");
    assert!(matches!(f.ping().await, Err(Error::Stopped { .. })));
    assert_eq!(entries(&shared), ["start", "ping", "stop"]);
    Fragile::spawn_named(&sys, "fragile", fragile(0, false, &shared))
        .await
        .expect("the name is free again");
    tokio::time::timeout(Duration::from_secs(5), sys.shutdown())
        .await
        .expect("shutdown does not hang");
}

/// An actor with no remote methods still compiles (its message enum is empty) and runs.
pub struct Silent;

#[pulsing::remote]
impl Silent {}

#[tokio::test]
async fn an_actor_without_remote_methods_spawns_and_stops() {
    let system = ActorSystem::new().await.unwrap();
    let silent = system.spawn(Silent).await.unwrap();
    assert!(silent.is_alive());
    silent.stop();
    silent.stopped().await;
}
