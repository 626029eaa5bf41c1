//! The task record, the one thing every role of the store reads or changes, and what reads of
//! it answer. How it changes is in `transitions.rs`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{RegisterRule, ScheduleLink, now_s};
use crate::training::device_kind::DeviceClass;
use crate::training::{ModelType, TrainSpec};

/// A task's life: PENDING -> STARTED -> PROGRESS -> SUCCESS | FAILURE, or REVOKED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskState {
    Pending,
    Started,
    Progress,
    Success,
    Failure,
    Revoked,
}

impl TaskState {
    pub const ALL: [TaskState; 6] = [
        TaskState::Pending,
        TaskState::Started,
        TaskState::Progress,
        TaskState::Success,
        TaskState::Failure,
        TaskState::Revoked,
    ];

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failure | TaskState::Revoked
        )
    }

    pub fn is_running(&self) -> bool {
        matches!(self, TaskState::Started | TaskState::Progress)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            TaskState::Pending => "PENDING",
            TaskState::Started => "STARTED",
            TaskState::Progress => "PROGRESS",
            TaskState::Success => "SUCCESS",
            TaskState::Failure => "FAILURE",
            TaskState::Revoked => "REVOKED",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }
}

/// How far a running task has come, as the status endpoint shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskProgress {
    pub current: u64,
    pub total: u64,
    pub percent: f64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
}

/// Why an attempt or a task failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    pub code: String,
    pub message: String,
}

/// One finished attempt that did not succeed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub trainer: Option<String>,
    pub error: TaskError,
    /// When the attempt ended (Unix seconds).
    #[serde(default)]
    pub failed_at: Option<f64>,
    /// The step (epochs and trees) of the checkpoint the attempt resumed from, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<u64>,
}

/// Everything the store keeps about a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: Uuid,
    pub model_type: ModelType,
    pub spec: TrainSpec,
    /// An uploaded data set to train on, instead of the built-in `spec.dataset`.
    pub dataset_id: Option<Uuid>,
    /// 0 (lowest) to 9 (highest).
    pub priority: u8,
    /// The kind of device the task must run on.
    #[serde(default)]
    pub device: DeviceClass,
    pub max_retries: u32,
    pub state: TaskState,
    /// 0 while pending the first time; each claim adds one.
    pub attempt: u32,
    pub progress: Option<TaskProgress>,
    /// Unix seconds.
    pub submitted_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub expires_at: Option<f64>,
    pub trainer: Option<String>,
    pub cancel_requested: bool,
    /// The final result (metrics) after SUCCESS.
    pub result: Option<serde_json::Value>,
    /// The final error after FAILURE or REVOKED.
    pub error: Option<TaskError>,
    /// Earlier attempts that failed and were retried.
    pub attempts: Vec<AttemptRecord>,
    /// While running: when the attempt's lease ends (Unix seconds) unless its trainer renews
    /// it. A task whose lease ended is requeued by the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<f64>,
    /// While pending after a failed attempt: when it may run again (retry backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<f64>,
    /// The step (epochs and trees) of the checkpoint the current attempt resumed from, if
    /// it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<u64>,
    /// The schedule that fired this task, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleLink>,
    /// Where to POST the final status when the task ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// The old service's model name the client submitted with (`tensorflow`, `pytorch`,
    /// `xgboost`), echoed in its answers; `model_type` is what trains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_as: Option<String>,
    /// How the delivery to `callback_url` went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackState>,
    /// SHA-256 of its uploaded data set's CSV (hex), read at submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_sha256: Option<String>,
    /// Its result's key in the result cache (`results::cache_key`), once it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<String>,
    /// The earlier task whose result this one copied (a `"cache": true` request that hit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<Uuid>,
    /// Where its model is registered once it succeeds (a schedule's `register`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register: Option<RegisterRule>,
    /// The sweep it is a trial of, if it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<super::SweepLink>,
}

/// Deliveries of a task's end to its `callback_url`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallbackState {
    /// Tries so far.
    pub attempts: u32,
    /// When the receiver accepted it (Unix seconds).
    pub delivered_at: Option<f64>,
    /// True once it was given up after the last try.
    pub failed: bool,
    pub last_error: Option<String>,
}

impl TaskRecord {
    /// A new PENDING task.
    pub fn new(spec: TrainSpec, dataset_id: Option<Uuid>, priority: u8, max_retries: u32) -> Self {
        TaskRecord {
            id: Uuid::now_v7(),
            model_type: spec.model_type,
            spec,
            dataset_id,
            priority,
            device: DeviceClass::Any,
            max_retries,
            state: TaskState::Pending,
            attempt: 0,
            progress: None,
            submitted_at: now_s(),
            started_at: None,
            finished_at: None,
            expires_at: None,
            trainer: None,
            cancel_requested: false,
            result: None,
            error: None,
            attempts: Vec::new(),
            lease_until: None,
            retry_at: None,
            resumed_from: None,
            schedule: None,
            callback_url: None,
            callback: None,
            requested_as: None,
            dataset_sha256: None,
            cache_key: None,
            cached_from: None,
            register: None,
            sweep: None,
        }
    }

    /// The model type as the client named it: an old service's name it used, or the type.
    pub fn requested_name(&self) -> &str {
        self.requested_as
            .as_deref()
            .unwrap_or(self.model_type.as_str())
    }
}

/// What `get` (or `status`) found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<T = Box<TaskRecord>> {
    Found(T),
    /// The task existed and its record expired.
    Expired,
    Missing,
}

impl<T> Lookup<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Lookup<U> {
        match self {
            Lookup::Found(found) => Lookup::Found(f(found)),
            Lookup::Expired => Lookup::Expired,
            Lookup::Missing => Lookup::Missing,
        }
    }
}

/// The fields of a task record the status endpoint shows: decoded from a stored record without
/// the rest of it (spec, result, attempts), which a status read does not need.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TaskStatus {
    pub id: Uuid,
    pub state: TaskState,
    pub attempt: u32,
    pub progress: Option<TaskProgress>,
    pub expires_at: Option<f64>,
    /// The kind of device the task waits for.
    #[serde(default)]
    pub device: DeviceClass,
}

/// A task record, whole or in part, that knows when its result expires.
pub(super) trait Expires {
    fn expires_at(&self) -> Option<f64>;

    fn expired_at(&self, now: f64) -> bool {
        self.expires_at().is_some_and(|at| at <= now)
    }
}

impl Expires for TaskRecord {
    fn expires_at(&self) -> Option<f64> {
        self.expires_at
    }
}

impl Expires for TaskStatus {
    fn expires_at(&self) -> Option<f64> {
        self.expires_at
    }
}

/// `found`, or expired if its result has expired by now.
pub(super) fn found_unless_expired<T: Expires>(found: T) -> Lookup<T> {
    if found.expired_at(now_s()) {
        Lookup::Expired
    } else {
        Lookup::Found(found)
    }
}

impl From<&TaskRecord> for TaskStatus {
    fn from(task: &TaskRecord) -> Self {
        TaskStatus {
            id: task.id,
            state: task.state,
            attempt: task.attempt,
            progress: task.progress.clone(),
            expires_at: task.expires_at,
            device: task.device,
        }
    }
}

/// How a task ended, as its trainer reports it.
#[derive(Debug, Clone)]
pub enum Finish {
    Success {
        result: serde_json::Value,
        model: Vec<u8>,
        /// The last progress report, if it is newer than the stored one.
        progress: Option<TaskProgress>,
    },
    Failure(TaskError),
    /// Stopped on request while running.
    Revoked,
}

/// What `cancel` did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// It was pending and is now REVOKED.
    Revoked,
    /// It is running on `trainer`; the trainer must stop it.
    Running {
        trainer: String,
        attempt: u32,
    },
    /// It had already ended.
    AlreadyFinished(TaskState),
    Expired,
    Missing,
}

/// Which tasks `list` returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub state: Option<TaskState>,
    pub model_type: Option<ModelType>,
    /// Tasks whose current or last trainer is on this node.
    pub node: Option<String>,
    pub limit: usize,
}
