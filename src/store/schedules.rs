//! Periodic trainings as the store keeps them: the [`Schedules`] role and its records.

use std::future::Future;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{StoreError, TaskRecord, now_s};
use crate::training::ModelType;

/// Which firing of which schedule submitted a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleLink {
    pub name: String,
    /// The due time it fired for (Unix seconds).
    pub due_at: i64,
    /// How many due times this firing stands for: 1, or more for the one firing that
    /// catches up the times missed while the cluster was down.
    #[serde(default = "one")]
    pub due_times: u64,
}

fn one() -> u64 {
    1
}

/// What a schedule does with due times that passed more than its `misfire_grace_s` ago
/// without firing (the whole cluster was down).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Fire once for all of them.
    #[default]
    RunOnce,
    /// Fire none of them.
    Skip,
}

/// A periodic training, as the store keeps it. The leader fires it at each due time of
/// `cron` (see `crate::schedule`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    /// IANA time zone the cron expression is read in.
    pub timezone: String,
    pub missed: Missed,
    /// A due time this late or less still fires as its own task.
    pub misfire_grace_s: u64,
    pub model_type: ModelType,
    /// The training request as posted (the body of `POST /train/{model_type}/async`).
    pub request: serde_json::Value,
    /// The task each firing submits, with its own id and times.
    pub template: TaskRecord,
    pub created_at: f64,
    pub paused: bool,
    /// Every due time up to here (Unix seconds) has been fired or skipped.
    pub through: i64,
    pub fired: u64,
    /// Missed due times skipped (see `Missed::Skip`).
    pub skipped: u64,
    pub last_task: Option<Uuid>,
    pub last_fired_at: Option<f64>,
}

/// What `create_schedule` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleCreated {
    Created,
    /// A schedule has this name.
    Exists,
    /// `max` schedules exist already.
    Full,
}

impl Schedule {
    /// The change `advance_schedule` makes, shared by the stores that keep whole records.
    pub(super) fn advanced(&mut self, through: i64, fired: Option<Uuid>, due_times: u64) {
        if through <= self.through {
            return;
        }
        self.through = through;
        match fired {
            Some(id) => {
                self.fired += 1;
                self.last_task = Some(id);
                self.last_fired_at = Some(now_s());
            }
            None => self.skipped += due_times,
        }
    }

    /// The change `pause_schedule` makes.
    pub(super) fn paused_at(&mut self, paused: bool, now: f64) {
        if self.paused && !paused {
            self.through = self.through.max(now.floor() as i64);
        }
        self.paused = paused;
    }
}

/// The periodic trainings the leader fires.
pub trait Schedules: Send + Sync + 'static {
    /// Stores a new schedule, unless one already has its name or `max` schedules exist.
    fn create_schedule(
        &self,
        schedule: &Schedule,
        max: u64,
    ) -> impl Future<Output = Result<ScheduleCreated, StoreError>> + Send;
    /// Every schedule, by name.
    fn schedules(&self) -> impl Future<Output = Result<Vec<Schedule>, StoreError>> + Send;
    /// False if there was no such schedule.
    fn delete_schedule(&self, name: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Pauses a schedule or resumes it; a resumed schedule does not fire the due times it was
    /// paused through. False if there is no such schedule.
    fn pause_schedule(
        &self,
        name: &str,
        paused: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Marks every due time up to `through` done: fired as task `fired`, or `due_times` of
    /// them skipped with `None`. `through` never moves back, and a step is counted once. False
    /// if there is no such schedule.
    fn advance_schedule(
        &self,
        name: &str,
        through: i64,
        fired: Option<Uuid>,
        due_times: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
