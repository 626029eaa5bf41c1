//! Reads of tasks and of the queue's depth, and the [`Tasks`] role, whose changes are in
//! `submit.rs`, `cancel.rs` and `sweep.rs`.

use super::*;
use crate::training::device_kind::DeviceClass;

/// How long a finished task's status is answered without reading the store again. Its record
/// does not change; this bounds only what an outside deletion (an operator's FLUSHDB) leaves.
const FINISHED_FRESH: Duration = Duration::from_secs(5);

impl Tasks for RedisStore {
    async fn submit(&self, task: &TaskRecord, queue_limit: u64) -> Result<(), StoreError> {
        match self.submit_script(task, queue_limit, None).await? {
            Submitted::New => Ok(()),
            Submitted::Existing { .. } => unreachable!("no key, no earlier submission"),
        }
    }

    async fn submit_keyed(
        &self,
        task: &TaskRecord,
        queue_limit: u64,
        key: &IdempotencyKey,
    ) -> Result<Submitted, StoreError> {
        self.submit_script(task, queue_limit, Some(key)).await
    }

    async fn submit_batch(
        &self,
        items: &[BatchItem],
        queue_limit: u64,
    ) -> Result<Vec<Submitted>, StoreError> {
        self.submit_batch_script(items, queue_limit).await
    }

    async fn keyed(&self, key: &str) -> Result<Option<(Uuid, String)>, StoreError> {
        self.key_use(key).await
    }

    async fn get(&self, id: Uuid) -> Result<Lookup, StoreError> {
        Ok(self.lookup::<TaskRecord>(id).await?.map(Box::new))
    }

    async fn status(&self, id: Uuid) -> Result<Lookup<TaskStatus>, StoreError> {
        if let Some((status, read)) = self.finished.get(id)
            && read.elapsed() < FINISHED_FRESH
        {
            return Ok(found_unless_expired(status));
        }
        let lookup = self.lookup::<TaskStatus>(id).await?;
        if let Lookup::Found(status) = &lookup
            && status.state.is_terminal()
        {
            self.finished.put(id, (status.clone(), Instant::now()), 1);
        }
        Ok(lookup)
    }

    async fn cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        self.cancel_task(id).await
    }

    async fn purge(&self) -> Result<u64, StoreError> {
        self.purge_pending().await
    }

    async fn list(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        let mut con = self.link.clone();
        let mut out = Vec::new();
        let mut start = 0isize;
        const PAGE: isize = 500;
        while out.len() < filter.limit {
            let ids: Vec<String> = con
                .zrevrange(self.keys.index(), start, start + PAGE - 1)
                .await?;
            if ids.is_empty() {
                break;
            }
            let keys: Vec<String> = ids
                .iter()
                .filter_map(|i| Uuid::parse_str(i).ok())
                .map(|i| self.keys.task(i))
                .collect();
            let records: Vec<Option<Vec<u8>>> = ::redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut con)
                .await?;
            for raw in records.into_iter().flatten() {
                let task = compact::record_from(&raw)?;
                if task.matches(filter) && out.len() < filter.limit {
                    out.push(task);
                }
            }
            start += PAGE;
        }
        Ok(out)
    }

    async fn model(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        let stored: Option<Vec<u8>> = self.link.clone().get(self.keys.model(id)).await?;
        stored.map(compact::model_from).transpose()
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        let mut pipe = ::redis::pipe();
        for class in DeviceClass::ALL {
            pipe.zcard(self.keys.queue(class));
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.link.clone()).await?;
        Ok(counts.iter().sum())
    }

    async fn queue_depths(&self) -> Result<QueueDepths, StoreError> {
        let mut pipe = ::redis::pipe();
        for class in DeviceClass::ALL {
            for priority in 0..10u64 {
                // Scores of priority p lie in [(9 - p) * 1e12, (10 - p) * 1e12).
                let low = (9 - priority) as f64 * 1e12;
                pipe.zcount(self.keys.queue(class), low, format!("({}", low + 1e12));
            }
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.link.clone()).await?;
        let mut depths = QueueDepths::default();
        for (i, count) in counts.into_iter().enumerate() {
            depths[i / 10][i % 10] = count;
        }
        Ok(depths)
    }

    async fn sweep(&self) -> Result<u64, StoreError> {
        self.sweep_index().await
    }
}
