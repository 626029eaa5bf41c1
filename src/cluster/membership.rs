//! The node server and its peers: listen, dial the seeds, redial lost peers with backoff, and
//! keep the list of connected peers for the API and the leader election.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorRef};
use ractor_cluster::NodeSessionMessage;
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{
    IncomingEncryptionMode, NetworkStream, NodeEventSubscription, NodeServer, NodeServerMessage,
};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{MAX_FRAME_BYTES, address};

mod dial;
use dial::redial;

/// An incoming cluster connection that has not authenticated (TLS handshake and cookie) this
/// long after it opened is dropped.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Incoming connections not yet authenticated, at most; past it, new ones are closed at once.
pub const MAX_PENDING: usize = 64;
/// Of those, at most this many from one IP address, so that one host cannot take them all.
pub const MAX_PENDING_PER_IP: usize = 8;

/// This node's place in the cluster.
pub struct Membership {
    name: String,
    /// The cluster address, or empty for a node alone (embedded store).
    address: String,
    server: Option<ActorRef<NodeServerMessage>>,
    peers: Mutex<Peers>,
    /// Incoming connections handed to the node server and not yet seen by [`Events`], by
    /// peer address: the deadline of their authentication and their pending slot.
    pending: Mutex<HashMap<String, Pending>>,
    /// Cluster addresses of the other live nodes, as the store has them: this node dials
    /// those that sort after its own address (see [`redial`]).
    known: Mutex<Vec<String>>,
    /// The addresses the seeds resolved to when dialled: only a refusal by one of those says
    /// this node is not of the cluster (a stray node the store lists says nothing of it).
    seed_addrs: Mutex<HashSet<String>>,
    /// Told when the node leaves: the listener closes.
    closing: tokio::sync::Notify,
}

struct Pending {
    deadline: tokio::time::Instant,
    slot: Slot,
}

/// A place among the pending connections (in all and for one IP address), freed on drop.
struct Slot {
    _all: OwnedSemaphorePermit,
    per_ip: Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_ip = self.per_ip.lock().expect("pending lock");
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// TLS between nodes: the server side demands a client certificate of the cluster's CA, the
/// client side presents this node's and checks the peer's against the same CA.
pub struct ClusterTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

#[derive(Default)]
struct Peers {
    sessions: HashMap<ActorId, Session>,
    /// A session with a peer became ready at least once.
    joined: bool,
    /// A session this node dialled closed before it authenticated (most likely: our cookie
    /// was refused). Incoming ones do not count: a port scan must not stop a node leading.
    refused: bool,
}

struct Session {
    addr: String,
    name: Option<String>,
    ready: bool,
}

impl Peers {
    /// The session `ses` is about. One that opened before this node subscribed to the node
    /// server's events (a peer that dials in as the node starts) is known from its next event.
    fn session(
        &mut self,
        ses: &ractor_cluster::node::NodeServerSessionInformation,
    ) -> &mut Session {
        self.sessions
            .entry(ses.actor.get_id())
            .or_insert_with(|| Session {
                addr: ses.peer_addr.clone(),
                name: None,
                ready: false,
            })
    }
}

impl Membership {
    /// A node with no cluster (the embedded store): alone, so it may always lead.
    pub fn alone(name: &str) -> Arc<Self> {
        Arc::new(Membership {
            name: name.to_string(),
            address: String::new(),
            server: None,
            peers: Mutex::new(Peers::default()),
            pending: Mutex::new(HashMap::new()),
            known: Mutex::new(Vec::new()),
            seed_addrs: Mutex::new(HashSet::new()),
            closing: tokio::sync::Notify::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether this node may take the leader lease: not while the only peers it ever reached
    /// refused it (a node with the wrong cookie must not lead a cluster it is not part of).
    pub fn may_lead(&self) -> bool {
        let peers = self.peers.lock().expect("peers lock");
        !peers.refused || peers.joined
    }

    /// Names of the peers with a ready session.
    pub fn connected(&self) -> HashSet<String> {
        let peers = self.peers.lock().expect("peers lock");
        peers
            .sessions
            .values()
            .filter(|s| s.ready)
            .filter_map(|s| s.name.clone())
            .collect()
    }

    /// Stops the node server (the node is shutting down): peers see this node leave.
    pub fn leave(&self) {
        self.closing.notify_one();
        if let Some(server) = &self.server {
            server.stop(Some("node stopping".into()));
        }
    }

    /// Whether this node dials the nodes the store knows (see [`set_known`](Self::set_known)):
    /// every node of a cluster.
    pub fn dials_known(&self) -> bool {
        !self.address.is_empty()
    }

    /// Whether a node the store knows has no ready session with this one yet.
    pub fn misses_known(&self) -> bool {
        let known = self.known.lock().expect("known lock").len();
        self.connected().len() < known
    }

    /// The cluster addresses of the other nodes the store knows (see `known`).
    pub fn set_known(&self, addresses: Vec<String>) {
        *self.known.lock().expect("known lock") = addresses;
    }
}

/// Starts the node server on `listen`, authenticated by `cookie` (and, with `tls`, by mutual
/// TLS), and keeps dialling `seeds`.
///
/// ractor_cluster's own listener accepts one connection at a time, does a TLS handshake inline
/// with no timeout (one silent client stops every later one) and gives sessions all the time
/// they want to authenticate. So the node listens itself: it takes at most [`MAX_PENDING`]
/// unauthenticated connections ([`MAX_PENDING_PER_IP`] per address), does each handshake on a
/// task of its own, hands the stream to the node server (`NodeServerMessage::ConnectionOpened`),
/// and stops a session not authenticated [`AUTH_TIMEOUT`] after it was accepted. The listener
/// the node server always opens is moved to an ephemeral loopback port where it completes no
/// handshake (its TLS has no certificate), and the port the node server advertises to its
/// peers is set back to ours (`NodeServerMessage::PortChanged`).
///
/// `listen` and `advertise` are written as in the config (see [`super::address`]): `listen` is
/// resolved once, here; the address advertised to peers is `advertise`, or one derived from
/// `listen` ([`address::advertised`]).
pub async fn start(
    name: &str,
    listen: &str,
    advertise: &str,
    cookie: &str,
    seeds: &[String],
    tls: Option<ClusterTls>,
) -> Result<Arc<Membership>, String> {
    let bind_to = address::resolve(listen)
        .await
        .into_iter()
        .next()
        .ok_or_else(|| format!("cannot listen for the cluster on {listen}: it does not resolve"))?;
    let listener = TcpListener::bind(bind_to)
        .await
        .map_err(|e| format!("cannot listen for the cluster on {listen}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot listen for the cluster on {listen}: {e}"))?;
    let advertised = address::advertised(advertise, listen, bound, &address::host_name());
    let (advertised_host, port) =
        address::split(&advertised).map_err(|e| format!("node.advertise: {e}"))?;
    // No transitive connections (plain TCP, so never with TLS): every new session listed its
    // peer's peers and dialled each not yet authenticated, dials under way included; 100 nodes
    // starting at once made 300,000 connections. Each dials the others the store lists.
    let mode = NodeConnectionMode::Isolated;
    let decoy =
        IncomingEncryptionMode::Tls(tokio_rustls::TlsAcceptor::from(crate::tls::refuse_all()));
    let server = NodeServer::new(
        0,
        cookie.to_string(),
        name.to_string(),
        advertised_host.to_string(),
        Some(decoy),
        Some(mode),
    )
    .with_listen_addr(std::net::Ipv4Addr::LOCALHOST.into())
    .with_max_inbound_frame_size(MAX_FRAME_BYTES);
    let (server, _) = Actor::spawn(None, server, ())
        .await
        .map_err(|e| format!("cannot start the cluster server on {listen}: {e}"))?;
    // After the decoy listener's own PortChanged, queued while the server started.
    server
        .cast(NodeServerMessage::PortChanged { port })
        .map_err(|e| format!("cannot start the cluster server on {listen}: {e}"))?;
    let membership = Arc::new(Membership {
        name: name.to_string(),
        address: advertised.clone(),
        server: Some(server.clone()),
        peers: Mutex::new(Peers::default()),
        pending: Mutex::new(HashMap::new()),
        known: Mutex::new(Vec::new()),
        seed_addrs: Mutex::new(HashSet::new()),
        closing: tokio::sync::Notify::new(),
    });
    server
        .cast(NodeServerMessage::SubscribeToEvents {
            id: "trainyard.membership".into(),
            subscription: Box::new(Events(membership.clone())),
        })
        .map_err(|e| format!("cannot watch cluster sessions: {e}"))?;
    let seeds: Vec<String> = seeds
        .iter()
        .filter(|s| **s != membership.address)
        .cloned()
        .collect();
    let (acceptor, connector) = match tls {
        Some(tls) => (
            Some(tokio_rustls::TlsAcceptor::from(tls.server)),
            Some(tokio_rustls::TlsConnector::from(tls.client)),
        ),
        None => (None, None),
    };
    tokio::spawn(accept(
        listener,
        server.clone(),
        membership.clone(),
        acceptor,
    ));
    tokio::spawn(redial(server, membership.clone(), seeds, connector));
    tracing::info!(cluster = %bound, advertised = %advertised, "cluster server listening");
    Ok(membership)
}

/// Accepts cluster connections until the node leaves (see [`start`]).
async fn accept(
    listener: TcpListener,
    server: ActorRef<NodeServerMessage>,
    membership: Arc<Membership>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let all = Arc::new(Semaphore::new(MAX_PENDING));
    let per_ip: Arc<Mutex<HashMap<std::net::IpAddr, usize>>> = Default::default();
    let mut last_warned: Option<Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot accept a cluster connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = membership.closing.notified() => return,
        };
        let deadline = tokio::time::Instant::now() + AUTH_TIMEOUT;
        // A flood of refusals is logged once every 10 s, not once each.
        let mut refuse = |why: &str| {
            let now = Instant::now();
            if last_warned.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
                last_warned = Some(now);
                tracing::warn!(%peer, "cluster connection refused: {why} (more refusals in the next 10 s are not logged)");
            }
        };
        let Ok(all) = all.clone().try_acquire_owned() else {
            refuse(&format!(
                "{MAX_PENDING} are already waiting to authenticate"
            ));
            continue;
        };
        {
            let mut counts = per_ip.lock().expect("pending lock");
            let n = counts.entry(peer.ip()).or_default();
            if *n >= MAX_PENDING_PER_IP {
                refuse(&format!(
                    "{MAX_PENDING_PER_IP} from this address are already waiting to authenticate"
                ));
                continue;
            }
            *n += 1;
        }
        let slot = Slot {
            _all: all,
            per_ip: per_ip.clone(),
            ip: peer.ip(),
        };
        let (server, membership, tls) = (server.clone(), membership.clone(), tls.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(local_addr) = tcp.local_addr() else {
                return;
            };
            let stream = match tls {
                None => NetworkStream::Raw {
                    peer_addr: peer,
                    local_addr,
                    stream: tcp,
                },
                Some(tls) => match tokio::time::timeout_at(deadline, tls.accept(tcp)).await {
                    Ok(Ok(stream)) => NetworkStream::TlsServer {
                        peer_addr: peer,
                        local_addr,
                        stream,
                    },
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "cluster TLS handshake failed: a peer without a certificate of the cluster's CA (node.tls_ca)?");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "cluster TLS handshake timed out");
                        return;
                    }
                },
            };
            membership
                .pending
                .lock()
                .expect("pending lock")
                .insert(peer.to_string(), Pending { deadline, slot });
            let opened = NodeServerMessage::ConnectionOpened {
                stream: Box::new(stream),
                is_server: true,
            };
            let _ = server.cast(opened);
            // Claimed by `Events` when the session opens; one that never did (the node
            // server could not start a session) gives its place back.
            tokio::time::sleep_until(deadline + AUTH_POLL).await;
            membership
                .pending
                .lock()
                .expect("pending lock")
                .remove(&peer.to_string());
        });
    }
}

/// Stops the session `actor` unless it authenticates by `deadline`; `slot` is held until then.
async fn watch_authentication(
    actor: ActorRef<NodeSessionMessage>,
    peer: String,
    deadline: tokio::time::Instant,
    slot: Option<Slot>,
) {
    let _slot = slot;
    loop {
        if matches!(
            actor.get_status(),
            ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped
        ) {
            return;
        }
        if let Ok(true) = ractor::call_t!(actor, NodeSessionMessage::GetAuthenticationState, 500) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(%peer, "cluster connection dropped: not authenticated within {AUTH_TIMEOUT:?}");
            let reason = Some("not authenticated in time".to_string());
            actor.get_cell().stop_children(reason.clone());
            actor.stop(reason);
            return;
        }
        tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + AUTH_POLL)).await;
    }
}

/// How often a session waiting to authenticate is asked whether it did.
const AUTH_POLL: Duration = Duration::from_millis(100);

/// A peer's node name: ractor_cluster names peers `name@host`.
fn node_name(peer: &str) -> String {
    peer.split_once('@')
        .map_or(peer, |(name, _)| name)
        .to_string()
}

/// Session events from the node server, kept in the membership and logged.
struct Events(Arc<Membership>);

impl Events {
    fn with<T>(&self, f: impl FnOnce(&mut Peers) -> T) -> T {
        f(&mut self.0.peers.lock().expect("peers lock"))
    }
}

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        self.with(|p| {
            p.session(&ses);
        });
        // Every session must authenticate in time; an incoming one holds its pending slot
        // until it does.
        let pending = ses
            .is_server
            .then(|| {
                let mut pending = self.0.pending.lock().expect("pending lock");
                pending.remove(&ses.peer_addr)
            })
            .flatten();
        let (deadline, slot) = match pending {
            Some(p) => (p.deadline, Some(p.slot)),
            None => (tokio::time::Instant::now() + AUTH_TIMEOUT, None),
        };
        tokio::spawn(watch_authentication(
            ses.actor.clone(),
            ses.peer_addr.clone(),
            deadline,
            slot,
        ));
    }

    fn node_session_authenticated(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let name = ses.peer_name.as_ref().map(|n| node_name(&n.name));
        self.with(|p| p.session(&ses).name = name);
    }

    fn node_session_ready(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let name = ses.peer_name.as_ref().map(|n| node_name(&n.name));
        tracing::info!(peer = name.as_deref().unwrap_or("?"), addr = %ses.peer_addr, "peer joined");
        self.with(|p| {
            p.joined = true;
            let session = p.session(&ses);
            session.name = name;
            session.ready = true;
        });
    }

    fn node_session_disconnected(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let Some(session) = self.with(|p| p.sessions.remove(&ses.actor.get_id())) else {
            return;
        };
        match (session.ready, session.name) {
            (true, Some(name)) => tracing::warn!(peer = %name, addr = %session.addr, "peer left"),
            (true, None) => tracing::warn!(addr = %session.addr, "peer left"),
            (false, name) => {
                let name = name.or_else(|| ses.peer_name.map(|n| node_name(&n.name)));
                let peer = name.as_deref().unwrap_or("?");
                if ses.is_server {
                    // One that dialled in: anyone can open a TCP connection, so it says
                    // nothing of whether this node belongs to its cluster.
                    tracing::warn!(
                        addr = %session.addr,
                        peer,
                        "incoming cluster connection closed before authentication: a node with \
                         another cookie, or not a trainyard node"
                    );
                } else {
                    // One this node dialled: most likely its cookie was refused.
                    let seeds = self.0.seed_addrs.lock().expect("seeds lock");
                    let by_seed = seeds.contains(&session.addr);
                    drop(seeds);
                    if by_seed {
                        self.with(|p| p.refused = true);
                    }
                    tracing::warn!(
                        addr = %session.addr,
                        peer,
                        "cluster connection closed before authentication: the peer refused our \
                         cookie (or we refused its), or it is not a trainyard node; check [node] \
                         cookie"
                    );
                }
            }
        }
    }
}
