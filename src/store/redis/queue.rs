//! The [`TaskQueue`] role, whose operations are in `claim.rs`, `run_on.rs`, `update.rs`,
//! `finish.rs` and `requeue.rs`; and the leases of running tasks (`leases.lua`).

use super::*;
use crate::training::device_kind::DeviceSpec;

impl TaskQueue for RedisStore {
    async fn claim(
        &self,
        trainer: &str,
        device: DeviceSpec,
    ) -> Result<Option<Claimed>, StoreError> {
        self.claim_next(trainer, device, None).await
    }

    async fn claim_work(
        &self,
        trainer: &str,
        device: DeviceSpec,
        work: &Work,
    ) -> Result<Option<Claimed>, StoreError> {
        self.claim_next(trainer, device, Some(work)).await
    }

    async fn progress(
        &self,
        id: Uuid,
        attempt: u32,
        progress: &TaskProgress,
    ) -> Result<bool, StoreError> {
        self.write_progress(id, attempt, progress).await
    }

    async fn finish(&self, id: Uuid, attempt: u32, finish: Finish) -> Result<bool, StoreError> {
        self.finish_attempt(id, attempt, finish).await
    }

    async fn finish_from(
        &self,
        token: &CasToken,
        id: Uuid,
        attempt: u32,
        finish: Finish,
    ) -> Result<bool, StoreError> {
        self.finish_from_token(token, id, attempt, finish).await
    }

    async fn claim_and_finish(
        &self,
        trainer: &str,
        device: DeviceSpec,
        ended: Ending<'_>,
    ) -> ClaimedAndFinished {
        self.claim_then_finish(trainer, device, ended).await
    }

    async fn requeue(
        &self,
        id: Uuid,
        attempt: u32,
        error: TaskError,
        delay_s: f64,
    ) -> Result<bool, StoreError> {
        self.requeue_attempt(id, attempt, error, delay_s).await
    }

    async fn promote(&self) -> Result<u64, StoreError> {
        self.promote_due().await
    }

    async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let read: Vec<Option<Vec<u8>>> = self
            .scripts
            .leases
            .key(self.keys.running())
            .arg(self.keys.task_prefix())
            .invoke_async(&mut self.link.clone())
            .await?;
        let mut out = Vec::new();
        for pair in read.chunks(2) {
            if let [Some(id), Some(raw)] = pair
                && Uuid::try_parse_ascii(id).is_ok()
            {
                let task = compact::record_from(raw)?;
                if task.state.is_running() {
                    out.push(task.lease());
                }
            }
        }
        Ok(out)
    }

    async fn renew(&self, id: Uuid, attempt: u32) -> Result<Renewal, StoreError> {
        self.renew_lease(id, attempt).await
    }
}
