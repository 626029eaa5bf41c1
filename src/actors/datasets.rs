//! Uploaded data sets, parsed, shared by a node's trainers. Data sets never change once
//! uploaded, so a parsed copy stays right; without it every task of a data set would fetch and
//! parse its CSV again (for tiny trainings the parse cost more than the training).

use std::sync::Arc;

use uuid::Uuid;

use crate::cache::BoundedCache;
use crate::training::Dataset;

/// Most values (features and targets, 4 bytes each) kept parsed: 64 MB. Over that, the cache
/// starts afresh.
const MAX_VALUES: usize = 16 << 20;

pub struct ParsedDatasets(BoundedCache<Arc<Dataset>>);

impl Default for ParsedDatasets {
    fn default() -> Self {
        ParsedDatasets(BoundedCache::new(MAX_VALUES))
    }
}

impl ParsedDatasets {
    pub fn get(&self, id: Uuid) -> Option<Arc<Dataset>> {
        self.0.get(id)
    }

    /// Keeps `dataset` (the data set `id`, parsed) if it fits, and returns it shared.
    pub fn put(&self, id: Uuid, dataset: Dataset) -> Arc<Dataset> {
        let values = dataset.features().len() + dataset.targets().len();
        let dataset = Arc::new(dataset);
        self.0.put(id, dataset.clone(), values);
        dataset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(rows: usize) -> Dataset {
        Dataset::new("d", vec!["x".into()], "y", vec![1.0; rows], vec![2.0; rows]).unwrap()
    }

    #[test]
    fn keeps_data_sets_until_full_then_starts_afresh() {
        let cache = ParsedDatasets::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(cache.get(a).is_none());
        let kept = cache.put(a, dataset(10));
        assert!(Arc::ptr_eq(&kept, &cache.get(a).unwrap()));
        // Too big for the whole cache: returned, not kept, and the others stay.
        cache.put(b, dataset(MAX_VALUES));
        assert!(cache.get(b).is_none());
        assert!(cache.get(a).is_some());
        // Up to the limit, all stay; past it, what was there goes.
        cache.put(b, dataset(MAX_VALUES / 2 - 10));
        assert!(cache.get(a).is_some() && cache.get(b).is_some());
        let c = Uuid::new_v4();
        cache.put(c, dataset(1));
        assert!(cache.get(a).is_none() && cache.get(b).is_none());
        assert!(cache.get(c).is_some());
    }
}
