//! A trainer running on: its next claim (`claim_task.lua`) and the end of its last task
//! (`end_task.lua`) in the node's next bundle (`bundle.rs`), each atomic on its own.

use super::bundle::answer;
use super::claim::ClaimAnswer;
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
        let head = match self.next_head(device).await {
            Ok(head) => head,
            Err(e) => {
                let finished = ended.write(self).await;
                return ClaimedAndFinished {
                    next: Err(e),
                    finished,
                };
            }
        };
        let task = ended
            .stored
            .and_then(|stored| stored.record().ok())
            .filter(|task| task.id == ended.id && task.runs_attempt(ended.attempt));
        let pipelined = match (&head, task, ended.stored) {
            (Some(next), Some(task), Some(stored)) => {
                match self.claim_try(trainer, &self.queues_of(device), &next.head, None) {
                    Ok(Ok(claim)) => Some((claim, task, stored)),
                    Ok(Err(_)) | Err(_) => None,
                }
            }
            _ => None,
        };
        let Some((claim, task, stored)) = pipelined else {
            // With an empty queue, or without the attempt's record at hand: one after the
            // other (the claim also drops a queued id without a record, or says what is wrong).
            let next = self.claim_from(trainer, device, head, None).await;
            let finished = ended.write(self).await;
            return ClaimedAndFinished { next, finished };
        };
        // Both in the node's next bundle (each atomic; a failure of one leaves the other).
        let finish = self.finish_swap(stored.as_stored().as_bytes(), &task, ended.finish.clone());
        let replicated = finish.is_replicated();
        let (claimed, finished) = match self
            .bundled(vec![claim.call, finish.call], replicated)
            .await
        {
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
        let next = match claimed.map(::redis::from_redis_value) {
            Ok(Ok(answer)) => match self.claim_answer(device, answer, claim.task, claim.stored) {
                ClaimAnswer::Taken(claimed) => Ok(Some(*claimed)),
                ClaimAnswer::Draining => Ok(None),
                ClaimAnswer::Moved => {
                    drop(head);
                    let next = self.take_head(device.class());
                    self.claim_from(trainer, device, next, None).await
                }
            },
            Ok(Err(e)) => Err(StoreError::Corrupt(format!("claim_task answered: {e}"))),
            Err(e) => Err(e.into()),
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
