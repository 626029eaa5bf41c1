//! The task routes' answers: status, result, cancel, inspect (`GET /task/{id}`) and the list
//! (`GET /tasks`), with the list's query.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::schema::{
    AttemptRecordSchema, DeviceClassSchema, ModelTypeSchema, TaskErrorSchema, TaskProgressSchema,
    TaskStateSchema, TrainSpecSchema,
};
use crate::store::{
    AttemptRecord, CallbackState, ScheduleLink, TaskError, TaskProgress, TaskRecord, TaskState,
    trainer_node,
};
use crate::training::{self, DeviceClass, ModelType, TrainSpec};

/// A task's progress as the API shows it: what it reported, or, before its first report, one
/// made from its state.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ShownProgress<'a> {
    Reported(&'a TaskProgress),
    FromState {
        current: u64,
        total: u64,
        percent: f64,
        message: &'static str,
    },
}

impl<'a> ShownProgress<'a> {
    /// The progress shown for a task in `state` that reported `progress` last.
    pub fn of(progress: Option<&'a TaskProgress>, state: TaskState) -> Self {
        if let Some(p) = progress {
            return ShownProgress::Reported(p);
        }
        let (percent, message) = match state {
            TaskState::Pending => (0.0, "Task is waiting in the queue"),
            TaskState::Started => (0.0, "Task started"),
            TaskState::Success => (100.0, state.as_str()),
            state => (0.0, state.as_str()),
        };
        ShownProgress::FromState {
            current: 0,
            total: 0,
            percent,
            message,
        }
    }

    /// A task record's progress.
    pub fn of_task(task: &'a TaskRecord) -> Self {
        Self::of(task.progress.as_ref(), task.state)
    }
}

/// The answer of `GET /task/{id}/status`, the hottest route: written straight from the
/// status, with no JSON value built in between.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusAnswer<'a> {
    pub task_id: Uuid,
    #[schema(value_type = TaskStateSchema)]
    pub state: TaskState,
    #[schema(value_type = TaskProgressSchema)]
    pub progress: ShownProgress<'a>,
    pub attempt: u32,
    /// Why a queued task waits, when it waits for a device no node offers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "no node offers a gpu trainer")]
    pub waiting_for: Option<String>,
}

/// The answer of `GET /task/{id}/result` (and of the synchronous `POST /train/{model_type}`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"success": true, "task_id": "0b5e4c1e-3f1c-4c39-9e4b-1d2f3a4b5c6d",
    "state": "SUCCESS", "result": {"model_type": "mlp",
    "message": "MLP model trained successfully", "metrics": {"r2": 0.93, "rmse": 1.2}}}))]
pub struct ResultAnswer<'a> {
    /// False once the task failed or was revoked.
    pub success: bool,
    pub task_id: Uuid,
    #[schema(value_type = TaskStateSchema)]
    pub state: TaskState,
    /// The training's result (model type, message, metrics, timings), once it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, nullable = false)]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<TaskErrorSchema>, nullable = false)]
    pub error: Option<&'a TaskError>,
    /// The attempts that failed before, if any.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    #[schema(value_type = Vec<AttemptRecordSchema>)]
    pub attempts: &'a [AttemptRecord],
    /// The earlier task whose result this one copied (`"cache": true`), with no training.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub cached_from: Option<Uuid>,
    /// The sweep it is a trial of: `{id, trial}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sweep: Option<SweepRef>,
}

impl<'a> ResultAnswer<'a> {
    /// The result of `task` as the API shows it (the one place that builds it).
    pub fn of(task: &'a TaskRecord) -> Self {
        let mut result = task.result.clone();
        // An old client compares the model type it asked for, and reads the old message.
        if let (Some(Value::Object(fields)), Some(old)) = (&mut result, &task.requested_as) {
            fields.insert("model_type".into(), Value::from(old.as_str()));
            let message = training::success_message(&old.to_uppercase());
            fields.insert("message".into(), Value::from(message));
        }
        ResultAnswer {
            success: task.state == TaskState::Success || !task.state.is_terminal(),
            task_id: task.id,
            state: task.state,
            result,
            error: task.error.as_ref(),
            attempts: &task.attempts,
            cached_from: task.cached_from,
            sweep: SweepRef::of(task),
        }
    }
}

/// The answer of `POST /task/{id}/cancel` (202).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"success": true, "task_id": "0b5e4c1e-3f1c-4c39-9e4b-1d2f3a4b5c6d",
    "state": "REVOKED", "message": "Task revoked before it started"}))]
pub struct CancelAnswer {
    pub success: bool,
    pub task_id: Uuid,
    /// REVOKED when it had not started, PROGRESS while it stops.
    #[schema(value_type = TaskStateSchema)]
    pub state: TaskState,
    pub message: String,
}

/// The query of `GET /tasks`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TasksQuery {
    /// Only tasks in this state (PENDING, STARTED, PROGRESS, SUCCESS, FAILURE, REVOKED).
    #[param(value_type = Option<TaskStateSchema>)]
    pub state: Option<String>,
    /// Only tasks of this model type.
    #[param(value_type = Option<ModelTypeSchema>)]
    pub model_type: Option<String>,
    /// Only tasks that ran on this node.
    pub node: Option<String>,
    /// Most tasks listed, 1 to 1000 (default 50), newest first.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000, example = 50)]
    pub limit: Option<String>,
    /// A token, for clients that cannot send headers (accepted on every route).
    pub token: Option<String>,
}

/// One task in `GET /tasks`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskSummary<'a> {
    pub task_id: Uuid,
    #[schema(value_type = TaskStateSchema)]
    pub state: TaskState,
    #[schema(value_type = ModelTypeSchema)]
    pub model_type: ModelType,
    pub priority: u8,
    pub attempt: u32,
    pub submitted_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub trainer: Option<&'a str>,
    pub dataset: &'a str,
    #[schema(value_type = TaskProgressSchema)]
    pub progress: ShownProgress<'a>,
    #[schema(value_type = Option<TaskErrorSchema>)]
    pub error: Option<&'a TaskError>,
    /// The schedule that fired it, if one did.
    pub schedule: Option<&'a str>,
    /// The sweep it is a trial of, if it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepRef>,
}

/// Which sweep and which of its trials a task is.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct SweepRef {
    pub id: Uuid,
    pub trial: u32,
}

impl SweepRef {
    fn of(task: &TaskRecord) -> Option<SweepRef> {
        task.sweep.as_ref().map(|s| SweepRef {
            id: s.id,
            trial: s.trial,
        })
    }
}

impl<'a> TaskSummary<'a> {
    pub fn of(t: &'a TaskRecord) -> Self {
        TaskSummary {
            task_id: t.id,
            state: t.state,
            model_type: t.model_type,
            priority: t.priority,
            attempt: t.attempt,
            submitted_at: t.submitted_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            trainer: t.trainer.as_deref(),
            dataset: &t.spec.dataset,
            progress: ShownProgress::of_task(t),
            error: t.error.as_ref(),
            schedule: t.schedule.as_ref().map(|s| s.name.as_str()),
            sweep: SweepRef::of(t),
        }
    }
}

/// The answer of `GET /tasks`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskList<'a> {
    pub success: bool,
    pub count: usize,
    pub tasks: Vec<TaskSummary<'a>>,
}

/// What a task asked for, in `GET /task/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskRequestView<'a> {
    #[schema(value_type = TrainSpecSchema)]
    pub spec: &'a TrainSpec,
    pub dataset_id: Option<Uuid>,
    pub priority: u8,
    pub max_retries: u32,
    #[schema(value_type = DeviceClassSchema)]
    pub device: DeviceClass,
}

/// One failed attempt, in `GET /task/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView<'a> {
    pub attempt: u32,
    pub node: Option<&'a str>,
    pub trainer: Option<&'a str>,
    #[schema(value_type = TaskErrorSchema)]
    pub error: &'a TaskError,
    pub failed_at: Option<f64>,
    /// The step (epochs and trees, as `progress.current` counts) the attempt started from:
    /// 0 from scratch, more when it resumed from an earlier attempt's checkpoint.
    pub resumed_from: u64,
}

/// When things happened to a task (Unix seconds) and how long they took.
#[derive(Debug, Serialize, ToSchema)]
pub struct Timings {
    pub submitted_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub expires_at: Option<f64>,
    pub retry_at: Option<f64>,
    pub waited_s: Option<f64>,
    pub ran_s: Option<f64>,
}

/// The answer of `GET /task/{id}`: everything known about a task (what Flower's task page
/// showed).
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskDetail<'a> {
    pub success: bool,
    pub task_id: Uuid,
    #[schema(value_type = TaskStateSchema)]
    pub state: TaskState,
    pub waiting_for: Option<String>,
    #[schema(value_type = ModelTypeSchema)]
    pub model_type: ModelType,
    /// The old service's model name the request used, if it did.
    pub requested_as: Option<&'a str>,
    pub request: TaskRequestView<'a>,
    #[schema(value_type = TaskProgressSchema)]
    pub progress: ShownProgress<'a>,
    pub attempt: u32,
    /// The step (epochs and trees, as `progress.current` counts) the current attempt started
    /// from: 0 from scratch, more when it resumed from an earlier attempt's checkpoint; null
    /// before the first attempt.
    pub resumed_from: Option<u64>,
    pub node: Option<&'a str>,
    pub trainer: Option<&'a str>,
    pub cancel_requested: bool,
    pub attempts: Vec<AttemptView<'a>>,
    pub timings: Timings,
    #[schema(value_type = Option<Object>)]
    pub result: Option<&'a Value>,
    #[schema(value_type = Option<TaskErrorSchema>)]
    pub error: Option<&'a TaskError>,
    /// The schedule firing that submitted it: `{name, due_at, due_times}`.
    #[schema(value_type = Option<Object>)]
    pub schedule: Option<&'a ScheduleLink>,
    pub callback_url: Option<&'a str>,
    /// Its completion webhook's delivery: `{attempts, delivered_at, failed, last_error}`.
    #[schema(value_type = Option<Object>)]
    pub callback: Option<&'a CallbackState>,
    /// The earlier task whose result this one copied (`"cache": true`).
    pub cached_from: Option<Uuid>,
    /// The sweep it is a trial of: `{id, trial}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepRef>,
}

impl<'a> TaskDetail<'a> {
    /// `task` as `GET /task/{id}` shows it at `now` (Unix seconds).
    pub fn of(task: &'a TaskRecord, waiting_for: Option<String>, now: f64) -> Self {
        let ran_s = match (task.started_at, task.finished_at) {
            (Some(s), Some(f)) => Some(f - s),
            (Some(s), None) => Some(now - s),
            _ => None,
        };
        let attempts = task
            .attempts
            .iter()
            .map(|a| AttemptView {
                attempt: a.attempt,
                node: a
                    .trainer
                    .as_deref()
                    .filter(|t| t.contains('/'))
                    .map(trainer_node),
                trainer: a.trainer.as_deref(),
                error: &a.error,
                failed_at: a.failed_at,
                resumed_from: a.resumed_from.unwrap_or(0),
            })
            .collect();
        TaskDetail {
            success: true,
            task_id: task.id,
            state: task.state,
            waiting_for,
            model_type: task.model_type,
            requested_as: task.requested_as.as_deref(),
            request: TaskRequestView {
                spec: &task.spec,
                dataset_id: task.dataset_id,
                priority: task.priority,
                max_retries: task.max_retries,
                device: task.device,
            },
            progress: ShownProgress::of_task(task),
            attempt: task.attempt,
            resumed_from: (task.attempt > 0).then(|| task.resumed_from.unwrap_or(0)),
            node: task.node(),
            trainer: task.trainer.as_deref(),
            cancel_requested: task.cancel_requested,
            attempts,
            timings: Timings {
                submitted_at: task.submitted_at,
                started_at: task.started_at,
                finished_at: task.finished_at,
                expires_at: task.expires_at,
                retry_at: task.retry_at,
                waited_s: task.started_at.map(|s| s - task.submitted_at),
                ran_s,
            },
            result: task.result.as_ref(),
            error: task.error.as_ref(),
            schedule: task.schedule.as_ref(),
            callback_url: task.callback_url.as_deref(),
            callback: task.callback.as_ref(),
            cached_from: task.cached_from,
            sweep: SweepRef::of(task),
        }
    }
}
