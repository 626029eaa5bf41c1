//! Health: `GET /healthz` (liveness: the process serves; it never asks the store, so a Redis
//! outage does not get every node restarted), `GET /readyz` (readiness: the store answers, a
//! trainer of this node is up, the node neither drains nor stops; 503 with the reasons
//! otherwise), and the old API's `GET /cluster/health` and `GET /celery/health`.
//!
//! The store is asked at most once per [`HEALTH_TTL`] per node, however many callers ask: health is open to anyone, and a flood of health checks must not load the store
//! or delay lease renewals. Callers that come while it is being computed wait for that answer.
//!
//! Which trainers are up is the trainer process group's to say; whether each is busy, the
//! store's leases' (the same read as `/cluster/nodes`), so the answer holds one view of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::{json as reply_json, with_status};

use super::Api;
use super::handlers::{Reply_, cluster_view};
use crate::actors::{device_of, groups};
use crate::api::{Liveness, SeatState, TrainerView};
use crate::store::Store;
use crate::training::{DeviceClass, DeviceSpec};

/// How long a computed health answer is served before it is computed again.
pub const HEALTH_TTL: Duration = Duration::from_secs(1);

/// A trainer as the health endpoint shows it.
#[derive(Debug, Clone, Serialize)]
struct TrainerInfo {
    name: String,
    device: String,
    /// `idle`, `busy` or `down`, as the store's leases and announcements say; `unknown` while
    /// the store does not answer.
    state: String,
    task_id: Option<Value>,
}

/// The node's latest health, shared by every health route.
#[derive(Default)]
pub struct HealthCache {
    latest: Mutex<Option<(Instant, Arc<Health>)>>,
}

/// One computation of the node's health.
pub struct Health {
    /// What `/cluster/health` answers.
    cluster: Value,
    healthy: bool,
    /// Why the node is not ready; empty when it is.
    not_ready: Vec<String>,
    /// What `/readyz` shows beside the reasons.
    checks: Value,
    /// The devices of the trainers of live nodes that take work.
    devices: Vec<DeviceSpec>,
}

impl HealthCache {
    /// The latest health, computed again when older than [`HEALTH_TTL`].
    async fn get<S: Store>(&self, api: &Api<S>) -> Arc<Health> {
        let mut latest = self.latest.lock().await;
        if let Some((at, health)) = latest.as_ref()
            && at.elapsed() < HEALTH_TTL
        {
            return health.clone();
        }
        let health = Arc::new(compute(api).await);
        *latest = Some((Instant::now(), health.clone()));
        health
    }
}

async fn compute<S: Store>(api: &Api<S>) -> Health {
    let store = api.store.ping().await;
    let depth = match &store {
        Ok(()) => api.store.queue_depth().await.ok(),
        Err(_) => None,
    };
    let view = match &store {
        Ok(()) => cluster_view(api).await.ok(),
        Err(_) => None,
    };
    let seats: Vec<&TrainerView> = view
        .iter()
        .flat_map(|v| &v.nodes)
        .flat_map(|n| &n.trainers)
        .collect();
    let mut trainers: Vec<TrainerInfo> = groups::trainers()
        .into_iter()
        .filter_map(|cell| {
            let name = cell.get_name()?;
            let device = device_of(&name)?.to_string();
            let seat = seats.iter().find(|seat| seat.name == name);
            let (state, task_id) = match (&view, seat) {
                (None, _) => ("unknown".to_string(), None),
                (Some(_), Some(seat)) => (
                    seat.state.as_str().to_string(),
                    seat.task_id.map(|id| json!(id)),
                ),
                // Joined the group before its node's first announcement was read.
                (Some(_), None) => ("idle".to_string(), None),
            };
            Some(TrainerInfo {
                name,
                device,
                state,
                task_id,
            })
        })
        .collect();
    trainers.sort_by(|a, b| a.name.cmp(&b.name));
    let this_node = view
        .as_ref()
        .and_then(|v| v.nodes.iter().find(|n| n.name == api.node));
    let draining = this_node.is_some_and(|n| n.draining);
    let cluster = view.as_ref().map(|v| {
        let alive = v.nodes.iter().filter(|n| n.alive).count();
        let connected = v.nodes.iter().filter(|n| n.connected).count();
        let in_state = |s: SeatState| seats.iter().filter(|t| t.state == s).count();
        json!({
            "leader": v.leader,
            "nodes": v.nodes.len(),
            "alive": alive,
            "connected": connected,
            "trainers": seats.len(),
            "idle": in_state(SeatState::Idle),
            "busy": in_state(SeatState::Busy),
            "down": in_state(SeatState::Down),
        })
    });
    let devices = view
        .iter()
        .flat_map(|v| &v.nodes)
        .filter(|n| n.alive && !n.draining)
        .flat_map(|n| &n.trainers)
        .filter_map(|t| t.device.parse().ok())
        .collect();
    let prefix = format!("{}/", api.node);
    let local_trainers = trainers
        .iter()
        .filter(|t| t.name.starts_with(&prefix))
        .count();
    let store_text = match &store {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };

    let mut not_ready = Vec::new();
    if let Err(e) = &store {
        not_ready.push(format!("store unreachable: {e}"));
    }
    if local_trainers == 0 {
        not_ready.push("no trainer of this node is up".to_string());
    }
    if draining {
        not_ready.push("the node is draining".to_string());
    }
    // The node's stop, which its actors see too.
    let stopping = *api.stopping.borrow();
    if stopping {
        not_ready.push("the node is stopping".to_string());
    }
    let healthy = store.is_ok() && !trainers.is_empty();
    Health {
        cluster: json!({
            "success": healthy,
            "status": if healthy { "healthy" } else { "unhealthy" },
            "node": api.node,
            "store": store_text,
            "queue_depth": depth,
            "workers": trainers.len(),
            "trainers": trainers,
            "cluster": cluster,
            // The old service's fields, with their old meaning: the queue's store reachable,
            // and a worker (here: a trainer) answering.
            "celery_status": if store.is_ok() { "connected" } else { "disconnected" },
            "worker_response": if healthy {
                json!({"status": "healthy", "message": "Celery worker is operational"})
            } else if store.is_err() {
                json!({"status": "unhealthy", "message": format!("the store is unreachable: {store_text}")})
            } else {
                json!({"status": "unhealthy", "message": "no trainer is up in the cluster"})
            },
        }),
        healthy,
        checks: json!({
            "store": store_text,
            "local_trainers": local_trainers,
            "draining": draining,
            "stopping": stopping,
        }),
        not_ready,
        devices,
    }
}

/// Why a queued task that asks for `device` waits, when no live node that takes work offers
/// that kind of device (as Ray shows a pending task's reason); None while one does.
pub async fn waiting_for<S: Store>(api: &Api<S>, device: DeviceClass) -> Option<String> {
    if device == DeviceClass::Any {
        return None;
    }
    let health = api.health.get(api).await;
    let offered = health.devices.iter().any(|d| device.accepts(d));
    (!offered).then(|| format!("{}: no node offers it", device.as_str()))
}

/// `GET /cluster/health` (and `/celery/health`): the store, the queue, and a summary of the
/// cluster: nodes alive and connected, trainers idle and busy, the leader.
pub async fn cluster<S: Store>(api: Arc<Api<S>>) -> Reply_ {
    let health = api.health.get(&api).await;
    let status = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(with_status(reply_json(&health.cluster), status).into_response())
}

/// `GET /healthz`: the process serves. Asks nothing of the store or the actors.
pub async fn live<S: Store>(api: Arc<Api<S>>) -> Reply_ {
    Ok(reply_json(&Liveness {
        status: "ok",
        node: &api.node,
    })
    .into_response())
}

/// `GET /readyz`: 200 when the node can take work, else 503 with every reason.
pub async fn ready<S: Store>(api: Arc<Api<S>>) -> Reply_ {
    let health = api.health.get(&api).await;
    let ready = health.not_ready.is_empty();
    let answer = json!({
        "ready": ready,
        "status": if ready { "ready" } else { "not_ready" },
        "node": api.node,
        "reasons": health.not_ready,
        "checks": health.checks,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(with_status(reply_json(&answer), status).into_response())
}
