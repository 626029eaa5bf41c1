//! Checkpoints of running trainings: the [`Checkpoints`] role.
//!
//! A task has at most one checkpoint, the latest its running attempt saved: a training's
//! state at a step boundary (`training::Checkpoint`), which a later attempt of the task
//! resumes from. Writes are fenced like every write of a running task: a stale attempt
//! cannot overwrite its successor's checkpoint. A checkpoint is dropped when its task ends
//! (the embedded store in the end's own transaction; with Redis, the trainer drops it after
//! the end, and its key expires `result_expires_s` after its last write in any case, so it
//! never outlives its task).

use std::future::Future;

use uuid::Uuid;

use super::StoreError;
use crate::training::Checkpoint;

/// The checkpoints of running tasks. Every method is atomic.
pub trait Checkpoints: Send + Sync + 'static {
    /// Keeps `checkpoint` as task `id`'s one checkpoint, replacing the one kept, if
    /// `attempt` runs the task; false, and nothing written, otherwise (fencing).
    fn put_checkpoint(
        &self,
        id: Uuid,
        attempt: u32,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The checkpoint kept for task `id`, if `attempt` runs the task, with the step it
    /// resumes from noted on the record (`resumed_from`, `TaskRecord::resumed`).
    fn resume_from(
        &self,
        id: Uuid,
        attempt: u32,
    ) -> impl Future<Output = Result<Option<Checkpoint>, StoreError>> + Send;
    /// The checkpoint kept for task `id`, if any, without noting anything.
    fn checkpoint(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Checkpoint>, StoreError>> + Send;
    /// Drops task `id`'s checkpoint, if one is kept (its task ended).
    fn drop_checkpoint(&self, id: Uuid) -> impl Future<Output = Result<(), StoreError>> + Send;
}
