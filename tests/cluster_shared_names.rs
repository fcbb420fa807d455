//! One name, actors of several types (issue #16, bug 1). `resolve` promises "a local one of the
//! right type, else a live remote one of the right type", so other actors under the name, in
//! this process or on other nodes, are passed over; `resolve_dyn_of` keeps the same promise for
//! by-name callers that know the type's name (Python's `Class.resolve`).

use std::time::Duration;

use pulsing::prelude::*;
use pulsing_tests::{bank_a, client, eventually, Clerk, NodeProcess, Worker};

const NODE: &str = env!("CARGO_BIN_EXE_test_node");
const WAIT: Duration = Duration::from_secs(20);

/// Waits until `system` knows `count` instances of `name` (here and on other nodes).
async fn known(system: &ActorSystem, name: &str, count: usize) {
    eventually(
        WAIT,
        &format!("{count} instances of {name:?} are known"),
        || async { system.instances(name).len() == count },
    )
    .await;
}

#[tokio::test]
async fn each_type_is_resolved_to_its_own_instance_across_nodes() {
    let a = NodeProcess::start(NODE, &["--name", "a", "--spawn", "dup"]);
    let _b = NodeProcess::start(
        NODE,
        &["--name", "b", "--seed", &a.addr, "--ledger-a", "dup"],
    );
    let c = client(&a.addr).await;
    known(&c, "dup", 2).await;
    for _ in 0..10 {
        let worker = Worker::resolve(&c, "dup").await.unwrap();
        assert_eq!(
            worker.process("x".into()).await.unwrap(),
            "x processed by a"
        );
        let ledger = bank_a::Ledger::resolve(&c, "dup").await.unwrap();
        assert_eq!(ledger.balance().await.unwrap(), 21);
        let worker = c.resolve_dyn_of("dup", "Worker").await.unwrap();
        assert_eq!(
            worker.call("process", Args::new().arg("y")).await.unwrap(),
            Value::from("y processed by a")
        );
        let ledger = c.resolve_dyn_of("dup", "Ledger").await.unwrap();
        assert_eq!(
            ledger.call("balance", Args::new()).await.unwrap(),
            Value::Int(21)
        );
    }
    // A type nobody has under the name: a mismatch, naming what is there, at once.
    let err = Clerk::resolve(&c, "dup").await.unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err:?}");
    let err = c.resolve_dyn_of("dup", "Clerk").await.unwrap_err();
    assert!(
        matches!(&err, Error::TypeMismatch { expected, found, .. }
            if expected == "Clerk" && (found == "Worker" || found == "Ledger")),
        "{err:?}"
    );
    let err = c
        .resolve_dyn_of_wait("dup", "Clerk", WAIT)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err:?}");
    c.shutdown().await;
}

#[tokio::test]
async fn a_local_actor_of_another_type_does_not_hide_a_remote_one_of_the_right_type() {
    let a = NodeProcess::start(NODE, &["--name", "a", "--spawn", "dup"]);
    let c = client(&a.addr).await;
    let clerk = Clerk::spawn_named(&c, "dup", Clerk).await.unwrap();
    known(&c, "dup", 2).await;
    for _ in 0..10 {
        let worker = Worker::resolve(&c, "dup").await.unwrap();
        assert!(!worker.is_local());
        assert_eq!(
            worker.process("x".into()).await.unwrap(),
            "x processed by a"
        );
        let worker = Worker::resolve_wait(&c, "dup", WAIT).await.unwrap();
        assert!(!worker.is_local());
        let worker = c.resolve_dyn_of("dup", "Worker").await.unwrap();
        assert_eq!(
            worker.call("process", Args::new().arg("y")).await.unwrap(),
            Value::from("y processed by a")
        );
        // The local one is still preferred for its own type, and by untyped resolves.
        assert!(Clerk::resolve(&c, "dup").await.unwrap().is_local());
        assert_eq!(
            c.resolve_dyn_of("dup", "Clerk").await.unwrap().id(),
            clerk.id()
        );
        assert_eq!(c.resolve_dyn("dup").await.unwrap().id(), clerk.id());
    }
    c.shutdown().await;
}

#[tokio::test]
async fn without_a_cluster_a_local_mismatch_is_still_a_mismatch() {
    let system = ActorSystem::builder().build().await.unwrap();
    Clerk::spawn_named(&system, "dup", Clerk).await.unwrap();
    let err = Worker::resolve(&system, "dup").await.unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err:?}");
    let err = system.resolve_dyn_of("dup", "Worker").await.unwrap_err();
    assert!(
        matches!(&err, Error::TypeMismatch { expected, found, .. }
            if expected == "Worker" && found == "Clerk"),
        "{err:?}"
    );
    system.shutdown().await;
}
