//! The [`Tasks`] role of the embedded store.

use redb::{ReadableTable, ReadableTableMetadata};

use super::*;

impl Tasks for EmbeddedStore {
    async fn submit(&self, task: &TaskRecord, queue_limit: u64) -> Result<(), StoreError> {
        let task = task.clone();
        self.write(move |tx, _| {
            let depth = tx.open_table(QUEUE)?.len()?;
            if depth >= queue_limit {
                return Err(StoreError::QueueFull { limit: queue_limit });
            }
            save(tx, &task)?;
            enqueue(tx, &task)
        })
        .await
    }

    async fn submit_keyed(
        &self,
        task: &TaskRecord,
        queue_limit: u64,
        key: &IdempotencyKey,
    ) -> Result<Submitted, StoreError> {
        let (task, key) = (task.clone(), key.clone());
        self.write(move |tx, _| {
            let now = now_s();
            let mut keys = tx.open_table(IDEMPOTENCY)?;
            let used = keys
                .get(key.key.as_str())?
                .map(|v| decode::<KeyUse>(v.value()))
                .transpose()?;
            if let Some(used) = used.filter(|u| u.expires_at > now) {
                return Ok(Submitted::Existing {
                    id: used.id,
                    fingerprint: used.fingerprint,
                });
            }
            let depth = tx.open_table(QUEUE)?.len()?;
            if depth >= queue_limit {
                return Err(StoreError::QueueFull { limit: queue_limit });
            }
            let record = KeyUse {
                id: task.id,
                fingerprint: key.fingerprint.clone(),
                expires_at: now + key.ttl_s,
            };
            keys.insert(key.key.as_str(), encode(&record).as_slice())?;
            drop(keys);
            save(tx, &task)?;
            enqueue(tx, &task)?;
            Ok(Submitted::New)
        })
        .await
    }

    async fn submit_batch(
        &self,
        items: &[BatchItem],
        queue_limit: u64,
    ) -> Result<Vec<Submitted>, StoreError> {
        let items = items.to_vec();
        self.write(move |tx, _| {
            let now = now_s();
            let mut answers = Vec::with_capacity(items.len());
            {
                let keys = tx.open_table(IDEMPOTENCY)?;
                for item in &items {
                    let used = match &item.key {
                        Some(key) => keys
                            .get(key.key.as_str())?
                            .map(|v| decode::<KeyUse>(v.value()))
                            .transpose()?
                            .filter(|u| u.expires_at > now),
                        None => None,
                    };
                    answers.push(match used {
                        Some(used) => Submitted::Existing {
                            id: used.id,
                            fingerprint: used.fingerprint,
                        },
                        None => Submitted::New,
                    });
                }
            }
            if items.iter().zip(&answers).any(|(i, a)| i.reused(a)) {
                return Ok(answers);
            }
            let new = answers.iter().filter(|a| **a == Submitted::New).count() as u64;
            let depth = tx.open_table(QUEUE)?.len()?;
            if new > 0 && depth + new > queue_limit {
                return Err(StoreError::QueueFull { limit: queue_limit });
            }
            for (item, _) in items
                .iter()
                .zip(&answers)
                .filter(|(_, a)| **a == Submitted::New)
            {
                if let Some(key) = &item.key {
                    let record = KeyUse {
                        id: item.task.id,
                        fingerprint: key.fingerprint.clone(),
                        expires_at: now + key.ttl_s,
                    };
                    tx.open_table(IDEMPOTENCY)?
                        .insert(key.key.as_str(), encode(&record).as_slice())?;
                }
                save(tx, &item.task)?;
                enqueue(tx, &item.task)?;
            }
            Ok(answers)
        })
        .await
    }

    async fn keyed(&self, key: &str) -> Result<Option<(Uuid, String)>, StoreError> {
        let key = key.to_string();
        self.read(move |tx, _| {
            let used = tx
                .open_table(IDEMPOTENCY)?
                .get(key.as_str())?
                .map(|v| decode::<KeyUse>(v.value()))
                .transpose()?;
            Ok(used
                .filter(|u| u.expires_at > now_s())
                .map(|u| (u.id, u.fingerprint)))
        })
        .await
    }

    async fn get(&self, id: Uuid) -> Result<Lookup, StoreError> {
        self.read(move |tx, _| {
            let key = id.to_string();
            match read_task(tx, &key)? {
                Some(task) => Ok(found_unless_expired(task).map(Box::new)),
                None if tx.open_table(EXPIRED)?.get(key.as_str())?.is_some() => Ok(Lookup::Expired),
                None => Ok(Lookup::Missing),
            }
        })
        .await
    }

    async fn cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        self.write(move |tx, settings| {
            let key = id.to_string();
            let Some(task) = load(tx, &key)? else {
                let expired = tx.open_table(EXPIRED)?.get(key.as_str())?.is_some();
                return Ok(if expired {
                    CancelOutcome::Expired
                } else {
                    CancelOutcome::Missing
                });
            };
            match task.cancelled(now_s(), settings) {
                Cancel::Answer(outcome) => Ok(outcome),
                Cancel::Revoke(ended) => {
                    unqueue(tx, &key)?;
                    save_ended(tx, &ended)?;
                    Ok(CancelOutcome::Revoked)
                }
                Cancel::Flag(flagged, outcome) => {
                    save(tx, &flagged)?;
                    Ok(outcome)
                }
            }
        })
        .await
    }

    async fn purge(&self) -> Result<u64, StoreError> {
        self.write(|tx, settings| {
            let mut ids = Vec::new();
            for entry in tx.open_table(QUEUE)?.iter()? {
                ids.push(entry?.1.value().to_string());
            }
            for entry in tx.open_table(DELAYED)?.iter()? {
                ids.push(entry?.1.value().to_string());
            }
            let mut purged = 0;
            for id in ids {
                unqueue(tx, &id)?;
                if let Some(ended) = load(tx, &id)?.and_then(|t| t.purged(settings)) {
                    save_ended(tx, &ended)?;
                    purged += 1;
                }
            }
            Ok(purged)
        })
        .await
    }

    async fn list(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        let filter = filter.clone();
        self.read(move |tx, _| {
            let now = now_s();
            let mut out = Vec::new();
            for entry in tx.open_table(TASKS)?.iter()? {
                let task = compact::record_from(entry?.1.value())?;
                if !task.expired_at(now) && task.matches(&filter) {
                    out.push(task);
                }
            }
            out.sort_by(|a, b| b.submitted_at.total_cmp(&a.submitted_at));
            out.truncate(filter.limit);
            Ok(out)
        })
        .await
    }

    async fn model(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(move |tx, _| {
            let key = id.to_string();
            if read_task(tx, &key)?.is_none_or(|t| t.expired_at(now_s())) {
                return Ok(None);
            }
            Ok(tx
                .open_table(MODELS)?
                .get(key.as_str())?
                .map(|v| compact::model_from(v.value().to_vec()))
                .transpose()?)
        })
        .await
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        self.read(|tx, _| Ok(tx.open_table(QUEUE)?.len()?)).await
    }

    async fn queue_depths(&self) -> Result<QueueDepths, StoreError> {
        self.read(|tx, _| {
            let mut depths = QueueDepths::default();
            for entry in tx.open_table(QUEUE)?.iter()? {
                let (key, _) = entry?;
                let (class, inverted, _) = key.value();
                let class = (class as usize).min(depths.len() - 1);
                depths[class][9 - inverted.min(9) as usize] += 1;
            }
            Ok(depths)
        })
        .await
    }

    /// Removes expired tasks and idempotency keys among the next `SWEEP_BATCH` records of each
    /// table (from the first again once it reached the last). A record that does not decode
    /// is passed over with a warning: it must not stop the cleanup of every other.
    async fn sweep(&self) -> Result<u64, StoreError> {
        let (tasks_from, keys_from) = self.sweep_from.lock().expect("sweep lock").clone();
        let (swept, next) = self
            .write(move |tx, settings| {
                let now = now_s();
                let (gone, tasks_next) = {
                    let tasks = tx.open_table(TASKS)?;
                    sweep_batch(&tasks, tasks_from, compact::record_from, |task| {
                        task.expired_at(now)
                    })?
                };
                let (mut tasks, mut models, mut expired, mut checkpoints) = (
                    tx.open_table(TASKS)?,
                    tx.open_table(MODELS)?,
                    tx.open_table(EXPIRED)?,
                    tx.open_table(CHECKPOINTS)?,
                );
                for id in &gone {
                    tasks.remove(id.as_str())?;
                    models.remove(id.as_str())?;
                    checkpoints.remove(id.as_str())?;
                    forget_events(tx, id)?;
                    expired.insert(id.as_str(), now + settings.expired_memory_s)?;
                }
                expired.retain(|_, forget_at| forget_at > now)?;
                let mut keys = tx.open_table(IDEMPOTENCY)?;
                let (stale, keys_next) = sweep_batch(&keys, keys_from, decode::<KeyUse>, |key| {
                    key.expires_at <= now
                })?;
                for k in stale {
                    keys.remove(k.as_str())?;
                }
                drop((tasks, models, expired, checkpoints, keys));
                sweep_datasets(tx, settings, now)?;
                sweep_cached(tx, now)?;
                Ok((gone.len() as u64, (tasks_next, keys_next)))
            })
            .await?;
        *self.sweep_from.lock().expect("sweep lock") = next;
        Ok(swept)
    }
}
