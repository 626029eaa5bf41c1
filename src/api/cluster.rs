//! The cluster routes' answers: `GET /cluster/nodes`, drain and resume, `DELETE /queue`, and
//! the health routes (`/cluster/health`, `/celery/health`, `/healthz`, `/readyz`).

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// What a trainer seat is doing, as `GET /cluster/nodes` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeatState {
    Idle,
    Busy,
    /// Its node stopped announcing itself.
    Down,
}

impl SeatState {
    /// The state as the answers write it.
    pub fn as_str(self) -> &'static str {
        match self {
            SeatState::Idle => "idle",
            SeatState::Busy => "busy",
            SeatState::Down => "down",
        }
    }
}

/// One trainer of a node.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrainerView {
    #[schema(example = "node-a/cpu-0")]
    pub name: String,
    #[schema(example = "cpu")]
    pub device: String,
    pub state: SeatState,
    /// The task it runs, if busy.
    pub task_id: Option<Uuid>,
}

/// One node of the cluster.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NodeView {
    #[schema(example = "node-a")]
    pub name: String,
    /// Its HTTP address.
    #[schema(example = "127.0.0.1:5000")]
    pub http: String,
    /// Its cluster (node server) address.
    #[schema(example = "127.0.0.1:4700")]
    pub cluster: String,
    /// Whether the node answering is connected to it (always true for itself).
    pub connected: bool,
    /// Whether it announced itself lately.
    pub alive: bool,
    pub leader: bool,
    /// Whether it gets no new work.
    pub draining: bool,
    /// Draining, and no task of it runs any more.
    pub drained: bool,
    /// Seconds since it last announced itself.
    pub last_seen_s: f64,
    pub trainers: Vec<TrainerView>,
}

/// The answer of `GET /cluster/nodes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodesAnswer<'a> {
    pub success: bool,
    /// The node that answered.
    pub node: &'a str,
    /// The node that holds the leader lease, if one does.
    pub leader: Option<&'a str>,
    pub nodes: &'a [NodeView],
}

/// The answer of `POST /cluster/nodes/{name}/{action}` (202).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"success": true, "node": "node-b", "draining": true,
    "message": "node node-b gets no new work; its running tasks finish"}))]
pub struct DrainAnswer {
    pub success: bool,
    pub node: String,
    pub draining: bool,
    pub message: String,
}

/// The answer of `DELETE /queue`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"success": true, "purged": 3, "message": "3 pending tasks revoked"}))]
pub struct PurgeAnswer {
    pub success: bool,
    /// Pending tasks revoked.
    pub purged: u64,
    pub message: String,
}

/// The answer of `GET /healthz`: the process answers.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok", "node": "node-a"}))]
pub struct Liveness<'a> {
    pub status: &'static str,
    pub node: &'a str,
}

/// The answer of `GET /cluster/health` and `GET /celery/health` (200 when healthy, else 503):
/// the store, the queue, the trainers, the cluster's counts, and the old service's fields
/// (`celery_status`, `worker_response`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"success": true, "status": "healthy", "node": "node-a", "store": "ok",
    "queue_depth": 0, "workers": 2, "celery_status": "connected",
    "worker_response": {"status": "healthy", "message": "Celery worker is operational"}}))]
pub struct ClusterHealth {
    pub success: bool,
    /// healthy or unhealthy.
    pub status: String,
    pub node: String,
    /// ok, or why the store is unreachable.
    pub store: String,
    pub queue_depth: Option<u64>,
    /// Trainers up in the cluster.
    pub workers: u64,
    /// The trainers up in the cluster: `{name, device, ...}`.
    #[schema(value_type = Vec<Object>)]
    pub trainers: Vec<serde_json::Value>,
    /// The cluster's counts (nodes, alive, connected, trainers, idle, busy, down) and leader;
    /// null while the store is unreachable.
    #[schema(value_type = Option<Object>)]
    pub cluster: Option<serde_json::Value>,
    /// The old service's field: connected while the store (its broker) is reachable, else
    /// disconnected.
    pub celery_status: String,
    /// The old service's worker answer: `{status, message}`.
    #[schema(value_type = Object)]
    pub worker_response: serde_json::Value,
}

/// The answer of `GET /readyz` (200 when ready, else 503).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"ready": true, "status": "ready", "node": "node-a", "reasons": [],
    "checks": {}}))]
pub struct Readiness {
    pub ready: bool,
    /// ready or not_ready.
    pub status: String,
    pub node: String,
    /// Why the node is not ready (store, trainers, draining, stopping).
    pub reasons: Vec<String>,
    #[schema(value_type = Object)]
    pub checks: serde_json::Value,
}
