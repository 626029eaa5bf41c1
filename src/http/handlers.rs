//! Request handlers: parse and check the request, talk to the store (and the dispatcher), and
//! build the JSON answer. Nothing is stored for a request that is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::{Response, json as reply_json, with_status};
use warp::{Rejection, Reply};

use super::models::CachedModel;
use super::{Api, ApiError};
use crate::actors::groups;
use crate::actors::{DispatcherMsg, TrainerMsg};
use crate::store::{
    CancelOutcome, DatasetDeleted, DatasetInfo, IdempotencyKey, Lookup, MAX_CLIENT_KEY,
    NODE_STALE_S, Store, Submitted, TaskFilter, TaskProgress, TaskRecord, TaskState, now_s,
    trainer_node,
};
use crate::telemetry::{self, TaskEvent};
use crate::training::{
    self, BUILTIN_DATASETS, Dataset, DeviceClass, GbdtParams, ModelType, TrainSpec, TrainedModel,
};

pub(super) type Reply_ = Result<Response, Rejection>;

pub(super) fn reject(e: impl Into<ApiError>) -> Rejection {
    warp::reject::custom(e.into())
}

/// The body of `POST /train/{model_type}`: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainRequest {
    epochs: Option<u32>,
    learning_rate: Option<f64>,
    hidden_sizes: Option<Vec<u32>>,
    dataset: Option<String>,
    batch_size: Option<u32>,
    seed: Option<u64>,
    test_fraction: Option<f64>,
    priority: Option<u8>,
    max_retries: Option<u32>,
    time_limit_s: Option<f64>,
    gbdt: Option<GbdtParams>,
    /// `any` (default), `cpu` or `gpu`.
    device: Option<DeviceClass>,
    /// Where to POST the final status when the task ends.
    callback_url: Option<String>,
}

/// Largest `max_retries` a request may ask for.
const MAX_RETRIES_LIMIT: u32 = 10;
/// Longest a synchronous training request waits.
const MAX_WAIT_S: f64 = 3600.0;
/// A synchronous training request reads its task when its terminal event comes, when the
/// live feed fell behind, at its deadline, and, events or not, after this long (a safety net:
/// the store's feed resumes after a lost connection without skipping, so it should find
/// nothing new).
const SYNC_RECHECK: Duration = Duration::from_secs(30);

/// Whether a `Content-Type` header names this media type (parameters such as charset aside).
fn is_media_type(content_type: &str, expected: &str) -> bool {
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

fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::bad_request("invalid_id", format!("{what} id {raw:?} is not a UUID"))
    })
}

/// A training request that parsed and passed every check but the data set lookup.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    pub spec: TrainSpec,
    /// A built-in data set's name or an uploaded one's id, as the request named it.
    pub dataset: Option<String>,
    pub priority: u8,
    pub max_retries: u32,
    pub device: DeviceClass,
    pub callback_url: Option<String>,
    /// The old service's model name, when the request used one.
    pub requested_as: Option<&'static str>,
}

/// What the operator lets one task ask for (`[tasks]`), checked before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskBounds {
    /// `max_retries` of a request that sets none.
    pub default_max_retries: u32,
    /// The operator's `time_limit_s`: a ceiling for a request's own.
    pub time_limit_s: f64,
    pub max_parameters: u64,
    pub max_working_bytes: u64,
}

impl TaskBounds {
    /// The bounds of a `[tasks]` section.
    pub fn of(tasks: &crate::config::TasksSection) -> Self {
        TaskBounds {
            default_max_retries: tasks.max_retries,
            time_limit_s: tasks.time_limit_s,
            max_parameters: tasks.max_parameters,
            max_working_bytes: tasks.max_working_bytes,
        }
    }
}

impl Default for TaskBounds {
    fn default() -> Self {
        TaskBounds::of(&crate::config::TasksSection::default())
    }
}

/// Parses and checks the body of `POST /train/{model}` within the default bounds but for
/// `default_max_retries` (see [`parse_train_request_within`]).
pub fn parse_train_request(
    model: &str,
    content_type: &Option<String>,
    body: &[u8],
    default_max_retries: u32,
) -> Result<ParsedRequest, ApiError> {
    let bounds = TaskBounds {
        default_max_retries,
        ..TaskBounds::default()
    };
    parse_train_request_within(model, content_type, body, &bounds)
}

/// Parses and checks the body of `POST /train/{model}`: no store, no I/O, so it can be fuzzed.
/// Every refusal is an `ApiError` with its status and code.
pub fn parse_train_request_within(
    model: &str,
    content_type: &Option<String>,
    body: &[u8],
    bounds: &TaskBounds,
) -> Result<ParsedRequest, ApiError> {
    let default_max_retries = bounds.default_max_retries;
    let (model_type, requested_as) = ModelType::parse_requested(model)
        .map_err(|e: String| ApiError::not_found("unknown_model_type", e))?;
    let request: TrainRequest = parse_json(content_type, body)?;
    let defaults = TrainSpec::new(model_type);
    let spec = TrainSpec {
        epochs: request.epochs.unwrap_or(defaults.epochs),
        learning_rate: request.learning_rate.unwrap_or(defaults.learning_rate),
        hidden_sizes: request
            .hidden_sizes
            .unwrap_or(defaults.hidden_sizes.clone()),
        batch_size: request.batch_size.unwrap_or(defaults.batch_size),
        seed: request.seed.unwrap_or(defaults.seed),
        test_fraction: request.test_fraction.unwrap_or(defaults.test_fraction),
        gbdt: request.gbdt.unwrap_or_default(),
        time_limit_s: request.time_limit_s,
        ..defaults
    };
    let mut problems = match spec.validate() {
        Err(training::TrainError::InvalidSpec { problems }) => problems,
        _ => Vec::new(),
    };
    if let Some(limit) = spec.time_limit_s
        && limit > bounds.time_limit_s
    {
        problems.push(format!(
            "time_limit_s must be at most {} (the node's tasks.time_limit_s), got {limit}",
            bounds.time_limit_s
        ));
    }
    let priority = request.priority.unwrap_or(0);
    if priority > 9 {
        problems.push(format!("priority must be between 0 and 9, got {priority}"));
    }
    let max_retries = request.max_retries.unwrap_or(default_max_retries);
    if max_retries > MAX_RETRIES_LIMIT {
        problems.push(format!(
            "max_retries must be at most {MAX_RETRIES_LIMIT}, got {max_retries}"
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid("invalid_parameters", problems.join("; ")));
    }
    Ok(ParsedRequest {
        spec,
        dataset: request.dataset,
        priority,
        max_retries,
        device: request.device.unwrap_or_default(),
        callback_url: request.callback_url,
        requested_as,
    })
}

/// Checks a training request and builds its task; nothing is stored yet.
pub(super) async fn build_task<S: Store>(
    api: &Api<S>,
    model: &str,
    content_type: &Option<String>,
    body: &Bytes,
) -> Result<TaskRecord, ApiError> {
    let ParsedRequest {
        mut spec,
        dataset,
        priority,
        max_retries,
        device,
        callback_url,
        requested_as,
    } = parse_train_request_within(model, content_type, body, &api.bounds)?;
    if let Some(url) = &callback_url {
        api.callback_rules
            .check_url(url)
            .map_err(|e| ApiError::invalid("callback_not_allowed", e))?;
    }
    let mut dataset_id = None;
    let mut shape = training::builtin_shape(&spec.dataset);
    if let Some(name) = dataset {
        if let Ok(id) = Uuid::parse_str(&name) {
            let found = api.store.dataset(id).await?;
            let (info, _) = found.ok_or_else(|| {
                ApiError::not_found("dataset_not_found", format!("data set {id} not found"))
            })?;
            dataset_id = Some(id);
            shape = Some((info.rows as usize, info.features.len()));
            spec.dataset = info.name;
        } else if BUILTIN_DATASETS.contains(&name.as_str()) {
            shape = training::builtin_shape(&name);
            spec.dataset = name;
        } else {
            return Err(ApiError::not_found(
                "dataset_not_found",
                format!(
                    "data set {name:?} not found; built-in data sets are {} (or use an uploaded data set's id)",
                    BUILTIN_DATASETS.join(", ")
                ),
            ));
        }
    }
    if let Some((rows, features)) = shape {
        check_footprint(&spec, rows, features, &api.bounds)?;
    }
    let mut task = TaskRecord::new(spec, dataset_id, priority, max_retries);
    task.device = device;
    task.callback_url = callback_url;
    task.requested_as = requested_as.map(str::to_string);
    Ok(task)
}

/// Refuses a training whose model or working memory, as estimated for `rows` rows of
/// `features` features, is over the operator's bounds: it would take the node down (an OOM
/// kill), and then the next node its retry runs on.
pub fn check_footprint(
    spec: &TrainSpec,
    rows: usize,
    features: usize,
    bounds: &TaskBounds,
) -> Result<(), ApiError> {
    let footprint = spec.footprint(rows, features);
    let mut problems = Vec::new();
    if footprint.parameters > bounds.max_parameters {
        problems.push(format!(
            "the model would have about {} parameters; this node allows at most {} \
             (tasks.max_parameters)",
            footprint.parameters, bounds.max_parameters
        ));
    }
    if footprint.working_bytes > bounds.max_working_bytes {
        problems.push(format!(
            "the training would need about {} MiB of working memory (weights, optimizer \
             state, activations of a batch of {}, the data); this node allows at most {} MiB \
             (tasks.max_working_bytes)",
            footprint.working_bytes.div_ceil(1 << 20),
            spec.batch_size,
            bounds.max_working_bytes >> 20
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut error = ApiError::invalid("model_too_large", problems.join("; "));
    error.extra = Some(json!({
        "estimate": {"parameters": footprint.parameters, "working_bytes": footprint.working_bytes},
        "limit": {"parameters": bounds.max_parameters, "working_bytes": bounds.max_working_bytes},
    }));
    Err(error)
}

/// Stores and queues a submission; with an `Idempotency-Key` already used for the same request,
/// answers with that earlier task instead (`true`: replayed).
async fn submit<S: Store>(
    api: &Api<S>,
    model: &str,
    content_type: &Option<String>,
    idempotency_key: &Option<String>,
    body: &Bytes,
) -> Result<(TaskRecord, bool), ApiError> {
    let key = idempotency_key
        .as_deref()
        .map(|k| idempotency(api, k, model, body))
        .transpose()?;
    let task = build_task(api, model, content_type, body).await?;
    if let Some(key) = &key {
        match api.store.submit_keyed(&task, api.queue_limit, key).await? {
            Submitted::New => {}
            Submitted::Existing { id, fingerprint } if fingerprint == key.fingerprint => {
                return match api.store.get(id).await? {
                    Lookup::Found(earlier) => Ok((*earlier, true)),
                    _ => Err(ApiError::not_found(
                        "task_expired",
                        format!("the task of this Idempotency-Key ({id}) expired"),
                    )),
                };
            }
            Submitted::Existing { id, .. } => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    format!(
                        "this Idempotency-Key was used for a different request (task {id}); use a new key"
                    ),
                ));
            }
        }
    } else {
        api.store.submit(&task, api.queue_limit).await?;
    }
    telemetry::task_event(TaskEvent::Submitted, task.model_type);
    tracing::info!(task_id = %task.id, model_type = %task.model_type, "task submitted");
    // Wake the leader, wherever it runs.
    groups::tell_dispatchers(|| DispatcherMsg::Poll);
    Ok((task, false))
}

/// Checks a client's `Idempotency-Key` and fingerprints the request it comes with.
fn idempotency<S>(
    api: &Api<S>,
    key: &str,
    model: &str,
    body: &[u8],
) -> Result<IdempotencyKey, ApiError> {
    // FNV-1a: stable across nodes and versions, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in model.bytes().chain([0]).chain(body.iter().copied()) {
        hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    // Only a client key's alphabet: never a schedule firing's key.
    IdempotencyKey::client(key, format!("{hash:016x}"), api.result_expires_s).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_idempotency_key",
            format!(
                "Idempotency-Key must be 1 to {MAX_CLIENT_KEY} characters of letters, digits, '-', '_', '.' or ':'"
            ),
        )
    })
}

pub async fn submit_async<S: Store>(
    model: String,
    api: Arc<Api<S>>,
    content_type: Option<String>,
    idempotency_key: Option<String>,
    body: Bytes,
) -> Reply_ {
    let (task, replayed) = submit(&api, &model, &content_type, &idempotency_key, &body)
        .await
        .map_err(reject)?;
    let named = task.requested_name();
    let answer = json!({
        "success": true,
        "task_id": task.id,
        "message": format!("Training task submitted for {named}"),
        "model_type": named,
    });
    let reply = with_status(reply_json(&answer), StatusCode::ACCEPTED);
    Ok(
        warp::reply::with_header(reply, "idempotent-replayed", replayed.to_string())
            .into_response(),
    )
}

pub async fn submit_sync<S: Store>(
    model: String,
    api: Arc<Api<S>>,
    query: HashMap<String, String>,
    content_type: Option<String>,
    idempotency_key: Option<String>,
    body: Bytes,
) -> Reply_ {
    let wait_s = match query.get("wait_s") {
        None => 300.0,
        Some(raw) => match raw.parse::<f64>() {
            Ok(v) if v.is_finite() && (0.0..=MAX_WAIT_S).contains(&v) => v,
            _ => {
                return Err(reject(ApiError::bad_request(
                    "invalid_query",
                    format!(
                        "wait_s must be a number of seconds from 0 to {MAX_WAIT_S}, got {raw:?}"
                    ),
                )));
            }
        },
    };
    let (task, _) = submit(&api, &model, &content_type, &idempotency_key, &body)
        .await
        .map_err(reject)?;
    let deadline = Instant::now() + Duration::from_secs_f64(wait_s);
    let mut stopping = api.stopping.clone();
    // Subscribed before the first read, so the end cannot fall between the two.
    let mut live = api.store.subscribe();
    // An answer for a task that runs on: its id, and where to ask later.
    let runs_on = |status, code, why: String| {
        let mut error = ApiError::new(
            status,
            code,
            format!("{why}; poll /task/{}/result", task.id),
        );
        error.extra = Some(json!({"task_id": task.id}));
        reject(error)
    };
    loop {
        if let Lookup::Found(found) = api.store.get(task.id).await.map_err(reject)?
            && found.state.is_terminal()
        {
            return Ok(result_reply(&found));
        }
        if Instant::now() >= deadline {
            let why = format!("task {} did not finish within {wait_s} s", task.id);
            return Err(runs_on(StatusCode::GATEWAY_TIMEOUT, "timeout", why));
        }
        // Wait for the task's last event (not polling the store); read again when it comes,
        // when the feed fell behind (events were dropped), at the deadline, or after
        // SYNC_RECHECK whatever comes.
        let read_again = (Instant::now() + SYNC_RECHECK).min(deadline);
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(event) if event.task == task.id && event.terminal => break,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep_until(read_again.into()).await;
                        break;
                    }
                },
                () = tokio::time::sleep_until(read_again.into()) => break,
                () = async { drop(stopping.wait_for(|stopping| *stopping).await) } => {
                    let why = format!("this node is stopping; task {} is kept and runs on", task.id);
                    return Err(runs_on(StatusCode::SERVICE_UNAVAILABLE, "node_stopping", why));
                }
            }
        }
    }
}

pub(super) async fn find<S: Store>(api: &Api<S>, raw_id: &str) -> Result<TaskRecord, ApiError> {
    let id = parse_id(raw_id, "task")?;
    found(id, api.store.get(id).await?).map(|task| *task)
}

/// The task a lookup found, or why not as the API answers it.
fn found<T>(id: Uuid, lookup: Lookup<T>) -> Result<T, ApiError> {
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

fn shown_progress(task: &TaskRecord) -> ShownProgress<'_> {
    progress_of(task.progress.as_ref(), task.state)
}

/// A task's progress as the API shows it: what it reported, or, before its first report, one
/// made from its state.
#[derive(Serialize)]
#[serde(untagged)]
enum ShownProgress<'a> {
    Reported(&'a TaskProgress),
    FromState {
        current: u64,
        total: u64,
        percent: f64,
        message: &'static str,
    },
}

fn progress_of(progress: Option<&TaskProgress>, state: TaskState) -> ShownProgress<'_> {
    if let Some(p) = progress {
        return ShownProgress::Reported(p);
    }
    let (percent, message) = match state {
        TaskState::Pending => (0.0, "Task is waiting in the queue"),
        TaskState::Started => (0.0, "Task started"),
        TaskState::Success => (100.0, state.as_str()),
        state => (0.0, state.as_str()),
    };
    ShownProgress::FromState {
        current: 0,
        total: 0,
        percent,
        message,
    }
}

/// The answer of `GET /task/{id}/status`, the hottest route: written straight from the
/// status, with no JSON value built in between.
#[derive(Serialize)]
struct StatusAnswer<'a> {
    task_id: Uuid,
    state: TaskState,
    progress: ShownProgress<'a>,
    attempt: u32,
    /// Why a queued task waits, when it waits for a device no node offers.
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_for: Option<String>,
}

pub async fn status<S: Store>(id: String, api: Arc<Api<S>>) -> Reply_ {
    let id = parse_id(&id, "task").map_err(reject)?;
    let lookup = api.store.status(id).await.map_err(reject)?;
    let task = found(id, lookup).map_err(reject)?;
    let waiting_for = match task.state {
        TaskState::Pending => super::health::waiting_for(&api, task.device).await,
        _ => None,
    };
    Ok(reply_json(&StatusAnswer {
        task_id: task.id,
        state: task.state,
        progress: progress_of(task.progress.as_ref(), task.state),
        attempt: task.attempt,
        waiting_for,
    })
    .into_response())
}

fn result_reply(task: &TaskRecord) -> Response {
    let mut answer = json!({
        "success": task.state == TaskState::Success || !task.state.is_terminal(),
        "task_id": task.id,
        "state": task.state,
    });
    if let Some(result) = &task.result {
        answer["result"] = result.clone();
        // An old client compares the model type it asked for, and reads the old message.
        if let Some(old) = &task.requested_as
            && answer["result"].is_object()
        {
            answer["result"]["model_type"] = json!(old);
            answer["result"]["message"] = json!(training::success_message(&old.to_uppercase()));
        }
    }
    if let Some(error) = &task.error {
        answer["error"] = json!(error);
    }
    if !task.attempts.is_empty() {
        answer["attempts"] = json!(task.attempts);
    }
    reply_json(&answer).into_response()
}

pub async fn result<S: Store>(id: String, api: Arc<Api<S>>) -> Reply_ {
    let task = find(&api, &id).await.map_err(reject)?;
    Ok(result_reply(&task))
}

pub async fn cancel<S: Store>(id: String, api: Arc<Api<S>>) -> Reply_ {
    let task_id = parse_id(&id, "task").map_err(reject)?;
    let outcome = api.store.cancel(task_id).await.map_err(reject)?;
    let (state, message) = match outcome {
        CancelOutcome::Revoked => (
            {
                if let Ok(Lookup::Found(task)) = api.store.get(task_id).await {
                    telemetry::task_event(TaskEvent::Revoked, task.model_type);
                }
                TaskState::Revoked
            },
            "Task revoked before it started".to_string(),
        ),
        CancelOutcome::Running { trainer, .. } => {
            // Straight to the trainer, on whichever node; it also sees the flag when it renews
            // its lease.
            if let Some(trainer) = groups::trainer(&trainer) {
                let _ = trainer.cast(TrainerMsg::Cancel { id: task_id });
            }
            (TaskState::Progress, "Task is stopping".to_string())
        }
        CancelOutcome::AlreadyFinished(state) => {
            let error = ApiError::new(
                StatusCode::CONFLICT,
                "task_finished",
                format!("task {task_id} already ended as {}", state.as_str()),
            );
            return Err(reject(error));
        }
        CancelOutcome::Expired => {
            return Err(reject(ApiError::not_found(
                "task_expired",
                format!("task {task_id} finished and its result expired"),
            )));
        }
        CancelOutcome::Missing => {
            return Err(reject(ApiError::not_found(
                "task_not_found",
                format!("task {task_id} not found"),
            )));
        }
    };
    Ok(with_status(
        reply_json(
            &json!({"success": true, "task_id": task_id, "state": state, "message": message}),
        ),
        StatusCode::ACCEPTED,
    )
    .into_response())
}

pub async fn tasks<S: Store>(api: Arc<Api<S>>, query: HashMap<String, String>) -> Reply_ {
    let mut problems = Vec::new();
    for key in query.keys() {
        // `token` is the event streams' (`auth`); a client may send it everywhere.
        if !["state", "model_type", "node", "limit", "token"].contains(&key.as_str()) {
            problems.push(format!(
                "unknown query parameter {key:?}; expected state, model_type, node, limit"
            ));
        }
    }
    let state = query.get("state").and_then(|s| {
        let parsed = TaskState::parse(s);
        if parsed.is_none() {
            problems.push(format!(
                "state {s:?} is not one of PENDING, STARTED, PROGRESS, SUCCESS, FAILURE, REVOKED"
            ));
        }
        parsed
    });
    let model_type = query
        .get("model_type")
        .and_then(|m| m.parse::<ModelType>().map_err(|e| problems.push(e)).ok());
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => 50,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        Some(_) => {
            problems.push("limit must be a whole number from 1 to 1000".into());
            0
        }
    };
    if !problems.is_empty() {
        return Err(reject(ApiError::bad_request(
            "invalid_query",
            problems.join("; "),
        )));
    }
    let found = api
        .store
        .list(&TaskFilter {
            state,
            model_type,
            node: query.get("node").cloned(),
            limit,
        })
        .await
        .map_err(reject)?;
    let tasks: Vec<Value> = found
        .iter()
        .map(|t| {
            json!({
                "task_id": t.id, "state": t.state, "model_type": t.model_type, "priority": t.priority,
                "attempt": t.attempt, "submitted_at": t.submitted_at, "started_at": t.started_at,
                "finished_at": t.finished_at, "trainer": t.trainer, "dataset": t.spec.dataset,
                "progress": shown_progress(t), "error": t.error,
                "schedule": t.schedule.as_ref().map(|s| &s.name),
            })
        })
        .collect();
    Ok(reply_json(&json!({"success": true, "count": tasks.len(), "tasks": tasks})).into_response())
}

pub async fn upload_dataset<S: Store>(
    api: Arc<Api<S>>,
    query: HashMap<String, String>,
    content_type: Option<String>,
    body: Bytes,
) -> Reply_ {
    let mut problems = Vec::new();
    for key in query.keys() {
        if !["name", "target", "token"].contains(&key.as_str()) {
            problems.push(format!(
                "unknown query parameter {key:?}; expected name and target"
            ));
        }
    }
    let name = query
        .get("name")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let target = query
        .get("target")
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
    };
    let info = api.store.put_dataset(&info, &body).await.map_err(reject)?;
    Ok(with_status(
        reply_json(&json!({"success": true, "dataset_id": info.id, "dataset": info})),
        StatusCode::CREATED,
    )
    .into_response())
}

pub async fn list_datasets<S: Store>(api: Arc<Api<S>>) -> Reply_ {
    let uploaded = api.store.datasets().await.map_err(reject)?;
    Ok(
        reply_json(&json!({"success": true, "builtin": BUILTIN_DATASETS, "datasets": uploaded}))
            .into_response(),
    )
}

/// `DELETE /datasets/{id}`: 404 if unknown (or expired), 409 while a task yet to end uses it.
pub async fn delete_dataset<S: Store>(id: String, api: Arc<Api<S>>) -> Reply_ {
    let id = parse_id(&id, "data set").map_err(reject)?;
    match api.store.delete_dataset(id).await.map_err(reject)? {
        DatasetDeleted::Deleted => {
            tracing::info!(dataset = %id, "data set deleted");
            Ok(reply_json(&json!({"success": true, "deleted": id})).into_response())
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    rows: Vec<Vec<f32>>,
}

pub async fn predict<S: Store>(
    id: String,
    api: Arc<Api<S>>,
    content_type: Option<String>,
    body: Bytes,
) -> Reply_ {
    let task_id = parse_id(&id, "task").map_err(reject)?;
    // A model this node decoded before, while its task's result lives: no store read.
    let cached = api.models.get(task_id);
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
            let bytes = api.store.model(task.id).await.map_err(reject)?;
            let bytes = bytes.ok_or_else(|| {
                reject(ApiError::not_found(
                    "model_not_found",
                    format!("task {} has no stored model", task.id),
                ))
            })?;
            let size = bytes.len() as u64;
            let model = tokio::task::spawn_blocking(move || TrainedModel::from_bytes(&bytes))
                .await
                .map_err(|e| reject(ApiError::internal(e.to_string())))?
                .map_err(|e| reject(ApiError::invalid(e.code(), e.to_string())))?;
            let cached = CachedModel {
                model: Arc::new(model),
                expires_at: task.expires_at.unwrap_or(f64::NEG_INFINITY),
                bytes: size,
            };
            api.models.put(task.id, cached.clone());
            (request, cached)
        }
    };
    let model = cached.model;
    let predictions = tokio::task::spawn_blocking(move || {
        let predictions = model.predict(&request.rows)?;
        Ok::<_, training::TrainError>((predictions, model.chosen_type()))
    })
    .await
    .map_err(|e| reject(ApiError::internal(e.to_string())))?;
    let (predictions, model_type) =
        predictions.map_err(|e| reject(ApiError::invalid(e.code(), e.to_string())))?;
    Ok(reply_json(&json!({"success": true, "task_id": task_id, "model_type": model_type, "predictions": predictions})).into_response())
}

/// `GET /task/{id}`: everything known about a task (what Flower's task page showed): the
/// request, state, progress, each attempt with its node and trainer, timings and the outcome.
pub async fn inspect<S: Store>(id: String, api: Arc<Api<S>>) -> Reply_ {
    let task = find(&api, &id).await.map_err(reject)?;
    let waited_s = task.started_at.map(|s| s - task.submitted_at);
    let ran_s = match (task.started_at, task.finished_at) {
        (Some(s), Some(f)) => Some(f - s),
        (Some(s), None) => Some(now_s() - s),
        _ => None,
    };
    let attempts: Vec<Value> = task
        .attempts
        .iter()
        .map(|a| {
            let node = a
                .trainer
                .as_deref()
                .filter(|t| t.contains('/'))
                .map(trainer_node);
            json!({
                "attempt": a.attempt, "node": node, "trainer": a.trainer, "error": a.error,
                "failed_at": a.failed_at,
            })
        })
        .collect();
    let waiting_for = match task.state {
        TaskState::Pending => super::health::waiting_for(&api, task.device).await,
        _ => None,
    };
    Ok(reply_json(&json!({
        "success": true,
        "task_id": task.id,
        "state": task.state,
        "waiting_for": waiting_for,
        "model_type": task.model_type,
        "requested_as": task.requested_as,
        "request": {
            "spec": task.spec, "dataset_id": task.dataset_id, "priority": task.priority,
            "max_retries": task.max_retries, "device": task.device,
        },
        "progress": shown_progress(&task),
        "attempt": task.attempt,
        "node": task.node(),
        "trainer": task.trainer,
        "cancel_requested": task.cancel_requested,
        "attempts": attempts,
        "timings": {
            "submitted_at": task.submitted_at, "started_at": task.started_at,
            "finished_at": task.finished_at, "expires_at": task.expires_at,
            "retry_at": task.retry_at,
            "waited_s": waited_s, "ran_s": ran_s,
        },
        "result": task.result,
        "error": task.error,
        "schedule": task.schedule,
        "callback_url": task.callback_url,
        "callback": task.callback,
    }))
    .into_response())
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics() -> Result<Response, Rejection> {
    let body = telemetry::init().render();
    Ok(warp::reply::with_header(body, "content-type", "text/plain; version=0.0.4").into_response())
}

/// `GET /cluster/nodes`: every node, its addresses, whether this node is connected to it, its
/// trainers (device, idle, busy or down, current task), and which node leads.
pub async fn nodes<S: Store>(api: Arc<Api<S>>) -> Reply_ {
    let view = cluster_view(&api).await.map_err(reject)?;
    Ok(reply_json(&json!({
        "success": true,
        "node": api.node,
        "leader": view.leader,
        "nodes": view.nodes,
    }))
    .into_response())
}

pub(super) struct ClusterView {
    pub(super) leader: Option<String>,
    pub(super) nodes: Vec<Value>,
}

/// The cluster as the store and this node's sessions show it, the same from every node.
pub(super) async fn cluster_view<S: Store>(api: &Api<S>) -> Result<ClusterView, ApiError> {
    let known = api.store.nodes().await?;
    let leases = api.store.leases().await?;
    let draining = api.store.draining().await?;
    let leader = api.store.leader().await?;
    let peers = api.membership.connected();
    let now = now_s();
    let nodes = known
        .iter()
        .map(|n| {
            let alive = now - n.seen_at < NODE_STALE_S;
            let drain = n.draining || draining.contains(&n.name);
            let trainers: Vec<Value> = n
                .trainers
                .iter()
                .map(|seat| {
                    let task = leases.iter().find(|l| l.trainer == seat.name).map(|l| l.id);
                    let state = match (alive, task) {
                        (false, _) => "down",
                        (true, Some(_)) => "busy",
                        (true, None) => "idle",
                    };
                    json!({"name": seat.name, "device": seat.device, "state": state, "task_id": task})
                })
                .collect();
            let busy = trainers.iter().any(|t| !t["task_id"].is_null());
            json!({
                "name": n.name,
                "http": n.http,
                "cluster": n.cluster,
                "connected": n.name == api.node || peers.contains(&n.name),
                "alive": alive,
                "leader": leader.as_deref() == Some(n.name.as_str()),
                "draining": drain,
                "drained": drain && !busy,
                "last_seen_s": ((now - n.seen_at) * 10.0).round() / 10.0,
                "trainers": trainers,
            })
        })
        .collect();
    Ok(ClusterView { leader, nodes })
}

/// `DELETE /queue`: revokes every pending task (never drops one silently).
pub async fn purge<S: Store>(api: Arc<Api<S>>) -> Reply_ {
    let purged = api.store.purge().await.map_err(reject)?;
    tracing::warn!(purged, "queue purged by an operator");
    Ok(reply_json(&json!({
        "success": true,
        "purged": purged,
        "message": format!("{purged} pending tasks revoked"),
    }))
    .into_response())
}

/// `POST /cluster/nodes/{name}/drain` and `/resume`: stop giving a node work (its running
/// tasks finish; `GET /cluster/nodes` shows it `drained` once they have), or take it back.
pub async fn drain<S: Store>(name: String, action: String, api: Arc<Api<S>>) -> Reply_ {
    let known = api.store.nodes().await.map_err(reject)?;
    if !known.iter().any(|n| n.name == name) {
        return Err(reject(ApiError::not_found(
            "node_not_found",
            format!("no node named {name:?} in the cluster"),
        )));
    }
    let draining = match action.as_str() {
        "drain" => true,
        "resume" => false,
        _ => {
            return Err(reject(ApiError::not_found(
                "not_found",
                format!("no such action {action:?}; use drain or resume"),
            )));
        }
    };
    api.store
        .set_draining(&name, draining)
        .await
        .map_err(reject)?;
    tracing::warn!(node = %name, draining, "drain state set by an operator");
    let message = if draining {
        format!("node {name} gets no new work; its running tasks finish")
    } else {
        format!("node {name} takes work again")
    };
    Ok(with_status(
        reply_json(
            &json!({"success": true, "node": name, "draining": draining, "message": message}),
        ),
        StatusCode::ACCEPTED,
    )
    .into_response())
}
