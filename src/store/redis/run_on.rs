//! A trainer running on: its next claim (`claim.lua`) and the end of its last task
//! (`finish.lua`) in one round trip, each script atomic on its own.

use super::claim::ClaimAnswer;
use super::*;
use crate::training::device_kind::DeviceSpec;

impl RedisStore {
    /// [`TaskQueue::claim_and_finish`]: the claim script, then the finish script, pipelined.
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
        // Both scripts in one round trip (each atomic; a failure of one leaves the other).
        let finish = self.finish_swap(stored.as_stored().as_bytes(), &task, ended.finish.clone());
        let mut writer = self.link.writer();
        let answers: Result<Vec<::redis::RedisResult<::redis::Value>>, _> = ::redis::pipe()
            .ignore_errors()
            .invoke_script(&claim.invocation)
            .invoke_script(finish.invocation())
            .query_async(&mut writer)
            .await;
        let (claimed, finished) = match answers {
            Ok(answers) if answers.len() == 2 => {
                // Two answers, as the guard says.
                let mut answers = answers.into_iter();
                (answers.next().unwrap(), answers.next().unwrap())
            }
            Ok(answers) => {
                let e = StoreError::Corrupt(format!("2 scripts got {} answers", answers.len()));
                let again = StoreError::Corrupt(e.to_string());
                return ClaimedAndFinished {
                    next: Err(e),
                    finished: Err(again),
                };
            }
            Err(e) => {
                return ClaimedAndFinished {
                    next: Err(e.clone().into()),
                    finished: Err(e.into()),
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
            Ok(Err(e)) => Err(StoreError::Corrupt(format!("claim.lua answered: {e}"))),
            // Redis lost its scripts (it restarted): a claim on its own loads them.
            Err(e)
                if e.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript) =>
            {
                self.claim_from(trainer, device, head, None).await
            }
            Err(e) => Err(e.into()),
        };
        let finished = match finished.map(::redis::from_redis_value::<i64>) {
            Ok(Ok(1)) => writer
                .replicated(|| format!("the end of task {}", ended.id))
                .await
                .map(|()| true),
            // Changed since (progress, a cancel request, a requeue): from the current record.
            Ok(Ok(_)) => {
                self.finish_attempt(ended.id, ended.attempt, ended.finish)
                    .await
            }
            Ok(Err(e)) => Err(StoreError::Corrupt(format!("finish.lua answered: {e}"))),
            Err(e)
                if e.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript) =>
            {
                self.finish_from_token(stored, ended.id, ended.attempt, ended.finish)
                    .await
            }
            Err(e) => Err(e.into()),
        };
        ClaimedAndFinished { next, finished }
    }
}
