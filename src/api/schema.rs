//! How the store's and the training library's types appear in the OpenAPI document. Those
//! modules know nothing of the HTTP edge, so the document describes their JSON here; the test
//! that validates real answers against the document (`tests/openapi.rs`) keeps the two true.

use serde::Serialize;
use utoipa::ToSchema;

/// A task's state: PENDING -> STARTED -> PROGRESS -> SUCCESS | FAILURE, or REVOKED.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
#[schema(as = TaskState, example = "SUCCESS")]
pub enum TaskStateSchema {
    Pending,
    Started,
    Progress,
    Success,
    Failure,
    Revoked,
}

/// A model family as stored (`all` trains each of the others and keeps the best).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ModelType, example = "mlp")]
pub enum ModelTypeSchema {
    Mlp,
    Linear,
    Gbdt,
    All,
    /// Trains nothing (benchmarks; refused unless `[tasks] allow_noop`).
    Noop,
}

/// What kind of trainer a task asks for.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = DeviceClass, example = "any")]
pub enum DeviceClassSchema {
    Any,
    Cpu,
    Gpu,
}

/// Parameters of gradient-boosted trees; each has a default.
#[derive(Serialize, ToSchema)]
#[schema(as = GbdtParams)]
pub struct GbdtParamsSchema {
    #[schema(example = 100)]
    pub n_trees: Option<u32>,
    #[schema(example = 0.1)]
    pub learning_rate: Option<f64>,
    #[schema(example = 6)]
    pub max_depth: Option<u32>,
    /// Fewest training rows a leaf may hold.
    #[schema(example = 1)]
    pub min_samples_leaf: Option<u32>,
}

/// One training, fully described (the request merged with the model's defaults).
#[derive(Serialize, ToSchema)]
#[schema(as = TrainSpec)]
pub struct TrainSpecSchema {
    pub model_type: ModelTypeSchema,
    pub epochs: u32,
    pub learning_rate: f64,
    pub hidden_sizes: Vec<u32>,
    pub batch_size: u32,
    pub seed: u64,
    pub test_fraction: f64,
    pub dataset: String,
    pub gbdt: GbdtParamsSchema,
    pub time_limit_s: Option<f64>,
    /// Milliseconds a `noop` task sleeps (absent for 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sleep_ms: Option<u64>,
}

/// A task's progress: what its trainer reported last, or one made from its state.
#[derive(Serialize, ToSchema)]
#[schema(as = TaskProgress)]
pub struct TaskProgressSchema {
    #[schema(example = 40)]
    pub current: u64,
    #[schema(example = 100)]
    pub total: u64,
    #[schema(example = 40.0)]
    pub percent: f64,
    #[schema(example = "Epoch 40/100")]
    pub message: String,
    /// The training loss, when the model reports one.
    #[schema(nullable = false)]
    pub loss: Option<f64>,
}

/// Why an attempt or a task failed.
#[derive(Serialize, ToSchema)]
#[schema(as = TaskError)]
pub struct TaskErrorSchema {
    #[schema(example = "training_failed")]
    pub code: String,
    pub message: String,
}

/// One failed attempt of a task.
#[derive(Serialize, ToSchema)]
#[schema(as = AttemptRecord)]
pub struct AttemptRecordSchema {
    pub attempt: u32,
    pub trainer: Option<String>,
    pub error: TaskErrorSchema,
    /// When the attempt ended (Unix seconds).
    pub failed_at: Option<f64>,
    /// The step (epochs and trees) of the checkpoint the attempt resumed from; absent when it
    /// started from scratch.
    #[schema(nullable = false)]
    pub resumed_from: Option<u64>,
}

/// An uploaded CSV data set.
#[derive(Serialize, ToSchema)]
#[schema(as = DatasetInfo)]
pub struct DatasetInfoSchema {
    pub id: uuid::Uuid,
    #[schema(example = "houses")]
    pub name: String,
    #[schema(example = "price")]
    pub target: String,
    pub rows: u64,
    pub features: Vec<String>,
    pub bytes: u64,
    pub uploaded_at: f64,
    /// When it is removed unless used before (Unix seconds); absent: kept for ever.
    #[schema(nullable = false)]
    pub expires_at: Option<f64>,
    /// SHA-256 of the CSV (hex): the data set's content, as the result cache keys it.
    #[schema(nullable = false)]
    pub sha256: Option<String>,
}
