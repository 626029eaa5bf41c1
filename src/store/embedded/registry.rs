//! The [`Registry`] and [`ResultCache`] roles of the embedded store.

use redb::ReadableTable;

use super::*;

/// Model name -> JSON `RegisteredModel` (its versions without artifacts, its aliases).
pub(super) const REGISTRY: TableDefinition<&str, &[u8]> = TableDefinition::new("registry");
/// Model name -> the last version number given (kept when versions are deleted).
pub(super) const REGISTRY_NEXT: TableDefinition<&str, u32> = TableDefinition::new("registry_next");
/// (model name, version) -> artifact bytes.
pub(super) const REGISTRY_ARTIFACTS: TableDefinition<(&str, u32), &[u8]> =
    TableDefinition::new("registry_artifacts");
/// Cache key -> JSON `CacheEntry`.
pub(super) const CACHED: TableDefinition<&str, &[u8]> = TableDefinition::new("cached");

/// A finished success indexed by its cache key, until its result expires.
#[derive(Serialize, Deserialize)]
struct CacheEntry {
    id: Uuid,
    expires_at: f64,
}

/// Removes the cache entries whose result expired by `now`.
pub(super) fn sweep_cached(tx: &WriteTransaction, now: f64) -> Result<(), StoreError> {
    tx.open_table(CACHED)?
        .retain(|_, v| serde_json::from_slice::<CacheEntry>(v).is_ok_and(|e| e.expires_at > now))?;
    Ok(())
}

fn load_model(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Option<RegisteredModel>, StoreError> {
    let found = table.get(name)?;
    found.map(|v| decode(v.value())).transpose()
}

impl Registry for EmbeddedStore {
    async fn register_model(
        &self,
        name: &str,
        version: &ModelVersion,
        artifact: &[u8],
    ) -> Result<ModelVersion, StoreError> {
        let (name, mut version, artifact) = (name.to_string(), version.clone(), artifact.to_vec());
        self.write(move |tx, _| {
            let mut next = tx.open_table(REGISTRY_NEXT)?;
            let number = next.get(name.as_str())?.map_or(0, |v| v.value()) + 1;
            next.insert(name.as_str(), number)?;
            let mut models = tx.open_table(REGISTRY)?;
            let mut model = load_model(&models, &name)?.unwrap_or_else(|| RegisteredModel {
                name: name.clone(),
                ..RegisteredModel::default()
            });
            version.version = number;
            version.bytes = artifact.len() as u64;
            version.registered_at = now_s();
            model.versions.push(version.clone());
            models.insert(name.as_str(), encode(&model).as_slice())?;
            tx.open_table(REGISTRY_ARTIFACTS)?.insert(
                (name.as_str(), number),
                compact::model_bytes(artifact.clone()).as_slice(),
            )?;
            Ok(version)
        })
        .await
    }

    async fn registered_models(&self) -> Result<Vec<RegisteredModel>, StoreError> {
        self.read(|tx, _| {
            let mut out = Vec::new();
            for entry in tx.open_table(REGISTRY)?.iter()? {
                out.push(decode::<RegisteredModel>(entry?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn registered_model(&self, name: &str) -> Result<Option<RegisteredModel>, StoreError> {
        let name = name.to_string();
        self.read(move |tx, _| load_model(&tx.open_table(REGISTRY)?, &name))
            .await
    }

    async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u32,
        expect: AliasExpect,
    ) -> Result<AliasSet, StoreError> {
        let (name, alias) = (name.to_string(), alias.to_string());
        self.write(move |tx, _| {
            let mut models = tx.open_table(REGISTRY)?;
            let Some(mut model) = load_model(&models, &name)? else {
                return Ok(AliasSet::NoModel);
            };
            if model.version(version).is_none() {
                return Ok(AliasSet::NoVersion);
            }
            let current = model.aliases.get(&alias).copied();
            if let AliasExpect::Current(expected) = expect
                && expected != current
            {
                return Ok(AliasSet::Moved { current });
            }
            model.aliases.insert(alias, version);
            models.insert(name.as_str(), encode(&model).as_slice())?;
            Ok(AliasSet::Set { previous: current })
        })
        .await
    }

    async fn delete_model_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<VersionDeleted, StoreError> {
        let name = name.to_string();
        self.write(move |tx, _| {
            let mut models = tx.open_table(REGISTRY)?;
            let Some(mut model) = load_model(&models, &name)? else {
                return Ok(VersionDeleted::NoModel);
            };
            if model.version(version).is_none() {
                return Ok(VersionDeleted::NoVersion);
            }
            let aliased: Vec<String> = model
                .aliases_of(version)
                .into_iter()
                .map(str::to_string)
                .collect();
            if !aliased.is_empty() {
                return Ok(VersionDeleted::Aliased(aliased));
            }
            model.versions.retain(|v| v.version != version);
            models.insert(name.as_str(), encode(&model).as_slice())?;
            tx.open_table(REGISTRY_ARTIFACTS)?
                .remove((name.as_str(), version))?;
            Ok(VersionDeleted::Deleted)
        })
        .await
    }

    async fn version_artifact(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let name = name.to_string();
        self.read(move |tx, _| {
            let table = tx.open_table(REGISTRY_ARTIFACTS)?;
            let found = table.get((name.as_str(), version))?;
            found
                .map(|v| compact::model_from(v.value().to_vec()))
                .transpose()
        })
        .await
    }
}

impl ResultCache for EmbeddedStore {
    /// A commit that does not wait for the disk (`Durability::None`): the next durable
    /// commit (the next task's end) persists it, and an index entry lost in a crash only
    /// costs a cache miss. It saves one disk sync per success.
    async fn remember_result(&self, key: &str, id: Uuid) -> Result<(), StoreError> {
        let (db, settings, key) = (self.db.clone(), self.settings, key.to_string());
        tokio::task::spawn_blocking(move || {
            let mut tx = db.begin_write()?;
            tx.set_durability(redb::Durability::None)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let entry = CacheEntry {
                id,
                expires_at: now_s() + settings.result_expires_s,
            };
            tx.open_table(CACHED)?
                .insert(key.as_str(), encode(&entry).as_slice())?;
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }

    async fn cached_result(&self, key: &str) -> Result<Option<Uuid>, StoreError> {
        let key = key.to_string();
        self.read(move |tx, _| {
            let table = tx.open_table(CACHED)?;
            let found = table.get(key.as_str())?;
            let entry = found.map(|v| decode::<CacheEntry>(v.value())).transpose()?;
            Ok(entry.filter(|e| e.expires_at > now_s()).map(|e| e.id))
        })
        .await
    }

    async fn submit_finished(
        &self,
        task: &TaskRecord,
        model: &[u8],
    ) -> Result<TaskRecord, StoreError> {
        let (mut task, model) = (task.clone(), model.to_vec());
        self.write(move |tx, settings| {
            task.expires_at = task.finished_at.map(|at| at + settings.result_expires_s);
            save_ended(tx, &task)?;
            tx.open_table(MODELS)?.insert(
                task.id.to_string().as_str(),
                compact::model_bytes(model).as_slice(),
            )?;
            Ok(task)
        })
        .await
    }
}
