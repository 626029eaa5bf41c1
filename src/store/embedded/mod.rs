//! The embedded store: one redb file, for a single node. Every operation is one redb
//! transaction, run on tokio's blocking pool so no async worker waits on the disk. The tables
//! and the transaction helpers are here, what a transaction does to them in `tables.rs`, and
//! each role in its file: `tasks.rs`, `queue.rs`, `datasets.rs`, `schedules.rs`, `cluster.rs`
//! (with the callbacks), `event_log.rs`, `checkpoints.rs`, `registry.rs` (the registry and the result cache), `sweeps.rs`. The decisions are the shared transitions'.

mod checkpoints;
mod cluster;
mod datasets;
mod event_log;
mod queue;
mod registry;
mod schedules;
mod sweeps;
mod tables;
mod tasks;

use std::path::Path;
use std::sync::{Arc, Mutex};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::training::device_kind::DeviceClass;

use super::*;
use registry::{CACHED, REGISTRY, REGISTRY_ARTIFACTS, REGISTRY_NEXT, sweep_cached};
use sweeps::{SWEEP_EVENTS, SWEEP_RUNGS, SWEEPS};
use tables::*;

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
/// Running task id -> its one checkpoint: the attempt that saved it and the step (both
/// little-endian, u32 and u64), then the training's state. Removed when the task ends.
const CHECKPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoints");
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
        tx.open_table(CHECKPOINTS)?;
        tx.open_table(REGISTRY)?;
        tx.open_table(REGISTRY_NEXT)?;
        tx.open_table(REGISTRY_ARTIFACTS)?;
        tx.open_table(CACHED)?;
        tx.open_table(SWEEPS)?;
        tx.open_table(SWEEP_RUNGS)?;
        tx.open_table(SWEEP_EVENTS)?;
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
