//! Schedules: periodic trainings, fired by the leader with no extra process (Celery beat's job).
//!
//! A schedule's `through` (in the store) says which due times are done. The leader looks at
//! every schedule a few times a second and takes one step at a time: fire the next due time,
//! or skip (or fire once for) the times missed while the cluster was down. Each firing is a
//! submission keyed by `schedule/NAME/DUE` (`IdempotencyKey::firing`, a namespace no client's
//! `Idempotency-Key` reaches), so even two nodes that both believe they lead submit it once,
//! and a leader that dies between submitting and advancing `through` is finished by the next
//! one without a second task.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use uuid::Uuid;

use crate::store::{
    FIRING_FINGERPRINT, IdempotencyKey, Missed, Schedule, ScheduleLink, Store, StoreError,
    Submitted, now_s,
};

/// The most missed due times counted one by one; more are reported as this many.
const MAX_COUNTED: u64 = 100_000;
/// The most steps one schedule takes per look, so one schedule cannot hold up the others.
const MAX_STEPS: usize = 64;
/// How long a firing's submission key lives: far longer than any leader failover.
const FIRING_KEY_TTL_S: f64 = 7.0 * 86_400.0;

/// A cron expression read in a time zone.
pub struct Cadence {
    cron: Cron,
    zone: TimeZone,
}

impl Cadence {
    /// Five fields (minute hour day-of-month month day-of-week) or six with seconds first;
    /// `@daily` and friends too. The error says what is wrong.
    pub fn parse(cron: &str, timezone: &str) -> Result<Cadence, CadenceError> {
        let zone = TimeZone::get(timezone)
            .map_err(|e| CadenceError::Timezone(format!("unknown time zone {timezone:?}: {e}")))?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(cron)
            .map_err(|e| CadenceError::Cron(format!("invalid cron expression {cron:?}: {e}")))?;
        Ok(Cadence { cron, zone })
    }

    /// The first due time after `t` (Unix seconds).
    pub fn next_after(&self, t: i64) -> Option<i64> {
        let from = Timestamp::from_second(t).ok()?.to_zoned(self.zone.clone());
        let next = self.cron.find_next_occurrence(&from, false).ok()?;
        Some(next.timestamp().as_second())
    }

    /// How many due times lie in `first..=last`, `first` being one (counting at most
    /// `MAX_COUNTED`).
    fn count(&self, first: i64, last: i64) -> u64 {
        let (mut n, mut t) = (1, first);
        while n < MAX_COUNTED {
            match self.next_after(t) {
                Some(next) if next <= last => (n, t) = (n + 1, next),
                _ => break,
            }
        }
        n
    }

    /// The last due time at or before `t`.
    fn last_at_or_before(&self, t: i64) -> Option<i64> {
        let from = Timestamp::from_second(t).ok()?.to_zoned(self.zone.clone());
        let last = self.cron.find_previous_occurrence(&from, true).ok()?;
        Some(last.timestamp().as_second())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CadenceError {
    Cron(String),
    Timezone(String),
}

/// What a schedule does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Submit the firing for `due`, standing for `due_times` due times (more than one when
    /// it catches up missed ones), then mark them done.
    Fire { due: i64, due_times: u64 },
    /// Mark the `due_times` due times up to `through` done without firing.
    Skip { through: i64, due_times: u64 },
    /// Nothing is due yet.
    Wait,
}

/// The next step of `schedule` at `now` (Unix seconds). A due time no more than
/// `misfire_grace_s` late fires as its own task; older ones were missed, and all of them
/// together fire once or are skipped, as the schedule says.
pub fn next_step(schedule: &Schedule, cadence: &Cadence, now: i64) -> Step {
    if schedule.paused {
        return Step::Wait;
    }
    let Some(next) = cadence.next_after(schedule.through) else {
        return Step::Wait;
    };
    if next > now {
        return Step::Wait;
    }
    let grace = schedule.misfire_grace_s as i64;
    if now - next <= grace {
        return Step::Fire {
            due: next,
            due_times: 1,
        };
    }
    let last_missed = cadence
        .last_at_or_before(now - grace - 1)
        .unwrap_or(next)
        .max(next);
    let due_times = cadence.count(next, last_missed);
    match schedule.missed {
        Missed::RunOnce => Step::Fire {
            due: last_missed,
            due_times,
        },
        Missed::Skip => Step::Skip {
            through: last_missed,
            due_times,
        },
    }
}

/// Fires what is due in every schedule; the leader calls it a few times a second. Returns how
/// many tasks it submitted.
pub async fn fire_due<S: Store>(store: &S) -> Result<u64, StoreError> {
    let mut submitted = 0;
    for mut schedule in store.schedules().await? {
        let cadence = match Cadence::parse(&schedule.cron, &schedule.timezone) {
            Ok(cadence) => cadence,
            Err(e) => {
                tracing::warn!(schedule = %schedule.name, error = ?e, "stored schedule does not parse; not firing it");
                continue;
            }
        };
        for _ in 0..MAX_STEPS {
            let now = now_s().floor() as i64;
            let (through, fired, due_times, late) = match next_step(&schedule, &cadence, now) {
                Step::Wait => break,
                Step::Skip { through, due_times } => {
                    tracing::info!(schedule = %schedule.name, through, due_times, "skipping missed due times");
                    (through, None, due_times, true)
                }
                Step::Fire { due, due_times } => {
                    let id = fire(store, &schedule, due, due_times).await?;
                    submitted += 1;
                    let late = now - due > schedule.misfire_grace_s as i64;
                    (due, Some(id), due_times, late)
                }
            };
            if !store
                .advance_schedule(&schedule.name, through, fired, due_times)
                .await?
            {
                break; // deleted meanwhile
            }
            crate::telemetry::schedule_step(fired.is_some(), due_times, late);
            schedule.through = through;
        }
    }
    Ok(submitted)
}

/// Submits the task of `schedule` for due time `due`, once: a repeat finds the first one.
async fn fire<S: Store>(
    store: &S,
    schedule: &Schedule,
    due: i64,
    due_times: u64,
) -> Result<Uuid, StoreError> {
    let mut task = schedule.template.clone();
    task.id = Uuid::now_v7();
    task.submitted_at = now_s();
    task.schedule = Some(ScheduleLink {
        name: schedule.name.clone(),
        due_at: due,
        due_times,
    });
    // A node of an older version keyed firings `schedule:NAME:DUE`, where a client's key
    // could be too: a firing it submitted there just before an upgrade (its leader gone before
    // advancing `through`) is that due time's task. A client's task under that key is not
    // (its fingerprint is a digest, never the firings' own).
    let legacy = IdempotencyKey::legacy_firing(&schedule.name, due);
    if let Some((id, fingerprint)) = store.keyed(&legacy).await?
        && fingerprint == FIRING_FINGERPRINT
    {
        return Ok(id);
    }
    let key = IdempotencyKey::firing(&schedule.name, due, FIRING_KEY_TTL_S);
    // A firing is never refused for a full queue: the queue limit is back pressure for
    // clients, and a schedule cannot retry later.
    match store.submit_keyed(&task, u64::MAX, &key).await? {
        Submitted::New => {
            tracing::info!(schedule = %schedule.name, due, due_times, task_id = %task.id, "schedule fired");
            crate::telemetry::task_event(crate::telemetry::TaskEvent::Submitted, task.model_type);
            Ok(task.id)
        }
        Submitted::Existing { id, .. } => Ok(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TaskRecord;
    use crate::training::{ModelType, TrainSpec};

    fn schedule(cron: &str, through: i64, missed: Missed) -> Schedule {
        Schedule {
            name: "s".into(),
            cron: cron.into(),
            timezone: "UTC".into(),
            missed,
            misfire_grace_s: 10,
            model_type: ModelType::Linear,
            request: serde_json::json!({}),
            template: TaskRecord::new(TrainSpec::new(ModelType::Linear), None, 0, 0),
            created_at: through as f64,
            paused: false,
            through,
            fired: 0,
            skipped: 0,
            last_task: None,
            last_fired_at: None,
        }
    }

    #[test]
    fn due_times_fire_one_by_one_within_the_grace() {
        let s = schedule("* * * * * *", 1000, Missed::Skip);
        let cadence = Cadence::parse(&s.cron, &s.timezone).unwrap();
        assert_eq!(next_step(&s, &cadence, 1000), Step::Wait);
        assert_eq!(
            next_step(&s, &cadence, 1005),
            Step::Fire {
                due: 1001,
                due_times: 1
            }
        );
    }

    #[test]
    fn missed_times_fire_once_or_are_skipped() {
        let cadence = Cadence::parse("* * * * * *", "UTC").unwrap();
        let once = schedule("* * * * * *", 1000, Missed::RunOnce);
        assert_eq!(
            next_step(&once, &cadence, 2000),
            Step::Fire {
                due: 1989,
                due_times: 989
            }
        );
        let skip = schedule("* * * * * *", 1000, Missed::Skip);
        assert_eq!(
            next_step(&skip, &cadence, 2000),
            Step::Skip {
                through: 1989,
                due_times: 989
            }
        );
        // After either, the times within the grace fire one by one.
        let mut caught_up = skip.clone();
        caught_up.through = 1989;
        assert_eq!(
            next_step(&caught_up, &cadence, 2000),
            Step::Fire {
                due: 1990,
                due_times: 1
            }
        );
    }

    #[test]
    fn a_paused_schedule_waits() {
        let mut s = schedule("* * * * * *", 1000, Missed::RunOnce);
        s.paused = true;
        let cadence = Cadence::parse(&s.cron, &s.timezone).unwrap();
        assert_eq!(next_step(&s, &cadence, 2000), Step::Wait);
    }

    #[test]
    fn cron_is_read_in_its_time_zone() {
        // 2026-01-15 00:00:00 UTC; 02:00 in Paris (UTC+1 in winter) is 01:00 UTC.
        let midnight = 1_768_435_200;
        let paris = Cadence::parse("0 2 * * *", "Europe/Paris").unwrap();
        assert_eq!(paris.next_after(midnight), Some(midnight + 3600));
        let utc = Cadence::parse("0 2 * * *", "UTC").unwrap();
        assert_eq!(utc.next_after(midnight), Some(midnight + 7200));
    }

    #[test]
    fn bad_expressions_and_zones_say_why() {
        assert!(matches!(
            Cadence::parse("61 * * * *", "UTC"),
            Err(CadenceError::Cron(_))
        ));
        assert!(matches!(
            Cadence::parse("* * *", "UTC"),
            Err(CadenceError::Cron(_))
        ));
        assert!(matches!(
            Cadence::parse("0 2 * * *", "Mars/Olympus"),
            Err(CadenceError::Timezone(_))
        ));
    }
}
