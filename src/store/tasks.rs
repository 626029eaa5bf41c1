//! The tasks as clients see them: the [`Tasks`] role, submissions and their idempotency keys.

use std::future::Future;

use uuid::Uuid;

use super::{CancelOutcome, Lookup, StoreError, TaskFilter, TaskRecord, TaskStatus};
use crate::training::device_kind::DeviceClass;

/// Pending tasks by device class (in [`DeviceClass::ALL`]'s order), then by priority.
pub type QueueDepths = [[u64; 10]; DeviceClass::ALL.len()];

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

/// What `submit_keyed` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// The task is stored and queued.
    New,
    /// The key was already used, for task `id` and a request with `fingerprint`.
    Existing { id: Uuid, fingerprint: String },
}

/// One request of a batch submission ([`Tasks::submit_batch`]): its task, and its
/// idempotency key if it has one.
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub task: TaskRecord,
    pub key: Option<IdempotencyKey>,
}

impl BatchItem {
    /// Whether `answer`, this item's in a batch's answers, is its key held by a different
    /// request (then the batch stored nothing).
    pub fn reused(&self, answer: &Submitted) -> bool {
        match (answer, &self.key) {
            (Submitted::Existing { fingerprint, .. }, Some(key)) => *fingerprint != key.fingerprint,
            _ => false,
        }
    }
}

/// The tasks as clients see them: submit, look up, list, cancel, purge, and the queue's depth.
/// Every method is atomic.
pub trait Tasks: Send + Sync + 'static {
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
    /// Stores many submissions in one atomic step (one script call on Redis, one write
    /// transaction in the embedded store), answering one [`Submitted`] per item, in order.
    ///
    /// An item whose key is live answers `Existing` and is not stored again; every other item
    /// is stored and queued, each with its event. All or nothing: if an item's key holds a
    /// different request ([`BatchItem::reused`] of its answer), nothing at all is stored and
    /// the answers say which; if the pending tasks and the new ones would pass
    /// `queue_limit`, nothing is stored and the answer is `QueueFull`. The items' keys are
    /// distinct (the caller folds repeats).
    fn submit_batch(
        &self,
        items: &[BatchItem],
        queue_limit: u64,
    ) -> impl Future<Output = Result<Vec<Submitted>, StoreError>> + Send;
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
    /// Cancels a task: revokes it if pending, asks its trainer to stop it if running (the
    /// shared decision of `TaskRecord::cancelled`, in `transitions.rs`).
    fn cancel(&self, id: Uuid) -> impl Future<Output = Result<CancelOutcome, StoreError>> + Send;
    /// Revokes every pending task (queued, or waiting out a retry backoff); returns how many.
    fn purge(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
    fn list(
        &self,
        filter: &TaskFilter,
    ) -> impl Future<Output = Result<Vec<TaskRecord>, StoreError>> + Send;
    /// The model artifact of a SUCCESS task.
    fn model(&self, id: Uuid) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    fn queue_depth(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Pending tasks by device class (in [`DeviceClass::ALL`]'s order) and priority (index 0
    /// is priority 0).
    fn queue_depths(&self) -> impl Future<Output = Result<QueueDepths, StoreError>> + Send;
    /// Removes what has expired by now (tasks, idempotency keys, data sets that no task yet
    /// to end uses: the others are renewed); returns how many tasks expired.
    fn sweep(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}
