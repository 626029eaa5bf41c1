//! The Dispatcher: knows the node's trainers and whether each is idle, claims the next queued
//! task from the store for every idle trainer, and routes cancels to the trainer running a task.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use uuid::Uuid;

use super::TrainerMsg;
use crate::store::Store;
use crate::telemetry;
use crate::training::DeviceSpec;

/// How often the dispatcher looks at the queue when nothing wakes it.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

pub enum DispatcherMsg {
    /// Look for queued work now (a task was submitted, or the poll timer fired).
    Poll,
    /// A trainer started (or restarted) and is idle.
    TrainerUp {
        name: String,
        device: DeviceSpec,
        trainer: ActorRef<TrainerMsg>,
    },
    /// A trainer died; it gets no more work until it is up again.
    TrainerDown { name: String },
    /// A trainer finished its task and is idle.
    TrainerIdle { name: String },
    /// Stop the task `id` on whichever trainer runs it.
    Cancel { id: Uuid },
    /// Stop handing out work (the node is shutting down).
    Drain,
    /// The trainers and what they are doing.
    Trainers(RpcReplyPort<Vec<TrainerInfo>>),
}

/// A trainer as the health endpoint shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TrainerInfo {
    pub name: String,
    pub device: String,
    /// `idle`, `busy` or `down`.
    pub state: &'static str,
    pub task_id: Option<Uuid>,
}

struct Slot {
    device: DeviceSpec,
    trainer: Option<ActorRef<TrainerMsg>>,
    task: Option<Uuid>,
}

pub struct Dispatcher<S: Store> {
    pub store: Arc<S>,
}

pub struct DispatcherState {
    trainers: BTreeMap<String, Slot>,
    draining: bool,
}

impl<S: Store> Actor for Dispatcher<S> {
    type Msg = DispatcherMsg;
    type State = DispatcherState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(POLL_INTERVAL, || DispatcherMsg::Poll);
        Ok(DispatcherState {
            trainers: BTreeMap::new(),
            draining: false,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DispatcherMsg::Poll => {
                self.dispatch(state).await;
                // This node leads (one node, or the leader of a cluster): it publishes the
                // cluster's queue depth.
                if let Ok(depths) = self.store.queue_depths().await {
                    telemetry::queue_depth(&depths);
                }
            }
            DispatcherMsg::TrainerUp {
                name,
                device,
                trainer,
            } => {
                state.trainers.insert(
                    name,
                    Slot {
                        device,
                        trainer: Some(trainer),
                        task: None,
                    },
                );
                self.dispatch(state).await;
            }
            DispatcherMsg::TrainerDown { name } => {
                if let Some(slot) = state.trainers.get_mut(&name) {
                    slot.trainer = None;
                    slot.task = None;
                }
            }
            DispatcherMsg::TrainerIdle { name } => {
                if let Some(slot) = state.trainers.get_mut(&name) {
                    slot.task = None;
                }
                self.dispatch(state).await;
            }
            DispatcherMsg::Cancel { id } => {
                for slot in state.trainers.values() {
                    if slot.task == Some(id)
                        && let Some(trainer) = &slot.trainer
                    {
                        let _ = trainer.cast(TrainerMsg::Cancel { id });
                    }
                }
            }
            DispatcherMsg::Drain => state.draining = true,
            DispatcherMsg::Trainers(reply) => {
                let infos = state
                    .trainers
                    .iter()
                    .map(|(name, slot)| TrainerInfo {
                        name: name.clone(),
                        device: slot.device.to_string(),
                        state: slot.state(),
                        task_id: slot.task,
                    })
                    .collect();
                let _ = reply.send(infos);
            }
        }
        publish(state);
        Ok(())
    }
}

impl<S: Store> Dispatcher<S> {
    /// Gives each idle trainer the next queued task, until the queue or the trainers run out.
    async fn dispatch(&self, state: &mut DispatcherState) {
        if state.draining {
            return;
        }
        for (name, slot) in state.trainers.iter_mut() {
            let Some(trainer) = &slot.trainer else {
                continue;
            };
            if slot.task.is_some() {
                continue;
            }
            match self.store.claim(name, slot.device).await {
                Ok(Some(task)) => {
                    slot.task = Some(task.id);
                    tracing::info!(task_id = %task.id, trainer = %name, attempt = task.attempt, "task dispatched");
                    if trainer.cast(TrainerMsg::Train(Box::new(task))).is_err() {
                        // The trainer died between its last message and now; the supervisor
                        // recovers the task from its lease.
                        slot.trainer = None;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a task");
                    return;
                }
            }
        }
    }
}

/// Publishes the trainer gauges from the dispatcher's view.
fn publish(state: &DispatcherState) {
    let states: Vec<(String, &'static str)> = state
        .trainers
        .values()
        .map(|slot| (slot.device.to_string(), slot.state()))
        .collect();
    telemetry::trainers(&states);
}

impl Slot {
    fn state(&self) -> &'static str {
        match (&self.trainer, self.task) {
            (None, _) => "down",
            (Some(_), Some(_)) => "busy",
            (Some(_), None) => "idle",
        }
    }
}
