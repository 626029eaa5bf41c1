//! A trainer running on: its next claim (`claim_first.lua`) and the end of its last task
//! (`end_task.lua`) in the node's next bundle (`bundle.rs`), each atomic on its own.

use super::bundle::{answer, parse};
use super::first::first_answer;
use super::*;
use crate::training::device_kind::DeviceSpec;

impl RedisStore {
    /// [`TaskQueue::claim_and_finish`]: the claim, then the end, in one bundle.
    pub(super) async fn claim_then_finish(
        &self,
        trainer: &str,
        device: DeviceSpec,
        ended: Ending<'_>,
    ) -> ClaimedAndFinished {
        let task = ended
            .stored
            .and_then(|stored| stored.record().ok())
            .filter(|task| task.id == ended.id && task.runs_attempt(ended.attempt));
        let Some((task, stored)) = task.zip(ended.stored) else {
            // Without the attempt's record at hand: one after the other.
            let next = self.claim_next(trainer, device, None).await;
            let finished = ended.write(self).await;
            return ClaimedAndFinished { next, finished };
        };
        // Both in the node's next bundle (each atomic; a failure of one leaves the other).
        let claim = self.first_call(trainer, device, None);
        let finish = self.finish_swap(stored.as_stored().as_bytes(), &task, ended.finish.clone());
        let replicated = finish.is_replicated();
        let (claimed, finished) = match self.bundled(vec![claim, finish.call], replicated).await {
            Ok(answers) => {
                let mut answers = answers.into_iter().map(answer);
                // Two answers, as `bundled` checks.
                (answers.next().unwrap(), answers.next().unwrap())
            }
            Err(e) => {
                let again = StoreError::Unavailable(e.to_string());
                return ClaimedAndFinished {
                    next: Err(e),
                    finished: Err(again),
                };
            }
        };
        let first = match claimed.map_err(StoreError::from).and_then(parse) {
            Ok(answer) => first_answer(answer),
            Err(e) => Err(e),
        };
        let next = match first {
            Ok(first) => self.then_claim(trainer, device, None, first).await,
            Err(e) => Err(e),
        };
        let finished = match finished.map(::redis::from_redis_value::<i64>) {
            // Made, and on the replicas asked for.
            Ok(Ok(1)) => Ok(true),
            // Changed since (progress, a cancel request, a requeue): from the current record.
            Ok(Ok(_)) => {
                self.finish_attempt(ended.id, ended.attempt, ended.finish)
                    .await
            }
            Ok(Err(e)) => Err(StoreError::Corrupt(format!("end_task answered: {e}"))),
            Err(e) => Err(e.into()),
        };
        ClaimedAndFinished { next, finished }
    }
}
