//! `POST /train/{model_type}/async` and `POST /train/{model_type}`: the pure request check
//! (`parse_train_request_within`, fuzzed), the task it builds, idempotency keys, and the
//! synchronous wait for the task's end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use uuid::Uuid;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::{json as reply_json, with_status};

use super::{Reply_, parse_json, reject};
use crate::actors::DispatcherMsg;
use crate::actors::groups;
use crate::api::{ResultAnswer, SubmitAnswer, SyncQuery, TrainRequest};
use crate::http::{Api, ApiError};
use crate::store::{
    IdempotencyKey, Lookup, MAX_CLIENT_KEY, Store, Submitted, TaskRecord, cache_key, sha256_hex,
};
use crate::telemetry::{self, TaskEvent};
use crate::training::{self, BUILTIN_DATASETS, DeviceClass, ModelType, TrainSpec};

/// Largest `max_retries` a request may ask for.
const MAX_RETRIES_LIMIT: u32 = 10;
/// Longest a synchronous training request waits.
const MAX_WAIT_S: f64 = 3600.0;
/// A synchronous training request reads its task when its terminal event comes, when the
/// live feed fell behind, at its deadline, and, events or not, after this long (a safety net:
/// the store's feed resumes after a lost connection without skipping, so it should find
/// nothing new).
const SYNC_RECHECK: Duration = Duration::from_secs(30);

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
    /// Answer from the result cache when an earlier success matches.
    pub cache: bool,
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
    /// Whether the `noop` model type (benchmarks) is accepted (`[tasks] allow_noop`).
    pub allow_noop: bool,
}

impl TaskBounds {
    /// The bounds of a `[tasks]` section.
    pub fn of(tasks: &crate::config::TasksSection) -> Self {
        TaskBounds {
            default_max_retries: tasks.max_retries,
            time_limit_s: tasks.time_limit_s,
            max_parameters: tasks.max_parameters,
            max_working_bytes: tasks.max_working_bytes,
            allow_noop: tasks.allow_noop,
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
    let (model_type, requested_as) = ModelType::parse_requested(model)
        .map_err(|e: String| ApiError::not_found("unknown_model_type", e))?;
    let request: TrainRequest = parse_json(content_type, body)?;
    check_request(model_type, requested_as, request, bounds)
}

/// Checks a parsed training request of `model_type` within `bounds` (the part of
/// [`parse_train_request_within`] after the JSON, shared with batch submissions).
pub fn check_request(
    model_type: ModelType,
    requested_as: Option<&'static str>,
    request: TrainRequest,
    bounds: &TaskBounds,
) -> Result<ParsedRequest, ApiError> {
    let default_max_retries = bounds.default_max_retries;
    if model_type == ModelType::Noop && !bounds.allow_noop {
        return Err(ApiError::invalid(
            "noop_not_allowed",
            "the noop model type is for benchmarks and is off on this node \
             (set [tasks] allow_noop = true to accept it)",
        ));
    }
    let spec = request.spec(model_type);
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
        cache: request.cache.unwrap_or(false),
    })
}

/// Checks a training request and builds its task; nothing is stored yet.
pub(in crate::http) async fn build_task<S: Store>(
    api: &Api<S>,
    model: &str,
    content_type: &Option<String>,
    body: &Bytes,
) -> Result<TaskRecord, ApiError> {
    Ok(build(api, model, content_type, body).await?.0)
}

/// As `build_task`, and whether the request asks for the result cache (`"cache": true`).
async fn build<S: Store>(
    api: &Api<S>,
    model: &str,
    content_type: &Option<String>,
    body: &Bytes,
) -> Result<(TaskRecord, bool), ApiError> {
    let parsed = parse_train_request_within(model, content_type, body, &api.bounds)?;
    build_parsed(api, parsed).await
}

/// The task of a request that passed the checks without I/O: its callback URL checked, its
/// data set looked up, its footprint estimated; and whether it asks for the result cache.
pub(super) async fn build_parsed<S: Store>(
    api: &Api<S>,
    parsed: ParsedRequest,
) -> Result<(TaskRecord, bool), ApiError> {
    let ParsedRequest {
        mut spec,
        dataset,
        priority,
        max_retries,
        device,
        callback_url,
        requested_as,
        cache,
    } = parsed;
    if let Some(url) = &callback_url {
        api.callback_rules
            .check_url(url)
            .map_err(|e| ApiError::invalid("callback_not_allowed", e))?;
    }
    let (mut dataset_id, mut dataset_sha256) = (None, None);
    let mut shape = training::builtin_shape(&spec.dataset);
    if let Some(name) = dataset {
        if let Ok(id) = Uuid::parse_str(&name) {
            let found = api.store.dataset(id).await?;
            let (info, csv) = found.ok_or_else(|| {
                ApiError::not_found("dataset_not_found", format!("data set {id} not found"))
            })?;
            dataset_id = Some(id);
            // Uploaded before data sets kept their digest: computed from the CSV.
            dataset_sha256 = Some(info.sha256.clone().unwrap_or_else(|| sha256_hex(&csv)));
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
    // Only a request that asks for the cache fills it: the key and the digest are about
    // 150 bytes a record, and the cache entry a key, which every tiny task would keep.
    if cache {
        task.cache_key = Some(cache_key(&task.spec, dataset_sha256.as_deref()));
        task.dataset_sha256 = dataset_sha256;
    }
    Ok((task, cache))
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
    let (task, cache) = build(api, model, content_type, body).await?;
    if cache && let Some(copy) = cached_unless_replayed(api, &task, key.as_ref()).await? {
        return Ok(copy);
    }
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

/// A `"cache": true` request's answer from the result cache, unless its Idempotency-Key was
/// used already (then the keyed submission answers with that task): the copy, stored.
async fn cached_unless_replayed<S: Store>(
    api: &Api<S>,
    task: &TaskRecord,
    key: Option<&IdempotencyKey>,
) -> Result<Option<(TaskRecord, bool)>, ApiError> {
    if let Some(key) = key
        && api.store.keyed(&key.key).await?.is_some()
    {
        return Ok(None);
    }
    Ok(super::cached::from_cache(api, task)
        .await?
        .map(|copy| (copy, false)))
}

/// Checks a client's `Idempotency-Key` and fingerprints the request it comes with.
fn idempotency<S>(
    api: &Api<S>,
    key: &str,
    model: &str,
    body: &[u8],
) -> Result<IdempotencyKey, ApiError> {
    client_key(key, fingerprint(model, body), api.result_expires_s)
}

/// The fingerprint of a request for `model` with `body`: FNV-1a, stable across nodes and
/// versions, unlike std's hasher.
pub(super) fn fingerprint(model: &str, body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in model.bytes().chain([0]).chain(body.iter().copied()) {
        hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// A client's idempotency key, kept `ttl_s`, or why it is refused.
pub(super) fn client_key(
    key: &str,
    fingerprint: String,
    ttl_s: f64,
) -> Result<IdempotencyKey, ApiError> {
    // Only a client key's alphabet: never a schedule firing's key.
    IdempotencyKey::client(key, fingerprint, ttl_s).ok_or_else(|| {
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
    let mut answer = SubmitAnswer::new(task.id, task.requested_name());
    answer.cached_from = task.cached_from;
    let reply = with_status(reply_json(&answer), StatusCode::ACCEPTED);
    Ok(
        warp::reply::with_header(reply, "idempotent-replayed", replayed.to_string())
            .into_response(),
    )
}

pub async fn submit_sync<S: Store>(
    model: String,
    api: Arc<Api<S>>,
    query: SyncQuery,
    content_type: Option<String>,
    idempotency_key: Option<String>,
    body: Bytes,
) -> Reply_ {
    let wait_s = match &query.wait_s {
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
    let mut live = api.store.subscribe().await;
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
            return Ok(reply_json(&ResultAnswer::of(&found)).into_response());
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
