//! What the nodes of a cluster share through the store: the [`ClusterState`] role.

use std::future::Future;

use serde::{Deserialize, Serialize};

use super::StoreError;

/// The node of a trainer: trainer names are `node/device-N` (see `actors::trainer_name`);
/// a name without a node is its own.
pub fn trainer_node(trainer: &str) -> &str {
    trainer.split_once('/').map_or(trainer, |(node, _)| node)
}

/// A node as it announces itself in the store, about every second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// The HTTP address (REST, SSE, panel, metrics).
    pub http: String,
    /// The cluster address (ractor_cluster), empty on a node without a cluster.
    pub cluster: String,
    pub trainers: Vec<TrainerSeat>,
    pub started_at: f64,
    /// When it last announced itself (Unix seconds).
    pub seen_at: f64,
    /// Takes no new work.
    pub draining: bool,
}

/// A trainer a node runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerSeat {
    pub name: String,
    pub device: String,
}

/// How long a node that stopped announcing itself is still listed (as disconnected).
pub const NODE_MEMORY_S: f64 = 600.0;
/// A node that has not announced itself (every second) for this long is taken for down.
pub const NODE_STALE_S: f64 = 5.0;

/// What the nodes share: the leader lease, their announcements, the drain flags, and whether
/// the store answers at all.
pub trait ClusterState: Send + Sync + 'static {
    /// Takes or renews the leader lease for `node` for `ttl_s`; true if `node` leads now.
    fn lead(&self, node: &str, ttl_s: f64)
    -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The node holding the leader lease.
    fn leader(&self) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Records (or refreshes) a node's announcement.
    fn announce(&self, node: &NodeInfo) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every node that announced itself in the last `NODE_MEMORY_S`, by name.
    fn nodes(&self) -> impl Future<Output = Result<Vec<NodeInfo>, StoreError>> + Send;
    /// Marks node `name` as draining (it gets no new work) or, with `false`, takes it back.
    fn set_draining(
        &self,
        name: &str,
        draining: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The nodes marked as draining.
    fn draining(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
