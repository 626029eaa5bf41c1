//! The end of an attempt (`end_task.lua`): the final record and its model, which expire; the
//! tombstone that outlives them; the callback queued when the shared transitions say so.
//! Cancels and purges of pending tasks end them with the same script.

use super::cas::{Step, Swap};
use super::*;

impl RedisStore {
    /// The keys `end_task` touches.
    fn finish_keys(&self, task: &TaskRecord) -> [String; 7] {
        let (k, id) = (&self.keys, task.id);
        [
            k.task(id),
            k.running(),
            k.model(id),
            k.burial(id).0,
            k.queue(task.device),
            k.delayed(),
            k.callbacks(),
        ]
    }

    /// The compare-and-set of an end (`end_task.lua`): from `old` (decoded as `before`) to the
    /// ended record `new`, with its model.
    pub(super) fn end<'s>(
        &'s self,
        (old, before): (&[u8], &TaskRecord),
        new: &TaskRecord,
        model: Option<&[u8]>,
    ) -> Swap<'s> {
        let ttl = self.settings.result_expires_s.ceil().max(1.0) as u64;
        let tombstone = ttl + self.settings.expired_memory_s.ceil().max(1.0) as u64;
        let (ttl, tombstone, id) = (ttl.to_string(), tombstone.to_string(), new.id.to_string());
        let callback = if new.callback_due() {
            now_s().to_string()
        } else {
            String::new()
        };
        let (_, tail) = self.keys.burial(new.id);
        // Pending: in its queue or the delayed set; else running, with a lease.
        let pending: &[u8] = if before.state == TaskState::Pending {
            b"1"
        } else {
            b""
        };
        let extra: [&[u8]; 7] = [
            model.unwrap_or(b""),
            ttl.as_bytes(),
            tombstone.as_bytes(),
            id.as_bytes(),
            callback.as_bytes(),
            &tail,
            pending,
        ];
        let keys = self.finish_keys(before);
        self.swap(Runs::Bundled(Kind::End), &keys, (old, before), new, &extra)
    }

    /// The end of the running attempt `task` (read as `old`) as `finish` says, acknowledged
    /// once it is on the replicas asked for (the trainer moves on once it has the answer).
    pub(super) fn finish_swap<'s>(
        &'s self,
        old: &[u8],
        task: &TaskRecord,
        finish: Finish,
    ) -> Swap<'s> {
        let (new, model) = task.clone().finished(finish, &self.settings);
        let model = model.map(compact::model_bytes);
        self.end((old, task), &new, model.as_deref()).replicated()
    }

    /// [`TaskQueue::finish`].
    pub(super) async fn finish_attempt(
        &self,
        id: Uuid,
        attempt: u32,
        finish: Finish,
    ) -> Result<bool, StoreError> {
        self.change_running(id, attempt, false, |old, task| {
            Step::Write(self.finish_swap(old, &task, finish.clone()), true)
        })
        .await
    }

    /// [`TaskQueue::finish_from`]: one try from the record `token` holds, then from the
    /// current record if that one changed since (progress, a cancel request, a requeue).
    pub(super) async fn finish_from_token(
        &self,
        token: &CasToken,
        id: Uuid,
        attempt: u32,
        finish: Finish,
    ) -> Result<bool, StoreError> {
        let task = token.record()?;
        if task.id == id && task.runs_attempt(attempt) {
            let swap = self.finish_swap(token.as_stored().as_bytes(), &task, finish.clone());
            if self.run_swap(swap, id).await? {
                return Ok(true);
            }
        }
        self.finish_attempt(id, attempt, finish).await
    }
}
