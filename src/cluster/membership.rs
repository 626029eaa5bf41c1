//! The node server and its peers: listen, dial the seeds, redial lost peers with backoff, and
//! keep the list of connected peers for the API and the leader election.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorRef};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};

use super::MAX_FRAME_BYTES;

/// How often the peers named in the config are checked (and redialled if lost).
const CHECK_EVERY: Duration = Duration::from_secs(1);
const FIRST_REDIAL: Duration = Duration::from_secs(1);
const MAX_REDIAL: Duration = Duration::from_secs(4);
/// A dial that takes longer than this (an unreachable host) is abandoned until the next try.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
const CALL_TIMEOUT_MS: u64 = 1000;

/// This node's place in the cluster.
pub struct Membership {
    name: String,
    /// The cluster address, or empty for a node alone (embedded store).
    address: String,
    server: Option<ActorRef<NodeServerMessage>>,
    peers: Mutex<Peers>,
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
        if let Some(server) = &self.server {
            server.stop(Some("node stopping".into()));
        }
    }
}

/// Starts the node server on `listen`, authenticated by `cookie`, and keeps dialling `seeds`.
pub async fn start(
    name: &str,
    listen: SocketAddr,
    cookie: &str,
    seeds: &[String],
) -> Result<Arc<Membership>, String> {
    // The node server binds in the background and only logs a failure; check the port first.
    drop(
        std::net::TcpListener::bind(listen)
            .map_err(|e| format!("cannot listen for the cluster on {listen}: {e}"))?,
    );
    let server = NodeServer::new(
        listen.port(),
        cookie.to_string(),
        name.to_string(),
        listen.ip().to_string(),
        None,
        Some(NodeConnectionMode::Transitive),
    )
    .with_listen_addr(listen.ip())
    .with_max_inbound_frame_size(MAX_FRAME_BYTES);
    let (server, _) = Actor::spawn(None, server, ())
        .await
        .map_err(|e| format!("cannot start the cluster server on {listen}: {e}"))?;
    let membership = Arc::new(Membership {
        name: name.to_string(),
        address: listen.to_string(),
        server: Some(server.clone()),
        peers: Mutex::new(Peers::default()),
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
    tokio::spawn(redial(server, seeds));
    tracing::info!(cluster = %listen, "cluster server listening");
    Ok(membership)
}

/// Dials every seed that has no session, with a backoff per seed, until the server stops.
async fn redial(server: ActorRef<NodeServerMessage>, seeds: Vec<String>) {
    let mut next_try: HashMap<String, (Instant, Duration)> = HashMap::new();
    loop {
        let sessions =
            match ractor::call_t!(server, NodeServerMessage::GetSessions, CALL_TIMEOUT_MS) {
                Ok(sessions) => sessions,
                Err(_) if server.get_status() == ractor::ActorStatus::Stopped => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list cluster sessions");
                    tokio::time::sleep(CHECK_EVERY).await;
                    continue;
                }
            };
        let present: HashSet<String> = sessions
            .values()
            .flat_map(|s| {
                std::iter::once(s.peer_addr.clone())
                    .chain(s.peer_name.as_ref().map(|n| n.connection_string.clone()))
            })
            .collect();
        let now = Instant::now();
        for seed in &seeds {
            if present.contains(seed) {
                next_try.remove(seed);
                continue;
            }
            let (when, backoff) = next_try.get(seed).copied().unwrap_or((now, FIRST_REDIAL));
            if now < when {
                continue;
            }
            let dialled =
                tokio::time::timeout(DIAL_TIMEOUT, ractor_cluster::client_connect(&server, seed))
                    .await;
            match dialled {
                Ok(Ok(())) => tracing::debug!(peer = %seed, "dialled peer"),
                Ok(Err(e)) => tracing::debug!(peer = %seed, error = %e, "peer unreachable"),
                Err(_) => tracing::debug!(peer = %seed, "dialling peer timed out"),
            }
            // Until the session shows up, try again after the backoff.
            next_try.insert(seed.clone(), (now + backoff, (backoff * 2).min(MAX_REDIAL)));
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

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
                    self.with(|p| p.refused = true);
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
