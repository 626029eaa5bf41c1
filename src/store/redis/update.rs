//! Changes of a task record alone (`update.lua`): progress, lease renewals, callback tries.

use super::cas::Step;
use super::*;

impl RedisStore {
    /// [`TaskQueue::progress`].
    pub(super) async fn write_progress(
        &self,
        id: Uuid,
        attempt: u32,
        progress: &TaskProgress,
    ) -> Result<bool, StoreError> {
        self.change_running(id, attempt, false, |old, task| {
            let new = task.clone().progressed(progress, &self.settings);
            Step::Write(self.update((old, &task), &new), true)
        })
        .await
    }

    /// [`TaskQueue::renew`].
    pub(super) async fn renew_lease(&self, id: Uuid, attempt: u32) -> Result<Renewal, StoreError> {
        self.change_running(id, attempt, Renewal::Lost, |old, task| {
            let cancel = task.cancel_requested;
            let new = task.clone().renewed(&self.settings);
            Step::Write(self.update((old, &task), &new), Renewal::Held { cancel })
        })
        .await
    }

    /// [`Callbacks::callback_tried`]: the try noted in the record, then the callback queued
    /// again or dropped.
    pub(super) async fn note_callback(
        &self,
        id: Uuid,
        error: Option<String>,
        retry_in_s: Option<f64>,
    ) -> Result<(), StoreError> {
        let noted = self
            .compare_and_set(id, |read| {
                // Expired meanwhile: nothing left to tell anyone about.
                let Some((old, task)) = read else {
                    return Ok(Step::Answer(false));
                };
                let new = task
                    .clone()
                    .callback_noted(error.clone(), retry_in_s.is_some());
                Ok(Step::Write(self.update((old, &task), &new), true))
            })
            .await?;
        let mut con = self.link.clone();
        let (key, member) = (self.keys.callbacks(), id.to_string());
        let _: i64 = match retry_in_s.filter(|_| noted) {
            Some(wait) => con.zadd(key, member, now_s() + wait).await?,
            None => con.zrem(key, member).await?,
        };
        Ok(())
    }
}
