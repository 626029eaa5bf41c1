//! A Trainer: runs one task at a time on a blocking thread, writes its progress to the store
//! (at most a few times a second), and writes the result, a retry or the failure when it ends.
//! After a success, while the leader that sent it its task allows, it claims its next task in
//! the same round trip as it writes the result, and runs on.
//!
//! A run of quick tasks (each doing the same work as the last success, which took under
//! `claim_ahead_under_s`, 10 ms by default) is pipelined: while one trains, the trainer claims
//! up to `AHEAD` tasks doing the same work, without waiting for the answers; it starts the next
//! the moment a training ends, and writes that end while the next trains. A task claimed ahead
//! is STARTED while it waits, for a few quick trainings; a task that may be long is never
//! claimed ahead, and never has another claimed behind it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use super::{DispatcherMsg, Ended, ParsedDatasets, TaskSettings, TrainerMsg};
use crate::cluster;
use crate::store::{
    CasToken, Claimed, DatasetInfo, Ending, Finish, Lookup, Renewal, Store, StoreError, TaskError,
    TaskProgress, TaskRecord, Work, now_s,
};
use crate::telemetry::{self, TaskEvent};
use crate::training::{
    self, CancelToken, Dataset, DeviceSpec, ModelType, TrainError, TrainOutcome,
};

/// Tasks a trainer in a run of quick ones holds claimed ahead of the one it trains, at most,
/// counting the claims not answered yet: the round trip of a claim takes a few quick
/// trainings, so with one the trainer would wait for each.
const AHEAD: usize = 2;

/// Least time between two progress writes of one task.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// When the first progress of a training is written (reports before then gather): a training
/// that ends sooner writes none, its end says it all.
const FIRST_WRITE_AFTER: Duration = Duration::from_millis(50);

/// Test hook: a task with this seed panics its trainer on its first attempt, and one with this
/// seed + 1 on every attempt, so tests can show that a crashed trainer's task is retried, with
/// backoff, up to its limit. Unset in normal use.
const PANIC_SEED_ENV: &str = "TRAINYARD_TEST_PANIC_SEED";

/// Test hook: a task with this seed blocks its training thread for a minute, deaf to cancel
/// and to the soft time limit (as a stuck kernel would), so tests can show the hard limit.
const HANG_SEED_ENV: &str = "TRAINYARD_TEST_HANG_SEED";

pub struct TrainerArgs<S> {
    pub name: String,
    pub device: DeviceSpec,
    pub store: Arc<S>,
    pub settings: TaskSettings,
    pub datasets: Arc<ParsedDatasets>,
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
    fn allowed(&self) -> bool {
        now_s() < self.until && !super::stopping()
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
        cluster::join(cluster::TRAINERS, myself.get_cell());
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
                let busy =
                    state.running.is_some() || !state.ahead.is_empty() || state.claims_out > 0;
                let Some((task, stored)) = take(&state.args, busy, id, attempt, stored).await
                else {
                    return Ok(());
                };
                let run_on = RunOn {
                    given: id,
                    until: run_on_until,
                };
                state.dry = false;
                begin(state, task, stored, run_on, myself);
            }
            TrainerMsg::Cancel { id } => {
                if let Some(running) = &state.running
                    && running.id == id
                {
                    running.cancel.cancel();
                }
                // Its training stops at its first batch.
                let mut held = state.running.as_ref().is_some_and(|r| r.id == id);
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
            TrainerMsg::RenewAhead => {
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
            TrainerMsg::ClaimedAhead {
                next,
                given,
                run_on_until,
            } => {
                state.claims_out -= 1;
                let run_on = RunOn {
                    given,
                    until: run_on_until,
                };
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
                        let empty = state.running.is_none()
                            && state.ahead.is_empty()
                            && state.claims_out == 0;
                        if empty {
                            // The run of quick tasks is over: on to whatever comes next.
                            run_on_or_idle(state, run_on, myself).await;
                        }
                    }
                }
            }
            TrainerMsg::HardLimit {
                id,
                attempt,
                after_s,
            } => {
                let Some(running) = &state.running else {
                    return Ok(());
                };
                if (running.id, running.attempt) != (id, attempt) {
                    return Ok(());
                }
                running.cancel.cancel();
                let error = TaskError {
                    code: "time_limit".into(),
                    message: format!(
                        "the training did not stop at its time limit; after {after_s:.1} s (the \
                         hard limit) its trainer was replaced"
                    ),
                };
                tracing::error!(task_id = %id, "hard time limit reached; failing the task and replacing the trainer");
                match state
                    .args
                    .store
                    .finish(id, attempt, Finish::Failure(error))
                    .await
                {
                    Ok(true) => {
                        if let Ok(Lookup::Found(task)) = state.args.store.get(id).await {
                            telemetry::task_event(TaskEvent::Failed, task.model_type);
                            telemetry::task_running(task.model_type, false);
                        }
                    }
                    Ok(false) => {}
                    Err(e) => tracing::error!(task_id = %id, error = %e, "cannot fail the task"),
                }
                // The training thread cannot be stopped from outside: leave it behind (its
                // writes are fenced) and let the supervisor start a fresh trainer.
                return Err(format!("task {id} ran past its hard time limit").into());
            }
            TrainerMsg::Ended {
                task,
                outcome,
                last_progress,
                stored,
            } => {
                let ended = state.running.take();
                let run_on = ended.as_ref().map(|running| running.run_on);
                telemetry::task_running(task.model_type, false);
                let args = &state.args;
                match outcome {
                    Ended::Panicked(message) => {
                        // Fail this actor: the supervisor recovers the task (and the one
                        // claimed ahead) and restarts us.
                        return Err(
                            format!("training of task {} panicked: {message}", task.id).into()
                        );
                    }
                    Ended::Done(result) => {
                        if let Some(started) = task.started_at {
                            telemetry::task_ran(
                                task.model_type,
                                &args.device.to_string(),
                                now_s() - started,
                            );
                        }
                        if let Ok(outcome) = &result {
                            let device = args.device.to_string();
                            for report in &outcome.reports {
                                let m = &report.metrics;
                                let samples = (m.train_rows * m.iterations as u64) as f64;
                                let epochs = if report.model_type == ModelType::Gbdt {
                                    0
                                } else {
                                    m.iterations as u64
                                };
                                telemetry::trained(&device, samples, m.samples_per_s, epochs);
                            }
                        }
                        let given = run_on.map_or(task.id, |run_on| run_on.given);
                        state.last_ended = Some(task.id);
                        state.last_quick = match (&result, &ended) {
                            (Ok(_), Some(ended))
                                if ended.began.elapsed().as_secs_f64()
                                    < args.settings.claim_ahead_under_s =>
                            {
                                Some(Work::of(&task))
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
                        // Work is coming: the next training runs, or a claim will answer.
                        let pending = state.running.is_some() || state.claims_out > 0;
                        match (result, stored, run_on) {
                            (Ok(outcome), stored, Some(_)) if pending => {
                                // Written on its own: the trainer waits for it no more than
                                // a training does.
                                let args = state.args.clone();
                                let result = Ok(outcome);
                                tokio::spawn(
                                    async move {
                                        record(&args, &task, result, last_progress, stored).await
                                    }
                                    .in_current_span(),
                                );
                            }
                            (Ok(outcome), stored, Some(run_on)) if run_on.allowed() => {
                                let finish = success(&state.args, outcome, last_progress);
                                let next =
                                    run_on_to_next(&state.args, &task, stored.as_ref(), finish)
                                        .await;
                                match next {
                                    Some(next) => {
                                        state.dry = false;
                                        begin(state, next.task, next.stored, run_on, myself);
                                    }
                                    None => idle(&state.args.name, task.id, given),
                                }
                            }
                            (result, stored, _) => {
                                // The leader claims this trainer's next task while the result
                                // is written: that task's Train waits in the mailbox until
                                // this ends.
                                if !pending {
                                    idle(&state.args.name, task.id, given);
                                }
                                record(&state.args, &task, result, last_progress, stored).await
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Starts attempt `task` (stored as `stored`, when known) on this trainer, and claims ahead of
/// it if it is quick (see `claim_ahead`).
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
    claim_ahead(state, run_on, &myself);
    start(&state.args, task, stored, cancel, hard, myself);
}

/// Sends claims for the tasks to run after the one just begun, up to `AHEAD` held or asked
/// for, if that one is quick and the run may go on: each claim takes only a task doing the
/// same work, and answers with `ClaimedAhead`. The round trips then overlap trainings
/// instead of following them.
fn claim_ahead<S: Store>(
    state: &mut TrainerState<S>,
    run_on: RunOn,
    myself: &ActorRef<TrainerMsg>,
) {
    let quick = state.running.as_ref().is_some_and(|r| r.quick);
    let Some(work) = state.last_quick.as_ref().filter(|_| quick) else {
        return;
    };
    if state.dry || !run_on.allowed() {
        return;
    }
    while state.ahead.len() + state.claims_out < AHEAD {
        state.claims_out += 1;
        let (store, name, device) = (
            state.args.store.clone(),
            state.args.name.clone(),
            state.args.device,
        );
        let (work, myself) = (work.clone(), myself.clone());
        tokio::spawn(async move {
            let next = match store.claim_work(&name, device, &work).await {
                Ok(next) => next,
                // A task it did claim runs out its lease and is requeued.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a task ahead");
                    None
                }
            };
            if let Some(next) = &next {
                tracing::info!(task_id = %next.task.id, trainer = %name, attempt = next.task.attempt, "task claimed ahead by its trainer");
            }
            // A trainer gone meanwhile leaves the task's lease to run out: it is requeued.
            let _ = myself.cast(TrainerMsg::ClaimedAhead {
                next: next.map(Box::new),
                given: run_on.given,
                run_on_until: run_on.until,
            });
        });
    }
}

/// A trainer with nothing to run and no claim out, after a success: claims its next task if
/// the run may go on, else tells the dispatchers it is idle.
async fn run_on_or_idle<S: Store>(
    state: &mut TrainerState<S>,
    run_on: RunOn,
    myself: ActorRef<TrainerMsg>,
) {
    let done = state.last_ended.unwrap_or(run_on.given);
    if run_on.allowed() {
        let args = &state.args;
        match args.store.claim(&args.name, args.device).await {
            Ok(Some(next)) => {
                tracing::info!(task_id = %next.task.id, trainer = %args.name, attempt = next.task.attempt, "task claimed by its trainer, running on");
                state.dry = false;
                begin(state, next.task, next.stored, run_on, myself);
                return;
            }
            Ok(None) => {}
            // A task it did claim runs out its lease and is requeued.
            Err(e) => tracing::warn!(error = %e, "cannot claim a next task"),
        }
    }
    idle(&state.args.name, done, run_on.given);
}

/// Tells the dispatchers (the leader's among them) that `trainer` is done with task `done`
/// and idle; `given` is the task a dispatcher sent it that it ran on from.
fn idle(trainer: &str, done: Uuid, given: Uuid) {
    cluster::tell_dispatchers(|| DispatcherMsg::TrainerIdle {
        trainer: trainer.to_string(),
        done,
        given,
    });
}

/// The record of the task the leader sent (and its stored form, when the leader sent it), if
/// this trainer should run it. A trainer that is busy (the leader's view was stale) or whose
/// node stops gives the attempt back to the queue at once.
///
/// An operator's drain is not checked here: the claim of this task would have been refused if
/// the node was drained (see `super::STOPPING` for why nodes keep no copy of it).
async fn take<S: Store>(
    args: &TrainerArgs<S>,
    busy: bool,
    id: Uuid,
    attempt: u32,
    stored: Option<CasToken>,
) -> Option<(TaskRecord, Option<CasToken>)> {
    if busy || super::stopping() {
        tracing::warn!(task_id = %id, trainer = %args.name, "sent a task while busy or stopping; giving it back");
        let error = TaskError {
            code: "trainer_busy".into(),
            message: format!("trainer {} was busy or its node was stopping", args.name),
        };
        if let Err(e) = args.store.requeue(id, attempt, error, 0.0).await {
            tracing::error!(task_id = %id, error = %e, "cannot give a task back");
        }
        return None;
    }
    // The claimed record as sent saves a read; a newer change (a cancel request) reaches the
    // training through its lease renewals.
    let sent = stored.and_then(|s| match s.record() {
        Ok(task) if task.id == id => Some((task, s)),
        Ok(_) | Err(_) => {
            tracing::warn!(task_id = %id, "the record sent with the task does not decode; reading it");
            None
        }
    });
    let found = match sent {
        Some((task, stored)) => Ok((Lookup::Found(Box::new(task)), Some(stored))),
        None => args.store.get(id).await.map(|lookup| (lookup, None)),
    };
    match found {
        Ok((Lookup::Found(task), stored))
            if task.runs_attempt(attempt) && task.trainer.as_deref() == Some(&args.name) =>
        {
            Some((*task, stored))
        }
        Ok(_) => {
            tracing::info!(task_id = %id, attempt, "task no longer runs this attempt; skipped");
            idle(&args.name, id, id);
            None
        }
        Err(e) => {
            // The lease runs out and the leader requeues the task.
            tracing::warn!(task_id = %id, error = %e, "cannot read the task sent to this trainer");
            idle(&args.name, id, id);
            None
        }
    }
}

/// Starts the training of `task` on the blocking pool; `Ended` comes back when it is over.
fn start<S: Store>(
    args: &TrainerArgs<S>,
    task: TaskRecord,
    stored: Option<CasToken>,
    cancel: CancelToken,
    hard_limit_s: f64,
    myself: ActorRef<TrainerMsg>,
) {
    let hard_at = Instant::now() + Duration::from_secs_f64(hard_limit_s);
    let store = args.store.clone();
    let device = args.device;
    let default_limit = args.settings.time_limit_s;
    let renew_every = Duration::from_secs_f64(args.settings.lease_s / 3.0);
    let trainer = args.name.clone();
    // A root span: a task claimed while the last one ended would otherwise be its child, and a
    // trainer running on would nest every task of its run in the one before.
    let span = tracing::info_span!(
        parent: None,
        "task",
        task_id = %task.id,
        attempt = task.attempt,
        trainer = %trainer
    );
    let datasets = args.datasets.clone();
    let run = async move {
        let source = match task.dataset_id {
            None => Source::Builtin,
            Some(id) => match datasets.get(id) {
                Some(parsed) => Source::Parsed(parsed),
                None => {
                    let loaded = match store.dataset(id).await {
                        Ok(Some((info, csv))) => Ok(Source::Csv { id, info, csv }),
                        Ok(None) => Err(TrainError::InvalidSpec {
                            problems: vec![format!("data set {id} not found")],
                        }),
                        Err(e) => Err(TrainError::Backend(format!(
                            "cannot load data set {id}: {e}"
                        ))),
                    };
                    match loaded {
                        Ok(source) => source,
                        Err(error) => {
                            let _ = myself.cast(TrainerMsg::Ended {
                                task: Box::new(task),
                                outcome: Ended::Done(Err(error)),
                                last_progress: None,
                                stored: None,
                            });
                            return;
                        }
                    }
                }
            },
        };
        let (progress_tx, progress_rx) = watch::channel(None);
        let mut spec = task.spec.clone();
        spec.time_limit_s = Some(
            spec.time_limit_s
                .map_or(default_limit, |t| t.min(default_limit)),
        );
        let panic_now = match std::env::var(PANIC_SEED_ENV).map(|s| s.parse::<u64>()) {
            Ok(Ok(seed)) => {
                (spec.seed == seed && task.attempt == 1) || spec.seed == seed.wrapping_add(1)
            }
            _ => false,
        };
        let hang_now = std::env::var(HANG_SEED_ENV)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            == Some(spec.seed);
        let training_cancel = cancel.clone();
        let training = tokio::task::spawn_blocking(move || {
            if hang_now {
                std::thread::sleep(Duration::from_secs(60));
            }
            if panic_now {
                panic!("test hook {PANIC_SEED_ENV} asked for a panic");
            }
            let dataset = match source {
                Source::Parsed(parsed) => parsed,
                Source::Csv { id, info, csv } => {
                    datasets.put(id, Dataset::from_csv(&csv, &info.name, &info.target)?)
                }
                Source::Builtin => Arc::new(Dataset::builtin(&spec.dataset, spec.seed)?),
            };
            training::train(
                &spec,
                &dataset,
                &device,
                // Only stored here: the watch wakes no one, the attempt's task reads it on
                // its own timer.
                &mut |p| {
                    progress_tx.send_replace(Some(p.clone()));
                },
                &training_cancel,
            )
        });
        let attempt = Attempt {
            store: &*store,
            id: task.id,
            attempt: task.attempt,
            cancel: &cancel,
        };
        let Some((joined, mut last_progress, wrote)) = attempt
            .watch(training, progress_rx, renew_every, hard_at)
            .await
        else {
            // Past the hard limit: the thread is left behind (its writes are fenced).
            let _ = myself.cast(TrainerMsg::HardLimit {
                id: task.id,
                attempt: task.attempt,
                after_s: hard_limit_s,
            });
            return;
        };
        // A success writes its last progress with its result (one write less); any other end
        // writes it now.
        let mut stored = stored.filter(|_| !wrote);
        if !matches!(joined, Ok(Ok(_)))
            && let Some(progress) = last_progress.take()
        {
            write_one(&*store, task.id, task.attempt, progress).await;
            stored = None;
        }
        let outcome = match joined {
            Ok(result) => Ended::Done(result),
            Err(e) => classify_panic(e.to_string(), device),
        };
        let _ = myself.cast(TrainerMsg::Ended {
            task: Box::new(task),
            outcome,
            last_progress,
            stored,
        });
    };
    tokio::spawn(run.instrument(span));
}

/// Where a task's data comes from.
enum Source {
    /// A built-in data set, generated from the task's seed.
    Builtin,
    /// An uploaded data set this node has parsed before.
    Parsed(Arc<Dataset>),
    /// An uploaded data set read from the store, to parse (and keep parsed).
    Csv {
        id: Uuid,
        info: DatasetInfo,
        csv: Arc<[u8]>,
    },
}

/// The attempt a training thread runs, as its task on the runtime looks after it.
struct Attempt<'a, S> {
    store: &'a S,
    id: Uuid,
    attempt: u32,
    cancel: &'a CancelToken,
}

impl<S: Store> Attempt<'_, S> {
    /// Waits for `training` to end while renewing the attempt's lease every `renew_every`
    /// (a cancel request, or a lost lease, cancels the training) and writing its latest
    /// progress, at most every `PROGRESS_EVERY`. One timer does it all, so a training that ends
    /// in a few milliseconds costs no wake-up but its end.
    ///
    /// Returns how the training ended, its last progress if not written, and whether any
    /// progress was written; None if it ran past `hard_at`.
    async fn watch(
        &self,
        training: tokio::task::JoinHandle<Result<TrainOutcome, TrainError>>,
        mut progress: watch::Receiver<Option<training::Progress>>,
        renew_every: Duration,
        hard_at: Instant,
    ) -> Option<(
        Result<Result<TrainOutcome, TrainError>, tokio::task::JoinError>,
        Option<TaskProgress>,
        bool,
    )> {
        let start = Instant::now();
        let mut next_write = start + FIRST_WRITE_AFTER;
        let mut next_renew = start + renew_every;
        let mut renewing = true;
        let mut wrote = false;
        tokio::pin!(training);
        let joined = loop {
            let wake = next_write.min(hard_at);
            let wake = if renewing { wake.min(next_renew) } else { wake };
            tokio::select! {
                joined = &mut training => break joined,
                _ = tokio::time::sleep_until(wake) => {}
            }
            let now = Instant::now();
            if now >= hard_at {
                return None;
            }
            if renewing && now >= next_renew {
                next_renew = now + renew_every;
                renewing = self.renew().await;
            }
            if now >= next_write {
                next_write = now + PROGRESS_EVERY;
                if let Some(report) = unseen(&mut progress) {
                    write_one(self.store, self.id, self.attempt, task_progress(report)).await;
                    wrote = true;
                }
            }
        };
        Some((joined, unseen(&mut progress).map(task_progress), wrote))
    }

    /// Renews the lease; false once it is lost (the task was requeued and runs elsewhere).
    async fn renew(&self) -> bool {
        match self.store.renew(self.id, self.attempt).await {
            Ok(Renewal::Held { cancel: false }) => {}
            Ok(Renewal::Held { cancel: true }) => self.cancel.cancel(),
            Ok(Renewal::Lost) => {
                tracing::warn!("this attempt lost its lease (the task was requeued); stopping it");
                self.cancel.cancel();
                return false;
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the task's lease"),
        }
        true
    }
}

/// The latest progress report, if not seen before (also once the training dropped its end).
fn unseen(
    progress: &mut watch::Receiver<Option<training::Progress>>,
) -> Option<training::Progress> {
    let latest = progress.borrow_and_update();
    if latest.has_changed() {
        latest.clone()
    } else {
        None
    }
}

fn task_progress(p: training::Progress) -> TaskProgress {
    TaskProgress {
        current: p.current,
        total: p.total,
        percent: (p.percent() * 100.0).round() / 100.0,
        message: p.message,
        loss: p.loss,
    }
}

async fn write_one<S: Store>(store: &S, id: Uuid, attempt: u32, progress: TaskProgress) {
    if let Err(e) = store.progress(id, attempt, &progress).await {
        tracing::warn!(error = %e, "cannot write progress");
    }
}

/// The end of a training that succeeded with `outcome`.
fn success<S>(
    args: &TrainerArgs<S>,
    outcome: TrainOutcome,
    last_progress: Option<TaskProgress>,
) -> Finish {
    tracing::info!(best = %outcome.best, "task succeeded");
    let result = serde_json::json!({
        "success": true,
        "message": outcome.message(),
        "model_type": outcome.model_type,
        "best_model": outcome.best,
        "metrics": outcome.metrics_json(),
        "trainer": args.name,
    });
    Finish::Success {
        result,
        model: outcome.model_bytes,
        progress: last_progress,
    }
}

/// Writes the success of `task` (held as `stored`) and claims this trainer's next task in
/// the same step; the task claimed, if any.
async fn run_on_to_next<S: Store>(
    args: &TrainerArgs<S>,
    task: &TaskRecord,
    stored: Option<&CasToken>,
    finish: Finish,
) -> Option<Claimed> {
    let ending = Ending {
        stored,
        id: task.id,
        attempt: task.attempt,
        finish,
    };
    let done = args
        .store
        .claim_and_finish(&args.name, args.device, ending)
        .await;
    note_end(done.finished, TaskEvent::Succeeded, task);
    match done.next {
        Ok(Some(next)) => {
            tracing::info!(task_id = %next.task.id, trainer = %args.name, attempt = next.task.attempt, "task claimed by its trainer, running on");
            Some(next)
        }
        Ok(None) => None,
        Err(e) => {
            // A task it did claim runs out its lease and is requeued.
            tracing::warn!(error = %e, "cannot claim a next task");
            None
        }
    }
}

/// Writes how a training ended: the result, a retry, or the failure.
async fn record<S: Store>(
    args: &TrainerArgs<S>,
    task: &TaskRecord,
    result: Result<TrainOutcome, TrainError>,
    last_progress: Option<TaskProgress>,
    stored: Option<CasToken>,
) {
    let store = &args.store;
    let (id, attempt) = (task.id, task.attempt);
    let event;
    let written = match result {
        Ok(outcome) => {
            event = TaskEvent::Succeeded;
            let ending = Ending {
                stored: stored.as_ref(),
                id,
                attempt,
                finish: success(args, outcome, last_progress),
            };
            ending.write(&**store).await
        }
        Err(TrainError::Cancelled) => {
            tracing::info!("task revoked while running");
            event = TaskEvent::Revoked;
            store.finish(id, attempt, Finish::Revoked).await
        }
        Err(e) => {
            let error = TaskError {
                code: e.code().into(),
                message: e.to_string(),
            };
            if e.is_retryable() && attempt <= task.max_retries {
                let retry_delay_s = args.settings.retry_delay_s(attempt);
                tracing::warn!(error = %e, retry_in_s = retry_delay_s, "task attempt failed; retrying");
                event = TaskEvent::Retried;
                store.requeue(id, attempt, error, retry_delay_s).await
            } else {
                tracing::warn!(error = %e, "task failed");
                event = TaskEvent::Failed;
                store.finish(id, attempt, Finish::Failure(error)).await
            }
        }
    };
    note_end(written, event, task);
}

/// Counts the end of `task` as `event` if it was `written`, or logs why not.
fn note_end(written: Result<bool, StoreError>, event: TaskEvent, task: &TaskRecord) {
    match written {
        Ok(true) => telemetry::task_event(event, task.model_type),
        Ok(false) => tracing::warn!("task was taken over by another attempt; result dropped"),
        Err(e) => tracing::error!(error = %e, "cannot record the end of a task"),
    }
}

/// A training thread that panicked: out of device memory is the task's own failure (not
/// retried on the same kind of device); anything else is the trainer's, which restarts.
fn classify_panic(message: String, device: DeviceSpec) -> Ended {
    let lower = message.to_lowercase();
    if lower.contains("out of memory") || lower.contains("outofmemory") {
        Ended::Done(Err(TrainError::OutOfMemory {
            device: device.to_string(),
        }))
    } else {
        Ended::Panicked(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_panics_fail_the_task_and_others_fail_the_trainer() {
        let oom = classify_panic(
            "task 3 panicked with message \"wgpu: OutOfMemory\"".into(),
            DeviceSpec::Gpu(1),
        );
        match oom {
            Ended::Done(Err(e)) => {
                assert_eq!(e.code(), "device_out_of_memory");
                assert!(!e.is_retryable());
                assert!(e.to_string().contains("gpu:1"));
            }
            _ => panic!("an out-of-memory panic must fail the task"),
        }
        assert!(matches!(
            classify_panic("index out of bounds".into(), DeviceSpec::Cpu),
            Ended::Panicked(_)
        ));
    }
}
