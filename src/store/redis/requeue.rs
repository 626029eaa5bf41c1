//! A running task back in the queue (`requeue.lua`), at once or after a retry delay, and the
//! promotion of delayed tasks whose time came (`promote.lua`).

use super::cas::Step;
use super::*;

impl RedisStore {
    /// [`TaskQueue::requeue`].
    pub(super) async fn requeue_attempt(
        &self,
        id: Uuid,
        attempt: u32,
        error: TaskError,
        delay_s: f64,
    ) -> Result<bool, StoreError> {
        let k = &self.keys;
        self.change_running(id, attempt, false, |old, task| {
            let keys = [
                k.task(id),
                k.running(),
                k.queue(task.device),
                k.seq(),
                k.delayed(),
            ];
            let new = task.clone().requeued(attempt, error.clone(), delay_s);
            let (priority, id_text) = (new.queue_priority().to_string(), id.to_string());
            let retry_at = new.retry_at.unwrap_or(0.0).to_string();
            let extra = [priority.as_bytes(), id_text.as_bytes(), retry_at.as_bytes()];
            let script = Runs::Alone(&self.scripts.requeue);
            let swap = self.swap(script, &keys, (old, &task), &new, &extra);
            Step::Write(swap, true)
        })
        .await
    }

    /// [`TaskQueue::promote`].
    pub(super) async fn promote_due(&self) -> Result<u64, StoreError> {
        let k = &self.keys;
        let mut con = self.link.clone();
        let due: Vec<String> = con
            .zrangebyscore_limit(k.delayed(), "-inf", now_s(), 0, SWEEP_BATCH)
            .await?;
        let mut moved = 0;
        for id in due {
            let Ok(uuid) = Uuid::parse_str(&id) else {
                let _: i64 = con.zrem(k.delayed(), &id).await?;
                continue;
            };
            let Some(raw) = self.raw(uuid).await? else {
                let _: i64 = con.zrem(k.delayed(), &id).await?;
                continue;
            };
            let task = compact::record_from(&raw)?;
            let done: i64 = self
                .scripts
                .promote
                .key(k.delayed())
                .key(k.queue(task.device))
                .key(k.seq())
                .arg(&id)
                .arg(task.queue_priority())
                .invoke_async(&mut con)
                .await?;
            moved += done as u64;
        }
        Ok(moved)
    }
}
