//! The [`TaskQueue`] role of the embedded store: claims, and the changes of a running
//! attempt, each fenced by [`EmbeddedStore::change_running`].

use redb::ReadableTable;

use super::*;
use crate::training::device_kind::DeviceSpec;

impl EmbeddedStore {
    /// `claim`, or with `work` `claim_work`.
    async fn claim_doing(
        &self,
        trainer: &str,
        device: DeviceSpec,
        work: Option<Work>,
    ) -> Result<Option<Claimed>, StoreError> {
        let trainer = trainer.to_string();
        self.write(move |tx, settings| {
            let mut queue = tx.open_table(QUEUE)?;
            // The head of each queue this trainer may take from; the best of them runs next.
            let mut best: Option<(QueueKey, String)> = None;
            for class in [DeviceClass::Any, device.class()] {
                let c = class_index(class);
                if let Some(entry) = queue.range((c, 0, 0)..=(c, u8::MAX, u64::MAX))?.next() {
                    let (key, id) = entry?;
                    let key = key.value();
                    if best
                        .as_ref()
                        .is_none_or(|(b, _)| (key.1, key.2) < (b.1, b.2))
                    {
                        best = Some((key, id.value().to_string()));
                    }
                }
            }
            let Some((key, id)) = best else {
                return Ok(None);
            };
            let task = load(tx, &id)?
                .ok_or_else(|| StoreError::Corrupt(format!("queued task {id} has no record")))?;
            if work.as_ref().is_some_and(|work| !work.done_by(&task)) {
                return Ok(None);
            }
            queue.remove(key)?;
            drop(queue);
            tx.open_table(QUEUED)?.remove(id.as_str())?;
            let task = task.claimed(&trainer, settings);
            save(tx, &task)?;
            Ok(Some(Claimed { task, stored: None }))
        })
        .await
    }

    /// Changes running task `id` with `change` if `attempt` still runs it; else answers
    /// `fenced` and changes nothing.
    async fn change_running<T: Send + 'static>(
        &self,
        id: Uuid,
        attempt: u32,
        fenced: T,
        change: impl FnOnce(&WriteTransaction, TaskRecord, &StoreSettings) -> Result<T, StoreError>
        + Send
        + 'static,
    ) -> Result<T, StoreError> {
        self.write(move |tx, settings| match load_running(tx, id, attempt)? {
            Some(task) => change(tx, task, settings),
            None => Ok(fenced),
        })
        .await
    }
}

impl TaskQueue for EmbeddedStore {
    async fn claim(
        &self,
        trainer: &str,
        device: DeviceSpec,
    ) -> Result<Option<Claimed>, StoreError> {
        self.claim_doing(trainer, device, None).await
    }

    async fn claim_work(
        &self,
        trainer: &str,
        device: DeviceSpec,
        work: &Work,
    ) -> Result<Option<Claimed>, StoreError> {
        self.claim_doing(trainer, device, Some(work.clone())).await
    }

    async fn progress(
        &self,
        id: Uuid,
        attempt: u32,
        progress: &TaskProgress,
    ) -> Result<bool, StoreError> {
        let progress = progress.clone();
        self.change_running(id, attempt, false, move |tx, task, settings| {
            save(tx, &task.progressed(&progress, settings))?;
            Ok(true)
        })
        .await
    }

    async fn finish(&self, id: Uuid, attempt: u32, finish: Finish) -> Result<bool, StoreError> {
        self.change_running(id, attempt, false, move |tx, task, settings| {
            let (task, model) = task.finished(finish, settings);
            if let Some(model) = model {
                tx.open_table(MODELS)?.insert(
                    id.to_string().as_str(),
                    compact::model_bytes(model).as_slice(),
                )?;
            }
            save_ended(tx, &task)?;
            Ok(true)
        })
        .await
    }

    async fn requeue(
        &self,
        id: Uuid,
        attempt: u32,
        error: TaskError,
        delay_s: f64,
    ) -> Result<bool, StoreError> {
        self.change_running(id, attempt, false, move |tx, task, _| {
            let task = task.requeued(attempt, error, delay_s);
            save(tx, &task)?;
            match task.retry_at {
                Some(at) => delay(tx, &task, at)?,
                None => enqueue(tx, &task)?,
            }
            Ok(true)
        })
        .await
    }

    async fn promote(&self) -> Result<u64, StoreError> {
        let now_ms = (now_s() * 1000.0) as u64;
        let due = self
            .read(move |tx, _| {
                let mut due = Vec::new();
                for entry in tx.open_table(DELAYED)?.range(..=(now_ms, u64::MAX))? {
                    due.push(entry?.1.value().to_string());
                }
                Ok(due)
            })
            .await?;
        if due.is_empty() {
            return Ok(0);
        }
        self.write(move |tx, _| {
            let mut moved = 0;
            for id in due {
                let Some(dkey) = tx
                    .open_table(DELAYED_AT)?
                    .remove(id.as_str())?
                    .map(|v| v.value())
                else {
                    continue;
                };
                tx.open_table(DELAYED)?.remove(dkey)?;
                if let Some(task) = load(tx, &id)? {
                    enqueue(tx, &task)?;
                    moved += 1;
                }
            }
            Ok(moved)
        })
        .await
    }

    async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.read(|tx, _| {
            let mut out = Vec::new();
            for entry in tx.open_table(TASKS)?.iter()? {
                let task = compact::record_from(entry?.1.value())?;
                if task.state.is_running() {
                    out.push(task.lease());
                }
            }
            Ok(out)
        })
        .await
    }

    async fn renew(&self, id: Uuid, attempt: u32) -> Result<Renewal, StoreError> {
        self.change_running(id, attempt, Renewal::Lost, |tx, task, settings| {
            let cancel = task.cancel_requested;
            save(tx, &task.renewed(settings))?;
            Ok(Renewal::Held { cancel })
        })
        .await
    }
}
