//! The typed side of the process groups (`crate::cluster` holds their names and knows actors
//! only as cells): trainers and dispatchers join their group, and are found in it, here.

use ractor::{ActorCell, ActorRef};

use super::{DispatcherMsg, TrainerMsg};
use crate::cluster::{self, DISPATCHERS, TRAINERS};

/// Adds a trainer of this node to the cluster's trainer group.
pub fn join_trainers(trainer: ActorCell) {
    cluster::join(TRAINERS, trainer);
}

/// Adds this node's dispatcher to the cluster's dispatcher group.
pub fn join_dispatchers(dispatcher: ActorCell) {
    cluster::join(DISPATCHERS, dispatcher);
}

/// Every trainer in the cluster, local and remote.
pub fn trainers() -> Vec<ActorCell> {
    cluster::members(TRAINERS)
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
    for cell in cluster::members(DISPATCHERS) {
        let _ = ActorRef::<DispatcherMsg>::from(cell).cast(msg());
    }
}
