//! `POST /train/{model_type}/async` and `POST /train/{model_type}`: the request, its one merge
//! with a model's defaults, and the answer.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::training::{DeviceClass, GbdtParams, ModelType, TrainSpec};

/// The body of `POST /train/{model_type}`: every field optional, each unset one takes the
/// model's default. Unknown fields are refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"epochs": 50, "learning_rate": 0.001, "hidden_sizes": [64, 32],
    "dataset": "friedman1", "priority": 5}))]
pub struct TrainRequest {
    /// Passes over the training rows (burn models).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, example = 100)]
    pub epochs: Option<u32>,
    /// Adam's learning rate (burn models).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 0.001)]
    pub learning_rate: Option<f64>,
    /// Sizes of the MLP's hidden layers, input side first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!([64, 32]))]
    pub hidden_sizes: Option<Vec<u32>>,
    /// A built-in data set (friedman1, diabetes, winequality) or an uploaded data set's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "friedman1")]
    pub dataset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, example = 32)]
    pub batch_size: Option<u32>,
    /// Seeds the split, the shuffles and the weights: the same seed gives the same metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 42)]
    pub seed: Option<u64>,
    /// Share of rows held out for the test metrics (between 0 and 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 0.2)]
    pub test_fraction: Option<f64>,
    /// 0 (default) to 9; higher runs first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9, example = 5)]
    pub priority: Option<u8>,
    /// Attempts after the first (at most 10; the node's `tasks.max_retries` when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 10, example = 2)]
    pub max_retries: Option<u32>,
    /// Wall-clock limit of the training, at most the node's `tasks.time_limit_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 600.0)]
    pub time_limit_s: Option<f64>,
    /// Gradient-boosted trees' parameters (gbdt and all).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::schema::GbdtParamsSchema>)]
    pub gbdt: Option<GbdtParams>,
    /// `any` (default), `cpu` or `gpu`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::schema::DeviceClassSchema>)]
    pub device: Option<DeviceClass>,
    /// Where to POST the final status when the task ends (allowed hosts only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "https://hooks.example.com/trainyard")]
    pub callback_url: Option<String>,
    /// Answer from an earlier finished, unexpired success with the same spec (time limit
    /// aside), data set content and seed, if there is one: a new task, SUCCESS at once, that
    /// names it in `cached_from`; no training.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = true)]
    pub cache: Option<bool>,
    /// Share of the training rows held out (never the test rows) for `val_loss`, `val_r2`
    /// and `val_rmse` in the metrics; the model is not fitted on them. Sweeps set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 0.2)]
    pub validation_fraction: Option<f64>,
    /// Milliseconds a `noop` task sleeps (0 to 600000; noop only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 600000, example = 500)]
    pub sleep_ms: Option<u64>,
}

impl TrainRequest {
    /// The training this request asks of `model_type`: each hyperparameter it sets, the
    /// model's default for the rest. The one merge of a request with the defaults (the server,
    /// `trainyard train` and `trainyard submit` all go through it). The data set is left at the
    /// default: the server looks the request's up, the CLI reads its own.
    pub fn spec(&self, model_type: ModelType) -> TrainSpec {
        let defaults = TrainSpec::new(model_type);
        TrainSpec {
            epochs: self.epochs.unwrap_or(defaults.epochs),
            learning_rate: self.learning_rate.unwrap_or(defaults.learning_rate),
            hidden_sizes: self
                .hidden_sizes
                .clone()
                .unwrap_or_else(|| defaults.hidden_sizes.clone()),
            batch_size: self.batch_size.unwrap_or(defaults.batch_size),
            seed: self.seed.unwrap_or(defaults.seed),
            test_fraction: self.test_fraction.unwrap_or(defaults.test_fraction),
            gbdt: self.gbdt.clone().unwrap_or_default(),
            time_limit_s: self.time_limit_s,
            validation_fraction: self.validation_fraction,
            sleep_ms: self.sleep_ms.unwrap_or(0),
            ..defaults
        }
    }
}

/// The query of `POST /train/{model_type}` (the synchronous call).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// Seconds to wait for the task to end, 0 to 3600 (default 300); then 504 with its id.
    #[param(value_type = Option<f64>, example = 60)]
    pub wait_s: Option<String>,
    /// A token, for clients that cannot send headers (accepted on every route).
    #[param(value_type = Option<String>)]
    pub token: Option<String>,
}

/// The answer of `POST /train/{model_type}/async` (202).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"success": true, "task_id": "0b5e4c1e-3f1c-4c39-9e4b-1d2f3a4b5c6d",
    "message": "Training task submitted for mlp", "model_type": "mlp"}))]
pub struct SubmitAnswer {
    pub success: bool,
    pub task_id: Uuid,
    pub message: String,
    /// The model type as the request named it (an old name stays old).
    pub model_type: String,
    /// The earlier task whose result answered it (`"cache": true`): it is SUCCESS already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub cached_from: Option<Uuid>,
}

impl SubmitAnswer {
    /// The answer for a task submitted as `named`.
    pub fn new(task_id: Uuid, named: &str) -> Self {
        SubmitAnswer {
            success: true,
            task_id,
            message: format!("Training task submitted for {named}"),
            model_type: named.to_string(),
            cached_from: None,
        }
    }
}
