//! Fairness at the HTTP edge: each client has a request rate (a token bucket), a number of
//! requests in flight and a number of open event streams it may not exceed, so one client
//! cannot starve the rest; the node as a whole has a number of open event streams. Over a
//! client's limit the answer is 429 with `Retry-After`; over the node's, 503.
//!
//! A client is an IPv4 address or an IPv6 /64 (one host is usually given a whole /64). Behind
//! a proxy listed in `[http] trusted_proxies`, the client is the right-most address of
//! `X-Forwarded-For` that is not itself a trusted proxy; from any other peer the header is
//! ignored (anyone can write it).
//!
//! Memory is bounded: a client whose bucket has refilled is forgotten (it is as a new one),
//! by a pass over all clients that runs only when their number doubled since the last pass
//! (so it costs at most two looks per new client), and at most `MAX_CLIENTS` are remembered:
//! past that (a flood from very many addresses), new clients share one bucket until passes,
//! at most one a second, make room.
//!
//! warp 0.4 does not let a program wrap its listener, so the edge bounds requests in flight per
//! client rather than open TCP connections; an idle keep-alive connection costs a socket only.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warp::Filter;
use warp::http::StatusCode;

use super::ApiError;
pub use crate::config::Cidr;

/// Clients remembered before the first pass that forgets those whose bucket is full again.
const FIRST_SWEEP: usize = 10_000;
/// Most clients remembered; past it new clients share one bucket.
pub const MAX_CLIENTS: usize = 100_000;
/// While `MAX_CLIENTS` are remembered, at most one pass this often.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Default)]
pub struct LimitSettings {
    /// Requests per second a client may make on average; 0: no rate limit.
    pub rate_per_s: f64,
    /// Requests a client may make at once after being idle.
    pub burst: f64,
    /// Requests of one client being answered at once; 0: no limit.
    pub max_in_flight: usize,
    /// Event streams one client may have open; 0: no limit.
    pub max_streams_per_client: usize,
    /// Event streams open on this node; 0: no limit.
    pub max_streams: usize,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
}

pub struct Limits {
    settings: LimitSettings,
    state: Mutex<State>,
}

struct State {
    /// Token buckets of the clients seen lately.
    buckets: HashMap<IpAddr, Bucket>,
    /// The bucket new clients share while `MAX_CLIENTS` are remembered.
    overflow: Bucket,
    /// Size of `buckets` at which the next pass runs.
    sweep_at: usize,
    /// When the last pass ran.
    swept: Instant,
    /// Buckets looked at by passes, in all (a measure of their cost, for tests).
    visited: usize,
    /// Requests being answered, by client (no entry: none).
    in_flight: HashMap<IpAddr, usize>,
    /// Open event streams, by client (no entry: none).
    streams: HashMap<IpAddr, usize>,
    /// Open event streams of the node.
    open_streams: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn new(s: &LimitSettings, now: Instant) -> Bucket {
        Bucket {
            tokens: s.burst,
            updated: now,
        }
    }

    /// The tokens at `now`, refilled at the rate since the last request.
    fn refilled(&self, s: &LimitSettings, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * s.rate_per_s).min(s.burst)
    }
}

/// A request admitted; the client's count of requests in flight drops when it is dropped.
pub struct Permit {
    limits: Arc<Limits>,
    client: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(client) = self.client {
            release(&mut self.limits.lock().in_flight, client);
        }
    }
}

/// An event stream admitted: counted against its client's and the node's limits until it is
/// dropped (with the stream's follower).
pub struct StreamPermit {
    limits: Arc<Limits>,
    client: Option<IpAddr>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut state = self.limits.lock();
        state.open_streams = state.open_streams.saturating_sub(1);
        if let Some(client) = self.client {
            release(&mut state.streams, client);
        }
        crate::telemetry::open_streams(state.open_streams);
    }
}

/// One less for `client`; no entry once none is left, so the map holds only clients that
/// have something open.
fn release(counts: &mut HashMap<IpAddr, usize>, client: IpAddr) {
    if let Some(n) = counts.get_mut(&client) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(&client);
        }
    }
}

/// The client an address stands for: IPv4 addresses (also IPv4-mapped IPv6 ones) one by
/// one, IPv6 addresses by their /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Arc<Self> {
        let overflow = Bucket::new(&settings, Instant::now());
        Arc::new(Limits {
            settings,
            state: Mutex::new(State {
                buckets: HashMap::new(),
                overflow,
                sweep_at: FIRST_SWEEP,
                swept: Instant::now(),
                visited: 0,
                in_flight: HashMap::new(),
                streams: HashMap::new(),
                open_streams: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The address of the client behind a request from `peer` that carries the
    /// `X-Forwarded-For` values `forwarded` (comma-separated, oldest first): the peer itself
    /// unless it is a trusted proxy; then the right-most forwarded address that is not one
    /// (or the left-most, when all are), stopping at one that does not parse.
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded: &str) -> Option<IpAddr> {
        let trusted = |ip: IpAddr| self.settings.trusted_proxies.iter().any(|c| c.contains(ip));
        let mut client = peer?;
        if !trusted(client) {
            return Some(client);
        }
        for hop in forwarded
            .rsplit(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
        {
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !trusted(ip) {
                break;
            }
        }
        Some(client)
    }

    /// Admits a request from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>, now: Instant) -> Result<Permit, ApiError> {
        let s = &self.settings;
        let Some(client) = ip
            .filter(|_| s.rate_per_s > 0.0 || s.max_in_flight > 0)
            .map(client_key)
        else {
            return Ok(Permit {
                limits: self.clone(),
                client: None,
            });
        };
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut bucket = None;
        if s.rate_per_s > 0.0 {
            state.make_room(client, s, now);
            let found =
                if state.buckets.len() >= MAX_CLIENTS && !state.buckets.contains_key(&client) {
                    &mut state.overflow
                } else {
                    state
                        .buckets
                        .entry(client)
                        .or_insert_with(|| Bucket::new(s, now))
                };
            found.tokens = found.refilled(s, now);
            found.updated = now;
            if found.tokens < 1.0 {
                let wait = ((1.0 - found.tokens) / s.rate_per_s).ceil().max(1.0) as u64;
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "more than {} requests per second from {client}; slow down",
                        s.rate_per_s
                    ),
                )
                .retry_after(wait));
            }
            bucket = Some(found);
        }
        let in_flight = state.in_flight.get(&client).copied().unwrap_or(0);
        if s.max_in_flight > 0 && in_flight >= s.max_in_flight {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests_in_flight",
                format!(
                    "{client} already has {} requests being answered; wait for some to finish",
                    s.max_in_flight
                ),
            )
            .retry_after(1));
        }
        if let Some(bucket) = bucket {
            bucket.tokens -= 1.0;
        }
        *state.in_flight.entry(client).or_insert(0) += 1;
        Ok(Permit {
            limits: self.clone(),
            client: Some(client),
        })
    }

    /// Admits an event stream for the client at `ip`, or says why not: 429
    /// `too_many_streams` over the client's limit, 503 `too_many_streams_on_node` over the
    /// node's.
    pub fn open_stream(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<StreamPermit, ApiError> {
        let s = &self.settings;
        let client = ip.map(client_key);
        let mut state = self.lock();
        if s.max_streams > 0 && state.open_streams >= s.max_streams {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams_on_node",
                format!(
                    "this node has {} event streams open, its most ([http] max_streams); try later or another node",
                    s.max_streams
                ),
            ));
        }
        if let Some(client) = client
            && s.max_streams_per_client > 0
            && state.streams.get(&client).copied().unwrap_or(0) >= s.max_streams_per_client
        {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "{client} has {} event streams open, the most per client ([http] max_streams_per_client); close one",
                    s.max_streams_per_client
                ),
            )
            .retry_after(5));
        }
        state.open_streams += 1;
        if let Some(client) = client {
            *state.streams.entry(client).or_insert(0) += 1;
        }
        crate::telemetry::open_streams(state.open_streams);
        Ok(StreamPermit {
            limits: self.clone(),
            client,
        })
    }

    /// Event streams open on this node.
    pub fn open_streams(&self) -> usize {
        self.lock().open_streams
    }

    /// Clients remembered (token buckets), and buckets looked at by passes in all.
    pub fn remembered(&self) -> (usize, usize) {
        let state = self.lock();
        (state.buckets.len(), state.visited)
    }
}

impl State {
    /// Before `client` is given a bucket of its own: forgets every client whose bucket has
    /// refilled, when their number doubled since the last pass (or, while `MAX_CLIENTS` are
    /// remembered, once a second).
    fn make_room(&mut self, client: IpAddr, s: &LimitSettings, now: Instant) {
        let len = self.buckets.len();
        let due = len >= self.sweep_at
            || (len >= MAX_CLIENTS
                && now.saturating_duration_since(self.swept) >= FULL_SWEEP_EVERY);
        if !due || self.buckets.contains_key(&client) {
            return;
        }
        self.visited += len;
        self.buckets
            .retain(|_, bucket| bucket.refilled(s, now) < s.burst);
        self.swept = now;
        self.sweep_at = (2 * self.buckets.len()).max(FIRST_SWEEP);
    }
}

/// One address of `X-Forwarded-For`: `1.2.3.4`, `1.2.3.4:567`, `2001:db8::1` or
/// `[2001:db8::1]:567`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// A filter extracting the address of the client behind a request (see `Limits::client_ip`).
pub fn client(limits: Arc<Limits>) -> warp::filters::BoxedFilter<(Option<IpAddr>,)> {
    let peer = super::tls::remote_addr().map(|addr: Option<SocketAddr>| addr.map(|a| a.ip()));
    if limits.settings.trusted_proxies.is_empty() {
        // Nothing to believe: the header is not even read.
        return peer.boxed();
    }
    peer.and(warp::header::headers_cloned())
        .map(
            move |peer: Option<IpAddr>, headers: warp::http::HeaderMap| {
                // Every X-Forwarded-For line, in order: a proxy may add a line of its own rather
                // than append to the client's.
                let forwarded = headers
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join(",");
                limits.client_ip(peer, &forwarded)
            },
        )
        .boxed()
}

/// A filter admitting each request under `limits`; it extracts the `Permit` to hold.
pub fn admit(
    limits: Arc<Limits>,
) -> impl Filter<Extract = (Permit,), Error = warp::Rejection> + Clone {
    client(limits.clone()).and_then(move |ip: Option<IpAddr>| {
        let limits = limits.clone();
        async move {
            limits
                .admit(ip, Instant::now())
                .map_err(warp::reject::custom)
        }
    })
}

#[cfg(test)]
mod tests;
