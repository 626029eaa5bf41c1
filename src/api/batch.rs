//! `POST /tasks`: many training requests in one call, stored in one round trip.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::TrainRequest;

/// One request of a batch: the body of `POST /train/{model_type}/async`, with its model type
/// and, optionally, its idempotency key (as the `Idempotency-Key` header of a single
/// submission). `"cache": true` is refused in a batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"model_type": "gbdt", "gbdt": {"n_trees": 50}, "seed": 7,
    "idempotency_key": "nightly-7"}))]
pub struct BatchItemRequest {
    /// mlp, linear, gbdt, all, noop (when allowed), or an old name (tensorflow, pytorch,
    /// xgboost).
    #[schema(example = "mlp")]
    pub model_type: String,
    /// Submits once: a later item or request with this key answers with the first task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "nightly-7")]
    pub idempotency_key: Option<String>,
    #[serde(flatten)]
    pub request: TrainRequest,
}

/// The answer of `POST /tasks` (202): every item's task id, in the items' order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"success": true, "task_ids": ["0b5e4c1e-3f1c-4c39-9e4b-1d2f3a4b5c6d"],
    "replayed": []}))]
pub struct BatchAnswer {
    pub success: bool,
    /// One id per item, in order.
    pub task_ids: Vec<Uuid>,
    /// The indexes of the items answered with an earlier task of their idempotency key.
    pub replayed: Vec<u32>,
}
