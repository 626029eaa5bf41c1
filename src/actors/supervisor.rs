//! The Supervisor: starts the node's Dispatcher and Trainers, recovers the task of a trainer
//! that fails and restarts it after a backoff that doubles with each failure (up to 30 s).

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::{
    Dispatcher, DispatcherMsg, Faults, ParsedDatasets, Stop, SupervisorMsg, TaskSettings, Trainer,
    TrainerArgs, TrainerMsg, recover_attempt,
};
use crate::cluster::Membership;
use crate::store::{Store, TaskError};
use crate::telemetry;
use crate::training::DeviceSpec;

/// Name of `node`'s dispatcher in ractor's registry. It names the node: ractor_cluster
/// registers a stub of every remote actor under the remote actor's name, so a name shared by
/// every node's dispatcher could find another node's stub instead of this node's dispatcher.
pub fn dispatcher_name(node: &str) -> String {
    format!("trainyard.dispatcher.{node}")
}
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct SupervisorArgs<S> {
    pub node: String,
    pub devices: Vec<DeviceSpec>,
    pub store: Arc<S>,
    pub settings: TaskSettings,
    pub membership: Arc<Membership>,
    /// This node's stop, handed to every actor.
    pub stop: Stop,
    /// Test hooks for the trainers, read once at the node's start.
    pub faults: Faults,
}

pub struct Supervisor<S>(std::marker::PhantomData<S>);

impl<S> Default for Supervisor<S> {
    fn default() -> Self {
        Supervisor(std::marker::PhantomData)
    }
}

struct TrainerSlot {
    name: String,
    device: DeviceSpec,
    actor: Option<ActorCell>,
    failures: u32,
}

pub struct SupervisorState<S> {
    args: SupervisorArgs<S>,
    dispatcher: ActorRef<DispatcherMsg>,
    trainers: Vec<TrainerSlot>,
    /// Parsed data sets, shared by this node's trainers (and their restarts).
    datasets: Arc<ParsedDatasets>,
}

impl<S: Store> Actor for Supervisor<S> {
    type Msg = SupervisorMsg;
    type State = SupervisorState<S>;
    type Arguments = SupervisorArgs<S>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs<S>,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Tasks left running by an earlier run of this node cannot be running now.
        for lease in args
            .store
            .leases()
            .await?
            .into_iter()
            .filter(|l| l.node() == args.node)
        {
            tracing::info!(task_id = %lease.id, "requeueing a task left running by an earlier run");
            let error = TaskError {
                code: "node_restarted".into(),
                message: "the node restarted while the task ran".into(),
            };
            recover_attempt(&args.store, &lease, error, false, 0.0).await;
        }
        let (dispatcher, _) = Actor::spawn_linked(
            Some(dispatcher_name(&args.node)),
            Dispatcher {
                store: args.store.clone(),
                membership: args.membership.clone(),
                stop: args.stop.clone(),
            },
            (),
            myself.get_cell(),
        )
        .await?;
        let trainers = args
            .devices
            .iter()
            .enumerate()
            .map(|(i, &device)| TrainerSlot {
                name: super::trainer_name(&args.node, &device, i),
                device,
                actor: None,
                failures: 0,
            })
            .collect();
        let mut state = SupervisorState {
            args,
            dispatcher,
            trainers,
            datasets: Arc::default(),
        };
        for index in 0..state.trainers.len() {
            spawn_trainer(&myself, &mut state, index).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Respawn { index } => {
                if let Err(e) = spawn_trainer(&myself, state, index).await {
                    tracing::error!(error = %e, "cannot restart trainer; trying again later");
                    schedule_respawn(&myself, state, index);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ActorFailed(cell, error) = event else {
            return Ok(());
        };
        if cell.get_id() == state.dispatcher.get_id() {
            return Err(format!("dispatcher failed: {error}").into());
        }
        let Some(index) = state.trainers.iter().position(|t| {
            t.actor
                .as_ref()
                .is_some_and(|a| a.get_id() == cell.get_id())
        }) else {
            return Ok(());
        };
        let name = state.trainers[index].name.clone();
        tracing::error!(trainer = %name, error = %error, "trainer failed; recovering its task");
        state.trainers[index].actor = None;
        for lease in state
            .args
            .store
            .leases()
            .await?
            .into_iter()
            .filter(|l| l.trainer == name)
        {
            let error = TaskError {
                code: "trainer_crashed".into(),
                message: format!("trainer {name} failed: {error}"),
            };
            let delay = state.args.settings.retry_delay_s(lease.attempt);
            recover_attempt(&state.args.store, &lease, error, false, delay).await;
        }
        schedule_respawn(&myself, state, index);
        Ok(())
    }
}

fn schedule_respawn<S>(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState<S>,
    index: usize,
) {
    let slot = &mut state.trainers[index];
    telemetry::trainer_restarted(&slot.device.to_string());
    slot.failures += 1;
    let backoff = FIRST_BACKOFF
        .saturating_mul(1 << slot.failures.min(10))
        .min(MAX_BACKOFF);
    tracing::info!(trainer = %slot.name, backoff_ms = backoff.as_millis() as u64, "restarting trainer after backoff");
    myself.send_after(backoff, move || SupervisorMsg::Respawn { index });
}

async fn spawn_trainer<S: Store>(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState<S>,
    index: usize,
) -> Result<(), ActorProcessingErr> {
    let slot = &state.trainers[index];
    let args = TrainerArgs {
        name: slot.name.clone(),
        device: slot.device,
        store: state.args.store.clone(),
        settings: state.args.settings,
        datasets: state.datasets.clone(),
        stop: state.args.stop.clone(),
        faults: state.args.faults,
    };
    let (trainer, _): (ActorRef<TrainerMsg>, _) = Actor::spawn_linked(
        Some(slot.name.clone()),
        Trainer::<S>::default(),
        args,
        myself.get_cell(),
    )
    .await?;
    state.trainers[index].actor = Some(trainer.get_cell());
    // The leader learns of it from the trainer group; wake it.
    let _ = state.dispatcher.cast(DispatcherMsg::Poll);
    Ok(())
}
