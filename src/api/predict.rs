//! `POST /models/{id}/predict`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::schema::ModelTypeSchema;
use crate::training::ModelType;

/// The body of `POST /models/{id}/predict`: rows of features, in the data set's column order
/// without the target.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"rows": [[0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.4, 0.6, 0.8, 0.0]]}))]
pub struct PredictRequest {
    pub rows: Vec<Vec<f32>>,
}

/// The answer of `POST /models/{id}/predict`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"success": true, "task_id": "0b5e4c1e-3f1c-4c39-9e4b-1d2f3a4b5c6d",
    "model_type": "mlp", "predictions": [14.2]}))]
pub struct PredictAnswer {
    pub success: bool,
    pub task_id: Uuid,
    /// The model that answered (for `all`, the best of the task's models).
    #[schema(value_type = ModelTypeSchema)]
    pub model_type: ModelType,
    /// One prediction per row.
    pub predictions: Vec<f32>,
    /// The registered model that answered (a prediction by name, version or alias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub name: Option<String>,
    /// Its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub version: Option<u32>,
}
