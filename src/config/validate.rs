//! The checks of a config at start-up: each problem names its key.

use super::values::parse_sha256;
use super::{Config, ConfigError, HttpSection, MIN_SECRET_CHARS};
use crate::cluster::address;
use crate::training::DeviceSpec;

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.node.name.trim().is_empty() {
            problems.push("node.name must not be empty".to_string());
        }
        if self.node.name.contains('/') {
            problems.push(format!(
                "node.name {:?} must not contain '/'",
                self.node.name
            ));
        }
        let embedded = self.store.url.starts_with("embedded:");
        if !embedded {
            problems.extend(self.cluster_problems());
            if let Err(e) = crate::store::Target::parse(&self.store.url) {
                problems.push(format!("store.url: {e} (or embedded:PATH, for one node)"));
            }
        }
        if embedded && self.store.min_replicas_ack > 0 {
            problems.push(
                "store.min_replicas_ack needs a Redis store: the embedded store has no replicas"
                    .into(),
            );
        }
        if !(self.store.replica_ack_timeout_s > 0.0 && self.store.replica_ack_timeout_s <= 60.0) {
            problems.push(format!(
                "store.replica_ack_timeout_s {} must be above 0 and at most 60",
                self.store.replica_ack_timeout_s
            ));
        }
        match self.http.listen.parse::<std::net::SocketAddr>() {
            Err(_) => problems.push(format!(
                "http.listen {:?} is not an address like 127.0.0.1:5000",
                self.http.listen
            )),
            Ok(addr) => problems.extend(self.http.auth_problems(addr)),
        }
        if self.trainers.devices.is_empty() {
            problems.push("trainers.devices must name at least one device".into());
        }
        let auto = self.trainers.devices.len() == 1 && self.trainers.devices[0] == "auto";
        for device in self.trainers.devices.iter().filter(|_| !auto) {
            if let Err(e) = device.parse::<DeviceSpec>() {
                problems.push(format!("trainers.devices: {e}"));
            }
        }
        let t = &self.tasks;
        for (name, value) in [
            ("time_limit_s", t.time_limit_s),
            ("hard_time_limit_grace_s", t.hard_time_limit_grace_s),
            ("result_expires_s", t.result_expires_s),
            ("expired_memory_s", t.expired_memory_s),
            ("history_after_end_s", t.history_after_end_s),
            ("shutdown_grace_s", t.shutdown_grace_s),
            ("lease_s", t.lease_s),
            ("retry_backoff_s", t.retry_backoff_s),
            ("retry_backoff_max_s", t.retry_backoff_max_s),
            ("claim_ahead_under_s", t.claim_ahead_under_s),
            ("checkpoint_every_s", t.checkpoint_every_s),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                problems.push(format!(
                    "tasks.{name} must be a number of seconds, got {value}"
                ));
            }
        }
        if t.time_limit_s <= 0.0 {
            problems.push("tasks.time_limit_s must be above 0".into());
        }
        if t.lease_s < 0.5 {
            problems.push("tasks.lease_s must be at least 0.5".into());
        }
        if t.queue_limit == 0 {
            problems.push("tasks.queue_limit must be at least 1".into());
        }
        if !(self.http.rate_limit_per_s.is_finite() && self.http.rate_limit_per_s >= 0.0) {
            problems.push("http.rate_limit_per_s must be 0 (no limit) or more".into());
        }
        if self.http.rate_limit_per_s > 0.0 && self.http.rate_limit_burst < 1.0 {
            problems.push("http.rate_limit_burst must be at least 1".into());
        }
        if let Err(ConfigError::Invalid(mut e)) = self.http.trusted_proxies() {
            problems.append(&mut e);
        }
        if self.http.max_body_bytes == 0 || self.http.max_upload_bytes == 0 {
            problems.push("http.max_body_bytes and http.max_upload_bytes must be above 0".into());
        }
        let largest_body = self.http.max_body_bytes.max(self.http.max_upload_bytes);
        if self.http.max_body_bytes_in_flight < largest_body {
            problems.push(format!(
                "http.max_body_bytes_in_flight {} must be at least the largest body a route \
                 takes (http.max_body_bytes, http.max_upload_bytes: {largest_body})",
                self.http.max_body_bytes_in_flight
            ));
        }
        if t.max_parameters == 0 || t.max_working_bytes == 0 {
            problems
                .push("tasks.max_parameters and tasks.max_working_bytes must be above 0".into());
        }
        if !(1..=100_000).contains(&t.max_batch) {
            problems.push(format!(
                "tasks.max_batch must be between 1 and 100000, got {}",
                t.max_batch
            ));
        }
        let d = &self.datasets;
        if !(d.expires_s.is_finite() && d.expires_s >= 0.0) {
            problems.push(format!(
                "datasets.expires_s must be 0 (for ever) or a number of seconds, got {}",
                d.expires_s
            ));
        }
        if d.max_total_bytes > 0 && d.max_total_bytes < self.http.max_upload_bytes {
            problems.push(format!(
                "datasets.max_total_bytes {} is below http.max_upload_bytes {}: an upload of \
                 the largest size could never be kept",
                d.max_total_bytes, self.http.max_upload_bytes
            ));
        }
        if self.http.tls_cert.is_empty() != self.http.tls_key.is_empty() {
            problems.push("http.tls_cert and http.tls_key go together: set both or neither".into());
        }
        let s = &self.store;
        if s.tls_client_cert.is_empty() != s.tls_client_key.is_empty() {
            problems.push(
                "store.tls_client_cert and store.tls_client_key go together: set both or neither"
                    .into(),
            );
        }
        let tls_store = s.url.starts_with("rediss://");
        let store_tls_set = !s.tls_ca.is_empty() || !s.tls_client_cert.is_empty();
        if store_tls_set && !tls_store {
            problems
                .push("store.tls_ca and store.tls_client_cert need a rediss:// store.url".into());
        }
        let n = &self.notifications;
        if !n.allowed_hosts.is_empty() && n.hmac_key.is_empty() {
            problems.push(
                "notifications.hmac_key must be set when notifications.allowed_hosts is".into(),
            );
        }
        if !(n.timeout_s.is_finite() && n.timeout_s > 0.0 && n.timeout_s <= 300.0) {
            problems.push("notifications.timeout_s must be above 0 and at most 300".into());
        }
        if n.max_attempts == 0 {
            problems.push("notifications.max_attempts must be at least 1".into());
        }
        if n.max_concurrent == 0 {
            problems.push("notifications.max_concurrent must be at least 1".into());
        }
        for entry in &n.allowed_hosts {
            if let Err(e) = super::parse_allowed(entry) {
                problems.push(format!("notifications.allowed_hosts: {e}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

impl HttpSection {
    /// Whether the API is served with no token to a network beyond this machine.
    pub fn open_off_loopback(&self) -> bool {
        self.token.is_empty()
            && self.tokens.is_empty()
            && self
                .listen
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|addr| !addr.ip().is_loopback())
    }

    fn auth_problems(&self, addr: std::net::SocketAddr) -> Vec<String> {
        let mut problems = Vec::new();
        let loopback = addr.ip().is_loopback();
        if self.open_off_loopback() && !self.allow_unauthenticated {
            problems.push(format!(
                "http.listen {addr} is not loopback and no token is set: set http.token or \
                 [[http.tokens]] (or http.allow_unauthenticated = true to serve an open API)"
            ));
        }
        let short = |secret: &str| !loopback && secret.chars().count() < MIN_SECRET_CHARS;
        if short(&self.token) && !self.token.is_empty() {
            problems.push(format!(
                "http.token is shorter than {MIN_SECRET_CHARS} characters, on {addr} (not loopback)"
            ));
        }
        let mut names = std::collections::HashSet::new();
        for entry in &self.tokens {
            let name = &entry.name;
            if name.trim().is_empty() || (name == "token" && !self.token.is_empty()) {
                problems.push(format!(
                    "http.tokens: name {name:?} must be set and not \"token\" when http.token is"
                ));
            }
            if !names.insert(name) {
                problems.push(format!("http.tokens: name {name:?} is given twice"));
            }
            match (&entry.token, &entry.sha256) {
                (Some(token), None) if token.is_empty() => {
                    problems.push(format!("http.tokens {name:?}: token is empty"))
                }
                (Some(token), None) if short(token) => problems.push(format!(
                    "http.tokens {name:?}: token is shorter than {MIN_SECRET_CHARS} characters, \
                     on {addr} (not loopback)"
                )),
                (None, Some(hex)) if parse_sha256(hex).is_none() => problems.push(format!(
                    "http.tokens {name:?}: sha256 must be 64 hex digits (printf %s TOKEN | sha256sum)"
                )),
                (Some(_), None) | (None, Some(_)) => {}
                _ => problems.push(format!(
                    "http.tokens {name:?}: give either token or sha256, not both or neither"
                )),
            }
        }
        problems
    }
}

/// The cookie shipped in the example configs; refused off loopback.
pub const EXAMPLE_COOKIE: &str = "change-me";
/// The shortest cookie a node listening off loopback may have.
pub const MIN_COOKIE_CHARS: usize = 16;

impl Config {
    /// Problems of the `[node]` section of a cluster node (one on Redis).
    fn cluster_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match address::split(&self.node.listen) {
            Err(e) => problems.push(format!("node.listen: {e}")),
            Ok((host, _))
                if !address::is_loopback_host(host) && self.node.cookie == EXAMPLE_COOKIE =>
            {
                problems.push(format!(
                    "node.cookie is the example cookie {EXAMPLE_COOKIE:?}; a node listening on \
                     {} (not loopback) needs a secret of its own",
                    self.node.listen
                ))
            }
            Ok((host, _))
                if !address::is_loopback_host(host)
                    && !self.node.cookie.is_empty()
                    && self.node.cookie.chars().count() < MIN_COOKIE_CHARS =>
            {
                problems.push(format!(
                    "node.cookie is {} characters long; a node listening on {} (not \
                     loopback) needs at least {MIN_COOKIE_CHARS}",
                    self.node.cookie.chars().count(),
                    self.node.listen
                ))
            }
            Ok(_) => {}
        }
        if !self.node.advertise.is_empty()
            && let Err(e) = address::dialable(&self.node.advertise)
        {
            problems.push(format!("node.advertise: {e}"));
        }
        let n = &self.node;
        let tls = [&n.tls_cert, &n.tls_key, &n.tls_ca];
        if tls.iter().any(|k| !k.is_empty()) && tls.iter().any(|k| k.is_empty()) {
            problems.push(
                "node.tls_cert, node.tls_key and node.tls_ca go together: set all three or none"
                    .into(),
            );
        }
        if self.node.cookie.is_empty() {
            problems.push(
                "node.cookie is empty: a cluster node needs the shared secret of its cluster"
                    .into(),
            );
        }
        for seed in &self.node.seeds {
            if let Err(e) = address::dialable(seed) {
                problems.push(format!("node.seeds: {e}"));
            }
        }
        problems
    }
}
