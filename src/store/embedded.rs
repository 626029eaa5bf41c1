//! The embedded store: one redb file, for a single node. Every operation is one redb
//! transaction, run on tokio's blocking pool so no async worker waits on the disk.

use std::path::Path;
use std::sync::{Arc, Mutex};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use uuid::Uuid;

use crate::training::{DeviceClass, DeviceSpec};

use super::*;

/// Task id -> JSON `TaskRecord`.
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// (device class, 9 - priority, sequence) -> task id: within a class, the first entry is the
/// next task to run.
const QUEUE: TableDefinition<QueueKey, &str> = TableDefinition::new("queue");
/// Task id -> its key in `QUEUE`, to take it out when cancelled.
const QUEUED: TableDefinition<&str, QueueKey> = TableDefinition::new("queued");

type QueueKey = (u8, u8, u64);

fn class_index(class: DeviceClass) -> u8 {
    DeviceClass::ALL
        .iter()
        .position(|c| *c == class)
        .expect("every class is listed") as u8
}
/// Task id -> model artifact bytes.
const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models");
/// Data set id -> JSON `DatasetInfo`.
const DATASET_INFO: TableDefinition<&str, &[u8]> = TableDefinition::new("dataset_info");
/// Data set id -> CSV bytes.
const DATASET_CSV: TableDefinition<&str, &[u8]> = TableDefinition::new("dataset_csv");
/// (when it may run, in Unix milliseconds; sequence) -> id of a task waiting out its retry
/// backoff.
const DELAYED: TableDefinition<(u64, u64), &str> = TableDefinition::new("delayed");
/// Task id -> its key in `DELAYED`.
const DELAYED_AT: TableDefinition<&str, (u64, u64)> = TableDefinition::new("delayed_at");
/// (when to try, Unix milliseconds; sequence) -> id of an ended task whose callback is due.
const CALLBACKS: TableDefinition<(u64, u64), &str> = TableDefinition::new("callbacks");
/// Task id -> its key in `CALLBACKS`.
const CALLBACK_AT: TableDefinition<&str, (u64, u64)> = TableDefinition::new("callback_at");

/// Idempotency key -> JSON `KeyUse`.
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");

#[derive(Serialize, Deserialize)]
struct KeyUse {
    id: Uuid,
    fingerprint: String,
    expires_at: f64,
}

/// Schedule name -> JSON `Schedule`.
const SCHEDULES: TableDefinition<&str, &[u8]> = TableDefinition::new("schedules");

/// (task id, event sequence) -> the event as `events::Pending::encode` writes it.
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
/// Event sequence -> task id: every task's events in order, the latest `GLOBAL_EVENTS`.
const EVENT_LOG: TableDefinition<u64, &str> = TableDefinition::new("event_log");
/// How many of the latest events `EVENT_LOG` keeps (for `/events` resume).
const GLOBAL_EVENTS: u64 = 10_000;

/// Expired task id -> when to forget it (Unix seconds).
const EXPIRED: TableDefinition<&str, f64> = TableDefinition::new("expired");
/// Counters; `seq` orders the queue.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    settings: StoreSettings,
    /// The node this store serves alone: it always leads, and its announcement lives here.
    node: Arc<Mutex<Option<NodeInfo>>>,
    /// Nodes marked as draining (this one, or none).
    draining: Arc<Mutex<Vec<String>>>,
    /// Live events, sent once their transaction commits.
    events: tokio::sync::broadcast::Sender<Event>,
    /// Where the next sweep starts in the tasks and the idempotency keys: the last key the
    /// sweep before checked (None: from the first).
    sweep_from: Arc<Mutex<(Option<String>, Option<String>)>>,
}

/// Most records one sweep decodes in each table; the next sweep goes on after them.
const SWEEP_BATCH: usize = 1000;

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Unavailable(e.to_string())
            }
        }
    )*};
}
redb_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("store records serialize")
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path, settings: StoreSettings) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(TASKS)?;
        tx.open_table(QUEUE)?;
        tx.open_table(QUEUED)?;
        tx.open_table(MODELS)?;
        tx.open_table(DATASET_INFO)?;
        tx.open_table(DATASET_CSV)?;
        tx.open_table(EXPIRED)?;
        tx.open_table(META)?;
        tx.open_table(DELAYED)?;
        tx.open_table(DELAYED_AT)?;
        tx.open_table(IDEMPOTENCY)?;
        tx.open_table(CALLBACKS)?;
        tx.open_table(CALLBACK_AT)?;
        tx.open_table(SCHEDULES)?;
        tx.open_table(EVENTS)?;
        tx.open_table(EVENT_LOG)?;
        tx.commit()?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            settings,
            node: Arc::new(Mutex::new(None)),
            draining: Arc::new(Mutex::new(Vec::new())),
            events: tokio::sync::broadcast::channel(events::LIVE_BUFFER).0,
            sweep_from: Arc::default(),
        })
    }

    fn announced(&self) -> Option<NodeInfo> {
        self.node.lock().expect("node lock").clone()
    }

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

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction, &StoreSettings) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (db, settings, live) = (self.db.clone(), self.settings, self.events.clone());
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write()?;
            let out = f(&tx, &settings);
            let logged = LOGGED.with(|logged| logged.take());
            let out = out?;
            tx.commit()?;
            for event in logged {
                // No subscriber is fine.
                let _ = live.send(event);
            }
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }

    /// Applies `change` to schedule `name`; false if there is none.
    async fn change_schedule(
        &self,
        name: &str,
        change: impl FnOnce(&mut Schedule) + Send + 'static,
    ) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.write(move |tx, _| {
            let mut table = tx.open_table(SCHEDULES)?;
            let Some(mut schedule) = table
                .get(name.as_str())?
                .map(|v| decode::<Schedule>(v.value()))
                .transpose()?
            else {
                return Ok(false);
            };
            change(&mut schedule);
            table.insert(name.as_str(), encode(&schedule).as_slice())?;
            Ok(true)
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ReadTransaction, &StoreSettings) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (db, settings) = (self.db.clone(), self.settings);
        tokio::task::spawn_blocking(move || f(&db.begin_read()?, &settings))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

/// The keys of the records of `table` that `done` says are over, among the `SWEEP_BATCH`
/// after `from`; and where the next batch starts (None once the last record was checked).
/// Records that do not decode are logged and passed over.
fn sweep_batch<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    from: Option<String>,
    done: impl Fn(&T) -> bool,
) -> Result<(Vec<String>, Option<String>), StoreError> {
    use std::ops::Bound;
    let range = match &from {
        Some(after) => table.range::<&str>((Bound::Excluded(after.as_str()), Bound::Unbounded))?,
        None => table.range::<&str>(..)?,
    };
    let (mut over, mut last, mut checked) = (Vec::new(), None, 0);
    for entry in range.take(SWEEP_BATCH) {
        let (k, v) = entry?;
        let key = k.value().to_string();
        match decode::<T>(v.value()) {
            Ok(record) if done(&record) => over.push(key.clone()),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "a stored record does not decode; the sweep passes it over")
            }
        }
        last = Some(key);
        checked += 1;
    }
    Ok((over, last.filter(|_| checked == SWEEP_BATCH)))
}

fn load(tx: &WriteTransaction, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    let tasks = tx.open_table(TASKS)?;
    let found = tasks.get(id)?;
    found.map(|v| decode(v.value())).transpose()
}

/// Writes a task record and logs the event of the change, if clients see one.
fn save(tx: &WriteTransaction, task: &TaskRecord) -> Result<(), StoreError> {
    let id = task.id.to_string();
    let old: Option<TaskRecord> = tx
        .open_table(TASKS)?
        .insert(id.as_str(), encode(task).as_slice())?
        .map(|v| decode(v.value()))
        .transpose()?;
    if let Some(pending) = events::Pending::of(old.as_ref(), task) {
        log_event(tx, &id, pending)?;
    }
    Ok(())
}

thread_local! {
    /// Events logged by the write transaction running on this thread, sent to subscribers
    /// once it commits (see `EmbeddedStore::write`).
    static LOGGED: std::cell::RefCell<Vec<Event>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn log_event(tx: &WriteTransaction, id: &str, pending: events::Pending) -> Result<(), StoreError> {
    let mut meta = tx.open_table(META)?;
    let seq = meta.get("event_seq")?.map_or(0, |v| v.value()) + 1;
    meta.insert("event_seq", seq)?;
    tx.open_table(EVENTS)?
        .insert((id, seq), pending.encode().as_bytes())?;
    let mut log = tx.open_table(EVENT_LOG)?;
    log.insert(seq, id)?;
    if seq > GLOBAL_EVENTS {
        log.remove(seq - GLOBAL_EVENTS)?;
    }
    let event = pending.with_id(EventId {
        major: seq,
        minor: 0,
    });
    LOGGED.with(|logged| logged.borrow_mut().push(event));
    Ok(())
}

/// Removes the data sets that expired by now, but for those tasks yet to end use: those are
/// renewed.
fn sweep_datasets(
    tx: &WriteTransaction,
    settings: &StoreSettings,
    now: f64,
) -> Result<(), StoreError> {
    let mut infos = tx.open_table(DATASET_INFO)?;
    let mut over = Vec::new();
    for entry in infos.iter()? {
        let (_, value) = entry?;
        if let Ok(info) = decode::<DatasetInfo>(value.value())
            && info.expired_at(now)
        {
            over.push(info);
        }
    }
    if over.is_empty() {
        return Ok(());
    }
    let mut used = std::collections::HashSet::new();
    for entry in tx.open_table(TASKS)?.iter()? {
        used.extend(dataset_in_use(entry?.1.value()));
    }
    let mut csvs = tx.open_table(DATASET_CSV)?;
    for mut info in over {
        let key = info.id.to_string();
        if used.contains(&info.id) {
            info.expires_at = settings.dataset_expires_at(now);
            infos.insert(key.as_str(), encode(&info).as_slice())?;
        } else {
            infos.remove(key.as_str())?;
            csvs.remove(key.as_str())?;
            tracing::info!(dataset = %info.id, name = %info.name, "data set expired");
        }
    }
    Ok(())
}

/// Drops the events of task `id` (it expired).
fn forget_events(tx: &WriteTransaction, id: &str) -> Result<(), StoreError> {
    tx.open_table(EVENTS)?
        .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
    Ok(())
}

fn read_event(
    events: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    id: &str,
    seq: u64,
) -> Result<Option<Event>, StoreError> {
    let Some(logged) = events.get((id, seq))? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(logged.value())
        .map_err(|e| StoreError::Corrupt(format!("event {seq}: {e}")))?;
    let id = EventId {
        major: seq,
        minor: 0,
    };
    Event::decode(id, text)
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt(format!("event {seq} does not parse")))
}

fn next_seq(tx: &WriteTransaction) -> Result<u64, StoreError> {
    let mut meta = tx.open_table(META)?;
    let seq = meta.get("seq")?.map_or(0, |v| v.value()) + 1;
    meta.insert("seq", seq)?;
    Ok(seq)
}

/// Parks a pending task until `retry_at` (Unix seconds).
fn delay(tx: &WriteTransaction, task: &TaskRecord, retry_at: f64) -> Result<(), StoreError> {
    let key = ((retry_at * 1000.0).ceil() as u64, next_seq(tx)?);
    let id = task.id.to_string();
    tx.open_table(DELAYED)?.insert(key, id.as_str())?;
    tx.open_table(DELAYED_AT)?.insert(id.as_str(), key)?;
    Ok(())
}

/// (Re)schedules the callback of task `id` for `at` (Unix seconds), or drops it with `None`.
fn schedule_callback(tx: &WriteTransaction, id: &str, at: Option<f64>) -> Result<(), StoreError> {
    if let Some(old) = tx.open_table(CALLBACK_AT)?.remove(id)?.map(|v| v.value()) {
        tx.open_table(CALLBACKS)?.remove(old)?;
    }
    if let Some(at) = at {
        let key = ((at * 1000.0) as u64, next_seq(tx)?);
        tx.open_table(CALLBACKS)?.insert(key, id)?;
        tx.open_table(CALLBACK_AT)?.insert(id, key)?;
    }
    Ok(())
}

/// Saves an ended task, queueing its callback if it has one.
fn save_ended(tx: &WriteTransaction, task: &TaskRecord) -> Result<(), StoreError> {
    save(tx, task)?;
    if task.callback_url.is_some() {
        schedule_callback(tx, &task.id.to_string(), Some(now_s()))?;
    }
    Ok(())
}

/// Takes a task out of the queue or the delayed set, wherever it waits.
fn unqueue(tx: &WriteTransaction, id: &str) -> Result<(), StoreError> {
    if let Some(qkey) = tx.open_table(QUEUED)?.remove(id)?.map(|v| v.value()) {
        tx.open_table(QUEUE)?.remove(qkey)?;
    }
    if let Some(dkey) = tx.open_table(DELAYED_AT)?.remove(id)?.map(|v| v.value()) {
        tx.open_table(DELAYED)?.remove(dkey)?;
    }
    Ok(())
}

fn enqueue(tx: &WriteTransaction, task: &TaskRecord) -> Result<(), StoreError> {
    let seq = next_seq(tx)?;
    let key = (class_index(task.device), 9 - task.priority.min(9), seq);
    let id = task.id.to_string();
    tx.open_table(QUEUE)?.insert(key, id.as_str())?;
    tx.open_table(QUEUED)?.insert(id.as_str(), key)?;
    Ok(())
}

/// The running task `id` if `attempt` is the one running it.
fn load_running(
    tx: &WriteTransaction,
    id: Uuid,
    attempt: u32,
) -> Result<Option<TaskRecord>, StoreError> {
    Ok(load(tx, &id.to_string())?.filter(|t| t.runs_attempt(attempt)))
}

fn read_task(tx: &ReadTransaction, key: &str) -> Result<Option<TaskRecord>, StoreError> {
    let found = tx.open_table(TASKS)?.get(key)?;
    found.map(|v| decode(v.value())).transpose()
}

impl Store for EmbeddedStore {
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
        self.write(move |tx, settings| {
            let Some(task) = load_running(tx, id, attempt)? else {
                return Ok(false);
            };
            save(tx, &task.progressed(&progress, settings))?;
            Ok(true)
        })
        .await
    }

    async fn finish(&self, id: Uuid, attempt: u32, finish: Finish) -> Result<bool, StoreError> {
        self.write(move |tx, settings| {
            let Some(task) = load_running(tx, id, attempt)? else {
                return Ok(false);
            };
            let (task, model) = task.finished(finish, settings);
            if let Some(model) = model {
                tx.open_table(MODELS)?
                    .insert(id.to_string().as_str(), model.as_slice())?;
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
        self.write(move |tx, _| {
            let Some(task) = load_running(tx, id, attempt)? else {
                return Ok(false);
            };
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
            if task.expired_at(now_s()) {
                return Ok(CancelOutcome::Expired);
            }
            match task.state {
                TaskState::Pending => {
                    unqueue(tx, &key)?;
                    save_ended(tx, &task.revoked_pending(settings))?;
                    Ok(CancelOutcome::Revoked)
                }
                TaskState::Started | TaskState::Progress => {
                    let lease = task.lease();
                    save(tx, &task.cancel_flagged())?;
                    Ok(CancelOutcome::Running {
                        trainer: lease.trainer,
                        attempt: lease.attempt,
                    })
                }
                state => Ok(CancelOutcome::AlreadyFinished(state)),
            }
        })
        .await
    }

    async fn list(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        let filter = filter.clone();
        self.read(move |tx, _| {
            let now = now_s();
            let mut out = Vec::new();
            for entry in tx.open_table(TASKS)?.iter()? {
                let task: TaskRecord = decode(entry?.1.value())?;
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
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn put_dataset(&self, info: &DatasetInfo, csv: &[u8]) -> Result<DatasetInfo, StoreError> {
        let (mut info, csv) = (info.clone(), csv.to_vec());
        self.write(move |tx, settings| {
            let mut infos = tx.open_table(DATASET_INFO)?;
            let limit = settings.dataset_max_total_bytes;
            if limit > 0 {
                let mut total = 0u64;
                for entry in infos.iter()? {
                    total += decode::<DatasetInfo>(entry?.1.value())?.bytes;
                }
                let bytes = csv.len() as u64;
                if total + bytes > limit {
                    return Err(StoreError::DatasetQuota {
                        total,
                        bytes,
                        limit,
                    });
                }
            }
            info.bytes = csv.len() as u64;
            info.expires_at = settings.dataset_expires_at(now_s());
            let key = info.id.to_string();
            infos.insert(key.as_str(), encode(&info).as_slice())?;
            tx.open_table(DATASET_CSV)?
                .insert(key.as_str(), csv.as_slice())?;
            Ok(info)
        })
        .await
    }

    async fn dataset(&self, id: Uuid) -> Result<Option<StoredDataset>, StoreError> {
        let found = self
            .read(move |tx, _| {
                let key = id.to_string();
                let Some(info) = tx.open_table(DATASET_INFO)?.get(key.as_str())? else {
                    return Ok(None);
                };
                let info: DatasetInfo = decode(info.value())?;
                let csv = tx
                    .open_table(DATASET_CSV)?
                    .get(key.as_str())?
                    .map(|v| Arc::from(v.value()));
                let csv =
                    csv.ok_or_else(|| StoreError::Corrupt(format!("data set {id} has no csv")))?;
                Ok(Some((info, csv)))
            })
            .await?;
        let Some((info, csv)) = found else {
            return Ok(None);
        };
        if !self.settings.dataset_renews(info.expires_at, now_s()) {
            return Ok(Some((info, csv)));
        }
        // A use renews it (one past its expiry too, until the sweep removed it), unless it
        // went meanwhile.
        let renewed = self
            .write(move |tx, settings| {
                let key = id.to_string();
                let mut infos = tx.open_table(DATASET_INFO)?;
                let Some(stored) = infos
                    .get(key.as_str())?
                    .map(|v| decode::<DatasetInfo>(v.value()))
                else {
                    return Ok(None);
                };
                let mut info = stored?;
                info.expires_at = settings.dataset_expires_at(now_s());
                infos.insert(key.as_str(), encode(&info).as_slice())?;
                Ok(Some(info))
            })
            .await?;
        Ok(renewed.map(|info| (info, csv)))
    }

    async fn datasets(&self) -> Result<Vec<DatasetInfo>, StoreError> {
        self.read(|tx, _| {
            let mut out = Vec::new();
            for entry in tx.open_table(DATASET_INFO)?.iter()? {
                out.push(decode::<DatasetInfo>(entry?.1.value())?);
            }
            out.sort_by(|a, b| b.uploaded_at.total_cmp(&a.uploaded_at));
            Ok(out)
        })
        .await
    }

    async fn delete_dataset(&self, id: Uuid) -> Result<DatasetDeleted, StoreError> {
        self.write(move |tx, _| {
            let key = id.to_string();
            if tx.open_table(DATASET_INFO)?.get(key.as_str())?.is_none() {
                return Ok(DatasetDeleted::Missing);
            }
            for entry in tx.open_table(TASKS)?.iter()? {
                if let Some(task) = uses_dataset(entry?.1.value(), id) {
                    return Ok(DatasetDeleted::InUse(task));
                }
            }
            tx.open_table(DATASET_INFO)?.remove(key.as_str())?;
            tx.open_table(DATASET_CSV)?.remove(key.as_str())?;
            Ok(DatasetDeleted::Deleted)
        })
        .await
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        self.read(|tx, _| Ok(tx.open_table(QUEUE)?.len()?)).await
    }

    async fn queue_depths(&self) -> Result<[u64; 10], StoreError> {
        self.read(|tx, _| {
            let mut depths = [0u64; 10];
            for entry in tx.open_table(QUEUE)?.iter()? {
                let (key, _) = entry?;
                let (_, inverted, _) = key.value();
                depths[9 - inverted.min(9) as usize] += 1;
            }
            Ok(depths)
        })
        .await
    }

    async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.read(|tx, _| {
            let mut out = Vec::new();
            for entry in tx.open_table(TASKS)?.iter()? {
                let task: TaskRecord = decode(entry?.1.value())?;
                if task.state.is_running() {
                    out.push(task.lease());
                }
            }
            Ok(out)
        })
        .await
    }

    async fn renew(&self, id: Uuid, attempt: u32) -> Result<Renewal, StoreError> {
        self.write(move |tx, settings| {
            let Some(task) = load_running(tx, id, attempt)? else {
                return Ok(Renewal::Lost);
            };
            let cancel = task.cancel_requested;
            save(tx, &task.renewed(settings))?;
            Ok(Renewal::Held { cancel })
        })
        .await
    }

    /// One node, so it leads.
    async fn lead(&self, _node: &str, _ttl_s: f64) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn leader(&self) -> Result<Option<String>, StoreError> {
        Ok(self.announced().map(|n| n.name))
    }

    async fn announce(&self, node: &NodeInfo) -> Result<(), StoreError> {
        *self.node.lock().expect("node lock") = Some(node.clone());
        Ok(())
    }

    async fn due_callbacks(&self, limit: usize, hold_s: f64) -> Result<Vec<Uuid>, StoreError> {
        self.write(move |tx, _| {
            let now = now_s();
            let mut due = Vec::new();
            for entry in tx
                .open_table(CALLBACKS)?
                .range(..=((now * 1000.0) as u64, u64::MAX))?
                .take(limit)
            {
                due.push(entry?.1.value().to_string());
            }
            for id in &due {
                schedule_callback(tx, id, Some(now + hold_s))?;
            }
            Ok(due.iter().filter_map(|i| Uuid::parse_str(i).ok()).collect())
        })
        .await
    }

    async fn callback_tried(
        &self,
        id: Uuid,
        error: Option<String>,
        retry_in_s: Option<f64>,
    ) -> Result<(), StoreError> {
        self.write(move |tx, _| {
            let key = id.to_string();
            let Some(task) = load(tx, &key)? else {
                return schedule_callback(tx, &key, None);
            };
            save(tx, &task.callback_noted(error, retry_in_s.is_some()))?;
            schedule_callback(tx, &key, retry_in_s.map(|w| now_s() + w))
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
                if let Some(task) = load(tx, &id)?.filter(|t| t.state == TaskState::Pending) {
                    save_ended(tx, &task.purged(settings))?;
                    purged += 1;
                }
            }
            Ok(purged)
        })
        .await
    }

    async fn set_draining(&self, name: &str, draining: bool) -> Result<(), StoreError> {
        let mut names = self.draining.lock().expect("draining lock");
        names.retain(|n| n != name);
        if draining {
            names.push(name.to_string());
        }
        Ok(())
    }

    async fn draining(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.draining.lock().expect("draining lock").clone())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        Ok(self.announced().into_iter().collect())
    }

    async fn task_events(&self, id: Uuid, after: EventId) -> Result<Vec<Event>, StoreError> {
        let id = id.to_string();
        self.read(move |tx, _| {
            let events = tx.open_table(EVENTS)?;
            let mut out = Vec::new();
            let first = after.major.saturating_add(1);
            for entry in events.range((id.as_str(), first)..=(id.as_str(), u64::MAX))? {
                let seq = entry?.0.value().1;
                out.extend(read_event(&events, &id, seq)?);
            }
            Ok(out)
        })
        .await
    }

    async fn events_since(&self, after: EventId, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.read(move |tx, _| {
            let (log, events) = (tx.open_table(EVENT_LOG)?, tx.open_table(EVENTS)?);
            let mut out = Vec::new();
            for entry in log
                .range(after.major.saturating_add(1)..)?
                .rev()
                .take(limit)
            {
                let (seq, id) = entry?;
                out.extend(read_event(&events, id.value(), seq.value())?);
            }
            out.reverse();
            Ok(out)
        })
        .await
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn create_schedule(
        &self,
        schedule: &Schedule,
        max: u64,
    ) -> Result<ScheduleCreated, StoreError> {
        let schedule = schedule.clone();
        self.write(move |tx, _| {
            let mut table = tx.open_table(SCHEDULES)?;
            if table.get(schedule.name.as_str())?.is_some() {
                return Ok(ScheduleCreated::Exists);
            }
            if table.len()? >= max {
                return Ok(ScheduleCreated::Full);
            }
            table.insert(schedule.name.as_str(), encode(&schedule).as_slice())?;
            Ok(ScheduleCreated::Created)
        })
        .await
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.read(|tx, _| {
            let mut out = Vec::new();
            for entry in tx.open_table(SCHEDULES)?.iter()? {
                out.push(decode::<Schedule>(entry?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.write(move |tx, _| Ok(tx.open_table(SCHEDULES)?.remove(name.as_str())?.is_some()))
            .await
    }

    async fn pause_schedule(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        self.change_schedule(name, move |s| s.paused_at(paused, now_s()))
            .await
    }

    async fn advance_schedule(
        &self,
        name: &str,
        through: i64,
        fired: Option<Uuid>,
        due_times: u64,
    ) -> Result<bool, StoreError> {
        self.change_schedule(name, move |s| s.advanced(through, fired, due_times))
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
                    sweep_batch(&tasks, tasks_from, |task: &TaskRecord| task.expired_at(now))?
                };
                let (mut tasks, mut models, mut expired) = (
                    tx.open_table(TASKS)?,
                    tx.open_table(MODELS)?,
                    tx.open_table(EXPIRED)?,
                );
                for id in &gone {
                    tasks.remove(id.as_str())?;
                    models.remove(id.as_str())?;
                    forget_events(tx, id)?;
                    expired.insert(id.as_str(), now + settings.expired_memory_s)?;
                }
                expired.retain(|_, forget_at| forget_at > now)?;
                let mut keys = tx.open_table(IDEMPOTENCY)?;
                let (stale, keys_next) =
                    sweep_batch(&keys, keys_from, |key: &KeyUse| key.expires_at <= now)?;
                for k in stale {
                    keys.remove(k.as_str())?;
                }
                drop((tasks, models, expired, keys));
                sweep_datasets(tx, settings, now)?;
                Ok((gone.len() as u64, (tasks_next, keys_next)))
            })
            .await?;
        *self.sweep_from.lock().expect("sweep lock") = next;
        Ok(swept)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|tx, _| {
            tx.open_table(META)?;
            Ok(())
        })
        .await
    }
}
