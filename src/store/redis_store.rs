//! The Redis store, for clusters. Each change that touches several keys is one Lua script
//! (`lua/*.lua`). A change to a task record is a compare-and-set: the record is read, the next
//! record computed in Rust (the same transitions as every store), and the script writes it only
//! if the record is still the one read; on a conflict the change is retried.

use ::redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use ::redis::{AsyncCommands, Script};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::keys::Keys;
use super::link::{Link, RedisTls, ReplicaAck, Target, WeakLink};
use super::*;
use crate::cache::BoundedCache;
use crate::training::{DeviceClass, DeviceSpec};

/// Refuses a Redis whose `maxmemory-policy` evicts keys (it would drop queued tasks in
/// silence), and warns when neither an append-only file nor a replica keeps accepted tasks.
async fn check_durability(con: &mut Link, min_replicas_ack: usize) -> Result<(), StoreError> {
    let setting = async |con: &mut Link, name: &str| -> Result<String, StoreError> {
        let pair: Vec<String> = ::redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(con)
            .await?;
        Ok(pair.get(1).cloned().unwrap_or_default())
    };
    let policy = setting(con, "maxmemory-policy").await?;
    if policy != "noeviction" {
        return Err(StoreError::Unavailable(format!(
            "Redis evicts keys (maxmemory-policy {policy}), which would drop queued tasks in \
             silence: set maxmemory-policy noeviction (config/redis.conf does)"
        )));
    }
    let aof = setting(con, "appendonly").await?;
    let info: String = ::redis::cmd("INFO")
        .arg("replication")
        .query_async(con)
        .await?;
    let replicas = info
        .lines()
        .find_map(|l| l.strip_prefix("connected_slaves:"))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if replicas < min_replicas_ack as u32 {
        tracing::warn!(
            replicas,
            min_replicas_ack,
            "Redis has fewer replicas than store.min_replicas_ack: submissions and results are \
             refused until enough replicas connect"
        );
    }
    if aof != "yes" && replicas == 0 {
        tracing::warn!(
            "Redis keeps no append-only file and has no replica: a Redis restart loses every \
             accepted task (set appendonly yes, as config/redis.conf does)"
        );
    }
    Ok(())
}

/// How often the node measures again how far Redis's clock is from its own.
const CLOCK_SYNC_EVERY: Duration = Duration::from_secs(2);

/// Measures Redis's clock (`TIME`) against this host's, taking the middle of the round trip,
/// and makes it the clock of every time kept in the store (see [`now_s`]).
async fn sync_clock(con: &mut Link) -> Result<(), StoreError> {
    let before = local_now_s();
    let (secs, micros): (u64, u64) = ::redis::cmd("TIME").query_async(con).await?;
    let after = local_now_s();
    let redis = secs as f64 + micros as f64 / 1e6;
    set_clock_offset(redis - (before + after) / 2.0);
    Ok(())
}

/// Measures the store's clock again every `CLOCK_SYNC_EVERY`, while the store lives.
async fn keep_clock(link: WeakLink) {
    loop {
        tokio::time::sleep(CLOCK_SYNC_EVERY).await;
        let Some(mut link) = link.upgrade() else {
            return;
        };
        if let Err(e) = sync_clock(&mut link).await {
            tracing::debug!(error = %e, "cannot read the store's clock");
        }
    }
}

/// Most times a change is retried after losing a compare-and-set race.
const MAX_CAS_RETRIES: usize = 64;
/// Most index entries checked per sweep. Each sweep goes on where the last one stopped, so
/// tasks that stay queued for long hold up no cleanup behind them.
const SWEEP_BATCH: isize = 1000;

struct Scripts {
    submit: Script,
    claim: Script,
    peek: Script,
    leases: Script,
    update: Script,
    finish: Script,
    requeue: Script,
    lead: Script,
    promote: Script,
    hold: Script,
    schedule: Script,
    dataset_put: Script,
    dataset_touch: Script,
    dataset_delete: Script,
}

#[derive(Clone)]
pub struct RedisStore {
    link: Link,
    keys: Keys,
    settings: StoreSettings,
    scripts: Arc<Scripts>,
    /// Live events, read from the stream of every event by `follow_events`.
    live: tokio::sync::broadcast::Sender<Event>,
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
/// How long a finished task's status is answered without reading the store again. Its record
/// does not change; this bounds only what an outside deletion (an operator's FLUSHDB) leaves.
const FINISHED_FRESH: Duration = Duration::from_secs(5);

/// A task to claim, as `lua/head.lua` answers: its queue (1-based, of those asked about), its
/// id, and its record if it has one.
type Head = (usize, String, Option<String>);

/// How many of the first queued tasks a peek or a claim's answer lists (while more claims of
/// this node are under way than this, one more than them). A node's trainers claim at once,
/// each a different one of these tasks, rather than one after the other: a claim waits for its
/// round trip to Redis, and trainers waiting on each other's left the CPUs idle. A claim may
/// take one of the first N tasks while N claims of its node are under way (see `claim.lua`).
const CLAIM_WINDOW: usize = 4;

/// Per device class of trainer, the tasks the last claim from its queues saw first, to try
/// next; and the ids this node's claims try now, which no other claim of it tries.
#[derive(Default)]
struct Heads {
    next: HashMap<DeviceClass, VecDeque<Head>>,
    trying: HashSet<String>,
}

/// A task one claim of this node tries; others may try it again once this is dropped.
struct Trying {
    heads: Arc<Mutex<Heads>>,
    head: Head,
}

impl Drop for Trying {
    fn drop(&mut self) {
        self.heads
            .lock()
            .expect("heads lock")
            .trying
            .remove(&self.head.1);
    }
}

/// Why a queue head was not tried.
enum Untried {
    /// A queued id without a record: its queue and id.
    NoRecord(String, Uuid),
    /// A task not doing the work asked for.
    OtherWork,
}

/// A claim of a queue's head, ready to run.
struct ClaimTry<'s> {
    invocation: ::redis::ScriptInvocation<'s>,
    /// The record as claimed, and as it is stored.
    task: TaskRecord,
    stored: String,
}

/// How a claim try went.
enum ClaimAnswer {
    Taken(Box<Claimed>),
    /// The trainer's node is draining: it takes no work.
    Draining,
    /// The task was no longer queued, among the first, or unchanged: try the next one the
    /// script saw.
    Moved,
}

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

/// A script that changes a task record, with the event preamble (`lua/events.lua`).
fn with_events(script: &str) -> String {
    format!("{}{script}", include_str!("lua/events.lua"))
}

/// A script that looks for the next task to claim, with `head` (`lua/head.lua`).
fn with_head(script: &str) -> String {
    format!("{}{script}", include_str!("lua/head.lua"))
}

/// How many events the stream of every event keeps (for `/events` resume), about.
const EVENTS_KEPT: u64 = 10_000;

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
        check_durability(&mut link, settings.min_replicas_ack).await?;
        sync_clock(&mut link).await?;
        tokio::spawn(keep_clock(link.downgrade()));
        // The follower starts after the newest event logged before this returns, so every
        // event logged through this store reaches its subscribers.
        let newest: StreamRangeReply = link.xrevrange_count(keys.events(), "+", "-", 1).await?;
        let after = newest.ids.first().map_or("0-0".into(), |e| e.id.clone());
        tokio::spawn(follow_events(
            link.downgrade(),
            keys.events(),
            after,
            live.clone(),
        ));
        Ok(RedisStore {
            link,
            keys,
            live,
            datasets: Arc::new(BoundedCache::new(DATASET_CACHE_BYTES)),
            heads: Arc::default(),
            finished: Arc::new(BoundedCache::new(FINISHED_KEPT)),
            sweep_from: Arc::default(),
            settings,
            scripts: Arc::new(Scripts {
                submit: Script::new(&with_events(include_str!("lua/submit.lua"))),
                claim: Script::new(&with_events(&with_head(include_str!("lua/claim.lua")))),
                peek: Script::new(&with_head(include_str!("lua/peek.lua"))),
                leases: Script::new(include_str!("lua/leases.lua")),
                update: Script::new(&with_events(include_str!("lua/update.lua"))),
                finish: Script::new(&with_events(include_str!("lua/finish.lua"))),
                requeue: Script::new(&with_events(include_str!("lua/requeue.lua"))),
                lead: Script::new(include_str!("lua/lead.lua")),
                promote: Script::new(include_str!("lua/promote.lua")),
                hold: Script::new(include_str!("lua/hold.lua")),
                schedule: Script::new(include_str!("lua/schedule.lua")),
                dataset_put: Script::new(include_str!("lua/dataset_put.lua")),
                dataset_touch: Script::new(include_str!("lua/dataset_touch.lua")),
                dataset_delete: Script::new(include_str!("lua/dataset_delete.lua")),
            }),
        })
    }

    /// Calls `f` with the record of each task yet to end: queued, waiting to retry, or
    /// running. Reads them in pages (for a delete or a sweep of expired data sets, both rare).
    async fn each_unended_record(&self, mut f: impl FnMut(&str)) -> Result<(), StoreError> {
        let k = &self.keys;
        let mut con = self.link.clone();
        let mut ids: Vec<String> = Vec::new();
        for class in DeviceClass::ALL {
            let queued: Vec<String> = con.zrange(k.queue(class), 0, -1).await?;
            ids.extend(queued);
        }
        let delayed: Vec<String> = con.zrange(k.delayed(), 0, -1).await?;
        let running: Vec<String> = con.hkeys(k.running()).await?;
        ids.extend(delayed);
        ids.extend(running);
        for page in ids.chunks(500) {
            let keys: Vec<String> = page
                .iter()
                .filter_map(|i| Uuid::parse_str(i).ok())
                .map(|i| k.task(i))
                .collect();
            if keys.is_empty() {
                continue;
            }
            let records: Vec<Option<String>> = ::redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut con)
                .await?;
            for record in records.iter().flatten() {
                f(record);
            }
        }
        Ok(())
    }

    /// Removes data set `id` (with `expired_by`, only if it expired by then); true if it was
    /// there.
    async fn remove_dataset(&self, id: Uuid, expired_by: Option<f64>) -> Result<bool, StoreError> {
        let k = &self.keys;
        let removed: i64 = self
            .scripts
            .dataset_delete
            .key(k.datasets())
            .key(k.dataset_bytes())
            .key(k.dataset_expiry())
            .key(k.dataset_csv(id))
            .arg(id.to_string())
            .arg(expired_by.map_or(String::new(), |at| at.to_string()))
            .invoke_async(&mut self.link.clone())
            .await?;
        self.datasets.remove(id);
        Ok(removed > 0)
    }

    /// Removes the data sets that expired by now (a batch of them), but for those tasks yet
    /// to end use: those are renewed.
    async fn sweep_datasets(&self) -> Result<(), StoreError> {
        let k = &self.keys;
        let now = now_s();
        let over: Vec<String> = ::redis::cmd("ZRANGEBYSCORE")
            .arg(k.dataset_expiry())
            .arg("-inf")
            .arg(now)
            .arg("LIMIT")
            .arg(0)
            .arg(100)
            .query_async(&mut self.link.clone())
            .await?;
        if over.is_empty() {
            return Ok(());
        }
        let mut used = HashSet::new();
        self.each_unended_record(|record| used.extend(dataset_in_use(record.as_bytes())))
            .await?;
        for id in over.iter().filter_map(|i| Uuid::parse_str(i).ok()) {
            if used.contains(&id) {
                if let Some(at) = self.settings.dataset_expires_at(now) {
                    let _: i64 = self
                        .link
                        .clone()
                        .zadd(k.dataset_expiry(), id.to_string(), at)
                        .await?;
                }
            } else if self.remove_dataset(id, Some(now)).await? {
                tracing::info!(dataset = %id, "data set expired");
            }
        }
        Ok(())
    }

    async fn submit_script(
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
            .arg(encode(task))
            .arg(task.priority.min(9))
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

    /// Runs one operation of `schedule.lua` on schedule `name`; true if it applied.
    async fn schedule_op(&self, op: &str, name: &str, args: &[String]) -> Result<bool, StoreError> {
        Ok(self.schedule_code(op, name, args).await? == 1)
    }

    /// As `schedule_op`, with the script's answer.
    async fn schedule_code(
        &self,
        op: &str,
        name: &str,
        args: &[String],
    ) -> Result<i64, StoreError> {
        let mut invocation = self.scripts.schedule.prepare_invoke();
        invocation
            .key(self.keys.schedules())
            .key(self.keys.schedule_state(name))
            .arg(op)
            .arg(name);
        for arg in args {
            invocation.arg(arg);
        }
        Ok(invocation.invoke_async(&mut self.link.clone()).await?)
    }

    /// Revokes task `id` if it is pending; true if it did.
    async fn purge_one(&self, id: Uuid) -> Result<bool, StoreError> {
        for _ in 0..MAX_CAS_RETRIES {
            let Some(old) = self.raw(id).await? else {
                return Ok(false);
            };
            let task: TaskRecord = decode(&old)?;
            if task.state != TaskState::Pending {
                return Ok(false);
            }
            let keys = self.finish_keys(&task);
            if self
                .finish_swap(
                    &keys,
                    (&old, &task),
                    &task.clone().purged(&self.settings),
                    None,
                )
                .await?
            {
                return Ok(true);
            }
        }
        Err(Self::conflict(id))
    }

    /// Task `id`'s record, decoded as `T` (the whole record, or part of it). Without a record,
    /// it is expired if its tombstone is left, else never known.
    async fn lookup<T: serde::de::DeserializeOwned + Expires>(
        &self,
        id: Uuid,
    ) -> Result<Lookup<T>, StoreError> {
        if let Some(raw) = self.raw(id).await? {
            // Redis expires keys on whole seconds; the record's own expiry is exact.
            return Ok(found_unless_expired(decode(&raw)?));
        }
        let expired: bool = self.link.clone().exists(self.keys.tombstone(id)).await?;
        Ok(if expired {
            Lookup::Expired
        } else {
            Lookup::Missing
        })
    }

    /// The first tasks of `queues` to claim (the claim window) and their records, in one
    /// round trip.
    async fn peek(&self, queues: &[String]) -> Result<Vec<Head>, StoreError> {
        let mut peek = self.scripts.peek.prepare_invoke();
        for queue in queues {
            peek.key(queue);
        }
        peek.arg(self.keys.task_prefix())
            .arg(Self::window(self.trying()));
        Ok(peek.invoke_async(&mut self.link.clone()).await?)
    }

    async fn raw(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        Ok(self.link.clone().get(self.keys.task(id)).await?)
    }

    /// Runs a compare-and-set script: ARGV[1] the record read (`old`, decoded as `before`),
    /// ARGV[2] the new one, then `extra`. True if the record was still the one read and the
    /// change was made.
    async fn swap(
        &self,
        script: &Script,
        keys: &[String],
        old: (&str, &TaskRecord),
        new: &TaskRecord,
        extra: &[&[u8]],
    ) -> Result<bool, StoreError> {
        let invocation = self.swap_invocation(script, keys, old, new, extra);
        let changed: i64 = invocation.invoke_async(&mut self.link.clone()).await?;
        Ok(changed == 1)
    }

    /// The invocation `swap` runs.
    fn swap_invocation<'s>(
        &self,
        script: &'s Script,
        keys: &[String],
        (old, before): (&str, &TaskRecord),
        new: &TaskRecord,
        extra: &[&[u8]],
    ) -> ::redis::ScriptInvocation<'s> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        invocation.arg(old).arg(encode(new));
        for arg in extra {
            invocation.arg(*arg);
        }
        self.add_event(&mut invocation, Some(before), new);
        invocation
    }

    /// Appends the keys and arguments of `lua/events.lua`: the event of the change from `old`
    /// to `new`, if there is one.
    fn add_event(
        &self,
        invocation: &mut ::redis::ScriptInvocation<'_>,
        old: Option<&TaskRecord>,
        new: &TaskRecord,
    ) {
        let event = events::Pending::of(old, new).map_or_else(String::new, |p| p.encode());
        let ttl = if new.state.is_terminal() {
            (self.settings.history_expires_s().ceil().max(1.0) as u64).to_string()
        } else {
            String::new()
        };
        invocation
            .key(self.keys.events())
            .key(self.keys.task_events(new.id))
            .arg(event)
            .arg(ttl)
            .arg(EVENTS_KEPT);
    }

    fn conflict(id: Uuid) -> StoreError {
        StoreError::Unavailable(format!(
            "task {id} kept changing; gave up after {MAX_CAS_RETRIES} tries"
        ))
    }

    /// The record of `id` as read (for compare-and-set) and decoded, if `attempt` runs it.
    async fn read_running(
        &self,
        id: Uuid,
        attempt: u32,
    ) -> Result<Option<(String, TaskRecord)>, StoreError> {
        let Some(old) = self.raw(id).await? else {
            return Ok(None);
        };
        let task: TaskRecord = decode(&old)?;
        Ok(task.runs_attempt(attempt).then_some((old, task)))
    }

    /// The queues a trainer of `device` takes from: the ones for any device, then its class's.
    fn queues_of(&self, device: DeviceSpec) -> [String; 2] {
        [DeviceClass::Any, device.class()].map(|class| self.keys.queue(class))
    }

    /// How many claims of this node are under way.
    fn trying(&self) -> usize {
        self.heads.lock().expect("heads lock").trying.len()
    }

    /// How many of the first queued tasks a peek or a claim's answer lists while `trying`
    /// claims of this node are under way (see `CLAIM_WINDOW`).
    fn window(trying: usize) -> usize {
        CLAIM_WINDOW.max(trying + 1)
    }

    /// The next task of `device`'s queues that no claim of this node tries, as the last claim
    /// from them saw it, or else as read now. The claim script checks it is still among the
    /// first, so a stale one only costs a retry.
    async fn next_head(&self, device: DeviceSpec) -> Result<Option<Trying>, StoreError> {
        match self.take_head(device.class()) {
            Some(head) => Ok(Some(head)),
            None => self.peek_head(device).await,
        }
    }

    /// The next task of `device`'s queues that no claim of this node tries, as read now.
    async fn peek_head(&self, device: DeviceSpec) -> Result<Option<Trying>, StoreError> {
        let heads = self.peek(&self.queues_of(device)).await?;
        self.remember(device.class(), heads);
        Ok(self.take_head(device.class()))
    }

    /// The next remembered task of `class` that no claim of this node tries, now tried.
    fn take_head(&self, class: DeviceClass) -> Option<Trying> {
        let mut heads = self.heads.lock().expect("heads lock");
        let Heads { next, trying } = &mut *heads;
        let queued = next.get_mut(&class)?;
        while let Some(head) = queued.pop_front() {
            if trying.insert(head.1.clone()) {
                return Some(Trying {
                    heads: self.heads.clone(),
                    head,
                });
            }
        }
        None
    }

    /// Keeps the first tasks of `class`'s queues, as a script saw them, for the next claims.
    fn remember(&self, class: DeviceClass, seen: Vec<Head>) {
        let mut heads = self.heads.lock().expect("heads lock");
        let fresh = seen
            .into_iter()
            .filter(|head| !heads.trying.contains(&head.1))
            .collect();
        heads.next.insert(class, fresh);
    }

    /// Claims for `trainer` from `head` (see `claim.lua`), retrying from the tasks each failed
    /// try answers; with `work`, only a task doing it.
    async fn claim_from(
        &self,
        trainer: &str,
        device: DeviceSpec,
        mut head: Option<Trying>,
        work: Option<&Work>,
    ) -> Result<Option<Claimed>, StoreError> {
        let queues = self.queues_of(device);
        for _ in 0..MAX_CAS_RETRIES {
            let Some(next) = head.take() else {
                return Ok(None);
            };
            let claim = match self.claim_try(trainer, &queues, &next.head, work)? {
                Ok(claim) => claim,
                Err(Untried::OtherWork) => return Ok(None),
                Err(Untried::NoRecord(queue, id)) => {
                    // A queued id without a record cannot run; drop it so it does not block
                    // the queue.
                    let _: i64 = self.link.clone().zrem(queue, id.to_string()).await?;
                    drop(next);
                    head = self.peek_head(device).await?;
                    continue;
                }
            };
            let answer = claim
                .invocation
                .invoke_async(&mut self.link.clone())
                .await?;
            match self.claim_answer(device, answer, claim.task, claim.stored) {
                ClaimAnswer::Taken(claimed) => return Ok(Some(*claimed)),
                ClaimAnswer::Draining => return Ok(None),
                ClaimAnswer::Moved => {
                    drop(next);
                    head = self.take_head(device.class());
                }
            }
        }
        Err(StoreError::Unavailable(
            "the queue kept changing while claiming".into(),
        ))
    }

    /// The claim of queue head `head` for `trainer`, ready to run; or why there is none: a
    /// queued id without a record (its queue and id), or a task not doing `work`.
    fn claim_try<'s>(
        &'s self,
        trainer: &str,
        queues: &[String; 2],
        (queue, id, old): &Head,
        work: Option<&Work>,
    ) -> Result<Result<ClaimTry<'s>, Untried>, StoreError> {
        let k = &self.keys;
        let queue = queue
            .checked_sub(1)
            .and_then(|i| queues.get(i))
            .ok_or_else(|| StoreError::Corrupt(format!("head.lua answered queue {queue}")))?;
        let id = Uuid::parse_str(id)
            .map_err(|e| StoreError::Corrupt(format!("queue holds {id:?}: {e}")))?;
        let Some(old) = old else {
            return Ok(Err(Untried::NoRecord(queue.clone(), id)));
        };
        let before: TaskRecord = decode(old)?;
        if work.is_some_and(|work| !work.done_by(&before)) {
            return Ok(Err(Untried::OtherWork));
        }
        let task = before.clone().claimed(trainer, &self.settings);
        let stored = encode(&task);
        let lease = format!("{trainer}\t{}", task.attempt);
        let mut invocation = self.scripts.claim.prepare_invoke();
        invocation
            .key(k.task(id))
            .key(queue)
            .key(k.running())
            .key(k.draining());
        for queue in queues {
            invocation.key(queue);
        }
        invocation
            .arg(old)
            .arg(&stored)
            .arg(id.to_string())
            .arg(&lease)
            .arg(k.task_prefix())
            .arg(trainer_node(trainer));
        let trying = self.trying();
        invocation.arg(trying.max(1)).arg(Self::window(trying));
        self.add_event(&mut invocation, Some(&before), &task);
        Ok(Ok(ClaimTry {
            invocation,
            task,
            stored,
        }))
    }

    /// What `claim.lua` answered for a try of `task` (stored as `stored`); the first tasks it
    /// saw after a change are kept for the next claims from `device`'s queues.
    fn claim_answer(
        &self,
        device: DeviceSpec,
        (taken, next): (i64, Vec<Head>),
        task: TaskRecord,
        stored: String,
    ) -> ClaimAnswer {
        if taken != 2 {
            self.remember(device.class(), next);
        }
        match taken {
            1 => ClaimAnswer::Taken(Box::new(Claimed {
                task,
                stored: Some(stored),
            })),
            2 => ClaimAnswer::Draining,
            _ => ClaimAnswer::Moved,
        }
    }

    /// The keys `finish.lua` touches.
    fn finish_keys(&self, task: &TaskRecord) -> [String; 7] {
        let (k, id) = (&self.keys, task.id);
        [
            k.task(id),
            k.running(),
            k.model(id),
            k.tombstone(id),
            k.queue(task.device),
            k.delayed(),
            k.callbacks(),
        ]
    }

    /// One compare-and-set of `finish` on the running record `task`, read as `old`.
    async fn finish_once(
        &self,
        old: &str,
        task: &TaskRecord,
        finish: &Finish,
    ) -> Result<bool, StoreError> {
        let keys = self.finish_keys(task);
        let (new, model) = task.clone().finished(finish.clone(), &self.settings);
        let invocation = self.finish_invocation(&keys, (old, task), &new, model.as_deref());
        let mut writer = self.link.writer();
        let changed: i64 = invocation.invoke_async(&mut writer).await?;
        if changed == 1 {
            // A result is acknowledged (to the trainer, which then moves on) once it is on
            // the replicas asked for.
            writer
                .replicated(|| format!("the end of task {}", task.id))
                .await?;
        }
        Ok(changed == 1)
    }

    async fn finish_swap(
        &self,
        keys: &[String],
        old: (&str, &TaskRecord),
        new: &TaskRecord,
        model: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let invocation = self.finish_invocation(keys, old, new, model);
        let changed: i64 = invocation.invoke_async(&mut self.link.clone()).await?;
        Ok(changed == 1)
    }

    /// The invocation of `finish.lua` that `finish_swap` runs.
    fn finish_invocation(
        &self,
        keys: &[String],
        old: (&str, &TaskRecord),
        new: &TaskRecord,
        model: Option<&[u8]>,
    ) -> ::redis::ScriptInvocation<'_> {
        let ttl = self.settings.result_expires_s.ceil().max(1.0) as u64;
        let tombstone = ttl + self.settings.expired_memory_s.ceil().max(1.0) as u64;
        let (ttl, tombstone, id) = (ttl.to_string(), tombstone.to_string(), new.id.to_string());
        let callback = if new.callback_url.is_some() && new.state.is_terminal() {
            now_s().to_string()
        } else {
            String::new()
        };
        let extra: [&[u8]; 5] = [
            model.unwrap_or(b""),
            ttl.as_bytes(),
            tombstone.as_bytes(),
            id.as_bytes(),
            callback.as_bytes(),
        ];
        self.swap_invocation(&self.scripts.finish, keys, old, new, &extra)
    }
}

impl Store for RedisStore {
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

    async fn keyed(&self, key: &str) -> Result<Option<(Uuid, String)>, StoreError> {
        let mut con = self.link.clone();
        let used: Option<String> = con.get(self.keys.idempotency(key)).await?;
        let Some(used) = used else { return Ok(None) };
        let (id, fingerprint) = used.split_once(' ').unwrap_or((&used, ""));
        let id = Uuid::parse_str(id)
            .map_err(|e| StoreError::Corrupt(format!("idempotency key holds {used:?}: {e}")))?;
        Ok(Some((id, fingerprint.to_string())))
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

    async fn claim(
        &self,
        trainer: &str,
        device: DeviceSpec,
    ) -> Result<Option<Claimed>, StoreError> {
        let head = self.next_head(device).await?;
        self.claim_from(trainer, device, head, None).await
    }

    async fn claim_work(
        &self,
        trainer: &str,
        device: DeviceSpec,
        work: &Work,
    ) -> Result<Option<Claimed>, StoreError> {
        let head = self.next_head(device).await?;
        self.claim_from(trainer, device, head, Some(work)).await
    }

    async fn progress(
        &self,
        id: Uuid,
        attempt: u32,
        progress: &TaskProgress,
    ) -> Result<bool, StoreError> {
        let keys = [self.keys.task(id)];
        for _ in 0..MAX_CAS_RETRIES {
            let Some((old, task)) = self.read_running(id, attempt).await? else {
                return Ok(false);
            };
            if self
                .swap(
                    &self.scripts.update,
                    &keys,
                    (&old, &task),
                    &task.clone().progressed(progress, &self.settings),
                    &[],
                )
                .await?
            {
                return Ok(true);
            }
        }
        Err(Self::conflict(id))
    }

    async fn finish_from(
        &self,
        stored: &str,
        id: Uuid,
        attempt: u32,
        finish: Finish,
    ) -> Result<bool, StoreError> {
        let task: TaskRecord = decode(stored)?;
        if task.id == id
            && task.runs_attempt(attempt)
            && self.finish_once(stored, &task, &finish).await?
        {
            return Ok(true);
        }
        // Changed since (progress, a cancel request, a requeue): from the current record.
        self.finish(id, attempt, finish).await
    }

    async fn claim_and_finish(
        &self,
        trainer: &str,
        device: DeviceSpec,
        ended: Ending<'_>,
    ) -> ClaimedAndFinished {
        let head = match self.next_head(device).await {
            Ok(head) => head,
            Err(e) => {
                let finished = ended.write(self).await;
                return ClaimedAndFinished {
                    next: Err(e),
                    finished,
                };
            }
        };
        let task = ended
            .stored
            .and_then(|stored| decode::<TaskRecord>(stored).ok())
            .filter(|task| task.id == ended.id && task.runs_attempt(ended.attempt));
        let pipelined = match (&head, task, ended.stored) {
            (Some(next), Some(task), Some(stored)) => {
                match self.claim_try(trainer, &self.queues_of(device), &next.head, None) {
                    Ok(Ok(claim)) => Some((claim, task, stored)),
                    Ok(Err(_)) | Err(_) => None,
                }
            }
            _ => None,
        };
        let Some((claim, task, stored)) = pipelined else {
            // With an empty queue, or without the attempt's record at hand: one after the
            // other (the claim also drops a queued id without a record, or says what is wrong).
            let next = self.claim_from(trainer, device, head, None).await;
            let finished = ended.write(self).await;
            return ClaimedAndFinished { next, finished };
        };
        // Both scripts in one round trip (each atomic; a failure of one leaves the other).
        let keys = self.finish_keys(&task);
        let (new, model) = task.clone().finished(ended.finish.clone(), &self.settings);
        let finish = self.finish_invocation(&keys, (stored, &task), &new, model.as_deref());
        let mut writer = self.link.writer();
        let answers: Result<Vec<::redis::RedisResult<::redis::Value>>, _> = ::redis::pipe()
            .ignore_errors()
            .invoke_script(&claim.invocation)
            .invoke_script(&finish)
            .query_async(&mut writer)
            .await;
        let (claimed, finished) = match answers {
            Ok(answers) if answers.len() == 2 => {
                let mut answers = answers.into_iter();
                (answers.next().unwrap(), answers.next().unwrap())
            }
            Ok(answers) => {
                let e = StoreError::Corrupt(format!("2 scripts got {} answers", answers.len()));
                let again = StoreError::Corrupt(e.to_string());
                return ClaimedAndFinished {
                    next: Err(e),
                    finished: Err(again),
                };
            }
            Err(e) => {
                return ClaimedAndFinished {
                    next: Err(e.clone().into()),
                    finished: Err(e.into()),
                };
            }
        };
        let next = match claimed.map(::redis::from_redis_value) {
            Ok(Ok(answer)) => match self.claim_answer(device, answer, claim.task, claim.stored) {
                ClaimAnswer::Taken(claimed) => Ok(Some(*claimed)),
                ClaimAnswer::Draining => Ok(None),
                ClaimAnswer::Moved => {
                    drop(head);
                    let next = self.take_head(device.class());
                    self.claim_from(trainer, device, next, None).await
                }
            },
            Ok(Err(e)) => Err(StoreError::Corrupt(format!("claim.lua answered: {e}"))),
            // Redis lost its scripts (it restarted): a claim on its own loads them.
            Err(e)
                if e.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript) =>
            {
                self.claim_from(trainer, device, head, None).await
            }
            Err(e) => Err(e.into()),
        };
        let finished = match finished.map(::redis::from_redis_value::<i64>) {
            Ok(Ok(1)) => writer
                .replicated(|| format!("the end of task {}", ended.id))
                .await
                .map(|()| true),
            // Changed since (progress, a cancel request, a requeue): from the current record.
            Ok(Ok(_)) => self.finish(ended.id, ended.attempt, ended.finish).await,
            Ok(Err(e)) => Err(StoreError::Corrupt(format!("finish.lua answered: {e}"))),
            Err(e)
                if e.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript) =>
            {
                self.finish_from(stored, ended.id, ended.attempt, ended.finish)
                    .await
            }
            Err(e) => Err(e.into()),
        };
        ClaimedAndFinished { next, finished }
    }

    async fn finish(&self, id: Uuid, attempt: u32, finish: Finish) -> Result<bool, StoreError> {
        for _ in 0..MAX_CAS_RETRIES {
            let Some((old, task)) = self.read_running(id, attempt).await? else {
                return Ok(false);
            };
            if self.finish_once(&old, &task, &finish).await? {
                return Ok(true);
            }
        }
        Err(Self::conflict(id))
    }

    async fn requeue(
        &self,
        id: Uuid,
        attempt: u32,
        error: TaskError,
        delay_s: f64,
    ) -> Result<bool, StoreError> {
        let k = &self.keys;
        for _ in 0..MAX_CAS_RETRIES {
            let Some((old, task)) = self.read_running(id, attempt).await? else {
                return Ok(false);
            };
            let keys = [
                k.task(id),
                k.running(),
                k.queue(task.device),
                k.seq(),
                k.delayed(),
            ];
            let new = task.clone().requeued(attempt, error.clone(), delay_s);
            let (priority, id_text) = (new.priority.min(9).to_string(), id.to_string());
            let retry_at = new.retry_at.unwrap_or(0.0).to_string();
            if self
                .swap(
                    &self.scripts.requeue,
                    &keys,
                    (&old, &task),
                    &new,
                    &[priority.as_bytes(), id_text.as_bytes(), retry_at.as_bytes()],
                )
                .await?
            {
                return Ok(true);
            }
        }
        Err(Self::conflict(id))
    }

    async fn cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        let k = &self.keys;
        for _ in 0..MAX_CAS_RETRIES {
            let Some(old) = self.raw(id).await? else {
                return Ok(match self.get(id).await? {
                    Lookup::Expired => CancelOutcome::Expired,
                    _ => CancelOutcome::Missing,
                });
            };
            let task: TaskRecord = decode(&old)?;
            let done = match task.state {
                TaskState::Pending => {
                    let keys = self.finish_keys(&task);
                    let new = task.clone().revoked_pending(&self.settings);
                    self.finish_swap(&keys, (&old, &task), &new, None)
                        .await?
                        .then_some(CancelOutcome::Revoked)
                }
                TaskState::Started | TaskState::Progress => {
                    let lease = task.lease();
                    let changed = self
                        .swap(
                            &self.scripts.update,
                            &[k.task(id)],
                            (&old, &task),
                            &task.clone().cancel_flagged(),
                            &[],
                        )
                        .await?;
                    changed.then_some(CancelOutcome::Running {
                        trainer: lease.trainer,
                        attempt: lease.attempt,
                    })
                }
                state => Some(CancelOutcome::AlreadyFinished(state)),
            };
            if let Some(outcome) = done {
                return Ok(outcome);
            }
        }
        Err(Self::conflict(id))
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
            let records: Vec<Option<String>> = ::redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut con)
                .await?;
            for raw in records.into_iter().flatten() {
                let task: TaskRecord = decode(&raw)?;
                if task.matches(filter) && out.len() < filter.limit {
                    out.push(task);
                }
            }
            start += PAGE;
        }
        Ok(out)
    }

    async fn model(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.link.clone().get(self.keys.model(id)).await?)
    }

    async fn put_dataset(&self, info: &DatasetInfo, csv: &[u8]) -> Result<DatasetInfo, StoreError> {
        let k = &self.keys;
        let mut info = info.clone();
        info.bytes = csv.len() as u64;
        // The expiry lives in its own sorted set, renewed by each use.
        info.expires_at = None;
        let expires_at = self.settings.dataset_expires_at(now_s());
        let limit = self.settings.dataset_max_total_bytes;
        let (stored, total): (i64, u64) = self
            .scripts
            .dataset_put
            .key(k.datasets())
            .key(k.dataset_bytes())
            .key(k.dataset_expiry())
            .key(k.dataset_csv(info.id))
            .arg(info.id.to_string())
            .arg(encode(&info))
            .arg(csv)
            .arg(info.bytes)
            .arg(limit)
            .arg(expires_at.map_or(String::new(), |at| at.to_string()))
            .invoke_async(&mut self.link.clone())
            .await?;
        if stored == 0 {
            return Err(StoreError::DatasetQuota {
                total,
                bytes: info.bytes,
                limit,
            });
        }
        info.expires_at = expires_at;
        Ok(info)
    }

    /// Always asks Redis (a use renews the expiry; a data set deleted on another node is
    /// gone); the CSV comes from this node's cache when it has it.
    async fn dataset(&self, id: Uuid) -> Result<Option<StoredDataset>, StoreError> {
        let k = &self.keys;
        let mut con = self.link.clone();
        let renew = self.settings.dataset_expires_at(now_s());
        let touched: Option<(String, String)> = self
            .scripts
            .dataset_touch
            .key(k.datasets())
            .key(k.dataset_expiry())
            .arg(id.to_string())
            .arg(renew.map_or(String::new(), |at| at.to_string()))
            .invoke_async(&mut con)
            .await?;
        let Some((info, expires_at)) = touched else {
            self.datasets.remove(id);
            return Ok(None);
        };
        let mut info: DatasetInfo = decode(&info)?;
        info.expires_at = expires_at.parse().ok();
        if let Some((_, csv)) = self.datasets.get(id) {
            return Ok(Some((info, csv)));
        }
        let csv: Option<Vec<u8>> = con.get(k.dataset_csv(id)).await?;
        let csv = csv.ok_or_else(|| StoreError::Corrupt(format!("data set {id} has no csv")))?;
        let csv: Arc<[u8]> = Arc::from(csv);
        self.datasets
            .put(id, (info.clone(), csv.clone()), csv.len());
        Ok(Some((info, csv)))
    }

    async fn datasets(&self) -> Result<Vec<DatasetInfo>, StoreError> {
        let k = &self.keys;
        let (all, expiries): (Vec<String>, Vec<(String, f64)>) = ::redis::pipe()
            .hvals(k.datasets())
            .zrange_withscores(k.dataset_expiry(), 0, -1)
            .query_async(&mut self.link.clone())
            .await?;
        let expiries: HashMap<String, f64> = expiries.into_iter().collect();
        let mut out = Vec::new();
        for raw in &all {
            let mut info = decode::<DatasetInfo>(raw)?;
            info.expires_at = expiries.get(&info.id.to_string()).copied();
            out.push(info);
        }
        out.sort_by(|a, b| b.uploaded_at.total_cmp(&a.uploaded_at));
        Ok(out)
    }

    async fn delete_dataset(&self, id: Uuid) -> Result<DatasetDeleted, StoreError> {
        let k = &self.keys;
        let mut con = self.link.clone();
        let known: bool = con.hexists(k.datasets(), id.to_string()).await?;
        if !known {
            return Ok(DatasetDeleted::Missing);
        }
        let mut user = None;
        self.each_unended_record(|record| {
            if user.is_none() {
                user = dataset_in_use(record.as_bytes())
                    .filter(|used| *used == id)
                    .and_then(|_| decode::<TaskRecord>(record).ok().map(|t| t.id));
            }
        })
        .await?;
        if let Some(task) = user {
            return Ok(DatasetDeleted::InUse(task));
        }
        let removed = self.remove_dataset(id, None).await?;
        Ok(if removed {
            DatasetDeleted::Deleted
        } else {
            DatasetDeleted::Missing
        })
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        let mut pipe = ::redis::pipe();
        for class in DeviceClass::ALL {
            pipe.zcard(self.keys.queue(class));
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.link.clone()).await?;
        Ok(counts.iter().sum())
    }

    async fn queue_depths(&self) -> Result<[u64; 10], StoreError> {
        let mut pipe = ::redis::pipe();
        for class in DeviceClass::ALL {
            for priority in 0..10u64 {
                // Scores of priority p lie in [(9 - p) * 1e12, (10 - p) * 1e12).
                let low = (9 - priority) as f64 * 1e12;
                pipe.zcount(self.keys.queue(class), low, format!("({}", low + 1e12));
            }
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.link.clone()).await?;
        let mut depths = [0u64; 10];
        for (i, count) in counts.into_iter().enumerate() {
            depths[i % 10] += count;
        }
        Ok(depths)
    }

    async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let read: Vec<Option<String>> = self
            .scripts
            .leases
            .key(self.keys.running())
            .arg(self.keys.task_prefix())
            .invoke_async(&mut self.link.clone())
            .await?;
        let mut out = Vec::new();
        for pair in read.chunks(2) {
            if let [Some(id), Some(raw)] = pair
                && Uuid::parse_str(id).is_ok()
            {
                let task: TaskRecord = decode(raw)?;
                if task.state.is_running() {
                    out.push(task.lease());
                }
            }
        }
        Ok(out)
    }

    async fn promote(&self) -> Result<u64, StoreError> {
        let k = &self.keys;
        let mut con = self.link.clone();
        let due: Vec<String> = con
            .zrangebyscore_limit(k.delayed(), "-inf", now_s(), 0, SWEEP_BATCH)
            .await?;
        let mut moved = 0;
        for id in due {
            let Ok(uuid) = Uuid::parse_str(&id) else {
                let _: i64 = con.zrem(k.delayed(), &id).await?;
                continue;
            };
            let Some(raw) = self.raw(uuid).await? else {
                let _: i64 = con.zrem(k.delayed(), &id).await?;
                continue;
            };
            let task: TaskRecord = decode(&raw)?;
            let done: i64 = self
                .scripts
                .promote
                .key(k.delayed())
                .key(k.queue(task.device))
                .key(k.seq())
                .arg(&id)
                .arg(task.priority.min(9))
                .invoke_async(&mut con)
                .await?;
            moved += done as u64;
        }
        Ok(moved)
    }

    async fn renew(&self, id: Uuid, attempt: u32) -> Result<Renewal, StoreError> {
        let keys = [self.keys.task(id)];
        for _ in 0..MAX_CAS_RETRIES {
            let Some((old, task)) = self.read_running(id, attempt).await? else {
                return Ok(Renewal::Lost);
            };
            let cancel = task.cancel_requested;
            let renewed = task.clone().renewed(&self.settings);
            if self
                .swap(&self.scripts.update, &keys, (&old, &task), &renewed, &[])
                .await?
            {
                return Ok(Renewal::Held { cancel });
            }
        }
        Err(Self::conflict(id))
    }

    async fn lead(&self, node: &str, ttl_s: f64) -> Result<bool, StoreError> {
        let ttl_ms = (ttl_s * 1000.0).ceil().max(1.0) as u64;
        let held: i64 = self
            .scripts
            .lead
            .key(self.keys.leader())
            .arg(node)
            .arg(ttl_ms)
            .invoke_async(&mut self.link.clone())
            .await?;
        Ok(held == 1)
    }

    async fn leader(&self) -> Result<Option<String>, StoreError> {
        Ok(self.link.clone().get(self.keys.leader()).await?)
    }

    async fn announce(&self, node: &NodeInfo) -> Result<(), StoreError> {
        let _: i64 = self
            .link
            .clone()
            .hset(self.keys.nodes(), &node.name, encode(node))
            .await?;
        Ok(())
    }

    async fn due_callbacks(&self, limit: usize, hold_s: f64) -> Result<Vec<Uuid>, StoreError> {
        let now = now_s();
        let ids: Vec<String> = self
            .scripts
            .hold
            .key(self.keys.callbacks())
            .arg(now)
            .arg(limit)
            .arg(now + hold_s)
            .invoke_async(&mut self.link.clone())
            .await?;
        Ok(ids.iter().filter_map(|i| Uuid::parse_str(i).ok()).collect())
    }

    async fn callback_tried(
        &self,
        id: Uuid,
        error: Option<String>,
        retry_in_s: Option<f64>,
    ) -> Result<(), StoreError> {
        let mut con = self.link.clone();
        let keys = [self.keys.task(id)];
        for _ in 0..MAX_CAS_RETRIES {
            let Some(old) = self.raw(id).await? else {
                // Expired meanwhile: nothing left to tell anyone about.
                let _: i64 = con.zrem(self.keys.callbacks(), id.to_string()).await?;
                return Ok(());
            };
            let task: TaskRecord = decode(&old)?;
            let noted = task
                .clone()
                .callback_noted(error.clone(), retry_in_s.is_some());
            if self
                .swap(&self.scripts.update, &keys, (&old, &task), &noted, &[])
                .await?
            {
                let _: i64 = match retry_in_s {
                    Some(wait) => {
                        con.zadd(self.keys.callbacks(), id.to_string(), now_s() + wait)
                            .await?
                    }
                    None => con.zrem(self.keys.callbacks(), id.to_string()).await?,
                };
                return Ok(());
            }
        }
        Err(Self::conflict(id))
    }

    async fn purge(&self) -> Result<u64, StoreError> {
        let k = &self.keys;
        let mut con = self.link.clone();
        let mut purged = 0;
        let mut queues: Vec<String> = DeviceClass::ALL.iter().map(|c| k.queue(*c)).collect();
        queues.push(k.delayed());
        for queue in queues {
            loop {
                let ids: Vec<String> = con.zrange(&queue, 0, SWEEP_BATCH - 1).await?;
                if ids.is_empty() {
                    break;
                }
                for id in ids {
                    let Ok(uuid) = Uuid::parse_str(&id) else {
                        let _: i64 = con.zrem(&queue, &id).await?;
                        continue;
                    };
                    if self.purge_one(uuid).await? {
                        purged += 1;
                    } else {
                        // Claimed, cancelled or gone meanwhile: it is no longer pending here.
                        let _: i64 = con.zrem(&queue, &id).await?;
                    }
                }
            }
        }
        Ok(purged)
    }

    async fn task_events(&self, id: Uuid, after: EventId) -> Result<Vec<Event>, StoreError> {
        let key = self.keys.task_events(id);
        let logged: Vec<String> = match self.link.clone().lrange(&key, 0, -1).await {
            Ok(logged) => logged,
            // A stream, as versions before the list kept a task's events.
            Err(e) if e.code() == Some("WRONGTYPE") => {
                let reply: StreamRangeReply = self
                    .link
                    .clone()
                    .xrange(&key, format!("({after}"), "+")
                    .await?;
                return Ok(parse_events(reply.ids));
            }
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::with_capacity(logged.len());
        for entry in &logged {
            let (event_id, event) = entry.split_once(' ').unwrap_or((entry, ""));
            let Ok(event_id) = event_id.parse::<EventId>() else {
                tracing::warn!(task_id = %id, entry, "task event does not parse; skipped");
                continue;
            };
            if event_id <= after {
                continue;
            }
            if !event.is_empty() {
                match Event::decode(event_id, event) {
                    Some(event) => out.push(event),
                    None => {
                        tracing::warn!(task_id = %id, entry, "task event does not parse; skipped")
                    }
                }
            } else if let Lookup::Found(task) = self.lookup::<TaskRecord>(id).await? {
                // The terminal event, kept as its id: its data is the final record's.
                out.extend(events::Pending::ended(&task).map(|p| p.with_id(event_id)));
            }
        }
        Ok(out)
    }

    async fn events_since(&self, after: EventId, limit: usize) -> Result<Vec<Event>, StoreError> {
        let reply: StreamRangeReply = self
            .link
            .clone()
            .xrevrange_count(self.keys.events(), "+", format!("({after}"), limit)
            .await?;
        let mut out = parse_events(reply.ids);
        out.reverse();
        Ok(out)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.live.subscribe()
    }

    async fn create_schedule(
        &self,
        schedule: &Schedule,
        max: u64,
    ) -> Result<ScheduleCreated, StoreError> {
        let paused = if schedule.paused { "1" } else { "0" };
        let args = [
            encode(schedule),
            schedule.through.to_string(),
            paused.into(),
            max.to_string(),
        ];
        Ok(
            match self.schedule_code("create", &schedule.name, &args).await? {
                1 => ScheduleCreated::Created,
                2 => ScheduleCreated::Full,
                _ => ScheduleCreated::Exists,
            },
        )
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        let mut con = self.link.clone();
        let defs: Vec<(String, String)> = con.hgetall(self.keys.schedules()).await?;
        if defs.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for (name, _) in &defs {
            pipe.hgetall(self.keys.schedule_state(name));
        }
        let states: Vec<HashMap<String, String>> = pipe.query_async(&mut con).await?;
        let mut out = Vec::with_capacity(defs.len());
        for ((_, def), state) in defs.iter().zip(states) {
            let mut schedule: Schedule = decode(def)?;
            let number = |field: &str| state.get(field).and_then(|v| v.parse::<f64>().ok());
            schedule.paused = state.get("paused").is_some_and(|v| v == "1");
            schedule.through = number("through").map_or(schedule.through, |v| v as i64);
            schedule.fired = number("fired").map_or(0, |v| v as u64);
            schedule.skipped = number("skipped").map_or(0, |v| v as u64);
            schedule.last_task = state.get("last_task").and_then(|v| Uuid::parse_str(v).ok());
            schedule.last_fired_at = number("last_fired_at");
            out.push(schedule);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        self.schedule_op("delete", name, &[]).await
    }

    async fn pause_schedule(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        let flag = if paused { "1" } else { "0" };
        let now = (now_s().floor() as i64).to_string();
        self.schedule_op("pause", name, &[flag.into(), now]).await
    }

    async fn advance_schedule(
        &self,
        name: &str,
        through: i64,
        fired: Option<Uuid>,
        due_times: u64,
    ) -> Result<bool, StoreError> {
        let task = fired.map(|id| id.to_string()).unwrap_or_default();
        let args = [
            through.to_string(),
            task,
            now_s().to_string(),
            due_times.to_string(),
        ];
        self.schedule_op("advance", name, &args).await
    }

    async fn set_draining(&self, name: &str, draining: bool) -> Result<(), StoreError> {
        let mut con = self.link.clone();
        let _: i64 = if draining {
            con.sadd(self.keys.draining(), name).await?
        } else {
            con.srem(self.keys.draining(), name).await?
        };
        Ok(())
    }

    async fn draining(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self.link.clone().smembers(self.keys.draining()).await?;
        names.sort();
        Ok(names)
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let mut con = self.link.clone();
        let all: Vec<(String, String)> = con.hgetall(self.keys.nodes()).await?;
        let now = now_s();
        let mut out = Vec::new();
        for (name, raw) in all {
            let node: NodeInfo = decode(&raw)?;
            if now - node.seen_at > NODE_MEMORY_S {
                let _: i64 = con.hdel(self.keys.nodes(), &name).await?;
            } else {
                out.push(node);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Redis expires records itself; this drops expired ids from the listing index, the next
    /// `SWEEP_BATCH` of them after those the last sweep checked. The index is in order of
    /// submission, and a task submitted less than `result_expires_s` ago cannot have expired:
    /// once a sweep reaches those, the next starts from the oldest again (else, with tasks
    /// arriving faster than a sweep walks, it would never come back to the oldest).
    async fn sweep(&self) -> Result<u64, StoreError> {
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

    /// With `min_replicas_ack`, also whether the primary has the replicas a write needs:
    /// without them every submission is refused, so the node is not ready.
    async fn ping(&self) -> Result<(), StoreError> {
        let needed = self.settings.min_replicas_ack;
        if needed == 0 {
            let _: String = ::redis::cmd("PING")
                .query_async(&mut self.link.clone())
                .await?;
            return Ok(());
        }
        let role: Vec<::redis::Value> = ::redis::cmd("ROLE")
            .query_async(&mut self.link.clone())
            .await?;
        let replicas = match role.as_slice() {
            [
                ::redis::Value::BulkString(role),
                _,
                ::redis::Value::Array(replicas),
            ] if role == b"master" => replicas.len(),
            _ => {
                return Err(StoreError::Unavailable(
                    "the Redis it talks to is not a primary".into(),
                ));
            }
        };
        if replicas < needed {
            return Err(StoreError::Unavailable(format!(
                "the Redis primary has {replicas} of the {needed} replicas store.min_replicas_ack \
                 needs: submissions are refused"
            )));
        }
        Ok(())
    }
}

/// Events as stream entries hold them (field `e`); an entry that does not parse is skipped
/// (logged), so one bad entry cannot stop a stream.
fn parse_events(entries: Vec<StreamId>) -> Vec<Event> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let parsed = entry.id.parse::<EventId>().ok().and_then(|id| {
            let logged: String = entry.get("e")?;
            Event::decode(id, &logged)
        });
        match parsed {
            Some(event) => out.push(event),
            None => tracing::warn!(entry = %entry.id, "event entry does not parse; skipped"),
        }
    }
    out
}

/// How long one read of the event stream waits for news.
const FOLLOW_BLOCK: Duration = Duration::from_secs(2);
/// Events one read of the event stream takes at most.
const FOLLOW_COUNT: usize = 512;
/// How long events gather between two reads of the event stream while it is busy.
const FOLLOW_GATHER: Duration = Duration::from_millis(5);

/// Reads the stream of every event as it grows and hands each event to this node's
/// subscribers. On its own connection (a blocking read would hold up every other command on a
/// shared one). After an error it reconnects and goes on from the last event it read, so
/// nothing is skipped.
async fn follow_events(
    weak: WeakLink,
    key: String,
    mut last: String,
    live: tokio::sync::broadcast::Sender<Event>,
) {
    let config = ::redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(FOLLOW_BLOCK + Duration::from_secs(3)));
    loop {
        let Some(link) = weak.upgrade() else {
            return;
        };
        let (client, generation) = (link.client(), link.generation());
        drop(link);
        let mut con = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(con) => con,
            Err(e) => {
                tracing::debug!(error = %e, "cannot connect to follow events; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let options = StreamReadOptions::default()
            .block(FOLLOW_BLOCK.as_millis() as usize)
            .count(FOLLOW_COUNT);
        loop {
            // Ends with the store; reconnects when the store moved to another primary.
            match weak.upgrade() {
                None => return,
                Some(link) if link.generation() != generation => break,
                Some(_) => {}
            }
            let reply: Result<Option<StreamReadReply>, _> =
                con.xread_options(&[&key], &[&last], &options).await;
            match reply {
                Ok(reply) => {
                    let mut read = 0;
                    for stream in reply.map(|r| r.keys).unwrap_or_default() {
                        if let Some(entry) = stream.ids.last() {
                            last = entry.id.clone();
                        }
                        read += stream.ids.len();
                        for event in parse_events(stream.ids) {
                            // No subscriber is fine.
                            let _ = live.send(event);
                        }
                    }
                    // The first event after a quiet spell comes at once; under load, events
                    // gather for a moment, so the stream is read a few hundred times a second
                    // at most rather than once or twice per event. A full read means more wait.
                    if read > 0 && read < FOLLOW_COUNT {
                        tokio::time::sleep(FOLLOW_GATHER).await;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "lost the event stream; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
        }
    }
}
