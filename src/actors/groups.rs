//! The typed side of the process groups (`crate::cluster` holds their names and knows actors
//! only as cells): trainers and dispatchers join their group, and are found in it, here.

use ractor::{ActorCell, ActorRef};

use super::{DispatcherMsg, TrainerMsg};
use crate::cluster::{self, DISPATCHERS, LEADERS, TRAINERS};

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

/// Puts this node's dispatcher in the leader group while it leads, and takes it out when it
/// stops leading (a stopped actor leaves its groups by itself).
pub fn set_leading(dispatcher: ActorCell, leading: bool) {
    if leading {
        cluster::join(LEADERS, dispatcher);
    } else {
        cluster::leave(LEADERS, dispatcher);
    }
}

/// Sends `msg` to the leading node's dispatcher, the only one that acts on work messages, and
/// to this node's own (which keeps its trainers' gauges); to every node's dispatcher while no
/// dispatcher is in the leader group (between two leaders). One message per submission or
/// idle trainer, not one per node: with every node told, a cluster of N nodes and T trainers
/// sent N messages for each, and each non-leader walked its T trainers for each.
pub fn tell_dispatchers(msg: impl Fn() -> DispatcherMsg) {
    for cell in dispatchers_to_tell() {
        let _ = ActorRef::<DispatcherMsg>::from(cell).cast(msg());
    }
}

/// The dispatchers [`tell_dispatchers`] tells: the leader group's and the local ones, or all.
fn dispatchers_to_tell() -> Vec<ActorCell> {
    let leaders = cluster::members(LEADERS);
    let all = cluster::members(DISPATCHERS);
    if leaders.is_empty() {
        return all;
    }
    let local: Vec<ActorCell> = all
        .into_iter()
        .filter(|cell| cell.get_id().is_local())
        .filter(|cell| leaders.iter().all(|l| l.get_id() != cell.get_id()))
        .collect();
    leaders.into_iter().chain(local).collect()
}

#[cfg(test)]
mod tests {
    use ractor::{Actor, ActorProcessingErr, ActorRef};

    use super::*;

    struct Sink;

    impl Actor for Sink {
        type Msg = DispatcherMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn wake_ups_go_to_the_leader_and_to_every_node_between_leaders() {
        let (a, _) = Actor::spawn(None, Sink, ()).await.unwrap();
        let (b, _) = Actor::spawn(None, Sink, ()).await.unwrap();
        join_dispatchers(a.get_cell());
        join_dispatchers(b.get_cell());
        // Only these two: other tests of this process may have dispatchers too.
        let ours = [a.get_id(), b.get_id()];
        let told = || {
            let mut ids: Vec<_> = dispatchers_to_tell()
                .iter()
                .map(|c| c.get_id())
                .filter(|id| ours.contains(id))
                .collect();
            ids.sort();
            ids
        };
        let mut both = vec![a.get_id(), b.get_id()];
        both.sort();
        // No leader: every dispatcher.
        assert_eq!(told(), both);
        // A leads: it, and the local ones (both, here), each once.
        set_leading(a.get_cell(), true);
        assert_eq!(told(), both);
        let leads = |id| cluster::members(LEADERS).iter().any(|c| c.get_id() == id);
        assert!(leads(a.get_id()) && !leads(b.get_id()));
        set_leading(a.get_cell(), false);
        assert!(!leads(a.get_id()));
        assert_eq!(told(), both);
        a.stop(None);
        b.stop(None);
    }
}
