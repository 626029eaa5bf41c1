//! `/schedules`: periodic trainings (see `crate::schedule` for how they fire).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::{json as reply_json, with_status};

use super::handlers::{Reply_, build_task, parse_json, reject};
use super::{Api, ApiError};
use crate::api::{ScheduleAnswer, ScheduleDeleted, ScheduleList, ScheduleRequest, ScheduleView};
use crate::schedule::{Cadence, CadenceError};
use crate::store::{Schedule, ScheduleCreated, Store, now_s};

/// Longest schedule name.
const MAX_NAME: usize = 64;
/// Largest `misfire_grace_s`: a week.
const MAX_GRACE_S: u64 = 7 * 86_400;
/// `misfire_grace_s` when the request does not say.
const DEFAULT_GRACE_S: u64 = 60;

/// `POST /schedules`: 201 with the schedule; 409 if the name is taken or there are
/// `[tasks] max_schedules` schedules.
pub async fn create<S: Store>(
    api: Arc<Api<S>>,
    content_type: Option<String>,
    body: Bytes,
) -> Reply_ {
    let schedule = parse(&api, &content_type, &body).await.map_err(reject)?;
    let max = api.max_schedules;
    match api
        .store
        .create_schedule(&schedule, max)
        .await
        .map_err(reject)?
    {
        ScheduleCreated::Created => {}
        ScheduleCreated::Exists => {
            return Err(reject(ApiError::new(
                StatusCode::CONFLICT,
                "schedule_exists",
                format!(
                    "a schedule named {:?} exists; delete it first",
                    schedule.name
                ),
            )));
        }
        ScheduleCreated::Full => {
            return Err(reject(ApiError::new(
                StatusCode::CONFLICT,
                "too_many_schedules",
                format!(
                    "there are {max} schedules, the most this cluster keeps ([tasks] max_schedules); delete one first"
                ),
            )));
        }
    }
    tracing::info!(schedule = %schedule.name, cron = %schedule.cron, "schedule created");
    Ok(with_status(
        reply_json(&ScheduleAnswer {
            success: true,
            schedule: view(&schedule),
        }),
        StatusCode::CREATED,
    )
    .into_response())
}

/// Checks a `POST /schedules` body and builds the schedule; nothing is stored yet.
async fn parse<S: Store>(
    api: &Api<S>,
    content_type: &Option<String>,
    body: &[u8],
) -> Result<Schedule, ApiError> {
    let request: ScheduleRequest = parse_json(content_type, body)?;
    let missing: Vec<&str> = [
        ("name", request.name.is_none()),
        ("cron", request.cron.is_none()),
        ("model_type", request.model_type.is_none()),
    ]
    .into_iter()
    .filter_map(|(field, absent)| absent.then_some(field))
    .collect();
    if !missing.is_empty() {
        return Err(ApiError::invalid(
            "invalid_schedule",
            format!("missing field(s): {}", missing.join(", ")),
        ));
    }
    let (name, cron, model_type) = (
        request.name.unwrap_or_default(),
        request.cron.unwrap_or_default(),
        request.model_type.unwrap_or_default(),
    );
    check_name(&name)?;
    let timezone = request.timezone.unwrap_or_else(|| "UTC".into());
    Cadence::parse(&cron, &timezone).map_err(|e| match e {
        CadenceError::Cron(reason) => ApiError::invalid("invalid_cron", reason),
        CadenceError::Timezone(reason) => ApiError::invalid("invalid_timezone", reason),
    })?;
    let misfire_grace_s = request.misfire_grace_s.unwrap_or(DEFAULT_GRACE_S);
    if misfire_grace_s > MAX_GRACE_S {
        return Err(ApiError::invalid(
            "invalid_schedule",
            format!("misfire_grace_s must be at most {MAX_GRACE_S}, got {misfire_grace_s}"),
        ));
    }
    let train_request = request.request.unwrap_or_else(|| json!({}));
    if !train_request.is_object() {
        return Err(ApiError::invalid(
            "invalid_schedule",
            "request must be a JSON object: the body of POST /train/{model_type}/async",
        ));
    }
    let train_body = serde_json::to_vec(&train_request).expect("JSON values serialize");
    let json_type = Some("application/json".to_string());
    let mut template = build_task(api, &model_type, &json_type, &Bytes::from(train_body)).await?;
    if let Some(rule) = request.register {
        let problems = rule.problems();
        if !problems.is_empty() {
            return Err(ApiError::invalid("invalid_schedule", problems.join("; ")));
        }
        // Each firing's task carries the rule; the trainer that ends it registers its model.
        template.register = Some(rule);
    }
    let now = now_s();
    Ok(Schedule {
        name,
        cron,
        timezone,
        missed: request.missed.unwrap_or_default(),
        misfire_grace_s,
        model_type: template.model_type,
        request: train_request,
        template,
        created_at: now,
        paused: request.paused.unwrap_or(false),
        through: now.floor() as i64,
        fired: 0,
        skipped: 0,
        last_task: None,
        last_fired_at: None,
    })
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_schedule_name",
            format!("schedule name must be 1 to {MAX_NAME} letters, digits or -_. ; got {name:?}"),
        ))
    }
}

/// `GET /schedules`.
pub async fn list<S: Store>(api: Arc<Api<S>>) -> Reply_ {
    let schedules = api.store.schedules().await.map_err(reject)?;
    let views: Vec<ScheduleView> = schedules.iter().map(view).collect();
    Ok(reply_json(&ScheduleList {
        success: true,
        count: views.len(),
        schedules: views,
    })
    .into_response())
}

/// `GET /schedules/{name}`.
pub async fn show<S: Store>(name: String, api: Arc<Api<S>>) -> Reply_ {
    let schedules = api.store.schedules().await.map_err(reject)?;
    let schedule = schedules
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| reject(not_found(&name)))?;
    Ok(reply_json(&ScheduleAnswer {
        success: true,
        schedule: view(schedule),
    })
    .into_response())
}

/// `DELETE /schedules/{name}`: it fires no more; tasks it fired stay.
pub async fn delete<S: Store>(name: String, api: Arc<Api<S>>) -> Reply_ {
    if !api.store.delete_schedule(&name).await.map_err(reject)? {
        return Err(reject(not_found(&name)));
    }
    tracing::info!(schedule = %name, "schedule deleted");
    Ok(reply_json(&ScheduleDeleted {
        success: true,
        deleted: &name,
    })
    .into_response())
}

/// `POST /schedules/{name}/pause` and `/resume`. A resumed schedule fires from now on, not
/// the due times it was paused through.
pub async fn pause<S: Store>(name: String, action: String, api: Arc<Api<S>>) -> Reply_ {
    let paused = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => {
            return Err(reject(ApiError::not_found(
                "not_found",
                format!("no such action {action:?}; use pause or resume"),
            )));
        }
    };
    if !api
        .store
        .pause_schedule(&name, paused)
        .await
        .map_err(reject)?
    {
        return Err(reject(not_found(&name)));
    }
    tracing::info!(schedule = %name, paused, "schedule paused or resumed");
    show(name, api).await
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found("schedule_not_found", format!("no schedule named {name:?}"))
}

/// A schedule as the API shows it.
fn view(schedule: &Schedule) -> ScheduleView<'_> {
    let next_due_at = Cadence::parse(&schedule.cron, &schedule.timezone)
        .ok()
        .filter(|_| !schedule.paused)
        .and_then(|c| c.next_after(schedule.through));
    ScheduleView::of(schedule, next_due_at)
}
