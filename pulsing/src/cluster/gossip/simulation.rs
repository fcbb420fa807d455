//! Gossip at scale, simulated: hundreds of [`ChitchatGossip`] nodes in one process on chitchat's
//! in-memory channel network, under tokio's paused (virtual) clock, so a round takes no real
//! time and nothing depends on the machine's speed. Prints, for growing cluster sizes, how many
//! rounds membership and a new name need to reach every node and what each node sends per
//! second. (Chitchat picks gossip partners with its own unseeded RNG, so the round counts vary
//! slightly from run to run; the bounds asserted are far from that noise.)

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chitchat::transport::{ChannelTransport, Socket, Transport};
use chitchat::{ChitchatMessage, Serializable};

use super::{ChitchatGossip, Current, Gossip, GossipConfig};
use crate::wire::NodeId;

/// The in-memory network as one node sees it: what it receives passes the guard, as over a
/// real node's connections. A `BadCluster` message panics the receiving gossip task (an
/// injected bug for the restart test).
struct Guarded {
    network: ChannelTransport,
    current: Current,
}

#[async_trait]
impl Transport for Guarded {
    async fn open(&self, addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        Ok(Box::new(GuardedSocket {
            inner: self.network.open(addr).await?,
            current: self.current.clone(),
        }))
    }
}

struct GuardedSocket {
    inner: Box<dyn Socket>,
    current: Current,
}

#[async_trait]
impl Socket for GuardedSocket {
    async fn send(&mut self, to: SocketAddr, message: ChitchatMessage) -> anyhow::Result<()> {
        self.inner.send(to, message).await
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (from, message) = self.inner.recv().await?;
            // An injected bug, for the restart test: nodes of one cluster never send this.
            assert!(
                !matches!(message, ChitchatMessage::BadCluster),
                "injected panic in the gossip task"
            );
            if let Some(message) = self.current.admit(from, &message.serialize_to_vec()).await {
                return Ok((from, message));
            }
        }
    }
}

/// Starts simulated node `i` on `network`, without the guard (the scale runs measure chitchat
/// alone; screening every message in an unoptimized test build would dominate their time).
async fn node(network: &ChannelTransport, i: usize, seeds: Vec<String>) -> ChitchatGossip {
    let config = GossipConfig {
        interval: INTERVAL,
        ..GossipConfig::default()
    };
    let transport = Arc::new(network.clone());
    ChitchatGossip::start(
        NodeId(i as u64 + 1),
        addr(i),
        seeds,
        &config,
        transport,
        Current::default(),
    )
    .await
    .expect("a simulated node starts")
}

/// Starts simulated node `i` on `network`; also gives what its guard reads.
async fn node_with_state(
    network: &ChannelTransport,
    i: usize,
    seeds: Vec<String>,
) -> (ChitchatGossip, Current) {
    let config = GossipConfig {
        interval: INTERVAL,
        ..GossipConfig::default()
    };
    let current = Current::default();
    let transport = Arc::new(Guarded {
        network: network.clone(),
        current: current.clone(),
    });
    let gossip = ChitchatGossip::start(
        NodeId(i as u64 + 1),
        addr(i),
        seeds,
        &config,
        transport,
        current.clone(),
    )
    .await
    .expect("a simulated node starts");
    (gossip, current)
}

const INTERVAL: Duration = Duration::from_secs(1);

fn addr(i: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1),
        7000,
    ))
}

/// Rounds until `done` holds for every node's view (at most `limit`).
async fn rounds_until(
    nodes: &[ChitchatGossip],
    limit: u32,
    done: impl Fn(&super::Members) -> bool,
) -> u32 {
    for round in 1..=limit {
        tokio::time::sleep(INTERVAL).await;
        if nodes.iter().all(|n| done(&n.members().borrow())) {
            return round;
        }
    }
    panic!("not converged within {limit} rounds");
}

struct Outcome {
    join_rounds: u32,
    name_rounds: u32,
    bytes_per_node_per_sec: f64,
}

async fn simulate(n: usize) -> Outcome {
    let network = ChannelTransport::default();
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let seeds = if i == 0 {
            Vec::new()
        } else {
            vec![addr(0).to_string()]
        };
        nodes.push(node(&network, i, seeds).await);
    }
    let limit = 20 + 4 * (n as f64).log2().ceil() as u32;
    let join_rounds = rounds_until(&nodes, limit, |m| m.len() == n).await;

    nodes[n / 2].set("name:probe".into(), "1:Probe".into());
    let name_rounds = rounds_until(&nodes, limit, |m| {
        m.iter()
            .any(|member| member.keys.contains_key("name:probe"))
    })
    .await;

    // Steady state: what the cluster sends per round once everything is known.
    let steady = 10;
    let before = network.statistics().num_bytes_total;
    tokio::time::sleep(INTERVAL * steady).await;
    let sent = network.statistics().num_bytes_total - before;
    let bytes_per_node_per_sec = sent as f64 / n as f64 / (INTERVAL * steady).as_secs_f64();
    // A retraction travels the same way, and stays retracted.
    nodes[n / 2].delete("name:probe".into());
    rounds_until(&nodes, limit, |m| {
        m.iter()
            .all(|member| !member.keys.contains_key("name:probe"))
    })
    .await;
    drop(nodes);
    Outcome {
        join_rounds,
        name_rounds,
        bytes_per_node_per_sec,
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_name_reaches_every_node_in_logarithmic_rounds() {
    println!("nodes  rounds-to-join  rounds-for-a-new-name  bytes/s sent per node (1 s rounds)");
    for n in [10, 50, 100, 500] {
        let o = simulate(n).await;
        println!(
            "{n:>5}  {:>14}  {:>21}  {:>10.0}",
            o.join_rounds, o.name_rounds, o.bytes_per_node_per_sec
        );
        // Epidemic spread: a few rounds per doubling of the cluster, not a round per node.
        let log = (n as f64).log2();
        assert!(
            f64::from(o.name_rounds) <= 2.0 * log + 4.0,
            "{n} nodes: {} rounds for a name",
            o.name_rounds
        );
    }
}

/// Regression test for issue #12: a node that learnt of more members than chitchat can list in
/// one datagram panicked its gossip task on the next `Syn` (`assert!(mtu >= 100)` at ≈1,148
/// IPv4 or ≈949 IPv6 members, live or dead). Now it tracks at most `MAX_MEMBERS` (IPv6, the
/// largest entries, here) and keeps gossiping: at that size it still answers, and a new name
/// still reaches every node.
#[tokio::test(start_paused = true)]
async fn a_node_at_the_maximum_cluster_size_keeps_gossiping() {
    use super::guard::craft;
    use super::MAX_MEMBERS;
    use chitchat::{ChitchatId, Deserializable};
    use std::net::{IpAddr, Ipv6Addr};

    let network = ChannelTransport::default();
    let n = 4;
    let mut nodes = Vec::new();
    let mut first = None;
    for i in 0..n {
        let seeds = if i == 0 {
            Vec::new()
        } else {
            vec![addr(0).to_string()]
        };
        let (node, current) = node_with_state(&network, i, seeds).await;
        first.get_or_insert(current);
        nodes.push(node);
    }
    rounds_until(&nodes, 30, |m| m.len() == n).await;

    // A peer tells node 0 about 1,500 more members, 500 per `Syn`.
    let outsider_addr = addr(n + 1);
    let mut outsider = network.open(outsider_addr).await.unwrap();
    let fake: Vec<craft::DigestEntry> = (0..1500u64)
        .map(|k| {
            let ip = IpAddr::V6(Ipv6Addr::new(
                0xfd00,
                0,
                0,
                0,
                0,
                0,
                (k >> 16) as u16,
                k as u16,
            ));
            let id = ChitchatId::new(format!("{:016x}", (1u64 << 60) | k), 1, (ip, 7000).into());
            (id, 1, 0, 0)
        })
        .collect();
    for chunk in fake.chunks(500) {
        let syn = ChitchatMessage::deserialize(&mut &craft::syn(chunk)[..]).unwrap();
        outsider.send(addr(0), syn).await.unwrap();
        let answer = loop {
            let (from, message) = tokio::time::timeout(INTERVAL * 10, outsider.recv())
                .await
                .expect("node 0 still answers a Syn")
                .unwrap();
            if from == addr(0) {
                break message;
            }
        };
        assert!(
            matches!(answer, ChitchatMessage::SynAck { .. }),
            "{answer:?}"
        );
    }
    let known = {
        let current = first.unwrap();
        let chitchat = current.0.lock().unwrap().clone().unwrap();
        let known = chitchat.lock().await.node_states().len();
        known
    };
    assert_eq!(known, MAX_MEMBERS, "node 0 tracks the maximum, no more");

    // Gossip still works at that size.
    nodes[n - 1].set("name:after".into(), "1:Probe".into());
    rounds_until(&nodes, 40, |m| {
        m.iter()
            .any(|member| member.keys.contains_key("name:after"))
    })
    .await;
}

/// A gossip task that panics is restarted (under a new generation, with the node's keys), so
/// the node stays in the cluster and what it publishes afterwards still spreads.
#[tokio::test(start_paused = true)]
async fn a_gossip_task_that_panics_is_restarted_with_the_nodes_keys() {
    let network = ChannelTransport::default();
    let n = 3;
    let mut nodes = Vec::new();
    for i in 0..n {
        let seeds = if i == 0 {
            Vec::new()
        } else {
            vec![addr(0).to_string()]
        };
        nodes.push(node_with_state(&network, i, seeds).await.0);
    }
    nodes[0].set("name:before".into(), "1:Probe".into());
    let has = |key: &'static str| {
        move |m: &super::Members| {
            m.len() == n
                && m.iter()
                    .any(|member| member.node == NodeId(1) && member.keys.contains_key(key))
        }
    };
    rounds_until(&nodes, 30, has("name:before")).await;

    let mut outsider = network.open(addr(n + 1)).await.unwrap();
    outsider
        .send(addr(0), ChitchatMessage::BadCluster)
        .await
        .unwrap();
    nodes[0].set("name:after".into(), "2:Probe".into());
    rounds_until(&nodes, 40, has("name:after")).await;
    assert!(
        nodes
            .iter()
            .all(|node| has("name:before")(&node.members().borrow())),
        "the restarted node republished its keys"
    );
}
