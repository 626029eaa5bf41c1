//! The model registry (`register.lua`, `alias.lua`, `version_delete.lua`): the [`Registry`]
//! role. Each name is one hash (its versions, aliases and last number) beside a hash of its
//! artifacts; neither expires.

use super::*;

/// A registered model from its hash's fields (`Keys::registered`); none if it has none.
fn assemble(
    name: &str,
    fields: Vec<(String, Vec<u8>)>,
) -> Result<Option<RegisteredModel>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut model = RegisteredModel {
        name: name.to_string(),
        ..RegisteredModel::default()
    };
    for (field, value) in fields {
        let text = String::from_utf8(value)
            .map_err(|e| StoreError::Corrupt(format!("model {name} field {field}: {e}")))?;
        if let Some(v) = field.strip_prefix("v:") {
            let mut version: ModelVersion = decode(&text)?;
            version.version = v
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("model {name} field {field}: {e}")))?;
            model.versions.push(version);
        } else if let Some(alias) = field.strip_prefix("a:") {
            let v = text
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("model {name} alias {alias}: {e}")))?;
            model.aliases.insert(alias.to_string(), v);
        }
    }
    model.versions.sort_by_key(|v| v.version);
    Ok(Some(model))
}

/// A version number a script answered with.
fn version_of(raw: Option<&String>) -> Option<u32> {
    raw.and_then(|v| v.parse().ok())
}

impl Registry for RedisStore {
    async fn register_model(
        &self,
        name: &str,
        version: &ModelVersion,
        artifact: &[u8],
    ) -> Result<ModelVersion, StoreError> {
        let k = &self.keys;
        let mut stored = version.clone();
        stored.version = 0;
        stored.bytes = artifact.len() as u64;
        stored.registered_at = now_s();
        let mut writer = self.link.writer();
        let number: u32 = self
            .scripts
            .register
            .key(k.registry())
            .key(k.registered(name))
            .key(k.registered_artifacts(name))
            .arg(name)
            .arg(encode(&stored))
            .arg(compact::model_bytes(artifact.to_vec()))
            .invoke_async(&mut writer)
            .await?;
        writer
            .replicated(|| format!("model {name} version {number}"))
            .await?;
        stored.version = number;
        Ok(stored)
    }

    async fn registered_models(&self) -> Result<Vec<RegisteredModel>, StoreError> {
        let mut con = self.link.clone();
        let mut names: Vec<String> = con.smembers(self.keys.registry()).await?;
        names.sort();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for name in &names {
            pipe.hgetall(self.keys.registered(name));
        }
        let all: Vec<Vec<(String, Vec<u8>)>> = pipe.query_async(&mut con).await?;
        let mut out = Vec::new();
        for (name, fields) in names.iter().zip(all) {
            out.extend(assemble(name, fields)?);
        }
        Ok(out)
    }

    async fn registered_model(&self, name: &str) -> Result<Option<RegisteredModel>, StoreError> {
        let fields: Vec<(String, Vec<u8>)> = self
            .link
            .clone()
            .hgetall(self.keys.registered(name))
            .await?;
        assemble(name, fields)
    }

    async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u32,
        expect: AliasExpect,
    ) -> Result<AliasSet, StoreError> {
        let expected = match expect {
            AliasExpect::Any => String::new(),
            AliasExpect::Current(None) => "none".into(),
            AliasExpect::Current(Some(v)) => v.to_string(),
        };
        let answer: Vec<String> = self
            .scripts
            .alias
            .key(self.keys.registered(name))
            .arg(alias)
            .arg(version)
            .arg(expected)
            .invoke_async(&mut self.link.clone())
            .await?;
        Ok(match answer.first().map(String::as_str) {
            Some("set") => AliasSet::Set {
                previous: version_of(answer.get(1)),
            },
            Some("moved") => AliasSet::Moved {
                current: version_of(answer.get(1)),
            },
            Some("noversion") => AliasSet::NoVersion,
            _ => AliasSet::NoModel,
        })
    }

    async fn delete_model_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<VersionDeleted, StoreError> {
        let mut answer: Vec<String> = self
            .scripts
            .version_delete
            .key(self.keys.registered(name))
            .key(self.keys.registered_artifacts(name))
            .arg(version)
            .invoke_async(&mut self.link.clone())
            .await?;
        let mut aliases = answer.split_off(1.min(answer.len()));
        aliases.sort();
        Ok(match answer.first().map(String::as_str) {
            Some("deleted") => VersionDeleted::Deleted,
            Some("aliased") => VersionDeleted::Aliased(aliases),
            Some("noversion") => VersionDeleted::NoVersion,
            _ => VersionDeleted::NoModel,
        })
    }

    async fn version_artifact(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let stored: Option<Vec<u8>> = self
            .link
            .clone()
            .hget(self.keys.registered_artifacts(name), version)
            .await?;
        stored.map(compact::model_from).transpose()
    }
}

impl ResultCache for RedisStore {
    async fn remember_result(&self, key: &str, id: Uuid) -> Result<(), StoreError> {
        let ttl = self.settings.result_expires_s.ceil().max(1.0) as u64;
        let _: () = self
            .link
            .clone()
            .set_ex(self.keys.cached(key), id.to_string(), ttl)
            .await?;
        Ok(())
    }

    async fn cached_result(&self, key: &str) -> Result<Option<Uuid>, StoreError> {
        let id: Option<String> = self.link.clone().get(self.keys.cached(key)).await?;
        Ok(id.and_then(|id| Uuid::parse_str(&id).ok()))
    }

    async fn submit_finished(
        &self,
        task: &TaskRecord,
        model: &[u8],
    ) -> Result<TaskRecord, StoreError> {
        let (k, s) = (&self.keys, &self.settings);
        let mut task = task.clone();
        task.expires_at = task.finished_at.map(|at| at + s.result_expires_s);
        let ttl = s.result_expires_s.ceil().max(1.0) as u64;
        let tombstone = ttl + s.expired_memory_s.ceil().max(1.0) as u64;
        let callback = if task.callback_due() {
            now_s().to_string()
        } else {
            String::new()
        };
        let (grave, tail) = k.burial(task.id);
        let mut invocation = self.scripts.cached.prepare_invoke();
        invocation
            .key(k.task(task.id))
            .key(k.model(task.id))
            .key(&grave)
            .key(k.index())
            .key(k.callbacks())
            .arg(compact::record_bytes(&task))
            .arg(compact::model_bytes(model.to_vec()))
            .arg(ttl)
            .arg(tombstone)
            .arg(task.submitted_at)
            .arg(task.id.to_string())
            .arg(callback)
            .arg(tail);
        self.add_event(&mut invocation, None, &task);
        let mut writer = self.link.writer();
        let _: i64 = invocation.invoke_async(&mut writer).await?;
        writer.replicated(|| format!("task {}", task.id)).await?;
        Ok(task)
    }
}
