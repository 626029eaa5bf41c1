//! A cache of immutable things by id, bounded by their total size: when one more would take it
//! past its limit, it starts afresh (simple, and right for things that are re-read cheaply and
//! usually few: uploaded data sets).

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

pub struct BoundedCache<V> {
    limit: usize,
    /// The values and their total size.
    entries: Mutex<(HashMap<Uuid, V>, usize)>,
}

impl<V: Clone> BoundedCache<V> {
    pub fn new(limit: usize) -> Self {
        BoundedCache {
            limit,
            entries: Mutex::new((HashMap::new(), 0)),
        }
    }

    pub fn get(&self, id: Uuid) -> Option<V> {
        let entries = self.entries.lock().expect("cache lock");
        entries.0.get(&id).cloned()
    }

    /// Forgets the value of `id`, if kept.
    pub fn remove(&self, id: Uuid) {
        let mut entries = self.entries.lock().expect("cache lock");
        entries.0.remove(&id);
    }

    /// Keeps `value` (of `size`, in the limit's unit) unless it alone is over the limit.
    /// (With `size` 1, the limit is a number of values.)
    pub fn put(&self, id: Uuid, value: V, size: usize) {
        if size > self.limit {
            return;
        }
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.1 + size > self.limit {
            *entries = (HashMap::new(), 0);
        }
        entries.1 += size;
        entries.0.insert(id, value);
    }
}
