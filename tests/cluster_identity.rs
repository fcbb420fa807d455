//! Which actor a remote handle reaches (issue #12 items 7 and 9): a handle addresses one actor
//! instance, found by name but then known by id, so a respawn under the same name is not
//! reached by an old handle; and a typed handle checks the actor's type identity (full path and
//! method signatures), so a same-named type of another module never decodes as this one.

use std::time::Duration;

use pulsing::prelude::*;
use pulsing::wire::{Frame, NodeId, Payload};
use pulsing_tests::raw::Login;
use pulsing_tests::{bank_a, bank_b, client, eventually, NodeProcess, Probe, Worker};

const NODE: &str = env!("CARGO_BIN_EXE_test_node");
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn an_old_remote_handle_gets_stopped_after_a_respawn_under_its_name() {
    let a = NodeProcess::start(NODE, &["--name", "a", "--spawn", "w"]);
    let c = client(&a.addr).await;
    let old = Worker::resolve_wait(&c, "w", WAIT).await.unwrap();
    let old_dyn = c.resolve_dyn("w").await.unwrap();
    assert_eq!(old.process("x".into()).await.unwrap(), "x processed by a");
    assert!(old.is_alive());
    let probe = Probe::resolve_wait(&c, "probe-a", WAIT).await.unwrap();

    old.stop();
    old.stopped().await;
    let new_id = probe.spawn_worker("w".into()).await.unwrap().unwrap();
    assert_ne!(new_id, old.id());

    // The old handles reach no one: `Stopped`, as a local handle would, typed or by name.
    let err = old.process("x".into()).await.unwrap_err();
    assert!(matches!(err, Error::Stopped { .. }), "{err:?}");
    let err = old_dyn
        .call("process", Args::new().arg("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Stopped { .. }), "{err:?}");
    assert!(!old.is_alive());
    // A fresh resolve reaches the new actor (once gossip has it).
    eventually(WAIT, "the respawned worker is resolved", || async {
        Worker::resolve(&c, "w")
            .await
            .is_ok_and(|w| w.id() == new_id)
    })
    .await;
    let fresh = Worker::resolve(&c, "w").await.unwrap();
    assert_eq!(
        fresh.process("x".into()).await.unwrap(),
        "x processed by respawned"
    );
    assert!(fresh.is_alive());
    c.shutdown().await;
}

#[tokio::test]
async fn a_same_named_type_from_another_module_is_refused_with_both_identities() {
    let a = NodeProcess::start(NODE, &["--name", "a", "--ledger-a", "ledger"]);
    let b = NodeProcess::start(
        NODE,
        &["--name", "b", "--seed", &a.addr, "--ledger-b", "ledger-b"],
    );
    let c = client(&a.addr).await;
    let (ia, ib) = (
        <bank_a::Ledger as Actor>::interface(),
        <bank_b::Ledger as Actor>::interface(),
    );
    assert_eq!(ia.actor, ib.actor, "both are called Ledger");
    assert_ne!(ia.key, ib.key);

    let right = bank_a::Ledger::resolve_wait(&c, "ledger", WAIT)
        .await
        .unwrap();
    assert_eq!(right.balance().await.unwrap(), 21);
    let other = bank_b::Ledger::resolve_wait(&c, "ledger-b", WAIT)
        .await
        .unwrap();
    assert_eq!(other.balance().await.unwrap(), "twenty-one");

    // On resolve: refused, naming both full identities.
    let err = bank_b::Ledger::resolve(&c, "ledger").await.unwrap_err();
    let Error::TypeMismatch {
        expected, found, ..
    } = &err
    else {
        panic!("expected a type mismatch, got {err:?}")
    };
    assert_eq!(expected, &ib.identity());
    assert_eq!(found, &ia.identity());
    assert!(
        err.to_string().contains("pulsing_tests::bank_a::Ledger#"),
        "{err}"
    );
    assert!(
        err.to_string().contains("pulsing_tests::bank_b::Ledger#"),
        "{err}"
    );

    // On every typed call: a request that expects the other type's key is refused by the node.
    let mut raw = Login::dial(&a.addr, None, NodeId(7), "127.0.0.1:1", false)
        .await
        .unwrap();
    raw.send(&[Frame::Request {
        id: 1,
        actor: "ledger".into(),
        actor_id: None,
        expect_type: Some(ib.key.into()),
        method: "balance".into(),
        args: Payload::Typed(pulsing::wire::SharedBytes::from(&[][..])),
        credit: None,
        deadline_ms: None,
    }])
    .await;
    match raw.response(1).await.unwrap() {
        Frame::Response {
            result: Err(Error::TypeMismatch { found, .. }),
            ..
        } => assert_eq!(found, ia.identity()),
        other => panic!("expected a type mismatch, got {other:?}"),
    }
    drop(b);
    c.shutdown().await;
}
