//! Request handlers, one file per group of routes: parse and check the request, talk to the
//! store (and the dispatcher), and answer with a type of `crate::api`. Nothing is stored for a
//! request that is refused.
//!
//! - `submit`: `POST /train/{model_type}[/async]`, the pure, fuzzed `parse_train_request`.
//! - `batch`: `POST /tasks`, many submissions stored all or nothing in one round trip.
//! - `tasks`: status, result, cancel, inspect and the task list.
//! - `datasets`: uploads, and predictions from a task's model.
//! - `models`: the model registry, and predictions by a registered name, version or alias.
//! - `cached`: the result cache's answer to a `"cache": true` training request.
//! - `cluster`: nodes, drain and resume, purge.
//!
//! This module: what they share (JSON bodies, ids, typed queries, task lookups).

mod batch;
mod cached;
mod cluster;
mod datasets;
mod models;
mod submit;
mod tasks;

pub use batch::submit_batch;
pub(super) use cluster::cluster_view;
pub use cluster::{drain, nodes, purge};
pub use datasets::{delete_dataset, list_datasets, predict, upload_dataset};
pub use models::{
    delete_version, list_models, predict_alias, predict_version, register_model, set_alias,
    show_model,
};
pub(super) use submit::build_task;
pub use submit::{
    ParsedRequest, TaskBounds, check_footprint, parse_train_request, parse_train_request_within,
    submit_async, submit_sync,
};
pub use tasks::{cancel, inspect, result, status, tasks};

use serde::de::DeserializeOwned;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::{Api, ApiError};
use crate::store::{Lookup, Store, TaskRecord};
use crate::telemetry;

pub(super) type Reply_ = Result<Response, Rejection>;

pub(super) fn reject(e: impl Into<ApiError>) -> Rejection {
    warp::reject::custom(e.into())
}

/// Whether a `Content-Type` header names this media type (parameters such as charset aside).
pub(super) fn is_media_type(content_type: &str, expected: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(expected))
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned + Default>(
    content_type: &Option<String>,
    body: &[u8],
) -> Result<T, ApiError> {
    let empty = body.iter().all(u8::is_ascii_whitespace);
    // A body must say it is JSON: a web page on another site can send a form or text/plain
    // without asking first (CORS), but not application/json.
    match content_type {
        Some(ct) if !is_media_type(ct, "application/json") => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("content type must be application/json, got {ct:?}"),
            ));
        }
        None if !empty => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "a request body needs Content-Type: application/json",
            ));
        }
        _ => {}
    }
    if empty {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::invalid("invalid_request", format!("invalid request: {e}"))
        }
        _ => ApiError::bad_request("invalid_json", format!("malformed JSON: {e}")),
    })
}

pub(super) fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::bad_request("invalid_id", format!("{what} id {raw:?} is not a UUID"))
    })
}

pub(super) async fn find<S: Store>(api: &Api<S>, raw_id: &str) -> Result<TaskRecord, ApiError> {
    let id = parse_id(raw_id, "task")?;
    found(id, api.store.get(id).await?).map(|task| *task)
}

/// The task a lookup found, or why not as the API answers it.
pub(super) fn found<T>(id: Uuid, lookup: Lookup<T>) -> Result<T, ApiError> {
    match lookup {
        Lookup::Found(task) => Ok(task),
        Lookup::Expired => Err(ApiError::not_found(
            "task_expired",
            format!("task {id} finished and its result expired"),
        )),
        Lookup::Missing => Err(ApiError::not_found(
            "task_not_found",
            format!("task {id} not found"),
        )),
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics() -> Result<Response, Rejection> {
    let body = telemetry::init().render();
    Ok(warp::reply::with_header(body, "content-type", "text/plain; version=0.0.4").into_response())
}

/// The query string as `T`, whose fields are all strings and which refuses unknown ones: a
/// 400 `invalid_query` that names the parameter otherwise, answered by the route itself.
pub(super) fn query<T: DeserializeOwned + Send + 'static>()
-> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and_then(|raw: String| async move {
            let fields: serde_json::Map<String, serde_json::Value> =
                form_urlencoded::parse(raw.as_bytes())
                    .map(|(k, v)| (k.into_owned(), serde_json::Value::from(v.into_owned())))
                    .collect();
            serde_json::from_value::<T>(serde_json::Value::Object(fields)).map_err(|e| {
                reject(ApiError::bad_request(
                    "invalid_query",
                    format!("invalid query string: {e}"),
                ))
            })
        })
}
