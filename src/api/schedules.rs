//! The schedule routes: `POST /schedules`, `GET /schedules`, `GET|DELETE /schedules/{name}`,
//! `POST /schedules/{name}/{pause|resume}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::schema::ModelTypeSchema;
use crate::store::{Missed, RegisterRule, Schedule};
use crate::training::ModelType;

/// What a schedule does with the due times that passed without firing (the cluster was down).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Missed)]
pub enum MissedSchema {
    /// Fire once for all of them (default).
    RunOnce,
    /// Fire none of them.
    Skip,
}

/// The body of `POST /schedules`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris",
    "model_type": "mlp", "request": {"epochs": 50}}))]
pub struct ScheduleRequest {
    /// 1 to 64 letters, digits, '-', '_' or '.'; unique in the cluster.
    pub name: Option<String>,
    /// A cron expression (5 fields, or 6 with seconds).
    pub cron: Option<String>,
    /// IANA name; UTC when absent.
    pub timezone: Option<String>,
    pub model_type: Option<String>,
    /// The body of `POST /train/{model_type}/async`.
    #[schema(value_type = Option<super::TrainRequest>)]
    pub request: Option<Value>,
    #[schema(value_type = Option<MissedSchema>)]
    pub missed: Option<Missed>,
    /// How late a due time may still fire, in seconds (default 60, at most 7 days).
    pub misfire_grace_s: Option<u64>,
    /// Created paused.
    pub paused: Option<bool>,
    /// Register each successful result as the next version of a model, and move an alias
    /// to it when it beats the version the alias points at.
    #[schema(value_type = Option<RegisterRuleSchema>)]
    pub register: Option<RegisterRule>,
}

/// What a schedule does with each successful result.
#[derive(Serialize, ToSchema)]
#[schema(as = RegisterRule, example = json!({"name": "house-prices",
    "promote_alias": "production", "metric": "test_r2", "mode": "max"}))]
pub struct RegisterRuleSchema {
    /// The registered model's name (created at the first registration).
    pub name: String,
    /// The alias to move to a new version that beats the one it points at (or when unset).
    pub promote_alias: Option<String>,
    /// The metric compared: a name of `result.metrics` (`test_r2`, `test_rmse`), or
    /// `MODEL.METRIC` for `all`; default `test_r2`.
    pub metric: Option<String>,
    /// `max` (higher is better) or `min`; default `min` for rmse, loss and duration metrics,
    /// else `max`.
    pub mode: Option<String>,
}

/// A schedule as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleView<'a> {
    pub name: &'a str,
    pub cron: &'a str,
    pub timezone: &'a str,
    #[schema(value_type = ModelTypeSchema)]
    pub model_type: ModelType,
    #[schema(value_type = Object)]
    pub request: &'a Value,
    #[schema(value_type = MissedSchema)]
    pub missed: Missed,
    pub misfire_grace_s: u64,
    pub paused: bool,
    pub created_at: f64,
    /// The next time it fires (Unix seconds); null while paused.
    pub next_due_at: Option<i64>,
    /// The last due time it fired or skipped (Unix seconds).
    pub done_through: i64,
    pub fired: u64,
    pub skipped: u64,
    pub last_task_id: Option<Uuid>,
    pub last_fired_at: Option<f64>,
    /// Where each successful result is registered.
    #[schema(value_type = Option<RegisterRuleSchema>)]
    pub register: Option<&'a RegisterRule>,
}

impl<'a> ScheduleView<'a> {
    /// `schedule` as the API shows it, with its next due time.
    pub fn of(schedule: &'a Schedule, next_due_at: Option<i64>) -> Self {
        ScheduleView {
            name: &schedule.name,
            cron: &schedule.cron,
            timezone: &schedule.timezone,
            model_type: schedule.model_type,
            request: &schedule.request,
            missed: schedule.missed,
            misfire_grace_s: schedule.misfire_grace_s,
            paused: schedule.paused,
            created_at: schedule.created_at,
            next_due_at,
            done_through: schedule.through,
            fired: schedule.fired,
            skipped: schedule.skipped,
            last_task_id: schedule.last_task,
            last_fired_at: schedule.last_fired_at,
            register: schedule.template.register.as_ref(),
        }
    }
}

/// The answer of `POST /schedules` (201), `GET /schedules/{name}` and pause or resume.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleAnswer<'a> {
    pub success: bool,
    pub schedule: ScheduleView<'a>,
}

/// The answer of `GET /schedules`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList<'a> {
    pub success: bool,
    pub count: usize,
    pub schedules: Vec<ScheduleView<'a>>,
}

/// The answer of `DELETE /schedules/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleDeleted<'a> {
    pub success: bool,
    pub deleted: &'a str,
}
