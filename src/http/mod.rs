//! The REST API (warp). Paths and JSON shapes of the old FastAPI service are kept:
//! `POST /train/{model_type}/async`, `POST /train/{model_type}`, `GET /task/{id}/status`,
//! `GET /task/{id}/result`, `GET /celery/health`; new are `POST /task/{id}/cancel`, `GET /tasks`,
//! `GET /cluster/health`, `POST|GET /datasets` and `POST /models/{id}/predict`.
//!
//! Filters here, each matched by its entry in the one route table (`routes`), which also
//! labels it for the metrics and gives the role the guard (`auth`) asks for; handlers in
//! `handlers/`, request and response types in `crate::api`, every error through
//! `error::recover`. `GET /openapi.json` and `GET /docs` (`docs.rs`) document the API.

pub mod auth;
pub mod budget;
mod docs;
mod error;
mod events;
mod handlers;
mod health;
pub mod limits;
pub mod model_cache;
pub mod routes;
mod schedules;
mod sweeps;
pub mod tls;

pub use handlers::{
    ParsedRequest, TaskBounds, check_footprint, parse_train_request, parse_train_request_within,
};

use std::convert::Infallible;
use std::sync::Arc;

use warp::{Filter, Reply};

pub use error::ApiError;

use crate::store::Store;
use crate::telemetry;
use routes::{Route, at, at1, at2};

/// The web panel (`GET /`), embedded in the binary.
const PANEL: &str = include_str!("panel/index.html");

/// The panel's Content-Security-Policy: its one inline script and one inline style, by their
/// SHA-256, and requests to its own node only. No other script runs, even one injected into a
/// task's name; no other site may frame the panel.
static PANEL_POLICY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let script = inline_digest(PANEL, "<script>", "</script>");
    let style = inline_digest(PANEL, "<style>", "</style>");
    format!(
        "default-src 'none'; script-src '{script}'; style-src '{style}'; connect-src 'self'; \
         img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )
});

/// `sha256-BASE64` of the text between the first `open` and the next `close` tag of `page`.
fn inline_digest(page: &str, open: &str, close: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let start = page.find(open).expect("the panel has the tag") + open.len();
    let end = start + page[start..].find(close).expect("the tag is closed");
    let digest = sha2::Sha256::digest(&page.as_bytes()[start..end]);
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// What the handlers share.
pub struct Api<S> {
    pub store: Arc<S>,
    pub node: String,
    pub queue_limit: u64,
    /// What one task may ask for (`max_retries` default, time limit, size).
    pub bounds: handlers::TaskBounds,
    pub max_body_bytes: u64,
    pub max_upload_bytes: u64,
    /// Tokens, their roles, and the allowed hosts and origins (see `auth`).
    pub auth: Arc<auth::AuthSettings>,
    /// This node's place in the cluster (which peers are connected).
    pub membership: Arc<crate::cluster::Membership>,
    /// How long results (and idempotency keys) are kept.
    pub result_expires_s: f64,
    /// Per-client request rate, requests in flight and event streams; the node's streams.
    pub limits: Arc<limits::Limits>,
    /// Most schedules the cluster keeps.
    pub max_schedules: u64,
    /// Most sweeps the cluster keeps (running, or ended and not expired).
    pub max_sweeps: u64,
    /// Most requests one batch submission (`POST /tasks`) holds.
    pub max_batch: u64,
    /// Where a task's `callback_url` may go.
    pub callback_rules: crate::notify::CallbackRules,
    /// The latest health answer, computed at most once a second.
    pub health: health::HealthCache,
    /// Decoded models for predict calls.
    pub model_cache: model_cache::ModelCache,
    /// Bytes of request bodies being read and held now, all clients together.
    pub body_budget: budget::BodyBudget,
    /// Turns true when the node begins to stop: event streams end and sync waits answer, so
    /// that the HTTP server's graceful stop is not held up by connections that never end.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Every route, with errors rendered as JSON.
pub fn routes<S: Store>(
    api: Arc<Api<S>>,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let with = {
        let api = api.clone();
        warp::any().map(move || api.clone())
    };
    let content_type = warp::header::optional::<String>("content-type");
    let idempotency_key = warp::header::optional::<String>("idempotency-key");
    // Each route bounds its body; the budget, every body being read or held at once.
    let body = budget::body(api.body_budget.clone(), api.max_body_bytes);
    let upload = budget::body(api.body_budget.clone(), api.max_upload_bytes);

    let submit_async = at1(Route::SubmitAsync)
        .and(with.clone())
        .and(content_type)
        .and(idempotency_key)
        .and(body.clone())
        .and_then(handlers::submit_async)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let submit_sync = at1(Route::SubmitSync)
        .and(with.clone())
        .and(handlers::query::<crate::api::SyncQuery>())
        .and(content_type)
        .and(idempotency_key)
        .and(body.clone())
        .and_then(handlers::submit_sync)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let status = at1(Route::Status)
        .and(with.clone())
        .and_then(handlers::status)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let result = at1(Route::Result)
        .and(with.clone())
        .and_then(handlers::result)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let cancel = at1(Route::Cancel)
        .and(with.clone())
        .and_then(handlers::cancel)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let submit_batch = at(Route::SubmitBatch)
        .and(with.clone())
        .and(content_type)
        .and(upload.clone())
        .and_then(handlers::submit_batch)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let tasks = at(Route::Tasks)
        .and(with.clone())
        .and(handlers::query::<crate::api::TasksQuery>())
        .and_then(handlers::tasks)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let health = at(Route::ClusterHealth)
        .or(at(Route::CeleryHealth))
        .unify()
        .and(with.clone())
        .and_then(health::cluster)
        .recover(error::route_errors)
        .unify()
        .or(at(Route::Healthz).and(with.clone()).and_then(health::live))
        .unify()
        .or(at(Route::Readyz).and(with.clone()).and_then(health::ready))
        .unify()
        .boxed();
    let upload_dataset = at(Route::UploadDataset)
        .and(with.clone())
        .and(handlers::query::<crate::api::UploadQuery>())
        .and(content_type)
        .and(upload.clone())
        .and_then(handlers::upload_dataset)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let list_datasets = at(Route::ListDatasets)
        .and(with.clone())
        .and_then(handlers::list_datasets)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let delete_dataset = at1(Route::DeleteDataset)
        .and(with.clone())
        .and_then(handlers::delete_dataset)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let inspect = at1(Route::Inspect)
        .and(with.clone())
        .and_then(handlers::inspect)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let nodes = at(Route::ClusterNodes)
        .and(with.clone())
        .and_then(handlers::nodes);
    let purge = at(Route::Purge)
        .and(with.clone())
        .and_then(handlers::purge)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let drain = at2(Route::Drain)
        .and(with.clone())
        .and_then(handlers::drain)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let task_events = at1(Route::TaskEvents)
        .and(warp::header::optional::<String>("last-event-id"))
        .and(limits::client(api.limits.clone()))
        .and(with.clone())
        .and_then(events::task)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let all_events = at(Route::AllEvents)
        .and(warp::header::optional::<String>("last-event-id"))
        .and(limits::client(api.limits.clone()))
        .and(with.clone())
        .and_then(events::all)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let create_schedule = at(Route::CreateSchedule)
        .and(with.clone())
        .and(content_type)
        .and(body.clone())
        .and_then(schedules::create)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let list_schedules = at(Route::ListSchedules)
        .and(with.clone())
        .and_then(schedules::list)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let show_schedule = at1(Route::ShowSchedule)
        .and(with.clone())
        .and_then(schedules::show)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let delete_schedule = at1(Route::DeleteSchedule)
        .and(with.clone())
        .and_then(schedules::delete)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let pause_schedule = at2(Route::PauseSchedule)
        .and(with.clone())
        .and_then(schedules::pause)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let metrics = at(Route::Metrics).and_then(handlers::metrics);
    // The web panel: one page, no data of its own (it asks the API, with the user's token).
    let panel = at(Route::Panel).map(|| {
        let mut reply = warp::reply::html(PANEL).into_response();
        let headers = reply.headers_mut();
        headers.insert(
            "content-security-policy",
            warp::http::HeaderValue::from_str(&PANEL_POLICY).expect("an ASCII policy"),
        );
        headers.insert(
            "x-content-type-options",
            warp::http::HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            "referrer-policy",
            warp::http::HeaderValue::from_static("no-referrer"),
        );
        reply
    });
    let predict = at1(Route::Predict)
        .and(with.clone())
        .and(content_type)
        .and(body.clone())
        .and_then(handlers::predict)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let models = models(api.clone(), body.clone());
    let sweeps = sweep_routes(api.clone(), body.clone());

    // The status route first: clients poll it most, and each route before it is tried first.
    let protected = status
        .or(submit_async)
        .unify()
        .or(submit_sync)
        .unify()
        .or(result)
        .unify()
        .or(cancel)
        .unify()
        .or(tasks)
        .unify()
        .or(submit_batch)
        .unify()
        .or(upload_dataset)
        .unify()
        .or(list_datasets)
        .unify()
        .or(delete_dataset)
        .unify()
        .or(predict)
        .unify()
        .or(inspect)
        .unify()
        .or(nodes)
        .unify()
        .or(purge)
        .unify()
        .or(drain)
        .unify()
        .or(task_events)
        .unify()
        .or(all_events)
        .unify()
        .or(create_schedule)
        .unify()
        .or(list_schedules)
        .unify()
        .or(show_schedule)
        .unify()
        .or(delete_schedule)
        .unify()
        .or(pause_schedule)
        .unify()
        .or(models)
        .unify()
        .or(sweeps)
        .unify()
        .boxed();
    health
        .or(metrics)
        .unify()
        .or(panel)
        .unify()
        .or(docs::routes())
        .unify()
        .or(limits::admit(api.limits.clone())
            .and(auth::guard(api.auth.clone()))
            .and(protected)
            .map(
                |permit: limits::Permit, _caller: Option<auth::Caller>, reply| {
                    // Held until the answer is ready.
                    drop(permit);
                    reply
                },
            ))
        .unify()
        .recover(error::recover)
        .unify()
        .with(warp::log::custom(|info| {
            telemetry::http_request(
                route_label(info.method(), info.path()),
                info.status().as_u16(),
                info.elapsed(),
            )
        }))
}

/// The model registry's routes (`handlers::models`); predictions by a task's id or a name
/// are `Route::Predict`'s, above.
fn sweep_routes<S: Store>(
    api: Arc<Api<S>>,
    body: warp::filters::BoxedFilter<(bytes::Bytes,)>,
) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let limits = api.limits.clone();
    let with = warp::any().map(move || api.clone());
    let create = at(Route::CreateSweep)
        .and(with.clone())
        .and(warp::header::optional::<String>("content-type"))
        .and(body)
        .and_then(sweeps::create);
    let list = at(Route::ListSweeps)
        .and(with.clone())
        .and_then(sweeps::list);
    let show = at1(Route::ShowSweep)
        .and(with.clone())
        .and_then(sweeps::show);
    let cancel = at1(Route::CancelSweep)
        .and(with.clone())
        .and_then(sweeps::cancel);
    let events = at1(Route::SweepEvents)
        .and(warp::header::optional::<String>("last-event-id"))
        .and(limits::client(limits))
        .and(with)
        .and_then(sweeps::events);
    create
        .or(list)
        .unify()
        .or(show)
        .unify()
        .or(cancel)
        .unify()
        .or(events)
        .unify()
        .recover(error::route_errors)
        .unify()
        .boxed()
}

fn models<S: Store>(
    api: Arc<Api<S>>,
    body: warp::filters::BoxedFilter<(bytes::Bytes,)>,
) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let with = warp::any().map(move || api.clone());
    let content_type = || warp::header::optional::<String>("content-type");
    let register = at(Route::RegisterModel)
        .and(with.clone())
        .and(content_type())
        .and(body.clone())
        .and_then(handlers::register_model);
    let list = at(Route::ListModels)
        .and(with.clone())
        .and_then(handlers::list_models);
    let show = at1(Route::ShowModel)
        .and(with.clone())
        .and_then(handlers::show_model);
    let alias = at2(Route::SetAlias)
        .and(with.clone())
        .and(content_type())
        .and(body.clone())
        .and_then(handlers::set_alias);
    let delete = at2(Route::DeleteModelVersion)
        .and(with.clone())
        .and_then(handlers::delete_version);
    let by_version = at2(Route::PredictVersion)
        .and(with.clone())
        .and(content_type())
        .and(body.clone())
        .and_then(handlers::predict_version);
    let by_alias = at2(Route::PredictAlias)
        .and(with.clone())
        .and(content_type())
        .and(body)
        .and_then(handlers::predict_alias);
    register
        .or(list)
        .unify()
        .or(show)
        .unify()
        .or(alias)
        .unify()
        .or(delete)
        .unify()
        .or(by_version)
        .unify()
        .or(by_alias)
        .unify()
        .recover(error::route_errors)
        .unify()
        .boxed()
}

/// The route a request was for, as a metric label from a fixed set (ids are never labels):
/// its entry's in the route table, or "other".
pub fn route_label(method: &warp::http::Method, path: &str) -> &'static str {
    routes::label(method, path)
}

#[cfg(test)]
mod tests;
