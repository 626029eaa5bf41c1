//! Hyperparameter sweeps: a search over a space of hyperparameters, each configuration a
//! trial run as an ordinary task, with early stopping by asynchronous successive halving.
//!
//! Who decides what, each once:
//!
//! - the leader ([`advance`], a few times a second, as it fires schedules) launches trials up
//!   to the sweep's `parallel`, follows their tasks to their ends, and ends the sweep. Each
//!   launch is a submission keyed by `sweep/ID/TRIAL` (a namespace no client's key reaches),
//!   so a leader that dies between submitting and recording it is finished by the next one
//!   without a second task; each record change is a compare-and-set on the sweep's version;
//! - a trial's trainer reports its validation metric at each rung and is told whether to go
//!   on (`store::Sweeps::report_rung`, ASHA's rule applied in the store, once per rung).
//!
//! `space.rs` draws or enumerates the trials' parameters.

pub mod space;

use serde_json::json;
use uuid::Uuid;

use crate::store::{
    IdempotencyKey, Lookup, Store, StoreError, Submitted, Sweep, SweepLink, SweepRegistered,
    SweepState, TaskRecord, TaskState, Trial, TrialState, now_s,
};
use crate::telemetry;
use crate::training::ValMetric;

/// Fingerprint of the trials' submission keys (never a client's: theirs are digests).
pub const TRIAL_FINGERPRINT: &str = "sweep";
/// How long a trial's submission key lives: far longer than any leader failover.
const TRIAL_KEY_TTL_S: f64 = 7.0 * 86_400.0;

/// The key trial `trial` of sweep `id` is submitted under.
pub fn trial_key(id: Uuid, trial: u32) -> IdempotencyKey {
    IdempotencyKey {
        key: format!("sweep/{id}/{trial}"),
        fingerprint: TRIAL_FINGERPRINT.into(),
        ttl_s: TRIAL_KEY_TTL_S,
    }
}

/// Takes every running sweep one step. The leader calls it a few times a second. A sweep
/// that cannot be advanced now is logged and left for the next call.
pub async fn advance<S: Store>(store: &S) -> Result<(), StoreError> {
    for sweep in store.running_sweeps().await? {
        let id = sweep.id;
        if let Err(e) = step(store, sweep).await {
            tracing::warn!(sweep_id = %id, error = %e, "cannot advance a sweep");
        }
    }
    Ok(())
}

/// Forgets the ended sweeps past their expiry; returns how many. Any node may (a delete is
/// idempotent); each does, once a minute.
pub async fn forget_expired<S: Store>(store: &S) -> Result<u64, StoreError> {
    let now = now_s();
    let mut forgotten = 0;
    for sweep in store.sweeps().await? {
        if sweep.state != SweepState::Running
            && sweep.expires_at.is_some_and(|at| at <= now)
            && store.delete_sweep(sweep.id).await?
        {
            forgotten += 1;
        }
    }
    Ok(forgotten)
}

/// One step of a running sweep: its ended trials noted, new ones launched (or, once it is
/// cancelled, the rest revoked), its end noted; all written at once if anything changed.
async fn step<S: Store>(store: &S, mut sweep: Sweep) -> Result<(), StoreError> {
    // The changes' events, and the trial outcomes counted once the changes are written.
    let (mut events, mut outcomes) = (Vec::new(), Vec::new());
    for i in 0..sweep.trials.len() {
        let trial = &sweep.trials[i];
        if trial.state != TrialState::Running {
            continue;
        }
        let Some(task_id) = trial.task_id else {
            continue;
        };
        let ended = match store.get(task_id).await? {
            Lookup::Found(task) if task.state.is_terminal() => Some(ended_trial(&sweep, &task)),
            Lookup::Found(task) => {
                if sweep.cancel_requested && !task.cancel_requested {
                    store.cancel(task_id).await?;
                }
                None
            }
            // Gone before it was seen to end (its record expired): nothing to read from it.
            Lookup::Expired | Lookup::Missing => Some((TrialState::Failure, None, None, None)),
        };
        if let Some((state, resource, metric, test_r2)) = ended {
            let trial = &mut sweep.trials[i];
            (trial.state, trial.resource, trial.metric, trial.test_r2) =
                (state, resource, metric, test_r2);
            outcomes.push(trial_outcome(state));
            events.push(trial_event(sweep.id, trial, "trial_ended"));
        }
    }
    let running = sweep
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Running)
        .count();
    let mut free = (sweep.parallel as usize).saturating_sub(running);
    for i in 0..sweep.trials.len() {
        if sweep.trials[i].state != TrialState::Waiting {
            continue;
        }
        let key = trial_key(sweep.id, sweep.trials[i].trial);
        if sweep.cancel_requested {
            // A launch a failed-over leader submitted but did not record is revoked too.
            if let Some((task_id, _)) = store.keyed(&key.key).await? {
                store.cancel(task_id).await?;
            }
            sweep.trials[i].state = TrialState::Revoked;
            outcomes.push(trial_outcome(TrialState::Revoked));
            events.push(trial_event(sweep.id, &sweep.trials[i], "trial_ended"));
            continue;
        }
        if free == 0 {
            break;
        }
        let task_id = launch(store, &sweep, &sweep.trials[i], &key).await?;
        let trial = &mut sweep.trials[i];
        trial.state = TrialState::Running;
        trial.task_id = Some(task_id);
        outcomes.push("started");
        events.push(trial_event(sweep.id, trial, "trial_started"));
        free -= 1;
    }
    if sweep.trials.iter().all(|t| t.state.is_ended()) {
        let now = now_s();
        sweep.state = if sweep.cancel_requested {
            SweepState::Revoked
        } else {
            SweepState::Success
        };
        sweep.finished_at = Some(now);
        sweep.expires_at = Some(now + sweep.keep_s);
        if sweep.state == SweepState::Success {
            sweep.registered = register_best(store, &sweep).await;
        }
        events.push(end_event(&sweep));
    }
    if events.is_empty() {
        return Ok(());
    }
    sweep.version += 1;
    if !store.update_sweep(&sweep, &events).await? {
        // Changed meanwhile (a cancel, or another leader for a moment): the next step reads
        // it again, and counts what it finds then; a trial launched here is found again by
        // its key.
        tracing::debug!(sweep_id = %sweep.id, "sweep changed meanwhile; stepping it again");
        return Ok(());
    }
    for outcome in outcomes {
        telemetry::sweep_trial(outcome);
    }
    if let Some(end) = sweep.finished_at {
        telemetry::sweep_ended(sweep.state, end - sweep.created_at);
    }
    if let Some(SweepRegistered {
        version: Some(_),
        promoted,
        ..
    }) = sweep.registered
    {
        telemetry::model_registered("sweep", promoted);
    }
    Ok(())
}

/// Registers the best trial's model as the sweep's `register` rule says (none without a
/// rule or a best trial). Once: a leader that registered it and died before recording that
/// leaves the version its successor finds. A failure is recorded, not retried: the trial's
/// task can still be registered by hand while its result lives.
async fn register_best<S: Store>(store: &S, sweep: &Sweep) -> Option<SweepRegistered> {
    let rule = sweep.register.as_ref()?;
    let task_id = sweep.best()?.task_id?;
    let failed = |error: String| SweepRegistered {
        name: rule.name.clone(),
        version: None,
        promoted: false,
        error: Some(error),
    };
    let task = match store.get(task_id).await {
        Ok(Lookup::Found(task)) => task,
        Ok(_) => {
            return Some(failed(format!(
                "task {task_id} expired before the sweep ended"
            )));
        }
        Err(e) => return Some(failed(e.to_string())),
    };
    match crate::registry::register_once_by_rule(store, rule, &task).await {
        Ok(done) => {
            tracing::info!(sweep_id = %sweep.id, model = %rule.name,
                version = done.version.version, promoted = done.promoted,
                "best trial's model registered");
            Some(SweepRegistered {
                name: rule.name.clone(),
                version: Some(done.version.version),
                promoted: done.promoted,
                error: None,
            })
        }
        Err(e) => {
            tracing::warn!(sweep_id = %sweep.id, model = %rule.name, error = %e,
                "cannot register the best trial's model");
            Some(failed(e.to_string()))
        }
    }
}

/// Submits a trial's task, once: a repeat finds the first one.
async fn launch<S: Store>(
    store: &S,
    sweep: &Sweep,
    trial: &Trial,
    key: &IdempotencyKey,
) -> Result<Uuid, StoreError> {
    let task = trial_task(sweep, trial);
    // A trial is never refused for a full queue: its sweep was accepted, and the leader
    // launches no more than `parallel` at once.
    match store.submit_keyed(&task, u64::MAX, key).await? {
        Submitted::New => {
            tracing::info!(sweep_id = %sweep.id, trial = trial.trial, task_id = %task.id, "trial launched");
            telemetry::task_event(telemetry::TaskEvent::Submitted, task.model_type);
            Ok(task.id)
        }
        Submitted::Existing { id, .. } => Ok(id),
    }
}

/// The task of `trial`: the sweep's template with the trial's parameters.
pub fn trial_task(sweep: &Sweep, trial: &Trial) -> TaskRecord {
    let mut task = sweep.template.clone();
    task.id = Uuid::now_v7();
    task.submitted_at = now_s();
    space::apply(&trial.params, &mut task.spec);
    task.sweep = Some(SweepLink {
        id: sweep.id,
        trial: trial.trial,
        metric: sweep.metric,
        rungs: sweep.asha.map(|a| a.rungs()).unwrap_or_default(),
        rule: sweep.rung_rule(),
    });
    task
}

/// What an ended trial's task says: its state, the steps it trained, the sweep's metric
/// and the test R2 of its model.
type Ended = (TrialState, Option<u64>, Option<f64>, Option<f64>);

fn ended_trial(sweep: &Sweep, task: &TaskRecord) -> Ended {
    let result = task.result.as_ref();
    let metrics = result.and_then(|r| r.get("metrics"));
    let number = |key: &str| metrics.and_then(|m| m.get(key)).and_then(|v| v.as_f64());
    let state = match task.state {
        TaskState::Success if result.and_then(|r| r.get("stopped_early")).is_some() => {
            TrialState::Stopped
        }
        TaskState::Success => TrialState::Success,
        TaskState::Revoked => TrialState::Revoked,
        _ => TrialState::Failure,
    };
    let resource = number("iterations").map(|v| v as u64);
    (
        state,
        resource,
        number(sweep.metric.as_str()),
        number("test_r2"),
    )
}

fn trial_outcome(state: TrialState) -> &'static str {
    match state {
        TrialState::Success => "completed",
        TrialState::Stopped => "stopped_early",
        TrialState::Revoked => "revoked",
        _ => "failed",
    }
}

/// The JSON of a trial's event.
fn trial_event(id: Uuid, trial: &Trial, kind: &str) -> String {
    json!({
        "type": kind,
        "sweep_id": id,
        "trial": trial.trial,
        "state": trial.state,
        "task_id": trial.task_id,
        "params": trial.params,
        "resource": trial.resource,
        "metric": trial.metric,
    })
    .to_string()
}

/// The JSON of a sweep's last event.
fn end_event(sweep: &Sweep) -> String {
    let best = sweep.best();
    json!({
        "type": "end",
        "sweep_id": sweep.id,
        "state": sweep.state.as_str(),
        "best_trial": best.map(|t| t.trial),
        "best_task_id": best.and_then(|t| t.task_id),
        "best_metric": best.and_then(|t| t.metric),
        "registered": sweep.registered,
    })
    .to_string()
}

/// The JSON of a sweep's first event.
pub fn created_event(sweep: &Sweep) -> String {
    json!({
        "type": "created",
        "sweep_id": sweep.id,
        "name": sweep.name,
        "trials": sweep.trials.len(),
        "metric": sweep.metric,
    })
    .to_string()
}

/// Whether a sweep ranks by a metric the trainers compute.
pub fn metric_names() -> &'static [&'static str] {
    &ValMetric::NAMES
}
