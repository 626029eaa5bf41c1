//! The queue as trainers and the leader work it: the [`TaskQueue`] role, claims, leases and
//! the compare-and-set token ([`CasToken`]); and the [`Callbacks`] role, the queue of ended
//! tasks whose webhook is due.

use std::future::Future;

use uuid::Uuid;

use super::{ClusterState, Finish, StoreError, TaskError, TaskProgress, TaskRecord, trainer_node};
use crate::training::device_kind::DeviceSpec;
use crate::training::{ModelType, TrainSpec};

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

impl Lease {
    /// The node of the trainer holding the lease.
    pub fn node(&self) -> &str {
        trainer_node(&self.trainer)
    }
}

/// What a trainer learns when it renews its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The attempt still runs; `cancel` if someone asked to stop it.
    Held { cancel: bool },
    /// The attempt no longer runs the task (it was requeued, or ended): stop working on it.
    Lost,
}

/// A task a trainer just claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub task: TaskRecord,
    /// The record exactly as the store keeps it, from a store that compares records as stored
    /// (Redis): carried to the trainer, it spares the trainer a read of the record, and
    /// [`TaskQueue::finish_from`] the read before its compare-and-set.
    pub stored: Option<CasToken>,
}

/// A compare-and-set token: a task record exactly as a store that compares records as stored
/// (Redis) keeps it. Opaque outside the store: a holder only hands it back (to
/// [`TaskQueue::finish_from`], or to the trainer it sends a task to, which decodes the record
/// from it instead of reading it). It crosses nodes in its serde form, a plain string.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CasToken(String);

impl CasToken {
    /// The token of a record stored as `stored`.
    pub(super) fn new(stored: String) -> CasToken {
        CasToken(stored)
    }

    /// The record as stored, for the compare of a compare-and-set.
    pub(super) fn as_stored(&self) -> &str {
        &self.0
    }

    /// Its size in bytes (a cluster message has a limit).
    pub fn size_bytes(&self) -> usize {
        self.0.len()
    }

    /// The record it holds.
    pub fn record(&self) -> Result<TaskRecord, StoreError> {
        serde_json::from_str(&self.0).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

impl std::ops::Deref for Claimed {
    type Target = TaskRecord;

    fn deref(&self) -> &TaskRecord {
        &self.task
    }
}

/// The end of an attempt, for [`TaskQueue::claim_and_finish`]: `finish` for attempt `attempt` of
/// task `id`, whose record the trainer may hold as `stored` (see [`TaskQueue::finish_from`]).
pub struct Ending<'a> {
    pub stored: Option<&'a CasToken>,
    pub id: Uuid,
    pub attempt: u32,
    pub finish: Finish,
}

impl Ending<'_> {
    /// Writes this end to `store`: from the record held (`finish_from`), else `finish`.
    pub async fn write<S: TaskQueue + ?Sized>(self, store: &S) -> Result<bool, StoreError> {
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

/// What [`TaskQueue::claim_and_finish`] did, each part with its own error: the task claimed next,
/// and whether the end was written (as `finish` answers).
pub struct ClaimedAndFinished {
    pub next: Result<Option<Claimed>, StoreError>,
    pub finished: Result<bool, StoreError>,
}

/// The queue as trainers and the leader work it: claims, progress, lease renewals, the end of
/// an attempt, requeues and retries. Every method is atomic: a change that touches several
/// records happens whole or not at all (`claim_and_finish` is two such changes).
pub trait TaskQueue: Send + Sync + 'static {
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
    /// `token` (a [`Claimed::stored`] no write has changed since, as far as the caller knows)
    /// and reads the record only if that was not the current one.
    fn finish_from(
        &self,
        token: &CasToken,
        id: Uuid,
        attempt: u32,
        finish: Finish,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = token;
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
    ) -> impl Future<Output = ClaimedAndFinished> + Send
    where
        Self: ClusterState,
    {
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
    /// Every running task's lease.
    fn leases(&self) -> impl Future<Output = Result<Vec<Lease>, StoreError>> + Send;
    /// Renews the lease of `attempt` for another `lease_s`, and says whether to cancel it.
    fn renew(
        &self,
        id: Uuid,
        attempt: u32,
    ) -> impl Future<Output = Result<Renewal, StoreError>> + Send;
}

/// The durable queue of ended tasks whose completion webhook is due (see `crate::notify`). A
/// task ends into it when `TaskRecord::callback_due` says so.
pub trait Callbacks: Send + Sync + 'static {
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
}
