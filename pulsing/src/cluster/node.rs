//! A node: this process's presence in a cluster. It hands peers' calls to the server side
//! ([`serve`](super::serve)), gossip to the [directory](super::directory), and finds actors on
//! peers by name through that directory.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use super::client::PeerActor;
use super::directory::{Directory, Instance};
use super::gossip::{Carrier, ChitchatGossip, GossipConfig};
use crate::actor::registry::Registry;
use crate::error::{Error, Result};
use crate::transport::{Connection, Inbound, Incoming, Transport};

/// Gossip messages waiting for the gossip loop; beyond this they are dropped, like datagrams.
const GOSSIP_INBOX: usize = 1024;

/// This process's cluster membership: its transport and its view of the cluster.
pub(crate) struct Node {
    transport: OnceLock<Arc<Transport>>,
    directory: OnceLock<Directory>,
    addr: OnceLock<SocketAddr>,
    gossip_inbox: OnceLock<mpsc::Sender<(SocketAddr, Vec<u8>)>>,
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
        let addr: SocketAddr = match advertised.parse() {
            Ok(addr) => addr,
            Err(_) => tokio::net::lookup_host(advertised)
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| Error::Unreachable {
                    addr: advertised.to_owned(),
                    reason: "the advertised address does not resolve".into(),
                })?,
        };
        let _ = self.addr.set(addr);
        let (inbox_tx, inbox) = mpsc::channel(GOSSIP_INBOX);
        let _ = self.gossip_inbox.set(inbox_tx);
        let carrier = Carrier::new(Arc::downgrade(&transport), inbox);
        let node_id = transport.node();
        let _ = self.transport.set(transport);
        let gossip = ChitchatGossip::start(node_id, addr, seeds, gossip, &carrier).await?;
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
    ) -> Result<Arc<PeerActor>> {
        let mut failure = None;
        for instance in instances {
            match self.transport().connect(&instance.addr.to_string()).await {
                Ok(conn) => {
                    return Ok(Arc::new(PeerActor {
                        conn,
                        name: name.to_owned(),
                        id: instance.actor,
                        type_name: instance.type_name.clone(),
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
        let (Some(inbox), Ok(from)) = (self.gossip_inbox.get(), conn.peer_addr.parse()) else {
            return;
        };
        // Full: the gossip loop is behind; dropping is safe, the next round repeats it.
        let _ = inbox.try_send((from, bytes));
    }

    fn leaving(&self, conn: &Arc<Connection>) {
        if let Some(directory) = self.directory.get() {
            directory.left(conn.peer);
        }
    }

    fn closed(&self, _conn: &Arc<Connection>) {}
}
