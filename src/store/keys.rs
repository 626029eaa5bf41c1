//! Every Redis key trainyard uses, built here and nowhere else. All keys start with the
//! configured prefix, so several clusters (or tests) can share one Redis.

use uuid::Uuid;

use crate::training::device_kind::DeviceClass;

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// String: the task's JSON record; given a TTL when the task finishes.
    pub fn task(&self, id: Uuid) -> String {
        format!("{}:task:{id}", self.prefix)
    }

    /// What every task key starts with (`task(id)` is this and the id).
    pub fn task_prefix(&self) -> String {
        format!("{}:task:", self.prefix)
    }

    /// String: set when a task finishes, living `result_expires_s + expired_memory_s`, so an
    /// expired id is told apart from an unknown one. Only for ids without a time (UUID v4,
    /// from versions before [`expired_ids`](Self::expired_ids)).
    pub fn tombstone(&self, id: Uuid) -> String {
        format!("{}:expired:{id}", self.prefix)
    }

    /// String: the tombstones of the tasks submitted in one minute, one of 16 shards: the
    /// last 8 bytes of each id, appended when its task ends, the key living until the last of
    /// them has been expired for `expired_memory_s` (about 15 bytes an id, where a key of its
    /// own takes 104). With the tail to look for. None for an id without a time (UUID v4).
    pub fn expired_ids(&self, id: Uuid) -> Option<(String, [u8; 8])> {
        if id.get_version() != Some(uuid::Version::SortRand) {
            return None;
        }
        let (secs, _) = id.get_timestamp()?.to_unix();
        let bytes = id.as_bytes();
        let tail: [u8; 8] = bytes[8..].try_into().expect("a UUID has 16 bytes");
        let shard = bytes[15] & 0x0f;
        Some((
            format!("{}:expired:{}:{shard:x}", self.prefix, secs / 60),
            tail,
        ))
    }

    /// Where `tombstone.lua`'s `bury` leaves task `id`'s tombstone, and the tail it appends
    /// there (empty: a key of its own, for a v4 id).
    pub fn burial(&self, id: Uuid) -> (String, Vec<u8>) {
        match self.expired_ids(id) {
            Some((key, tail)) => (key, tail.to_vec()),
            None => (self.tombstone(id), Vec::new()),
        }
    }

    /// String: the model artifact of a SUCCESS task, with the task's TTL.
    pub fn model(&self, id: Uuid) -> String {
        format!("{}:model:{id}", self.prefix)
    }

    /// Hash of a running training's one checkpoint: `attempt` (the attempt that saved it),
    /// `step`, `data` (the training's state); expires `result_expires_s` after each write,
    /// and is dropped when its task ends.
    pub fn checkpoint(&self, id: Uuid) -> String {
        format!("{}:checkpoint:{id}", self.prefix)
    }

    /// Sorted set of pending task ids that ask for device class `class`; score
    /// `(9 - priority) * 1e12 + sequence`, so the lowest score is the next task to run.
    pub fn queue(&self, class: DeviceClass) -> String {
        format!("{}:queue:{}", self.prefix, class.as_str())
    }

    /// Sorted set of pending task ids waiting out a retry backoff; score: when they may run
    /// (Unix seconds).
    pub fn delayed(&self) -> String {
        format!("{}:delayed", self.prefix)
    }

    /// String: `task-id fingerprint` of a client's idempotency key, with the key's TTL.
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}:idempotency:{key}", self.prefix)
    }

    /// Set of the names of nodes an operator is draining.
    pub fn draining(&self) -> String {
        format!("{}:draining", self.prefix)
    }

    /// Sorted set of ended task ids whose callback is to be delivered; score: when to try.
    pub fn callbacks(&self) -> String {
        format!("{}:callbacks", self.prefix)
    }

    /// Hash of schedule name -> JSON `Schedule` as created.
    pub fn schedules(&self) -> String {
        format!("{}:schedules", self.prefix)
    }

    /// Hash of what changes in a schedule: paused, through, fired, skipped, last_task,
    /// last_fired_at.
    pub fn schedule_state(&self, name: &str) -> String {
        format!("{}:schedule:{name}", self.prefix)
    }

    /// Sorted set of sweep ids; score: when each was created.
    pub fn sweeps(&self) -> String {
        format!("{}:sweeps", self.prefix)
    }

    /// Sorted set of the ids of the sweeps in state RUNNING; score: when each was created.
    pub fn running_sweeps(&self) -> String {
        format!("{}:sweeps:running", self.prefix)
    }

    /// Hash of a sweep: `record` (JSON `Sweep`) and `version`.
    pub fn sweep(&self, id: Uuid) -> String {
        format!("{}:sweep:{id}", self.prefix)
    }

    /// Hash of a sweep's rung results: `STEP/TRIAL` -> `VALUE/GO_ON` (1 or 0).
    pub fn sweep_rungs(&self, id: Uuid) -> String {
        format!("{}:sweep:{id}:rungs", self.prefix)
    }

    /// List of a sweep's events (JSON), oldest first: an event's number is its place + 1.
    pub fn sweep_events(&self, id: Uuid) -> String {
        format!("{}:sweep:{id}:events", self.prefix)
    }

    /// Stream of every task's events (the latest `EVENTS_KEPT`); its ids order all events.
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// Stream of one task's events, with the ids they have in `events`; expires with the task.
    /// What every task's own events key starts with (`task_events` is it and the id).
    pub fn task_events_prefix(&self) -> String {
        format!("{}:events:", self.prefix)
    }

    pub fn task_events(&self, id: Uuid) -> String {
        format!("{}:events:{id}", self.prefix)
    }

    /// Counter ordering the queue.
    pub fn seq(&self) -> String {
        format!("{}:seq", self.prefix)
    }

    /// String: the name of the node holding the leader lease, with the lease's TTL.
    pub fn leader(&self) -> String {
        format!("{}:leader", self.prefix)
    }

    /// Hash of node name -> JSON `NodeInfo`, refreshed by each node about every second.
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Hash of running task id -> `trainer<TAB>attempt`.
    pub fn running(&self) -> String {
        format!("{}:running", self.prefix)
    }

    /// Sorted set of every task id by submission time, for listing.
    pub fn index(&self) -> String {
        format!("{}:tasks", self.prefix)
    }

    /// Hash of data set id -> JSON `DatasetInfo`.
    pub fn datasets(&self) -> String {
        format!("{}:datasets", self.prefix)
    }

    /// Hash of data set id -> its CSV's bytes, summed against `datasets.max_total_bytes`.
    pub fn dataset_bytes(&self) -> String {
        format!("{}:dataset_bytes", self.prefix)
    }

    /// Sorted set of data set ids that expire; score: when (Unix seconds), renewed by each use.
    pub fn dataset_expiry(&self) -> String {
        format!("{}:dataset_expiry", self.prefix)
    }

    /// String: an uploaded data set's CSV bytes.
    pub fn dataset_csv(&self, id: Uuid) -> String {
        format!("{}:dataset:{id}", self.prefix)
    }

    /// Set of registered model names.
    pub fn registry(&self) -> String {
        format!("{}:registry", self.prefix)
    }

    /// Hash of registered model `name`: `next` (the last version number given), `v:N` ->
    /// JSON `ModelVersion` (its number is the field's), `a:ALIAS` -> version.
    pub fn registered(&self, name: &str) -> String {
        format!("{}:registered:{name}", self.prefix)
    }

    /// Hash of registered model `name`'s artifacts: version -> bytes. Never expires.
    pub fn registered_artifacts(&self, name: &str) -> String {
        format!("{}:registered_artifacts:{name}", self.prefix)
    }

    /// String: the id of a finished success with this cache key, expiring with its result.
    pub fn cached(&self, key: &str) -> String {
        format!("{}:cached:{key}", self.prefix)
    }
}
