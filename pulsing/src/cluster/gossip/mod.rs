//! Gossip: how the members of a cluster learn about each other and about what each publishes.
//!
//! The node sees gossip only through the small [`Gossip`] trait: publish or retract one of its
//! own keys, watch the live members with their keys, and leave. [`ChitchatGossip`] implements it
//! with the `chitchat` crate (scuttlebutt anti-entropy of per-node key/values, phi-accrual
//! failure detection, tombstones); docs/cluster.md says why. Chitchat talks through a
//! `chitchat::transport::Transport`: in a node that is [`Carrier`], which sends its messages as
//! `Frame::Gossip` over the node's WebSocket connections; the simulation tests use chitchat's
//! in-memory channel transport under virtual time.
//!
//! Chitchat trusts its input, so every received message first passes the [`guard`] (size and
//! inflation caps, no state about our own id, no delta that trips chitchat's asserts, at most
//! [`MAX_MEMBERS`] members), and a supervisor task restarts chitchat (logged) if its task ever
//! ends unasked. Dead members are kept for [`DEAD_MEMBER_GRACE`] (10 minutes).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chitchat::transport::Socket;
use chitchat::{
    spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, ChitchatMessage,
    Deserializable, FailureDetectorConfig, NodeState, Serializable,
};
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};

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
/// How long a dead member's state is kept (its id cannot come back meanwhile); it stops being
/// gossiped after half of it. Every restart of a process is a new member, so this bounds how
/// many dead members a cluster with rolling restarts carries (see [`MAX_MEMBERS`]).
pub(crate) const DEAD_MEMBER_GRACE: Duration = Duration::from_secs(600);

pub(crate) use guard::MAX_MEMBERS;
pub(crate) use guard::MAX_MESSAGE as MAX_GOSSIP_MESSAGE;

/// One of this node's keys to publish or retract, applied in order; or leave.
enum Op {
    Set(String, String),
    Delete(String),
    Leave(oneshot::Sender<()>),
}

/// The running chitchat instance, for the guard (which reads its state before it takes a
/// message). Empty until the instance starts, and between a crash and its restart.
#[derive(Clone, Default)]
pub(crate) struct Current(Arc<Mutex<Option<Arc<tokio::sync::Mutex<Chitchat>>>>>);

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current").finish_non_exhaustive()
    }
}

impl Current {
    fn set(&self, chitchat: Option<Arc<tokio::sync::Mutex<Chitchat>>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = chitchat;
    }

    /// Screens a message from `from` (see [`guard`]) and decodes what may reach chitchat.
    pub(crate) async fn admit(&self, from: SocketAddr, bytes: &[u8]) -> Option<ChitchatMessage> {
        let chitchat = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        let screened = {
            let chitchat = chitchat.lock().await;
            guard::screen(bytes, &*chitchat)
        };
        let screened = match screened {
            Ok(screened) => screened,
            Err(refused) => {
                tracing::warn!(%from, %refused, "dropped a gossip message");
                return None;
            }
        };
        if screened.own > 0 || screened.bad_deltas > 0 {
            tracing::warn!(
                %from,
                about_us = screened.own,
                inapplicable = screened.bad_deltas,
                "dropped parts of a gossip message: state about this node, or deltas chitchat cannot apply"
            );
        }
        if screened.over_capacity > 0 {
            over_capacity(screened.over_capacity);
        }
        let bytes = screened.rewritten.as_deref().unwrap_or(bytes);
        match ChitchatMessage::deserialize(&mut &bytes[..]) {
            Ok(message) => Some(message),
            Err(e) => {
                tracing::warn!(%from, error = %e, "dropped a malformed gossip message");
                None
            }
        }
    }
}

/// Logs (the first time, then every 1,000th time) that new members were left out.
fn over_capacity(left_out: usize) {
    static TIMES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = TIMES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if n.is_multiple_of(1000) {
        tracing::warn!(
            left_out,
            max = MAX_MEMBERS,
            "the cluster is full: this node already tracks the maximum number of members (live \
             and dead), so it ignores new ones until dead members expire"
        );
    }
}

/// [`Gossip`] over the chitchat crate. A supervisor task owns the chitchat instance: it
/// applies this node's key changes, publishes the live members, and restarts chitchat (under
/// a new generation, with this node's keys) if its task ever ends unasked, with an error log.
pub(crate) struct ChitchatGossip {
    ops: mpsc::UnboundedSender<Op>,
    members: watch::Receiver<Members>,
    supervisor: tokio::task::AbortHandle,
}

impl std::fmt::Debug for ChitchatGossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChitchatGossip")
            .field("members", &self.members.borrow().len())
            .finish_non_exhaustive()
    }
}

/// Everything needed to (re)start a chitchat instance.
struct Spec {
    node: NodeId,
    addr: SocketAddr,
    seeds: Vec<String>,
    config: GossipConfig,
    transport: Arc<dyn chitchat::transport::Transport>,
    current: Current,
}

impl Spec {
    async fn spawn(
        &self,
        generation: u64,
        keys: &BTreeMap<String, String>,
    ) -> Result<ChitchatHandle> {
        let interval = self.config.interval;
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(self.node.to_string(), generation, self.addr),
            cluster_id: CLUSTER_ID.to_owned(),
            gossip_interval: interval,
            listen_addr: self.addr,
            seed_nodes: self.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: self.config.phi_threshold,
                sampling_window_size: 100,
                // A gap longer than this is an outage, not a sample of the normal rhythm.
                max_interval: interval * 8,
                // Until samples arrive, assume heartbeats come every round.
                initial_interval: interval,
                dead_node_grace_period: DEAD_MEMBER_GRACE,
            },
            // How long retracted keys are remembered as tombstones.
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: Some(Box::new(|state: &NodeState| {
                state.get(LEAVING).is_none()
            })),
        };
        let initial = keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let handle = spawn_chitchat(chitchat_config, initial, self.transport.as_ref())
            .await
            .map_err(|e| Error::Unreachable {
                addr: self.addr.to_string(),
                reason: format!("cannot start gossip: {e}"),
            })?;
        self.current.set(Some(handle.chitchat()));
        Ok(handle)
    }
}

/// Aborts chitchat's task when dropped (the supervisor was aborted or returned).
struct Running(Option<ChitchatHandle>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ChitchatGossip {
    /// Starts gossiping as `node` at `addr`, joining through `seeds`, over `transport`, whose
    /// sockets screen what they receive through `current` (see [`Current::admit`]).
    pub(crate) async fn start(
        node: NodeId,
        addr: SocketAddr,
        seeds: Vec<String>,
        config: &GossipConfig,
        transport: Arc<dyn chitchat::transport::Transport>,
        current: Current,
    ) -> Result<ChitchatGossip> {
        let spec = Spec {
            node,
            addr,
            seeds,
            config: config.clone(),
            transport,
            current,
        };
        let generation = now_ms();
        let handle = spec.spawn(generation, &BTreeMap::new()).await?;
        let (ops, op_rx) = mpsc::unbounded_channel::<Op>();
        let (members_tx, members) = watch::channel(Members::default());
        let supervisor = tokio::spawn(supervise(spec, generation, handle, op_rx, members_tx));
        Ok(ChitchatGossip {
            ops,
            members,
            supervisor: supervisor.abort_handle(),
        })
    }
}

/// Owns the chitchat instance; see [`ChitchatGossip`].
async fn supervise(
    spec: Spec,
    mut generation: u64,
    handle: ChitchatHandle,
    mut ops: mpsc::UnboundedReceiver<Op>,
    members_tx: watch::Sender<Members>,
) {
    let mut keys = BTreeMap::new();
    let mut running = Running(Some(handle));
    loop {
        let Some(handle) = running.0.as_ref() else {
            return;
        };
        let chitchat = handle.chitchat();
        let mut live = chitchat.lock().await.live_nodes_watcher();
        let ended = handle.termination_watcher();
        let mut ended = std::pin::pin!(ended);
        loop {
            let view = to_members(&live.borrow_and_update());
            members_tx.send_if_modified(|old| {
                let changed = **old != *view;
                if changed {
                    *old = view.clone();
                }
                changed
            });
            tokio::select! {
                op = ops.recv() => match op {
                    Some(Op::Set(key, value)) => {
                        chitchat.lock().await.self_node_state().set(&key, &value);
                        keys.insert(key, value);
                    }
                    Some(Op::Delete(key)) => {
                        chitchat.lock().await.self_node_state().delete(&key);
                        keys.remove(&key);
                    }
                    Some(Op::Leave(done)) => {
                        if let Some(handle) = running.0.take() {
                            let members = members_tx.borrow().clone();
                            leave(handle, &members).await;
                        }
                        spec.current.set(None);
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                changed = live.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                outcome = &mut ended => {
                    match outcome {
                        Err(e) => tracing::error!(error = %e, "the gossip task failed: restarting it"),
                        Ok(()) => tracing::error!("the gossip task stopped: restarting it"),
                    }
                    break;
                }
            }
        }
        // Restart under a new generation, so peers take our keys as new (the old instance's
        // versions are lost with it) and the old instance simply dies in their view.
        spec.current.set(None);
        if let Some(old) = running.0.take() {
            old.abort();
        }
        loop {
            generation = now_ms().max(generation + 1);
            match spec.spawn(generation, &keys).await {
                Ok(handle) => {
                    running = Running(Some(handle));
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot restart the gossip task; retrying");
                    tokio::time::sleep(spec.config.interval).await;
                }
            }
        }
    }
}

/// Marks this node `leaving`, pushes that to some live members, and shuts chitchat down.
async fn leave(handle: ChitchatHandle, members: &Members) {
    let self_id = handle.chitchat_id().clone();
    {
        let chitchat = handle.chitchat();
        let mut chitchat = chitchat.lock().await;
        chitchat.self_node_state().set(LEAVING, "1");
    }
    // A syn to some live members (gossip carries it to the rest); their answer lets us push
    // the `leaving` key in the third message of the exchange, so wait about one round trip.
    for member in members
        .iter()
        .filter(|m| m.addr != self_id.gossip_advertise_addr)
        .take(LEAVE_FANOUT)
    {
        let _ = handle.gossip(member.addr);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = handle.shutdown().await;
}

impl Drop for ChitchatGossip {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

/// The live members, one per node id (after a gossip restart, the newest generation).
fn to_members(live: &BTreeMap<ChitchatId, NodeState>) -> Members {
    let mut by_node: BTreeMap<NodeId, (u64, MemberState)> = BTreeMap::new();
    for (id, state) in live {
        let Ok(node) = u64::from_str_radix(&id.node_id, 16) else {
            continue;
        };
        let member = MemberState {
            node: NodeId(node),
            addr: id.gossip_advertise_addr,
            keys: state
                .key_values()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        };
        match by_node.get(&NodeId(node)) {
            Some((generation, _)) if *generation >= id.generation_id => {}
            _ => {
                by_node.insert(NodeId(node), (id.generation_id, member));
            }
        }
    }
    Arc::new(by_node.into_values().map(|(_, m)| m).collect())
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
        let (done, left) = oneshot::channel();
        let sent = self.ops.send(Op::Leave(done)).is_ok();
        Box::pin(async move {
            if sent {
                let _ = left.await;
            }
        })
    }
}

/// Gossip messages received by the node: (sender's advertised address, chitchat bytes).
pub(crate) type GossipInbox = mpsc::Receiver<(SocketAddr, Vec<u8>)>;

/// Carries chitchat's messages over the node's connections as `Frame::Gossip`.
///
/// Sending never waits: with no live connection to the peer it dials in the background and the
/// message follows once connected (or is dropped, like a lost datagram; gossip repeats itself).
/// What it receives goes through the guard ([`Current::admit`]) before chitchat decodes it. Its
/// socket gives the inbox back when dropped, so a restarted chitchat can open it again.
pub(crate) struct Carrier {
    transport: Weak<crate::transport::Transport>,
    inbox: Arc<Mutex<Option<GossipInbox>>>,
    current: Current,
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
            inbox: Arc::new(Mutex::new(Some(inbox))),
            current: Current::default(),
        }
    }

    /// What its sockets screen messages against; give it to [`ChitchatGossip::start`].
    pub(crate) fn current(&self) -> Current {
        self.current.clone()
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
            inbox: Some(inbox),
            home: self.inbox.clone(),
            current: self.current.clone(),
        }))
    }
}

struct CarrierSocket {
    transport: Weak<crate::transport::Transport>,
    inbox: Option<GossipInbox>,
    home: Arc<Mutex<Option<GossipInbox>>>,
    current: Current,
}

impl Drop for CarrierSocket {
    fn drop(&mut self) {
        if let Some(inbox) = self.inbox.take() {
            *self.home.lock().unwrap_or_else(|e| e.into_inner()) = Some(inbox);
        }
    }
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
        let inbox = self
            .inbox
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the node has stopped"))?;
        loop {
            let (from_addr, bytes) = inbox
                .recv()
                .await
                .ok_or_else(|| anyhow::anyhow!("the node has stopped"))?;
            if let Some(message) = self.current.admit(from_addr, &bytes).await {
                return Ok((from_addr, message));
            }
        }
    }
}

mod guard;

#[cfg(test)]
mod simulation;

#[cfg(test)]
mod tests {
    use super::*;
    use chitchat::transport::Transport as _;

    /// A chitchat instance on an in-memory network, for the guard to read.
    async fn instance(addr: SocketAddr) -> ChitchatHandle {
        let spec = Spec {
            node: NodeId(1),
            addr,
            seeds: Vec::new(),
            config: GossipConfig::default(),
            transport: Arc::new(chitchat::transport::ChannelTransport::default()),
            current: Current::default(),
        };
        spec.spawn(1, &BTreeMap::new()).await.unwrap()
    }

    #[tokio::test]
    async fn malformed_gossip_is_dropped_and_the_next_message_still_arrives() {
        let (tx, rx) = mpsc::channel(8);
        let carrier = Carrier::new(Weak::new(), rx);
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let chitchat = instance(from).await;
        carrier.current().set(Some(chitchat.chitchat()));
        let mut socket = carrier.open(from).await.unwrap();
        assert!(carrier.open(from).await.is_err(), "one socket per carrier");
        let good = ChitchatMessage::BadCluster.serialize_to_vec();
        tx.send((from, vec![0xff; 7])).await.unwrap();
        tx.send((from, good[..good.len() - 1].to_vec()))
            .await
            .unwrap();
        tx.send((from, guard::craft::bomb(200))).await.unwrap();
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
        drop(socket);
        assert!(
            carrier.open(from).await.is_ok(),
            "a dropped socket gives the inbox back, so a restarted chitchat can open it"
        );
    }
}
