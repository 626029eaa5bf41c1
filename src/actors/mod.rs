//! The node's actors (ractor):
//!
//! ```text
//! Supervisor ─┬─ Dispatcher        while it holds the leader lease: claims queued tasks from the
//!             │                    store and hands them to idle trainers on any node
//!             └─ Trainer × N       one per device; runs train() on a blocking thread
//! ```
//!
//! Every node runs all three; only the dispatcher of the leader (the holder of the leader lease
//! in the store) dispatches. Trainers and dispatchers find each other through process groups
//! synced across nodes (`crate::cluster`).
//!
//! The Supervisor restarts a failed trainer (a panic inside training included) after a backoff;
//! the task it was running is put back in the queue (or failed, once its retries are spent).
//!
//! Who owns what: whether a trainer is busy is the store's leases' to say (the dispatcher keeps
//! only the tasks it sent since it last read them); whether a node is drained is the store's
//! drain flag (`Store::draining`), which the claim enforces; that this node stops is the
//! [`Stop`] signal every actor gets in its arguments. `groups` holds the typed lookups in the
//! process groups whose names `crate::cluster` keeps.

mod datasets;
mod dispatcher;
pub mod groups;
mod messages;
mod supervisor;
mod trainer;

use std::sync::Arc;
use tokio::sync::watch;

pub use datasets::ParsedDatasets;
pub use dispatcher::Dispatcher;
pub use dispatcher::device_of;
pub use messages::{DispatcherMsg, Ended, SupervisorMsg, TrainerMsg};
pub use supervisor::{Supervisor, SupervisorArgs, dispatcher_name};
pub use trainer::{Faults, Trainer, TrainerArgs};

use crate::store::{Finish, Lease, Store, TaskError};
use crate::telemetry::{self, TaskEvent};
use crate::training::DeviceSpec;

/// Settings of task execution, from the `[tasks]` config section.
#[derive(Debug, Clone, Copy)]
pub struct TaskSettings {
    /// Applied when a task sets no time limit of its own.
    pub time_limit_s: f64,
    /// Seconds past a task's (soft) time limit when, if its training has not stopped, its
    /// trainer is replaced and the task fails (the hard limit).
    pub hard_time_limit_grace_s: f64,
    /// Seconds a running attempt's lease lasts; trainers renew it three times as often.
    pub lease_s: f64,
    /// The first retry waits about this long; each further one twice as long as the one before.
    pub retry_backoff_s: f64,
    /// The longest wait before a retry.
    pub retry_backoff_max_s: f64,
    /// See `TasksSection::claim_ahead_under_s`.
    pub claim_ahead_under_s: f64,
    /// See `TasksSection::checkpoint_every_s`.
    pub checkpoint_every_s: f64,
    /// See `TasksSection::checkpoint_max_bytes`.
    pub checkpoint_max_bytes: u64,
}

impl TaskSettings {
    /// How long to wait before running a task again after its `attempt` failed: exponential
    /// backoff with "equal jitter" (half fixed, half random), so retries of many tasks that
    /// failed together spread out.
    pub fn retry_delay_s(&self, attempt: u32) -> f64 {
        let exp = self.retry_backoff_s * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let capped = exp.min(self.retry_backoff_max_s);
        capped / 2.0 + rand::random::<f64>() * capped / 2.0
    }
}

/// This node's stop, as its actors see it (as mini-redis passes `Shutdown`): once it stops,
/// the dispatcher no longer leads, and trainers give back tasks sent to them and claim no next
/// task of their own. It is not a drain: an operator's drain is the store's alone (the claim
/// script refuses a drained node's trainers), and nodes keep no copy of it that could lag.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// The stop that `stopping` announces by sending `true`.
    pub fn new(stopping: watch::Receiver<bool>) -> Stop {
        Stop(stopping)
    }

    /// A stop that never comes (for tests and tools).
    pub fn never() -> Stop {
        Stop(watch::channel(false).1)
    }

    /// Whether this node stops.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }
}

/// The cluster-wide name of trainer `index` of `node`: `node/device-index`.
pub fn trainer_name(node: &str, device: &DeviceSpec, index: usize) -> String {
    format!("{node}/{device}-{index}")
}

/// Ends the leased attempt of a task whose trainer died: retried (after `delay_s`) while
/// retries remain (or always, with `always_retry`, for a node that stopped), failed after.
pub async fn recover_attempt<S: Store>(
    store: &Arc<S>,
    lease: &Lease,
    error: TaskError,
    always_retry: bool,
    delay_s: f64,
) {
    let (id, attempt) = (lease.id, lease.attempt);
    let (result, event) = if always_retry || attempt <= lease.max_retries {
        (
            store.requeue(id, attempt, error, delay_s).await,
            TaskEvent::Retried,
        )
    } else {
        let reason = telemetry::failure_reason(&error.code);
        (
            store.finish(id, attempt, Finish::Failure(error)).await,
            TaskEvent::Failed(reason),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_reaches_every_copy_and_never_is_never() {
        let (tx, rx) = watch::channel(false);
        let (stop, copy) = (Stop::new(rx), Stop::new(tx.subscribe()));
        assert!(!stop.is_stopping() && !Stop::never().is_stopping());
        tx.send_replace(true);
        assert!(stop.is_stopping() && copy.is_stopping());
        drop(tx);
        assert!(
            stop.clone().is_stopping(),
            "a stop stays once the sender is gone"
        );
    }

    #[test]
    fn retry_delays_double_with_jitter_up_to_the_cap() {
        let settings = TaskSettings {
            time_limit_s: 60.0,
            hard_time_limit_grace_s: 30.0,
            lease_s: 5.0,
            retry_backoff_s: 1.0,
            retry_backoff_max_s: 10.0,
            claim_ahead_under_s: 0.01,
            checkpoint_every_s: 30.0,
            checkpoint_max_bytes: 1 << 20,
        };
        for _ in 0..200 {
            for (attempt, full) in [
                (1, 1.0),
                (2, 2.0),
                (3, 4.0),
                (4, 8.0),
                (5, 10.0),
                (40, 10.0),
            ] {
                let d = settings.retry_delay_s(attempt);
                assert!(d >= full / 2.0 && d <= full, "attempt {attempt}: {d}");
            }
        }
        let spread: std::collections::HashSet<u64> = (0..50)
            .map(|_| (settings.retry_delay_s(3) * 1e6) as u64)
            .collect();
        assert!(spread.len() > 40, "jitter spreads retries");
    }
}
