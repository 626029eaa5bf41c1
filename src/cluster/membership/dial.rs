//! Dialling: the seeds, and the nodes the store lists, each pair by one side.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorRef;
use ractor_cluster::NodeServerMessage;

use super::Membership;
use crate::cluster::address;

/// How often the peers named in the config are checked (and redialled if lost).
const CHECK_EVERY: Duration = Duration::from_secs(1);
const FIRST_REDIAL: Duration = Duration::from_secs(1);
const MAX_REDIAL: Duration = Duration::from_secs(4);
/// A dial that takes longer than this (an unreachable host) is abandoned until the next try.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a known node that sorts before this one may go without dialling it.
const LOWER_GRACE: Duration = Duration::from_secs(3);
const CALL_TIMEOUT_MS: u64 = 1000;

/// Dials every seed, and every node the store knows whose address sorts after this node's
/// (the other side dials the rest: one dial per pair, no duplicate sessions to elect
/// between), that has no session, with a backoff per address, until the server stops.
pub(super) async fn redial(
    server: ActorRef<NodeServerMessage>,
    membership: Arc<Membership>,
    seeds: Vec<String>,
    tls: Option<tokio_rustls::TlsConnector>,
) {
    let mut next_try: HashMap<String, (Instant, Duration)> = HashMap::new();
    // Since when each known node that sorts before this one has had no session with it.
    let mut missing_since: HashMap<String, Instant> = HashMap::new();
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
        let mut targets = seeds.clone();
        let known = membership.known.lock().expect("known lock").clone();
        missing_since.retain(|a, _| known.contains(a) && !present.contains(a));
        for known in known.into_iter().filter(|k| address::dialable(k).is_ok()) {
            // One that sorts before dials this node; if it has not for LOWER_GRACE (it
            // joined earlier, and reads the store's list less often), this node dials it.
            let since = *missing_since.entry(known.clone()).or_insert(now);
            let ours = known > membership.address || now - since >= LOWER_GRACE;
            if ours && !present.contains(&known) && !targets.contains(&known) {
                targets.push(known);
            }
        }
        for seed in &targets {
            if present.contains(seed) {
                next_try.remove(seed);
                continue;
            }
            let (when, backoff) = next_try.get(seed).copied().unwrap_or((now, FIRST_REDIAL));
            if now < when {
                continue;
            }
            // A name is resolved at every dial (a restarted container has a new address), once:
            // the dial goes to those addresses. A peer dialled before under another name is not
            // dialled again.
            let resolved = address::resolve(seed).await;
            if seeds.contains(seed) {
                let mut addrs = membership.seed_addrs.lock().expect("seeds lock");
                addrs.extend(resolved.iter().map(|a| a.to_string()));
            }
            if resolved.iter().any(|a| present.contains(&a.to_string())) {
                next_try.remove(seed);
                continue;
            }
            let dialled = tokio::time::timeout(DIAL_TIMEOUT, async {
                match &tls {
                    None => ractor_cluster::client_connect(&server, &resolved[..]).await,
                    Some(tls) => {
                        // The peer's certificate must name the address (IP or host name)
                        // it is dialled at.
                        let name = address::server_name(seed).map_err(|e| {
                            ractor_cluster::ClientConnectErr::Socket(std::io::Error::other(e))
                        })?;
                        ractor_cluster::client_connect_enc(
                            &server,
                            &resolved[..],
                            tls.clone(),
                            name,
                        )
                        .await
                    }
                }
            })
            .await;
            match dialled {
                Ok(Ok(())) => tracing::debug!(peer = %seed, "dialled peer"),
                Ok(Err(ractor_cluster::ClientConnectErr::Encryption(e))) => {
                    // The peer's certificate is not of our CA (or ours not of its): as with a
                    // refused cookie, this node must not lead a cluster it is not part of (a
                    // seed's refusal says so; a stray node the store lists does not).
                    if seeds.contains(seed) {
                        membership.peers.lock().expect("peers lock").refused = true;
                    }
                    tracing::warn!(peer = %seed, error = %e, "cluster TLS handshake failed: check node.tls_ca and the peer's certificate");
                }
                Ok(Err(e)) => tracing::debug!(peer = %seed, error = %e, "peer unreachable"),
                Err(_) => tracing::debug!(peer = %seed, "dialling peer timed out"),
            }
            // Until the session shows up, try again after the backoff.
            next_try.insert(seed.clone(), (now + backoff, (backoff * 2).min(MAX_REDIAL)));
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}
