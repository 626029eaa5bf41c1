//! Durable task state: tasks, the priority queue, running leases, results with expiry, model
//! artifacts, uploaded data sets, schedules, the cluster's shared state and the task events.
//!
//! # Roles
//!
//! The store is split by who uses it, one trait per role:
//!
//! - [`Tasks`] (`tasks.rs`): what clients do: submit, look up, list, cancel, purge;
//! - [`TaskQueue`] (`queue.rs`): what trainers and the leader do: claim, progress, renew,
//!   finish, requeue; with [`Claimed`], its opaque [`CasToken`], [`Lease`] and [`Work`];
//! - [`ClusterState`] (`cluster.rs`): the leader lease, node announcements, drain flags;
//! - [`Schedules`] (`schedules.rs`), [`Datasets`] (`datasets.rs`), [`Callbacks`] (`queue.rs`,
//!   beside the ends that queue them), [`EventLog`] (`events.rs`) and [`Checkpoints`]
//!   (`checkpoints.rs`: the one checkpoint of a running training, fenced by attempt);
//! - [`Registry`] (`registry.rs`): registered models, their versions and aliases;
//!   [`ResultCache`] (`results.rs`): finished successes by cache key, and their copies;
//! - [`Sweeps`] (`sweeps.rs`): hyperparameter searches, their rung results and events.
//!
//! [`Store`] is the umbrella: a trait with the eleven roles as supertraits, implemented for every
//! type that has them all. Callers hold one handle (`S: Store`) and call any role's methods on
//! it without naming the role. A struct of trait objects cannot be had: the roles' methods
//! return `impl Future` (async in traits), which trait objects do not allow, and boxing every
//! future would add an allocation per store call on the hot path. A component that needs one
//! role only may take `S: TaskQueue` and so on.
//!
//! The task record (`record.rs`) is what every role reads; its changes are the shared
//! transitions (`transitions.rs`): every decision about a task (fencing, what a cancel or a
//! purge does in each state, when an end queues a callback, the priority a queue ranks by)
//! is made there once, and the two backends only store its outcome:
//!
//! - `embedded/`: one redb file for one node, one transaction per operation;
//! - `redis/`: Redis for clusters, one file per operation with its Lua script beside it, every
//!   change of a task record one compare-and-set (`redis/cas.rs`); the keys are in `keys.rs`,
//!   the connection in `link.rs`.
//!
//! Both pass the same conformance suite (`tests/store.rs`). `instrumented.rs` times every
//! operation of either.
//!
//! Invariants: a task is stored before its submission is answered; every write of a running
//! task carries its attempt number and a stale attempt's write is refused (fencing); finished
//! tasks expire `result_expires_s` after they finish, and an expired id is reported as expired
//! (not unknown, never PENDING) for `expired_memory_s` more.

mod checkpoints;
mod cluster;
mod compact;
mod datasets;
mod embedded;
pub mod events;
mod instrumented;
mod keys;
mod link;
mod queue;
mod record;
mod redis;
mod registry;
mod results;
mod schedules;
mod sweeps;
mod tasks;
mod transitions;

use thiserror::Error;

pub use checkpoints::Checkpoints;
pub use cluster::{ClusterState, NODE_MEMORY_S, NODE_STALE_S, NodeInfo, TrainerSeat, trainer_node};
pub use datasets::{DatasetDeleted, DatasetInfo, Datasets, StoredDataset};
use datasets::{dataset_in_use, uses_dataset};
pub use embedded::EmbeddedStore;
pub use events::{Event, EventId, EventKind, EventLog};
pub use instrumented::Instrumented;
pub use keys::Keys;
pub use link::{RedisTls, Target};
pub use queue::{
    Callbacks, CasToken, Claimed, ClaimedAndFinished, Ending, Lease, Renewal, TaskQueue, Work,
};
pub use record::{
    AttemptRecord, CallbackState, CancelOutcome, Finish, Lookup, TaskError, TaskFilter,
    TaskProgress, TaskRecord, TaskState, TaskStatus,
};
use record::{Expires, found_unless_expired};
pub use redis::RedisStore;
pub use registry::{
    AliasExpect, AliasSet, DEFAULT_METRIC, MAX_MODEL_NAME, MetricMode, ModelVersion, RegisterRule,
    RegisteredModel, Registry, VersionDeleted, metric_value, name_problem,
};
pub use results::{ResultCache, cache_key, sha256_hex};
pub use schedules::{Missed, Schedule, ScheduleCreated, ScheduleLink, Schedules};
pub use sweeps::{
    Asha, Mode, RungResult, RungRule, Strategy, Sweep, SweepCreated, SweepEvent, SweepLink,
    SweepRegistered, SweepState, Sweeps, Trial, TrialState, asha_go_on, rung_event,
};
pub use tasks::{
    BatchItem, FIRING_FINGERPRINT, IdempotencyKey, MAX_CLIENT_KEY, QueueDepths, Submitted, Tasks,
};
use transitions::Cancel;

/// Every role, for code that calls a store of a concrete type (`RedisStore`,
/// `EmbeddedStore`): `use trainyard::store::prelude::*` brings their methods into scope. A
/// generic `S: Store` needs no import.
pub mod prelude {
    pub use super::{
        Callbacks, Checkpoints, ClusterState, Datasets, EventLog, Registry, ResultCache, Schedules,
        Store, Sweeps, TaskQueue, Tasks,
    };
}

/// A whole store: every role. Implemented for each type that has them all; see the module
/// doc for why an umbrella of supertraits.
pub trait Store:
    Tasks
    + TaskQueue
    + ClusterState
    + Schedules
    + Datasets
    + Callbacks
    + EventLog
    + Checkpoints
    + Registry
    + ResultCache
    + Sweeps
{
}

impl<S> Store for S where
    S: Tasks
        + TaskQueue
        + ClusterState
        + Schedules
        + Datasets
        + Callbacks
        + EventLog
        + Checkpoints
        + Registry
        + ResultCache
        + Sweeps
{
}

/// Timings the store applies.
#[derive(Debug, Clone, Copy)]
pub struct StoreSettings {
    /// Seconds a finished task and its model are kept.
    pub result_expires_s: f64,
    /// Seconds an expired id is still reported as expired.
    pub expired_memory_s: f64,
    /// Seconds an ended task's event history is kept (at most `result_expires_s`):
    /// `Last-Event-ID` resumes within it; later, a task's stream gives its final state alone.
    pub history_after_end_s: f64,
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

/// Sweeps `store` (see [`Tasks::sweep`]) again while the last sweep removed many, for up to
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

impl StoreSettings {
    /// How long an ended task's event history is kept: `history_after_end_s`, and never
    /// longer than its result.
    pub fn history_expires_s(&self) -> f64 {
        self.result_expires_s.min(self.history_after_end_s)
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            result_expires_s: 3600.0,
            expired_memory_s: 86_400.0,
            history_after_end_s: 600.0,
            lease_s: 5.0,
            min_replicas_ack: 0,
            replica_ack_timeout_s: 2.0,
            dataset_max_total_bytes: 1 << 30,
            dataset_expires_s: 30.0 * 86_400.0,
        }
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
