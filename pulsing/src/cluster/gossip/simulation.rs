//! Gossip at scale, simulated: hundreds of [`ChitchatGossip`] nodes in one process on chitchat's
//! in-memory channel network, under tokio's paused (virtual) clock, so a round takes no real
//! time and nothing depends on the machine's speed. Prints, for growing cluster sizes, how many
//! rounds membership and a new name need to reach every node and what each node sends per
//! second. (Chitchat picks gossip partners with its own unseeded RNG, so the round counts vary
//! slightly from run to run; the bounds asserted are far from that noise.)

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use chitchat::transport::ChannelTransport;

use super::{ChitchatGossip, Gossip, GossipConfig};
use crate::wire::NodeId;

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
    let config = GossipConfig {
        interval: INTERVAL,
        ..GossipConfig::default()
    };
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let seeds = if i == 0 {
            Vec::new()
        } else {
            vec![addr(0).to_string()]
        };
        let node = ChitchatGossip::start(NodeId(i as u64 + 1), addr(i), seeds, &config, &network)
            .await
            .expect("a simulated node starts");
        nodes.push(node);
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
