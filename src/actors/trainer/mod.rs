//! A Trainer: runs one task at a time on a blocking thread, writes its progress to the store
//! (at most a few times a second), and writes the result, a retry or the failure when it ends.
//!
//! ```text
//! mod.rs       the actor: one method per message, `begin` (start an attempt)
//! attempt.rs   an attempt: load its data, train on the blocking pool, renew the lease, write
//!              progress; the test-only fault hooks (`Faults`)
//! pipeline.rs  what comes after a task (`Next`): run on, claims ahead, going idle
//! outcome.rs   the end of a task: `end` writes it and says what comes next; success, panic
//!              classification
//! ```
//!
//! Within the folder, imports go one way: mod.rs -> attempt -> outcome -> pipeline (each also
//! reads the actor's types in mod.rs).
//!
//! # Run on
//!
//! The leader's dispatcher sends a trainer (on any node) the id and attempt number of the task
//! it claimed for it, with the claimed record as the store keeps it (so the trainer need not
//! read it back, and its finish can compare-and-set from it without a read). With the task goes
//! a run-on permission that lasts as long as the leader surely leads (`RunOn`): a trainer that
//! succeeds within it claims its next task itself, in the same round trip as it writes the
//! result (`Store::claim_and_finish`: the claim script, then the finish script, pipelined), and
//! tells the dispatchers it is idle only when the queue had nothing for it. Under load a
//! trainer so runs task after task without a hop through the dispatcher, with one round trip
//! to the store per task instead of two. A trainer claims for itself only while that leader
//! surely leads, and not once its node stops; the claim script refuses a trainer of a draining
//! node.
//!
//! # Claim ahead
//!
//! In a run of quick tasks (each doing the same work as the last success, which took under
//! `claim_ahead_under_s`, 10 ms by default) the round trips overlap the trainings: the trainer
//! keeps up to [`AHEAD`] tasks claimed ahead, counting claims not answered yet, and does not
//! wait for those claims (each answers with a `ClaimedAhead` message). It starts the next task
//! the moment a training ends, and writes that end on its own meanwhile (`Next::Pending`),
//! renewing the leases of the tasks claimed ahead while they wait (`RenewAhead`). A claim ahead
//! takes only a task doing the same work (`Store::claim_work`: the next task if it does, else
//! nothing), so a task that may be long is never claimed ahead, and none ever waits behind one.
//! When the run ends (a claim ahead finds other work: the trainer is **dry**), the trainer runs
//! on with a claim of its own as above, or goes idle.
//!
//! Claims of every node run at once, and each takes the task first in its queues at the moment
//! it runs (on Redis, `claim_first.lua` makes the claimed record itself): priority holds, and
//! no two claims try the same task. The rare task that script leaves to the node (a record it
//! cannot change, work that differs only where `same_work` allows) is claimed from the claim
//! window instead: each of the node's claims tries a different one of the first queued tasks,
//! and takes it only if it is still among the first N while N of them are under way.

mod attempt;
mod outcome;
mod pipeline;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use uuid::Uuid;

pub use attempt::Faults;

use super::{Ended, ParsedDatasets, Stop, TaskSettings, TrainerMsg};
use crate::store::{CasToken, Claimed, Renewal, Store, TaskRecord, Work, now_s};
use crate::telemetry::{self, TaskEvent};
use crate::training::{CancelToken, DeviceSpec};
use outcome::End;
use pipeline::Next;

/// Tasks a trainer in a run of quick ones holds claimed ahead of the one it trains, at most,
/// counting the claims not answered yet: the round trip of a claim takes a few quick
/// trainings, so with one the trainer would wait for each.
const AHEAD: usize = 2;

pub struct TrainerArgs<S> {
    pub name: String,
    pub device: DeviceSpec,
    pub store: Arc<S>,
    pub settings: TaskSettings,
    pub datasets: Arc<ParsedDatasets>,
    /// This node's stop: once it stops, the trainer gives back tasks sent to it and claims no
    /// next task of its own.
    pub stop: Stop,
    /// Test hooks, read once at the node's start.
    pub faults: Faults,
}

// By hand: a derived Clone would ask for `S: Clone`, and `S` is shared through the `Arc`.
impl<S> Clone for TrainerArgs<S> {
    fn clone(&self) -> Self {
        TrainerArgs {
            name: self.name.clone(),
            device: self.device,
            store: self.store.clone(),
            settings: self.settings,
            datasets: self.datasets.clone(),
            stop: self.stop.clone(),
            faults: self.faults,
        }
    }
}

pub struct Trainer<S>(std::marker::PhantomData<S>);

impl<S> Default for Trainer<S> {
    fn default() -> Self {
        Trainer(std::marker::PhantomData)
    }
}

pub struct TrainerState<S> {
    args: TrainerArgs<S>,
    running: Option<Running>,
    /// The tasks claimed ahead while a quick one runs, started in turn as trainings end.
    ahead: VecDeque<(Claimed, RunOn)>,
    /// Claims ahead sent and not answered yet.
    claims_out: usize,
    /// Cancels of tasks this trainer does not hold, while claims ahead are out: one of them
    /// may answer with such a task.
    cancels: Vec<Uuid>,
    /// A claim ahead found no task doing the work: none more until the run goes on otherwise.
    dry: bool,
    /// The task whose training ended last.
    last_ended: Option<Uuid>,
    /// The work of the last success, if it was quick (took under `claim_ahead_under_s`).
    last_quick: Option<Work>,
}

impl<S> TrainerState<S> {
    /// Whether work is coming without asking: a training runs, or a claim ahead will answer.
    fn pending(&self) -> bool {
        self.running.is_some() || self.claims_out > 0
    }
}

/// The attempt a trainer runs.
struct Running {
    id: Uuid,
    attempt: u32,
    cancel: CancelToken,
    /// How it came: see [`RunOn`].
    run_on: RunOn,
    began: std::time::Instant,
    /// It does the same work as the last success, which was quick: the next task may be
    /// claimed ahead of its end.
    quick: bool,
}

/// How a trainer's run of tasks began: the task a dispatcher sent it, and until when (`now_s`
/// time) it may claim its next task itself as it writes a success.
#[derive(Clone, Copy)]
struct RunOn {
    given: Uuid,
    until: f64,
}

impl RunOn {
    /// Whether the trainer may claim its next task itself now (on a drained node, the claim is
    /// refused by the store).
    fn allowed(&self, stop: &Stop) -> bool {
        now_s() < self.until && !stop.is_stopping()
    }
}

impl<S: Store> Actor for Trainer<S> {
    type Msg = TrainerMsg;
    type State = TrainerState<S>;
    type Arguments = TrainerArgs<S>;

    /// A trainer stops with its node: the training it runs stops at its next batch (the node
    /// requeued its task already), so that no training thread outlives the node.
    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(running) = &state.running {
            running.cancel.cancel();
        }
        Ok(())
    }

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: TrainerArgs<S>,
    ) -> Result<Self::State, ActorProcessingErr> {
        super::groups::join_trainers(myself.get_cell());
        let renew_every = Duration::from_secs_f64(args.settings.lease_s / 3.0);
        myself.send_interval(renew_every, || TrainerMsg::RenewAhead);
        Ok(TrainerState {
            args,
            running: None,
            ahead: VecDeque::new(),
            claims_out: 0,
            cancels: Vec::new(),
            dry: false,
            last_ended: None,
            last_quick: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TrainerMsg::Train {
                id,
                attempt,
                stored,
                run_on_until,
            } => {
                let run_on = RunOn {
                    given: id,
                    until: run_on_until,
                };
                train(state, id, attempt, stored, run_on, myself).await;
            }
            TrainerMsg::Cancel { id } => cancel(state, id),
            TrainerMsg::RenewAhead => renew_ahead(state).await,
            TrainerMsg::ClaimedAhead {
                next,
                given,
                run_on_until,
            } => {
                let run_on = RunOn {
                    given,
                    until: run_on_until,
                };
                claimed_ahead(state, next, run_on, myself).await;
            }
            TrainerMsg::HardLimit {
                id,
                attempt,
                after_s,
            } => return hard_limit(state, id, attempt, after_s).await,
            TrainerMsg::Ended {
                task,
                outcome,
                last_progress,
                stored,
                checkpointed,
            } => {
                let end = End {
                    task,
                    last_progress,
                    stored,
                    checkpointed,
                };
                return ended(state, end, outcome, myself).await;
            }
        }
        Ok(())
    }
}

/// `Train`: runs the task the leader sent, unless this trainer is busy or stopping.
async fn train<S: Store>(
    state: &mut TrainerState<S>,
    id: Uuid,
    attempt: u32,
    stored: Option<CasToken>,
    run_on: RunOn,
    myself: ActorRef<TrainerMsg>,
) {
    let busy = state.pending() || !state.ahead.is_empty();
    let Some((task, stored)) = pipeline::take(&state.args, busy, id, attempt, stored).await else {
        return;
    };
    state.dry = false;
    begin(state, task, stored, run_on, myself);
}

/// `Cancel`: stops the task if it runs (its training stops at its first batch), or marks it if
/// it waits claimed ahead, or remembers it while a claim ahead may answer with it.
fn cancel<S>(state: &mut TrainerState<S>, id: Uuid) {
    let mut held = false;
    if let Some(running) = &state.running
        && running.id == id
    {
        running.cancel.cancel();
        held = true;
    }
    for (ahead, _) in state.ahead.iter_mut() {
        if ahead.task.id == id {
            ahead.task.cancel_requested = true;
            held = true;
        }
    }
    if !held && state.claims_out > 0 {
        state.cancels.push(id);
    }
}

/// `RenewAhead`: renews the leases of the tasks claimed ahead; drops those that lost theirs.
async fn renew_ahead<S: Store>(state: &mut TrainerState<S>) {
    let mut lost = Vec::new();
    for (ahead, _) in state.ahead.iter_mut() {
        let (id, attempt) = (ahead.task.id, ahead.task.attempt);
        match state.args.store.renew(id, attempt).await {
            Ok(Renewal::Held { cancel }) => {
                ahead.task.cancel_requested |= cancel;
                // The renewal changed the record: the finish reads it.
                ahead.stored = None;
            }
            Ok(Renewal::Lost) => {
                tracing::warn!(task_id = %id, "a task claimed ahead lost its lease; dropping it");
                lost.push(id);
            }
            Err(e) => {
                tracing::warn!(task_id = %id, error = %e, "cannot renew the lease of a task claimed ahead")
            }
        }
    }
    state
        .ahead
        .retain(|(ahead, _)| !lost.contains(&ahead.task.id));
}

/// `ClaimedAhead`: a claim ahead answered. Its task runs at once if nothing does, else waits
/// its turn; no task means the run of quick tasks is dry, and once nothing runs or waits, the
/// trainer goes on as after any end.
async fn claimed_ahead<S: Store>(
    state: &mut TrainerState<S>,
    next: Option<Box<Claimed>>,
    run_on: RunOn,
    myself: ActorRef<TrainerMsg>,
) {
    state.claims_out -= 1;
    let mut next = next;
    if let Some(next) = &mut next
        && state.cancels.contains(&next.task.id)
    {
        next.task.cancel_requested = true;
    }
    if state.claims_out == 0 {
        state.cancels.clear();
    }
    match next {
        Some(next) if state.running.is_none() => {
            begin(state, next.task, next.stored, run_on, myself);
        }
        Some(next) => state.ahead.push_back((*next, run_on)),
        None => {
            state.dry = true;
            if !state.pending() && state.ahead.is_empty() {
                let done = state.last_ended.unwrap_or(run_on.given);
                let next = pipeline::run_on_or_idle(&state.args, done, run_on).await;
                follow(state, next, run_on, myself);
            }
        }
    }
}

/// `HardLimit`: the attempt's training did not stop; the task fails and this trainer fails
/// with it, for the supervisor to start a fresh one.
async fn hard_limit<S: Store>(
    state: &mut TrainerState<S>,
    id: Uuid,
    attempt: u32,
    after_s: f64,
) -> Result<(), ActorProcessingErr> {
    let Some(running) = &state.running else {
        return Ok(());
    };
    if (running.id, running.attempt) != (id, attempt) {
        return Ok(());
    }
    running.cancel.cancel();
    outcome::fail_past_hard_limit(&*state.args.store, id, attempt, after_s).await;
    // The training thread cannot be stopped from outside: leave it behind (its writes are
    // fenced) and let the supervisor start a fresh trainer.
    Err(format!("task {id} ran past its hard time limit").into())
}

/// `Ended`: a training ended. The next task claimed ahead starts at once; the end is written
/// (`outcome::end`), and the trainer follows what comes next.
async fn ended<S: Store>(
    state: &mut TrainerState<S>,
    end: End,
    outcome: Ended,
    myself: ActorRef<TrainerMsg>,
) -> Result<(), ActorProcessingErr> {
    let ended = state.running.take();
    telemetry::task_running(end.task.model_type, false);
    let result = match outcome {
        // Fail this actor: the supervisor recovers the task (and the ones claimed ahead) and
        // restarts it.
        Ended::Panicked(message) => {
            return Err(format!("training of task {} panicked: {message}", end.task.id).into());
        }
        Ended::Done(result) => result,
    };
    outcome::count_training(&state.args, &end.task, &result);
    let run_on = ended.as_ref().map(|running| running.run_on);
    state.last_ended = Some(end.task.id);
    state.last_quick = match (&result, &ended) {
        (Ok(_), Some(ended))
            if ended.began.elapsed().as_secs_f64() < state.args.settings.claim_ahead_under_s =>
        {
            Some(Work::of(&end.task))
        }
        _ => None,
    };
    // The next task claimed ahead trains while this end is written.
    if let Some((ahead, ahead_run_on)) = state.ahead.pop_front() {
        begin(
            state,
            ahead.task,
            ahead.stored,
            ahead_run_on,
            myself.clone(),
        );
    }
    let next = outcome::end(&state.args, end, result, run_on, state.pending()).await;
    if let Some(run_on) = run_on {
        follow(state, next, run_on, myself);
    }
    Ok(())
}

/// Acts on what comes next after a task: runs the task claimed, if any.
fn follow<S: Store>(
    state: &mut TrainerState<S>,
    next: Next,
    run_on: RunOn,
    myself: ActorRef<TrainerMsg>,
) {
    match next {
        Next::Run(next) => {
            state.dry = false;
            begin(state, next.task, next.stored, run_on, myself);
        }
        Next::Pending | Next::Idle => {}
    }
}

/// Starts attempt `task` (stored as `stored`, when known) on this trainer, and claims ahead of
/// it if it is quick (see `pipeline::claim_ahead`).
fn begin<S: Store>(
    state: &mut TrainerState<S>,
    task: TaskRecord,
    stored: Option<CasToken>,
    run_on: RunOn,
    myself: ActorRef<TrainerMsg>,
) {
    telemetry::task_event(TaskEvent::Started, task.model_type);
    telemetry::task_running(task.model_type, true);
    if let Some(started) = task.started_at {
        telemetry::task_waited(task.model_type, started - task.submitted_at);
    }
    let cancel = CancelToken::new();
    if task.cancel_requested {
        cancel.cancel();
    }
    // The soft limit stops the training between batches; the hard one, later, replaces this
    // trainer if the training did not stop.
    // The operator's limit is a ceiling, also for a task stored before it was lowered.
    let ceiling = state.args.settings.time_limit_s;
    let soft = task.spec.time_limit_s.map_or(ceiling, |t| t.min(ceiling));
    let hard = soft + state.args.settings.hard_time_limit_grace_s;
    let quick = state
        .last_quick
        .as_ref()
        .is_some_and(|work| work.done_by(&task));
    state.running = Some(Running {
        id: task.id,
        attempt: task.attempt,
        cancel: cancel.clone(),
        run_on,
        began: std::time::Instant::now(),
        quick,
    });
    pipeline::claim_ahead(state, run_on, &myself);
    attempt::start(&state.args, task, stored, cancel, hard, myself);
}
