//! The body of every refusal: `{"success": false, "error": {"code", "message", ...}}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// What a refused request gets, with the status of its error.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"success": false,
    "error": {"code": "task_not_found", "message": "task 0b5e4c1e-3f1c-4c39-9e4b-1d2f3a4b5c6d not found"}}))]
pub struct ErrorBody {
    /// Always false.
    pub success: bool,
    pub error: ErrorDetail,
}

/// The error of an [`ErrorBody`]: a stable code, a message for people, and some codes' extra
/// fields (`task_id` of a 504 `timeout`, `estimate` and `limit` of `model_too_large`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// The error's code (see the response's description for the codes of each route).
    #[schema(example = "task_not_found")]
    pub code: String,
    /// What went wrong, in lowercase, naming the thing.
    pub message: String,
    /// Fields some codes add.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
