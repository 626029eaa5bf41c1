//! Decoded models kept for `POST /models/{id}/predict`, so that a predict call does not read
//! the whole artifact from the store and decode it each time.
//!
//! Bounded in bytes (each model weighs its artifact's size); a model larger than the whole
//! cache is not kept. A task's model never changes once it succeeded, but it expires with the
//! task's result: an entry remembers when, and is not answered from after that (the store
//! then says the task expired). Nothing else removes a finished task's model (a purge revokes
//! pending tasks only). A registered model's version is kept under an id made from its name
//! and number (`handlers::models`), with no expiry: a version never changes, and each call
//! asks the store which version a name or alias means and whether it is still there.

use std::sync::Arc;

use quick_cache::Weighter;
use quick_cache::sync::Cache;
use uuid::Uuid;

use crate::store::now_s;
use crate::training::TrainedModel;

/// A decoded model and when its task's result expires (Unix seconds).
#[derive(Clone)]
pub struct CachedModel {
    pub model: Arc<TrainedModel>,
    pub expires_at: f64,
    /// Bytes of the artifact it was decoded from: its weight.
    pub bytes: u64,
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<Uuid, CachedModel> for ByBytes {
    fn weight(&self, _id: &Uuid, cached: &CachedModel) -> u64 {
        cached.bytes.max(1)
    }
}

/// Decoded models by task id; none kept with a capacity of 0.
pub struct ModelCache {
    capacity: u64,
    cache: Option<Cache<Uuid, CachedModel, ByBytes>>,
}

/// Models a cache of some bytes is sized for at first: a guess, it grows as needed.
const TYPICAL_MODEL_BYTES: u64 = 64 << 10;

impl ModelCache {
    pub fn new(capacity_bytes: u64) -> Self {
        let cache = (capacity_bytes > 0).then(|| {
            let items = (capacity_bytes / TYPICAL_MODEL_BYTES).clamp(16, 4096) as usize;
            Cache::with_weighter(items, capacity_bytes, ByBytes)
        });
        ModelCache {
            capacity: capacity_bytes,
            cache,
        }
    }

    /// The model of task `id`, unless it is not kept or its result has expired by now.
    pub fn get(&self, id: Uuid) -> Option<CachedModel> {
        let cache = self.cache.as_ref()?;
        let cached = cache.get(&id)?;
        if cached.expires_at <= now_s() {
            cache.remove(&id);
            return None;
        }
        Some(cached)
    }

    /// Keeps a model unless it alone is larger than the cache.
    pub fn put(&self, id: Uuid, cached: CachedModel) {
        if let Some(cache) = &self.cache
            && cached.bytes <= self.capacity
            && cached.expires_at > now_s()
        {
            cache.insert(id, cached);
        }
    }

    /// Bytes of the models kept now.
    pub fn weight(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.weight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::{Dataset, DeviceSpec, ModelType, TrainSpec};

    fn model() -> Arc<TrainedModel> {
        let data = Dataset::friedman1(50, 1);
        let spec = TrainSpec {
            epochs: 1,
            ..TrainSpec::new(ModelType::Linear)
        };
        let trained = crate::training::train(
            &spec,
            &data,
            &DeviceSpec::Cpu,
            &mut |_| {},
            &crate::training::CancelToken::new(),
        )
        .unwrap();
        Arc::new(trained.model)
    }

    #[test]
    fn models_are_kept_within_the_bytes_and_until_they_expire() {
        let model = model();
        let cached = |bytes, expires_in: f64| CachedModel {
            model: model.clone(),
            expires_at: now_s() + expires_in,
            bytes,
        };
        let cache = ModelCache::new(1000);
        let (a, b, c, d) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        cache.put(a, cached(400, 60.0));
        assert!(cache.get(a).is_some());
        // Larger than the whole cache: not kept.
        cache.put(b, cached(1001, 60.0));
        assert!(cache.get(b).is_none());
        // Expired: not answered from, and dropped.
        cache.put(c, cached(100, 0.2));
        assert!(cache.get(c).is_some());
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(cache.get(c).is_none());
        // Past the bytes, something goes.
        for _ in 0..10 {
            cache.put(Uuid::new_v4(), cached(300, 60.0));
        }
        assert!(cache.weight() <= 1000, "{}", cache.weight());
        let off = ModelCache::new(0);
        off.put(d, cached(1, 60.0));
        assert!(off.get(d).is_none());
    }
}
