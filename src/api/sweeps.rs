//! The sweep routes: `POST /sweeps`, `GET /sweeps`, `GET /sweeps/{id}`,
//! `POST /sweeps/{id}/cancel`, `GET /sweeps/{id}/events`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::store::{Asha, RegisterRule, RungResult, Sweep, SweepRegistered, Trial, TrialState};

/// The body of `POST /sweeps`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "mlp-search", "model_type": "mlp", "dataset": "friedman1",
    "request": {"epochs": 100}, "space": {"learning_rate": {"loguniform": [0.0001, 0.1]},
    "hidden_sizes": {"choice": [[16], [32], [64], [32, 16], [64, 32]]},
    "batch_size": {"choice": [16, 32, 64, 128]}}, "strategy": "random", "trials": 64,
    "parallel": 2, "metric": "val_loss", "mode": "min",
    "early_stopping": {"asha": {"min_resource": 5, "max_resource": 100, "reduction_factor": 3}},
    "seed": 1}))]
pub struct SweepRequest {
    /// 1 to 64 letters, digits, '-', '_' or '.' (default: `sweep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `mlp`, `linear` or `gbdt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    /// A built-in data set or an uploaded data set's id (overrides the request's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// The fixed part of each trial: the body of `POST /train/{model_type}/async`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::TrainRequest>)]
    pub request: Option<Value>,
    /// Per parameter (`learning_rate`, `hidden_sizes`, `batch_size`, `epochs`, `n_trees`,
    /// `max_depth`, `min_samples_leaf`) one of `{"uniform": [a, b]}`,
    /// `{"loguniform": [a, b]}`, `{"int": [a, b]}`, `{"choice": [...]}`. For gbdt,
    /// `learning_rate` is the trees' own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub space: Option<Value>,
    /// `random` (default) or `grid` (every combination once; choice and int only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Trials to draw (random; default 16); a grid has as many as its points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<u32>,
    /// Most trials running at once (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<u32>,
    /// `val_loss` (default), `val_r2` or `val_rmse`: on a held-out part of the training rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// `min` or `max` (default: what the metric says is better).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `{"asha": {"min_resource", "max_resource", "reduction_factor"}}`, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub early_stopping: Option<Value>,
    /// Seeds the draws (default 0). Each trial trains with the request's seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The trials' priority, 0 to 9 (default: the request's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Share of the training rows held out to rank trials by (default 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_fraction: Option<f64>,
    /// Once every trial ended, register the best trial's model as the next version of a
    /// model, and move an alias to it when it beats the version the alias points at. The
    /// metric compared defaults to the sweep's own (and its mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::schedules::RegisterRuleSchema>)]
    pub register: Option<RegisterRule>,
}

/// A trial's rung result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RungView {
    /// Epochs (or trees) trained when judged.
    pub step: u64,
    pub value: f64,
    /// `continue` or `stop`.
    pub decision: String,
}

/// One trial of a sweep.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrialView {
    pub trial: u32,
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    /// WAITING, RUNNING, SUCCESS, STOPPED (early, at a rung), FAILURE or REVOKED.
    pub state: String,
    pub task_id: Option<Uuid>,
    /// Epochs (or trees) it trained, once ended.
    pub resource: Option<u64>,
    /// The metric at its last rung or at its end.
    pub latest_metric: Option<f64>,
    /// The best of its rung and end values.
    pub best_metric: Option<f64>,
    /// Its model's test R2, once ended (reported, never used to choose).
    pub test_r2: Option<f64>,
    pub rungs: Vec<RungView>,
}

/// How many trials are where.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TrialCounts {
    pub waiting: u32,
    pub running: u32,
    pub completed: u32,
    pub stopped_early: u32,
    pub failed: u32,
    pub revoked: u32,
}

/// The best trial so far.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BestTrial {
    pub trial: u32,
    /// Its task: `POST /models/{task_id}/predict` serves it.
    pub task_id: Option<Uuid>,
    pub metric: f64,
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    pub test_r2: Option<f64>,
}

/// A sweep, as `GET /sweeps/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SweepView {
    pub sweep_id: Uuid,
    pub name: String,
    /// RUNNING, SUCCESS (every trial ended) or REVOKED (cancelled).
    pub state: String,
    pub model_type: String,
    pub strategy: String,
    pub metric: String,
    pub mode: String,
    #[schema(value_type = Option<Object>)]
    pub early_stopping: Option<Value>,
    pub parallel: u32,
    pub seed: u64,
    pub created_at: f64,
    pub finished_at: Option<f64>,
    pub counts: TrialCounts,
    /// Epochs (or trees) trained by every trial together, and what training every trial to
    /// its end would take.
    pub resource_used: u64,
    pub resource_full: u64,
    pub best: Option<BestTrial>,
    /// Where the best trial's model is registered once the sweep succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::schedules::RegisterRuleSchema>)]
    pub register: Option<RegisterRule>,
    /// What that registration did: `{"name", "version", "promoted"}`, or `{"name", "error"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub registered: Option<SweepRegistered>,
    /// Every trial (`GET /sweeps` leaves them out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trials: Vec<TrialView>,
}

/// The answer of `GET /sweeps`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SweepList {
    pub sweeps: Vec<SweepView>,
}

/// The answer of `POST /sweeps` (201) and `POST /sweeps/{id}/cancel` (202).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SweepAnswer {
    pub success: bool,
    pub message: String,
    pub sweep: SweepView,
}

fn asha_json(asha: &Option<Asha>) -> Option<Value> {
    asha.map(|a| serde_json::json!({"asha": a}))
}

impl SweepView {
    /// `sweep` with its rung results; `with_trials` false leaves the trials out.
    pub fn of(sweep: &Sweep, rungs: &[RungResult], with_trials: bool) -> SweepView {
        let mut counts = TrialCounts::default();
        for t in &sweep.trials {
            let n = match t.state {
                TrialState::Waiting => &mut counts.waiting,
                TrialState::Running => &mut counts.running,
                TrialState::Success => &mut counts.completed,
                TrialState::Stopped => &mut counts.stopped_early,
                TrialState::Failure => &mut counts.failed,
                TrialState::Revoked => &mut counts.revoked,
            };
            *n += 1;
        }
        let full_each =
            sweep
                .asha
                .map(|a| a.max_resource)
                .unwrap_or_else(|| match sweep.model_type {
                    crate::training::ModelType::Gbdt => sweep.template.spec.gbdt.n_trees as u64,
                    _ => sweep.template.spec.epochs as u64,
                });
        let best = sweep.best().map(|t| BestTrial {
            trial: t.trial,
            task_id: t.task_id,
            metric: t.metric.unwrap_or(f64::NAN),
            params: t.params.clone(),
            test_r2: t.test_r2,
        });
        let trials = if with_trials {
            sweep
                .trials
                .iter()
                .map(|t| trial_view(sweep, t, rungs))
                .collect()
        } else {
            Vec::new()
        };
        SweepView {
            sweep_id: sweep.id,
            name: sweep.name.clone(),
            state: sweep.state.as_str().to_string(),
            model_type: sweep.model_type.to_string(),
            strategy: sweep.strategy.as_str().to_string(),
            metric: sweep.metric.as_str().to_string(),
            mode: sweep.mode.as_str().to_string(),
            early_stopping: asha_json(&sweep.asha),
            parallel: sweep.parallel,
            seed: sweep.seed,
            created_at: sweep.created_at,
            finished_at: sweep.finished_at,
            counts,
            resource_used: sweep.trials.iter().filter_map(|t| t.resource).sum(),
            resource_full: full_each * sweep.trials.len() as u64,
            best,
            register: sweep.register.clone(),
            registered: sweep.registered.clone(),
            trials,
        }
    }
}

fn trial_view(sweep: &Sweep, trial: &Trial, rungs: &[RungResult]) -> TrialView {
    let mine: Vec<RungView> = rungs
        .iter()
        .filter(|r| r.trial == trial.trial)
        .map(|r| RungView {
            step: r.step,
            value: r.value,
            decision: if r.go_on { "continue" } else { "stop" }.into(),
        })
        .collect();
    let values = mine.iter().map(|r| r.value).chain(trial.metric);
    let best_metric = values
        .clone()
        .fold(None, |best: Option<f64>, v| match best {
            Some(b) if !sweep.better(v, b) => Some(b),
            _ => Some(v),
        });
    TrialView {
        trial: trial.trial,
        params: trial.params.clone(),
        state: trial.state.as_str().to_string(),
        task_id: trial.task_id,
        resource: trial.resource,
        latest_metric: trial.metric.or(mine.last().map(|r| r.value)),
        best_metric,
        test_r2: trial.test_r2,
        rungs: mine,
    }
}
