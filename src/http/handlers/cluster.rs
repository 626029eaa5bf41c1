//! The cluster routes: `GET /cluster/nodes` (and the view of the cluster that health reads),
//! `POST /cluster/nodes/{name}/{drain|resume}` and `DELETE /queue`.

use std::sync::Arc;

use warp::Reply;
use warp::http::StatusCode;
use warp::reply::{json as reply_json, with_status};

use super::{Reply_, reject};
use crate::api::{DrainAnswer, NodeView, NodesAnswer, PurgeAnswer, SeatState, TrainerView};
use crate::http::{Api, ApiError};
use crate::store::{NODE_STALE_S, Store, now_s};

/// `GET /cluster/nodes`: every node, its addresses, whether this node is connected to it, its
/// trainers (device, idle, busy or down, current task), and which node leads.
pub async fn nodes<S: Store>(api: Arc<Api<S>>) -> Reply_ {
    let view = cluster_view(&api).await.map_err(reject)?;
    Ok(reply_json(&NodesAnswer {
        success: true,
        node: &api.node,
        leader: view.leader.as_deref(),
        nodes: &view.nodes,
    })
    .into_response())
}

pub(in crate::http) struct ClusterView {
    pub(in crate::http) leader: Option<String>,
    pub(in crate::http) nodes: Vec<NodeView>,
}

/// The cluster as the store and this node's sessions show it, the same from every node.
pub(in crate::http) async fn cluster_view<S: Store>(api: &Api<S>) -> Result<ClusterView, ApiError> {
    let known = api.store.nodes().await?;
    let leases = api.store.leases().await?;
    let draining = api.store.draining().await?;
    let leader = api.store.leader().await?;
    let peers = api.membership.connected();
    let now = now_s();
    let nodes = known
        .iter()
        .map(|n| {
            let alive = now - n.seen_at < NODE_STALE_S;
            let drain = n.draining || draining.contains(&n.name);
            let trainers: Vec<TrainerView> = n
                .trainers
                .iter()
                .map(|seat| {
                    let task = leases.iter().find(|l| l.trainer == seat.name).map(|l| l.id);
                    let state = match (alive, task) {
                        (false, _) => SeatState::Down,
                        (true, Some(_)) => SeatState::Busy,
                        (true, None) => SeatState::Idle,
                    };
                    TrainerView {
                        name: seat.name.clone(),
                        device: seat.device.clone(),
                        state,
                        task_id: task,
                    }
                })
                .collect();
            let busy = trainers.iter().any(|t| t.task_id.is_some());
            NodeView {
                name: n.name.clone(),
                http: n.http.clone(),
                cluster: n.cluster.clone(),
                connected: n.name == api.node || peers.contains(&n.name),
                alive,
                leader: leader.as_deref() == Some(n.name.as_str()),
                draining: drain,
                drained: drain && !busy,
                last_seen_s: ((now - n.seen_at) * 10.0).round() / 10.0,
                trainers,
            }
        })
        .collect();
    Ok(ClusterView { leader, nodes })
}

/// `DELETE /queue`: revokes every pending task (never drops one silently).
pub async fn purge<S: Store>(api: Arc<Api<S>>) -> Reply_ {
    let purged = api.store.purge().await.map_err(reject)?;
    tracing::warn!(purged, "queue purged by an operator");
    Ok(reply_json(&PurgeAnswer {
        success: true,
        purged,
        message: format!("{purged} pending tasks revoked"),
    })
    .into_response())
}

/// `POST /cluster/nodes/{name}/drain` and `/resume`: stop giving a node work (its running
/// tasks finish; `GET /cluster/nodes` shows it `drained` once they have), or take it back.
pub async fn drain<S: Store>(name: String, action: String, api: Arc<Api<S>>) -> Reply_ {
    let known = api.store.nodes().await.map_err(reject)?;
    if !known.iter().any(|n| n.name == name) {
        return Err(reject(ApiError::not_found(
            "node_not_found",
            format!("no node named {name:?} in the cluster"),
        )));
    }
    let draining = match action.as_str() {
        "drain" => true,
        "resume" => false,
        _ => {
            return Err(reject(ApiError::not_found(
                "not_found",
                format!("no such action {action:?}; use drain or resume"),
            )));
        }
    };
    api.store
        .set_draining(&name, draining)
        .await
        .map_err(reject)?;
    tracing::warn!(node = %name, draining, "drain state set by an operator");
    let message = if draining {
        format!("node {name} gets no new work; its running tasks finish")
    } else {
        format!("node {name} takes work again")
    };
    Ok(with_status(
        reply_json(&DrainAnswer {
            success: true,
            node: name,
            draining,
            message,
        }),
        StatusCode::ACCEPTED,
    )
    .into_response())
}
