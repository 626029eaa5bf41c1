//! A store wrapper that times every operation and counts its failures
//! (`trainyard_store_operation_duration_seconds`, `trainyard_store_errors_total`).

use std::time::Instant;

use uuid::Uuid;

use super::*;
use crate::telemetry;
use crate::training::device_kind::DeviceSpec;

/// `inner`, with every operation measured under the label `store = name`.
pub struct Instrumented<S> {
    inner: S,
    name: &'static str,
}

impl<S> Instrumented<S> {
    pub fn new(inner: S, name: &'static str) -> Self {
        Instrumented { inner, name }
    }
}

impl<S: Store> Instrumented<S> {
    async fn timed<T>(
        &self,
        op: &'static str,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = work.await;
        telemetry::store_operation(self.name, op, started.elapsed(), result.is_err());
        result
    }

    /// As `timed`, for submissions: a full queue is an answer, not a store failure.
    async fn timed_submit<T>(
        &self,
        op: &'static str,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = work.await;
        let failed = matches!(
            result,
            Err(StoreError::Unavailable(_) | StoreError::Corrupt(_))
        );
        telemetry::store_operation(self.name, op, started.elapsed(), failed);
        result
    }
}

impl<S: Store> Tasks for Instrumented<S> {
    async fn submit(&self, task: &TaskRecord, queue_limit: u64) -> Result<(), StoreError> {
        self.timed_submit("submit", self.inner.submit(task, queue_limit))
            .await
    }
    async fn submit_keyed(
        &self,
        task: &TaskRecord,
        queue_limit: u64,
        key: &IdempotencyKey,
    ) -> Result<Submitted, StoreError> {
        self.timed_submit(
            "submit_keyed",
            self.inner.submit_keyed(task, queue_limit, key),
        )
        .await
    }
    async fn submit_batch(
        &self,
        items: &[BatchItem],
        queue_limit: u64,
    ) -> Result<Vec<Submitted>, StoreError> {
        self.timed_submit("submit_batch", self.inner.submit_batch(items, queue_limit))
            .await
    }
    async fn keyed(&self, key: &str) -> Result<Option<(Uuid, String)>, StoreError> {
        self.timed("keyed", self.inner.keyed(key)).await
    }
    async fn get(&self, id: Uuid) -> Result<Lookup, StoreError> {
        self.timed("get", self.inner.get(id)).await
    }
    async fn status(&self, id: Uuid) -> Result<Lookup<TaskStatus>, StoreError> {
        self.timed("status", self.inner.status(id)).await
    }
    async fn cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        self.timed("cancel", self.inner.cancel(id)).await
    }
    async fn purge(&self) -> Result<u64, StoreError> {
        self.timed("purge", self.inner.purge()).await
    }
    async fn list(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        self.timed("list", self.inner.list(filter)).await
    }
    async fn model(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        self.timed("model", self.inner.model(id)).await
    }
    async fn queue_depth(&self) -> Result<u64, StoreError> {
        self.timed("queue_depth", self.inner.queue_depth()).await
    }
    async fn queue_depths(&self) -> Result<QueueDepths, StoreError> {
        self.timed("queue_depths", self.inner.queue_depths()).await
    }
    async fn sweep(&self) -> Result<u64, StoreError> {
        self.timed("sweep", self.inner.sweep()).await
    }
}

impl<S: Store> TaskQueue for Instrumented<S> {
    async fn claim(
        &self,
        trainer: &str,
        device: DeviceSpec,
    ) -> Result<Option<Claimed>, StoreError> {
        self.timed("claim", self.inner.claim(trainer, device)).await
    }
    async fn claim_work(
        &self,
        trainer: &str,
        device: DeviceSpec,
        work: &Work,
    ) -> Result<Option<Claimed>, StoreError> {
        self.timed("claim", self.inner.claim_work(trainer, device, work))
            .await
    }
    async fn progress(
        &self,
        id: Uuid,
        attempt: u32,
        progress: &TaskProgress,
    ) -> Result<bool, StoreError> {
        self.timed("progress", self.inner.progress(id, attempt, progress))
            .await
    }
    async fn finish(&self, id: Uuid, attempt: u32, finish: Finish) -> Result<bool, StoreError> {
        self.timed("finish", self.inner.finish(id, attempt, finish))
            .await
    }
    async fn finish_from(
        &self,
        stored: &CasToken,
        id: Uuid,
        attempt: u32,
        finish: Finish,
    ) -> Result<bool, StoreError> {
        self.timed(
            "finish",
            self.inner.finish_from(stored, id, attempt, finish),
        )
        .await
    }
    async fn claim_and_finish(
        &self,
        trainer: &str,
        device: DeviceSpec,
        ended: Ending<'_>,
    ) -> ClaimedAndFinished {
        let started = Instant::now();
        let done = self.inner.claim_and_finish(trainer, device, ended).await;
        let failed = done.next.is_err() || done.finished.is_err();
        telemetry::store_operation(self.name, "claim_and_finish", started.elapsed(), failed);
        done
    }
    async fn requeue(
        &self,
        id: Uuid,
        attempt: u32,
        error: TaskError,
        delay_s: f64,
    ) -> Result<bool, StoreError> {
        self.timed("requeue", self.inner.requeue(id, attempt, error, delay_s))
            .await
    }
    async fn promote(&self) -> Result<u64, StoreError> {
        self.timed("promote", self.inner.promote()).await
    }
    async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.timed("leases", self.inner.leases()).await
    }
    async fn renew(&self, id: Uuid, attempt: u32) -> Result<Renewal, StoreError> {
        self.timed("renew", self.inner.renew(id, attempt)).await
    }
}

impl<S: Store> ClusterState for Instrumented<S> {
    async fn lead(&self, node: &str, ttl_s: f64) -> Result<bool, StoreError> {
        self.timed("lead", self.inner.lead(node, ttl_s)).await
    }
    async fn leader(&self) -> Result<Option<String>, StoreError> {
        self.timed("leader", self.inner.leader()).await
    }
    async fn announce(&self, node: &NodeInfo) -> Result<(), StoreError> {
        self.timed("announce", self.inner.announce(node)).await
    }
    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        self.timed("nodes", self.inner.nodes()).await
    }
    async fn set_draining(&self, name: &str, draining: bool) -> Result<(), StoreError> {
        self.timed("set_draining", self.inner.set_draining(name, draining))
            .await
    }
    async fn draining(&self) -> Result<Vec<String>, StoreError> {
        self.timed("draining", self.inner.draining()).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", self.inner.ping()).await
    }
}

impl<S: Store> Schedules for Instrumented<S> {
    async fn create_schedule(
        &self,
        schedule: &Schedule,
        max: u64,
    ) -> Result<ScheduleCreated, StoreError> {
        self.timed("create_schedule", self.inner.create_schedule(schedule, max))
            .await
    }
    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.timed("schedules", self.inner.schedules()).await
    }
    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        self.timed("delete_schedule", self.inner.delete_schedule(name))
            .await
    }
    async fn pause_schedule(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        self.timed("pause_schedule", self.inner.pause_schedule(name, paused))
            .await
    }
    async fn advance_schedule(
        &self,
        name: &str,
        through: i64,
        fired: Option<Uuid>,
        due_times: u64,
    ) -> Result<bool, StoreError> {
        self.timed(
            "advance_schedule",
            self.inner.advance_schedule(name, through, fired, due_times),
        )
        .await
    }
}

impl<S: Store> Datasets for Instrumented<S> {
    async fn put_dataset(&self, info: &DatasetInfo, csv: &[u8]) -> Result<DatasetInfo, StoreError> {
        self.timed_submit("put_dataset", self.inner.put_dataset(info, csv))
            .await
    }
    async fn dataset(&self, id: Uuid) -> Result<Option<StoredDataset>, StoreError> {
        self.timed("dataset", self.inner.dataset(id)).await
    }
    async fn datasets(&self) -> Result<Vec<DatasetInfo>, StoreError> {
        self.timed("datasets", self.inner.datasets()).await
    }
    async fn delete_dataset(&self, id: Uuid) -> Result<DatasetDeleted, StoreError> {
        self.timed("delete_dataset", self.inner.delete_dataset(id))
            .await
    }
}

impl<S: Store> Callbacks for Instrumented<S> {
    async fn due_callbacks(&self, limit: usize, hold_s: f64) -> Result<Vec<Uuid>, StoreError> {
        self.timed("due_callbacks", self.inner.due_callbacks(limit, hold_s))
            .await
    }
    async fn callback_tried(
        &self,
        id: Uuid,
        error: Option<String>,
        retry_in_s: Option<f64>,
    ) -> Result<(), StoreError> {
        self.timed(
            "callback_tried",
            self.inner.callback_tried(id, error, retry_in_s),
        )
        .await
    }
}

impl<S: Store> Checkpoints for Instrumented<S> {
    async fn put_checkpoint(
        &self,
        id: Uuid,
        attempt: u32,
        checkpoint: &crate::training::Checkpoint,
    ) -> Result<bool, StoreError> {
        self.timed(
            "put_checkpoint",
            self.inner.put_checkpoint(id, attempt, checkpoint),
        )
        .await
    }
    async fn resume_from(
        &self,
        id: Uuid,
        attempt: u32,
    ) -> Result<Option<crate::training::Checkpoint>, StoreError> {
        self.timed("resume_from", self.inner.resume_from(id, attempt))
            .await
    }
    async fn checkpoint(
        &self,
        id: Uuid,
    ) -> Result<Option<crate::training::Checkpoint>, StoreError> {
        self.timed("checkpoint", self.inner.checkpoint(id)).await
    }
    async fn drop_checkpoint(&self, id: Uuid) -> Result<(), StoreError> {
        self.timed("drop_checkpoint", self.inner.drop_checkpoint(id))
            .await
    }
}

impl<S: Store> EventLog for Instrumented<S> {
    async fn task_events(&self, id: Uuid, after: EventId) -> Result<Vec<Event>, StoreError> {
        self.timed("task_events", self.inner.task_events(id, after))
            .await
    }
    async fn events_since(&self, after: EventId, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.timed("events_since", self.inner.events_since(after, limit))
            .await
    }
    async fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.subscribe().await
    }
}

impl<S: Store> Registry for Instrumented<S> {
    async fn register_model(
        &self,
        name: &str,
        version: &ModelVersion,
        artifact: &[u8],
    ) -> Result<ModelVersion, StoreError> {
        self.timed(
            "register_model",
            self.inner.register_model(name, version, artifact),
        )
        .await
    }
    async fn registered_models(&self) -> Result<Vec<RegisteredModel>, StoreError> {
        self.timed("registered_models", self.inner.registered_models())
            .await
    }
    async fn registered_model(&self, name: &str) -> Result<Option<RegisteredModel>, StoreError> {
        self.timed("registered_model", self.inner.registered_model(name))
            .await
    }
    async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u32,
        expect: AliasExpect,
    ) -> Result<AliasSet, StoreError> {
        self.timed(
            "set_alias",
            self.inner.set_alias(name, alias, version, expect),
        )
        .await
    }
    async fn delete_model_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<VersionDeleted, StoreError> {
        self.timed(
            "delete_model_version",
            self.inner.delete_model_version(name, version),
        )
        .await
    }
    async fn version_artifact(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.timed(
            "version_artifact",
            self.inner.version_artifact(name, version),
        )
        .await
    }
}

impl<S: Store> ResultCache for Instrumented<S> {
    async fn remember_result(&self, key: &str, id: Uuid) -> Result<(), StoreError> {
        self.timed("remember_result", self.inner.remember_result(key, id))
            .await
    }
    async fn cached_result(&self, key: &str) -> Result<Option<Uuid>, StoreError> {
        self.timed("cached_result", self.inner.cached_result(key))
            .await
    }
    async fn submit_finished(
        &self,
        task: &TaskRecord,
        model: &[u8],
    ) -> Result<TaskRecord, StoreError> {
        self.timed("submit_finished", self.inner.submit_finished(task, model))
            .await
    }
}

impl<S: Store> Sweeps for Instrumented<S> {
    async fn create_sweep(
        &self,
        sweep: &Sweep,
        max: u64,
        event: &str,
    ) -> Result<SweepCreated, StoreError> {
        self.timed("create_sweep", self.inner.create_sweep(sweep, max, event))
            .await
    }
    async fn get_sweep(&self, id: Uuid) -> Result<Option<Sweep>, StoreError> {
        self.timed("get_sweep", self.inner.get_sweep(id)).await
    }
    async fn sweeps(&self) -> Result<Vec<Sweep>, StoreError> {
        self.timed("sweeps", self.inner.sweeps()).await
    }
    async fn running_sweeps(&self) -> Result<Vec<Sweep>, StoreError> {
        self.timed("running_sweeps", self.inner.running_sweeps())
            .await
    }
    async fn update_sweep(&self, sweep: &Sweep, events: &[String]) -> Result<bool, StoreError> {
        self.timed("update_sweep", self.inner.update_sweep(sweep, events))
            .await
    }
    async fn delete_sweep(&self, id: Uuid) -> Result<bool, StoreError> {
        self.timed("delete_sweep", self.inner.delete_sweep(id))
            .await
    }
    async fn report_rung(
        &self,
        id: Uuid,
        trial: u32,
        step: u64,
        value: f64,
        rule: RungRule,
    ) -> Result<bool, StoreError> {
        self.timed(
            "report_rung",
            self.inner.report_rung(id, trial, step, value, rule),
        )
        .await
    }
    async fn rungs(&self, id: Uuid) -> Result<Vec<RungResult>, StoreError> {
        self.timed("rungs", self.inner.rungs(id)).await
    }
    async fn sweep_events(
        &self,
        id: Uuid,
        after: u64,
        max: usize,
    ) -> Result<Vec<SweepEvent>, StoreError> {
        self.timed("sweep_events", self.inner.sweep_events(id, after, max))
            .await
    }
}
