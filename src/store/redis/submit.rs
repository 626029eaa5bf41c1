//! Submissions (`submit.lua`): the record stored and queued, with its idempotency key if it
//! has one, unless the queue is full.

use super::*;
use crate::training::device_kind::DeviceClass;

impl RedisStore {
    pub(super) async fn submit_script(
        &self,
        task: &TaskRecord,
        queue_limit: u64,
        key: Option<&IdempotencyKey>,
    ) -> Result<Submitted, StoreError> {
        let k = &self.keys;
        let (idem_key, idem_value, ttl) = match key {
            Some(key) => (
                k.idempotency(&key.key),
                format!("{} {}", task.id, key.fingerprint),
                key.ttl_s.ceil().max(1.0) as u64,
            ),
            None => (k.idempotency(""), String::new(), 0),
        };
        let mut invocation = self.scripts.submit.prepare_invoke();
        invocation
            .key(k.task(task.id))
            .key(k.queue(task.device))
            .key(k.seq())
            .key(k.index())
            .key(idem_key)
            .key(k.queue(DeviceClass::Any))
            .key(k.queue(DeviceClass::Cpu))
            .key(k.queue(DeviceClass::Gpu))
            .arg(compact::record_bytes(task))
            .arg(task.queue_priority())
            .arg(task.submitted_at)
            .arg(queue_limit)
            .arg(task.id.to_string())
            .arg(idem_value)
            .arg(ttl);
        self.add_event(&mut invocation, None, task);
        let mut writer = self.link.writer();
        let answer: String = invocation.invoke_async(&mut writer).await?;
        if answer == "ok" {
            writer.replicated(|| format!("task {}", task.id)).await?;
            return Ok(Submitted::New);
        }
        if let Some(used) = answer.strip_prefix("used ") {
            let (id, fingerprint) = used.split_once(' ').unwrap_or((used, ""));
            let id = Uuid::parse_str(id)
                .map_err(|e| StoreError::Corrupt(format!("idempotency key holds {used:?}: {e}")))?;
            return Ok(Submitted::Existing {
                id,
                fingerprint: fingerprint.to_string(),
            });
        }
        Err(StoreError::QueueFull { limit: queue_limit })
    }

    /// [`Tasks::keyed`].
    pub(super) async fn key_use(&self, key: &str) -> Result<Option<(Uuid, String)>, StoreError> {
        let mut con = self.link.clone();
        let used: Option<String> = con.get(self.keys.idempotency(key)).await?;
        let Some(used) = used else { return Ok(None) };
        let (id, fingerprint) = used.split_once(' ').unwrap_or((&used, ""));
        let id = Uuid::parse_str(id)
            .map_err(|e| StoreError::Corrupt(format!("idempotency key holds {used:?}: {e}")))?;
        Ok(Some((id, fingerprint.to_string())))
    }
}

impl RedisStore {
    /// [`Tasks::submit_batch`]: every item in one call of `submit_batch.lua`.
    pub(super) async fn submit_batch_script(
        &self,
        items: &[BatchItem],
        queue_limit: u64,
    ) -> Result<Vec<Submitted>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.keys;
        let mut invocation = self.scripts.submit_batch.prepare_invoke();
        invocation.key(k.seq()).key(k.index());
        for class in DeviceClass::ALL {
            invocation.key(k.queue(class));
        }
        invocation.arg(queue_limit).arg(items.len());
        for item in items {
            let task = &item.task;
            let (idem_key, idem_value, ttl, fingerprint) = match &item.key {
                Some(key) => (
                    k.idempotency(&key.key),
                    format!("{} {}", task.id, key.fingerprint),
                    key.ttl_s.ceil().max(1.0) as u64,
                    key.fingerprint.as_str(),
                ),
                None => (k.idempotency(""), String::new(), 0, ""),
            };
            let class = DeviceClass::ALL
                .iter()
                .position(|c| *c == task.device)
                .unwrap_or(0)
                + 1;
            let event = events::Pending::of(None, task).map_or_else(String::new, |p| p.encode());
            invocation
                .key(k.task(task.id))
                .key(k.task_events(task.id))
                .key(idem_key)
                .arg(compact::record_bytes(task))
                .arg(task.queue_priority())
                .arg(task.submitted_at)
                .arg(task.id.to_string())
                .arg(class)
                .arg(idem_value)
                .arg(ttl)
                .arg(fingerprint)
                .arg(event);
        }
        // The preamble's own event: none (each item's is logged above).
        invocation
            .key(k.events())
            .key(k.task_events(items[0].task.id))
            .arg("")
            .arg("")
            .arg(event_log::EVENTS_KEPT);
        let mut writer = self.link.writer();
        let answer: Vec<String> = invocation.invoke_async(&mut writer).await?;
        let (status, held) = answer
            .split_first()
            .ok_or_else(|| StoreError::Corrupt("submit_batch.lua answered nothing".into()))?;
        if status == "full" {
            return Err(StoreError::QueueFull { limit: queue_limit });
        }
        if held.len() != items.len() {
            return Err(StoreError::Corrupt(format!(
                "submit_batch.lua answered {} items for {}",
                held.len(),
                items.len()
            )));
        }
        let mut answers = Vec::with_capacity(items.len());
        for used in held {
            if used.is_empty() {
                answers.push(Submitted::New);
                continue;
            }
            let (id, fingerprint) = used.split_once(' ').unwrap_or((used, ""));
            let id = Uuid::parse_str(id)
                .map_err(|e| StoreError::Corrupt(format!("idempotency key holds {used:?}: {e}")))?;
            answers.push(Submitted::Existing {
                id,
                fingerprint: fingerprint.to_string(),
            });
        }
        if status == "ok" && answers.contains(&Submitted::New) {
            writer
                .replicated(|| format!("a batch of {} tasks", items.len()))
                .await?;
        }
        Ok(answers)
    }
}
