//! The REST API (warp). Paths and JSON shapes of the old FastAPI service are kept:
//! `POST /train/{model_type}/async`, `POST /train/{model_type}`, `GET /task/{id}/status`,
//! `GET /task/{id}/result`, `GET /celery/health`; new are `POST /task/{id}/cancel`, `GET /tasks`,
//! `GET /cluster/health`, `POST|GET /datasets` and `POST /models/{id}/predict`.
//!
//! Filters here, handlers in `handlers.rs`, every error through `error::recover`.

mod error;
mod events;
mod handlers;
mod health;
pub mod limits;
mod schedules;
pub mod tls;

pub use handlers::{ParsedRequest, parse_train_request};

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use warp::{Filter, Reply};

pub use error::ApiError;

use crate::store::Store;
use crate::telemetry;

/// The web panel (`GET /`), embedded in the binary.
const PANEL: &str = include_str!("panel/index.html");

/// What the handlers share.
pub struct Api<S> {
    pub store: Arc<S>,
    pub node: String,
    pub queue_limit: u64,
    pub max_retries: u32,
    pub max_body_bytes: u64,
    pub max_upload_bytes: u64,
    /// Bearer token every route but health and metrics needs; none when empty.
    pub token: Option<String>,
    /// This node's place in the cluster (which peers are connected).
    pub membership: Arc<crate::cluster::Membership>,
    /// How long results (and idempotency keys) are kept.
    pub result_expires_s: f64,
    /// Per-client request rate and requests in flight.
    pub limits: Arc<limits::Limits>,
    /// Hosts a task's `callback_url` may name.
    pub callback_hosts: Vec<String>,
    /// The latest health answer, computed at most once a second.
    pub health: health::HealthCache,
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
    let query = warp::query::<HashMap<String, String>>();
    let content_type = warp::header::optional::<String>("content-type");
    let idempotency_key = warp::header::optional::<String>("idempotency-key");
    let body = warp::body::content_length_limit(api.max_body_bytes).and(warp::body::bytes());
    let upload = warp::body::content_length_limit(api.max_upload_bytes).and(warp::body::bytes());

    let submit_async = warp::path!("train" / String / "async")
        .and(warp::post())
        .and(with.clone())
        .and(content_type)
        .and(idempotency_key)
        .and(body)
        .and_then(handlers::submit_async)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let submit_sync = warp::path!("train" / String)
        .and(warp::post())
        .and(with.clone())
        .and(query)
        .and(content_type)
        .and(idempotency_key)
        .and(body)
        .and_then(handlers::submit_sync)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let status = warp::path!("task" / String / "status")
        .and(warp::get())
        .and(with.clone())
        .and_then(handlers::status)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let result = warp::path!("task" / String / "result")
        .and(warp::get())
        .and(with.clone())
        .and_then(handlers::result)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let cancel = warp::path!("task" / String / "cancel")
        .and(warp::post())
        .and(with.clone())
        .and_then(handlers::cancel)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let tasks = warp::path!("tasks")
        .and(warp::get())
        .and(with.clone())
        .and(query)
        .and_then(handlers::tasks)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let health = warp::path!("cluster" / "health")
        .or(warp::path!("celery" / "health"))
        .unify()
        .and(warp::get())
        .and(with.clone())
        .and_then(health::cluster)
        .recover(error::route_errors)
        .unify()
        .or(warp::path!("healthz")
            .and(warp::get())
            .and(with.clone())
            .and_then(health::live))
        .unify()
        .or(warp::path!("readyz")
            .and(warp::get())
            .and(with.clone())
            .and_then(health::ready))
        .unify()
        .boxed();
    let upload_dataset = warp::path!("datasets")
        .and(warp::post())
        .and(with.clone())
        .and(query)
        .and(content_type)
        .and(upload)
        .and_then(handlers::upload_dataset)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let list_datasets = warp::path!("datasets")
        .and(warp::get())
        .and(with.clone())
        .and_then(handlers::list_datasets)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let inspect = warp::path!("task" / String)
        .and(warp::get())
        .and(with.clone())
        .and_then(handlers::inspect)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let nodes = warp::path!("cluster" / "nodes")
        .and(warp::get())
        .and(with.clone())
        .and_then(handlers::nodes);
    let purge = warp::path!("queue")
        .and(warp::delete())
        .and(with.clone())
        .and_then(handlers::purge)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let drain = warp::path!("cluster" / "nodes" / String / String)
        .and(warp::post())
        .and(with.clone())
        .and_then(handlers::drain)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let task_events = warp::path!("task" / String / "events")
        .and(warp::get())
        .and(warp::header::optional::<String>("last-event-id"))
        .and(with.clone())
        .and_then(events::task)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let all_events = warp::path!("events")
        .and(warp::get())
        .and(warp::header::optional::<String>("last-event-id"))
        .and(with.clone())
        .and_then(events::all)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let create_schedule = warp::path!("schedules")
        .and(warp::post())
        .and(with.clone())
        .and(content_type)
        .and(body)
        .and_then(schedules::create)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let list_schedules = warp::path!("schedules")
        .and(warp::get())
        .and(with.clone())
        .and_then(schedules::list)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let show_schedule = warp::path!("schedules" / String)
        .and(warp::get())
        .and(with.clone())
        .and_then(schedules::show)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let delete_schedule = warp::path!("schedules" / String)
        .and(warp::delete())
        .and(with.clone())
        .and_then(schedules::delete)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let pause_schedule = warp::path!("schedules" / String / String)
        .and(warp::post())
        .and(with.clone())
        .and_then(schedules::pause)
        .recover(error::route_errors)
        .unify()
        .boxed();
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and_then(handlers::metrics);
    // The web panel: one page, no data of its own (it asks the API, with the user's token).
    let panel = warp::path::end()
        .and(warp::get())
        .map(|| warp::reply::html(PANEL).into_response());
    let predict = warp::path!("models" / String / "predict")
        .and(warp::post())
        .and(with.clone())
        .and(content_type)
        .and(body)
        .and_then(handlers::predict)
        .recover(error::route_errors)
        .unify()
        .boxed();

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
        .or(upload_dataset)
        .unify()
        .or(list_datasets)
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
        .boxed();
    health
        .or(metrics)
        .unify()
        .or(panel)
        .unify()
        .or(limits::admit(api.limits.clone())
            .and(authorized(api.token.clone()))
            .and(protected)
            .map(|permit: limits::Permit, reply| {
                // Held until the answer is ready.
                drop(permit);
                reply
            }))
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

/// The route a request was for, as a metric label from a fixed set (ids are never labels).
pub fn route_label(method: &warp::http::Method, path: &str) -> &'static str {
    // Up to 4 segments, without allocating (this runs for every request); longer paths are
    // "other".
    let mut segments = [""; 5];
    let mut count = 0;
    for segment in path.trim_matches('/').split('/').take(segments.len()) {
        segments[count] = segment;
        count += 1;
    }
    let segments = if count > 4 {
        &[][..]
    } else {
        &segments[..count]
    };
    let post = method == warp::http::Method::POST;
    match (post, segments) {
        (true, ["train", _, "async"]) => "POST /train/{model_type}/async",
        (true, ["train", _]) => "POST /train/{model_type}",
        (false, ["task", _, "status"]) => "GET /task/{id}/status",
        (false, ["task", _, "result"]) => "GET /task/{id}/result",
        (false, ["task", _]) => "GET /task/{id}",
        (false, ["task", _, "events"]) => "GET /task/{id}/events",
        (false, ["events"]) => "GET /events",
        (true, ["task", _, "cancel"]) => "POST /task/{id}/cancel",
        (false, ["tasks"]) => "GET /tasks",
        (false, ["cluster", "health"]) => "GET /cluster/health",
        (false, ["cluster", "nodes"]) => "GET /cluster/nodes",
        (false, ["celery", "health"]) => "GET /celery/health",
        (false, ["healthz"]) => "GET /healthz",
        (false, ["readyz"]) => "GET /readyz",
        (true, ["datasets"]) => "POST /datasets",
        (false, ["datasets"]) => "GET /datasets",
        (true, ["models", _, "predict"]) => "POST /models/{id}/predict",
        (false, ["metrics"]) => "GET /metrics",
        (false, [""]) => "GET /",
        (false, ["queue"]) => "DELETE /queue",
        (true, ["cluster", "nodes", _, _]) => "POST /cluster/nodes/{name}/{action}",
        (true, ["schedules"]) => "POST /schedules",
        (false, ["schedules"]) => "GET /schedules",
        (false, ["schedules", _]) if method == warp::http::Method::DELETE => {
            "DELETE /schedules/{name}"
        }
        (false, ["schedules", _]) => "GET /schedules/{name}",
        (true, ["schedules", _, _]) => "POST /schedules/{name}/{action}",
        _ => "other",
    }
}

/// Passes a request that carries `Authorization: Bearer <token>` (compared in constant time),
/// or any request when no token is set; refuses the rest with 401.
fn authorized(token: Option<String>) -> warp::filters::BoxedFilter<()> {
    let Some(token) = token.filter(|t| !t.is_empty()).map(Arc::<str>::from) else {
        // No token: nothing to read from the request.
        return warp::any().boxed();
    };
    let token = Some(token);
    // A browser's EventSource cannot send headers: it may give the token as `?token=`.
    let query_token = warp::query::<HashMap<String, String>>()
        .or(warp::any().map(HashMap::new))
        .unify()
        .map(|mut query: HashMap<String, String>| query.remove("token"));
    warp::header::optional::<String>("authorization")
        .and(query_token)
        .and_then(move |header: Option<String>, from_query: Option<String>| {
            let token = token.clone();
            async move {
                let Some(expected) = token else { return Ok(()) };
                let given = header
                    .as_deref()
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .or(from_query.as_deref())
                    .unwrap_or("");
                if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
                    Ok(())
                } else {
                    Err(warp::reject::custom(ApiError::new(
                        warp::http::StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "a valid bearer token is required (Authorization: Bearer <token>)",
                    )))
                }
            }
        })
        .untuple_one()
        .boxed()
}

/// Equality whose time does not depend on where the inputs differ (only on their lengths).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_labelled_without_ids() {
        use warp::http::Method;
        let id = "0b5e4c1e-3f1c-4c39-9e4b-1d2f3a4b5c6d";
        for (method, path, label) in [
            (
                Method::GET,
                format!("/task/{id}/status"),
                "GET /task/{id}/status",
            ),
            (Method::GET, format!("/task/{id}"), "GET /task/{id}"),
            (
                Method::POST,
                "/train/mlp/async".into(),
                "POST /train/{model_type}/async",
            ),
            (
                Method::POST,
                "/cluster/nodes/a/drain".into(),
                "POST /cluster/nodes/{name}/{action}",
            ),
            (Method::GET, "/".into(), "GET /"),
            (Method::GET, "/a/b/c/d/e".into(), "other"),
            (Method::GET, "/nothing".into(), "other"),
        ] {
            assert_eq!(route_label(&method, &path), label, "{method} {path}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3cres"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret!"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
