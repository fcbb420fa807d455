//! A node that was taken for dead and comes back (a paused process thawed; a healed partition
//! looks the same from the other side): it is the same process, its actors never stopped, so it
//! rejoins with its names, and refs resolved before the pause work again. (A ref whose node was
//! replaced by a new process, a fresh node id, fails with `PeerLost` until resolved again: that
//! case is `tests/cluster_calls.rs`.) See docs/cluster.md, "Partition and heal".

use std::time::Duration;

use pulsing::prelude::*;
use pulsing_tests::{client, eventually, NodeProcess, Worker};

const NODE: &str = env!("CARGO_BIN_EXE_test_node");
/// Generous upper bound for gossip on a loaded 2-core machine.
const CONVERGE: Duration = Duration::from_secs(20);

fn listed(system: &ActorSystem, name: &str, node: &str) -> bool {
    system
        .instances(name)
        .iter()
        .any(|i| i.node.to_string() == node)
}

#[tokio::test]
async fn a_thawed_node_comes_back_and_old_refs_work_again() {
    let b = NodeProcess::start(NODE, &["--name", "b", "--spawn", "paused"]);
    let system = client(&b.addr).await;
    let victim = Worker::resolve_wait(&system, "paused", CONVERGE)
        .await
        .unwrap();
    assert_eq!(
        victim.process("x".into()).await.unwrap(),
        "x processed by b"
    );
    let node = system.instances("paused")[0].node.to_string();

    b.freeze();
    // Past detection: gossip drops it with its names, the connection ends (silent peer), and
    // calls fail with a typed error, at once, without dialing the hung host.
    eventually(CONVERGE, "the frozen node is dead", || async {
        !listed(&system, "paused", &node)
    })
    .await;
    eventually(CONVERGE, "calls fail with PeerLost", || async {
        matches!(
            victim.process("y".into()).await,
            Err(Error::PeerLost { .. })
        )
    })
    .await;
    assert!(!victim.is_alive());
    let started = std::time::Instant::now();
    let err = victim.process("z".into()).await.unwrap_err();
    assert!(matches!(err, Error::PeerLost { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a call to a dead node waited {:?} (it must not dial a hung host)",
        started.elapsed()
    );

    b.thaw();
    // The same process is heard from again: back with its names, and the old ref works.
    eventually(CONVERGE, "the thawed node is listed again", || async {
        listed(&system, "paused", &node)
    })
    .await;
    assert!(victim.is_alive());
    assert_eq!(
        victim.process("w".into()).await.unwrap(),
        "w processed by b"
    );
    // A fresh resolve reaches the same actor.
    let fresh = Worker::resolve(&system, "paused").await.unwrap();
    assert_eq!(fresh.process("v".into()).await.unwrap(), "v processed by b");
    system.shutdown().await;
}
