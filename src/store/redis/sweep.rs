//! The sweep: Redis expires records itself; this keeps the listing index and the data sets
//! in step.

use super::*;

impl RedisStore {
    /// Redis expires records itself; this drops expired ids from the listing index, the next
    /// `SWEEP_BATCH` of them after those the last sweep checked. The index is in order of
    /// submission, and a task submitted less than `result_expires_s` ago cannot have expired:
    /// once a sweep reaches those, the next starts from the oldest again (else, with tasks
    /// arriving faster than a sweep walks, it would never come back to the oldest).
    pub(super) async fn sweep_index(&self) -> Result<u64, StoreError> {
        use std::sync::atomic::Ordering;
        let mut con = self.link.clone();
        let from = self.sweep_from.load(Ordering::Relaxed);
        let batch: Vec<(String, f64)> = con
            .zrange_withscores(self.keys.index(), from, from + SWEEP_BATCH - 1)
            .await?;
        let horizon = now_s() - self.settings.result_expires_s;
        let reached_young = (batch.len() as isize) < SWEEP_BATCH
            || batch
                .last()
                .is_some_and(|(_, submitted)| *submitted > horizon);
        let checked = batch.len() as isize;
        let ids: Vec<(String, Uuid)> = batch
            .into_iter()
            .filter(|(_, submitted)| *submitted <= horizon)
            .filter_map(|(id, _)| Uuid::parse_str(&id).ok().map(|uuid| (id, uuid)))
            .collect();
        let mut gone: Vec<&String> = Vec::new();
        let exists: Vec<bool> = if ids.is_empty() {
            Vec::new()
        } else {
            let mut pipe = ::redis::pipe();
            for (_, uuid) in &ids {
                pipe.exists(self.keys.task(*uuid));
            }
            pipe.query_async(&mut con).await?
        };
        for ((id, _), exists) in ids.iter().zip(exists) {
            if !exists {
                gone.push(id);
            }
        }
        if !gone.is_empty() {
            let _: i64 = con.zrem(self.keys.index(), &gone).await?;
        }
        // The ids removed leave the ranks after them one lower each.
        let next = if reached_young {
            0
        } else {
            from + checked - gone.len() as isize
        };
        self.sweep_from.store(next, Ordering::Relaxed);
        self.sweep_datasets().await?;
        Ok(gone.len() as u64)
    }
}
