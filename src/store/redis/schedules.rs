//! Schedules (`schedule.lua`: create, delete, pause, advance, each atomic): the
//! [`Schedules`] role. A schedule's definition and its state are kept apart, so a firing
//! changes only the state.

use std::collections::HashMap;

use super::*;

impl RedisStore {
    /// Runs one operation of `schedule.lua` on schedule `name`; true if it applied.
    async fn schedule_op(&self, op: &str, name: &str, args: &[String]) -> Result<bool, StoreError> {
        Ok(self.schedule_code(op, name, args).await? == 1)
    }

    /// As `schedule_op`, with the script's answer.
    async fn schedule_code(
        &self,
        op: &str,
        name: &str,
        args: &[String],
    ) -> Result<i64, StoreError> {
        let mut invocation = self.scripts.schedule.prepare_invoke();
        invocation
            .key(self.keys.schedules())
            .key(self.keys.schedule_state(name))
            .arg(op)
            .arg(name);
        for arg in args {
            invocation.arg(arg);
        }
        Ok(invocation.invoke_async(&mut self.link.clone()).await?)
    }
}

impl Schedules for RedisStore {
    async fn create_schedule(
        &self,
        schedule: &Schedule,
        max: u64,
    ) -> Result<ScheduleCreated, StoreError> {
        let paused = if schedule.paused { "1" } else { "0" };
        let args = [
            encode(schedule),
            schedule.through.to_string(),
            paused.into(),
            max.to_string(),
        ];
        Ok(
            match self.schedule_code("create", &schedule.name, &args).await? {
                1 => ScheduleCreated::Created,
                2 => ScheduleCreated::Full,
                _ => ScheduleCreated::Exists,
            },
        )
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        let mut con = self.link.clone();
        let defs: Vec<(String, String)> = con.hgetall(self.keys.schedules()).await?;
        if defs.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for (name, _) in &defs {
            pipe.hgetall(self.keys.schedule_state(name));
        }
        let states: Vec<HashMap<String, String>> = pipe.query_async(&mut con).await?;
        let mut out = Vec::with_capacity(defs.len());
        for ((_, def), state) in defs.iter().zip(states) {
            let mut schedule: Schedule = decode(def)?;
            let number = |field: &str| state.get(field).and_then(|v| v.parse::<f64>().ok());
            schedule.paused = state.get("paused").is_some_and(|v| v == "1");
            schedule.through = number("through").map_or(schedule.through, |v| v as i64);
            schedule.fired = number("fired").map_or(0, |v| v as u64);
            schedule.skipped = number("skipped").map_or(0, |v| v as u64);
            schedule.last_task = state.get("last_task").and_then(|v| Uuid::parse_str(v).ok());
            schedule.last_fired_at = number("last_fired_at");
            out.push(schedule);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        self.schedule_op("delete", name, &[]).await
    }

    async fn pause_schedule(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        let flag = if paused { "1" } else { "0" };
        let now = (now_s().floor() as i64).to_string();
        self.schedule_op("pause", name, &[flag.into(), now]).await
    }

    async fn advance_schedule(
        &self,
        name: &str,
        through: i64,
        fired: Option<Uuid>,
        due_times: u64,
    ) -> Result<bool, StoreError> {
        let task = fired.map(|id| id.to_string()).unwrap_or_default();
        let args = [
            through.to_string(),
            task,
            now_s().to_string(),
            due_times.to_string(),
        ];
        self.schedule_op("advance", name, &args).await
    }
}
