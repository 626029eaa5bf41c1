//! The pipeline of a trainer's tasks: taking the task a dispatcher sent, claiming ahead in a
//! run of quick tasks, running on with a claim of its own, and telling the dispatchers it is
//! idle (see the module doc of `trainer` for the mechanics).

use ractor::ActorRef;
use uuid::Uuid;

use super::{AHEAD, RunOn, TrainerArgs, TrainerState};
use crate::actors::{TrainerMsg, groups};
use crate::store::{CasToken, Claimed, Lookup, Store, StoreError, TaskError, TaskRecord};

/// What a trainer does after a task ended.
pub(super) enum Next {
    /// Run this task, claimed by the trainer itself as it wrote the end (run on).
    Run(Box<Claimed>),
    /// Work is coming without asking (a training runs, or a claim ahead will answer); the end
    /// is written on its own meanwhile.
    Pending,
    /// Nothing to run: the dispatchers were told the trainer is idle.
    Idle,
}

/// Sends claims for the tasks to run after the one just begun, up to `AHEAD` held or asked
/// for, if that one is quick and the run may go on: each claim takes only a task doing the
/// same work, and answers with `ClaimedAhead`. The round trips then overlap trainings
/// instead of following them.
pub(super) fn claim_ahead<S: Store>(
    state: &mut TrainerState<S>,
    run_on: RunOn,
    myself: &ActorRef<TrainerMsg>,
) {
    let quick = state.running.as_ref().is_some_and(|r| r.quick);
    let Some(work) = state.last_quick.as_ref().filter(|_| quick) else {
        return;
    };
    if state.dry || !run_on.allowed(&state.args.stop) {
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

/// A trainer with nothing to run and no claim out, after a success (its last task `done`
/// ended and was written): claims its next task if the run may go on, else tells the
/// dispatchers it is idle.
pub(super) async fn run_on_or_idle<S: Store>(
    args: &TrainerArgs<S>,
    done: Uuid,
    run_on: RunOn,
) -> Next {
    if run_on.allowed(&args.stop) {
        let claimed = args.store.claim(&args.name, args.device).await;
        if let Some(next) = claimed_next(args, claimed) {
            return Next::Run(Box::new(next));
        }
    }
    idle(&args.name, done, run_on.given);
    Next::Idle
}

/// The task a trainer claimed for itself, if any (logged).
pub(super) fn claimed_next<S>(
    args: &TrainerArgs<S>,
    claimed: Result<Option<Claimed>, StoreError>,
) -> Option<Claimed> {
    match claimed {
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

/// Tells the dispatchers (the leader's among them) that `trainer` is done with task `done`
/// and idle; `given` is the task a dispatcher sent it that it ran on from.
pub(super) fn idle(trainer: &str, done: Uuid, given: Uuid) {
    groups::tell_dispatchers(|| crate::actors::DispatcherMsg::TrainerIdle {
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
/// the node was drained (the store owns the drain; nodes keep no copy of it that could lag).
pub(super) async fn take<S: Store>(
    args: &TrainerArgs<S>,
    busy: bool,
    id: Uuid,
    attempt: u32,
    stored: Option<CasToken>,
) -> Option<(TaskRecord, Option<CasToken>)> {
    if busy || args.stop.is_stopping() {
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
