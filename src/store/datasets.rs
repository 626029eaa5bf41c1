//! Uploaded data sets: the [`Datasets`] role and its records.

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{StoreError, StoreSettings, TaskRecord};

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
    /// SHA-256 of the CSV (hex), computed at upload: what the result cache keys the data by.
    /// None for a data set uploaded before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
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
    pub(super) fn expired_at(&self, now: f64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Whether a stored task record (its JSON) is a task that is yet to end and trains on data set
/// `id`: a cheap look at the bytes first, the record decoded only when they name the set.
pub(super) fn uses_dataset(record: &[u8], id: Uuid) -> Option<Uuid> {
    let needle = format!("\"dataset_id\":\"{id}\"");
    if !record.windows(needle.len()).any(|w| w == needle.as_bytes()) {
        return None;
    }
    let task: TaskRecord = serde_json::from_slice(record).ok()?;
    (task.dataset_id == Some(id) && !task.state.is_terminal()).then_some(task.id)
}

/// The uploaded data set a stored task record (its JSON) trains on, if the task is yet to end
/// (queued, waiting to retry, or running).
pub(super) fn dataset_in_use(record: &[u8]) -> Option<Uuid> {
    let needle = b"\"dataset_id\":\"";
    if !record.windows(needle.len()).any(|w| w == needle) {
        return None;
    }
    let task: TaskRecord = serde_json::from_slice(record).ok()?;
    task.dataset_id.filter(|_| !task.state.is_terminal())
}

/// An uploaded data set: its description and its CSV bytes (shared: stores may cache them).
pub type StoredDataset = (DatasetInfo, Arc<[u8]>);

impl StoreSettings {
    /// When a data set uploaded or used now expires.
    pub(super) fn dataset_expires_at(&self, now: f64) -> Option<f64> {
        (self.dataset_expires_s > 0.0).then_some(now + self.dataset_expires_s)
    }

    /// Whether a data set expiring at `at` is renewed by a use now: once some of its life
    /// has passed (a tenth, at most a minute), so that a run of uses writes rarely.
    pub(super) fn dataset_renews(&self, at: Option<f64>, now: f64) -> bool {
        let slack = (self.dataset_expires_s / 10.0).min(60.0);
        self.dataset_expires_s > 0.0
            && at.is_none_or(|at| at < now + self.dataset_expires_s - slack)
    }
}

/// Uploaded data sets.
pub trait Datasets: Send + Sync + 'static {
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
}
