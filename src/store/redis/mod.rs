//! The Redis store, for clusters. Laid out as apalis-redis lays out its queries: one file per
//! operation (or group of closely related ones), each with its Lua script beside it; each
//! change that touches several keys is one script. A change to a task record is a
//! compare-and-set (`cas.rs`): the record is read, the next record computed in Rust by the
//! shared transitions, and the script writes it only if the record is still the one read; on a
//! conflict the change is retried. Keys are named only in `../keys.rs`.
//!
//! - `submit.rs`: submissions (one, or a batch: `submit_batch.lua`) and idempotency keys; `tasks.rs`: reads, the queue's depth,
//!   and the [`Tasks`] role; `cancel.rs`: cancel and purge;
//! - `first.rs`: claims of the first task (`claim_first.lua`, over `json.lua`); `claim.rs`:
//!   claims of a chosen task and the claim window (`head.lua`, `peek.lua`, `claim_task.lua`);
//!   `run_on.rs`: a claim and a finish in one round trip; `finish.rs`: the end of an attempt;
//!   `bundle.rs`: a node's claims and ends written together (`bundle.lua`), each call kept
//!   readable for it by `call.rs`;
//!   `update.rs`: progress, lease renewals, callback tries; `requeue.rs`: requeues and
//!   retries; `queue.rs`: leases and the [`TaskQueue`] role;
//! - `cluster.rs`: the leader lease, nodes, drain, the store's clock and durability checks;
//!   `checkpoint.rs`: checkpoints, fenced by the running hash (`checkpoint.lua`);
//!   `registry.rs` (registered models, and the result cache), `schedules.rs`, `datasets.rs`,
//!   `callbacks.rs`, `event_log.rs` (the event log and its
//!   follower; `events.lua` is the preamble of every script that changes a task), `sweep.rs`.

mod bundle;
mod call;
mod callbacks;
mod cancel;
mod cas;
mod checkpoint;
mod claim;
mod cluster;
mod datasets;
mod event_log;
mod finish;
mod first;
mod queue;
mod registry;
mod requeue;
mod run_on;
mod schedules;
mod submit;
mod sweep;
mod sweeps;
mod tasks;
mod update;

use ::redis::Script;
use ::redis::streams::StreamRangeReply;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;

use ::redis::AsyncCommands;

use super::keys::Keys;
use super::link::{Link, RedisTls, ReplicaAck, Target};
use super::*;
use crate::cache::BoundedCache;
use call::{Call, Kind, Runs, ScriptArgs};
use claim::Heads;

/// Most index entries checked per sweep (and ids per step of a purge or a promotion). Each
/// sweep goes on where the last one stopped, so tasks that stay queued for long hold up no
/// cleanup behind them.
const SWEEP_BATCH: isize = 1000;

/// Every script, loaded once per store.
struct Scripts {
    submit: Script,
    submit_batch: Script,
    peek: Script,
    leases: Script,
    update: Script,
    bundle: Script,
    requeue: Script,
    lead: Script,
    promote: Script,
    hold: Script,
    schedule: Script,
    dataset_put: Script,
    dataset_touch: Script,
    dataset_delete: Script,
    expired: Script,
    checkpoint: Script,
    register: Script,
    alias: Script,
    version_delete: Script,
    cached: Script,
    sweeps: Script,
}

impl Scripts {
    fn load() -> Scripts {
        Scripts {
            submit: Script::new(&with_events(include_str!("submit.lua"))),
            submit_batch: Script::new(&with_events(include_str!("submit_batch.lua"))),
            peek: Script::new(&with_head(include_str!("peek.lua"))),
            leases: Script::new(include_str!("leases.lua")),
            update: Script::new(&with_events(include_str!("update.lua"))),
            bundle: Script::new(&with_events(&with_tombstone(&with_head(&format!(
                "{}{}{}{}{}",
                include_str!("json.lua"),
                include_str!("claim_first.lua"),
                include_str!("claim_task.lua"),
                include_str!("end_task.lua"),
                include_str!("bundle.lua")
            ))))),
            requeue: Script::new(&with_events(include_str!("requeue.lua"))),
            lead: Script::new(include_str!("lead.lua")),
            promote: Script::new(include_str!("promote.lua")),
            hold: Script::new(include_str!("hold.lua")),
            schedule: Script::new(include_str!("schedule.lua")),
            dataset_put: Script::new(include_str!("dataset_put.lua")),
            dataset_touch: Script::new(include_str!("dataset_touch.lua")),
            dataset_delete: Script::new(include_str!("dataset_delete.lua")),
            expired: Script::new(include_str!("expired.lua")),
            checkpoint: Script::new(include_str!("checkpoint.lua")),
            register: Script::new(include_str!("register.lua")),
            alias: Script::new(include_str!("alias.lua")),
            version_delete: Script::new(include_str!("version_delete.lua")),
            cached: Script::new(&with_events(&with_tombstone(include_str!("cached.lua")))),
            sweeps: Script::new(include_str!("sweeps.lua")),
        }
    }
}

#[derive(Clone)]
pub struct RedisStore {
    link: Link,
    keys: Keys,
    settings: StoreSettings,
    scripts: Arc<Scripts>,
    /// Writes this node's claims and ends in bundles (`bundle.rs`).
    bundler: bundle::Bundler,
    /// Live events, read from the stream of every event by `events::follow`.
    live: tokio::sync::broadcast::Sender<Event>,
    /// Whether the follower reads the stream (only while `live` has subscribers).
    following: Arc<event_log::Following>,
    /// Uploaded data sets this node has read: they never change once stored.
    datasets: Arc<BoundedCache<StoredDataset>>,
    /// The tasks the next claims of this node try, and the ones its claims try now.
    heads: Arc<Mutex<Heads>>,
    /// The status of finished tasks this node read, and when: a finished task's record no
    /// longer changes what its status shows, and its expiry is in the status.
    finished: Arc<BoundedCache<(TaskStatus, Instant)>>,
    /// Rank in the listing index where the next sweep starts.
    sweep_from: Arc<std::sync::atomic::AtomicIsize>,
}

/// Most finished tasks' statuses a node keeps (a few hundred bytes each).
const FINISHED_KEPT: usize = 50_000;

/// Data sets this node has read, up to this many bytes of CSV.
const DATASET_CACHE_BYTES: usize = 64 << 20;

impl From<::redis::RedisError> for StoreError {
    fn from(e: ::redis::RedisError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &str) -> Result<T, StoreError> {
    serde_json::from_str(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("store records serialize")
}

/// A script that changes a task record, with the event preamble (`events.lua`).
fn with_events(script: &str) -> String {
    format!("{}{script}", include_str!("events.lua"))
}

/// A script that ends a task, with `bury` (`tombstone.lua`).
fn with_tombstone(script: &str) -> String {
    format!("{}{script}", include_str!("tombstone.lua"))
}

/// A script that looks for the next task to claim, with `head` (`head.lua`).
fn with_head(script: &str) -> String {
    format!("{}{script}", include_str!("head.lua"))
}

impl RedisStore {
    /// Connects to `url`: `redis://HOST:PORT/DB`, or `redis+sentinel://HOST:PORT,…/SERVICE/DB`
    /// for the primary that Redis Sentinel names (followed after a failover); keys start with
    /// `prefix`. The connection reconnects by itself when Redis comes back.
    pub async fn connect(
        url: &str,
        prefix: &str,
        settings: StoreSettings,
    ) -> Result<Self, StoreError> {
        Self::connect_tls(url, prefix, settings, &RedisTls::default()).await
    }

    /// [`connect`](Self::connect), with the CA and client certificate of a `rediss://` url.
    pub async fn connect_tls(
        url: &str,
        prefix: &str,
        settings: StoreSettings,
        tls: &RedisTls,
    ) -> Result<Self, StoreError> {
        let target = Target::parse(url).map_err(StoreError::Unavailable)?;
        let ack = ReplicaAck {
            replicas: settings.min_replicas_ack,
            timeout: Duration::from_secs_f64(settings.replica_ack_timeout_s.max(0.001)),
        };
        let mut link = Link::open(&target, Some(ack), tls).await?;
        let keys = Keys::new(prefix);
        let live = tokio::sync::broadcast::channel(events::LIVE_BUFFER).0;
        cluster::check_durability(&mut link, settings.min_replicas_ack).await?;
        cluster::sync_clock(&mut link).await?;
        tokio::spawn(cluster::keep_clock(link.downgrade()));
        let following = Arc::new(event_log::Following::new());
        tokio::spawn(event_log::follow(
            link.downgrade(),
            keys.events(),
            live.clone(),
            following.clone(),
        ));
        let scripts = Arc::new(Scripts::load());
        let bundler = bundle::Bundler::start(link.clone(), scripts.clone(), keys.events());
        Ok(RedisStore {
            bundler,
            link,
            keys,
            live,
            following,
            datasets: Arc::new(BoundedCache::new(DATASET_CACHE_BYTES)),
            heads: Arc::default(),
            finished: Arc::new(BoundedCache::new(FINISHED_KEPT)),
            sweep_from: Arc::default(),
            settings,
            scripts,
        })
    }

    /// Task `id`'s record as stored (`compact.rs`: JSON, or deflated once the task ended).
    async fn raw(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.link.clone().get(self.keys.task(id)).await?)
    }

    /// Task `id`'s record, decoded as `T` (the whole record, or part of it). Without a record,
    /// it is expired if its tombstone is left, else never known.
    async fn lookup<T: serde::de::DeserializeOwned + Expires>(
        &self,
        id: Uuid,
    ) -> Result<Lookup<T>, StoreError> {
        if let Some(raw) = self.raw(id).await? {
            // Redis expires keys on whole seconds; the record's own expiry is exact.
            return Ok(found_unless_expired(compact::record_as(&raw)?));
        }
        self.gone(id).await
    }

    /// What a task without a record is: expired if its tombstone is left, else never known.
    async fn gone<T>(&self, id: Uuid) -> Result<Lookup<T>, StoreError> {
        let expired: bool = match self.keys.expired_ids(id) {
            Some((key, tail)) => {
                let found: i64 = self
                    .scripts
                    .expired
                    .key(key)
                    .arg(&tail[..])
                    .invoke_async(&mut self.link.clone())
                    .await?;
                found == 1
            }
            None => self.link.clone().exists(self.keys.tombstone(id)).await?,
        };
        Ok(if expired {
            Lookup::Expired
        } else {
            Lookup::Missing
        })
    }
}
