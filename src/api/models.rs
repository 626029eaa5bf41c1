//! The model registry's routes: `POST /models`, `GET /models`, `GET /models/{name}`,
//! `PUT /models/{name}/aliases/{alias}`, `DELETE /models/{name}/versions/{version}`, and
//! predictions by name, version or alias.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::schema::ModelTypeSchema;
use crate::store::{ModelVersion, RegisteredModel};
use crate::training::ModelType;

/// The body of `POST /models`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "house-prices",
    "task_id": "0b5e4c1e-3f1c-4c39-9e4b-1d2f3a4b5c6d"}))]
pub struct RegisterRequest {
    /// 1 to 64 letters, digits, '.', '_' or '-'; not a UUID, not all digits.
    pub name: Option<String>,
    /// A task that finished with SUCCESS; its model is copied.
    pub task_id: Option<String>,
}

/// The body of `PUT /models/{name}/aliases/{alias}`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"version": 2}))]
pub struct AliasRequest {
    pub version: Option<u32>,
}

/// One version of a registered model.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    pub version: u32,
    /// The task whose model it is (which may have expired since).
    pub task_id: Uuid,
    #[schema(value_type = ModelTypeSchema)]
    pub model_type: ModelType,
    /// The training spec (hyperparameters, seed, data set name).
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    /// The uploaded data set it trained on; null for a built-in one (`spec.dataset`).
    pub dataset_id: Option<Uuid>,
    /// SHA-256 of that data set's CSV.
    pub dataset_sha256: Option<String>,
    /// The task's metrics.
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
    pub best_model: Option<String>,
    /// When it was registered (Unix seconds).
    pub registered_at: f64,
    /// Bytes of its artifact.
    pub bytes: u64,
    /// The aliases that point at it.
    pub aliases: Vec<String>,
}

impl VersionView {
    pub fn of(model: &RegisteredModel, v: &ModelVersion) -> Self {
        VersionView {
            version: v.version,
            task_id: v.task_id,
            model_type: v.model_type,
            spec: serde_json::to_value(&v.spec).expect("a spec serializes"),
            dataset_id: v.dataset_id,
            dataset_sha256: v.dataset_sha256.clone(),
            metrics: v.metrics.clone(),
            best_model: v.best_model.clone(),
            registered_at: v.registered_at,
            bytes: v.bytes,
            aliases: model
                .aliases_of(v.version)
                .into_iter()
                .map(str::to_string)
                .collect(),
        }
    }
}

/// The answer of `POST /models` (201).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RegisterAnswer {
    pub success: bool,
    pub name: String,
    pub version: VersionView,
}

/// A registered model in `GET /models`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelSummary {
    pub name: String,
    /// The newest version; null once every version was deleted.
    pub latest_version: Option<u32>,
    pub versions: usize,
    /// Alias -> version.
    pub aliases: BTreeMap<String, u32>,
    /// The newest version's metrics.
    #[schema(value_type = Option<Object>)]
    pub latest_metrics: Option<serde_json::Value>,
}

impl ModelSummary {
    pub fn of(model: &RegisteredModel) -> Self {
        ModelSummary {
            name: model.name.clone(),
            latest_version: model.latest().map(|v| v.version),
            versions: model.versions.len(),
            aliases: model.aliases.clone(),
            latest_metrics: model.latest().map(|v| v.metrics.clone()),
        }
    }
}

/// The answer of `GET /models`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    pub success: bool,
    pub count: usize,
    pub models: Vec<ModelSummary>,
}

/// The answer of `GET /models/{name}`: every version, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelAnswer {
    pub success: bool,
    pub name: String,
    pub latest_version: Option<u32>,
    pub aliases: BTreeMap<String, u32>,
    pub versions: Vec<VersionView>,
}

impl ModelAnswer {
    pub fn of(model: &RegisteredModel) -> Self {
        ModelAnswer {
            success: true,
            name: model.name.clone(),
            latest_version: model.latest().map(|v| v.version),
            aliases: model.aliases.clone(),
            versions: model
                .versions
                .iter()
                .map(|v| VersionView::of(model, v))
                .collect(),
        }
    }
}

/// The answer of `PUT /models/{name}/aliases/{alias}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AliasAnswer {
    pub success: bool,
    pub name: String,
    pub alias: String,
    pub version: u32,
    /// The version it pointed at before, if any.
    pub previous: Option<u32>,
}

/// The answer of `DELETE /models/{name}/versions/{version}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionDeletedAnswer {
    pub success: bool,
    pub name: String,
    pub deleted: u32,
}
