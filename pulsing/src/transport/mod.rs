//! Node-to-node connections over WebSocket (tokio-tungstenite), binary frames, postcard encoding.
//!
//! A [`Transport`] listens on one address and dials peers on demand, keeping at most one outgoing
//! connection per peer address; concurrent dials to the same address share one attempt. Every
//! connection starts with the [handshake](handshake) and then multiplexes any number of calls and
//! streams (see [`connection`]). Frames over the size limit, malformed frames and protocol errors
//! close only the connection that sent them.
//!
//! **Before login.** An accepted socket has [`ESTABLISH_TIMEOUT`] in all for the WebSocket
//! upgrade, the handshake and, if refused, the close; then it is dropped. At most
//! [`MAX_UNAUTHENTICATED`] accepted sockets may be in that state at once, and at most
//! [`MAX_UNAUTHENTICATED_PER_IP`] from one IP address: any beyond are closed at once, with a
//! log line (at most one a second), so a flood of stalled logins from one host cannot lock out
//! the others, and no flood can exhaust the node's file descriptors.
//!
//! **Dial slots.** The table of outgoing connections is keyed by address strings that peers
//! choose (the address a `Hello` advertises): an entry goes when its connection closes or its
//! dial fails, and a closed connection drops its unsent frames, so neither grows with churn.

mod by_id;
pub(crate) mod connection;
pub(crate) mod direct;
pub(crate) mod handshake;
mod inlet;
mod outbox;
pub(crate) mod secure;
mod spare;
mod writer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub(crate) use connection::{
    credit_semaphore, Answer, Attempt, Connection, Inbound, Incoming, OutArgs, Outcome, Outgoing,
    Role, Serving, StreamMsg, SWEPT_DEADLINE,
};
pub(crate) use handshake::{new_node_id, Identity};

use crate::error::{Error, Result};

/// How long dialing a peer (TCP connect + WebSocket upgrade + handshake) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) use connection::ESTABLISH_TIMEOUT;

/// The most a connection reads from its socket at once (tungstenite's `read_buffer_size`,
/// 128 KiB by default). tungstenite zero-fills that much of its buffer before every read, so
/// with many small frames in flight most reads zeroed about 100 KiB to receive a few: 12% of
/// the server's CPU at 1024 calls in flight. 32 KiB: 2–5% less CPU per call there (5 of 6
/// alternating soak pairs), and no loss on 1 MiB echoes (a frame's whole length is reserved
/// once; it just takes more reads).
const READ_CHUNK: usize = 32 * 1024;

/// Accepted connections that have not logged in yet, at most, per node.
pub(crate) const MAX_UNAUTHENTICATED: usize = 128;
/// Accepted connections that have not logged in yet, at most, per source IP address.
pub(crate) const MAX_UNAUTHENTICATED_PER_IP: usize = 16;

/// The outgoing connection to one address; its lock makes concurrent dials share one attempt.
type DialSlot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

/// Listens for peers and dials them; owns the table of live connections.
pub(crate) struct Transport {
    me: Identity,
    max_frame: usize,
    inbound: Weak<dyn Inbound>,
    outgoing: Mutex<HashMap<String, DialSlot>>,
    all: Mutex<Vec<std::sync::Weak<Connection>>>,
    local_addr: SocketAddr,
    stopped: tokio_util::sync::CancellationToken,
    /// The last time a peer refused our handshake (wrong secret or version), for error reports.
    last_refusal: Mutex<Option<Error>>,
    /// Addresses whose handshake failed, and until when gossip leaves them alone.
    shunned: Mutex<HashMap<String, tokio::time::Instant>>,
    /// Accepted sockets still logging in, by source IP (see [`MAX_UNAUTHENTICATED`]).
    logging_in: Mutex<LoggingIn>,
}

/// The accepted sockets that have not logged in yet.
#[derive(Debug, Default)]
struct LoggingIn {
    total: usize,
    by_ip: HashMap<std::net::IpAddr, usize>,
    /// When a refusal was last logged (at most one line a second).
    logged: Option<tokio::time::Instant>,
    /// Refusals since then.
    refused: u64,
}

/// A place among the sockets logging in; given back on drop.
struct LoginSlot {
    transport: Weak<Transport>,
    ip: std::net::IpAddr,
}

impl Drop for LoginSlot {
    fn drop(&mut self) {
        if let Some(t) = self.transport.upgrade() {
            let mut l = t.logging_in.lock().unwrap_or_else(|e| e.into_inner());
            l.total -= 1;
            if let Some(n) = l.by_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    l.by_ip.remove(&self.ip);
                }
            }
        }
    }
}

/// How long gossip waits before dialing again an address that refused the handshake (each
/// refusal is logged on both sides; retrying every round would flood the logs).
const REFUSAL_BACKOFF: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("me", &self.me)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Binds `bind` (port 0 picks a free port) and starts accepting peers. `advertise` is the
    /// address peers should use (a host name or an IP, with a port; port 0 stands for the bound
    /// one); `None` uses the bound address, with a wildcard IP (`0.0.0.0`,
    /// `::`) replaced by this host's first non-loopback interface address (or loopback if it has
    /// none), since a wildcard is not reachable.
    pub(crate) async fn start(
        bind: &str,
        advertise: Option<String>,
        node: crate::wire::NodeId,
        secret: Option<Vec<u8>>,
        encrypt: bool,
        max_frame: usize,
        inbound: Weak<dyn Inbound>,
    ) -> Result<Arc<Transport>> {
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|e| Error::Unreachable {
                addr: bind.to_owned(),
                reason: format!("cannot bind: {e}"),
            })?;
        let local_addr = listener.local_addr().map_err(|e| Error::Unreachable {
            addr: bind.to_owned(),
            reason: e.to_string(),
        })?;
        if !local_addr.ip().is_loopback() && secret.is_none() {
            tracing::warn!(
                %local_addr,
                "listening on a non-loopback address without a cluster secret: any host that can \
                 reach this port can join the cluster and call every actor; set a secret"
            );
        }
        let advertised = match advertise {
            // `host:0` advertises the port that was bound.
            Some(addr) => match addr.strip_suffix(":0") {
                Some(host) => format!("{host}:{}", local_addr.port()),
                None => addr,
            },
            None => reachable(local_addr, &interface_ips()).to_string(),
        };
        let transport = Arc::new(Transport {
            me: Identity {
                node,
                addr: advertised,
                secret,
                encrypt,
            },
            max_frame,
            inbound,
            outgoing: Mutex::new(HashMap::new()),
            all: Mutex::new(Vec::new()),
            local_addr,
            stopped: tokio_util::sync::CancellationToken::new(),
            last_refusal: Mutex::new(None),
            shunned: Mutex::new(HashMap::new()),
            logging_in: Mutex::new(LoggingIn::default()),
        });
        tokio::spawn(accept_loop(listener, Arc::downgrade(&transport)));
        Ok(transport)
    }

    /// The address this node is bound to.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address this node advertises to peers.
    pub(crate) fn advertised(&self) -> &str {
        &self.me.addr
    }

    /// This node's id.
    pub(crate) fn node(&self) -> crate::wire::NodeId {
        self.me.node
    }

    fn slot(&self, addr: &str) -> DialSlot {
        let mut outgoing = self.outgoing.lock().unwrap_or_else(|e| e.into_inner());
        outgoing.entry(addr.to_owned()).or_default().clone()
    }

    /// Uses a connection the peer opened for our own calls to it too, unless we have one: one
    /// connection per pair of nodes (two only when both dial each other at the same moment).
    fn adopt(&self, conn: &Arc<Connection>) {
        if let Ok(mut slot) = self.slot(&conn.peer_addr).try_lock() {
            if slot.as_ref().is_none_or(|c| c.is_closed()) {
                *slot = Some(conn.clone());
            }
        }
    }

    /// Sends a gossip message to `addr` without waiting: over the live connection if there is
    /// one, else after dialing in the background. Dropped if a dial to `addr` is under way
    /// or fails (gossip is lossy by design; the next round repeats it).
    pub(crate) fn gossip_to(self: &Arc<Self>, addr: SocketAddr, bytes: Vec<u8>) {
        let key = addr.to_string();
        let slot = self.slot(&key);
        let Ok(held) = slot.try_lock() else { return };
        if let Some(conn) = held.as_ref().filter(|c| !c.is_closed()) {
            conn.send_control(crate::wire::Frame::Gossip(bytes));
            return;
        }
        drop(held);
        {
            let mut shunned = self.shunned.lock().unwrap_or_else(|e| e.into_inner());
            let now = tokio::time::Instant::now();
            shunned.retain(|_, until| *until > now);
            if shunned.contains_key(&key) {
                return;
            }
        }
        let me = self.clone();
        tokio::spawn(async move {
            match me.connect(&key).await {
                Ok(conn) => conn.send_control(crate::wire::Frame::Gossip(bytes)),
                Err(e @ Error::Refused { .. }) => {
                    tracing::warn!(addr = %key, error = %e, "gossip peer refused us; retrying in {REFUSAL_BACKOFF:?}");
                    me.shunned
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key, tokio::time::Instant::now() + REFUSAL_BACKOFF);
                }
                Err(e) => tracing::debug!(addr = %key, error = %e, "gossip peer unreachable"),
            }
        });
    }

    /// The last refusal of our handshake by a peer, if any.
    pub(crate) fn last_refusal(&self) -> Option<Error> {
        self.last_refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn track(self: &Arc<Self>, conn: &Arc<Connection>) {
        {
            let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
            all.retain(|c| c.strong_count() > 0);
            all.push(Arc::downgrade(conn));
        }
        // When it closes, its dial slot goes (the slots are keyed by peer-chosen addresses).
        let (me, weak) = (Arc::downgrade(self), Arc::downgrade(conn));
        let closed = conn.closed_token();
        tokio::spawn(async move {
            closed.cancelled().await;
            drop(weak);
            if let Some(me) = me.upgrade() {
                me.prune_slots();
            }
        });
    }

    /// Forgets the dial slots that hold no open connection and no dial under way.
    fn prune_slots(&self) {
        let mut outgoing = self.outgoing.lock().unwrap_or_else(|e| e.into_inner());
        outgoing.retain(|_, slot| match slot.try_lock() {
            Ok(held) => held.as_ref().is_some_and(|c| !c.is_closed()),
            Err(_) => true, // a dial (or an adoption) is under way
        });
    }

    /// How many dial slots exist.
    #[cfg(test)]
    pub(crate) fn dial_slots(&self) -> usize {
        self.outgoing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Takes a place among the sockets logging in, or says why there is none.
    fn login_slot(
        self: &Arc<Self>,
        ip: std::net::IpAddr,
    ) -> std::result::Result<LoginSlot, String> {
        let mut l = self.logging_in.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = l.by_ip.get(&ip).copied().unwrap_or(0);
        let refusal = if l.total >= MAX_UNAUTHENTICATED {
            Some(format!("{MAX_UNAUTHENTICATED} connections are logging in"))
        } else if from_ip >= MAX_UNAUTHENTICATED_PER_IP {
            Some(format!(
                "{MAX_UNAUTHENTICATED_PER_IP} connections from {ip} are logging in"
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            l.refused += 1;
            let now = tokio::time::Instant::now();
            if l.logged
                .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
            {
                tracing::warn!(
                    %ip,
                    refused = l.refused,
                    "refused connections: {reason} (at most {MAX_UNAUTHENTICATED}, \
                     {MAX_UNAUTHENTICATED_PER_IP} per address, each for {ESTABLISH_TIMEOUT:?})"
                );
                (l.logged, l.refused) = (Some(now), 0);
            }
            return Err(reason);
        }
        l.total += 1;
        *l.by_ip.entry(ip).or_default() += 1;
        Ok(LoginSlot {
            transport: Arc::downgrade(self),
            ip,
        })
    }

    /// Stops accepting and closes every connection, telling peers this node is leaving; waits
    /// (up to a second) for those last words to be written.
    pub(crate) async fn shutdown(&self) {
        self.stopped.cancel();
        let all: Vec<_> = self
            .all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        let open: Vec<Arc<Connection>> = all.iter().filter_map(std::sync::Weak::upgrade).collect();
        for conn in &open {
            conn.send_control(crate::wire::Frame::Leaving);
            conn.close("this node is shutting down");
        }
        let written = futures_util::future::join_all(open.iter().map(|c| c.written()));
        let _ = tokio::time::timeout(Duration::from_secs(1), written).await;
    }

    /// The largest WebSocket message a connection takes. Each frame is checked against
    /// `max_frame` once decoded; a message of several packed frames may always reach
    /// PACK_LIMIT; sealing adds a tag per record.
    fn max_message(&self) -> usize {
        secure::sealed_len(self.max_frame.max(crate::wire::PACK_LIMIT))
    }

    /// The WebSocket settings of every connection (both roles).
    fn ws_config(&self) -> WebSocketConfig {
        let max = self.max_message();
        WebSocketConfig::default()
            .read_buffer_size(READ_CHUNK)
            .max_message_size(Some(max))
            .max_frame_size(Some(max))
    }

    /// Refuses a second connection that claims the node id of a live one but another address:
    /// a node id lives at one address (a restarted node has a new id).
    fn check_identity(&self, conn: &Connection) -> std::result::Result<(), String> {
        let all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        let clash = all
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .find(|c| c.peer == conn.peer && !c.is_closed() && c.peer_addr != conn.peer_addr);
        match clash {
            Some(live) => Err(format!(
                "the peer claims node id {} at {}, but that node is connected at {}",
                conn.peer, conn.peer_addr, live.peer_addr
            )),
            None => Ok(()),
        }
    }

    /// The live connection to `addr`, dialing it if there is none.
    pub(crate) async fn connect(self: &Arc<Self>, addr: &str) -> Result<Arc<Connection>> {
        if self.stopped.is_cancelled() {
            return Err(Error::SystemShutdown);
        }
        let slot = self.slot(addr);
        let mut held = slot.lock().await;
        if let Some(conn) = held.as_ref().filter(|c| !c.is_closed()) {
            return Ok(conn.clone());
        }
        let deadline = tokio::time::Instant::now() + DIAL_TIMEOUT;
        let dialed = tokio::time::timeout_at(deadline, self.dial(addr, deadline))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unreachable {
                    addr: addr.to_owned(),
                    reason: format!("no answer within {DIAL_TIMEOUT:?}"),
                })
            });
        let conn = match dialed {
            Ok(conn) => conn,
            Err(e) => {
                *held = None;
                drop(held);
                drop(slot);
                self.prune_slots();
                return Err(e);
            }
        };
        self.track(&conn);
        *held = Some(conn.clone());
        Ok(conn)
    }

    async fn dial(&self, addr: &str, deadline: tokio::time::Instant) -> Result<Arc<Connection>> {
        let unreachable = |reason: String| Error::Unreachable {
            addr: addr.to_owned(),
            reason,
        };
        let inbound = self.inbound.upgrade().ok_or(Error::SystemShutdown)?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let url = format!("ws://{addr}/pulsing");
        let tcp = direct::Direct::new(tcp, true, self.max_message());
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(self.ws_config()))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        connection::establish(
            ws,
            &self.me,
            Role::Initiator,
            self.max_frame,
            inbound,
            deadline,
        )
        .await
        .map_err(|reason| {
            let refused = Error::Refused {
                addr: addr.to_owned(),
                reason,
            };
            *self.last_refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(refused.clone());
            refused
        })
    }
}

/// The IP addresses of this host's network interfaces.
fn interface_ips() -> Vec<(std::net::IpAddr, bool)> {
    if_addrs::get_if_addrs()
        .map(|ifs| ifs.iter().map(|i| (i.ip(), i.is_loopback())).collect())
        .unwrap_or_default()
}

/// The address peers can dial for a socket bound to `bound`, given the host's interfaces
/// `(ip, is_loopback)`: a wildcard becomes the first non-loopback address of the same family.
fn reachable(bound: SocketAddr, interfaces: &[(std::net::IpAddr, bool)]) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let same_family = |ip: &std::net::IpAddr| ip.is_ipv4() == bound.is_ipv4();
    let ip = interfaces
        .iter()
        .find(|(ip, loopback)| !loopback && same_family(ip))
        .map(|(ip, _)| *ip)
        .unwrap_or(if bound.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    SocketAddr::new(ip, bound.port())
}

/// Refuses a WebSocket upgrade that carries an `Origin` header: browsers always send one, and
/// nodes never do, so a web page cannot reach a node (on loopback or anywhere else).
#[allow(clippy::result_large_err)] // the signature is tungstenite's callback's
fn refuse_browsers(
    request: &tokio_tungstenite::tungstenite::handshake::server::Request,
    response: tokio_tungstenite::tungstenite::handshake::server::Response,
) -> std::result::Result<
    tokio_tungstenite::tungstenite::handshake::server::Response,
    tokio_tungstenite::tungstenite::handshake::server::ErrorResponse,
> {
    if request.headers().contains_key("origin") {
        let mut refusal = tokio_tungstenite::tungstenite::handshake::server::ErrorResponse::new(
            Some("Pulsing nodes do not accept connections from web pages\n".to_owned()),
        );
        *refusal.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::FORBIDDEN;
        return Err(refusal);
    }
    Ok(response)
}

async fn accept_loop(listener: TcpListener, transport: Weak<Transport>) {
    loop {
        let Some(stopped) = transport.upgrade().map(|t| t.stopped.clone()) else {
            return;
        };
        let accepted = tokio::select! {
            () = stopped.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, from) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(t) = transport.upgrade() else { return };
        // Refused at once, before any byte is read: the socket closes as it drops.
        let Ok(slot) = t.login_slot(from.ip()) else {
            continue;
        };
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tcp.set_nodelay(true);
            t.serve_socket(tcp, &from.to_string()).await;
        });
    }
}

impl Transport {
    /// Everything an accepted socket goes through: the WebSocket upgrade, the handshake and a
    /// refusal's close, within one [`ESTABLISH_TIMEOUT`]; then the connection's tasks start.
    /// Returns the connection if the peer logged in.
    pub(crate) async fn serve_socket<S>(
        self: &Arc<Self>,
        io: S,
        from: &str,
    ) -> Option<Arc<Connection>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + inlet::LowWater + Unpin + Send + 'static,
    {
        let inbound = self.inbound.upgrade()?;
        // One bound for the upgrade, the handshake and a refusal's close.
        let deadline = tokio::time::Instant::now() + ESTABLISH_TIMEOUT;
        let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
            direct::Direct::new(io, false, self.max_message()),
            refuse_browsers,
            Some(self.ws_config()),
        );
        let ws = match tokio::time::timeout_at(deadline, upgrade).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                tracing::warn!(%from, error = %e, "refused a connection: not a WebSocket upgrade");
                return None;
            }
            Err(_) => {
                tracing::warn!(%from, "refused a connection: no WebSocket upgrade in time");
                return None;
            }
        };
        let established = connection::establish(
            ws,
            &self.me,
            Role::Responder,
            self.max_frame,
            inbound,
            deadline,
        );
        let established = tokio::time::timeout_at(deadline, established)
            .await
            .unwrap_or_else(|_| Err("the handshake timed out".to_owned()));
        match established {
            Ok(conn) => {
                if let Err(reason) = self.check_identity(&conn) {
                    tracing::warn!(%from, %reason, "refused a connection");
                    conn.close(&reason);
                    return None;
                }
                tracing::debug!(%from, node = %conn.peer, encrypted = conn.encrypted, "peer connected");
                self.adopt(&conn);
                self.track(&conn);
                Some(conn)
            }
            Err(reason) => {
                tracing::warn!(%from, %reason, "refused a connection: handshake failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
