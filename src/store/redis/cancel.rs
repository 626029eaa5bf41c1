//! Cancel and purge, as the shared transitions decide them: a pending task ends with
//! `end_task.lua` (out of its queue), a running one is flagged with `update.lua`.

use super::cas::Step;
use super::*;
use crate::training::device_kind::DeviceClass;

impl RedisStore {
    /// [`Tasks::cancel`].
    pub(super) async fn cancel_task(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        let cancelled = self
            .compare_and_set(id, |read| {
                let Some((old, task)) = read else {
                    return Ok(Step::Answer(None));
                };
                Ok(match task.clone().cancelled(now_s(), &self.settings) {
                    Cancel::Answer(outcome) => Step::Answer(Some(outcome)),
                    Cancel::Revoke(new) => Step::Write(
                        self.end((old, &task), &new, None),
                        Some(CancelOutcome::Revoked),
                    ),
                    Cancel::Flag(new, outcome) => {
                        Step::Write(self.update((old, &task), &new), Some(outcome))
                    }
                })
            })
            .await?;
        match cancelled {
            Some(outcome) => Ok(outcome),
            None => Ok(match self.gone::<()>(id).await? {
                Lookup::Expired => CancelOutcome::Expired,
                _ => CancelOutcome::Missing,
            }),
        }
    }

    /// Revokes task `id` if it is pending; true if it did.
    async fn purge_one(&self, id: Uuid) -> Result<bool, StoreError> {
        self.compare_and_set(id, |read| {
            let Some((old, task)) = read else {
                return Ok(Step::Answer(false));
            };
            Ok(match task.clone().purged(&self.settings) {
                Some(new) => Step::Write(self.end((old, &task), &new, None), true),
                None => Step::Answer(false),
            })
        })
        .await
    }

    /// [`Tasks::purge`].
    pub(super) async fn purge_pending(&self) -> Result<u64, StoreError> {
        let k = &self.keys;
        let mut con = self.link.clone();
        let mut purged = 0;
        let mut queues: Vec<String> = DeviceClass::ALL.iter().map(|c| k.queue(*c)).collect();
        queues.push(k.delayed());
        for queue in queues {
            loop {
                let ids: Vec<String> = con.zrange(&queue, 0, SWEEP_BATCH - 1).await?;
                if ids.is_empty() {
                    break;
                }
                for id in ids {
                    let Ok(uuid) = Uuid::parse_str(&id) else {
                        let _: i64 = con.zrem(&queue, &id).await?;
                        continue;
                    };
                    if self.purge_one(uuid).await? {
                        purged += 1;
                    } else {
                        // Claimed, cancelled or gone meanwhile: it is no longer pending here.
                        let _: i64 = con.zrem(&queue, &id).await?;
                    }
                }
            }
        }
        Ok(purged)
    }
}
