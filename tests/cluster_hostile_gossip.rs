//! Peers that send hostile gossip (issue #12): a logged-in raw client sends crafted membership
//! messages to a real `test_node`, then the node is checked from the outside only — it still
//! answers calls, still learns of a new member, and its memory stayed bounded.

use std::net::SocketAddrV4;
use std::time::Duration;

use pulsing::prelude::*;
use pulsing::wire::{Frame, NodeId, Payload};
use pulsing_tests::gossip::{self, MemberId, Op};
use pulsing_tests::raw::{request, Login};
use pulsing_tests::{eventually, NodeProcess};

const NODE: &str = env!("CARGO_BIN_EXE_test_node");

fn fresh_id() -> NodeId {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    NodeId(u64::from_le_bytes(b))
}

async fn login(addr: &str) -> Login {
    Login::dial(addr, None, fresh_id(), "127.0.0.1:1", false)
        .await
        .expect("logs in")
}

/// Calls `probe.method()` by name over `login` and returns the answer.
async fn ask(login: &mut Login, id: u64, probe: &str, method: &str) -> Value {
    let args = if method == "process" {
        Args::new().arg("x")
    } else {
        Args::new()
    };
    login.send(&[request(id, probe, method, args)]).await;
    match login.response(id).await.expect("an answer") {
        Frame::Response {
            result: Ok(Payload::Value(v)),
            ..
        } => v,
        other => panic!("expected an answer, got {other:?}"),
    }
}

/// Waits until the node of `probe` (asked through `login`) sees `member` as a member.
async fn sees(login: &mut Login, probe: &str, member: &Value) {
    let login = tokio::sync::Mutex::new(login);
    let next = std::sync::atomic::AtomicU64::new(1000);
    eventually(
        Duration::from_secs(20),
        &format!("{probe} sees {member:?} join"),
        || async {
            let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut login = login.lock().await;
            matches!(ask(&mut login, id, probe, "members").await, Value::List(m) if m.contains(member))
        },
    )
    .await;
}

#[tokio::test]
async fn a_delta_whose_max_version_is_below_its_keys_does_not_stop_gossip() {
    let a = NodeProcess::start(NODE, &["--name", "a"]);
    let mut attacker = login(&a.addr).await;
    let fake = MemberId {
        node: format!("{:016x}", fresh_id().0),
        generation: 1,
        addr: SocketAddrV4::new([127, 0, 0, 1].into(), 1),
    };
    // Make the node know the fake member, then send it a delta for that member whose declared
    // max version (5) is below its key's version (10).
    attacker
        .send(&[Frame::Gossip(gossip::syn(&[(&fake, 1, 0)]))])
        .await;
    attacker
        .send(&[Frame::Gossip(gossip::syn_ack(
            &[(&fake, 2, 10)],
            &[
                Op::Member(&fake, 0, 0),
                Op::Key("name:forged", "1:Worker", 10),
                Op::MaxVersion(5),
            ],
        ))])
        .await;
    // The node still takes part in membership: a node that joins later is seen by it.
    let b = NodeProcess::start(NODE, &["--name", "b", "--seed", &a.addr]);
    let mut at_b = login(&b.addr).await;
    let b_id = ask(&mut at_b, 1, "probe-b", "node_id").await;
    sees(&mut attacker, "probe-a", &b_id).await;
}
#[tokio::test]
async fn a_gossip_decompression_bomb_does_not_inflate_the_node() {
    let a = NodeProcess::start(NODE, &["--name", "a", "--spawn", "worker"]);
    let mut attacker = login(&a.addr).await;
    let before = a.peak_rss_kib();
    // ≈0.18 MB that chitchat alone would inflate to ≈500 MiB; three times.
    let bomb = gossip::bomb(180_000);
    for _ in 0..3 {
        attacker.send(&[Frame::Gossip(bomb.clone())]).await;
    }
    // Still serving, and still gossiping: a node that joins later is seen (gossip messages are
    // handled in order, so by then the bombs were read).
    assert_eq!(
        ask(&mut attacker, 1, "worker", "process").await,
        Value::Str("x processed by a".into())
    );
    let b = NodeProcess::start(NODE, &["--name", "b", "--seed", &a.addr]);
    let mut at_b = login(&b.addr).await;
    let b_id = ask(&mut at_b, 1, "probe-b", "node_id").await;
    sees(&mut attacker, "probe-a", &b_id).await;
    let grown = a.peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 64 << 10,
        "the node's peak memory grew by {grown} KiB while reading gossip bombs"
    );
}
