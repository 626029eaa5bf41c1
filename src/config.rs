//! The node's typed configuration: a TOML file, then `TRAINYARD_<SECTION>__<KEY>` environment
//! overrides, then validation. Unknown keys are refused with their name.

use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use crate::cluster::address;
use crate::http::auth::{AuthSettings, Role, Token, parse_sha256};
use crate::training::{DeviceSpec, resolve_devices};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    pub node: NodeSection,
    pub http: HttpSection,
    pub store: StoreSection,
    pub trainers: TrainersSection,
    pub tasks: TasksSection,
    pub datasets: DatasetsSection,
    pub notifications: NotificationsSection,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetsSection {
    /// Total bytes of uploaded data sets the cluster keeps; an upload past it is refused
    /// (507 `dataset_quota_exceeded`). 0: no limit.
    pub max_total_bytes: u64,
    /// Seconds an uploaded data set is kept after its upload or its last use (a submission
    /// naming it, a read); a data set queued or running tasks use is kept. 0: for ever.
    pub expires_s: f64,
}

impl Default for DatasetsSection {
    fn default() -> Self {
        DatasetsSection {
            max_total_bytes: 1 << 30,
            expires_s: 30.0 * 86_400.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsSection {
    /// Hosts (`host`, `host:port` or `[ipv6]:port`) a task's `callback_url` may name; none when
    /// empty. An entry without a port allows the scheme's default port only (80, 443).
    pub allowed_hosts: Vec<String>,
    /// Whether callback hosts may be (or resolve to) loopback, private, link-local or other
    /// non-global addresses.
    pub allow_private: bool,
    /// PEM file of the CA certificates that https callbacks are verified with, instead of the
    /// public web PKI roots; empty: the public roots.
    pub ca_file: String,
    /// Deliveries in flight at once on one node.
    pub max_concurrent: usize,
    /// Key of the HMAC-SHA256 signature of each delivery (`X-Trainyard-Signature`).
    pub hmac_key: String,
    /// Seconds one delivery may take.
    pub timeout_s: f64,
    /// Tries before a delivery is given up.
    pub max_attempts: u32,
}

impl Default for NotificationsSection {
    fn default() -> Self {
        NotificationsSection {
            allowed_hosts: Vec::new(),
            allow_private: false,
            ca_file: String::new(),
            max_concurrent: 16,
            hmac_key: String::new(),
            timeout_s: 5.0,
            max_attempts: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    pub name: String,
    /// Cluster address (ractor_cluster) of a node on Redis.
    pub listen: String,
    /// Shared secret of the cluster; required on Redis.
    pub cookie: String,
    /// Cluster addresses of peers to join (`host:port`, names resolved at every dial).
    pub seeds: Vec<String>,
    /// The cluster address peers dial to reach this node (default: `listen` when its host is
    /// concrete, else this machine's host name, with the port listened on).
    pub advertise: String,
    /// PEM certificate (chain) of this node for mutual TLS between nodes; with `tls_key` and
    /// `tls_ca`, every cluster link is TLS and a peer must present a certificate `tls_ca` signed.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
    /// PEM certificate of the cluster's CA.
    pub tls_ca: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub listen: String,
    /// A bearer token with the admin role (named "token" in logs); see also `tokens`.
    pub token: String,
    /// Bearer tokens, each with a name and a role.
    pub tokens: Vec<TokenEntry>,
    /// Serve an API with no token on an address other than loopback (logged at each start).
    pub allow_unauthenticated: bool,
    /// Origins (`https://panel.example.com`) whose web pages may change state, besides the
    /// node's own.
    pub allowed_origins: Vec<String>,
    /// Host names requests may be sent to, besides IP literals, `localhost` and this machine's
    /// host name (against DNS rebinding); `"*"`: any.
    pub allowed_hosts: Vec<String>,
    /// Largest JSON request body.
    pub max_body_bytes: u64,
    /// Largest CSV upload.
    pub max_upload_bytes: u64,
    /// Requests per second one client (IP address) may make on average; 0: unlimited.
    pub rate_limit_per_s: f64,
    /// Requests one client may make at once after being idle.
    pub rate_limit_burst: f64,
    /// Requests of one client answered at once; 0: unlimited.
    pub max_in_flight_per_client: usize,
    /// Event streams (`/events`, `/task/{id}/events`) one client may have open; 0: unlimited.
    pub max_streams_per_client: usize,
    /// Event streams open on this node; 0: unlimited.
    pub max_streams: usize,
    /// Address blocks (`10.0.0.0/8`, `2001:db8::/32`, or one address) of proxies whose
    /// `X-Forwarded-For` is believed: a request from one of them is from the right-most
    /// forwarded address that is not one. From any other peer the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Bytes of request bodies this node reads and holds at once, all clients together; a
    /// body that does not fit within a second is refused (503 `server_busy`, `Retry-After`).
    pub max_body_bytes_in_flight: u64,
    /// PEM certificate (chain) to serve HTTPS with; with `tls_key`. Empty: plain HTTP.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
}

impl HttpSection {
    /// `trusted_proxies`, parsed.
    pub fn trusted_proxies(&self) -> Result<Vec<crate::http::limits::Cidr>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|c| c.parse())
            .collect::<Result<_, String>>()
            .map_err(|e| ConfigError::Invalid(vec![format!("http.trusted_proxies: {e}")]))
    }
}

/// One `[[http.tokens]]` entry: the token itself or its SHA-256 (64 hex digits, as
/// `printf %s TOKEN | sha256sum` prints it), so that the file need not hold the secret.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Tokens shorter than this are refused on an address other than loopback.
pub const MIN_SECRET_CHARS: usize = 16;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// `embedded:PATH` (one node), `redis://HOST:PORT/DB`, or
    /// `redis+sentinel://HOST:PORT,HOST:PORT/SERVICE/DB` (the primary Redis Sentinel names).
    pub url: String,
    /// Prefix of every Redis key, so clusters can share a Redis.
    pub prefix: String,
    /// Redis replicas that must have a submission (before its 202) or a result (before its
    /// trainer moves on): `WAIT`. 0: the primary's word is enough.
    pub min_replicas_ack: usize,
    /// Seconds a submission or a result waits for those replicas; past it, it is refused (503).
    pub replica_ack_timeout_s: f64,
    /// PEM CA certificate that a `rediss://` server's certificate must be signed by; empty: the
    /// system's trusted CAs.
    pub tls_ca: String,
    /// PEM client certificate (and `tls_client_key`) for a Redis that demands one.
    pub tls_client_cert: String,
    pub tls_client_key: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainersSection {
    /// `"auto"`, or a list such as `["gpu:0", "gpu:1", "cpu"]`.
    #[serde(deserialize_with = "one_or_many")]
    pub devices: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TasksSection {
    /// Soft time limit of a task that sets none: the training stops between batches.
    pub time_limit_s: f64,
    /// Seconds past the soft limit when a training that did not stop has its trainer replaced
    /// and its task failed (the hard limit).
    pub hard_time_limit_grace_s: f64,
    pub result_expires_s: f64,
    /// How long an expired task id is still answered with `task_expired`.
    pub expired_memory_s: f64,
    pub max_retries: u32,
    pub queue_limit: u64,
    /// Seconds a stopping node waits for running tasks before requeueing them.
    pub shutdown_grace_s: f64,
    /// Seconds a running task's lease lasts without renewal; a hung node's tasks are requeued
    /// this long after it stopped renewing.
    pub lease_s: f64,
    /// First retry backoff in seconds; it doubles with each attempt, with jitter.
    pub retry_backoff_s: f64,
    /// Longest retry backoff in seconds.
    pub retry_backoff_max_s: f64,
    /// A trainer whose last success took less than this (seconds) claims its next task while
    /// it trains one doing the same work, hiding the store's round trip; 0 turns it off.
    pub claim_ahead_under_s: f64,
    /// Most schedules the cluster keeps; `POST /schedules` past it is refused (409
    /// `too_many_schedules`). 0: none may be created.
    pub max_schedules: u64,
    /// Most parameters (weights, or tree nodes) one model of a task may have.
    pub max_parameters: u64,
    /// Most bytes of working memory one training may need, as estimated before the task is
    /// stored (weights, optimizer state, activations of a batch, the data).
    pub max_working_bytes: u64,
    /// Bytes of decoded models this node keeps for `POST /models/{id}/predict` (the least
    /// used go first; a model larger than this is not kept); 0: none.
    pub model_cache_bytes: u64,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            name: "node".into(),
            listen: "127.0.0.1:4700".into(),
            cookie: String::new(),
            seeds: Vec::new(),
            advertise: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_ca: String::new(),
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: "127.0.0.1:5000".into(),
            token: String::new(),
            tokens: Vec::new(),
            allow_unauthenticated: false,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_body_bytes: 1 << 20,
            max_upload_bytes: 64 << 20,
            rate_limit_per_s: 20_000.0,
            rate_limit_burst: 40_000.0,
            max_in_flight_per_client: 512,
            max_streams_per_client: 64,
            max_streams: 10_000,
            trusted_proxies: Vec::new(),
            max_body_bytes_in_flight: 256 << 20,
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            url: "embedded:trainyard-data/trainyard.redb".into(),
            prefix: "trainyard".into(),
            min_replicas_ack: 0,
            replica_ack_timeout_s: 2.0,
            tls_ca: String::new(),
            tls_client_cert: String::new(),
            tls_client_key: String::new(),
        }
    }
}

impl Default for TrainersSection {
    fn default() -> Self {
        TrainersSection {
            devices: vec!["cpu".into()],
        }
    }
}

impl Default for TasksSection {
    fn default() -> Self {
        TasksSection {
            time_limit_s: 3600.0,
            hard_time_limit_grace_s: 30.0,
            result_expires_s: 3600.0,
            expired_memory_s: 86_400.0,
            max_retries: 3,
            queue_limit: 100_000,
            shutdown_grace_s: 30.0,
            lease_s: 5.0,
            retry_backoff_s: 1.0,
            retry_backoff_max_s: 60.0,
            claim_ahead_under_s: 0.01,
            max_schedules: 1000,
            max_parameters: 50_000_000,
            max_working_bytes: 2 << 30,
            model_cache_bytes: 256 << 20,
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Reads `path` (if given), applies `TRAINYARD_*` overrides from `env`, and validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse(e.to_string()))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The trainers' devices, resolved on this machine (`auto` finds the GPUs), and a note
    /// when `auto` fell back to CPU trainers; an error names a device that does not exist.
    pub fn devices(&self) -> Result<(Vec<DeviceSpec>, Option<String>), ConfigError> {
        resolve_devices(&self.trainers.devices)
            .map_err(|e| ConfigError::Invalid(vec![format!("trainers.devices: {e}")]))
    }

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
            ("shutdown_grace_s", t.shutdown_grace_s),
            ("lease_s", t.lease_s),
            ("retry_backoff_s", t.retry_backoff_s),
            ("retry_backoff_max_s", t.retry_backoff_max_s),
            ("claim_ahead_under_s", t.claim_ahead_under_s),
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
            if let Err(e) = crate::notify::parse_allowed(entry) {
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

    /// The edge's checks, from this section (the section is valid).
    pub fn auth_settings(&self) -> AuthSettings {
        let mut tokens: Vec<Token> = self
            .tokens
            .iter()
            .filter_map(|entry| match (&entry.token, &entry.sha256) {
                (Some(token), _) => Some(Token::new(&entry.name, entry.role, token)),
                (None, Some(hex)) => Some(Token {
                    name: entry.name.as_str().into(),
                    role: entry.role,
                    sha256: parse_sha256(hex)?,
                }),
                (None, None) => None,
            })
            .collect();
        if !self.token.is_empty() {
            tokens.push(Token::new("token", Role::Admin, &self.token));
        }
        AuthSettings {
            tokens,
            allowed_origins: self.allowed_origins.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
        }
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

/// A string or a list of strings, as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// Sets `[section] key` from each `TRAINYARD_SECTION__KEY=value`. A value is read as TOML
/// (numbers, booleans, arrays) and, failing that, as a string.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("TRAINYARD_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_lowercase(), key.to_lowercase());
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw));
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            return Err(ConfigError::Parse(format!("{section} must be a section")));
        };
        section_table.insert(key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_the_file_and_types_are_kept() {
        let dir = std::env::temp_dir().join(format!("trainyard-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.toml");
        std::fs::write(
            &path,
            "[http]\nlisten = \"127.0.0.1:6000\"\n[tasks]\nmax_retries = 1\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&path),
            env(&[
                ("TRAINYARD_TASKS__MAX_RETRIES", "5"),
                ("TRAINYARD_TRAINERS__DEVICES", "[\"cpu\", \"cpu\"]"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.http.listen, "127.0.0.1:6000");
        assert_eq!(config.tasks.max_retries, 5);
        assert_eq!(config.trainers.devices.len(), 2);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let err = Config::load(None, env(&[("TRAINYARD_TASKS__MAX_RETRYS", "5")])).unwrap_err();
        assert!(err.to_string().contains("max_retrys"), "{err}");
        let err = Config::load(
            None,
            env(&[
                ("TRAINYARD_HTTP__LISTEN", "nowhere"),
                ("TRAINYARD_TRAINERS__DEVICES", "[\"tpu\"]"),
            ]),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("http.listen") && text.contains("tpu"),
            "{text}"
        );
    }

    #[test]
    fn trusted_proxies_are_address_blocks() {
        let config = Config::load(
            None,
            env(&[(
                "TRAINYARD_HTTP__TRUSTED_PROXIES",
                "[\"10.0.0.0/8\", \"2001:db8::/32\", \"127.0.0.1\"]",
            )]),
        )
        .unwrap();
        assert_eq!(config.http.trusted_proxies().unwrap().len(), 3);
        let err = Config::load(
            None,
            env(&[("TRAINYARD_HTTP__TRUSTED_PROXIES", "[\"10.0.0.0/40\"]")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("http.trusted_proxies"), "{err}");
    }

    #[test]
    fn notification_settings_are_checked() {
        let config = Config::load(None, env(&[])).unwrap();
        let n = &config.notifications;
        assert!(!n.allow_private, "private addresses are refused by default");
        assert_eq!((n.max_concurrent, n.ca_file.as_str()), (16, ""));
        let err = Config::load(
            None,
            env(&[
                ("TRAINYARD_NOTIFICATIONS__HMAC_KEY", "k"),
                (
                    "TRAINYARD_NOTIFICATIONS__ALLOWED_HOSTS",
                    "[\"hooks.example.com:http\", \"ok.example.com:8443\"]",
                ),
                ("TRAINYARD_NOTIFICATIONS__MAX_CONCURRENT", "0"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("hooks.example.com:http") && err.contains("max_concurrent"),
            "{err}"
        );
        assert!(!err.contains("ok.example.com"), "{err}");
    }

    #[test]
    fn bounds_must_leave_room_for_the_largest_body_and_upload() {
        let config = Config::default();
        assert_eq!(config.tasks.max_parameters, 50_000_000);
        assert_eq!(config.http.max_body_bytes_in_flight, 256 << 20);
        let err = Config::load(
            None,
            env(&[
                ("TRAINYARD_HTTP__MAX_BODY_BYTES_IN_FLIGHT", "1000"),
                ("TRAINYARD_DATASETS__MAX_TOTAL_BYTES", "1000"),
                ("TRAINYARD_DATASETS__EXPIRES_S", "-1"),
                ("TRAINYARD_TASKS__MAX_PARAMETERS", "0"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for key in [
            "http.max_body_bytes_in_flight",
            "datasets.max_total_bytes",
            "datasets.expires_s",
            "tasks.max_parameters",
        ] {
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn a_cluster_node_needs_a_cookie_of_its_own_off_loopback() {
        let load = |extra: &[(&str, &str)]| {
            let mut env = vec![(
                "TRAINYARD_STORE__URL".to_string(),
                "redis://127.0.0.1:6379/0".to_string(),
            )];
            env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            Config::load(None, env)
        };
        let empty = load(&[]).unwrap_err().to_string();
        assert!(empty.contains("node.cookie is empty"), "{empty}");
        assert!(
            load(&[("TRAINYARD_NODE__COOKIE", "change-me")]).is_ok(),
            "loopback may use it"
        );
        let exposed = load(&[
            ("TRAINYARD_NODE__COOKIE", "change-me"),
            ("TRAINYARD_NODE__LISTEN", "\"10.1.2.3:4700\""),
        ])
        .unwrap_err()
        .to_string();
        assert!(exposed.contains("example cookie"), "{exposed}");
        assert!(
            load(&[
                ("TRAINYARD_NODE__COOKIE", "s3cret-of-16-chars"),
                ("TRAINYARD_NODE__LISTEN", "\"10.1.2.3:4700\""),
            ])
            .is_ok()
        );
        let seeds = load(&[
            ("TRAINYARD_NODE__COOKIE", "s3cret"),
            ("TRAINYARD_NODE__SEEDS", "[\"nowhere\"]"),
        ])
        .unwrap_err()
        .to_string();
        assert!(seeds.contains("node.seeds"), "{seeds}");
        assert!(
            load(&[
                ("TRAINYARD_NODE__COOKIE", "s3cret-of-16-chars"),
                ("TRAINYARD_NODE__LISTEN", "\"0.0.0.0:4700\""),
                (
                    "TRAINYARD_NODE__SEEDS",
                    "[\"node-b:4701\", \"[fd00::2]:4701\"]"
                ),
                ("TRAINYARD_NODE__ADVERTISE", "\"node-a.cluster.local:4700\""),
            ])
            .is_ok()
        );
        let unspecified = load(&[
            ("TRAINYARD_NODE__COOKIE", "s3cret-of-16-chars"),
            ("TRAINYARD_NODE__ADVERTISE", "\"0.0.0.0:4700\""),
        ])
        .unwrap_err()
        .to_string();
        assert!(unspecified.contains("node.advertise"), "{unspecified}");
    }

    fn cluster_node(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut env = vec![(
            "TRAINYARD_STORE__URL".to_string(),
            "redis://127.0.0.1:6379/0".to_string(),
        )];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::load(None, env)
    }

    #[test]
    fn off_loopback_a_cookie_needs_16_characters() {
        let short = cluster_node(&[
            ("TRAINYARD_NODE__COOKIE", "s3cret-15-chars"),
            ("TRAINYARD_NODE__LISTEN", "\"10.1.2.3:4700\""),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            short.contains("node.cookie is 15 characters long") && short.contains("at least 16"),
            "{short}"
        );
        assert!(
            cluster_node(&[
                ("TRAINYARD_NODE__COOKIE", "s3cret-16-chars!"),
                ("TRAINYARD_NODE__LISTEN", "\"0.0.0.0:4700\""),
            ])
            .is_ok()
        );
        assert!(
            cluster_node(&[("TRAINYARD_NODE__COOKIE", "short")]).is_ok(),
            "loopback may use a short one"
        );
    }

    #[test]
    fn tls_keys_go_together() {
        let text = |extra: &[(&str, &str)]| {
            cluster_node(&[&[("TRAINYARD_NODE__COOKIE", "c")], extra].concat())
                .unwrap_err()
                .to_string()
        };
        assert!(text(&[("TRAINYARD_HTTP__TLS_CERT", "c.pem")]).contains("http.tls_cert"));
        assert!(text(&[("TRAINYARD_NODE__TLS_CA", "ca.pem")]).contains("node.tls_cert"));
        assert!(text(&[("TRAINYARD_STORE__TLS_CA", "ca.pem")]).contains("rediss://"));
        assert!(
            cluster_node(&[
                ("TRAINYARD_NODE__COOKIE", "c"),
                ("TRAINYARD_STORE__URL", "rediss://127.0.0.1:6379/0"),
                ("TRAINYARD_STORE__TLS_CA", "ca.pem"),
            ])
            .is_ok()
        );
    }
}
