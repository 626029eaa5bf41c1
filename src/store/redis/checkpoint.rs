//! The [`Checkpoints`] role: one hash per task (`keys.rs`), written by `checkpoint.lua`
//! only while the attempt that saved it runs the task.

use super::cas::Step;
use super::*;
use crate::training::Checkpoint;

impl Checkpoints for RedisStore {
    async fn put_checkpoint(
        &self,
        id: Uuid,
        attempt: u32,
        checkpoint: &Checkpoint,
    ) -> Result<bool, StoreError> {
        let ttl = self.settings.result_expires_s.ceil().max(1.0) as u64;
        let kept: i64 = self
            .scripts
            .checkpoint
            .key(self.keys.running())
            .key(self.keys.checkpoint(id))
            .arg(id.to_string())
            .arg(attempt)
            .arg(checkpoint.step)
            .arg(checkpoint.bytes.as_slice())
            .arg(ttl)
            .invoke_async(&mut self.link.clone())
            .await?;
        Ok(kept == 1)
    }

    async fn resume_from(&self, id: Uuid, attempt: u32) -> Result<Option<Checkpoint>, StoreError> {
        let Some(checkpoint) = self.checkpoint(id).await? else {
            return Ok(None);
        };
        let step = checkpoint.step;
        let noted = self
            .change_running(id, attempt, false, |old, task| {
                let new = task.clone().resumed(step);
                Step::Write(self.update((old, &task), &new), true)
            })
            .await?;
        Ok(noted.then_some(checkpoint))
    }

    async fn checkpoint(&self, id: Uuid) -> Result<Option<Checkpoint>, StoreError> {
        let (step, data): (Option<u64>, Option<Vec<u8>>) = self
            .link
            .clone()
            .hmget(self.keys.checkpoint(id), &["step", "data"])
            .await?;
        Ok(match (step, data) {
            (Some(step), Some(bytes)) => Some(Checkpoint { step, bytes }),
            _ => None,
        })
    }

    async fn drop_checkpoint(&self, id: Uuid) -> Result<(), StoreError> {
        let _: i64 = self.link.clone().del(self.keys.checkpoint(id)).await?;
        Ok(())
    }
}
