//! What registering a task's model means, for every caller: `POST /models`, a schedule's
//! `register` rule (run by the trainer that ended the task) and a sweep's (run by the leader
//! that ends the sweep, for its best trial). The store
//! keeps the registry (`store::Registry`); this module decides what a version holds and when
//! a rule moves an alias.

use thiserror::Error;
use uuid::Uuid;

use crate::store::{
    AliasExpect, AliasSet, Lookup, ModelVersion, RegisterRule, Store, StoreError, TaskRecord,
    TaskState,
};

/// Why a task's model cannot be registered.
#[derive(Debug, Error)]
pub enum RegisterError {
    #[error("task {0} not found")]
    TaskNotFound(Uuid),
    #[error("task {0} finished and its result expired")]
    TaskExpired(Uuid),
    #[error("task {id} is {state}, not SUCCESS: it has no model to register")]
    NotSucceeded { id: Uuid, state: &'static str },
    #[error("task {0} has no stored model")]
    NoModel(Uuid),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A version registered, and whether a rule moved its alias to it.
#[derive(Debug, Clone)]
pub struct Registered {
    pub version: ModelVersion,
    pub promoted: bool,
}

/// Registers the model of task `id` as the next version of `name` (its artifact copied, so
/// it outlives the task).
pub async fn register_task<S: Store>(
    store: &S,
    name: &str,
    id: Uuid,
) -> Result<ModelVersion, RegisterError> {
    let task = match store.get(id).await? {
        Lookup::Found(task) => task,
        Lookup::Expired => return Err(RegisterError::TaskExpired(id)),
        Lookup::Missing => return Err(RegisterError::TaskNotFound(id)),
    };
    register_record(store, name, &task).await
}

/// Registers the model of `task` (a finished success) under `name`.
pub async fn register_record<S: Store>(
    store: &S,
    name: &str,
    task: &TaskRecord,
) -> Result<ModelVersion, RegisterError> {
    if task.state != TaskState::Success {
        return Err(RegisterError::NotSucceeded {
            id: task.id,
            state: task.state.as_str(),
        });
    }
    let artifact = store
        .model(task.id)
        .await?
        .ok_or(RegisterError::NoModel(task.id))?;
    let result = task.result.as_ref();
    let field = |name: &str| result.and_then(|r| r.get(name)).cloned();
    let version = ModelVersion {
        version: 0,
        task_id: task.id,
        model_type: task.model_type,
        spec: task.spec.clone(),
        dataset_id: task.dataset_id,
        dataset_sha256: match (&task.dataset_sha256, task.dataset_id) {
            (Some(sha), _) => Some(sha.clone()),
            // Kept in the record only when the request asked for the cache.
            (None, Some(dataset)) => store
                .dataset(dataset)
                .await?
                .and_then(|d| d.0.sha256.clone()),
            (None, None) => None,
        },
        metrics: field("metrics").unwrap_or_default(),
        best_model: field("best_model").and_then(|b| b.as_str().map(str::to_string)),
        registered_at: 0.0,
        bytes: 0,
    };
    Ok(store.register_model(name, &version, &artifact).await?)
}

/// [`register_by_rule`] at most once for `task`: if a version of the rule's model is already
/// `task`'s (a leader registered it and died before recording that), that version, promoted
/// if the alias points at it.
pub async fn register_once_by_rule<S: Store>(
    store: &S,
    rule: &RegisterRule,
    task: &TaskRecord,
) -> Result<Registered, RegisterError> {
    if let Some(model) = store.registered_model(&rule.name).await?
        && let Some(version) = model.versions.iter().find(|v| v.task_id == task.id)
    {
        let alias = rule.promote_alias.as_ref();
        let promoted = alias.is_some_and(|a| model.aliases.get(a) == Some(&version.version));
        return Ok(Registered {
            version: version.clone(),
            promoted,
        });
    }
    register_by_rule(store, rule, task).await
}

/// Registers `task`'s model as `rule` says, and moves `rule.promote_alias` to it if it beats
/// the version the alias points at (a compare-and-set: a concurrent move is read again).
pub async fn register_by_rule<S: Store>(
    store: &S,
    rule: &RegisterRule,
    task: &TaskRecord,
) -> Result<Registered, RegisterError> {
    let version = register_record(store, &rule.name, task).await?;
    let Some(alias) = &rule.promote_alias else {
        return Ok(Registered {
            version,
            promoted: false,
        });
    };
    // A few tries: each lost one means another promotion moved the alias meanwhile.
    for _ in 0..5 {
        let Some(model) = store.registered_model(&rule.name).await? else {
            break;
        };
        let current = model.aliases.get(alias).copied();
        let old = current.and_then(|v| model.version(v)).map(|v| &v.metrics);
        if !rule.beats(&version.metrics, old) {
            break;
        }
        let expect = AliasExpect::Current(current);
        match store
            .set_alias(&rule.name, alias, version.version, expect)
            .await?
        {
            AliasSet::Set { .. } => {
                return Ok(Registered {
                    version,
                    promoted: true,
                });
            }
            AliasSet::Moved { .. } => continue,
            AliasSet::NoModel | AliasSet::NoVersion => break,
        }
    }
    Ok(Registered {
        version,
        promoted: false,
    })
}
