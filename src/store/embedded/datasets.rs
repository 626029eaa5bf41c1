//! The [`Datasets`] role of the embedded store.

use redb::ReadableTable;

use super::*;

impl Datasets for EmbeddedStore {
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
}
