//! The one table of routes: each route's method and path template, which is at once how a
//! request is matched ([`at`], [`at1`], [`at2`]), its metric label ([`Route::label`], a fixed
//! set: ids are never labels) and the role its caller needs ([`Route::role`], read by the guard
//! in `auth`). The OpenAPI document (`crate::api::openapi`) lists the same paths; a test checks
//! that the two agree.

use warp::http::Method;
use warp::{Filter, Rejection};

use super::auth::Role;

/// Every route the node answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    SubmitAsync,
    SubmitSync,
    SubmitBatch,
    Status,
    Result,
    Inspect,
    TaskEvents,
    AllEvents,
    Cancel,
    Tasks,
    ClusterHealth,
    ClusterNodes,
    CeleryHealth,
    Healthz,
    Readyz,
    UploadDataset,
    ListDatasets,
    DeleteDataset,
    Predict,
    Metrics,
    Panel,
    OpenApi,
    Docs,
    DocsFile,
    Purge,
    Drain,
    CreateSchedule,
    ListSchedules,
    DeleteSchedule,
    ShowSchedule,
    PauseSchedule,
    RegisterModel,
    ListModels,
    ShowModel,
    SetAlias,
    DeleteModelVersion,
    PredictVersion,
    PredictAlias,
    CreateSweep,
    ListSweeps,
    ShowSweep,
    CancelSweep,
    SweepEvents,
}

/// `(route, "METHOD /template", role)`: `{name}` segments match any one non-empty segment.
/// The label is the second column as written.
const TABLE: &[(Route, &str, Role)] = &[
    (Route::Status, "GET /task/{id}/status", Role::Read),
    (
        Route::SubmitAsync,
        "POST /train/{model_type}/async",
        Role::Submit,
    ),
    (Route::SubmitSync, "POST /train/{model_type}", Role::Submit),
    (Route::Result, "GET /task/{id}/result", Role::Read),
    (Route::Inspect, "GET /task/{id}", Role::Read),
    (Route::TaskEvents, "GET /task/{id}/events", Role::Read),
    (Route::AllEvents, "GET /events", Role::Read),
    (Route::Cancel, "POST /task/{id}/cancel", Role::Submit),
    (Route::Tasks, "GET /tasks", Role::Read),
    (Route::SubmitBatch, "POST /tasks", Role::Submit),
    (Route::ClusterHealth, "GET /cluster/health", Role::Read),
    (Route::ClusterNodes, "GET /cluster/nodes", Role::Read),
    (Route::CeleryHealth, "GET /celery/health", Role::Read),
    (Route::Healthz, "GET /healthz", Role::Read),
    (Route::Readyz, "GET /readyz", Role::Read),
    (Route::UploadDataset, "POST /datasets", Role::Submit),
    (Route::ListDatasets, "GET /datasets", Role::Read),
    (Route::DeleteDataset, "DELETE /datasets/{id}", Role::Submit),
    (Route::Predict, "POST /models/{id}/predict", Role::Submit),
    (Route::RegisterModel, "POST /models", Role::Submit),
    (Route::ListModels, "GET /models", Role::Read),
    (Route::ShowModel, "GET /models/{name}", Role::Read),
    (
        Route::SetAlias,
        "PUT /models/{name}/aliases/{alias}",
        Role::Admin,
    ),
    (
        Route::DeleteModelVersion,
        "DELETE /models/{name}/versions/{version}",
        Role::Admin,
    ),
    (
        Route::PredictVersion,
        "POST /models/{name}/versions/{version}/predict",
        Role::Submit,
    ),
    (
        Route::PredictAlias,
        "POST /models/{name}/aliases/{alias}/predict",
        Role::Submit,
    ),
    (Route::Metrics, "GET /metrics", Role::Read),
    (Route::Panel, "GET /", Role::Read),
    (Route::OpenApi, "GET /openapi.json", Role::Read),
    (Route::Docs, "GET /docs", Role::Read),
    (Route::DocsFile, "GET /docs/{file}", Role::Read),
    (Route::Purge, "DELETE /queue", Role::Admin),
    (
        Route::Drain,
        "POST /cluster/nodes/{name}/{action}",
        Role::Admin,
    ),
    (Route::CreateSchedule, "POST /schedules", Role::Admin),
    (Route::ListSchedules, "GET /schedules", Role::Read),
    (
        Route::DeleteSchedule,
        "DELETE /schedules/{name}",
        Role::Admin,
    ),
    (Route::ShowSchedule, "GET /schedules/{name}", Role::Read),
    (Route::CreateSweep, "POST /sweeps", Role::Submit),
    (Route::ListSweeps, "GET /sweeps", Role::Read),
    (Route::ShowSweep, "GET /sweeps/{id}", Role::Read),
    (Route::CancelSweep, "POST /sweeps/{id}/cancel", Role::Submit),
    (Route::SweepEvents, "GET /sweeps/{id}/events", Role::Read),
    (
        Route::PauseSchedule,
        "POST /schedules/{name}/{action}",
        Role::Admin,
    ),
];

/// The label of a request no route matches.
pub const OTHER: &str = "other";

impl Route {
    fn entry(self) -> &'static (Route, &'static str, Role) {
        TABLE
            .iter()
            .find(|(route, ..)| *route == self)
            .expect("every route is in the table")
    }

    /// `METHOD /template`, the route's metric label.
    pub fn label(self) -> &'static str {
        self.entry().1
    }

    /// The role a caller needs (when tokens are set).
    pub fn role(self) -> Role {
        self.entry().2
    }

    pub fn method(self) -> &'static str {
        self.label().split_once(' ').map_or("", |(m, _)| m)
    }

    /// The path template, `/task/{id}/status`.
    pub fn template(self) -> &'static str {
        self.label().split_once(' ').map_or("", |(_, t)| t)
    }

    /// Every route, in matching order.
    pub fn all() -> impl Iterator<Item = Route> {
        TABLE.iter().map(|(route, ..)| *route)
    }

    /// The route of a request, if one matches its method and path.
    pub fn find(method: &Method, path: &str) -> Option<Route> {
        TABLE
            .iter()
            .find(|(route, ..)| route.method() == method.as_str() && route.matches(path))
            .map(|(route, ..)| *route)
    }

    /// Whether `path` fits the template (one trailing slash allowed), without allocating.
    pub fn matches(self, path: &str) -> bool {
        self.captures(path).is_some()
    }

    /// The segments of `path` that the template's `{name}`s stand for, in order (at most 2).
    fn captures(self, path: &str) -> Option<[&str; 2]> {
        let trim = |p: &'static str| p.strip_prefix('/').unwrap_or(p);
        let path = path.strip_prefix('/').unwrap_or(path);
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut got = path.split('/');
        let mut captured = [""; 2];
        let mut count = 0;
        for want in trim(self.template()).split('/') {
            let seg = got.next()?;
            if want.starts_with('{') {
                if seg.is_empty() || count == captured.len() {
                    return None;
                }
                captured[count] = seg;
                count += 1;
            } else if want != seg {
                return None;
            }
        }
        got.next().is_none().then_some(captured)
    }
}

/// The label of a request: its route's, or [`OTHER`].
pub fn label(method: &Method, path: &str) -> &'static str {
    Route::find(method, path).map_or(OTHER, Route::label)
}

/// The request's method filter for `route` (a wrong method is a 405, as warp answers it).
fn method(route: Route) -> warp::filters::BoxedFilter<()> {
    match route.method() {
        "POST" => warp::post().boxed(),
        "DELETE" => warp::delete().boxed(),
        "PUT" => warp::put().boxed(),
        _ => warp::get().boxed(),
    }
}

/// The captures of `route` in the request's path, or a 404 rejection.
fn captured(route: Route) -> impl Filter<Extract = ([String; 2],), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(move |path: warp::path::FullPath| async move {
            route
                .captures(path.as_str())
                .map(|c| c.map(str::to_string))
                .ok_or_else(warp::reject::not_found)
        })
        .and(method(route))
}

/// Matches `route`, a template without `{name}`s.
pub fn at(route: Route) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    captured(route).map(|_| ()).untuple_one()
}

/// Matches `route` and extracts its one `{name}`.
pub fn at1(route: Route) -> impl Filter<Extract = (String,), Error = Rejection> + Clone {
    captured(route).map(|[a, _]: [String; 2]| a)
}

/// Matches `route` and extracts its two `{name}`s.
pub fn at2(route: Route) -> impl Filter<Extract = (String, String), Error = Rejection> + Clone {
    captured(route)
        .map(|[a, b]: [String; 2]| (a, b))
        .untuple_one()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_labelled_without_ids() {
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
            (
                Method::DELETE,
                format!("/datasets/{id}"),
                "DELETE /datasets/{id}",
            ),
            (Method::GET, "/tasks/".into(), "GET /tasks"),
            (Method::GET, "/task//status".into(), "other"),
            (Method::GET, "/a/b/c/d/e".into(), "other"),
            (Method::GET, "/nothing".into(), "other"),
        ] {
            assert_eq!(super::label(&method, &path), label, "{method} {path}");
        }
    }

    #[test]
    fn every_route_is_in_the_table_once() {
        for (i, (route, label, _)) in TABLE.iter().enumerate() {
            assert_eq!(route.label(), *label);
            assert!(
                TABLE[..i].iter().all(|(r, l, _)| r != route && l != label),
                "{label}"
            );
        }
    }
}
