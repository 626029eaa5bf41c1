//! The config's sections, one struct each, with their defaults.

use serde::{Deserialize, Serialize};

use super::values::{Cidr, Role};
use super::{ConfigError, one_or_many};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub listen: String,
    /// A bearer token with the admin role (named "token" in logs); see also `tokens`.
    pub token: String,
    /// Bearer tokens, each with a name and a role.
    #[serde(skip_serializing)]
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
    pub fn trusted_proxies(&self) -> Result<Vec<Cidr>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|c| c.parse())
            .collect::<Result<_, String>>()
            .map_err(|e| ConfigError::Invalid(vec![format!("http.trusted_proxies: {e}")]))
    }
}

/// How the node writes its log (to standard error).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object a line, for log collectors: the event's fields, those of its spans
    /// (`task_id`, `trainer`) and the node's name.
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` or `json` (`--log-format` overrides it). Levels: `RUST_LOG`.
    pub format: LogFormat,
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

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainersSection {
    /// `"auto"`, or a list such as `["gpu:0", "gpu:1", "cpu"]`.
    #[serde(deserialize_with = "one_or_many")]
    pub devices: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
    /// How long an ended task's event history is kept (at most `result_expires_s`):
    /// `Last-Event-ID` resumes within it, and later a stream gives the final state alone.
    pub history_after_end_s: f64,
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
    /// Seconds between two checkpoints of a running training (taken at an epoch's end, or a
    /// booster's for trees, and at a node's graceful stop); 0: at every one.
    pub checkpoint_every_s: f64,
    /// Largest checkpoint kept, in bytes; a larger one is not kept (logged and counted in
    /// `trainyard_checkpoints_total{outcome="too_large"}`). 0: no checkpoints.
    pub checkpoint_max_bytes: u64,
    /// Most schedules the cluster keeps; `POST /schedules` past it is refused (409
    /// `too_many_schedules`). 0: none may be created.
    pub max_schedules: u64,
    /// Most sweeps the cluster keeps, running or ended and not yet expired (an ended sweep
    /// is kept `result_expires_s`); `POST /sweeps` past it is refused (409 `too_many_sweeps`).
    pub max_sweeps: u64,
    /// Most parameters (weights, or tree nodes) one model of a task may have.
    pub max_parameters: u64,
    /// Most bytes of working memory one training may need, as estimated before the task is
    /// stored (weights, optimizer state, activations of a batch, the data).
    pub max_working_bytes: u64,
    /// Bytes of decoded models this node keeps for `POST /models/{id}/predict` (the least
    /// used go first; a model larger than this is not kept); 0: none.
    pub model_cache_bytes: u64,
    /// Accept tasks of the `noop` model type (they train nothing: for benchmarks).
    pub allow_noop: bool,
    /// Most training requests one batch submission (`POST /tasks`) may hold.
    pub max_batch: u64,
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
            history_after_end_s: 600.0,
            max_retries: 3,
            queue_limit: 100_000,
            shutdown_grace_s: 30.0,
            lease_s: 5.0,
            retry_backoff_s: 1.0,
            retry_backoff_max_s: 60.0,
            claim_ahead_under_s: 0.01,
            checkpoint_every_s: 30.0,
            checkpoint_max_bytes: 64 << 20,
            max_schedules: 1000,
            max_sweeps: 100,
            max_parameters: 50_000_000,
            max_working_bytes: 2 << 30,
            model_cache_bytes: 256 << 20,
            allow_noop: false,
            max_batch: 1_000,
        }
    }
}
