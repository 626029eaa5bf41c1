//! The OpenAPI 3.1 document of the API, made from the types of this module's siblings with
//! `utoipa`. Each route of the route table (`crate::http::routes`) has one operation here,
//! with its parameters, body, answers and error codes; `GET /openapi.json` serves it,
//! `trainyard openapi` prints it, and `docs/openapi.json` is its committed copy (a test fails
//! when the two differ).
//!
//! The operations are declared on the functions below, which only carry the declarations (the
//! handlers are generic over the store and live in `crate::http::handlers`).
#![allow(dead_code)]

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::*;

/// The API's document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "trainyard",
        description = "Train machine-learning models as jobs on a cluster. Every error answers \
            `{\"success\": false, \"error\": {\"code\", \"message\"}}` with the status and code \
            each operation lists. When the node has tokens, each call needs \
            `Authorization: Bearer <token>` with the role its operation names (read < submit < \
            admin); without, 401 `unauthorized`, 403 `forbidden`. Any call may also get 421 \
            `host_not_allowed`, 403 `origin_not_allowed` (a state change from another site's \
            page), 429 `rate_limited` or `too_many_requests_in_flight`, and 503 \
            `store_unavailable`, 500 `store_corrupt` or `internal`; a route that does not exist \
            404 `not_found`, a wrong method 405 `method_not_allowed`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        submit_async, submit_sync, submit_batch, status, result, inspect, cancel, tasks, task_events,
        all_events, upload_dataset, list_datasets, delete_dataset, predict, cluster_nodes,
        drain, purge, cluster_health, celery_health, healthz, readyz, metrics,
        create_schedule, list_schedules, show_schedule, delete_schedule, pause_schedule,
        register_model, list_models, show_model, set_alias, delete_model_version,
        predict_version, predict_alias,
        create_sweep, list_sweeps, show_sweep, cancel_sweep, sweep_events,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Security),
    tags(
        (name = "training", description = "Submit trainings and follow them"),
        (name = "tasks", description = "Tasks: status, results, cancel, lists, events"),
        (name = "datasets", description = "Uploaded CSV data sets and predictions"),
        (name = "cluster", description = "Nodes, health and operators' actions"),
        (name = "schedules", description = "Periodic trainings"),
        (name = "models", description = "The model registry: named, versioned models, aliases, predictions"),
        (name = "sweeps", description = "Hyperparameter sweeps: trials as tasks, early stopping (ASHA)"),
    ),
)]
pub struct ApiDoc;

/// The bearer token scheme, required by every operation but the probes and the metrics.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token of `[http] tokens`, when the node has any."))
                    .build(),
            ),
        );
        let open = [
            "/healthz",
            "/readyz",
            "/metrics",
            "/cluster/health",
            "/celery/health",
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            if open.contains(&path.as_str()) {
                continue;
            }
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
                let responses = &mut op.responses.responses;
                for (status, code) in [
                    ("401", "`unauthorized`: no token, or not one of the node's"),
                    (
                        "403",
                        "`forbidden` (the token's role is below the route's) or `origin_not_allowed`",
                    ),
                    (
                        "429",
                        "`rate_limited` or `too_many_requests_in_flight` (with Retry-After)",
                    ),
                ] {
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| error(code));
                }
            }
        }
    }
}

/// An error answer with its codes.
fn error(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

/// The document as pretty JSON, as `GET /openapi.json` serves it (with a final newline).
pub fn json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serializes");
    text.push('\n');
    text
}

/// Submit a training; it is stored and queued before the answer (202).
#[utoipa::path(post, path = "/train/{model_type}/async", tag = "training",
    params(
        ("model_type" = String, Path, example = "mlp",
            description = "mlp, linear, gbdt, all or noop (benchmarks, when `[tasks] allow_noop`); or the old service's tensorflow, pytorch (both mlp) or xgboost (gbdt)"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "Replays the first answer for a retried request: 1 to 128 letters, digits, '-', '_', '.' or ':'"),
    ),
    request_body(content = TrainRequest, content_type = "application/json",
        description = "Every field optional; an empty body takes every default"),
    responses(
        (status = 202, description = "Stored and queued", body = SubmitAnswer,
            headers(("idempotent-replayed" = String, description = "true when an Idempotency-Key replayed an earlier task"))),
        (status = 400, description = "`invalid_json` (malformed JSON), `invalid_idempotency_key`", body = ErrorBody),
        (status = 404, description = "`unknown_model_type`, `dataset_not_found`, `task_expired` (an Idempotency-Key's task)", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not application/json", body = ErrorBody),
        (status = 422, description = "`invalid_request` (a field of the wrong type, an unknown field), `invalid_parameters` (values out of bounds, all listed), `model_too_large` (with `estimate` and `limit`), `callback_not_allowed`, `idempotency_key_reused`, `noop_not_allowed`", body = ErrorBody),
        (status = 429, description = "`queue_full`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`, `server_busy`", body = ErrorBody),
    ))]
fn submit_async() {}

/// Submit a training and wait for its end; the answer is its result.
#[utoipa::path(post, path = "/train/{model_type}", tag = "training",
    params(
        ("model_type" = String, Path, example = "mlp", description = "As for the asynchronous call"),
        ("Idempotency-Key" = Option<String>, Header, description = "As for the asynchronous call"),
        SyncQuery,
    ),
    request_body(content = TrainRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The task ended (its `success` says how)", body = ResultAnswer),
        (status = 400, description = "`invalid_query` (wait_s, unknown parameters), `invalid_json`, `invalid_idempotency_key`", body = ErrorBody),
        (status = 404, description = "`unknown_model_type`, `dataset_not_found`", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "As for the asynchronous call", body = ErrorBody),
        (status = 503, description = "`node_stopping` (with `task_id`: it runs on), `store_unavailable`", body = ErrorBody),
        (status = 504, description = "`timeout`: not ended within wait_s (with `task_id`)", body = ErrorBody),
    ))]
fn submit_sync() {}

/// A task's state and progress.
#[utoipa::path(get, path = "/task/{id}/status", tag = "tasks",
    params(("id" = uuid::Uuid, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task's state", body = StatusAnswer),
        (status = 400, description = "`invalid_id`: not a UUID", body = ErrorBody),
        (status = 404, description = "`task_not_found`, `task_expired`", body = ErrorBody),
    ))]
fn status() {}

/// A task's result (or its error once it failed).
#[utoipa::path(get, path = "/task/{id}/result", tag = "tasks",
    params(("id" = uuid::Uuid, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task and, once it succeeded, its result", body = ResultAnswer),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`task_not_found`, `task_expired`", body = ErrorBody),
    ))]
fn result() {}

/// Everything known about a task: request, attempts, timings, outcome.
#[utoipa::path(get, path = "/task/{id}", tag = "tasks",
    params(("id" = uuid::Uuid, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task", body = TaskDetail),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`task_not_found`, `task_expired`", body = ErrorBody),
    ))]
fn inspect() {}

/// Cancel a task: revoked at once if it waits, stopped if it runs.
#[utoipa::path(post, path = "/task/{id}/cancel", tag = "tasks",
    params(("id" = uuid::Uuid, Path, description = "The task's id")),
    responses(
        (status = 202, description = "Revoked, or stopping", body = CancelAnswer),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`task_not_found`, `task_expired`", body = ErrorBody),
        (status = 409, description = "`task_finished`: it already ended", body = ErrorBody),
    ))]
fn cancel() {}

/// Submit many trainings at once, stored all or nothing in one store round trip (202 with
/// their ids in order). Each item is checked as a single submission is; any bad item refuses
/// the batch with every problem listed by index (`items[3].epochs ...`), and nothing is stored.
#[utoipa::path(post, path = "/tasks", tag = "training",
    request_body(content = Vec<BatchItemRequest>, content_type = "application/json",
        description = "1 to `[tasks] max_batch` training requests; the body is bounded by `[http] max_upload_bytes`"),
    responses(
        (status = 202, description = "Every item stored and queued (or answered by its idempotency key's earlier task)", body = BatchAnswer),
        (status = 400, description = "`invalid_json` (malformed JSON)", body = ErrorBody),
        (status = 413, description = "`body_too_large`, `batch_too_large` (more than `[tasks] max_batch` items, with `limit`)", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not application/json", body = ErrorBody),
        (status = 422, description = "`invalid_request` (not an array), `invalid_parameters` (every problem of every item, by index, also in `problems`), `idempotency_key_reused`; nothing stored", body = ErrorBody),
        (status = 429, description = "`queue_full`: the batch would pass the queue's limit; nothing stored", body = ErrorBody),
        (status = 503, description = "`store_unavailable`, `server_busy`", body = ErrorBody),
    ))]
fn submit_batch() {}

/// The newest tasks, filtered.
#[utoipa::path(get, path = "/tasks", tag = "tasks", params(TasksQuery),
    responses(
        (status = 200, description = "The tasks, newest first", body = TaskList),
        (status = 400, description = "`invalid_query`: a bad state, model type or limit, or an unknown parameter", body = ErrorBody),
    ))]
fn tasks() {}

/// A task's events as Server-Sent Events: its history, then live, until it ends.
#[utoipa::path(get, path = "/task/{id}/events", tag = "tasks",
    params(
        ("id" = uuid::Uuid, Path, description = "The task's id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event"),
        ("token" = Option<String>, Query, description = "The bearer token, for browsers' EventSource"),
    ),
    responses(
        (status = 200, description = "An event stream; each event's data is the task's status", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_id`, `invalid_event_id`", body = ErrorBody),
        (status = 404, description = "`task_not_found`, `task_expired`", body = ErrorBody),
        (status = 429, description = "`too_many_streams`", body = ErrorBody),
        (status = 503, description = "`too_many_streams_on_node`", body = ErrorBody),
    ))]
fn task_events() {}

/// Every task's events as Server-Sent Events.
#[utoipa::path(get, path = "/events", tag = "tasks",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event"),
        ("token" = Option<String>, Query, description = "The bearer token, for browsers' EventSource"),
    ),
    responses(
        (status = 200, description = "An event stream of every task's changes", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_event_id`", body = ErrorBody),
        (status = 429, description = "`too_many_streams`", body = ErrorBody),
        (status = 503, description = "`too_many_streams_on_node`", body = ErrorBody),
    ))]
fn all_events() {}

/// Upload a CSV data set (a header line; numbers only).
#[utoipa::path(post, path = "/datasets", tag = "datasets", params(UploadQuery),
    request_body(content = String, content_type = "text/csv", example = "x1,x2,y\n1,2,3\n4,5,6\n"),
    responses(
        (status = 201, description = "Stored", body = DatasetAnswer),
        (status = 400, description = "`invalid_query`: name or target missing, an unknown parameter", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not text/csv", body = ErrorBody),
        (status = 422, description = "`invalid_csv` (names the line and column)", body = ErrorBody),
        (status = 507, description = "`dataset_quota_exceeded`", body = ErrorBody),
    ))]
fn upload_dataset() {}

/// The built-in and uploaded data sets.
#[utoipa::path(get, path = "/datasets", tag = "datasets",
    responses((status = 200, description = "The data sets", body = DatasetList)))]
fn list_datasets() {}

/// Delete an uploaded data set.
#[utoipa::path(delete, path = "/datasets/{id}", tag = "datasets",
    params(("id" = uuid::Uuid, Path, description = "The data set's id")),
    responses(
        (status = 200, description = "Deleted", body = DatasetDeletedAnswer),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`dataset_not_found`", body = ErrorBody),
        (status = 409, description = "`dataset_in_use` (with `task_id`)", body = ErrorBody),
    ))]
fn delete_dataset() {}

/// Predict with a succeeded task's model, or with a registered model's newest version.
#[utoipa::path(post, path = "/models/{id}/predict", tag = "datasets",
    params(("id" = String, Path, description = "The task whose model answers (a UUID), or a registered model's name (its newest version answers)")),
    request_body(content = PredictRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One prediction per row", body = PredictAnswer),
        (status = 400, description = "`invalid_id`, `invalid_json`", body = ErrorBody),
        (status = 404, description = "`task_not_found`, `task_expired`, `model_not_found`, `version_not_found` (a name without versions left)", body = ErrorBody),
        (status = 409, description = "`model_not_ready`: the task has not succeeded", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_request`, `invalid_input` (rows of the wrong width, empty), `invalid_model`", body = ErrorBody),
    ))]
fn predict() {}

/// Register a finished task's model as a name's next version (its artifact is copied: it
/// never expires with the task).
#[utoipa::path(post, path = "/models", tag = "models",
    request_body(content = RegisterRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = RegisterAnswer),
        (status = 400, description = "`invalid_json`", body = ErrorBody),
        (status = 404, description = "`task_not_found`, `task_expired`, `model_not_found`", body = ErrorBody),
        (status = 409, description = "`model_not_ready`: the task has not succeeded", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_parameters` (every problem listed), `invalid_request`", body = ErrorBody),
    ))]
fn register_model() {}

/// Every registered model: newest version, aliases, newest metrics.
#[utoipa::path(get, path = "/models", tag = "models",
    responses((status = 200, description = "The registry", body = ModelList)))]
fn list_models() {}

/// A registered model: every version (metrics, spec, data set and its SHA-256, task, time,
/// aliases).
#[utoipa::path(get, path = "/models/{name}", tag = "models",
    params(("name" = String, Path, description = "The model's name", example = "house-prices")),
    responses(
        (status = 200, description = "The model", body = ModelAnswer),
        (status = 404, description = "`model_not_found`", body = ErrorBody),
    ))]
fn show_model() {}

/// Point an alias (`production`, `staging`, any name) at a version.
#[utoipa::path(put, path = "/models/{name}/aliases/{alias}", tag = "models",
    params(
        ("name" = String, Path, description = "The model's name", example = "house-prices"),
        ("alias" = String, Path, description = "The alias", example = "production"),
    ),
    request_body(content = AliasRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Set", body = AliasAnswer),
        (status = 404, description = "`model_not_found`, `version_not_found`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_parameters` (every problem listed), `invalid_request`", body = ErrorBody),
    ))]
fn set_alias() {}

/// Delete a version and its artifact; refused while an alias points at it.
#[utoipa::path(delete, path = "/models/{name}/versions/{version}", tag = "models",
    params(
        ("name" = String, Path, description = "The model's name", example = "house-prices"),
        ("version" = u32, Path, description = "The version", example = 1),
    ),
    responses(
        (status = 200, description = "Deleted", body = VersionDeletedAnswer),
        (status = 404, description = "`model_not_found`, `version_not_found`", body = ErrorBody),
        (status = 409, description = "`version_aliased` (with `aliases`)", body = ErrorBody),
    ))]
fn delete_model_version() {}

/// Predict with one version of a registered model.
#[utoipa::path(post, path = "/models/{name}/versions/{version}/predict", tag = "models",
    params(
        ("name" = String, Path, description = "The model's name", example = "house-prices"),
        ("version" = u32, Path, description = "The version", example = 1),
    ),
    request_body(content = PredictRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One prediction per row", body = PredictAnswer),
        (status = 404, description = "`model_not_found`, `version_not_found`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_request`, `invalid_input`, `invalid_model`", body = ErrorBody),
    ))]
fn predict_version() {}

/// Predict with the version an alias of a registered model points at.
#[utoipa::path(post, path = "/models/{name}/aliases/{alias}/predict", tag = "models",
    params(
        ("name" = String, Path, description = "The model's name", example = "house-prices"),
        ("alias" = String, Path, description = "The alias", example = "production"),
    ),
    request_body(content = PredictRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One prediction per row", body = PredictAnswer),
        (status = 404, description = "`model_not_found`, `alias_not_found`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_request`, `invalid_input`, `invalid_model`", body = ErrorBody),
    ))]
fn predict_alias() {}

/// Every node of the cluster, its trainers, and the leader.
#[utoipa::path(get, path = "/cluster/nodes", tag = "cluster",
    responses((status = 200, description = "The cluster", body = NodesAnswer)))]
fn cluster_nodes() {}

/// Drain a node (no new work; its running tasks finish) or resume it.
#[utoipa::path(post, path = "/cluster/nodes/{name}/{action}", tag = "cluster",
    params(
        ("name" = String, Path, description = "The node's name", example = "node-b"),
        ("action" = String, Path, description = "drain or resume", example = "drain"),
    ),
    responses(
        (status = 202, description = "Set", body = DrainAnswer),
        (status = 404, description = "`node_not_found`, `not_found` (an action other than drain or resume)", body = ErrorBody),
    ))]
fn drain() {}

/// Revoke every pending task.
#[utoipa::path(delete, path = "/queue", tag = "cluster",
    responses((status = 200, description = "Revoked", body = PurgeAnswer)))]
fn purge() {}

/// The cluster's health (open to anyone; computed at most once a second).
#[utoipa::path(get, path = "/cluster/health", tag = "cluster",
    responses(
        (status = 200, description = "Healthy", body = ClusterHealth),
        (status = 503, description = "Unhealthy: the store is unreachable or no trainer is up", body = ClusterHealth),
    ))]
fn cluster_health() {}

/// The old service's health route: the same answer as `/cluster/health`.
#[utoipa::path(get, path = "/celery/health", tag = "cluster",
    responses(
        (status = 200, description = "Healthy", body = ClusterHealth),
        (status = 503, description = "Unhealthy", body = ClusterHealth),
    ))]
fn celery_health() {}

/// Liveness: the process serves (never asks the store).
#[utoipa::path(get, path = "/healthz", tag = "cluster",
    responses((status = 200, description = "Alive", body = Liveness)))]
fn healthz() {}

/// Readiness: the store answers, a trainer of this node is up, it neither drains nor stops.
#[utoipa::path(get, path = "/readyz", tag = "cluster",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready, with the reasons", body = Readiness),
    ))]
fn readyz() {}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "cluster",
    responses((status = 200, description = "The metrics", content_type = "text/plain", body = String)))]
fn metrics() {}

/// Create a schedule: a training fired at each due time of a cron expression.
#[utoipa::path(post, path = "/schedules", tag = "schedules",
    request_body(content = ScheduleRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = ScheduleAnswer),
        (status = 400, description = "`invalid_json`", body = ErrorBody),
        (status = 404, description = "`unknown_model_type`, `dataset_not_found` (of its request)", body = ErrorBody),
        (status = 409, description = "`schedule_exists`, `too_many_schedules`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_schedule`, `invalid_schedule_name`, `invalid_cron`, `invalid_timezone`, `invalid_request`, `invalid_parameters` (of its request)", body = ErrorBody),
    ))]
fn create_schedule() {}

/// Every schedule.
#[utoipa::path(get, path = "/schedules", tag = "schedules",
    responses((status = 200, description = "The schedules", body = ScheduleList)))]
fn list_schedules() {}

/// One schedule.
#[utoipa::path(get, path = "/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name", example = "nightly")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleAnswer),
        (status = 404, description = "`schedule_not_found`", body = ErrorBody),
    ))]
fn show_schedule() {}

/// Delete a schedule; the tasks it fired stay.
#[utoipa::path(delete, path = "/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name", example = "nightly")),
    responses(
        (status = 200, description = "Deleted", body = ScheduleDeleted),
        (status = 404, description = "`schedule_not_found`", body = ErrorBody),
    ))]
fn delete_schedule() {}

/// Pause or resume a schedule.
#[utoipa::path(post, path = "/schedules/{name}/{action}", tag = "schedules",
    params(
        ("name" = String, Path, description = "The schedule's name", example = "nightly"),
        ("action" = String, Path, description = "pause or resume", example = "pause"),
    ),
    responses(
        (status = 200, description = "The schedule as it is now", body = ScheduleAnswer),
        (status = 404, description = "`schedule_not_found`, `not_found` (an action other than pause or resume)", body = ErrorBody),
    ))]
fn pause_schedule() {}

/// Start a hyperparameter sweep: trials drawn from a space (or its grid), run as tasks, with
/// ASHA's early stopping at rungs when asked.
#[utoipa::path(post, path = "/sweeps", tag = "sweeps",
    request_body(content = SweepRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = SweepAnswer),
        (status = 400, description = "`invalid_json`", body = ErrorBody),
        (status = 409, description = "`too_many_sweeps`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_sweep` (every problem in `error.problems`), `invalid_request`", body = ErrorBody),
    ))]
fn create_sweep() {}

/// Every sweep kept, newest first, without their trials.
#[utoipa::path(get, path = "/sweeps", tag = "sweeps",
    responses((status = 200, description = "The sweeps", body = SweepList)))]
fn list_sweeps() {}

/// One sweep: its trials, their parameters, states, rung results and metrics, and the best.
#[utoipa::path(get, path = "/sweeps/{id}", tag = "sweeps",
    params(("id" = Uuid, Path, description = "The sweep's id")),
    responses(
        (status = 200, description = "The sweep", body = SweepView),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`sweep_not_found`", body = ErrorBody),
    ))]
fn show_sweep() {}

/// Cancel a sweep: no more trials start, the running ones are revoked.
#[utoipa::path(post, path = "/sweeps/{id}/cancel", tag = "sweeps",
    params(("id" = Uuid, Path, description = "The sweep's id")),
    responses(
        (status = 202, description = "Stopping", body = SweepAnswer),
        (status = 404, description = "`sweep_not_found`", body = ErrorBody),
        (status = 409, description = "`sweep_finished`", body = ErrorBody),
    ))]
fn cancel_sweep() {}

/// The sweep's events as Server-Sent Events (`created`, `trial_started`, `rung`,
/// `trial_ended`, `cancel_requested`, `end`), each with its number as id; resumable with
/// `Last-Event-ID`; the stream ends after `end`.
#[utoipa::path(get, path = "/sweeps/{id}/events", tag = "sweeps",
    params(
        ("id" = Uuid, Path, description = "The sweep's id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event number"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_event_id`", body = ErrorBody),
        (status = 404, description = "`sweep_not_found`", body = ErrorBody),
        (status = 429, description = "`too_many_streams`", body = ErrorBody),
    ))]
fn sweep_events() {}
