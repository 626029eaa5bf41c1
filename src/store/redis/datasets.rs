//! Uploaded data sets (`dataset_put.lua`, `dataset_touch.lua`, `dataset_delete.lua`): the
//! [`Datasets`] role, and the sweep of the expired ones.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::training::device_kind::DeviceClass;

impl RedisStore {
    /// Calls `f` with the record of each task yet to end: queued, waiting to retry, or
    /// running. Reads them in pages (for a delete or a sweep of expired data sets, both rare).
    async fn each_unended_record(&self, mut f: impl FnMut(&[u8])) -> Result<(), StoreError> {
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
            let records: Vec<Option<Vec<u8>>> = ::redis::cmd("MGET")
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
    pub(super) async fn sweep_datasets(&self) -> Result<(), StoreError> {
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
        self.each_unended_record(|record| used.extend(dataset_in_use(record)))
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
}

impl Datasets for RedisStore {
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
                user = dataset_in_use(record)
                    .filter(|used| *used == id)
                    .and_then(|_| compact::record_from(record).ok().map(|t| t.id));
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
}
