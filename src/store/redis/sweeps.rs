//! Sweeps (`sweeps.lua`: create, update, delete and rung results, each atomic with its
//! events): the [`Sweeps`] role. A rung is decided here, by the shared `asha_go_on`, over the
//! results read just before; the script stores the decision only if no result came meanwhile
//! (else it is decided again), so each (trial, rung) is decided once, on every result before.

use super::*;

/// Most tries of a rung decision before the store is reported busy.
const RUNG_TRIES: usize = 32;

impl RedisStore {
    /// Runs one operation of `sweeps.lua` on sweep `id`.
    async fn sweep_script<T: ::redis::FromRedisValue>(
        &self,
        op: &str,
        id: Uuid,
        args: &[String],
    ) -> Result<T, StoreError> {
        let mut invocation = self.scripts.sweeps.prepare_invoke();
        invocation
            .key(self.keys.sweeps())
            .key(self.keys.sweep(id))
            .key(self.keys.sweep_rungs(id))
            .key(self.keys.sweep_events(id))
            .key(self.keys.running_sweeps())
            .arg(op)
            .arg(id.to_string());
        for arg in args {
            invocation.arg(arg);
        }
        Ok(invocation.invoke_async(&mut self.link.clone()).await?)
    }
}

impl RedisStore {
    /// The sweeps whose ids the sorted set `index` holds, in its order.
    async fn sweeps_in(&self, index: String) -> Result<Vec<Sweep>, StoreError> {
        let mut con = self.link.clone();
        let ids: Vec<String> = con.zrange(index, 0, -1).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for id in &ids {
            let id = Uuid::parse_str(id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            pipe.hget(self.keys.sweep(id), "record");
        }
        let records: Vec<Option<String>> = pipe.query_async(&mut con).await?;
        records.into_iter().flatten().map(|r| decode(&r)).collect()
    }
}

/// A rung result as stored: `STEP/TRIAL` -> `VALUE/GO_ON`.
fn rung_result(field: &str, stored: &str) -> Option<RungResult> {
    let (step, trial) = field.split_once('/')?;
    let (value, go_on) = stored.rsplit_once('/')?;
    Some(RungResult {
        trial: trial.parse().ok()?,
        step: step.parse().ok()?,
        value: value.parse().ok()?,
        go_on: go_on == "1",
    })
}

impl Sweeps for RedisStore {
    async fn create_sweep(
        &self,
        sweep: &Sweep,
        max: u64,
        event: &str,
    ) -> Result<SweepCreated, StoreError> {
        let args = [
            encode(sweep),
            sweep.created_at.to_string(),
            max.to_string(),
            event.to_string(),
        ];
        Ok(
            match self.sweep_script::<i64>("create", sweep.id, &args).await? {
                1 => SweepCreated::Created,
                _ => SweepCreated::Full,
            },
        )
    }

    async fn get_sweep(&self, id: Uuid) -> Result<Option<Sweep>, StoreError> {
        let mut con = self.link.clone();
        let record: Option<String> = con.hget(self.keys.sweep(id), "record").await?;
        record.map(|r| decode(&r)).transpose()
    }

    async fn sweeps(&self) -> Result<Vec<Sweep>, StoreError> {
        self.sweeps_in(self.keys.sweeps()).await
    }

    async fn running_sweeps(&self) -> Result<Vec<Sweep>, StoreError> {
        self.sweeps_in(self.keys.running_sweeps()).await
    }

    async fn update_sweep(&self, sweep: &Sweep, events: &[String]) -> Result<bool, StoreError> {
        let running = if sweep.state == SweepState::Running {
            "1"
        } else {
            "0"
        };
        let mut args = vec![encode(sweep), sweep.version.to_string(), running.into()];
        args.extend(events.iter().cloned());
        Ok(self.sweep_script::<i64>("update", sweep.id, &args).await? == 1)
    }

    async fn delete_sweep(&self, id: Uuid) -> Result<bool, StoreError> {
        Ok(self.sweep_script::<i64>("delete", id, &[]).await? == 1)
    }

    async fn report_rung(
        &self,
        id: Uuid,
        trial: u32,
        step: u64,
        value: f64,
        rule: RungRule,
    ) -> Result<bool, StoreError> {
        let field = format!("{step}/{trial}");
        for _ in 0..RUNG_TRIES {
            let results = self.rungs(id).await?;
            if let Some(made) = results.iter().find(|r| r.trial == trial && r.step == step) {
                return Ok(made.go_on);
            }
            let recorded: Vec<f64> = results
                .iter()
                .filter(|r| r.step == step)
                .map(|r| r.value)
                .collect();
            let go_on = asha_go_on(&recorded, value, rule);
            let result = RungResult {
                trial,
                step,
                value,
                go_on,
            };
            let stored = format!("{value}/{}", if go_on { 1 } else { 0 });
            let args = [
                field.clone(),
                stored,
                results.len().to_string(),
                rung_event(id, &result),
            ];
            let answer: String = self.sweep_script("rung", id, &args).await?;
            match answer.as_str() {
                "1" => return Ok(true),
                "0" => return Ok(false),
                _ => continue,
            }
        }
        Err(StoreError::Unavailable(format!(
            "rung {step} of trial {trial} of sweep {id}: results kept coming; not decided"
        )))
    }

    async fn rungs(&self, id: Uuid) -> Result<Vec<RungResult>, StoreError> {
        let mut con = self.link.clone();
        let stored: Vec<(String, String)> = con.hgetall(self.keys.sweep_rungs(id)).await?;
        let mut out: Vec<RungResult> = stored
            .iter()
            .filter_map(|(field, value)| rung_result(field, value))
            .collect();
        out.sort_by_key(|r| (r.step, r.trial));
        Ok(out)
    }

    async fn sweep_events(
        &self,
        id: Uuid,
        after: u64,
        max: usize,
    ) -> Result<Vec<SweepEvent>, StoreError> {
        let mut con = self.link.clone();
        let last = after as isize + max.max(1) as isize - 1;
        let data: Vec<String> = con
            .lrange(self.keys.sweep_events(id), after as isize, last)
            .await?;
        Ok(data
            .into_iter()
            .enumerate()
            .map(|(i, data)| SweepEvent {
                seq: after + 1 + i as u64,
                data,
            })
            .collect())
    }
}
