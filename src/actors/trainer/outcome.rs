//! The end of a task: [`end`] writes how a training ended (the result, a retry, the failure)
//! and says what the trainer does next (`pipeline::Next`). Every end of a training goes through it; a hard
//! time limit, which ends the trainer too, through [`fail_past_hard_limit`].

use tracing::Instrument;
use uuid::Uuid;

use super::pipeline::{self, Next};
use super::{RunOn, TrainerArgs};
use crate::actors::Ended;
use crate::store::{
    CasToken, Ending, Finish, Lookup, Store, StoreError, TaskError, TaskProgress, TaskRecord, now_s,
};
use crate::telemetry::{self, TaskEvent};
use crate::training::{DeviceSpec, ModelType, TrainError, TrainOutcome};

/// A training that ended, as its attempt hands it to the trainer.
pub(super) struct End {
    pub task: Box<TaskRecord>,
    /// A success's last progress report, not written yet (the finish writes it with the
    /// result).
    pub last_progress: Option<TaskProgress>,
    /// The record as the store keeps it, if nothing this attempt wrote changed it since the
    /// claim.
    pub stored: Option<CasToken>,
    /// The attempt resumed from a checkpoint or saved one: an end of the task drops it.
    pub checkpointed: bool,
}

/// Ends `end.task` with `result` and says what comes next. `run_on`: how the task came, if the
/// trainer ran it; `pending`: whether work is coming without asking.
///
/// - work pending, a success: the end is written on its own (the trainer waits for it no more
///   than a training does): `Pending`;
/// - nothing pending, a success the run may go on from: the end is written in the same round
///   trip as the claim of the next task (`Store::claim_and_finish`): `Run` with it, or `Idle`;
/// - otherwise the end is written and the trainer waits for it; unless work is pending, it is
///   idle first, so that the leader claims its next task while the end is written.
pub(super) async fn end<S: Store>(
    args: &TrainerArgs<S>,
    end: End,
    result: Result<TrainOutcome, TrainError>,
    run_on: Option<RunOn>,
    pending: bool,
) -> Next {
    let End {
        task,
        last_progress,
        stored,
        checkpointed,
    } = end;
    let given = run_on.map_or(task.id, |run_on| run_on.given);
    match (result, run_on) {
        (Ok(outcome), Some(_)) if pending => {
            let args = args.clone();
            tokio::spawn(
                async move {
                    let ended = record(&args, &task, Ok(outcome), last_progress, stored).await;
                    drop_checkpoint(&args, &task, checkpointed && ended).await;
                }
                .in_current_span(),
            );
            Next::Pending
        }
        (Ok(outcome), Some(run_on)) if run_on.allowed(&args.stop) => {
            let ending = Ending {
                stored: stored.as_ref(),
                id: task.id,
                attempt: task.attempt,
                finish: success(args, outcome, last_progress),
            };
            let done = args
                .store
                .claim_and_finish(&args.name, args.device, ending)
                .await;
            let ended = matches!(done.finished, Ok(true));
            if ended {
                after_success(args, &task);
            }
            note_end(done.finished, TaskEvent::Succeeded, task.model_type);
            drop_checkpoint(args, &task, checkpointed && ended).await;
            match pipeline::claimed_next(args, done.next) {
                Some(next) => Next::Run(Box::new(next)),
                None => {
                    pipeline::idle(&args.name, task.id, given);
                    Next::Idle
                }
            }
        }
        (result, _) => {
            if !pending {
                pipeline::idle(&args.name, task.id, given);
            }
            let ended = record(args, &task, result, last_progress, stored).await;
            drop_checkpoint(args, &task, checkpointed && ended).await;
            if pending { Next::Pending } else { Next::Idle }
        }
    }
}

/// Drops the checkpoint of `task` if `ended` (and it has one): a retry resumes from it, an
/// end no longer needs it.
async fn drop_checkpoint<S: Store>(args: &TrainerArgs<S>, task: &TaskRecord, ended: bool) {
    if ended && let Err(e) = args.store.drop_checkpoint(task.id).await {
        tracing::warn!(error = %e, "cannot drop the ended task's checkpoint; it expires");
    }
}

/// Writes how a training ended: the result, a retry, or the failure. True if this attempt
/// ended the task (not a retry, not fenced).
async fn record<S: Store>(
    args: &TrainerArgs<S>,
    task: &TaskRecord,
    result: Result<TrainOutcome, TrainError>,
    last_progress: Option<TaskProgress>,
    stored: Option<CasToken>,
) -> bool {
    let store = &args.store;
    let (id, attempt) = (task.id, task.attempt);
    let (written, event) = match result {
        Ok(outcome) => {
            let ending = Ending {
                stored: stored.as_ref(),
                id,
                attempt,
                finish: success(args, outcome, last_progress),
            };
            (ending.write(&**store).await, TaskEvent::Succeeded)
        }
        Err(TrainError::Cancelled) => {
            tracing::info!("task revoked while running");
            let written = store.finish(id, attempt, Finish::Revoked).await;
            (written, TaskEvent::Revoked)
        }
        Err(e) => {
            let error = TaskError {
                code: e.code().into(),
                message: e.to_string(),
            };
            if e.is_retryable() && attempt <= task.max_retries {
                let retry_delay_s = args.settings.retry_delay_s(attempt);
                tracing::warn!(error = %e, retry_in_s = retry_delay_s, "task attempt failed; retrying");
                let written = store.requeue(id, attempt, error, retry_delay_s).await;
                (written, TaskEvent::Retried)
            } else {
                tracing::warn!(error = %e, "task failed");
                let reason = telemetry::failure_reason(&error.code);
                let written = store.finish(id, attempt, Finish::Failure(error)).await;
                (written, TaskEvent::Failed(reason))
            }
        }
    };
    let ended = matches!(written, Ok(true)) && !matches!(event, TaskEvent::Retried);
    if matches!(event, TaskEvent::Succeeded) && ended {
        after_success(args, task);
    }
    note_end(written, event, task.model_type);
    ended
}

/// What follows a success once it is written, on a task of its own (the trainer does not
/// wait for it): its result indexed in the result cache, its model registered if a rule
/// asks (a schedule's `register`). Either failing is logged; the task's result stands.
fn after_success<S: Store>(args: &TrainerArgs<S>, task: &TaskRecord) {
    if task.cache_key.is_none() && task.register.is_none() {
        return;
    }
    let (store, id) = (args.store.clone(), task.id);
    let (key, rule) = (task.cache_key.clone(), task.register.clone());
    let work = async move {
        if let Some(key) = key
            && let Err(e) = store.remember_result(&key, id).await
        {
            tracing::warn!(error = %e, "cannot index the result for the result cache");
        }
        let Some(rule) = rule else { return };
        let task = match store.get(id).await {
            Ok(Lookup::Found(task)) => task,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the task to register its model");
                return;
            }
        };
        match crate::registry::register_by_rule(&*store, &rule, &task).await {
            Ok(done) => {
                telemetry::model_registered("schedule", done.promoted);
                tracing::info!(model = %rule.name, version = done.version.version,
                    promoted = done.promoted, "model registered");
            }
            Err(e) => tracing::warn!(model = %rule.name, error = %e, "cannot register the model"),
        }
    };
    tokio::spawn(work.in_current_span());
}

/// The end of a training that succeeded with `outcome`.
fn success<S>(
    args: &TrainerArgs<S>,
    outcome: TrainOutcome,
    last_progress: Option<TaskProgress>,
) -> Finish {
    tracing::info!(best = %outcome.best, "task succeeded");
    let mut result = serde_json::json!({
        "success": true,
        "message": outcome.message(),
        "model_type": outcome.model_type,
        "best_model": outcome.best,
        "metrics": outcome.metrics_json(),
        "trainer": args.name,
    });
    if let Some(step) = outcome.stopped_at {
        // A sweep's trial stopped at a rung: its model and metrics are those of that step.
        result["stopped_early"] = serde_json::json!({ "at": step });
        result["message"] = format!(
            "{} model stopped early at step {step} (a sweep's rung)",
            outcome.model_type.title()
        )
        .into();
    }
    Finish::Success {
        result,
        model: outcome.model_bytes,
        progress: last_progress,
    }
}

/// Counts the end of a task of `model` as `event` if it was `written`, or logs why not.
fn note_end(written: Result<bool, StoreError>, event: TaskEvent, model: ModelType) {
    match written {
        Ok(true) => telemetry::task_event(event, model),
        Ok(false) => tracing::warn!("task was taken over by another attempt; result dropped"),
        Err(e) => tracing::error!(error = %e, "cannot record the end of a task"),
    }
}

/// The metrics of a training that ended: how long the task ran, and what it trained.
pub(super) fn count_training<S>(
    args: &TrainerArgs<S>,
    task: &TaskRecord,
    result: &Result<TrainOutcome, TrainError>,
) {
    let device = args.device.to_string();
    if let Some(started) = task.started_at {
        telemetry::task_ran(task.model_type, &device, now_s() - started);
    }
    if let Ok(outcome) = result {
        for report in &outcome.reports {
            if report.model_type == ModelType::Noop {
                continue;
            }
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
}

/// Fails attempt `attempt` of task `id`, whose training ran `after_s` past its start, beyond
/// its hard time limit.
pub(super) async fn fail_past_hard_limit<S: Store>(
    store: &S,
    id: Uuid,
    attempt: u32,
    after_s: f64,
) {
    let error = TaskError {
        code: "time_limit".into(),
        message: format!(
            "the training did not stop at its time limit; after {after_s:.1} s (the hard \
             limit) its trainer was replaced"
        ),
    };
    tracing::error!(task_id = %id, "hard time limit reached; failing the task and replacing the trainer");
    match store.finish(id, attempt, Finish::Failure(error)).await {
        Ok(true) => {
            if let Ok(Lookup::Found(task)) = store.get(id).await {
                telemetry::task_event(TaskEvent::Failed("time_limit"), task.model_type);
                telemetry::task_running(task.model_type, false);
            }
        }
        Ok(false) => {}
        Err(e) => tracing::error!(task_id = %id, error = %e, "cannot fail the task"),
    }
}

/// A training thread that panicked: out of device memory is the task's own failure (not
/// retried on the same kind of device); anything else is the trainer's, which restarts.
pub(super) fn classify_panic(message: String, device: DeviceSpec) -> Ended {
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
