//! Durable task state: tasks, the priority queue, running leases, results with expiry, model
//! artifacts and uploaded data sets.
//!
//! One trait, [`Store`], with the embedded file store (redb, one node) behind it today; the
//! Redis store for clusters implements the same trait and passes the same conformance tests
//! (`tests/store.rs`).
//!
//! Invariants: a task is stored before its submission is answered; every write of a running
//! task carries its attempt number and a stale attempt's write is refused (fencing); finished
//! tasks expire `result_expires_s` after they finish, and an expired id is reported as expired
//! (not unknown, never PENDING) for `expired_memory_s` more.

mod embedded;
pub mod events;
mod instrumented;
mod keys;
mod link;
mod redis_store;

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::training::{DeviceClass, DeviceSpec, ModelType, TrainSpec};

pub use embedded::EmbeddedStore;
pub use events::{Event, EventId, EventKind};
pub use instrumented::Instrumented;
pub use keys::Keys;
pub use link::{RedisTls, Target};
pub use redis_store::RedisStore;

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
            id: Uuid::new_v4(),
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
            schedule: None,
            callback_url: None,
            callback: None,
            requested_as: None,
        }
    }

    /// The model type as the client named it: an old service's name it used, or the type.
    pub fn requested_name(&self) -> &str {
        self.requested_as
            .as_deref()
            .unwrap_or(self.model_type.as_str())
    }
}

/// Which firing of which schedule submitted a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleLink {
    pub name: String,
    /// The due time it fired for (Unix seconds).
    pub due_at: i64,
    /// How many due times this firing stands for: 1, or more for the one firing that
    /// catches up the times missed while the cluster was down.
    #[serde(default = "one")]
    pub due_times: u64,
}

fn one() -> u64 {
    1
}

/// What a schedule does with due times that passed more than its `misfire_grace_s` ago
/// without firing (the whole cluster was down).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Fire once for all of them.
    #[default]
    RunOnce,
    /// Fire none of them.
    Skip,
}

/// A periodic training, as the store keeps it. The leader fires it at each due time of
/// `cron` (see `crate::schedule`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    /// IANA time zone the cron expression is read in.
    pub timezone: String,
    pub missed: Missed,
    /// A due time this late or less still fires as its own task.
    pub misfire_grace_s: u64,
    pub model_type: ModelType,
    /// The training request as posted (the body of `POST /train/{model_type}/async`).
    pub request: serde_json::Value,
    /// The task each firing submits, with its own id and times.
    pub template: TaskRecord,
    pub created_at: f64,
    pub paused: bool,
    /// Every due time up to here (Unix seconds) has been fired or skipped.
    pub through: i64,
    pub fired: u64,
    /// Missed due times skipped (see `Missed::Skip`).
    pub skipped: u64,
    pub last_task: Option<Uuid>,
    pub last_fired_at: Option<f64>,
}

/// A client's `Idempotency-Key`, or a schedule's firing: the same key submits once; later
/// submissions with it get the first task back while the key lives.
///
/// Two namespaces share the stores' key space without meeting: a client's key is made of
/// letters, digits and `-_.:` only (`IdempotencyKey::client` refuses anything else), and a
/// firing's key holds a `/` (`IdempotencyKey::firing`), so no client key can take a
/// schedule's run over.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyKey {
    pub key: String,
    /// A digest of the request, so a key reused for a different request is told apart.
    pub fingerprint: String,
    /// How long the key is remembered.
    pub ttl_s: f64,
}

/// Longest client `Idempotency-Key`.
pub const MAX_CLIENT_KEY: usize = 255;

/// The fingerprint of every schedule firing's key (a client's is 16 hex digits).
pub const FIRING_FINGERPRINT: &str = "schedule";

impl IdempotencyKey {
    /// A client's key, if it is 1 to `MAX_CLIENT_KEY` letters, digits, `-`, `_`, `.` or `:`.
    pub fn client(key: &str, fingerprint: String, ttl_s: f64) -> Option<IdempotencyKey> {
        let valid = !key.is_empty()
            && key.len() <= MAX_CLIENT_KEY
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        valid.then(|| IdempotencyKey {
            key: key.to_string(),
            fingerprint,
            ttl_s,
        })
    }

    /// The key of schedule `name`'s firing for due time `due`: `schedule/NAME/DUE`, which no
    /// client key can be (clients may not use `/`).
    pub fn firing(name: &str, due: i64, ttl_s: f64) -> IdempotencyKey {
        IdempotencyKey {
            key: format!("schedule/{name}/{due}"),
            fingerprint: FIRING_FINGERPRINT.into(),
            ttl_s,
        }
    }

    /// The key firings had before they got a namespace of their own (`schedule:NAME:DUE`,
    /// which a client could also use): read once at each firing, so a firing submitted under
    /// it by an older node just before an upgrade is not submitted again.
    pub fn legacy_firing(name: &str, due: i64) -> String {
        format!("schedule:{name}:{due}")
    }
}

/// What `create_schedule` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleCreated {
    Created,
    /// A schedule has this name.
    Exists,
    /// `max` schedules exist already.
    Full,
}

/// What `submit_keyed` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// The task is stored and queued.
    New,
    /// The key was already used, for task `id` and a request with `fingerprint`.
    Existing { id: Uuid, fingerprint: String },
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
trait Expires {
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
fn found_unless_expired<T: Expires>(found: T) -> Lookup<T> {
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

/// An uploaded CSV data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub id: Uuid,
    pub name: String,
    pub target: String,
    pub rows: u64,
    pub features: Vec<String>,
    pub bytes: u64,
    pub uploaded_at: f64,
    /// When it is removed unless used before (Unix seconds; each use renews it); none: kept
    /// for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<f64>,
}

/// What `delete_dataset` did.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetDeleted {
    Deleted,
    Missing,
    /// A queued or running task uses it (this one, for instance): it is kept.
    InUse(Uuid),
}

impl DatasetInfo {
    /// Whether the sweep may remove it by `now` (if no task yet to end uses it).
    fn expired_at(&self, now: f64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Whether a stored task record (its JSON) is a task that is yet to end and trains on data set
/// `id`: a cheap look at the bytes first, the record decoded only when they name the set.
fn uses_dataset(record: &[u8], id: Uuid) -> Option<Uuid> {
    let needle = format!("\"dataset_id\":\"{id}\"");
    if !record.windows(needle.len()).any(|w| w == needle.as_bytes()) {
        return None;
    }
    let task: TaskRecord = serde_json::from_slice(record).ok()?;
    (task.dataset_id == Some(id) && !task.state.is_terminal()).then_some(task.id)
}

/// The uploaded data set a stored task record (its JSON) trains on, if the task is yet to end
/// (queued, waiting to retry, or running).
fn dataset_in_use(record: &[u8]) -> Option<Uuid> {
    let needle = b"\"dataset_id\":\"";
    if !record.windows(needle.len()).any(|w| w == needle) {
        return None;
    }
    let task: TaskRecord = serde_json::from_slice(record).ok()?;
    task.dataset_id.filter(|_| !task.state.is_terminal())
}

/// A running task's lease: who runs it, and which attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub id: Uuid,
    pub trainer: String,
    pub attempt: u32,
    pub max_retries: u32,
    pub model_type: ModelType,
    /// When the lease ends unless renewed (Unix seconds).
    pub until: f64,
}

/// The node of a trainer: trainer names are `node/device-N` (see `actors::trainer_name`);
/// a name without a node is its own.
pub fn trainer_node(trainer: &str) -> &str {
    trainer.split_once('/').map_or(trainer, |(node, _)| node)
}

impl Lease {
    /// The node of the trainer holding the lease.
    pub fn node(&self) -> &str {
        trainer_node(&self.trainer)
    }
}

/// A node as it announces itself in the store, about every second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// The HTTP address (REST, SSE, panel, metrics).
    pub http: String,
    /// The cluster address (ractor_cluster), empty on a node without a cluster.
    pub cluster: String,
    pub trainers: Vec<TrainerSeat>,
    pub started_at: f64,
    /// When it last announced itself (Unix seconds).
    pub seen_at: f64,
    /// Takes no new work.
    pub draining: bool,
}

/// A trainer a node runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerSeat {
    pub name: String,
    pub device: String,
}

/// What a trainer learns when it renews its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The attempt still runs; `cancel` if someone asked to stop it.
    Held { cancel: bool },
    /// The attempt no longer runs the task (it was requeued, or ended): stop working on it.
    Lost,
}

/// Timings the store applies.
#[derive(Debug, Clone, Copy)]
pub struct StoreSettings {
    /// Seconds a finished task and its model are kept.
    pub result_expires_s: f64,
    /// Seconds an expired id is still reported as expired.
    pub expired_memory_s: f64,
    /// Seconds a running attempt's lease lasts without renewal.
    pub lease_s: f64,
    /// Redis replicas that must confirm a submission or a result before the store
    /// acknowledges it (`WAIT`); 0: the primary's word is enough.
    pub min_replicas_ack: usize,
    /// Seconds a write waits for those replicas before it is refused.
    pub replica_ack_timeout_s: f64,
    /// Total bytes of uploaded data sets kept; an upload past it is refused. 0: no limit.
    pub dataset_max_total_bytes: u64,
    /// Seconds an uploaded data set is kept after its upload or last use; 0: for ever.
    pub dataset_expires_s: f64,
}

/// A sweep that removed at least this many expired tasks is run again at once: they expire
/// faster than one sweep a second removes them.
const SWEEP_AGAIN: u64 = 100;
/// Longest a node sweeps again and again at one time.
const SWEEP_BUDGET: std::time::Duration = std::time::Duration::from_millis(200);

/// Sweeps `store` (see [`Store::sweep`]) again while the last sweep removed many, for up to
/// `SWEEP_BUDGET`: each sweep looks at a bounded batch, and at a few thousand tasks a second
/// one batch a second fell behind (the listing index grew by about 800 entries a second in
/// the soak run). Returns how many tasks expired.
pub async fn sweep_expired<S: Store>(store: &S) -> Result<u64, StoreError> {
    let started = std::time::Instant::now();
    let mut removed = 0;
    loop {
        let now = store.sweep().await?;
        removed += now;
        if now < SWEEP_AGAIN || started.elapsed() > SWEEP_BUDGET {
            return Ok(removed);
        }
    }
}

/// Most seconds a task's event history is kept after it ended (its result may be kept longer):
/// `Last-Event-ID` resumes within it.
pub const HISTORY_AFTER_END_S: f64 = 600.0;

impl StoreSettings {
    /// How long an ended task's event history is kept: at most `HISTORY_AFTER_END_S`, and
    /// never longer than its result.
    pub fn history_expires_s(&self) -> f64 {
        self.result_expires_s.min(HISTORY_AFTER_END_S)
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            result_expires_s: 3600.0,
            expired_memory_s: 86_400.0,
            lease_s: 5.0,
            min_replicas_ack: 0,
            replica_ack_timeout_s: 2.0,
            dataset_max_total_bytes: 1 << 30,
            dataset_expires_s: 30.0 * 86_400.0,
        }
    }
}

impl StoreSettings {
    /// When a data set uploaded or used now expires.
    fn dataset_expires_at(&self, now: f64) -> Option<f64> {
        (self.dataset_expires_s > 0.0).then_some(now + self.dataset_expires_s)
    }

    /// Whether a data set expiring at `at` is renewed by a use now: once some of its life
    /// has passed (a tenth, at most a minute), so that a run of uses writes rarely.
    fn dataset_renews(&self, at: Option<f64>, now: f64) -> bool {
        let slack = (self.dataset_expires_s / 10.0).min(60.0);
        self.dataset_expires_s > 0.0
            && at.is_none_or(|at| at < now + self.dataset_expires_s - slack)
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("queue is full ({limit} tasks pending)")]
    QueueFull { limit: u64 },
    #[error("store is unavailable: {0}")]
    Unavailable(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "uploaded data sets take {total} bytes and this one {bytes} more, over the {limit} \
         bytes the cluster keeps (datasets.max_total_bytes): delete some (DELETE \
         /datasets/{{id}})"
    )]
    DatasetQuota { total: u64, bytes: u64, limit: u64 },
}

/// An uploaded data set: its description and its CSV bytes (shared: stores may cache them).
pub type StoredDataset = (DatasetInfo, Arc<[u8]>);

/// A task a trainer just claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub task: TaskRecord,
    /// The record exactly as the store keeps it, from a store that compares records as stored
    /// (Redis): carried to the trainer, it spares the trainer a read of the record, and
    /// [`Store::finish_from`] the read before its compare-and-set.
    pub stored: Option<String>,
}

impl std::ops::Deref for Claimed {
    type Target = TaskRecord;

    fn deref(&self) -> &TaskRecord {
        &self.task
    }
}

/// The end of an attempt, for [`Store::claim_and_finish`]: `finish` for attempt `attempt` of
/// task `id`, whose record the trainer may hold as `stored` (see [`Store::finish_from`]).
pub struct Ending<'a> {
    pub stored: Option<&'a str>,
    pub id: Uuid,
    pub attempt: u32,
    pub finish: Finish,
}

impl Ending<'_> {
    /// Writes this end to `store`: from the record held (`finish_from`), else `finish`.
    pub async fn write<S: Store + ?Sized>(self, store: &S) -> Result<bool, StoreError> {
        match self.stored {
            Some(stored) => {
                store
                    .finish_from(stored, self.id, self.attempt, self.finish)
                    .await
            }
            None => store.finish(self.id, self.attempt, self.finish).await,
        }
    }
}

/// The work a task does (its spec, as [`TrainSpec::same_work`] compares specs, on its
/// uploaded data set): a trainer in a run of quick tasks claims ahead only a task doing the
/// same, so that no task waits behind one that may be long.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub spec: TrainSpec,
    pub dataset: Option<Uuid>,
}

impl Work {
    pub fn of(task: &TaskRecord) -> Work {
        Work {
            spec: task.spec.clone(),
            dataset: task.dataset_id,
        }
    }

    /// Whether `task` does this work.
    pub fn done_by(&self, task: &TaskRecord) -> bool {
        self.dataset == task.dataset_id && self.spec.same_work(&task.spec)
    }
}

/// What [`Store::claim_and_finish`] did, each part with its own error: the task claimed next,
/// and whether the end was written (as `finish` answers).
pub struct ClaimedAndFinished {
    pub next: Result<Option<Claimed>, StoreError>,
    pub finished: Result<bool, StoreError>,
}

/// Durable task state. Every method is atomic: a change that touches several records happens
/// whole or not at all (`claim_and_finish` is two such changes).
pub trait Store: Send + Sync + 'static {
    /// Stores a new PENDING task and queues it, unless `queue_limit` tasks are pending.
    fn submit(
        &self,
        task: &TaskRecord,
        queue_limit: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// As `submit`, once per idempotency key: a key already used answers with its task.
    fn submit_keyed(
        &self,
        task: &TaskRecord,
        queue_limit: u64,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Submitted, StoreError>> + Send;
    /// The task and fingerprint a live idempotency key holds (`IdempotencyKey::key`).
    fn keyed(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<(Uuid, String)>, StoreError>> + Send;
    fn get(&self, id: Uuid) -> impl Future<Output = Result<Lookup, StoreError>> + Send;
    /// What `get` finds, only as far as the status endpoint shows it; a store that can read
    /// less than the whole record for that does.
    fn status(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Lookup<TaskStatus>, StoreError>> + Send {
        async move { Ok(self.get(id).await?.map(|task| TaskStatus::from(&*task))) }
    }
    /// Takes the next queued task (highest priority, then oldest) for `trainer`: it becomes
    /// STARTED with its attempt number one higher.
    fn claim(
        &self,
        trainer: &str,
        device: DeviceSpec,
    ) -> impl Future<Output = Result<Option<Claimed>, StoreError>> + Send;
    /// As `claim`, but only if the next task to claim does `work`: otherwise nothing is
    /// claimed and that task stays queued as it was.
    fn claim_work(
        &self,
        trainer: &str,
        device: DeviceSpec,
        work: &Work,
    ) -> impl Future<Output = Result<Option<Claimed>, StoreError>> + Send;
    /// Records progress of `attempt`; false if that attempt no longer runs the task.
    fn progress(
        &self,
        id: Uuid,
        attempt: u32,
        progress: &TaskProgress,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Ends `attempt` of a running task; false if that attempt no longer runs it.
    fn finish(
        &self,
        id: Uuid,
        attempt: u32,
        finish: Finish,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// `finish`, for a store that compares records as stored: it first tries the change from
    /// `stored` (a [`Claimed::stored`] no write has changed since, as far as the caller knows)
    /// and reads the record only if that was not the current one.
    fn finish_from(
        &self,
        stored: &str,
        id: Uuid,
        attempt: u32,
        finish: Finish,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = stored;
        self.finish(id, attempt, finish)
    }
    /// A trainer running on from one task to the next: claims the next queued task for
    /// `trainer` as `claim` does (none while its node is draining), then ends `attempt` of
    /// `id` as `finish_from` does (`finish` without `stored`). Claiming first, the trainer
    /// never looks idle in the leases.
    /// A store may do both in one round trip.
    fn claim_and_finish(
        &self,
        trainer: &str,
        device: DeviceSpec,
        ended: Ending<'_>,
    ) -> impl Future<Output = ClaimedAndFinished> + Send {
        async move {
            let next = match self.draining().await {
                Ok(nodes) if nodes.iter().any(|n| n == trainer_node(trainer)) => Ok(None),
                Ok(_) => self.claim(trainer, device).await,
                Err(e) => Err(e),
            };
            let finished = ended.write(self).await;
            ClaimedAndFinished { next, finished }
        }
    }
    /// Puts a running task back in the queue after `attempt` failed with `error`, at once or,
    /// with `delay_s` above 0, once that many seconds have passed (see `promote`); false if
    /// that attempt no longer runs it.
    fn requeue(
        &self,
        id: Uuid,
        attempt: u32,
        error: TaskError,
        delay_s: f64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Moves tasks whose retry delay has passed into the queue; returns how many.
    fn promote(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
    fn cancel(&self, id: Uuid) -> impl Future<Output = Result<CancelOutcome, StoreError>> + Send;
    fn list(
        &self,
        filter: &TaskFilter,
    ) -> impl Future<Output = Result<Vec<TaskRecord>, StoreError>> + Send;
    /// The model artifact of a SUCCESS task.
    fn model(&self, id: Uuid) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    /// Stores an uploaded data set, unless the data sets kept would then take more than
    /// `dataset_max_total_bytes` (`DatasetQuota`); returns it as kept, with its expiry.
    fn put_dataset(
        &self,
        info: &DatasetInfo,
        csv: &[u8],
    ) -> impl Future<Output = Result<DatasetInfo, StoreError>> + Send;
    /// A data set and its CSV; reading it renews its expiry. A data set is there until the
    /// sweep removed it (one that expired is kept while a task yet to end uses it).
    fn dataset(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<StoredDataset>, StoreError>> + Send;
    fn datasets(&self) -> impl Future<Output = Result<Vec<DatasetInfo>, StoreError>> + Send;
    /// Removes a data set, unless a task yet to end (queued, waiting to retry, or running)
    /// uses it.
    fn delete_dataset(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<DatasetDeleted, StoreError>> + Send;
    fn queue_depth(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Pending tasks by priority: index 0 is priority 0.
    fn queue_depths(&self) -> impl Future<Output = Result<[u64; 10], StoreError>> + Send;
    /// Every running task's lease.
    fn leases(&self) -> impl Future<Output = Result<Vec<Lease>, StoreError>> + Send;
    /// Renews the lease of `attempt` for another `lease_s`, and says whether to cancel it.
    fn renew(
        &self,
        id: Uuid,
        attempt: u32,
    ) -> impl Future<Output = Result<Renewal, StoreError>> + Send;
    /// Takes or renews the leader lease for `node` for `ttl_s`; true if `node` leads now.
    fn lead(&self, node: &str, ttl_s: f64)
    -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The node holding the leader lease.
    fn leader(&self) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Records (or refreshes) a node's announcement.
    fn announce(&self, node: &NodeInfo) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Up to `limit` ended tasks whose callback is due now; each is held for `hold_s` (so one
    /// deliverer at a time tries it) until `callback_tried` says how it went.
    fn due_callbacks(
        &self,
        limit: usize,
        hold_s: f64,
    ) -> impl Future<Output = Result<Vec<Uuid>, StoreError>> + Send;
    /// Records a delivery try: `error` None when delivered; with `retry_in_s`, try again then,
    /// else give up.
    fn callback_tried(
        &self,
        id: Uuid,
        error: Option<String>,
        retry_in_s: Option<f64>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Revokes every pending task (queued, or waiting out a retry backoff); returns how many.
    fn purge(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Marks node `name` as draining (it gets no new work) or, with `false`, takes it back.
    fn set_draining(
        &self,
        name: &str,
        draining: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The nodes marked as draining.
    fn draining(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Every node that announced itself in the last `NODE_MEMORY_S`, by name.
    fn nodes(&self) -> impl Future<Output = Result<Vec<NodeInfo>, StoreError>> + Send;
    /// Stores a new schedule, unless one already has its name or `max` schedules exist.
    fn create_schedule(
        &self,
        schedule: &Schedule,
        max: u64,
    ) -> impl Future<Output = Result<ScheduleCreated, StoreError>> + Send;
    /// Every schedule, by name.
    fn schedules(&self) -> impl Future<Output = Result<Vec<Schedule>, StoreError>> + Send;
    /// False if there was no such schedule.
    fn delete_schedule(&self, name: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Pauses a schedule or resumes it; a resumed schedule does not fire the due times it was
    /// paused through. False if there is no such schedule.
    fn pause_schedule(
        &self,
        name: &str,
        paused: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Marks every due time up to `through` done: fired as task `fired`, or `due_times` of
    /// them skipped with `None`. `through` never moves back, and a step is counted once. False
    /// if there is no such schedule.
    fn advance_schedule(
        &self,
        name: &str,
        through: i64,
        fired: Option<Uuid>,
        due_times: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The events of task `id` after `after` (all of them after `EventId::ZERO`), oldest
    /// first.
    fn task_events(
        &self,
        id: Uuid,
        after: EventId,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;
    /// The events of every task after `after`, oldest first: the latest `limit` of them.
    fn events_since(
        &self,
        after: EventId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;
    /// Every event logged from now on, by any node. A receiver more than
    /// `events::LIVE_BUFFER` events behind loses the oldest (`RecvError::Lagged`).
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event>;
    /// Removes what has expired by now (tasks, idempotency keys, data sets that no task yet
    /// to end uses: the others are renewed); returns how many tasks expired.
    fn sweep(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// How long a node that stopped announcing itself is still listed (as disconnected).
pub const NODE_MEMORY_S: f64 = 600.0;
/// A node that has not announced itself (every second) for this long is taken for down.
pub const NODE_STALE_S: f64 = 5.0;

/// Seconds since the Unix epoch on the store's clock: this host's clock plus the offset the
/// store measured (Redis's `TIME`; none for the embedded store). Every time kept in the store
/// (leases, node announcements, expiries, due times) is read from it, so that nodes whose
/// clocks disagree still agree on when a lease runs out.
pub fn now_s() -> f64 {
    local_now_s() + CLOCK_OFFSET_US.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6
}

/// Microseconds the store's clock is ahead of this host's.
static CLOCK_OFFSET_US: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// This host's own clock, in seconds since the Unix epoch.
fn local_now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Sets how far the store's clock is ahead of this host's (negative: behind).
fn set_clock_offset(offset_s: f64) {
    let us = (offset_s * 1e6).round() as i64;
    CLOCK_OFFSET_US.store(us, std::sync::atomic::Ordering::Relaxed);
}

impl Schedule {
    /// The change `advance_schedule` makes, shared by the stores that keep whole records.
    fn advanced(&mut self, through: i64, fired: Option<Uuid>, due_times: u64) {
        if through <= self.through {
            return;
        }
        self.through = through;
        match fired {
            Some(id) => {
                self.fired += 1;
                self.last_task = Some(id);
                self.last_fired_at = Some(now_s());
            }
            None => self.skipped += due_times,
        }
    }

    /// The change `pause_schedule` makes.
    fn paused_at(&mut self, paused: bool, now: f64) {
        if self.paused && !paused {
            self.through = self.through.max(now.floor() as i64);
        }
        self.paused = paused;
    }
}

// State transitions, shared by every store so they behave the same. Each takes the current
// record and returns the next one; the stores make the change atomic.

impl TaskRecord {
    /// Whether the task is running under `attempt` (fencing: a stale attempt may not write).
    pub fn runs_attempt(&self, attempt: u32) -> bool {
        self.state.is_running() && self.attempt == attempt
    }

    fn claimed(mut self, trainer: &str, settings: &StoreSettings) -> Self {
        let now = now_s();
        self.state = TaskState::Started;
        self.attempt += 1;
        self.trainer = Some(trainer.to_string());
        self.started_at = Some(now);
        self.progress = None;
        self.lease_until = Some(now + settings.lease_s);
        self.retry_at = None;
        self
    }

    /// A progress write renews the lease too.
    fn progressed(mut self, progress: &TaskProgress, settings: &StoreSettings) -> Self {
        self.state = TaskState::Progress;
        self.progress = Some(progress.clone());
        self.lease_until = Some(now_s() + settings.lease_s);
        self
    }

    fn renewed(mut self, settings: &StoreSettings) -> Self {
        self.lease_until = Some(now_s() + settings.lease_s);
        self
    }

    /// The ended record, and the model to store with it.
    fn finished(mut self, finish: Finish, settings: &StoreSettings) -> (Self, Option<Vec<u8>>) {
        let (state, model) = match finish {
            Finish::Success {
                result,
                model,
                progress,
            } => {
                if progress.is_some() {
                    self.progress = progress;
                }
                if let Some(p) = &mut self.progress {
                    p.current = p.total;
                    p.percent = 100.0;
                }
                self.result = Some(result);
                (TaskState::Success, Some(model))
            }
            Finish::Failure(error) => {
                self.error = Some(error);
                (TaskState::Failure, None)
            }
            Finish::Revoked => {
                self.error = Some(TaskError {
                    code: "revoked".into(),
                    message: "task was cancelled while running".into(),
                });
                (TaskState::Revoked, None)
            }
        };
        (self.ended(state, settings), model)
    }

    fn revoked_pending(mut self, settings: &StoreSettings) -> Self {
        self.error = Some(TaskError {
            code: "revoked".into(),
            message: "task was cancelled before it started".into(),
        });
        self.ended(TaskState::Revoked, settings)
    }

    fn purged(mut self, settings: &StoreSettings) -> Self {
        self.error = Some(TaskError {
            code: "purged".into(),
            message: "task was purged from the queue before it started".into(),
        });
        self.ended(TaskState::Revoked, settings)
    }

    fn ended(mut self, state: TaskState, settings: &StoreSettings) -> Self {
        let now = now_s();
        self.state = state;
        self.lease_until = None;
        self.finished_at = Some(now);
        self.expires_at = Some(now + settings.result_expires_s);
        self
    }

    fn requeued(mut self, attempt: u32, error: TaskError, delay_s: f64) -> Self {
        let now = now_s();
        self.attempts.push(AttemptRecord {
            attempt,
            trainer: self.trainer.take(),
            error,
            failed_at: Some(now),
        });
        self.state = TaskState::Pending;
        self.progress = None;
        self.lease_until = None;
        self.retry_at = (delay_s > 0.0).then_some(now + delay_s);
        self
    }

    /// The record after a delivery try of its callback.
    fn callback_noted(mut self, error: Option<String>, retry: bool) -> Self {
        let state = self.callback.get_or_insert_with(CallbackState::default);
        state.attempts += 1;
        match error {
            None => state.delivered_at = Some(now_s()),
            Some(e) => {
                state.last_error = Some(e);
                state.failed = !retry;
            }
        }
        self
    }

    fn cancel_flagged(mut self) -> Self {
        self.cancel_requested = true;
        self
    }

    /// The node of the task's current (or last) trainer.
    pub fn node(&self) -> Option<&str> {
        let trainer = self
            .trainer
            .as_deref()
            .or_else(|| self.attempts.last().and_then(|a| a.trainer.as_deref()))?;
        trainer.contains('/').then(|| trainer_node(trainer))
    }

    fn lease(&self) -> Lease {
        Lease {
            id: self.id,
            trainer: self.trainer.clone().unwrap_or_default(),
            attempt: self.attempt,
            max_retries: self.max_retries,
            model_type: self.model_type,
            until: self.lease_until.unwrap_or(f64::INFINITY),
        }
    }

    fn matches(&self, filter: &TaskFilter) -> bool {
        filter.state.is_none_or(|s| s == self.state)
            && filter.model_type.is_none_or(|m| m == self.model_type)
            && filter
                .node
                .as_ref()
                .is_none_or(|n| self.node() == Some(n.as_str()))
    }
}
