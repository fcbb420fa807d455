//! A node: this process's presence in a cluster. It hands peers' calls to the server side
//! ([`serve`](super::serve)), gossip to the [directory](super::directory), and finds actors on
//! peers by name through that directory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use super::client::PeerActor;
use super::directory::{Directory, Instance};
use super::gossip::{Carrier, ChitchatGossip, GossipConfig, MAX_GOSSIP_MESSAGE};
use crate::actor::interface::Interface;
use crate::actor::registry::Registry;
use crate::error::{Error, Result};
use crate::transport::{Connection, Inbound, Incoming, Transport};
use std::sync::atomic::AtomicBool;

/// Gossip messages waiting for the gossip loop; beyond this they are dropped, like datagrams.
const GOSSIP_INBOX: usize = 1024;
/// Peers' host names resolved at most (one per connected peer that advertises a name).
const MAX_RESOLVED: usize = 4096;

/// `addr` as a socket address: parsed, or else resolved (a host name).
async fn resolve(addr: &str) -> Option<SocketAddr> {
    if let Ok(addr) = addr.parse() {
        return Some(addr);
    }
    tokio::net::lookup_host(addr).await.ok()?.next()
}

/// This process's cluster membership: its transport and its view of the cluster.
pub(crate) struct Node {
    transport: OnceLock<Arc<Transport>>,
    directory: OnceLock<Directory>,
    addr: OnceLock<SocketAddr>,
    gossip_inbox: OnceLock<mpsc::Sender<(SocketAddr, Vec<u8>)>>,
    /// The addresses of connected peers that advertise a host name, resolved (gossip from a
    /// peer is known by its address); pruned when their connection closes.
    resolved: Arc<Mutex<HashMap<String, SocketAddr>>>,
    /// The system's registry, where peers' calls find their actors; gone with the system.
    registry: Weak<Registry>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("transport", &self.transport.get())
            .finish_non_exhaustive()
    }
}

impl Node {
    pub(crate) fn new(registry: Weak<Registry>) -> Node {
        Node {
            transport: OnceLock::new(),
            directory: OnceLock::new(),
            addr: OnceLock::new(),
            gossip_inbox: OnceLock::new(),
            resolved: Arc::default(),
            registry,
        }
    }

    /// Starts the transport on `transport` and gossip through `seeds`.
    pub(crate) async fn start(
        &self,
        transport: Arc<Transport>,
        seeds: Vec<String>,
        gossip: &GossipConfig,
    ) -> Result<()> {
        let advertised = transport.advertised();
        let addr = resolve(advertised)
            .await
            .ok_or_else(|| Error::Unreachable {
                addr: advertised.to_owned(),
                reason: "the advertised address does not resolve".into(),
            })?;
        let _ = self.addr.set(addr);
        let (inbox_tx, inbox) = mpsc::channel(GOSSIP_INBOX);
        let _ = self.gossip_inbox.set(inbox_tx);
        let carrier = Arc::new(Carrier::new(Arc::downgrade(&transport), inbox));
        let current = carrier.current();
        let node_id = transport.node();
        let _ = self.transport.set(transport);
        let gossip = ChitchatGossip::start(node_id, addr, seeds, gossip, carrier, current).await?;
        let _ = self
            .directory
            .set(Directory::new(node_id, Box::new(gossip)));
        Ok(())
    }

    pub(crate) fn transport(&self) -> &Arc<Transport> {
        self.transport
            .get()
            .expect("the transport starts with the node")
    }

    /// The advertised address, resolved.
    pub(crate) fn addr(&self) -> SocketAddr {
        *self
            .addr
            .get()
            .expect("the address is set when the node starts")
    }

    pub(crate) fn directory(&self) -> &Directory {
        self.directory
            .get()
            .expect("the directory starts with the node")
    }

    /// Connects to the first reachable of `instances` (already in order of preference).
    pub(crate) async fn connect_to(
        &self,
        name: &str,
        instances: &[Instance],
        call_timeout: Option<Duration>,
        stream_buffer: usize,
        expect: Option<&'static Interface>,
    ) -> Result<Arc<PeerActor>> {
        let mut failure = None;
        for instance in instances {
            match self.transport().connect(&instance.addr.to_string()).await {
                Ok(conn) => {
                    return Ok(Arc::new(PeerActor {
                        first: conn,
                        redialed: std::sync::Mutex::new(None),
                        transport: Arc::downgrade(self.transport()),
                        name: name.to_owned(),
                        id: instance.actor,
                        node: instance.node,
                        type_name: instance.type_name.clone(),
                        expect,
                        gone: AtomicBool::new(false),
                        view: Some(self.directory().watch()),
                        call_timeout,
                        stream_buffer,
                    }))
                }
                Err(e) => failure = Some(e),
            }
        }
        Err(failure.unwrap_or_else(|| Error::NotFound {
            name: name.to_owned(),
        }))
    }

    /// Leaves the cluster: tells the members, then closes every connection.
    pub(crate) async fn leave(&self) {
        if let Some(directory) = self.directory.get() {
            directory.leave().await;
        }
        if let Some(transport) = self.transport.get() {
            transport.shutdown().await;
        }
    }
}

impl Inbound for Node {
    fn request(&self, conn: &Arc<Connection>, call: Incoming) {
        let Some(registry) = self.registry.upgrade() else {
            conn.answer(call.id, Err(Error::SystemShutdown));
            return;
        };
        super::serve::request(registry, conn, call);
    }

    fn gossip(&self, conn: &Arc<Connection>, bytes: Vec<u8>) {
        let Some(inbox) = self.gossip_inbox.get() else {
            return;
        };
        // Checked again by the guard; here so that a full inbox holds only small messages.
        if bytes.len() > MAX_GOSSIP_MESSAGE {
            tracing::warn!(peer = %conn.peer_addr, len = bytes.len(), "dropped an oversized gossip message");
            return;
        }
        let known = conn.peer_addr.parse().ok().or_else(|| {
            let resolved = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
            resolved.get(&conn.peer_addr).copied()
        });
        match known {
            // Full: the gossip loop is behind; dropping is safe, the next round repeats it.
            Some(from) => drop(inbox.try_send((from, bytes))),
            // The peer advertises a host name: resolve it once per connection.
            None => {
                let (inbox, conn) = (inbox.clone(), conn.clone());
                let resolved = self.resolved.clone();
                tokio::spawn(async move {
                    let Some(from) = resolve(&conn.peer_addr).await else {
                        tracing::warn!(peer = %conn.peer_addr, "the peer's advertised address does not resolve; its gossip is dropped");
                        return;
                    };
                    if !conn.is_closed() {
                        let mut resolved = resolved.lock().unwrap_or_else(|e| e.into_inner());
                        if resolved.len() >= MAX_RESOLVED {
                            resolved.clear();
                        }
                        resolved.insert(conn.peer_addr.clone(), from);
                    }
                    let _ = inbox.try_send((from, bytes));
                });
            }
        }
    }

    fn leaving(&self, conn: &Arc<Connection>) {
        if let Some(directory) = self.directory.get() {
            directory.left(conn.peer);
        }
    }

    fn closed(&self, conn: &Arc<Connection>) {
        let mut resolved = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        resolved.remove(&conn.peer_addr);
    }
}
