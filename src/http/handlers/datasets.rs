//! Data sets (`POST /datasets`, `GET /datasets`, `DELETE /datasets/{id}`) and predictions from
//! a task's model (`POST /models/{id}/predict`, through the node's model cache; a name
//! there is a registered model's, answered in `models.rs`).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use uuid::Uuid;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::{json as reply_json, with_status};

use super::{Reply_, find, is_media_type, parse_id, parse_json, reject};
use crate::api::{
    DatasetAnswer, DatasetDeletedAnswer, DatasetList, PredictAnswer, PredictRequest, UploadQuery,
};
use crate::http::model_cache::CachedModel;
use crate::http::{Api, ApiError};
use crate::store::{DatasetDeleted, DatasetInfo, Store, TaskState, now_s, sha256_hex};
use crate::training::{self, BUILTIN_DATASETS, Dataset, ModelType, TrainedModel};

pub async fn upload_dataset<S: Store>(
    api: Arc<Api<S>>,
    query: UploadQuery,
    content_type: Option<String>,
    body: Bytes,
) -> Reply_ {
    let mut problems: Vec<String> = Vec::new();
    let name = query.name.map(|s| s.trim().to_string()).unwrap_or_default();
    let target = query
        .target
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if name.is_empty() || name.len() > 100 {
        problems.push("name is required (1 to 100 characters)".into());
    }
    if target.is_empty() {
        problems.push("target is required: the CSV column to predict".into());
    }
    if !problems.is_empty() {
        return Err(reject(ApiError::bad_request(
            "invalid_query",
            problems.join("; "),
        )));
    }
    // text/csv only: a page on another site could send text/plain without asking first.
    if !content_type
        .as_deref()
        .is_some_and(|ct| is_media_type(ct, "text/csv"))
    {
        return Err(reject(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "upload a CSV as Content-Type: text/csv, got {}",
                content_type
                    .as_deref()
                    .map_or("none".into(), |ct| format!("{ct:?}"))
            ),
        )));
    }
    let csv = body.clone();
    let (n, t) = (name.clone(), target.clone());
    let parsed = tokio::task::spawn_blocking(move || Dataset::from_csv(&csv, &n, &t))
        .await
        .map_err(|e| reject(ApiError::internal(e.to_string())))?
        .map_err(|e| reject(ApiError::invalid("invalid_csv", e.to_string())))?;
    let info = DatasetInfo {
        id: Uuid::new_v4(),
        name,
        target,
        rows: parsed.n_rows() as u64,
        features: parsed.feature_names.clone(),
        bytes: body.len() as u64,
        uploaded_at: now_s(),
        expires_at: None,
        sha256: Some(sha256_hex(&body)),
    };
    let info = api.store.put_dataset(&info, &body).await.map_err(reject)?;
    Ok(with_status(
        reply_json(&DatasetAnswer {
            success: true,
            dataset_id: info.id,
            dataset: &info,
        }),
        StatusCode::CREATED,
    )
    .into_response())
}

pub async fn list_datasets<S: Store>(api: Arc<Api<S>>) -> Reply_ {
    let uploaded = api.store.datasets().await.map_err(reject)?;
    Ok(reply_json(&DatasetList {
        success: true,
        builtin: &BUILTIN_DATASETS,
        datasets: uploaded,
    })
    .into_response())
}

/// `DELETE /datasets/{id}`: 404 if unknown (or expired), 409 while a task yet to end uses it.
pub async fn delete_dataset<S: Store>(id: String, api: Arc<Api<S>>) -> Reply_ {
    let id = parse_id(&id, "data set").map_err(reject)?;
    match api.store.delete_dataset(id).await.map_err(reject)? {
        DatasetDeleted::Deleted => {
            tracing::info!(dataset = %id, "data set deleted");
            Ok(reply_json(&DatasetDeletedAnswer {
                success: true,
                deleted: id,
            })
            .into_response())
        }
        DatasetDeleted::Missing => Err(reject(ApiError::not_found(
            "dataset_not_found",
            format!("data set {id} not found"),
        ))),
        DatasetDeleted::InUse(task) => {
            let mut error = ApiError::new(
                StatusCode::CONFLICT,
                "dataset_in_use",
                format!(
                    "data set {id} is used by task {task} (and maybe others) that is queued or \
                     running: cancel them or wait for them to end"
                ),
            );
            error.extra = Some(json!({"task_id": task}));
            Err(reject(error))
        }
    }
}

/// `POST /models/{id}/predict`: `id` is a task's id, or a registered model's name (its
/// newest version answers).
pub async fn predict<S: Store>(
    id: String,
    api: Arc<Api<S>>,
    content_type: Option<String>,
    body: Bytes,
) -> Reply_ {
    if Uuid::parse_str(&id).is_err() {
        return super::models::predict_latest(id, api, content_type, body).await;
    }
    let task_id = parse_id(&id, "task").map_err(reject)?;
    // A model this node decoded before, while its task's result lives: no store read.
    let cached = api.model_cache.get(task_id);
    let (request, cached) = match cached {
        Some(cached) => {
            let request: PredictRequest = parse_json(&content_type, &body).map_err(reject)?;
            (request, cached)
        }
        None => {
            let task = find(&api, &id).await.map_err(reject)?;
            let request: PredictRequest = parse_json(&content_type, &body).map_err(reject)?;
            if task.state != TaskState::Success {
                return Err(reject(ApiError::new(
                    StatusCode::CONFLICT,
                    "model_not_ready",
                    format!(
                        "task {} is {}, not SUCCESS: it has no model",
                        task.id,
                        task.state.as_str()
                    ),
                )));
            }
            if task.model_type == ModelType::Noop {
                return Err(reject(ApiError::new(
                    StatusCode::CONFLICT,
                    "no_model",
                    format!(
                        "task {} is of the noop model type (a benchmark): it trained no model \
                         to predict with",
                        task.id
                    ),
                )));
            }
            let bytes = api.store.model(task.id).await.map_err(reject)?;
            let bytes = bytes.ok_or_else(|| {
                reject(ApiError::not_found(
                    "model_not_found",
                    format!("task {} has no stored model", task.id),
                ))
            })?;
            let expires_at = task.expires_at.unwrap_or(f64::NEG_INFINITY);
            let cached = decode_model(bytes, expires_at).await.map_err(reject)?;
            api.model_cache.put(task.id, cached.clone());
            (request, cached)
        }
    };
    let answer = predict_with(cached, request).await.map_err(reject)?;
    Ok(reply_json(&PredictAnswer {
        success: true,
        task_id,
        name: None,
        version: None,
        ..answer
    })
    .into_response())
}

/// A model artifact, decoded (off the async workers), to be kept until `expires_at`.
pub(super) async fn decode_model(bytes: Vec<u8>, expires_at: f64) -> Result<CachedModel, ApiError> {
    let size = bytes.len() as u64;
    let model = tokio::task::spawn_blocking(move || TrainedModel::from_bytes(&bytes))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::invalid(e.code(), e.to_string()))?;
    Ok(CachedModel {
        model: Arc::new(model),
        expires_at,
        bytes: size,
    })
}

/// The predictions of `cached` for `request`'s rows (off the async workers); the answer's
/// task id, name and version are left for the caller.
pub(super) async fn predict_with(
    cached: CachedModel,
    request: PredictRequest,
) -> Result<PredictAnswer, ApiError> {
    let model = cached.model;
    let predictions = tokio::task::spawn_blocking(move || {
        let predictions = model.predict(&request.rows)?;
        Ok::<_, training::TrainError>((predictions, model.chosen_type()))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let (predictions, model_type) =
        predictions.map_err(|e| ApiError::invalid(e.code(), e.to_string()))?;
    Ok(PredictAnswer {
        success: true,
        task_id: Uuid::nil(),
        model_type,
        predictions,
        name: None,
        version: None,
    })
}
