//! The actors' messages. Those that cross nodes (`Train`, `Cancel`, `Poll`, `TrainerIdle`) have
//! a plain wire form encoded by [`crate::cluster::codec`]; the rest stay on their node.

use ractor::message::BoxedDowncastErr;
use ractor::message::SerializedMessage;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cluster::codec;
use crate::store::{CasToken, Claimed, TaskProgress, TaskRecord};
use crate::training::{TrainError, TrainOutcome};

pub enum TrainerMsg {
    /// Run attempt `attempt` of task `id`, which the leader claimed for this trainer.
    /// `stored`: the claimed record as the store keeps it (`Claimed::stored`), so the trainer
    /// need not read it; None when the store has none or it is too big to send.
    /// Until `run_on_until` (`now_s` time; the leader's lease bounds it), a trainer that
    /// succeeds may claim its next task itself, as it writes the result (see `Store::claim_and_finish`).
    Train {
        id: Uuid,
        attempt: u32,
        stored: Option<CasToken>,
        run_on_until: f64,
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
        stored: Option<CasToken>,
        /// The attempt resumed from a checkpoint or saved one: the task's end drops it.
        checkpointed: bool,
    },
    /// Renew the leases of the tasks claimed ahead, if any wait (local, on a timer): a quick
    /// training that runs long must not let them run out.
    RenewAhead,
    /// A claim ahead this trainer sent has answered (local): the task it claimed, if any, for
    /// the run that began with task `given` and may claim on until `run_on_until`.
    ClaimedAhead {
        next: Option<Box<Claimed>>,
        given: Uuid,
        run_on_until: f64,
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
    /// A trainer is done with task `done` and idle; `given` is the task a dispatcher sent it
    /// that it ran on from (`done` itself if it did not).
    TrainerIdle {
        trainer: String,
        done: Uuid,
        given: Uuid,
    },
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
        stored: Option<CasToken>,
        run_on_until: f64,
    },
    Cancel {
        id: Uuid,
    },
}

#[derive(Serialize, Deserialize)]
enum DispatcherWire {
    Poll,
    TrainerIdle {
        trainer: String,
        done: Uuid,
        given: Uuid,
    },
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
                run_on_until,
            } => TrainerWire::Train {
                id,
                attempt,
                stored,
                run_on_until,
            },
            TrainerMsg::Cancel { id } => TrainerWire::Cancel { id },
            TrainerMsg::Ended { .. }
            | TrainerMsg::HardLimit { .. }
            | TrainerMsg::RenewAhead
            | TrainerMsg::ClaimedAhead { .. } => {
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
                run_on_until,
            } => TrainerMsg::Train {
                id,
                attempt,
                stored,
                run_on_until,
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
            DispatcherMsg::TrainerIdle {
                trainer,
                done,
                given,
            } => DispatcherWire::TrainerIdle {
                trainer,
                done,
                given,
            },
        };
        codec::to_cast(&wire)
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        Ok(match codec::from_cast(message)? {
            DispatcherWire::Poll => DispatcherMsg::Poll,
            DispatcherWire::TrainerIdle {
                trainer,
                done,
                given,
            } => DispatcherMsg::TrainerIdle {
                trainer,
                done,
                given,
            },
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
        let token: CasToken = serde_json::from_str("\"{\\\"id\\\": 1}\"").unwrap();
        for stored in [None, Some(token)] {
            let wire = TrainerMsg::Train {
                id,
                attempt: 2,
                stored: stored.clone(),
                run_on_until: 12.5,
            }
            .serialize()
            .unwrap();
            match TrainerMsg::deserialize(wire).unwrap() {
                TrainerMsg::Train {
                    id: got,
                    attempt,
                    stored: got_stored,
                    run_on_until,
                } => assert_eq!(
                    (got, attempt, got_stored, run_on_until),
                    (id, 2, stored, 12.5)
                ),
                _ => panic!("wrong variant"),
            }
        }
        let done = uuid::Uuid::new_v4();
        let given = uuid::Uuid::new_v4();
        let wire = DispatcherMsg::TrainerIdle {
            trainer: "node-b/cpu-0".into(),
            done,
            given,
        }
        .serialize()
        .unwrap();
        match DispatcherMsg::deserialize(wire).unwrap() {
            DispatcherMsg::TrainerIdle {
                trainer,
                done: got,
                given: got_given,
            } => assert_eq!(
                (trainer.as_str(), got, got_given),
                ("node-b/cpu-0", done, given)
            ),
            _ => panic!("wrong variant"),
        }
        assert!(TrainerMsg::RenewAhead.serialize().is_err());
    }
}
