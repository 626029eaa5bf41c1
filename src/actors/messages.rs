//! The actors' messages. Those that cross nodes (`Train`, `Cancel`, `Poll`, `TrainerIdle`) have
//! a plain wire form encoded by [`crate::cluster::codec`]; the rest stay on their node.

use ractor::RpcReplyPort;
use ractor::message::BoxedDowncastErr;
use ractor::message::SerializedMessage;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cluster::codec;
use crate::store::{TaskProgress, TaskRecord};
use crate::training::{TrainError, TrainOutcome};

pub enum TrainerMsg {
    /// Run attempt `attempt` of task `id`, which the leader claimed for this trainer.
    /// `stored`: the claimed record as the store keeps it (`Claimed::stored`), so the trainer
    /// need not read it; None when the store has none or it is too big to send.
    Train {
        id: Uuid,
        attempt: u32,
        stored: Option<String>,
    },
    /// Stop task `id` if it is the one running.
    Cancel { id: Uuid },
    /// Attempt `attempt` of `id` reached its hard time limit of `after_s` (local).
    HardLimit {
        id: Uuid,
        attempt: u32,
        after_s: f64,
    },
    /// The training of `task` ended (local). `last_progress`: a success's last report, not
    /// written yet (the finish writes it with the result).
    /// `stored`: the record as the store keeps it, if nothing this attempt wrote has changed
    /// it since the claim.
    Ended {
        task: Box<TaskRecord>,
        outcome: Ended,
        last_progress: Option<TaskProgress>,
        stored: Option<String>,
    },
}

pub enum Ended {
    Done(Result<TrainOutcome, TrainError>),
    /// The training thread panicked.
    Panicked(String),
}

pub enum DispatcherMsg {
    /// Look for queued work now (a task was submitted, or the poll timer fired).
    Poll,
    /// A trainer is done with task `done` and idle.
    TrainerIdle { trainer: String, done: Uuid },
    /// Stop handing out work and leading (the node is shutting down) (local).
    Drain,
    /// The trainers this dispatcher knows and what they do (local).
    Trainers(RpcReplyPort<Vec<TrainerInfo>>),
}

/// A trainer as the health endpoint shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TrainerInfo {
    pub name: String,
    pub device: String,
    /// `idle` or `busy`.
    pub state: &'static str,
    pub task_id: Option<Uuid>,
}

pub enum SupervisorMsg {
    /// Start trainer `index` again after its backoff.
    Respawn { index: usize },
}

impl ractor::Message for SupervisorMsg {}

#[derive(Serialize, Deserialize)]
enum TrainerWire {
    Train {
        id: Uuid,
        attempt: u32,
        stored: Option<String>,
    },
    Cancel {
        id: Uuid,
    },
}

#[derive(Serialize, Deserialize)]
enum DispatcherWire {
    Poll,
    TrainerIdle { trainer: String, done: Uuid },
}

impl ractor::Message for TrainerMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        let wire = match self {
            TrainerMsg::Train {
                id,
                attempt,
                stored,
            } => TrainerWire::Train {
                id,
                attempt,
                stored,
            },
            TrainerMsg::Cancel { id } => TrainerWire::Cancel { id },
            TrainerMsg::Ended { .. } | TrainerMsg::HardLimit { .. } => {
                return Err(BoxedDowncastErr);
            }
        };
        codec::to_cast(&wire)
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        Ok(match codec::from_cast(message)? {
            TrainerWire::Train {
                id,
                attempt,
                stored,
            } => TrainerMsg::Train {
                id,
                attempt,
                stored,
            },
            TrainerWire::Cancel { id } => TrainerMsg::Cancel { id },
        })
    }
}

impl ractor::Message for DispatcherMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        let wire = match self {
            DispatcherMsg::Poll => DispatcherWire::Poll,
            DispatcherMsg::TrainerIdle { trainer, done } => {
                DispatcherWire::TrainerIdle { trainer, done }
            }
            DispatcherMsg::Drain | DispatcherMsg::Trainers(_) => return Err(BoxedDowncastErr),
        };
        codec::to_cast(&wire)
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        Ok(match codec::from_cast(message)? {
            DispatcherWire::Poll => DispatcherMsg::Poll,
            DispatcherWire::TrainerIdle { trainer, done } => {
                DispatcherMsg::TrainerIdle { trainer, done }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_node_messages_survive_the_wire_and_local_ones_refuse_it() {
        use ractor::Message;
        let id = Uuid::new_v4();
        for stored in [None, Some("{\"id\": 1}".to_string())] {
            let wire = TrainerMsg::Train {
                id,
                attempt: 2,
                stored: stored.clone(),
            }
            .serialize()
            .unwrap();
            match TrainerMsg::deserialize(wire).unwrap() {
                TrainerMsg::Train {
                    id: got,
                    attempt,
                    stored: got_stored,
                } => assert_eq!((got, attempt, got_stored), (id, 2, stored)),
                _ => panic!("wrong variant"),
            }
        }
        let done = uuid::Uuid::new_v4();
        let wire = DispatcherMsg::TrainerIdle {
            trainer: "node-b/cpu-0".into(),
            done,
        }
        .serialize()
        .unwrap();
        match DispatcherMsg::deserialize(wire).unwrap() {
            DispatcherMsg::TrainerIdle { trainer, done: got } => {
                assert_eq!((trainer.as_str(), got), ("node-b/cpu-0", done))
            }
            _ => panic!("wrong variant"),
        }
        assert!(DispatcherMsg::Drain.serialize().is_err());
    }
}
