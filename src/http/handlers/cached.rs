//! `"cache": true` on a training request: a finished, unexpired success with the same cache
//! key (`store::cache_key`: spec without its time limit, data set content, seed) answers it
//! as a new task, SUCCESS at once, with no training (`TaskRecord::cached_from`).

use crate::http::{Api, ApiError};
use crate::store::{Lookup, Store, TaskRecord, TaskState};
use crate::telemetry::{self, TaskEvent};

/// The copy of a cached result stored as `task` (not stored yet), or none on a miss.
pub(super) async fn from_cache<S: Store>(
    api: &Api<S>,
    task: &TaskRecord,
) -> Result<Option<TaskRecord>, ApiError> {
    let Some(key) = &task.cache_key else {
        return Ok(None);
    };
    let hit = lookup(api, key).await?;
    telemetry::cache_lookup(hit.is_some());
    let Some((earlier, model)) = hit else {
        return Ok(None);
    };
    let stored = api
        .store
        .submit_finished(&earlier.cached_copy(task), &model)
        .await?;
    telemetry::task_event(TaskEvent::Submitted, stored.model_type);
    telemetry::task_event(TaskEvent::Succeeded, stored.model_type);
    tracing::info!(task_id = %stored.id, cached_from = %earlier.id, "task answered from the result cache");
    Ok(Some(stored))
}

/// The success indexed under `key` and its model, if both are still there and it is the
/// same training (the index is only a pointer: the record says).
async fn lookup<S: Store>(
    api: &Api<S>,
    key: &str,
) -> Result<Option<(Box<TaskRecord>, Vec<u8>)>, ApiError> {
    let Some(id) = api.store.cached_result(key).await? else {
        return Ok(None);
    };
    let Lookup::Found(earlier) = api.store.get(id).await? else {
        return Ok(None);
    };
    if earlier.state != TaskState::Success || earlier.cache_key.as_deref() != Some(key) {
        return Ok(None);
    }
    Ok(api.store.model(id).await?.map(|model| (earlier, model)))
}
