//! Cluster membership: every node runs a ractor_cluster `NodeServer`, dials the peers named in
//! its config (and redials them when they go), and learns every other node transitively.
//!
//! Trainers and dispatchers join process groups (names below, in one place); the groups are
//! synced across nodes, so the leading dispatcher sees every trainer of the cluster. What crosses
//! nodes is small: task ids, attempt numbers and trainer names, encoded by [`codec`]. Data sets
//! and models stay in the store.

pub mod address;
pub mod codec;
mod membership;

use ractor::{ActorCell, ActorRef};

pub use membership::{
    AUTH_TIMEOUT, ClusterTls, MAX_PENDING, MAX_PENDING_PER_IP, Membership, start,
};

use crate::actors::{DispatcherMsg, TrainerMsg};

/// The process-group scope of trainyard's actors.
pub const SCOPE: &str = "trainyard";
/// Group of every trainer in the cluster.
pub const TRAINERS: &str = "trainers";
/// Group of every node's dispatcher.
pub const DISPATCHERS: &str = "dispatchers";

/// Largest inbound frame a node accepts from a peer. Cluster messages carry ids only, so a
/// bigger frame is a bug or an attack; ractor_cluster drops the session that sends one.
pub const MAX_FRAME_BYTES: u64 = 1 << 20;

fn members(group: &str) -> Vec<ActorCell> {
    ractor::pg::get_scoped_members(&SCOPE.to_string(), &group.to_string())
}

/// Adds an actor of this node to `group`.
pub fn join(group: &str, actor: ActorCell) {
    ractor::pg::join_scoped(SCOPE.to_string(), group.to_string(), vec![actor]);
}

/// Every trainer in the cluster, local and remote.
pub fn trainers() -> Vec<ActorCell> {
    members(TRAINERS)
}

/// The trainer named `name`, on whichever node it runs.
pub fn trainer(name: &str) -> Option<ActorRef<TrainerMsg>> {
    trainers()
        .into_iter()
        .find(|cell| cell.get_name().as_deref() == Some(name))
        .map(ActorRef::from)
}

/// Sends `msg` to every node's dispatcher (only the leader acts on work messages).
pub fn tell_dispatchers(msg: impl Fn() -> DispatcherMsg) {
    for cell in members(DISPATCHERS) {
        let _ = ActorRef::<DispatcherMsg>::from(cell).cast(msg());
    }
}
