//! What a transaction of the embedded store does to its tables: load and save a record (and
//! log its event), queue and unqueue, park a retry, queue a callback.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::*;

/// Records that do not decode are logged and passed over.
/// `read` decodes a record as stored.
pub(super) fn sweep_batch<T>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    from: Option<String>,
    read: impl Fn(&[u8]) -> Result<T, StoreError>,
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
        match read(v.value()) {
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

pub(super) fn load(tx: &WriteTransaction, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    let tasks = tx.open_table(TASKS)?;
    let found = tasks.get(id)?;
    found.map(|v| compact::record_from(v.value())).transpose()
}

/// Writes a task record and logs the event of the change, if clients see one.
pub(super) fn save(tx: &WriteTransaction, task: &TaskRecord) -> Result<(), StoreError> {
    let id = task.id.to_string();
    let old: Option<TaskRecord> = tx
        .open_table(TASKS)?
        .insert(id.as_str(), compact::record_bytes(task).as_slice())?
        .map(|v| compact::record_from(v.value()))
        .transpose()?;
    if let Some(pending) = events::Pending::of(old.as_ref(), task) {
        log_event(tx, &id, pending)?;
    }
    Ok(())
}

thread_local! {
    /// Events logged by the write transaction running on this thread, sent to subscribers
    /// once it commits (see `EmbeddedStore::write`).
    pub(super) static LOGGED: std::cell::RefCell<Vec<Event>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub(super) fn log_event(
    tx: &WriteTransaction,
    id: &str,
    pending: events::Pending,
) -> Result<(), StoreError> {
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
pub(super) fn sweep_datasets(
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
pub(super) fn forget_events(tx: &WriteTransaction, id: &str) -> Result<(), StoreError> {
    tx.open_table(EVENTS)?
        .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
    Ok(())
}

pub(super) fn read_event(
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

pub(super) fn next_seq(tx: &WriteTransaction) -> Result<u64, StoreError> {
    let mut meta = tx.open_table(META)?;
    let seq = meta.get("seq")?.map_or(0, |v| v.value()) + 1;
    meta.insert("seq", seq)?;
    Ok(seq)
}

/// Parks a pending task until `retry_at` (Unix seconds).
pub(super) fn delay(
    tx: &WriteTransaction,
    task: &TaskRecord,
    retry_at: f64,
) -> Result<(), StoreError> {
    let key = ((retry_at * 1000.0).ceil() as u64, next_seq(tx)?);
    let id = task.id.to_string();
    tx.open_table(DELAYED)?.insert(key, id.as_str())?;
    tx.open_table(DELAYED_AT)?.insert(id.as_str(), key)?;
    Ok(())
}

/// (Re)schedules the callback of task `id` for `at` (Unix seconds), or drops it with `None`.
pub(super) fn schedule_callback(
    tx: &WriteTransaction,
    id: &str,
    at: Option<f64>,
) -> Result<(), StoreError> {
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

/// Saves an ended task, queueing its callback if it has one, and drops its checkpoint.
pub(super) fn save_ended(tx: &WriteTransaction, task: &TaskRecord) -> Result<(), StoreError> {
    save(tx, task)?;
    tx.open_table(CHECKPOINTS)?
        .remove(task.id.to_string().as_str())?;
    if task.callback_due() {
        schedule_callback(tx, &task.id.to_string(), Some(now_s()))?;
    }
    Ok(())
}

/// Takes a task out of the queue or the delayed set, wherever it waits.
pub(super) fn unqueue(tx: &WriteTransaction, id: &str) -> Result<(), StoreError> {
    if let Some(qkey) = tx.open_table(QUEUED)?.remove(id)?.map(|v| v.value()) {
        tx.open_table(QUEUE)?.remove(qkey)?;
    }
    if let Some(dkey) = tx.open_table(DELAYED_AT)?.remove(id)?.map(|v| v.value()) {
        tx.open_table(DELAYED)?.remove(dkey)?;
    }
    Ok(())
}

pub(super) fn enqueue(tx: &WriteTransaction, task: &TaskRecord) -> Result<(), StoreError> {
    let seq = next_seq(tx)?;
    let key = (class_index(task.device), 9 - task.queue_priority(), seq);
    let id = task.id.to_string();
    tx.open_table(QUEUE)?.insert(key, id.as_str())?;
    tx.open_table(QUEUED)?.insert(id.as_str(), key)?;
    Ok(())
}

/// The running task `id` if `attempt` is the one running it.
pub(super) fn load_running(
    tx: &WriteTransaction,
    id: Uuid,
    attempt: u32,
) -> Result<Option<TaskRecord>, StoreError> {
    Ok(load(tx, &id.to_string())?.filter(|t| t.runs_attempt(attempt)))
}

pub(super) fn read_task(tx: &ReadTransaction, key: &str) -> Result<Option<TaskRecord>, StoreError> {
    let found = tx.open_table(TASKS)?.get(key)?;
    found.map(|v| compact::record_from(v.value())).transpose()
}
