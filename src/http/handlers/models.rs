//! The model registry: `POST /models` (register a task's model), `GET /models`,
//! `GET /models/{name}`, `PUT /models/{name}/aliases/{alias}`,
//! `DELETE /models/{name}/versions/{version}`, and predictions by a registered name (its
//! newest version), version or alias, through the node's model cache.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use uuid::Uuid;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::{json as reply_json, with_status};

use super::datasets::{decode_model, predict_with};
use super::{Reply_, parse_json, reject};
use crate::api::{
    AliasAnswer, AliasRequest, ModelAnswer, ModelList, ModelSummary, PredictAnswer, PredictRequest,
    RegisterAnswer, RegisterRequest, VersionDeletedAnswer, VersionView,
};
use crate::http::{Api, ApiError};
use crate::registry::{self, RegisterError};
use crate::store::{AliasExpect, AliasSet, RegisteredModel, Store, VersionDeleted, name_problem};
use crate::telemetry;

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        let message = e.to_string();
        match e {
            RegisterError::TaskNotFound(_) => ApiError::not_found("task_not_found", message),
            RegisterError::TaskExpired(_) => ApiError::not_found("task_expired", message),
            RegisterError::NotSucceeded { .. } => {
                ApiError::new(StatusCode::CONFLICT, "model_not_ready", message)
            }
            RegisterError::NoModel(_) => ApiError::not_found("model_not_found", message),
            RegisterError::Store(e) => e.into(),
        }
    }
}

/// `POST /models`: 201 with the new version; 422 `invalid_parameters` listing every problem
/// of the body.
pub async fn register_model<S: Store>(
    api: Arc<Api<S>>,
    content_type: Option<String>,
    body: Bytes,
) -> Reply_ {
    let request: RegisterRequest = parse_json(&content_type, &body).map_err(reject)?;
    let mut problems = Vec::new();
    match &request.name {
        None => problems.push("name is required".to_string()),
        Some(name) => problems.extend(name_problem("name", name)),
    }
    let task_id = match &request.task_id {
        None => {
            problems.push("task_id is required".into());
            None
        }
        Some(raw) => Uuid::parse_str(raw)
            .map_err(|_| problems.push(format!("task_id {raw:?} is not a UUID")))
            .ok(),
    };
    let (Some(name), Some(task_id), true) = (request.name, task_id, problems.is_empty()) else {
        return Err(reject(ApiError::invalid(
            "invalid_parameters",
            problems.join("; "),
        )));
    };
    let version = registry::register_task(&*api.store, &name, task_id)
        .await
        .map_err(|e| reject(ApiError::from(e)))?;
    telemetry::model_registered("api", false);
    tracing::info!(model = %name, version = version.version, task_id = %task_id, "model registered");
    let model = RegisteredModel {
        name: name.clone(),
        versions: vec![version.clone()],
        ..RegisteredModel::default()
    };
    let answer = RegisterAnswer {
        success: true,
        version: VersionView::of(&model, &version),
        name,
    };
    Ok(with_status(reply_json(&answer), StatusCode::CREATED).into_response())
}

/// `GET /models`.
pub async fn list_models<S: Store>(api: Arc<Api<S>>) -> Reply_ {
    let models = api.store.registered_models().await.map_err(reject)?;
    let models: Vec<ModelSummary> = models.iter().map(ModelSummary::of).collect();
    Ok(reply_json(&ModelList {
        success: true,
        count: models.len(),
        models,
    })
    .into_response())
}

fn model_not_found(name: &str) -> ApiError {
    ApiError::not_found("model_not_found", format!("model {name:?} not found"))
}

/// Registered model `name`, or 404 `model_not_found`.
async fn model<S: Store>(api: &Api<S>, name: &str) -> Result<RegisteredModel, ApiError> {
    if name_problem("name", name).is_some() {
        return Err(model_not_found(name));
    }
    let found = api.store.registered_model(name).await?;
    found.ok_or_else(|| model_not_found(name))
}

/// `GET /models/{name}`.
pub async fn show_model<S: Store>(name: String, api: Arc<Api<S>>) -> Reply_ {
    let model = model(&api, &name).await.map_err(reject)?;
    Ok(reply_json(&ModelAnswer::of(&model)).into_response())
}

/// A version number in a path, or 404 `version_not_found`.
fn version_number(name: &str, raw: &str) -> Result<u32, ApiError> {
    raw.parse::<u32>().map_err(|_| {
        ApiError::not_found(
            "version_not_found",
            format!("model {name:?} has no version {raw:?} (versions are numbers from 1)"),
        )
    })
}

fn no_version(name: &str, version: u32) -> ApiError {
    ApiError::not_found(
        "version_not_found",
        format!("model {name:?} has no version {version}"),
    )
}

/// `PUT /models/{name}/aliases/{alias}` `{"version"}`.
pub async fn set_alias<S: Store>(
    name: String,
    alias: String,
    api: Arc<Api<S>>,
    content_type: Option<String>,
    body: Bytes,
) -> Reply_ {
    let request: AliasRequest = parse_json(&content_type, &body).map_err(reject)?;
    let mut problems: Vec<String> = name_problem("alias", &alias).into_iter().collect();
    if request.version.is_none() {
        problems.push("version is required".into());
    }
    let (Some(version), true) = (request.version, problems.is_empty()) else {
        return Err(reject(ApiError::invalid(
            "invalid_parameters",
            problems.join("; "),
        )));
    };
    model(&api, &name).await.map_err(reject)?;
    let set = api
        .store
        .set_alias(&name, &alias, version, AliasExpect::Any)
        .await
        .map_err(reject)?;
    let previous = match set {
        AliasSet::Set { previous } => previous,
        AliasSet::NoModel => return Err(reject(model_not_found(&name))),
        AliasSet::NoVersion | AliasSet::Moved { .. } => {
            return Err(reject(no_version(&name, version)));
        }
    };
    tracing::info!(model = %name, alias = %alias, version, "alias set");
    Ok(reply_json(&AliasAnswer {
        success: true,
        name,
        alias,
        version,
        previous,
    })
    .into_response())
}

/// `DELETE /models/{name}/versions/{version}`: 409 `version_aliased` while an alias points
/// at it.
pub async fn delete_version<S: Store>(name: String, version: String, api: Arc<Api<S>>) -> Reply_ {
    model(&api, &name).await.map_err(reject)?;
    let version = version_number(&name, &version).map_err(reject)?;
    match api
        .store
        .delete_model_version(&name, version)
        .await
        .map_err(reject)?
    {
        VersionDeleted::Deleted => {
            tracing::info!(model = %name, version, "model version deleted");
            Ok(reply_json(&VersionDeletedAnswer {
                success: true,
                name,
                deleted: version,
            })
            .into_response())
        }
        VersionDeleted::Aliased(aliases) => {
            let mut error = ApiError::new(
                StatusCode::CONFLICT,
                "version_aliased",
                format!(
                    "version {version} of model {name:?} is what {} point at: move them first \
                     (PUT /models/{name}/aliases/ALIAS)",
                    aliases.join(", ")
                ),
            );
            error.extra = Some(json!({"aliases": aliases}));
            Err(reject(error))
        }
        VersionDeleted::NoModel | VersionDeleted::NoVersion => {
            Err(reject(no_version(&name, version)))
        }
    }
}

/// Which version of a registered model answers a prediction.
enum Select {
    Latest,
    Version(String),
    Alias(String),
}

/// `POST /models/{name}/predict`: the newest version of `name`.
pub async fn predict_latest<S: Store>(
    name: String,
    api: Arc<Api<S>>,
    content_type: Option<String>,
    body: Bytes,
) -> Reply_ {
    predict(&api, &name, Select::Latest, &content_type, &body).await
}

/// `POST /models/{name}/versions/{version}/predict`.
pub async fn predict_version<S: Store>(
    name: String,
    version: String,
    api: Arc<Api<S>>,
    content_type: Option<String>,
    body: Bytes,
) -> Reply_ {
    predict(&api, &name, Select::Version(version), &content_type, &body).await
}

/// `POST /models/{name}/aliases/{alias}/predict`.
pub async fn predict_alias<S: Store>(
    name: String,
    alias: String,
    api: Arc<Api<S>>,
    content_type: Option<String>,
    body: Bytes,
) -> Reply_ {
    predict(&api, &name, Select::Alias(alias), &content_type, &body).await
}

/// The node's model cache holds a registered version under this id (never a task's: it is
/// a digest of the name and number, and a version never changes once registered).
fn cache_id(name: &str, version: u32) -> Uuid {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("registry/{name}/{version}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

async fn predict<S: Store>(
    api: &Api<S>,
    name: &str,
    select: Select,
    content_type: &Option<String>,
    body: &[u8],
) -> Reply_ {
    // Resolved on every call: an alias moves, a version may be deleted.
    let model = model(api, name).await.map_err(reject)?;
    let version = match select {
        Select::Latest => model.latest().map(|v| v.version).ok_or_else(|| {
            ApiError::not_found(
                "version_not_found",
                format!("model {name:?} has no versions left"),
            )
        }),
        Select::Version(raw) => version_number(name, &raw),
        Select::Alias(alias) => model.aliases.get(&alias).copied().ok_or_else(|| {
            ApiError::not_found(
                "alias_not_found",
                format!("model {name:?} has no alias {alias:?}"),
            )
        }),
    }
    .map_err(reject)?;
    let found = model
        .version(version)
        .ok_or_else(|| reject(no_version(name, version)))?;
    let request: PredictRequest = parse_json(content_type, body).map_err(reject)?;
    let id = cache_id(name, version);
    let cached = match api.model_cache.get(id) {
        Some(cached) => cached,
        None => {
            let bytes = api
                .store
                .version_artifact(name, version)
                .await
                .map_err(reject)?
                .ok_or_else(|| reject(no_version(name, version)))?;
            let cached = decode_model(bytes, f64::INFINITY).await.map_err(reject)?;
            api.model_cache.put(id, cached.clone());
            cached
        }
    };
    let answer = predict_with(cached, request).await.map_err(reject)?;
    Ok(reply_json(&PredictAnswer {
        task_id: found.task_id,
        name: Some(name.to_string()),
        version: Some(version),
        ..answer
    })
    .into_response())
}
