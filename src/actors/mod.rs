//! The node's actors (ractor):
//!
//! ```text
//! Supervisor ─┬─ Dispatcher        claims queued tasks from the store, hands them to idle trainers
//!             └─ Trainer × N       one per device; runs train() on a blocking thread
//! ```
//!
//! The Supervisor restarts a failed trainer (a panic inside training included) after a backoff;
//! the task it was running is put back in the queue (or failed, once its retries are spent).

mod dispatcher;
mod supervisor;
mod trainer;

use std::sync::Arc;

pub use dispatcher::{Dispatcher, DispatcherMsg, TrainerInfo};
pub use supervisor::{DISPATCHER_NAME, Supervisor, SupervisorArgs, SupervisorMsg};
pub use trainer::{Trainer, TrainerArgs, TrainerMsg};

use crate::store::{Finish, Lease, Store, TaskError};
use crate::telemetry::{self, TaskEvent};

/// Settings of task execution, from the `[tasks]` config section.
#[derive(Debug, Clone, Copy)]
pub struct TaskSettings {
    /// Applied when a task sets no time limit of its own.
    pub time_limit_s: f64,
}

/// This node's dispatcher, if it runs.
pub fn local_dispatcher() -> Option<ractor::ActorRef<DispatcherMsg>> {
    ractor::registry::where_is(DISPATCHER_NAME).map(ractor::ActorRef::from)
}

/// Ends the leased attempt of a task whose trainer died: retried while retries remain (or
/// always, with `always_retry`, for a node that stopped), failed after.
pub async fn recover_attempt<S: Store>(
    store: &Arc<S>,
    lease: &Lease,
    error: TaskError,
    always_retry: bool,
) {
    let (id, attempt) = (lease.id, lease.attempt);
    let (result, event) = if always_retry || attempt <= lease.max_retries {
        (store.requeue(id, attempt, error).await, TaskEvent::Retried)
    } else {
        (
            store.finish(id, attempt, Finish::Failure(error)).await,
            TaskEvent::Failed,
        )
    };
    match result {
        Ok(true) => telemetry::task_event(event, lease.model_type),
        Ok(false) => {}
        Err(e) => {
            tracing::error!(task_id = %id, error = %e, "cannot recover task of a failed trainer")
        }
    }
}
