//! Results not computed twice: the [`ResultCache`] role. A finished success is indexed by its
//! task's cache key (`TaskRecord::cache_key`: the spec without its time limit, the data set's
//! content and the seed); a later request with `"cache": true` and the same key gets a copy
//! of it as a new task, SUCCESS at once (`TaskRecord::cached_from`), with no training. The
//! index entry lives as long as the result it points at.

use std::future::Future;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{StoreError, TaskRecord, TaskState, now_s};
use crate::training::TrainSpec;

/// The cache key of a training: SHA-256 (hex) of its spec without the time limit (which
/// does not change a result that finished within it), and of the data it trains on: an
/// uploaded data set by its content (`dataset_sha256`, so a changed re-upload misses and an
/// unchanged one under another name hits), a built-in one by name.
pub fn cache_key(spec: &TrainSpec, dataset_sha256: Option<&str>) -> String {
    let mut keyed = spec.clone();
    keyed.time_limit_s = None;
    let data = match dataset_sha256 {
        Some(sha) => {
            keyed.dataset = String::new();
            format!("sha256:{sha}")
        }
        None => format!("builtin:{}", spec.dataset),
    };
    let spec = serde_json::to_string(&keyed).expect("a spec serializes");
    let digest = Sha256::digest(format!("{spec}\n{data}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of some bytes, as 64 hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl TaskRecord {
    /// A copy of `self` (a finished success) for a new request `request`: a new task, SUCCESS
    /// at once, with this one's result and progress, saying where it came from. Its expiry is
    /// set when it is stored.
    pub fn cached_copy(&self, request: &TaskRecord) -> TaskRecord {
        let now = now_s();
        let mut copy = request.clone();
        copy.state = TaskState::Success;
        copy.started_at = Some(now);
        copy.finished_at = Some(now);
        copy.result = self.result.clone();
        copy.progress = self.progress.clone();
        copy.trainer = self.trainer.clone();
        copy.cached_from = Some(self.id);
        copy
    }
}

/// The index of finished successes by cache key, and the tasks answered from it.
pub trait ResultCache: Send + Sync + 'static {
    /// Indexes success `id` under `key` while its result lives (`result_expires_s`).
    fn remember_result(
        &self,
        key: &str,
        id: Uuid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The task indexed under `key`, if the entry lives (the caller checks the task is still
    /// there).
    fn cached_result(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Uuid>, StoreError>> + Send;
    /// Stores `task`, already SUCCESS, with its model: as a finish stores a result (it
    /// expires after `result_expires_s`, its id is then remembered as expired), listed, its
    /// event logged, its callback queued if it has one.
    fn submit_finished(
        &self,
        task: &TaskRecord,
        model: &[u8],
    ) -> impl Future<Output = Result<TaskRecord, StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::ModelType;

    #[test]
    fn keys_ignore_the_time_limit_and_name_uploaded_data_by_content() {
        let spec = TrainSpec::new(ModelType::Mlp);
        let limited = TrainSpec {
            time_limit_s: Some(60.0),
            ..spec.clone()
        };
        assert_eq!(cache_key(&spec, None), cache_key(&limited, None));
        let reseeded = TrainSpec {
            seed: 7,
            ..spec.clone()
        };
        assert_ne!(cache_key(&spec, None), cache_key(&reseeded, None));
        let renamed = TrainSpec {
            dataset: "other name".into(),
            ..spec.clone()
        };
        assert_eq!(
            cache_key(&spec, Some("ab")),
            cache_key(&renamed, Some("ab"))
        );
        assert_ne!(cache_key(&spec, Some("ab")), cache_key(&spec, Some("cd")));
        assert_ne!(cache_key(&spec, None), cache_key(&renamed, None));
        assert_eq!(cache_key(&spec, None).len(), 64);
    }
}
