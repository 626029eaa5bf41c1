//! Fairness at the HTTP edge: each client (by IP address) has a request rate (a token bucket)
//! and a number of requests in flight it may not exceed, so one client cannot starve the rest.
//! Over either limit the answer is 429 with `Retry-After`.
//!
//! warp 0.4 does not let a program wrap its listener, so the edge bounds requests in flight per
//! client rather than open TCP connections; an idle keep-alive connection costs a socket only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use warp::Filter;
use warp::http::StatusCode;

use super::ApiError;

/// Clients remembered before idle ones are forgotten.
const MAX_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    /// Requests per second a client may make on average; 0: no rate limit.
    pub rate_per_s: f64,
    /// Requests a client may make at once after being idle.
    pub burst: f64,
    /// Requests of one client being answered at once; 0: no limit.
    pub max_in_flight: usize,
}

pub struct Limits {
    settings: LimitSettings,
    clients: Mutex<HashMap<IpAddr, Client>>,
}

struct Client {
    tokens: f64,
    updated: Instant,
    in_flight: usize,
}

/// A request admitted; the client's count of requests in flight drops when it is dropped.
pub struct Permit {
    limits: Arc<Limits>,
    ip: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(ip) = self.ip
            && let Some(client) = self.limits.lock().get_mut(&ip)
        {
            client.in_flight = client.in_flight.saturating_sub(1);
        }
    }
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Arc<Self> {
        Arc::new(Limits {
            settings,
            clients: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Client>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a request from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>, now: Instant) -> Result<Permit, ApiError> {
        let s = self.settings;
        let Some(ip) = ip.filter(|_| s.rate_per_s > 0.0 || s.max_in_flight > 0) else {
            return Ok(Permit {
                limits: self.clone(),
                ip: None,
            });
        };
        let mut clients = self.lock();
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&ip) {
            clients.retain(|_, c| c.in_flight > 0 || c.tokens < s.burst);
        }
        let client = clients.entry(ip).or_insert(Client {
            tokens: s.burst,
            updated: now,
            in_flight: 0,
        });
        if s.rate_per_s > 0.0 {
            let elapsed = now.saturating_duration_since(client.updated).as_secs_f64();
            client.tokens = (client.tokens + elapsed * s.rate_per_s).min(s.burst);
            client.updated = now;
            if client.tokens < 1.0 {
                let wait = ((1.0 - client.tokens) / s.rate_per_s).ceil().max(1.0) as u64;
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "more than {} requests per second from {ip}; slow down",
                        s.rate_per_s
                    ),
                )
                .retry_after(wait));
            }
        }
        if s.max_in_flight > 0 && client.in_flight >= s.max_in_flight {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests_in_flight",
                format!(
                    "{ip} already has {} requests being answered; wait for some to finish",
                    s.max_in_flight
                ),
            )
            .retry_after(1));
        }
        if s.rate_per_s > 0.0 {
            client.tokens -= 1.0;
        }
        client.in_flight += 1;
        Ok(Permit {
            limits: self.clone(),
            ip: Some(ip),
        })
    }
}

/// A filter admitting each request under `limits`; it extracts the `Permit` to hold.
pub fn admit(
    limits: Arc<Limits>,
) -> impl Filter<Extract = (Permit,), Error = warp::Rejection> + Clone {
    super::tls::remote_addr().and_then(move |addr: Option<SocketAddr>| {
        let limits = limits.clone();
        async move {
            limits
                .admit(addr.map(|a| a.ip()), Instant::now())
                .map_err(warp::reject::custom)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn a_client_over_its_rate_waits_and_others_do_not() {
        let limits = Limits::new(LimitSettings {
            rate_per_s: 10.0,
            burst: 5.0,
            max_in_flight: 0,
        });
        let t0 = Instant::now();
        for _ in 0..5 {
            drop(limits.admit(ip(1), t0).unwrap());
        }
        let refused = limits.admit(ip(1), t0).err().unwrap();
        assert_eq!(refused.code, "rate_limited");
        assert_eq!(refused.retry_after_s, Some(1));
        assert!(
            limits.admit(ip(2), t0).is_ok(),
            "another client is unaffected"
        );
        // Tokens come back at the rate: 0.2 s gives two requests.
        let later = t0 + Duration::from_millis(200);
        assert!(limits.admit(ip(1), later).is_ok());
        assert!(limits.admit(ip(1), later).is_ok());
        assert!(limits.admit(ip(1), later).is_err());
    }

    #[test]
    fn requests_in_flight_are_bounded_per_client() {
        let limits = Limits::new(LimitSettings {
            rate_per_s: 0.0,
            burst: 0.0,
            max_in_flight: 2,
        });
        let now = Instant::now();
        let a = limits.admit(ip(1), now).unwrap();
        let _b = limits.admit(ip(1), now).unwrap();
        assert_eq!(
            limits.admit(ip(1), now).err().unwrap().code,
            "too_many_requests_in_flight"
        );
        drop(a);
        assert!(
            limits.admit(ip(1), now).is_ok(),
            "a finished request frees a place"
        );
        assert!(limits.admit(None, now).is_ok(), "no address, no limit");
    }
}
