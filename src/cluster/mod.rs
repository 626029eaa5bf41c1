//! Cluster membership: every node runs a ractor_cluster `NodeServer`, dials the peers named in
//! its config and the nodes the store lists (one side of each pair), and redials them when
//! they go. Work messages go to the leader's dispatcher alone (the `leaders` group).
//!
//! Trainers and dispatchers join process groups (names below, in one place); the groups are
//! synced across nodes, so the leading dispatcher sees every trainer of the cluster. What crosses
//! nodes is small: task ids, attempt numbers and trainer names, encoded by [`codec`]. Data sets
//! and models stay in the store.
//!
//! This module is untyped: it knows actors as `ActorCell`s and no actor's messages. The typed
//! lookups (the trainer named so, every dispatcher) live in `crate::actors::groups`.

pub mod address;
pub mod codec;
mod membership;

use ractor::ActorCell;

pub use membership::{
    AUTH_TIMEOUT, ClusterTls, MAX_PENDING, MAX_PENDING_PER_IP, Membership, start,
};

/// The process-group scope of trainyard's actors.
pub const SCOPE: &str = "trainyard";
/// Group of every trainer in the cluster.
pub const TRAINERS: &str = "trainers";
/// Group of every node's dispatcher.
pub const DISPATCHERS: &str = "dispatchers";
/// Group of the dispatcher of the node that leads (two for a moment while the lease moves,
/// none between leaders): what wakes dispatching goes there, not to every node.
pub const LEADERS: &str = "leaders";

/// Largest inbound frame a node accepts from a peer. Cluster messages carry ids only, so a
/// bigger frame is a bug or an attack; ractor_cluster drops the session that sends one.
pub const MAX_FRAME_BYTES: u64 = 1 << 20;

/// Every member of `group`, on every node.
pub fn members(group: &str) -> Vec<ActorCell> {
    ractor::pg::get_scoped_members(&SCOPE.to_string(), &group.to_string())
}

/// Adds an actor of this node to `group`.
pub fn join(group: &str, actor: ActorCell) {
    ractor::pg::join_scoped(SCOPE.to_string(), group.to_string(), vec![actor]);
}

/// Takes an actor of this node out of `group`.
pub fn leave(group: &str, actor: ActorCell) {
    ractor::pg::leave_scoped(SCOPE.to_string(), group.to_string(), vec![actor]);
}
