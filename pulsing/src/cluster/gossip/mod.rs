//! Gossip: how the members of a cluster learn about each other and about what each publishes.
//!
//! The node sees gossip only through the small [`Gossip`] trait: publish or retract one of its
//! own keys, watch the live members with their keys, and leave. [`ChitchatGossip`] implements it
//! with the `chitchat` crate (scuttlebutt anti-entropy of per-node key/values, phi-accrual
//! failure detection, tombstones); ARCHITECTURE.md says why. Chitchat talks through a
//! `chitchat::transport::Transport`: in a node that is [`Carrier`], which sends its messages as
//! `Frame::Gossip` over the node's WebSocket connections; the simulation tests use chitchat's
//! in-memory channel transport under virtual time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chitchat::transport::Socket;
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, ChitchatMessage, Deserializable,
    FailureDetectorConfig, NodeState, Serializable,
};
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::wire::NodeId;

/// A live member of the cluster and the keys it publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberState {
    pub(crate) node: NodeId,
    pub(crate) addr: SocketAddr,
    pub(crate) keys: BTreeMap<String, String>,
}

/// The live members (this node included), ordered by node id.
pub(crate) type Members = Arc<Vec<MemberState>>;

/// What the node needs from a gossip protocol.
pub(crate) trait Gossip: Send + Sync + 'static {
    /// Publishes (or updates) one of this node's keys.
    fn set(&self, key: String, value: String);
    /// Retracts one of this node's keys. The retraction is versioned: no merge can bring the
    /// old value back.
    fn delete(&self, key: String);
    /// The live members, updated after every gossip round.
    fn members(&self) -> watch::Receiver<Members>;
    /// Tells the cluster this node is leaving, pushes that to the live members, and stops.
    fn leave(&self) -> BoxFuture<'static, ()>;
}

/// Gossip timing.
#[derive(Clone, Debug)]
pub(crate) struct GossipConfig {
    /// How often each node gossips with a few others.
    pub(crate) interval: Duration,
    /// Phi-accrual threshold: a member is dead once the time since its last heartbeat exceeds
    /// this many mean heartbeat intervals.
    pub(crate) phi_threshold: f64,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            interval: Duration::from_millis(250),
            phi_threshold: 12.0,
        }
    }
}

/// The key a leaving node sets: peers stop counting it as live as soon as they hear it.
const LEAVING: &str = "leaving";
/// How many members a leaving node tells directly (its connections get a `Leaving` frame too).
const LEAVE_FANOUT: usize = 16;
/// Every cluster shares one chitchat cluster id; the handshake already keeps strangers out.
const CLUSTER_ID: &str = "pulsing";

/// One of this node's keys to publish or retract, applied in order.
enum Op {
    Set(String, String),
    Delete(String),
}

/// [`Gossip`] over the chitchat crate.
pub(crate) struct ChitchatGossip {
    handle: Mutex<Option<ChitchatHandle>>,
    ops: mpsc::UnboundedSender<Op>,
    members: watch::Receiver<Members>,
}

impl std::fmt::Debug for ChitchatGossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChitchatGossip")
            .field("members", &self.members.borrow().len())
            .finish_non_exhaustive()
    }
}

impl ChitchatGossip {
    /// Starts gossiping as `node` at `addr`, joining through `seeds`, over `transport`.
    pub(crate) async fn start(
        node: NodeId,
        addr: SocketAddr,
        seeds: Vec<String>,
        config: &GossipConfig,
        transport: &dyn chitchat::transport::Transport,
    ) -> Result<ChitchatGossip> {
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(node.to_string(), generation, addr),
            cluster_id: CLUSTER_ID.to_owned(),
            gossip_interval: config.interval,
            listen_addr: addr,
            seed_nodes: seeds,
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: config.phi_threshold,
                sampling_window_size: 100,
                // A gap longer than this is an outage, not a sample of the normal rhythm.
                max_interval: config.interval * 8,
                // Until samples arrive, assume heartbeats come every round.
                initial_interval: config.interval,
                // How long a dead member's state is kept (so late gossip cannot revive it).
                dead_node_grace_period: Duration::from_secs(3600),
            },
            // How long retracted keys are remembered as tombstones.
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: Some(Box::new(|state: &NodeState| {
                state.get(LEAVING).is_none()
            })),
        };
        let handle = spawn_chitchat(chitchat_config, Vec::new(), transport)
            .await
            .map_err(|e| Error::Unreachable {
                addr: addr.to_string(),
                reason: format!("cannot start gossip: {e}"),
            })?;
        let chitchat = handle.chitchat();
        let (ops, mut op_rx) = mpsc::unbounded_channel::<Op>();
        let applier = chitchat.clone();
        tokio::spawn(async move {
            while let Some(op) = op_rx.recv().await {
                let mut chitchat = applier.lock().await;
                let me = chitchat.self_node_state();
                match op {
                    Op::Set(key, value) => me.set(key, value),
                    Op::Delete(key) => me.delete(&key),
                }
            }
        });
        let mut live = chitchat.lock().await.live_nodes_watcher();
        let (members_tx, members) = watch::channel(Members::default());
        tokio::spawn(async move {
            loop {
                let view = to_members(&live.borrow_and_update());
                members_tx.send_if_modified(|old| {
                    let changed = **old != *view;
                    if changed {
                        *old = view.clone();
                    }
                    changed
                });
                if live.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(ChitchatGossip {
            handle: Mutex::new(Some(handle)),
            ops,
            members,
        })
    }
}

impl Drop for ChitchatGossip {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.get_mut().unwrap_or_else(|e| e.into_inner()) {
            handle.abort();
        }
    }
}

fn to_members(live: &BTreeMap<ChitchatId, NodeState>) -> Members {
    Arc::new(
        live.iter()
            .filter_map(|(id, state)| {
                Some(MemberState {
                    node: NodeId(u64::from_str_radix(&id.node_id, 16).ok()?),
                    addr: id.gossip_advertise_addr,
                    keys: state
                        .key_values()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                })
            })
            .collect(),
    )
}

impl Gossip for ChitchatGossip {
    fn set(&self, key: String, value: String) {
        let _ = self.ops.send(Op::Set(key, value));
    }

    fn delete(&self, key: String) {
        let _ = self.ops.send(Op::Delete(key));
    }

    fn members(&self) -> watch::Receiver<Members> {
        self.members.clone()
    }

    fn leave(&self) -> BoxFuture<'static, ()> {
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        let me = self.members.borrow().clone();
        Box::pin(async move {
            let Some(handle) = handle else { return };
            let self_id = handle.chitchat_id().clone();
            {
                let chitchat = handle.chitchat();
                let mut chitchat = chitchat.lock().await;
                chitchat.self_node_state().set(LEAVING, "1");
            }
            // A syn to some live members (gossip carries it to the rest); their answer lets us
            // push the `leaving` key in the third message of the exchange, so wait about one
            // round trip for it.
            for member in me
                .iter()
                .filter(|m| m.addr != self_id.gossip_advertise_addr)
                .take(LEAVE_FANOUT)
            {
                let _ = handle.gossip(member.addr);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = handle.shutdown().await;
        })
    }
}

/// Gossip messages received by the node: (sender's advertised address, chitchat bytes).
pub(crate) type GossipInbox = mpsc::Receiver<(SocketAddr, Vec<u8>)>;

/// Carries chitchat's messages over the node's connections as `Frame::Gossip`.
///
/// Sending never waits: with no live connection to the peer it dials in the background and the
/// message follows once connected (or is dropped, like a lost datagram; gossip repeats itself).
pub(crate) struct Carrier {
    transport: Weak<crate::transport::Transport>,
    inbox: Mutex<Option<GossipInbox>>,
}

impl std::fmt::Debug for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carrier").finish_non_exhaustive()
    }
}

impl Carrier {
    /// A carrier over `transport`, receiving what the node puts into `inbox`.
    pub(crate) fn new(transport: Weak<crate::transport::Transport>, inbox: GossipInbox) -> Carrier {
        Carrier {
            transport,
            inbox: Mutex::new(Some(inbox)),
        }
    }
}

#[async_trait]
impl chitchat::transport::Transport for Carrier {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inbox = self
            .inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| anyhow::anyhow!("the gossip carrier is already open"))?;
        Ok(Box::new(CarrierSocket {
            transport: self.transport.clone(),
            inbox,
        }))
    }
}

struct CarrierSocket {
    transport: Weak<crate::transport::Transport>,
    inbox: GossipInbox,
}

#[async_trait]
impl Socket for CarrierSocket {
    async fn send(&mut self, to: SocketAddr, message: ChitchatMessage) -> anyhow::Result<()> {
        let transport = self
            .transport
            .upgrade()
            .ok_or_else(|| anyhow::anyhow!("the node has stopped"))?;
        transport.gossip_to(to, message.serialize_to_vec());
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (from_addr, bytes) = self
                .inbox
                .recv()
                .await
                .ok_or_else(|| anyhow::anyhow!("the node has stopped"))?;
            match ChitchatMessage::deserialize(&mut &bytes[..]) {
                Ok(message) => return Ok((from_addr, message)),
                Err(e) => {
                    tracing::warn!(%from_addr, error = %e, "dropped a malformed gossip message")
                }
            }
        }
    }
}

#[cfg(test)]
mod simulation;

#[cfg(test)]
mod tests {
    use super::*;
    use chitchat::transport::Transport as _;

    #[tokio::test]
    async fn malformed_gossip_is_dropped_and_the_next_message_still_arrives() {
        let (tx, rx) = mpsc::channel(8);
        let carrier = Carrier::new(Weak::new(), rx);
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut socket = carrier.open(from).await.unwrap();
        assert!(carrier.open(from).await.is_err(), "one socket per carrier");
        let good = ChitchatMessage::BadCluster.serialize_to_vec();
        tx.send((from, vec![0xff; 7])).await.unwrap();
        tx.send((from, good[..good.len() - 1].to_vec()))
            .await
            .unwrap();
        tx.send((from, good.clone())).await.unwrap();
        let (sender, message) = socket.recv().await.unwrap();
        assert_eq!((sender, message), (from, ChitchatMessage::BadCluster));
        drop(tx);
        assert!(socket.recv().await.is_err(), "a closed inbox ends the loop");
        assert!(
            socket
                .send(from, ChitchatMessage::BadCluster)
                .await
                .is_err(),
            "sending after the node stopped is an error, not a panic"
        );
    }
}
